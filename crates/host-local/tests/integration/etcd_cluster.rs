//! The etcd store as a cluster uses it: several nodes allocating from one
//! pool at once, a three-member etcd cluster losing a member and then its
//! quorum, and TLS with client certificates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::etcd::{check_consistent, etcd_or_skip, Net};
use crate::etcd_tls::Pki;
use test_support::etcd::Cluster;

#[test]
fn nodes_allocate_concurrently_without_duplicates_and_gc_stays_local() {
    if !etcd_or_skip("etcd concurrent nodes") {
        return;
    }
    let c = Cluster::start(1);
    let base = Net::new(&c, "shared", json!({"subnet": "10.30.0.0/24"}));
    let nodes: Vec<Net> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| base.as_node(n))
        .collect();
    const PER_NODE: usize = 8;
    let id = |i: usize| format!("c{i}");
    let outs = all_at_once(nodes.len() * PER_NODE, |i| {
        nodes[i % nodes.len()].add(&id(i))
    });
    let mut seen = BTreeMap::new();
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.code, 0, "ADD {} as {}: {o:?}", id(i), nodes[i % 3].node);
        for ip in o.ips() {
            if let Some(prev) = seen.insert(ip.clone(), id(i)) {
                panic!("{ip} handed out to {prev} and {}", id(i));
            }
        }
    }
    let owners = check_consistent(&c, "shared");
    assert_eq!(owners.len(), nodes.len() * PER_NODE);
    for (ip, (cid, node)) in &owners {
        assert_eq!(seen.get(ip), Some(cid), "{ip}");
        let i: usize = cid[1..].parse().unwrap();
        assert_eq!(node, &nodes[i % 3].node, "{ip}: recorded node");
    }
    // GC on node-a with nothing valid: only node-a's reservations go.
    let g = nodes[0].gc(&[]);
    assert_eq!(g.code, 0, "{g:?}");
    let left = check_consistent(&c, "shared");
    assert_eq!(left.len(), 2 * PER_NODE);
    assert!(left.values().all(|(_, n)| n != "node-a"), "{left:?}");
    // node-b deletes all of its containers at once: every one released.
    let dels = all_at_once(PER_NODE, |k| nodes[1].del(&id(k * 3 + 1)));
    assert!(dels.iter().all(|o| o.code == 0), "{dels:?}");
    let left = check_consistent(&c, "shared");
    let remaining: BTreeSet<&str> = left.values().map(|(_, n)| n.as_str()).collect();
    assert_eq!(remaining, BTreeSet::from(["node-c"]));
    assert_eq!(left.len(), PER_NODE);
}

#[test]
fn three_members_lose_one_then_quorum() {
    if !etcd_or_skip("etcd cluster failures") {
        return;
    }
    let mut c = Cluster::start(3);
    let mut net = Net::new(
        &c,
        "ha",
        json!({"ranges": [[{"subnet": "10.31.0.0/24"}], [{"subnet": "fd31::/120"}]]}),
    );
    net.timeout = "4s".into();
    for i in 0..3 {
        net.add_ok(&format!("before{i}"));
    }
    // A hung member (stopped, connections open): reads move on to another
    // member after their share of the timeout; every ADD still succeeds.
    // Listing two endpoints, each call starts at the hung one half of the
    // time (the start is spread by process ID): 6 ADDs all but surely try it.
    let mut two = net.as_node("node-a");
    two.endpoints = vec![c.endpoint(2), c.endpoint(0)];
    two.timeout = "2s".into();
    c.pause(2, true);
    for i in 0..6 {
        two.add_ok(&format!("hung{i}"));
    }
    c.pause(2, false);
    // One member killed while ADDs run: allocation goes on. An ADD in flight
    // at the moment of the kill (or during the election that follows when
    // it was the leader) may answer 11, try again later; the runtime's
    // retry then succeeds, with the member still down.
    let during: Vec<Output> = std::thread::scope(|s| {
        let adds = s.spawn(|| {
            (0..8)
                .map(|i| {
                    let id = format!("during{i}");
                    let mut o = net.add(&id);
                    for _ in 0..5 {
                        if o.code == 0 {
                            break;
                        }
                        assert_eq!(o.err_code(), Some(11), "{o:?}");
                        std::thread::sleep(Duration::from_millis(200));
                        o = net.add(&id);
                    }
                    o
                })
                .collect()
        });
        std::thread::sleep(Duration::from_millis(150));
        c.kill(0);
        adds.join().unwrap()
    });
    for o in &during {
        assert_eq!(o.code, 0, "ADD with a member down: {o:?}");
    }
    net.add_ok("after-kill");
    // Quorum lost: ADD answers 11 within the timeout, writing nothing.
    c.kill(1);
    let t = Instant::now();
    let o = net.add("no-quorum");
    assert_eq!(o.err_code(), Some(11), "{o:?}");
    // Not a speed check: the ADD must end by its 4 s timeout rather than
    // wait for quorum; the bound is generous for a loaded machine.
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        net.del("before0").err_code(),
        Some(11),
        "DEL without quorum"
    );
    assert_eq!(net.status().err_code(), Some(50), "STATUS without quorum");
    // Recovery: every invariant holds, the failed ADD left nothing.
    c.restart(1);
    c.restart(0);
    c.wait_healthy(0);
    c.wait_healthy(1);
    let owners = check_consistent(&c, "ha");
    let ids: BTreeSet<&str> = owners.values().map(|(id, _)| id.as_str()).collect();
    assert!(!ids.contains("no-quorum"), "{ids:?}");
    assert_eq!(owners.len(), 2 * (3 + 6 + 8 + 1), "{owners:?}");
    assert!(ids.contains("before0"), "the failed DEL removed nothing");
    net.add_ok("no-quorum");
    for id in ids {
        let d = net.del(id);
        assert_eq!(d.code, 0, "{d:?}");
    }
    net.del("no-quorum");
    assert!(check_consistent(&c, "ha").is_empty());
}

#[test]
fn tls_with_client_certificates() {
    if !etcd_or_skip("etcd TLS") {
        return;
    }
    let pki = Pki::new();
    let c = Cluster::start_tls(1, pki.server.clone());
    let s = &pki.server;
    let p = |x: &std::path::Path| x.to_string_lossy().into_owned();
    let mut net = Net::new(&c, "tls", json!({"subnet": "10.32.0.0/24"}));
    net.tls = Some(json!({"ca": p(&s.ca), "cert": p(&s.client_cert), "key": p(&s.client_key)}));
    net.add_ok("c1");
    assert_eq!(check_consistent(&c, "tls").len(), 1);
    assert_eq!(net.del("c1").code, 0);
    assert!(check_consistent(&c, "tls").is_empty());

    // A CA that did not sign the server's certificate: named in the error.
    let mut wrong = net.as_node("node-a");
    wrong.timeout = "2s".into();
    wrong.tls =
        Some(json!({"ca": p(&pki.other_ca), "cert": p(&s.client_cert), "key": p(&s.client_key)}));
    let o = wrong.add("c2");
    assert_ne!(o.code, 0);
    assert!(o.msg().contains(&p(&pki.other_ca)), "{o:?}");
    // A client certificate the server does not trust: named in the error.
    wrong.tls = Some(json!({"ca": p(&s.ca), "cert": p(&pki.other_cert), "key": p(&pki.other_key)}));
    let o = wrong.add("c2");
    assert_ne!(o.code, 0);
    assert!(o.msg().contains(&p(&pki.other_cert)), "{o:?}");
    // No client certificate at all: refused by client-cert-auth.
    wrong.tls = Some(json!({"ca": p(&s.ca)}));
    let o = wrong.add("c2");
    assert_ne!(o.code, 0, "{o:?}");
    // A missing file: named.
    let missing = pki.dir.path().join("nope.pem");
    wrong.tls = Some(json!({"ca": p(&missing)}));
    let o = wrong.add("c2");
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert!(o.msg().contains(&p(&missing)), "{o:?}");
    assert!(
        check_consistent(&c, "tls").is_empty(),
        "failed ADDs wrote nothing"
    );
}
