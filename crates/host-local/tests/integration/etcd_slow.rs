//! A hung member (SIGSTOP: the kernel still accepts its connections, it
//! answers nothing): a follower, and separately the leader, stopped during
//! 30 sequential ADDs through the plugin binary. Every ADD succeeds; once
//! the member continues (and may apply what it was sent while stopped),
//! the store holds exactly one address per range set for each container,
//! none twice. Latencies are printed, not asserted (ipam-bench measures
//! them: its "one member stopped" row).
//!
//! And the property that makes sending a transaction again safe: a member
//! applies a reserve (or a release) but its answer is lost, the client
//! sends the transaction to another member, and the repeat conflicts with
//! the first application instead of applying twice; the reserve is
//! recognised as this attachment's own and succeeds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use host_local::store::etcd::{EtcdConfig, EtcdStore};
use host_local::store::{Attachment, Pick, Session};
use serde_json::json;

use crate::common::*;
use crate::etcd::{check_consistent, etcd_or_skip, Net, PREFIX};
use test_support::etcd::{Cluster, Proxy, ProxyMode};

const ADDS: usize = 30;

/// A member other than the leader (the cluster has one: it is healthy).
fn a_follower(c: &Cluster) -> usize {
    let leader = leader_of(c);
    (0..c.members()).find(|&i| i != leader).unwrap()
}

/// The leader, waiting a bounded time for the members to agree on one.
fn leader_of(c: &Cluster) -> usize {
    for _ in 0..100 {
        if let Some(l) = c.leader() {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no leader among {:?}", c.endpoints());
}

/// 30 ADDs, one after the other, each as its own process: every one
/// succeeds. Returns container -> addresses.
fn adds_succeed(net: &Net, tag: &str) -> BTreeMap<String, Vec<String>> {
    let mut got = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for i in 0..ADDS {
        let id = format!("{tag}{i}");
        let t = Instant::now();
        let o = net.add(&id);
        slowest = slowest.max(t.elapsed());
        assert_eq!(o.code, 0, "ADD {id} with a member stopped: {o:?}");
        got.insert(id, o.ips());
    }
    eprintln!("{tag}: {ADDS} ADDs, slowest {slowest:?}");
    got
}

/// After the stopped member continued: every container holds exactly the
/// addresses its ADD reported, no address twice, nothing else.
fn store_matches(c: &Cluster, network: &str, got: &BTreeMap<String, Vec<String>>) {
    let owners = check_consistent(c, network);
    let mut want = BTreeMap::new();
    for (id, ips) in got {
        assert_eq!(ips.len(), 2, "{id}: one address per range set: {ips:?}");
        for ip in ips {
            assert!(
                want.insert(ip.clone(), id.clone()).is_none(),
                "{ip} handed out twice"
            );
        }
    }
    let have: BTreeMap<String, String> = owners.into_iter().map(|(ip, (id, _))| (ip, id)).collect();
    assert_eq!(have, want);
}

fn dual_stack(c: &Cluster, name: &str, v4: &str, v6: &str) -> Net {
    Net::new(
        c,
        name,
        json!({"ranges": [[{"subnet": v4}], [{"subnet": v6}]]}),
    )
}

#[test]
fn a_stopped_follower_costs_adds_little() {
    if !etcd_or_skip("etcd stopped follower") {
        return;
    }
    let mut c = Cluster::start(3);
    let net = dual_stack(&c, "hung-follower", "10.41.0.0/24", "fd41::/120");
    let stopped = a_follower(&c);
    c.pause(stopped, true);
    let mut got = adds_succeed(&net, "f");
    // CHECK and DEL go on too.
    let chk = net
        .plugin()
        .with_top(json!({}))
        .run(&cni_env("CHECK", "f1", "eth0"));
    assert_eq!(chk.code, 0, "{chk:?}");
    let del = net.del("f0");
    assert_eq!(del.code, 0, "{del:?}");
    got.remove("f0");
    c.pause(stopped, false);
    c.wait_healthy(stopped);
    store_matches(&c, "hung-follower", &got);
}

#[test]
fn a_stopped_leader_costs_adds_little() {
    if !etcd_or_skip("etcd stopped leader") {
        return;
    }
    let mut c = Cluster::start(3);
    let net = dual_stack(&c, "hung-leader", "10.42.0.0/24", "fd42::/120");
    let leader = leader_of(&c);
    c.pause(leader, true);
    let got = adds_succeed(&net, "l");
    c.pause(leader, false);
    c.wait_healthy(leader);
    store_matches(&c, "hung-leader", &got);
    // The old leader serves again as a follower.
    let mut only = net.as_node("node-a");
    only.endpoints = vec![c.endpoint(leader)];
    assert_eq!(only.add_ok("after").len(), 2);
}

/// A session on `store` whose calls are answered through `a`: `b` rejects
/// connections while it reads, so whichever member it starts at, it ends
/// at `a` (the one that answered), where its transaction will go.
fn session_on_a<'s>(
    store: &'s mut EtcdStore,
    a: &Proxy,
    b: &Proxy,
    att: &Attachment,
) -> (
    host_local::store::etcd::EtcdSession<'s>,
    Vec<host_local::store::Entry>,
) {
    a.set(ProxyMode::Forward);
    b.set(ProxyMode::Reject);
    let mut s = store.etcd_session().unwrap();
    let found = s.find(att).unwrap();
    s.cursor(0).unwrap();
    (s, found)
}

#[test]
fn a_transaction_whose_answer_was_lost_is_sent_again_safely() {
    if !etcd_or_skip("etcd lost answers") {
        return;
    }
    let c = Cluster::start(1);
    let a = Proxy::start(&c.endpoint(0), ProxyMode::Forward);
    let b = Proxy::start(&c.endpoint(0), ProxyMode::Reject);
    let cfg = EtcdConfig {
        endpoints: vec![a.endpoint(), b.endpoint()],
        prefix: PREFIX.into(),
        timeout: Duration::from_secs(3),
        node: "node-a".into(),
        tls: None,
        auth: None,
        block_size: host_local::config::DEFAULT_BLOCK,
    };
    let att = Attachment::parse("lost", "eth0").unwrap();
    let pick = Pick {
        ip: "10.43.0.7".parse().unwrap(),
        set_index: 0,
    };

    // Reserve: applied through a, its answer dropped; sent again through b
    // it conflicts with itself, which the store recognises.
    let mut st = EtcdStore::new(cfg.clone(), "lost-answers");
    let (mut s, found) = session_on_a(&mut st, &a, &b, &att);
    assert!(found.is_empty());
    a.set(ProxyMode::DropAnswers);
    b.set(ProxyMode::Forward);
    s.commit(&att, &[pick])
        .expect("the reserve applied through a is this ADD's")
        .finish()
        .unwrap();
    drop(s);
    let owners = check_consistent(&c, "lost-answers");
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners["10.43.0.7"].0, "lost");

    // Another attachment's reserve of the same address, sent again after a
    // lost answer, is a conflict as always: the address stays the first's.
    let other = Attachment::parse("other", "eth0").unwrap();
    let mut st = EtcdStore::new(cfg.clone(), "lost-answers");
    let (mut s, _) = session_on_a(&mut st, &a, &b, &other);
    a.set(ProxyMode::DropAnswers);
    b.set(ProxyMode::Forward);
    assert!(matches!(
        s.commit(&other, &[pick]),
        Err(host_local::error::StoreError::Conflict { .. })
    ));
    drop(s);

    // Release: applied through a, answer dropped, sent again through b: the
    // repeat finds the key gone and deletes nothing else; DEL succeeds.
    let mut st = EtcdStore::new(cfg.clone(), "lost-answers");
    let (mut s, found) = session_on_a(&mut st, &a, &b, &att);
    assert_eq!(found.len(), 1);
    a.set(ProxyMode::DropAnswers);
    b.set(ProxyMode::Forward);
    let refs: Vec<&host_local::store::Entry> = found.iter().collect();
    let failures = s.release_all(&refs);
    assert!(failures.is_empty(), "{failures:?}");
    drop(s);
    assert!(check_consistent(&c, "lost-answers").is_empty());

    // The same attachment takes the same address again: a fresh write with
    // the same bytes, which the earlier release's revision no longer matches.
    let mut st = EtcdStore::new(cfg, "lost-answers");
    let (mut s, _) = session_on_a(&mut st, &a, &b, &att);
    s.commit(&att, &[pick]).unwrap().finish().unwrap();
    drop(s);
    assert_eq!(check_consistent(&c, "lost-answers").len(), 1);
}
