//! Which address a range set hands out next: the round-robin walk over
//! every address of every range of the set, from after the cursor.

use std::net::IpAddr;

use crate::addr;
use crate::config::{Range, RangeSet};

/// Round-robin candidates of one range set: every address of every range,
/// starting after `cursor` (when the cursor lies in the set) or at the first
/// range's start, wrapping once around the whole set, skipping each range's
/// gateway and exclusions.
pub struct Candidates<'a> {
    set: &'a RangeSet,
    range: usize,
    cur: u128,
    first: Option<(usize, u128)>,
    started: bool,
    done: bool,
}

impl<'a> Candidates<'a> {
    pub fn new(set: &'a RangeSet, cursor: Option<IpAddr>) -> Self {
        let start = cursor.and_then(|c| {
            let i = set.0.iter().position(|r| r.contains(c))?;
            let r = &set.0[i];
            Some(if addr::to_u128(c) >= addr::to_u128(r.end) {
                let j = (i + 1) % set.0.len();
                (j, addr::to_u128(set.0[j].start))
            } else {
                (i, addr::to_u128(c) + 1)
            })
        });
        let (range, cur) = start.unwrap_or((0, addr::to_u128(set.0[0].start)));
        Candidates {
            set,
            range,
            cur,
            first: None,
            started: false,
            done: false,
        }
    }

    fn advance(&mut self) {
        let r = &self.set.0[self.range];
        if self.cur >= addr::to_u128(r.end) {
            self.range = (self.range + 1) % self.set.0.len();
            self.cur = addr::to_u128(self.set.0[self.range].start);
        } else {
            self.cur += 1;
        }
    }

    /// Moves to the end of an exclusion interval (the next advance leaves it),
    /// noticing when the walk passes its own starting point.
    fn skip_to(&mut self, end: u128) {
        let r = &self.set.0[self.range];
        let target = end.min(addr::to_u128(r.end));
        if let Some((fr, fc)) = self.first {
            if fr == self.range && self.cur < fc && fc <= target {
                self.done = true;
                return;
            }
        }
        self.cur = target;
    }
}

impl Iterator for Candidates<'_> {
    /// The address and the range it belongs to.
    type Item = (IpAddr, usize);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.started {
                self.advance();
                if self.first == Some((self.range, self.cur)) {
                    self.done = true;
                    return None;
                }
            }
            self.started = true;
            if self.first.is_none() {
                self.first = Some((self.range, self.cur));
            }
            let r: &Range = &self.set.0[self.range];
            let ip = addr::from_u128(r.start, self.cur);
            if ip == r.gateway {
                continue;
            }
            if let Some((_, end)) = r.excluded_interval(ip) {
                self.skip_to(end);
                continue;
            }
            return Some((ip, self.range));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::IpamConfig;
    use cni_proto::SpecVersion;
    use ipnet::IpNet;
    use proptest::prelude::*;
    use serde_json::json;

    fn cfg(ipam: serde_json::Value) -> IpamConfig {
        crate::config::load_ipam(SpecVersion::V1_0_0, &ipam).unwrap()
    }

    fn walk(set: &RangeSet, cursor: Option<&str>) -> Vec<String> {
        Candidates::new(set, cursor.map(|c| c.parse().unwrap()))
            .map(|(ip, _)| ip.to_string())
            .collect()
    }

    #[test]
    fn candidates_skip_gateway_and_wrap() {
        let c = cfg(json!({"subnet": "10.0.0.0/29"}));
        assert_eq!(
            walk(&c.ranges[0], None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(
            walk(&c.ranges[0], Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        assert_eq!(
            walk(&c.ranges[0], Some("10.0.0.6")),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        // A cursor outside the set starts at the beginning.
        assert_eq!(walk(&c.ranges[0], Some("10.9.9.9")).len(), 5);
    }

    #[test]
    fn candidates_cross_ranges_and_exclusions() {
        let c = cfg(json!({"ranges": [[
            {"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.4", "exclude": ["10.0.0.5"]},
            {"subnet": "10.0.1.0/30"}
        ]]}));
        assert_eq!(
            walk(&c.ranges[0], None),
            ["10.0.0.4", "10.0.0.6", "10.0.1.2"]
        );
        assert_eq!(
            walk(&c.ranges[0], Some("10.0.0.6")),
            ["10.0.1.2", "10.0.0.4", "10.0.0.6"]
        );
    }

    proptest! {
        /// Walking a set visits each allocatable address exactly once, from
        /// any cursor, for IPv4 and IPv6 ranges at the edges of the space.
        #[test]
        fn walk_visits_each_address_once(
            v6 in any::<bool>(),
            base_hi in any::<bool>(),
            len in 2u128..40,
            start_off in 0u128..5,
            cursor_off in proptest::option::of(0u128..60),
            excl in proptest::option::of(0u128..40),
        ) {
            let prefix_bits: u8 = 6; // a /26 or /122 holds 64 addresses
            let (max, bits) = if v6 { (u128::MAX, 128u8) } else { (u128::from(u32::MAX), 32u8) };
            let base = if base_hi { max - 63 } else { 0 };
            let like: IpAddr = if v6 { "::".parse().unwrap() } else { "0.0.0.0".parse().unwrap() };
            let subnet = IpNet::new(addr::from_u128(like, base), bits - prefix_bits).unwrap();
            let start = base + 1 + start_off;
            let end = (start + len).min(base + 62);
            let mut r = json!({"subnet": subnet.to_string(),
                "rangeStart": addr::from_u128(like, start).to_string(),
                "rangeEnd": addr::from_u128(like, end).to_string()});
            if let Some(x) = excl {
                r["exclude"] = json!([addr::from_u128(like, base + 1 + x).to_string()]);
            }
            let c = cfg(json!({"ranges": [[r]]}));
            let set = &c.ranges[0];
            let cursor = cursor_off.map(|o| addr::from_u128(like, base + o));
            let got: Vec<IpAddr> = Candidates::new(set, cursor).map(|(ip, _)| ip).collect();
            let uniq: HashSet<IpAddr> = got.iter().copied().collect();
            prop_assert_eq!(uniq.len(), got.len());
            let expected: HashSet<IpAddr> = (start..=end)
                .map(|n| addr::from_u128(like, n))
                .filter(|ip| *ip != set.0[0].gateway && !set.0[0].is_excluded(*ip))
                .collect();
            prop_assert_eq!(uniq, expected.clone());
            prop_assert_eq!(got.len() as u128, set.capacity());
            if let Some(c) = cursor.filter(|c| set.contains(*c)) {
                // The first candidate is the next allocatable address after the cursor.
                let after = expected.iter().filter(|ip| addr::to_u128(**ip) > addr::to_u128(c)).min_by_key(|ip| addr::to_u128(**ip));
                let first = after.or_else(|| expected.iter().min_by_key(|ip| addr::to_u128(**ip)));
                prop_assert_eq!(got.first(), first);
            }
        }
    }
}
