//! The etcd store at fleet scale: per-node blocks claimed by compare-and-
//! swap, borrowing when no block is left, many nodes filling a small pool
//! to its last address, requested addresses inside another node's block,
//! plugins killed mid-call, and a pool written by layout 1 moved on first
//! use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use host_local::store::etcd::blocks::base_of;
use host_local::store::etcd::keys::Keys;
use serde_json::json;

use crate::common::all_at_once;
use crate::etcd::{check_consistent, claims, dump, etcd_or_skip, Net, PREFIX};
use test_support::etcd::Cluster;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nodes(base: &Net, n: usize) -> Vec<Net> {
    (0..n).map(|i| base.as_node(&format!("node-{i}"))).collect()
}

/// The block (as text) of an address, for `size`.
fn block(addr: &str, size: u32) -> String {
    base_of(ip(addr), size).to_string()
}

#[test]
fn many_nodes_fill_a_small_shared_pool_to_its_last_address() {
    if !etcd_or_skip("etcd small pool, many nodes") {
        return;
    }
    let c = Cluster::start(1);
    // 96 addresses (.10 to .105) in 7 blocks of 16, for 24 nodes: most
    // nodes find no block left and borrow.
    let mut base = Net::new(
        &c,
        "small",
        json!({"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.10", "rangeEnd": "10.40.0.105"}),
    );
    base.block_size = Some(16);
    let ns = nodes(&base, 24);
    const PER_NODE: usize = 4;
    let outs = all_at_once(ns.len() * PER_NODE, |i| {
        ns[i % ns.len()].add(&format!("c{i}"))
    });
    let mut seen = BTreeMap::new();
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.code, 0, "ADD c{i} as node-{}: {o:?}", i % ns.len());
        let got = o.ips();
        if let Some(prev) = seen.insert(got[0].clone(), i) {
            panic!("{} handed out to c{prev} and c{i}", got[0]);
        }
    }
    assert_eq!(seen.len(), 96, "every address handed out once");
    let owners = check_consistent(&c, "small");
    assert_eq!(owners.len(), 96);
    let extra = base.as_node("node-late").add("late");
    assert_eq!(extra.err_code(), Some(100), "the pool is full: {extra:?}");
    assert_eq!(
        check_consistent(&c, "small").len(),
        96,
        "the failed ADD wrote nothing"
    );
    // A released address is found again by a node holding no block.
    let d = ns[3].del("c3");
    assert_eq!(d.code, 0, "{d:?}");
    let freed = outs[3].ips()[0].clone();
    assert_eq!(base.as_node("node-late").add_ok("late"), [freed]);
}

#[test]
fn block_claims_race_between_nodes() {
    if !etcd_or_skip("etcd block claims race") {
        return;
    }
    let c = Cluster::start(1);
    let mut base = Net::new(&c, "claims", json!({"subnet": "10.41.0.0/24"}));
    base.block_size = Some(16);
    let ns = nodes(&base, 16);
    let outs = all_at_once(ns.len(), |i| ns[i].add(&format!("c{i}")));
    let held = claims(&c, "claims");
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.code, 0, "node-{i}: {o:?}");
        let a = &o.ips()[0];
        assert_eq!(
            held.get(&block(a, 16)),
            Some(&format!("node-{i}")),
            "node-{i}'s {a} is in its own block: {held:?}"
        );
    }
    let per_node: BTreeSet<&String> = held.values().collect();
    assert_eq!(held.len(), 16, "one block each: {held:?}");
    assert_eq!(per_node.len(), 16, "no block claimed twice: {held:?}");
    check_consistent(&c, "claims");
}

#[test]
fn borrowing_only_when_no_block_is_left() {
    if !etcd_or_skip("etcd borrowing") {
        return;
    }
    let c = Cluster::start(1);
    // Two blocks of 16: .2-.15 (14 usable) and .16-.30 (15 usable).
    let mut base = Net::new(
        &c,
        "borrow",
        json!({"subnet": "10.42.0.0/27", "rangeEnd": "10.42.0.30"}),
    );
    base.block_size = Some(16);
    let (a, b, x) = (
        base.as_node("node-a"),
        base.as_node("node-b"),
        base.as_node("node-x"),
    );
    let first_a = a.add_ok("a0")[0].clone();
    let first_b = b.add_ok("b0")[0].clone();
    assert_ne!(
        block(&first_a, 16),
        block(&first_b, 16),
        "each claims a block"
    );
    let got = x.add_ok("x0")[0].clone();
    let held = claims(&c, "borrow");
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        !held.values().any(|n| n == "node-x"),
        "node-x claimed nothing: {held:?}"
    );
    assert!(held.contains_key(&block(&got, 16)), "{got} borrowed");
    // node-a goes on in its own block, round robin, until it is full.
    let mut a_ips = vec![first_a.clone()];
    let mut i = 1;
    loop {
        let o = a.add(&format!("a{i}"));
        assert_eq!(o.code, 0, "{o:?}");
        let got = o.ips()[0].clone();
        if block(&got, 16) != block(&first_a, 16) {
            break; // its block is full: borrowed from node-b's
        }
        a_ips.push(got);
        i += 1;
    }
    let mut sorted = a_ips.clone();
    sorted.sort_by_key(|s| ip(s));
    assert_eq!(a_ips, sorted, "round robin within the block");
    // Fill the pool: 29 addresses in all, then the pool is exhausted.
    let mut n = check_consistent(&c, "borrow").len();
    while n < 29 {
        x.add_ok(&format!("x{n}"));
        n += 1;
    }
    assert_eq!(x.add(&format!("x{n}")).err_code(), Some(100));
    // node-a releases one in its full block: node-x borrows exactly it.
    assert_eq!(a.del("a0").code, 0);
    assert_eq!(x.add_ok("again"), [first_a]);
    check_consistent(&c, "borrow");
}

#[test]
fn requested_address_inside_another_nodes_block() {
    if !etcd_or_skip("etcd requested address in another block") {
        return;
    }
    let c = Cluster::start(1);
    let mut base = Net::new(&c, "req", json!({"subnet": "10.43.0.0/24"}));
    base.block_size = Some(16);
    let (a, b) = (base.as_node("node-a"), base.as_node("node-b"));
    let first = a.add_ok("a0")[0].clone();
    let blk = ip(&block(&first, 16));
    // The address after node-a's first one, asked for by node-b by name.
    let wanted = host_local::addr::from_u128(blk, host_local::addr::to_u128(ip(&first)) + 1);
    let o = b.plugin().add_args("b0", "eth0", &format!("IP={wanted}"));
    assert_eq!(o.ips(), [wanted.to_string()], "{o:?}");
    let owners = check_consistent(&c, "req");
    assert_eq!(owners[&wanted.to_string()], ("b0".into(), "node-b".into()));
    assert_eq!(
        claims(&c, "req").get(&blk.to_string()),
        Some(&"node-a".into())
    );
    // node-a's round robin skips it.
    let next = a.add_ok("a1")[0].clone();
    assert_ne!(next, wanted.to_string());
    assert_eq!(block(&next, 16), blk.to_string());
    // node-b's GC removes only node-b's reservation, inside node-a's block.
    assert_eq!(b.gc(&[]).code, 0);
    let left: BTreeSet<String> = check_consistent(&c, "req").into_keys().collect();
    assert_eq!(left, BTreeSet::from([first, next]));
}

#[test]
fn plugins_killed_mid_call_leave_every_invariant() {
    if !etcd_or_skip("etcd plugins killed mid-call") {
        return;
    }
    let c = Cluster::start(1);
    let mut base = Net::new(&c, "killed", json!({"subnet": "10.44.0.0/24"}));
    base.block_size = Some(16);
    let ns = nodes(&base, 4);
    let mut rng = test_support::Rng(0x6b696c6c);
    for round in 0..3 {
        let mut children = Vec::new();
        for i in 0..24 {
            let n = &ns[i % ns.len()];
            let cmd = if round > 0 && i % 3 == 0 {
                "DEL"
            } else {
                "ADD"
            };
            children.push(n.plugin().spawn(cmd, &format!("c{i}"), "eth0"));
        }
        // SIGKILL about half of them, each after 0 to 40 ms.
        for (i, ch) in children.iter_mut().enumerate() {
            if rng.below(2) == 0 {
                std::thread::sleep(Duration::from_millis(rng.below(40 / (i as u64 + 1) + 1)));
                let _ = ch.kill(); // it may have finished already
            }
        }
        for ch in children {
            let _ = ch.wait_with_output();
        }
        check_consistent(&c, "killed");
    }
    // Whatever was half done is not half written: every survivor can be
    // released, and the pool holds nothing after DEL of all.
    for i in 0..24 {
        let d = ns[i % ns.len()].del(&format!("c{i}"));
        assert_eq!(d.code, 0, "{d:?}");
    }
    assert!(check_consistent(&c, "killed").is_empty());
    // The plugin still hands out addresses on every node.
    for (i, n) in ns.iter().enumerate() {
        n.add_ok(&format!("after{i}"));
    }
    check_consistent(&c, "killed");
}

#[test]
fn a_pool_written_by_layout_1_is_moved_on_first_use() {
    if !etcd_or_skip("etcd layout 1 migration") {
        return;
    }
    let c = Cluster::start(1);
    let keys = Keys::new(PREFIX, "old");
    // What layout 1 wrote: address keys, attachment index keys, a shared
    // cursor; no node index, no blocks, no layout key.
    for (k, node) in [(2, "node-a"), (3, "node-a"), (4, "node-b")] {
        let a = ip(&format!("10.45.0.{k}"));
        let v =
            json!({"containerID": format!("old{k}"), "ifname": "eth0", "node": node}).to_string();
        for key in [keys.ip(a), keys.index(&format!("old{k}"), "eth0", a)] {
            let (ok, out) = c.etcdctl(&["put", &key, &v]);
            assert!(ok, "{out}");
        }
    }
    let (ok, out) = c.etcdctl(&["put", &keys.cursor(0), "10.45.0.4"]);
    assert!(ok, "{out}");
    let base = Net::new(&c, "old", json!({"subnet": "10.45.0.0/24"}));
    let (a, b, c2) = (
        base.as_node("node-a"),
        base.as_node("node-b"),
        base.as_node("node-c"),
    );
    let got = c2.add_ok("new0")[0].clone();
    assert!(!["10.45.0.2", "10.45.0.3", "10.45.0.4"].contains(&got.as_str()));
    let all = dump(&c, "old");
    assert_eq!(
        all.get(&keys.layout()).map(String::as_str),
        Some(r#"{"version":2,"blockSize":64}"#)
    );
    let owners = check_consistent(&c, "old");
    assert_eq!(owners.len(), 4, "{owners:?}");
    // Each layout-1 reservation is its node's now: node-a's GC removes its two.
    assert_eq!(a.gc(&[]).code, 0);
    let left: BTreeSet<String> = check_consistent(&c, "old").into_keys().collect();
    assert_eq!(left, BTreeSet::from(["10.45.0.4".to_string(), got.clone()]));
    // node-b's next ADD does not hand out what node-b holds.
    assert_ne!(b.add_ok("new1")[0], "10.45.0.4");
    // Another block size than the pool's is refused, naming the key.
    let mut odd = base.as_node("node-d");
    odd.block_size = Some(16);
    let o = odd.add("odd");
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.msg().contains("ipam.store.blockSize"), "{o:?}");
}
