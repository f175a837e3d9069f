//! Block arithmetic: which aligned runs of `size` addresses a range set
//! spans, which block an address is in, which of a block's addresses a set
//! hands out. Pure: no etcd.

use std::net::IpAddr;

use crate::addr;
use crate::config::RangeSet;

/// The first address of the block of `size` (a power of two) holding `ip`.
pub fn base_of(ip: IpAddr, size: u32) -> IpAddr {
    let n = addr::to_u128(ip);
    addr::from_u128(ip, n & !(u128::from(size) - 1))
}

/// The last address of the block starting at `base`.
pub fn last_of(base: IpAddr, size: u32) -> IpAddr {
    addr::from_u128(base, addr::to_u128(base) + u128::from(size) - 1)
}

/// Whether `set` hands out `ip`: inside one of its ranges (start..end), not
/// that range's gateway, not excluded.
pub fn usable(set: &RangeSet, ip: IpAddr) -> bool {
    set.range_for(ip)
        .is_some_and(|r| r.contains(ip) && ip != r.gateway && !r.is_excluded(ip))
}

/// The addresses of the block at `base` that `set` hands out, in order.
pub fn usable_in(set: &RangeSet, base: IpAddr, size: u32) -> impl Iterator<Item = IpAddr> + '_ {
    let lo = addr::to_u128(base);
    (lo..lo + u128::from(size))
        .map(move |n| addr::from_u128(base, n))
        .filter(move |ip| usable(set, *ip))
}

/// The blocks a range set spans, numbered in the set's order (range by
/// range, each range's blocks by address): what a node claims from. A block
/// spanned by two ranges of the set is numbered once per range.
#[derive(Clone, Debug)]
pub struct SetBlocks {
    /// Per range: its first block's address and how many blocks it spans.
    runs: Vec<(IpAddr, u128)>,
    size: u32,
}

impl SetBlocks {
    pub fn new(set: &RangeSet, size: u32) -> Self {
        let runs = set
            .0
            .iter()
            .map(|r| {
                let first = base_of(r.start, size);
                let last = base_of(r.end, size);
                let count = (addr::to_u128(last) - addr::to_u128(first)) / u128::from(size) + 1;
                (first, count)
            })
            .collect();
        SetBlocks { runs, size }
    }

    /// Number of blocks (saturating: an IPv6 /64 spans 2^58 blocks of 64).
    pub fn len(&self) -> u128 {
        self.runs
            .iter()
            .fold(0u128, |a, (_, c)| a.saturating_add(*c))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block numbered `i` (< len), with the range it belongs to and how
    /// many blocks of that range follow it (itself included).
    pub fn nth(&self, mut i: u128) -> Option<(IpAddr, usize, u128)> {
        for (r, (first, count)) in self.runs.iter().enumerate() {
            if i < *count {
                let n = addr::to_u128(*first) + i * u128::from(self.size);
                return Some((addr::from_u128(*first, n), r, count - i));
            }
            i -= count;
        }
        None
    }

    /// The blocks of a scan from block number `start` round the whole set
    /// once, in windows of at most `max` consecutive blocks of one range:
    /// each window as the list of its blocks' first addresses.
    pub fn windows(&self, start: u128, max: u128) -> impl Iterator<Item = Vec<IpAddr>> + '_ {
        let n = self.len();
        let (mut i, mut scanned) = (start % n.max(1), 0u128);
        std::iter::from_fn(move || {
            if scanned >= n {
                return None;
            }
            let (first, _, left) = self.nth(i).expect("i < len");
            let take = left.min(max).min(n - scanned);
            scanned += take;
            i = (i + take) % n;
            let f = addr::to_u128(first);
            Some(
                (0..take)
                    .map(|j| addr::from_u128(first, f + j * u128::from(self.size)))
                    .collect(),
            )
        })
    }

    /// The number of the block starting at `base` (its first occurrence).
    pub fn index_of(&self, base: IpAddr) -> Option<u128> {
        let mut before = 0u128;
        for (first, count) in &self.runs {
            if addr::same_family(*first, base) {
                let (f, b) = (addr::to_u128(*first), addr::to_u128(base));
                if b >= f
                    && (b - f) % u128::from(self.size) == 0
                    && (b - f) / u128::from(self.size) < *count
                {
                    return Some(before + (b - f) / u128::from(self.size));
                }
            }
            before = before.saturating_add(*count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IpamConfig;
    use cni_proto::SpecVersion;
    use proptest::prelude::*;
    use serde_json::json;

    fn cfg(ipam: serde_json::Value) -> IpamConfig {
        crate::config::load_ipam(SpecVersion::V1_0_0, &ipam).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_of_a_set() {
        let c = cfg(json!({"ranges": [[
            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.130",
             "exclude": ["10.0.0.64/30"]},
            {"subnet": "10.9.0.0/28"}]]}));
        let set = &c.ranges[0];
        let b = SetBlocks::new(set, 64);
        assert_eq!(b.len(), 4, "10.0.0.0, .64, .128 and 10.9.0.0");
        assert_eq!(b.nth(0), Some((ip("10.0.0.0"), 0, 3)));
        assert_eq!(b.nth(2), Some((ip("10.0.0.128"), 0, 1)));
        assert_eq!(b.nth(3), Some((ip("10.9.0.0"), 1, 1)));
        assert_eq!(b.nth(4), None);
        assert_eq!(b.index_of(ip("10.9.0.0")), Some(3));
        let w: Vec<Vec<IpAddr>> = b.windows(1, 2).collect();
        assert_eq!(
            w,
            [
                vec![ip("10.0.0.64"), ip("10.0.0.128")],
                vec![ip("10.9.0.0")],
                vec![ip("10.0.0.0")]
            ],
            "from block 1, at most 2, never across ranges, once round"
        );
        assert_eq!(b.index_of(ip("10.0.0.64")), Some(1));
        assert_eq!(b.index_of(ip("10.0.0.65")), None);
        assert_eq!(b.index_of(ip("10.0.1.0")), None);
        let first: Vec<IpAddr> = usable_in(set, ip("10.0.0.0"), 64).take(2).collect();
        assert_eq!(first, [ip("10.0.0.10"), ip("10.0.0.11")]);
        assert_eq!(
            usable_in(set, ip("10.0.0.64"), 64).next(),
            Some(ip("10.0.0.68"))
        );
        assert_eq!(usable_in(set, ip("10.0.0.128"), 64).count(), 3);
        // The /28's gateway (.1) and its network and broadcast addresses.
        assert_eq!(usable_in(set, ip("10.9.0.0"), 64).count(), 13);
        assert_eq!(base_of(ip("10.0.0.77"), 64), ip("10.0.0.64"));
        assert_eq!(last_of(ip("10.0.0.64"), 64), ip("10.0.0.127"));
    }

    proptest! {
        #[test]
        fn every_usable_address_is_in_a_numbered_block(a: u32, len in 16u8..30, k in 2u32..12) {
            let size = 1u32 << k;
            let net = ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc();
            let c = cfg(json!({"subnet": net.to_string()}));
            let set = &c.ranges[0];
            let b = SetBlocks::new(set, size);
            let r = &set.0[0];
            for n in [addr::to_u128(r.start), addr::to_u128(r.end)] {
                let ip = addr::from_u128(r.start, n);
                let i = b.index_of(base_of(ip, size)).unwrap();
                prop_assert_eq!(b.nth(i).unwrap().0, base_of(ip, size));
                prop_assert_eq!(usable(set, ip), ip != r.gateway);
            }
        }
    }
}
