//! Address arithmetic on IPv4 and IPv6 addresses, done on `u128` so both
//! families share one implementation. An address never changes family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The address as an unsigned integer in its own family's width.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of the same family as `like`. `n` must fit the family.
pub fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The largest address value of the family of `ip`.
pub fn family_max(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(_) => u128::from(u32::MAX),
        IpAddr::V6(_) => u128::MAX,
    }
}

/// The next address, or None at the end of the family's space.
pub fn next(ip: IpAddr) -> Option<IpAddr> {
    let n = to_u128(ip);
    if n == family_max(ip) {
        None
    } else {
        Some(from_u128(ip, n + 1))
    }
}

/// The previous address, or None at the start of the family's space.
pub fn prev(ip: IpAddr) -> Option<IpAddr> {
    let n = to_u128(ip);
    if n == 0 {
        None
    } else {
        Some(from_u128(ip, n - 1))
    }
}

/// True when both addresses are of one family.
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) becomes IPv4, as the
/// reference's canonicalisation does; everything else is unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// The default last usable address of a subnet: the last address, minus one
/// for IPv4 (the broadcast address is never handed out).
pub fn default_range_end(subnet: &IpNet) -> IpAddr {
    let last = subnet.broadcast();
    match last {
        IpAddr::V4(_) => prev(last).unwrap_or(last),
        IpAddr::V6(_) => last,
    }
}

/// Number of addresses in the inclusive interval [a, b] (saturating: a full
/// IPv6 space does not fit in u128). Zero when b < a.
pub fn span(a: IpAddr, b: IpAddr) -> u128 {
    let (a, b) = (to_u128(a), to_u128(b));
    if b < a {
        0
    } else {
        (b - a).saturating_add(1)
    }
}

/// Inclusive intervals, merged: sorted, non-overlapping, non-adjacent.
pub fn merge_intervals(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if let Some(last) = out.last_mut() {
            if s <= last.1.saturating_add(1) {
                if e > last.1 {
                    last.1 = e;
                }
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v4_edges() {
        let max = IpAddr::V4(Ipv4Addr::BROADCAST);
        assert_eq!(next(max), None);
        assert_eq!(prev(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), None);
        assert_eq!(
            next("10.0.0.255".parse().unwrap()),
            Some("10.0.1.0".parse().unwrap())
        );
    }

    #[test]
    fn v6_edges() {
        let max: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(next(max), None);
        assert_eq!(
            next("2001:db8::ffff".parse().unwrap()),
            Some("2001:db8::1:0".parse().unwrap())
        );
        assert_eq!(prev("::".parse().unwrap()), None);
    }

    #[test]
    fn default_ends() {
        let n: IpNet = "10.1.2.0/24".parse().unwrap();
        assert_eq!(
            default_range_end(&n),
            "10.1.2.254".parse::<IpAddr>().unwrap()
        );
        let n: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(
            default_range_end(&n),
            "2001:db8::ffff:ffff:ffff:ffff".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_v4_is_canonicalised() {
        let m: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical(m), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn span_saturates() {
        let a: IpAddr = "::".parse().unwrap();
        let b: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(span(a, b), u128::MAX);
        assert_eq!(span(b, a), 0);
    }

    proptest! {
        #[test]
        fn next_prev_roundtrip_v4(n in any::<u32>()) {
            let ip = IpAddr::V4(Ipv4Addr::from(n));
            if let Some(nx) = next(ip) {
                prop_assert_eq!(prev(nx), Some(ip));
                prop_assert!(nx.is_ipv4());
                prop_assert_eq!(to_u128(nx), u128::from(n) + 1);
            } else {
                prop_assert_eq!(n, u32::MAX);
            }
        }

        #[test]
        fn next_prev_roundtrip_v6(n in any::<u128>()) {
            let ip = IpAddr::V6(Ipv6Addr::from(n));
            match next(ip) {
                Some(nx) => { prop_assert_eq!(prev(nx), Some(ip)); prop_assert!(nx.is_ipv6()); }
                None => prop_assert_eq!(n, u128::MAX),
            }
        }

        #[test]
        fn merged_intervals_are_disjoint(v in proptest::collection::vec((0u128..1000, 0u128..50), 0..20)) {
            let iv: Vec<(u128,u128)> = v.iter().map(|&(s, l)| (s, s + l)).collect();
            let m = merge_intervals(iv.clone());
            for w in m.windows(2) { prop_assert!(w[0].1 + 1 < w[1].0); }
            for x in 0u128..1100 {
                let a = iv.iter().any(|&(s,e)| s <= x && x <= e);
                let b = m.iter().any(|&(s,e)| s <= x && x <= e);
                prop_assert_eq!(a, b);
            }
        }
    }
}
