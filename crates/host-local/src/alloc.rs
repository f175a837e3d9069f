//! Allocation: which address each range set hands out, and the operations
//! (ADD, DEL, CHECK, GC, STATUS) on a store session.

use std::collections::HashSet;
use std::net::IpAddr;

use cni_proto::{CniResult, IpConfig};
use ipnet::IpNet;

use crate::addr;
use crate::config::{IpamConfig, Range, RangeSet};
use crate::error::{Error, Result};
use crate::store::{Entry, Owner, Pick, Session};

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

/// The result entry for an address of `range`.
fn ip_config(ip: IpAddr, range: &Range) -> IpConfig {
    IpConfig {
        address: IpNet::new(ip, range.subnet.prefix_len()).expect("prefix of a valid subnet"),
        gateway: Some(range.gateway),
        interface: None,
    }
}

fn store_err(cfg: &IpamConfig, source: crate::error::StoreError) -> Error {
    Error::Store {
        network: cfg.network.clone(),
        source,
    }
}

/// ADD: one address per range set, requested ones where given, all or nothing.
pub fn add(cfg: &IpamConfig, s: &mut dyn Session, id: &str, ifname: &str) -> Result<CniResult> {
    let existing = s.find(id, ifname).map_err(|e| store_err(cfg, e))?;
    let mut requested: Vec<IpAddr> = Vec::new();
    for ip in &cfg.requested {
        if !requested.contains(ip) {
            requested.push(*ip);
        }
    }
    let mut picks = Vec::with_capacity(cfg.ranges.len());
    let mut ips = Vec::with_capacity(cfg.ranges.len());
    for (idx, set) in cfg.ranges.iter().enumerate() {
        if let Some(pos) = requested.iter().position(|ip| set.contains(*ip)) {
            let ip = requested.remove(pos);
            let range = set.range_for(ip).expect("contains checked");
            if ip == range.gateway {
                return Err(Error::Unavailable {
                    ip,
                    set_index: idx,
                    reason: format!("requested ip {ip} is subnet's gateway (range {range})"),
                });
            }
            if range.is_excluded(ip) {
                return Err(Error::Unavailable {
                    ip,
                    set_index: idx,
                    reason: format!(
                        "requested IP address {ip} is not available in range set {set}: excluded in range {range}"
                    ),
                });
            }
            if let Some(owner) = s.owner_of(ip).map_err(|e| store_err(cfg, e))? {
                return Err(Error::Unavailable {
                    ip,
                    set_index: idx,
                    reason: format!(
                        "requested IP address {ip} is not available in range set {set}: reserved by {owner}"
                    ),
                });
            }
            picks.push(Pick { ip, set_index: idx });
            ips.push(ip_config(ip, range));
            continue;
        }
        if let Some(e) = existing.iter().find(|e| set.contains(e.ip)) {
            return Err(Error::Duplicate {
                ip: e.ip,
                set_index: idx,
                container: id.to_string(),
                ifname: ifname.to_string(),
            });
        }
        let cursor = s.cursor(idx).map_err(|e| store_err(cfg, e))?;
        let mut found = None;
        for (ip, r) in Candidates::new(set, cursor) {
            if !s.is_reserved(ip).map_err(|e| store_err(cfg, e))? {
                found = Some((ip, r));
                break;
            }
        }
        let Some((ip, r)) = found else {
            return Err(Error::Exhausted {
                set_index: idx,
                set: set.to_string(),
            });
        };
        picks.push(Pick { ip, set_index: idx });
        ips.push(ip_config(ip, &set.0[r]));
    }
    if !requested.is_empty() {
        return Err(Error::Unplaced {
            ips: requested
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        });
    }
    let result = CniResult {
        interfaces: Vec::new(),
        ips,
        routes: cfg.routes.clone(),
        dns: Default::default(),
    };
    // A result the request's version cannot express (below 1.1.0: a route with
    // 1.1.0-only fields) must fail before anything is reserved.
    result.to_wire(cfg.version).map_err(|e| Error::Convert {
        version: cfg.version.as_str(),
        reason: e.to_string(),
    })?;
    s.reserve(id, ifname, &picks).map_err(|e| match e {
        crate::error::StoreError::Taken { ip } => {
            let set_index = picks.iter().find(|p| p.ip == ip).map_or(0, |p| p.set_index);
            Error::Unavailable {
                ip,
                set_index,
                reason: format!(
                    "IP address {ip} was reserved concurrently by a process that ignores the lock"
                ),
            }
        }
        other => store_err(cfg, other),
    })?;
    Ok(result)
}

/// DEL: releases every reservation of the attachment (and, when there are
/// none, old-format files holding the container ID alone). Idempotent.
pub fn del(cfg: &IpamConfig, s: &mut dyn Session, id: &str, ifname: &str) -> Result<()> {
    let found = s.find(id, ifname).map_err(|e| store_err(cfg, e))?;
    let exact: Vec<&Entry> = found
        .iter()
        .filter(|e| matches!(e.owner, Owner::Attachment { .. }))
        .collect();
    let targets: Vec<&Entry> = if exact.is_empty() {
        found.iter().collect()
    } else {
        exact
    };
    let mut errors = Vec::new();
    for e in targets {
        if let Err(err) = s.release(e) {
            errors.push(err);
        }
    }
    match errors.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(store_err(cfg, first)),
    }
}

/// CHECK: every range set holds a reservation for the attachment, and
/// prevResult's addresses (those inside our range sets) are exactly them.
pub fn check(
    cfg: &IpamConfig,
    s: &mut dyn Session,
    id: &str,
    ifname: &str,
    prev: Option<&CniResult>,
) -> Result<()> {
    let found = s.find(id, ifname).map_err(|e| store_err(cfg, e))?;
    let mut reserved = Vec::new();
    for (idx, set) in cfg.ranges.iter().enumerate() {
        let mine: Vec<IpAddr> = found
            .iter()
            .filter(|e| set.contains(e.ip))
            .map(|e| e.ip)
            .collect();
        if mine.is_empty() {
            return Err(Error::NotReserved {
                container: id.to_string(),
                ifname: ifname.to_string(),
                set_index: idx,
                set: set.to_string(),
            });
        }
        reserved.extend(mine);
    }
    if let Some(prev) = prev {
        let in_sets = |ip: &IpAddr| cfg.ranges.iter().any(|s| s.contains(*ip));
        let prev_ips: HashSet<IpAddr> = prev
            .ips
            .iter()
            .map(|c| c.address.addr())
            .filter(in_sets)
            .collect();
        let reserved: HashSet<IpAddr> = reserved.into_iter().collect();
        let mut missing: Vec<String> = reserved
            .difference(&prev_ips)
            .map(|i| i.to_string())
            .collect();
        let mut extra: Vec<String> = prev_ips
            .difference(&reserved)
            .map(|i| i.to_string())
            .collect();
        missing.sort();
        extra.sort();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!(
                    "reserved but not in prevResult: {}",
                    missing.join(", ")
                ));
            }
            if !extra.is_empty() {
                parts.push(format!(
                    "in prevResult but not reserved for it: {}",
                    extra.join(", ")
                ));
            }
            return Err(Error::Mismatch {
                container: id.to_string(),
                ifname: ifname.to_string(),
                reason: parts.join("; "),
            });
        }
    }
    Ok(())
}

/// One attachment the runtime still considers valid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValidAttachment {
    pub container_id: String,
    pub ifname: String,
}

/// What GC did.
#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<Entry>,
    pub errors: Vec<String>,
}

/// GC: removes every reservation whose attachment is not in `valid`;
/// damaged reservations are reclaimed. Keeps going past errors.
pub fn gc(cfg: &IpamConfig, s: &mut dyn Session, valid: &[ValidAttachment]) -> Result<GcReport> {
    let entries = s.list().map_err(|e| store_err(cfg, e))?;
    let exact: HashSet<(&str, &str)> = valid
        .iter()
        .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
        .collect();
    let ids: HashSet<&str> = valid.iter().map(|v| v.container_id.as_str()).collect();
    let mut report = GcReport::default();
    for e in entries {
        let keep = match &e.owner {
            Owner::Attachment { id, ifname } => exact.contains(&(id.as_str(), ifname.as_str())),
            Owner::Legacy { id } => ids.contains(id.as_str()),
            Owner::Damaged { .. } => false,
        };
        if keep {
            continue;
        }
        match s.release(&e) {
            Ok(true) => report.removed.push(e),
            Ok(false) => {}
            Err(err) => report.errors.push(format!("{}: {err}", e.ip)),
        }
    }
    Ok(report)
}

/// STATUS: every range set can hand out an address. Cheap when the store
/// holds fewer reservations than a set's capacity; otherwise probes.
pub fn status(cfg: &IpamConfig, s: &mut dyn Session) -> Result<()> {
    s.writable().map_err(|e| store_err(cfg, e))?;
    let count = s.count().map_err(|e| store_err(cfg, e))?;
    for (idx, set) in cfg.ranges.iter().enumerate() {
        if u128::from(count) < set.capacity() {
            continue;
        }
        let cursor = s.cursor(idx).map_err(|e| store_err(cfg, e))?;
        let mut free = false;
        for (ip, _) in Candidates::new(set, cursor) {
            if !s.is_reserved(ip).map_err(|e| store_err(cfg, e))? {
                free = true;
                break;
            }
        }
        if !free {
            return Err(Error::NotAvailable {
                reason: format!("range set {idx} ({set}) has no free address"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use cni_proto::SpecVersion;
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

    #[test]
    fn add_del_round_robin() {
        let c = cfg(json!({"subnet": "10.0.0.0/29"}));
        let mut st = MemoryStore::new();
        let mut s = st.session().unwrap();
        let r = add(&c, s.as_mut(), "a", "eth0").unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/29");
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.0.0.1");
        del(&c, s.as_mut(), "a", "eth0").unwrap();
        let r = add(&c, s.as_mut(), "b", "eth0").unwrap();
        assert_eq!(
            r.ips[0].address.to_string(),
            "10.0.0.3/29",
            "round robin continues after the cursor"
        );
        del(&c, s.as_mut(), "zzz", "eth0").unwrap();
        del(&c, s.as_mut(), "zzz", "eth0").unwrap();
    }

    #[test]
    fn exhaustion_and_duplicates() {
        let c = cfg(json!({"subnet": "10.0.0.0/30"}));
        let mut st = MemoryStore::new();
        let mut s = st.session().unwrap();
        add(&c, s.as_mut(), "a", "eth0").unwrap();
        let e = add(&c, s.as_mut(), "a", "eth0").unwrap_err();
        assert!(matches!(e, Error::Duplicate { .. }), "{e}");
        let e = add(&c, s.as_mut(), "b", "eth0").unwrap_err();
        assert!(matches!(e, Error::Exhausted { set_index: 0, .. }), "{e}");
        assert!(e.to_string().contains("10.0.0.1-10.0.0.2"), "{e}");
        let e = status(&c, s.as_mut()).unwrap_err();
        assert_eq!(e.code(), 50);
    }

    #[test]
    fn add_is_all_or_nothing() {
        let c = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.1.0/30"}]]}));
        let mut st = MemoryStore::new();
        {
            let mut s = st.session().unwrap();
            add(&c, s.as_mut(), "a", "eth0").unwrap();
            let e = add(&c, s.as_mut(), "b", "eth0").unwrap_err();
            assert!(matches!(e, Error::Exhausted { set_index: 1, .. }), "{e}");
        }
        assert_eq!(st.reservations.len(), 2, "b's first address was not kept");
        assert_eq!(
            st.cursors[&0].to_string(),
            "10.0.0.2",
            "cursor of a failed ADD is not advanced"
        );
    }

    #[test]
    fn requested_addresses() {
        let mut c = cfg(json!({"subnet": "10.0.0.0/24", "exclude": ["10.0.0.50"]}));
        let mut st = MemoryStore::new();
        let mut s = st.session().unwrap();
        c.requested = vec!["10.0.0.9".parse().unwrap()];
        let r = add(&c, s.as_mut(), "a", "eth0").unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.9/24");
        let e = add(&c, s.as_mut(), "b", "eth0").unwrap_err();
        assert!(e.to_string().contains("reserved by a eth0"), "{e}");
        c.requested = vec!["10.0.0.1".parse().unwrap()];
        assert!(add(&c, s.as_mut(), "b", "eth0")
            .unwrap_err()
            .to_string()
            .contains("gateway"));
        c.requested = vec!["10.0.0.50".parse().unwrap()];
        assert!(add(&c, s.as_mut(), "b", "eth0")
            .unwrap_err()
            .to_string()
            .contains("excluded"));
        c.requested = vec!["10.9.0.50".parse().unwrap()];
        let e = add(&c, s.as_mut(), "b", "eth0").unwrap_err();
        assert!(matches!(e, Error::Unplaced { .. }), "{e}");
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn unconvertible_result_reserves_nothing() {
        // A route carrying a 1.1.0-only field cannot be written in 1.0.0 (the
        // config loader drops them below 1.1.0; a caller may still set them).
        let ipam = json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "::/0"}]});
        let mut c = crate::config::load_ipam(SpecVersion::V1_0_0, &ipam).unwrap();
        c.routes[0].mtu = Some(1400);
        let mut st = MemoryStore::new();
        {
            let mut s = st.session().unwrap();
            let e = add(&c, s.as_mut(), "a", "eth0").unwrap_err();
            assert_eq!(e.code(), cni_proto::code::INCOMPATIBLE_VERSION, "{e}");
        }
        assert!(st.reservations.is_empty() && st.cursors.is_empty());
    }

    #[test]
    fn check_and_gc() {
        let c = cfg(json!({"subnet": "10.0.0.0/24"}));
        let mut st = MemoryStore::new();
        st.reservations.insert(
            "10.0.0.77".parse().unwrap(),
            Owner::Legacy { id: "old".into() },
        );
        st.reservations.insert(
            "10.0.0.78".parse().unwrap(),
            Owner::Damaged {
                reason: "empty".into(),
            },
        );
        let mut s = st.session().unwrap();
        let r = add(&c, s.as_mut(), "a", "eth0").unwrap();
        add(&c, s.as_mut(), "b", "eth0").unwrap();
        check(&c, s.as_mut(), "a", "eth0", Some(&r)).unwrap();
        let e = check(&c, s.as_mut(), "a", "eth1", None).unwrap_err();
        assert!(matches!(e, Error::NotReserved { .. }));
        let mut other = r.clone();
        other.ips[0].address = "10.0.0.200/24".parse().unwrap();
        assert!(matches!(
            check(&c, s.as_mut(), "a", "eth0", Some(&other)).unwrap_err(),
            Error::Mismatch { .. }
        ));
        let valid = vec![ValidAttachment {
            container_id: "a".into(),
            ifname: "eth0".into(),
        }];
        let rep = gc(&c, s.as_mut(), &valid).unwrap();
        assert_eq!(
            rep.removed.len(),
            3,
            "b, the legacy file and the damaged one"
        );
        assert_eq!(s.count().unwrap(), 1);
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
