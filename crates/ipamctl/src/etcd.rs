//! What the commands need of a network kept in etcd beyond the store
//! trait: its store opened for an operator (never waiting longer than
//! `--lock-timeout`), every key of the network from one snapshot
//! (`host_local::store::etcd::audit`), the node a command acts for, and
//! the latest time each reservation can have been made (etcd records no
//! times).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use host_local::config::EtcdConfig;
use host_local::store::etcd::audit::{NetworkKeys, Snapshot};
use host_local::store::etcd::EtcdStore;

/// The network's etcd store; every call bounded by `wait` as well as the
/// configured timeout.
pub fn open(cfg: &EtcdConfig, network: &str, wait: Duration) -> EtcdStore {
    let mut cfg = cfg.clone();
    cfg.timeout = cfg.timeout.min(wait);
    EtcdStore::new(cfg, network).for_operator()
}

/// Every key of the network, from one snapshot.
pub fn read_keys(store: &mut EtcdStore) -> Result<NetworkKeys> {
    let endpoints = store.config().endpoints.join(",");
    let network = store.keys().base().to_string();
    let snap: Snapshot = store
        .etcd_session()
        .and_then(|mut s| s.read_network())
        .map_err(|e| anyhow!("reading the keys {network} from etcd {endpoints}: {e}"))?;
    Ok(NetworkKeys::parse(store.keys(), snap))
}

/// Refuses a node name no node can have (as `ipam.store.node` is checked):
/// 1 to 253 letters, digits, `.`, `_`, `-`.
pub fn check_node_name(what: &str, n: &str) -> Result<()> {
    let ok = (1..=253).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!(
            "{what} {n:?}: not a node name (1 to 253 letters, digits, '.', '_' or '-', as ipam.store.node)"
        );
    }
    Ok(())
}

/// The latest each address key can have been made, from the activity keys
/// written at or after it (the node's own clock): the oldest such `at`,
/// and which node's activity says so. Address keys made after every
/// activity key have none.
pub fn made_by(keys: &NetworkKeys) -> BTreeMap<IpAddr, (i64, String)> {
    // Activities by revision, each with the oldest `at` from it on.
    let mut acts: Vec<(i64, i64, &str)> = keys
        .activity
        .values()
        .filter_map(|a| {
            let at = i64::try_from(a.activity.as_ref()?.at).ok()?;
            Some((a.raw.mod_revision, at, a.node.as_str()))
        })
        .collect();
    acts.sort();
    let mut suffix: Vec<(i64, &str)> = Vec::with_capacity(acts.len());
    for &(_, at, node) in acts.iter().rev() {
        let best = match suffix.last() {
            Some(&(b, n)) if b <= at => (b, n),
            _ => (at, node),
        };
        suffix.push(best);
    }
    suffix.reverse();
    keys.addresses
        .values()
        .filter_map(|a| {
            let i = acts.partition_point(|&(rev, _, _)| rev < a.raw.create_revision);
            let &(at, node) = suffix.get(i)?;
            Some((a.ip, (at, format!("node {node} was last active"))))
        })
        .collect()
}

/// Names in `known` that `name` may have been meant as: the same but for
/// case, or the same host as a short name and an FQDN (`node-1` and
/// `node-1.example.com`).
pub fn near_matches<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
    known
        .into_iter()
        .filter(|k| *k != name)
        .filter(|k| {
            k.eq_ignore_ascii_case(name)
                || ((k.contains('.') != name.contains('.')) && short(k) == short(name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_local::store::etcd::audit::RawKey;
    use host_local::store::etcd::keys::{Activity, Keys, Record};

    fn kv(key: String, value: Vec<u8>, create: i64, modr: i64) -> RawKey {
        RawKey {
            key: key.into_bytes(),
            value: Some(value),
            create_revision: create,
            mod_revision: modr,
        }
    }

    #[test]
    fn reservations_are_made_by_the_oldest_activity_written_after_them() {
        let k = Keys::new("/p", "n");
        let act = |at| {
            Activity {
                at,
                ..Activity::default()
            }
            .encode()
        };
        let rec = Record::new("c1", "eth0", "a").encode();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let snap = Snapshot {
            revision: 30,
            keys: vec![
                kv(k.ip(ip("10.0.0.1")), rec.clone(), 5, 5),
                kv(k.ip(ip("10.0.0.2")), rec.clone(), 15, 15),
                kv(k.ip(ip("10.0.0.3")), rec, 25, 25),
                kv(k.activity("a"), act(1000), 2, 20),
                kv(k.activity("b"), act(500), 3, 10),
            ],
        };
        let m = made_by(&NetworkKeys::parse(&k, snap));
        assert_eq!(m[&ip("10.0.0.1")], (500, "node b was last active".into()));
        assert_eq!(m[&ip("10.0.0.2")].0, 1000);
        assert!(
            !m.contains_key(&ip("10.0.0.3")),
            "made after every activity"
        );
    }

    #[test]
    fn near_matches_are_case_and_short_names() {
        let known = ["node-1.example.com", "NODE-2", "node-3", "node-10"];
        assert_eq!(near_matches("node-1", known), ["node-1.example.com"]);
        assert_eq!(near_matches("node-2", known), ["NODE-2"]);
        assert_eq!(near_matches("node-3.lan", known), ["node-3"]);
        assert!(near_matches("node-3", known).is_empty());
        assert!(near_matches("node-4", known).is_empty());
        assert!(check_node_name("--node", "a/b").is_err());
        assert!(check_node_name("--node", "worker-1.example.com").is_ok());
    }
}
