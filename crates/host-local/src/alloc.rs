//! Allocation: the operations (ADD, DEL, CHECK, GC, STATUS) on the store
//! trait; which address a range set hands out next is `candidates`.
//!
//! Over 600 lines only by its unit tests (from `mod tests` on, about 270 lines).

use std::collections::HashSet;
use std::net::IpAddr;

use cni_proto::{CniResult, IpConfig};
use ipnet::IpNet;

use crate::config::{IpamConfig, Range};
use crate::error::{Error, Failure, Result, StoreError, Teardown};
use crate::store::{Attachment, AttachmentSet, Entry, Owner, Pick, Session, Store};

mod candidates;

pub use candidates::Candidates;

/// The result entry for an address of `range`.
fn ip_config(ip: IpAddr, range: &Range) -> IpConfig {
    IpConfig {
        address: IpNet::new(ip, range.subnet.prefix_len()).expect("prefix of a valid subnet"),
        gateway: Some(range.gateway),
        interface: None,
    }
}

/// Sessions ADD starts before it gives up on a contended backend (each lost
/// race means another ADD got an address, so the store is making progress).
pub const MAX_ATTEMPTS: u32 = 8;

/// ADD: one address per range set, requested ones where given, all or
/// nothing. Reads and picks in a session and commits the picks; when the
/// commit conflicts (an address was taken since it was read: never on disk,
/// where the session holds the lock), backs off and picks again in a new
/// session, at most [`MAX_ATTEMPTS`] times. Reports success only once the
/// commit is durable; when making it durable fails, takes the reservations
/// back.
pub fn add(cfg: &IpamConfig, store: &mut dyn Store, att: &Attachment) -> Result<CniResult> {
    let mut lost = Vec::new();
    let mut spread = Spread::new();
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            spread.backoff(attempt);
        }
        let (result, picks, committed) = {
            let mut s = store.add_session(att, cfg.ranges.len())?;
            let (result, picks) = pick(cfg, s.as_mut(), att, &mut spread, lost.len())?;
            match s.commit(att, &picks) {
                Ok(c) => (result, picks, c),
                Err(StoreError::Conflict { ip }) => {
                    lost.push(ip);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        // The session (the disk store's lock) is gone: finish durability.
        if let Err(e) = committed.finish() {
            return Err(Error::NotDurable {
                network: cfg.network.clone(),
                source: e,
                rollback: take_back(store, att, &picks),
            });
        }
        return Ok(result);
    }
    Err(Error::Contended {
        network: cfg.network.clone(),
        attempts: MAX_ATTEMPTS,
        ip: *lost.last().expect("every attempt lost an address"),
    })
}

/// How ADDs that lost a race spread out: a number that differs between
/// processes and calls (not cryptographic), for the backoff's jitter and
/// for which free address to take after a lost race.
struct Spread(u64);

impl Spread {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Spread(t ^ u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next number (splitmix64).
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Sleeps before attempt `attempt` (1..): exponential from 1 ms, capped at
    /// 64 ms, with up to as much again of jitter so racing ADDs spread out.
    fn backoff(&mut self, attempt: u32) {
        let base = 1000u64 << attempt.min(6);
        std::thread::sleep(std::time::Duration::from_micros(base + self.next() % base));
    }

    /// After `lost` lost races, how many free candidates to choose among:
    /// ADDs that keep reading the same cursor would otherwise all chase the
    /// same next address, one winner per round (1, 2, 4, ... at most 16).
    fn choices(lost: usize) -> usize {
        1 << lost.min(4)
    }

    /// One of `free` (not empty) at random.
    fn choose(&mut self, free: &[IpAddr]) -> IpAddr {
        free[(self.next() % free.len() as u64) as usize]
    }
}

/// Releases the picks of a commit that could not be made durable; every
/// failure is returned (an empty list: all taken back).
fn take_back(store: &mut dyn Store, att: &Attachment, picks: &[Pick]) -> Vec<Failure> {
    let mut s = match store.session() {
        Ok(s) => s,
        Err(e) => {
            return vec![Failure {
                what: "open a session".into(),
                source: e,
            }]
        }
    };
    let owner = att.owner();
    let mut failures = Vec::new();
    for p in picks {
        let entry = Entry::new(p.ip, owner.clone());
        if let Err(e) = s.release(&entry) {
            failures.push(Failure {
                what: format!("release {}", p.ip),
                source: e,
            });
        }
    }
    failures
}

/// The picks of one ADD attempt and the result they make, read from `s`.
/// After `lost` lost races, the address of a range set is chosen at random
/// among its first few free candidates ([`Spread::choices`]).
fn pick(
    cfg: &IpamConfig,
    s: &mut dyn Session,
    att: &Attachment,
    spread: &mut Spread,
    lost: usize,
) -> Result<(CniResult, Vec<Pick>)> {
    let (id, ifname) = (att.id(), att.ifname());
    let existing = s.find(att)?;
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
            if let Some(held) = s.owner_of(ip)? {
                return Err(Error::Unavailable {
                    ip,
                    set_index: idx,
                    reason: format!(
                        "requested IP address {ip} is not available in range set {set}: reserved by {}",
                        held.owner
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
        let free = s.next_free(idx, set, Spread::choices(lost))?;
        let found = match free.len() {
            0 => None,
            1 => Some(free[0]),
            _ => Some(spread.choose(&free)),
        }
        .and_then(|ip| Some((ip, set.0.iter().position(|r| r.contains(ip))?)));
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
    Ok((result, picks))
}

/// DEL: releases every reservation of the attachment (and, when there are
/// none, old-format files holding the container ID alone). Idempotent. Keeps
/// going past a failed release and reports every failure.
pub fn del(cfg: &IpamConfig, store: &mut dyn Store, att: &Attachment) -> Result<()> {
    let mut s = store.session()?;
    let found = s.find(att)?;
    let exact: Vec<&Entry> = found
        .iter()
        .filter(|e| matches!(e.owner, Owner::Attachment { .. }))
        .collect();
    let targets: Vec<&Entry> = if exact.is_empty() {
        found.iter().collect()
    } else {
        exact
    };
    let failures = s.release_all(&targets);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Teardown {
            op: Teardown::Del,
            network: cfg.network.clone(),
            failures,
        })
    }
}

/// CHECK: every range set holds a reservation for the attachment, and
/// prevResult's addresses (those inside our range sets) are exactly them.
pub fn check(
    cfg: &IpamConfig,
    store: &mut dyn Store,
    att: &Attachment,
    prev: Option<&CniResult>,
) -> Result<()> {
    let (id, ifname) = (att.id(), att.ifname());
    let found = store.session()?.find(att)?;
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

/// GC: removes every reservation whose attachment is not in `valid`;
/// damaged reservations are reclaimed. Keeps going past errors and reports
/// every one; else returns what it removed.
pub fn gc(
    cfg: &IpamConfig,
    store: &mut dyn Store,
    valid: &[ValidAttachment],
) -> Result<Vec<Entry>> {
    let mut s = store.session()?;
    let entries = s.list_collectable()?;
    let mut keep = AttachmentSet::default();
    for v in valid {
        keep.insert(&v.container_id, &v.ifname);
    }
    let (mut removed, mut failures) = (Vec::new(), Vec::new());
    for e in entries {
        if keep.holds(&e.owner) {
            continue;
        }
        match s.release(&e) {
            Ok(true) => removed.push(e),
            Ok(false) => {}
            Err(err) => failures.push(Failure {
                what: format!("release {}", e.ip),
                source: err,
            }),
        }
    }
    if failures.is_empty() {
        Ok(removed)
    } else {
        Err(Error::Teardown {
            op: Teardown::Gc,
            network: cfg.network.clone(),
            failures,
        })
    }
}

/// STATUS: every range set can hand out an address ([`Session::has_free`]:
/// on disk cheap while the store holds fewer reservations than a set's
/// capacity, otherwise a probe).
/// Store failures are reported as [`Error::for_status`] says.
pub fn status(cfg: &IpamConfig, store: &mut dyn Store) -> Result<()> {
    status_of(cfg, store).map_err(Error::for_status)
}

fn status_of(cfg: &IpamConfig, store: &mut dyn Store) -> Result<()> {
    let mut s = store.session()?;
    s.writable()?;
    for (idx, set) in cfg.ranges.iter().enumerate() {
        if !s.has_free(idx, set)? {
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
    use serde_json::json;

    fn cfg(ipam: serde_json::Value) -> IpamConfig {
        crate::config::load_ipam(SpecVersion::V1_0_0, &ipam).unwrap()
    }

    fn att(id: &str, ifname: &str) -> Attachment {
        Attachment::parse(id, ifname).unwrap()
    }

    #[test]
    fn add_del_round_robin() {
        let c = cfg(json!({"subnet": "10.0.0.0/29"}));
        let mut st = MemoryStore::new();
        let r = add(&c, &mut st, &att("a", "eth0")).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/29");
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.0.0.1");
        del(&c, &mut st, &att("a", "eth0")).unwrap();
        let r = add(&c, &mut st, &att("b", "eth0")).unwrap();
        assert_eq!(
            r.ips[0].address.to_string(),
            "10.0.0.3/29",
            "round robin continues after the cursor"
        );
        del(&c, &mut st, &att("zzz", "eth0")).unwrap();
        del(&c, &mut st, &att("zzz", "eth0")).unwrap();
    }

    #[test]
    fn exhaustion_and_duplicates() {
        let c = cfg(json!({"subnet": "10.0.0.0/30"}));
        let mut st = MemoryStore::new();
        add(&c, &mut st, &att("a", "eth0")).unwrap();
        let e = add(&c, &mut st, &att("a", "eth0")).unwrap_err();
        assert!(matches!(e, Error::Duplicate { .. }), "{e}");
        let e = add(&c, &mut st, &att("b", "eth0")).unwrap_err();
        assert!(matches!(e, Error::Exhausted { set_index: 0, .. }), "{e}");
        assert!(e.to_string().contains("10.0.0.1-10.0.0.2"), "{e}");
        let e = status(&c, &mut st).unwrap_err();
        assert_eq!(e.code(), 50);
    }

    #[test]
    fn add_is_all_or_nothing() {
        let c = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.1.0/30"}]]}));
        let mut st = MemoryStore::new();
        add(&c, &mut st, &att("a", "eth0")).unwrap();
        let e = add(&c, &mut st, &att("b", "eth0")).unwrap_err();
        assert!(matches!(e, Error::Exhausted { set_index: 1, .. }), "{e}");
        assert_eq!(st.reservations.len(), 2, "b's first address was not kept");
        assert_eq!(
            st.cursors[&0].to_string(),
            "10.0.0.2",
            "cursor of a failed ADD is not advanced"
        );
    }

    #[test]
    fn a_lost_race_picks_again() {
        let c = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/120"}]]}));
        let mut st = MemoryStore::new();
        // Another writer takes the address this ADD picked, after its reads.
        st.race.push_back("fd00::2".parse().unwrap());
        let r = add(&c, &mut st, &att("a", "eth0")).unwrap();
        let got: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
        // After one lost race, one of the first two free addresses of each set.
        assert!(
            ["10.0.0.2/24", "10.0.0.3/24"].contains(&got[0].as_str()),
            "{got:?}"
        );
        assert!(
            ["fd00::3/120", "fd00::4/120"].contains(&got[1].as_str()),
            "{got:?}"
        );
        assert_eq!(st.reservations.len(), 3, "the racer's, and a's two");
        assert!(st.race.is_empty());
    }

    #[test]
    fn losing_every_race_gives_up_with_try_again_later() {
        let c = cfg(json!({"subnet": "10.0.0.0/24"}));
        let mut st = MemoryStore::new();
        st.race_picked = MAX_ATTEMPTS + 1;
        let e = add(&c, &mut st, &att("a", "eth0")).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Contended {
                    attempts: MAX_ATTEMPTS,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.code(), cni_proto::code::TRY_AGAIN_LATER, "{e}");
        assert_eq!(st.race_picked, 1, "one race per attempt, no more");
        assert!(st
            .reservations
            .values()
            .all(|e| e.owner.container_id() == Some("racer")));
    }

    #[test]
    fn after_lost_races_the_pick_spreads_over_more_free_addresses() {
        assert_eq!(
            (0..6).map(Spread::choices).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 16]
        );
        let c = cfg(json!({"subnet": "10.0.0.0/24"}));
        let mut seen = HashSet::new();
        for _ in 0..64 {
            let mut st = MemoryStore::new();
            st.race_picked = 3;
            let r = add(&c, &mut st, &att("a", "eth0")).unwrap();
            let ip = r.ips[0].address.addr();
            assert!(!st.reservations[&ip].owner.belongs_to("racer", "eth0"));
            seen.insert(ip);
        }
        assert!(seen.len() > 1, "always the same address: {seen:?}");
    }

    #[test]
    fn a_requested_address_lost_to_a_race_is_unavailable() {
        let mut c = cfg(json!({"subnet": "10.0.0.0/24"}));
        c.requested = vec!["10.0.0.9".parse().unwrap()];
        let mut st = MemoryStore::new();
        st.race.push_back("10.0.0.9".parse().unwrap());
        let e = add(&c, &mut st, &att("a", "eth0")).unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        assert!(e.to_string().contains("reserved by racer eth0"), "{e}");
    }

    #[test]
    fn a_failed_finish_reports_the_failed_rollback_too() {
        let c = cfg(json!({"subnet": "10.0.0.0/24"}));
        let mut st = MemoryStore::new();
        st.fail_finish = true;
        let e = add(&c, &mut st, &att("a", "eth0")).unwrap_err();
        assert!(
            matches!(&e, Error::NotDurable { rollback, .. } if rollback.is_empty()),
            "{e}"
        );
        assert!(st.reservations.is_empty(), "taken back");
        assert_eq!(e.code(), cni_proto::code::IO);
        // The one write allowed is the reservation: releasing it fails too.
        let mut st = MemoryStore::new();
        st.fail_finish = true;
        st.fail_after = Some(1);
        let e = add(&c, &mut st, &att("a", "eth0")).unwrap_err();
        let Error::NotDurable { rollback, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(rollback.len(), 1, "{e}");
        assert!(e.to_string().contains("release 10.0.0.2"), "{e}");
        assert!(
            e.to_string().contains("injected failure: durability"),
            "{e}"
        );
        assert_eq!(
            st.reservations.len(),
            1,
            "what could not be taken back stays"
        );
    }

    #[test]
    fn del_and_gc_keep_going_and_report_every_failure() {
        let c = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/120"}]]}));
        let mut st = MemoryStore::new();
        add(&c, &mut st, &att("a", "eth0")).unwrap();
        add(&c, &mut st, &att("b", "eth0")).unwrap();
        let gone = "10.0.0.99".parse().unwrap();
        st.reservations
            .insert(gone, Entry::new(gone, Owner::Legacy { id: "gone".into() }));
        // Every write from now on fails.
        st.fail_after = Some(0);
        let e = del(&c, &mut st, &att("a", "eth0")).unwrap_err();
        let Error::Teardown { op, failures, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(*op, Teardown::Del);
        let what: Vec<&str> = failures.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(what, ["release 10.0.0.2", "release fd00::2"], "{e}");
        assert_eq!(e.code(), cni_proto::code::IO);
        assert!(
            e.to_string()
                .starts_with("DEL left 2 problem(s) in store n: "),
            "{e}"
        );
        let e = gc(&c, &mut st, &[]).unwrap_err();
        let Error::Teardown { failures, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(failures.len(), 5, "every reservation, not only the first");
        assert!(
            matches!(
                e,
                Error::Teardown {
                    op: Teardown::Gc,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("release 10.0.0.99: memory store"),
            "{e}"
        );
        assert_eq!(st.reservations.len(), 5, "nothing removed");
    }

    #[test]
    fn requested_addresses() {
        let mut c = cfg(json!({"subnet": "10.0.0.0/24", "exclude": ["10.0.0.50"]}));
        let mut st = MemoryStore::new();
        c.requested = vec!["10.0.0.9".parse().unwrap()];
        let r = add(&c, &mut st, &att("a", "eth0")).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.9/24");
        let e = add(&c, &mut st, &att("b", "eth0")).unwrap_err();
        assert!(e.to_string().contains("reserved by a eth0"), "{e}");
        c.requested = vec!["10.0.0.1".parse().unwrap()];
        assert!(add(&c, &mut st, &att("b", "eth0"))
            .unwrap_err()
            .to_string()
            .contains("gateway"));
        c.requested = vec!["10.0.0.50".parse().unwrap()];
        assert!(add(&c, &mut st, &att("b", "eth0"))
            .unwrap_err()
            .to_string()
            .contains("excluded"));
        c.requested = vec!["10.9.0.50".parse().unwrap()];
        let e = add(&c, &mut st, &att("b", "eth0")).unwrap_err();
        assert!(matches!(e, Error::Unplaced { .. }), "{e}");
        assert_eq!(st.session().unwrap().count().unwrap(), 1);
    }

    #[test]
    fn unconvertible_result_reserves_nothing() {
        // A route carrying a 1.1.0-only field cannot be written in 1.0.0 (the
        // config loader drops them below 1.1.0; a caller may still set them).
        let ipam = json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "::/0"}]});
        let mut c = crate::config::load_ipam(SpecVersion::V1_0_0, &ipam).unwrap();
        c.routes[0].mtu = Some(1400);
        let mut st = MemoryStore::new();
        let e = add(&c, &mut st, &att("a", "eth0")).unwrap_err();
        assert_eq!(e.code(), cni_proto::code::INCOMPATIBLE_VERSION, "{e}");
        assert!(st.reservations.is_empty() && st.cursors.is_empty());
    }

    #[test]
    fn check_and_gc() {
        let c = cfg(json!({"subnet": "10.0.0.0/24"}));
        let mut st = MemoryStore::new();
        let (old, bad) = ("10.0.0.77".parse().unwrap(), "10.0.0.78".parse().unwrap());
        st.reservations
            .insert(old, Entry::new(old, Owner::Legacy { id: "old".into() }));
        st.reservations.insert(bad, Entry::damaged(bad, "empty"));
        let r = add(&c, &mut st, &att("a", "eth0")).unwrap();
        add(&c, &mut st, &att("b", "eth0")).unwrap();
        check(&c, &mut st, &att("a", "eth0"), Some(&r)).unwrap();
        let e = check(&c, &mut st, &att("a", "eth1"), None).unwrap_err();
        assert!(matches!(e, Error::NotReserved { .. }));
        let mut other = r.clone();
        other.ips[0].address = "10.0.0.200/24".parse().unwrap();
        assert!(matches!(
            check(&c, &mut st, &att("a", "eth0"), Some(&other)).unwrap_err(),
            Error::Mismatch { .. }
        ));
        let valid = vec![ValidAttachment {
            container_id: "a".into(),
            ifname: "eth0".into(),
        }];
        let removed = gc(&c, &mut st, &valid).unwrap();
        assert_eq!(removed.len(), 3, "b, the legacy file and the damaged one");
        assert_eq!(st.session().unwrap().count().unwrap(), 1);
    }
}
