//! Step 2 of an import, pure: from what etcd held ([`Snapshot`]) and the
//! disk store's reservations, the [`Plan`] (reservations to write, blocks
//! to claim with their `full` hints, the node's activity) or the
//! [`Refusal`] naming every address in the way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::{Holder, ImportRequest, Refusal};
use crate::addr;
use crate::config::RangeSet;
use crate::store::etcd::blocks::{self, base_of};
use crate::store::etcd::keys::{Activity, BlockRecord, Record};
use crate::store::etcd::page::Oversized;
use crate::store::{Entry, Owner};

/// The activity key's `op`.
pub const IMPORT_OP: &str = "import";

/// Whether some range set hands out `ip` (inside one of its ranges, not
/// that range's gateway, not excluded): what a block's `full` hint counts.
pub fn usable(sets: &[RangeSet], ip: IpAddr) -> bool {
    sets.iter().any(|s| blocks::usable(s, ip))
}

/// What etcd held before the import, where it writes (read from one revision).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Address keys in the blocks of the imported addresses.
    pub values: HashMap<IpAddr, Result<Vec<u8>, Oversized>>,
    /// Block claims of those blocks; None when unreadable (claimed by
    /// someone all the same).
    pub claims: HashMap<IpAddr, Option<BlockRecord>>,
    /// The node's activity key, when present and readable.
    pub activity: Option<Activity>,
}

/// One reservation to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReservation {
    pub ip: IpAddr,
    pub owner: Owner,
    /// The address key's value (the index keys hold the same bytes).
    pub value: Vec<u8>,
}

/// What the import will write, from [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub block_size: u32,
    /// Sorted by address (IPv4 first).
    pub new: Vec<NewReservation>,
    pub present: usize,
    /// Unclaimed blocks holding an imported address, with their claims.
    pub claims: Vec<(IpAddr, BlockRecord)>,
    pub borrowed: usize,
    pub activity: Activity,
    /// The activity key as it was (restored if the import is taken back).
    pub prior_activity: Option<Activity>,
}

/// Addresses in the order imports handle them: IPv4 first, then by value.
pub(super) fn sort_key(ip: &IpAddr) -> (bool, u128) {
    (ip.is_ipv6(), addr::to_u128(*ip))
}

/// The record the import writes for `owner` on `node` (None: damaged).
fn record(owner: &Owner, node: &str) -> Option<Record> {
    Some(Record {
        container_id: owner.container_id()?.to_string(),
        ifname: owner.ifname().map(str::to_string),
        node: Some(node.to_string()),
    })
}

/// Plans the import of `req` against `snap` (pure): the reservations to
/// write, the blocks to claim with their `full` hints, the activity to
/// record; or every address in the way.
pub fn plan(
    req: &ImportRequest<'_>,
    block_size: u32,
    snap: &Snapshot,
    now: u64,
) -> Result<Plan, Refusal> {
    let mut refusal = Refusal::default();
    let mut entries: Vec<&Entry> = req.entries.iter().collect();
    entries.sort_by_key(|e| sort_key(&e.ip));
    entries.dedup_by_key(|e| e.ip);
    let mut new = Vec::new();
    let mut present = 0;
    // Every imported address, new or present.
    let mut imported: BTreeSet<(bool, u128)> = BTreeSet::new();
    for e in entries {
        let Some(rec) = record(&e.owner, req.node) else {
            let why = e
                .damage
                .clone()
                .unwrap_or_else(|| "names no attachment".into());
            refusal.damaged.push((e.ip, why));
            continue;
        };
        if !req.sets.iter().any(|s| s.contains(e.ip)) {
            refusal.outside.push(e.ip);
            continue;
        }
        match snap.values.get(&e.ip) {
            None => new.push(NewReservation {
                ip: e.ip,
                owner: e.owner.clone(),
                value: rec.encode(),
            }),
            Some(found) => {
                let (owner, node) = match found {
                    Ok(v) => Record::decode(v),
                    Err(big) => (Err(big.to_string()), None),
                };
                match owner {
                    Ok(o) if o == e.owner && node.as_deref() == Some(req.node) => present += 1,
                    Ok(o) => refusal.held.push(Holder {
                        ip: e.ip,
                        owner: o,
                        node,
                        damage: None,
                    }),
                    Err(why) => refusal.held.push(Holder {
                        ip: e.ip,
                        owner: Owner::Damaged,
                        node,
                        damage: Some(why),
                    }),
                }
            }
        }
        imported.insert(sort_key(&e.ip));
    }
    if !refusal.is_empty() {
        return Err(refusal);
    }
    // Blocks holding an imported address, in address order.
    let mut blocks: BTreeMap<(bool, u128), (IpAddr, usize)> = BTreeMap::new();
    for n in &new {
        let b = base_of(n.ip, block_size);
        blocks.entry(sort_key(&b)).or_insert((b, 0)).1 += 1;
    }
    for &(v6, n) in &imported {
        let like = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        };
        let b = base_of(addr::from_u128(like, n), block_size);
        blocks.entry(sort_key(&b)).or_insert((b, 0));
    }
    let mut claims = Vec::new();
    let mut borrowed = 0;
    for (base, new_in_block) in blocks.into_values() {
        match snap.claims.get(&base) {
            Some(Some(c)) if c.node == req.node => {}
            Some(_) => borrowed += new_in_block,
            None => {
                let b = addr::to_u128(base);
                let full = (b..=b + (u128::from(block_size) - 1)).all(|a| {
                    let ip = addr::from_u128(base, a);
                    !usable(req.sets, ip)
                        || snap.values.contains_key(&ip)
                        || imported.contains(&sort_key(&ip))
                });
                claims.push((
                    base,
                    BlockRecord {
                        node: req.node.to_string(),
                        size: block_size,
                        full,
                    },
                ));
            }
        }
    }
    // The node's own cursors win (it allocated in cluster mode already);
    // the disk's fill in the range sets it has none for.
    let mut cursors = snap
        .activity
        .as_ref()
        .map(|a| a.cursors.clone())
        .unwrap_or_default();
    for (&i, &ip) in req.cursors {
        if req.sets.get(i).is_some_and(|s| s.contains(ip)) {
            cursors.entry(i.to_string()).or_insert(ip);
        }
    }
    Ok(Plan {
        block_size,
        new,
        present,
        claims,
        borrowed,
        activity: Activity {
            at: now,
            op: IMPORT_OP.to_string(),
            cursors,
        },
        prior_activity: snap.activity.clone(),
    })
}

/// What the import tests start from (the write tests plan too).
#[cfg(test)]
pub(super) mod fixtures {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use crate::config::RangeSet;
    use crate::store::etcd::import::ImportRequest;
    use crate::store::etcd::keys::Record;
    use crate::store::etcd::page::Oversized;
    use crate::store::{Entry, Owner};

    pub fn sets(ipam: serde_json::Value) -> Vec<RangeSet> {
        crate::config::load_ipam(cni_proto::SpecVersion::V1_0_0, &ipam)
            .unwrap()
            .ranges
    }

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub fn att(id: &str) -> Owner {
        Owner::Attachment {
            id: id.into(),
            ifname: "eth0".into(),
        }
    }

    pub fn value(id: &str, ifname: Option<&str>, node: &str) -> Result<Vec<u8>, Oversized> {
        Ok(Record {
            container_id: id.into(),
            ifname: ifname.map(str::to_string),
            node: Some(node.into()),
        }
        .encode())
    }

    pub fn request<'a>(
        entries: &'a [Entry],
        cursors: &'a BTreeMap<usize, IpAddr>,
        sets: &'a [RangeSet],
    ) -> ImportRequest<'a> {
        ImportRequest {
            node: "n1",
            entries,
            cursors,
            sets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{att, ip, request, sets, value};
    use super::*;
    use crate::store::etcd::import::batches;
    use crate::store::etcd::keys::Keys;
    use serde_json::json;

    #[test]
    fn usable_addresses() {
        let s = sets(
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "exclude": ["10.0.0.9/32"]}],
            [{"subnet": "10.0.1.0/24"}]]}),
        );
        assert!(usable(&s, ip("10.0.0.2")) && usable(&s, ip("10.0.1.2")));
        assert!(!usable(&s, ip("10.0.0.1")), "a gateway");
        assert!(!usable(&s, ip("10.0.0.9")), "excluded");
        assert!(
            !usable(&s, ip("10.0.0.0")) && !usable(&s, ip("10.0.2.1")),
            "outside"
        );
    }

    #[test]
    fn plan_refuses_every_address_in_the_way_and_writes_nothing() {
        let s =
            sets(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/120"}]]}));
        let entries = vec![
            Entry::new(ip("10.0.0.2"), att("c1")),
            Entry::new(ip("10.0.0.3"), att("c2")),
            Entry::new(ip("10.0.0.4"), att("c3")),
            Entry::new(ip("10.0.0.5"), att("c4")),
            Entry::damaged(ip("10.0.0.6"), "empty file"),
            Entry::new(ip("10.9.0.9"), att("c5")),
            Entry::new(ip("2001:db8::5"), Owner::Legacy { id: "c6".into() }),
        ];
        let mut snap = Snapshot::default();
        // Another container; the same container on another node; garbage;
        // the same container with an ifname where the disk has none.
        snap.values
            .insert(ip("10.0.0.2"), value("x9", Some("eth0"), "n1"));
        snap.values
            .insert(ip("10.0.0.3"), value("c2", Some("eth0"), "n2"));
        snap.values.insert(ip("10.0.0.4"), Ok(b"garbage".to_vec()));
        snap.values
            .insert(ip("2001:db8::5"), value("c6", Some("eth0"), "n1"));
        // c4's address holds exactly what the import writes: present, not in the way.
        snap.values
            .insert(ip("10.0.0.5"), value("c4", Some("eth0"), "n1"));
        let cursors = BTreeMap::new();
        let r = plan(&request(&entries, &cursors, &s), 64, &snap, 0).unwrap_err();
        let held: Vec<(IpAddr, Owner, Option<&str>)> = r
            .held
            .iter()
            .map(|h| (h.ip, h.owner.clone(), h.node.as_deref()))
            .collect();
        assert_eq!(
            held,
            vec![
                (ip("10.0.0.2"), att("x9"), Some("n1")),
                (ip("10.0.0.3"), att("c2"), Some("n2")),
                (ip("10.0.0.4"), Owner::Damaged, None),
                (ip("2001:db8::5"), att("c6"), Some("n1")),
            ]
        );
        assert!(r.held[2].damage.as_deref().unwrap().contains("unreadable"));
        assert_eq!(r.outside, vec![ip("10.9.0.9")]);
        assert_eq!(r.damaged, vec![(ip("10.0.0.6"), "empty file".to_string())]);
        assert_eq!(r.len(), 6);
        let text = r.to_string();
        assert!(text.starts_with("6 address(es) cannot be imported, nothing was written: "));
        assert!(
            text.contains("10.0.0.3 held by c2 eth0 on node n2"),
            "{text}"
        );
        assert!(text.contains("10.9.0.9 outside every range"), "{text}");
        assert!(
            text.contains("10.0.0.6 damaged on disk (empty file)"),
            "{text}"
        );
    }

    #[test]
    fn plan_claims_free_blocks_with_their_full_hint() {
        // Range 10.0.0.1-10.0.0.30, gateway .1, .9-.10 excluded; blocks of 4.
        let s = sets(
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.30",
            "exclude": ["10.0.0.9/32", "10.0.0.10/32"]}]]}),
        );
        let entries = vec![
            // Block .0-.3: .0 outside, .1 the gateway: .2 and .3 are all of it.
            Entry::new(ip("10.0.0.2"), att("a")),
            Entry::new(ip("10.0.0.3"), Owner::Legacy { id: "b".into() }),
            // Block .4-.7: .6 held by another node, .7 free.
            Entry::new(ip("10.0.0.5"), att("c")),
            Entry::new(ip("10.0.0.4"), att("d")),
            // Block .8-.11: .9, .10 excluded, .11 present already, .8 new.
            Entry::new(ip("10.0.0.8"), att("e")),
            Entry::new(ip("10.0.0.11"), att("f")),
            // Block .12-.15 claimed by n1 already; .16-.19 by n2: borrowed.
            Entry::new(ip("10.0.0.12"), att("g")),
            Entry::new(ip("10.0.0.17"), att("h")),
            // Block .28-.31: .31 is outside the range; .28-.30 imported.
            Entry::new(ip("10.0.0.28"), att("i")),
            Entry::new(ip("10.0.0.29"), att("j")),
            Entry::new(ip("10.0.0.30"), att("k")),
        ];
        let mut snap = Snapshot::default();
        snap.values
            .insert(ip("10.0.0.6"), value("z", Some("eth0"), "n2"));
        snap.values
            .insert(ip("10.0.0.11"), value("f", Some("eth0"), "n1"));
        let rec = |node: &str| BlockRecord {
            node: node.into(),
            size: 4,
            full: false,
        };
        snap.claims.insert(ip("10.0.0.12"), Some(rec("n1")));
        snap.claims.insert(ip("10.0.0.16"), Some(rec("n2")));
        snap.activity = Some(Activity {
            at: 1,
            op: "ADD".into(),
            cursors: [("1".to_string(), ip("10.0.0.40"))].into(),
        });
        let cursors: BTreeMap<usize, IpAddr> = [(0, ip("10.0.0.5")), (3, ip("10.0.0.7"))].into();
        let p = plan(&request(&entries, &cursors, &s), 4, &snap, 42).unwrap();
        let new: Vec<IpAddr> = p.new.iter().map(|n| n.ip).collect();
        assert_eq!(
            new,
            [
                "10.0.0.2",
                "10.0.0.3",
                "10.0.0.4",
                "10.0.0.5",
                "10.0.0.8",
                "10.0.0.12",
                "10.0.0.17",
                "10.0.0.28",
                "10.0.0.29",
                "10.0.0.30"
            ]
            .map(ip)
        );
        assert_eq!(
            String::from_utf8(p.new[1].value.clone()).unwrap(),
            r#"{"containerID":"b","node":"n1"}"#,
            "a legacy file becomes a legacy record"
        );
        assert_eq!(
            String::from_utf8(p.new[0].value.clone()).unwrap(),
            r#"{"containerID":"a","ifname":"eth0","node":"n1"}"#
        );
        assert_eq!(p.present, 1);
        assert_eq!(p.borrowed, 1);
        let claims: Vec<(IpAddr, bool)> = p.claims.iter().map(|(b, c)| (*b, c.full)).collect();
        assert_eq!(
            claims,
            vec![
                (ip("10.0.0.0"), true),
                (ip("10.0.0.4"), false),
                (ip("10.0.0.8"), true),
                (ip("10.0.0.28"), true),
            ]
        );
        assert!(p.claims.iter().all(|(_, c)| c.node == "n1" && c.size == 4));
        // The node's own cursor stays; the disk's fills set 0; set 3 does not exist.
        assert_eq!(
            p.activity,
            Activity {
                at: 42,
                op: "import".into(),
                cursors: [
                    ("0".to_string(), ip("10.0.0.5")),
                    ("1".to_string(), ip("10.0.0.40"))
                ]
                .into(),
            }
        );
    }

    #[test]
    fn an_import_already_done_plans_nothing_to_write() {
        let s = sets(json!({"subnet": "10.0.0.0/24"}));
        let entries = vec![
            Entry::new(ip("10.0.0.2"), att("a")),
            Entry::new(ip("10.0.0.3"), Owner::Legacy { id: "b".into() }),
        ];
        let mut snap = Snapshot::default();
        snap.values
            .insert(ip("10.0.0.2"), value("a", Some("eth0"), "n1"));
        snap.values.insert(ip("10.0.0.3"), value("b", None, "n1"));
        let cursors = BTreeMap::new();
        let p = plan(&request(&entries, &cursors, &s), 64, &snap, 0).unwrap();
        assert!(p.new.is_empty());
        assert_eq!(p.present, 2);
        let keys = Keys::new("/p", "net");
        assert!(batches(&p, &keys, "n1", true).is_empty());
    }
}
