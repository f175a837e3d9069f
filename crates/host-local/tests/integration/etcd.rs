//! The etcd store against real etcd members started by the tests: the
//! store conformance suite, the plugin binary's commands over the spec
//! versions, several nodes allocating at once, a three-member cluster
//! losing a member and then its quorum, and TLS with client certificates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use host_local::store::etcd::keys::Keys;
use host_local::store::etcd::{EtcdConfig, EtcdStore};
use host_local::store::{Entry, Owner, Store};
use serde_json::{json, Value};

use crate::common::*;
use test_support::etcd::{etcd_installed, Cluster};

/// Whether etcd is installed; otherwise a loud skip (a panic in CI).
pub fn etcd_or_skip(what: &str) -> bool {
    if etcd_installed() {
        return true;
    }
    if ci_required() {
        panic!(
            "{what}: etcd missing but IPAM_REQUIRE_ALL=1 (apt-get install etcd-server etcd-client)"
        );
    }
    eprintln!("SKIPPED {what}: etcd not installed (apt-get install etcd-server etcd-client)");
    false
}

pub const PREFIX: &str = "/etcd-test";

/// One network kept in etcd, driven through the plugin binary as `node`.
/// Its etcd side (endpoints, node, timeout, TLS) is fields a test may change
/// between calls; `plugin()` makes the common `Net` fixture of the current
/// state, and every call goes through it.
pub struct Net {
    pub name: String,
    pub endpoints: Vec<String>,
    pub node: String,
    pub timeout: String,
    pub ipam: Value,
    pub tls: Option<Value>,
    /// `blockSize` in the store object, when set.
    pub block_size: Option<u32>,
    /// The dataDir given to the plugin: the etcd store must leave it empty.
    pub data: tempfile::TempDir,
}

impl Net {
    pub fn new(c: &Cluster, name: &str, ipam: Value) -> Net {
        Net {
            name: name.to_string(),
            endpoints: c.endpoints(),
            node: "node-a".into(),
            timeout: "5s".into(),
            ipam,
            tls: None,
            block_size: None,
            data: tempfile::Builder::new()
                .prefix("etcd-test-data-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn as_node(&self, node: &str) -> Net {
        Net {
            name: self.name.clone(),
            endpoints: self.endpoints.clone(),
            node: node.into(),
            timeout: self.timeout.clone(),
            ipam: self.ipam.clone(),
            tls: self.tls.clone(),
            block_size: self.block_size,
            data: tempfile::Builder::new()
                .prefix("etcd-test-data-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn store(&self) -> Value {
        let mut s = json!({"type": "etcd", "endpoints": self.endpoints, "prefix": PREFIX,
            "timeout": self.timeout, "node": self.node});
        if let Some(t) = &self.tls {
            s["tls"] = t.clone();
        }
        if let Some(b) = self.block_size {
            s["blockSize"] = b.into();
        }
        s
    }

    /// The network as our plugin sees it now (cniVersion 1.1.0).
    pub fn plugin(&self) -> test_support::Net {
        our_net(&self.name, self.data.path(), self.ipam.clone()).with_store(self.store())
    }

    pub fn add(&self, id: &str) -> Output {
        self.plugin().add(id, "eth0")
    }

    pub fn add_ok(&self, id: &str) -> Vec<String> {
        let o = self.add(id);
        assert_eq!(o.code, 0, "ADD {id} as {}: {o:?}", self.node);
        o.ips()
    }

    pub fn del(&self, id: &str) -> Output {
        self.plugin().del(id, "eth0")
    }

    /// GC keeping the containers `valid` (each on eth0).
    pub fn gc(&self, valid: &[&str]) -> Output {
        let list: Vec<(&str, &str)> = valid.iter().map(|c| (*c, "eth0")).collect();
        self.plugin().gc(&list)
    }

    pub fn status(&self) -> Output {
        self.plugin().status()
    }

    /// Nothing was written to the data directory.
    pub fn assert_disk_untouched(&self) {
        assert!(
            dir_names(self.data.path()).is_empty(),
            "the etcd store wrote to dataDir: {:?}",
            dir_names(self.data.path())
        );
    }
}

/// Every key under the network's prefix with its value, read with etcdctl.
pub fn dump(c: &Cluster, network: &str) -> BTreeMap<String, String> {
    c.dump(Keys::new(PREFIX, network).base())
}

/// The store's invariants, read from etcd: every address key has its
/// attachment and node index keys with the same value and every index key
/// its address key; every block claim has its node's block index key and
/// every block index key its claim. Returns address -> (containerID, node).
pub fn check_consistent(c: &Cluster, network: &str) -> BTreeMap<String, (String, String)> {
    let keys = Keys::new(PREFIX, network);
    let all = dump(c, network);
    let mut out = BTreeMap::new();
    let (mut indexed, mut by_node, mut node_blocks, mut claims) = (0, 0, 0, 0);
    for (k, v) in &all {
        if let Some(ip) = keys.parse_ip(k.as_bytes()) {
            let r: Value = serde_json::from_str(v).unwrap_or_else(|e| panic!("{k}: {v}: {e}"));
            let id = r["containerID"].as_str().unwrap().to_string();
            let ifname = r["ifname"].as_str().unwrap();
            let node = r["node"].as_str().unwrap().to_string();
            let idx = keys.index(&id, ifname, ip);
            assert_eq!(all.get(&idx), Some(v), "index key {idx} of {k}");
            let nidx = keys.node_ip(&node, ip);
            assert_eq!(all.get(&nidx), Some(v), "node index key {nidx} of {k}");
            out.insert(ip.to_string(), (id, node));
        } else if k.contains("/attachments/") {
            indexed += 1;
        } else if let Some(base) = keys.parse_block(k.as_bytes()) {
            let r: Value = serde_json::from_str(v).unwrap_or_else(|e| panic!("{k}: {v}: {e}"));
            let pointer = keys.node_block(r["node"].as_str().unwrap(), base);
            assert!(all.contains_key(&pointer), "{k}: no {pointer}");
            claims += 1;
        } else if let Some((node, rest)) = keys.parse_node_key(k.as_bytes()) {
            if rest.starts_with("ips/") {
                by_node += 1;
            } else if rest.starts_with("blocks/") {
                let base = keys.parse_node_block(node, k.as_bytes()).unwrap();
                assert!(all.contains_key(&keys.block(base)), "{k}: no claim");
                node_blocks += 1;
            }
        }
    }
    assert_eq!(
        indexed,
        out.len(),
        "index keys without an address key: {all:#?}"
    );
    assert_eq!(
        by_node,
        out.len(),
        "node index keys without an address key: {all:#?}"
    );
    assert_eq!(node_blocks, claims, "block index keys against claims");
    out
}

/// Block claims: first address -> node.
pub fn claims(c: &Cluster, network: &str) -> BTreeMap<String, String> {
    let keys = Keys::new(PREFIX, network);
    dump(c, network)
        .into_iter()
        .filter_map(|(k, v)| {
            let base = keys.parse_block(k.as_bytes())?;
            let r: Value = serde_json::from_str(&v).ok()?;
            Some((base.to_string(), r["node"].as_str()?.to_string()))
        })
        .collect()
}

/// Writes `seed` behind the store's back, as an import of old reservations
/// or an operator would: legacy owners (no ifname) and damaged values.
fn plant(c: &Cluster, network: &str, seed: &[Entry]) {
    let keys = Keys::new(PREFIX, network);
    for e in seed {
        let value = match &e.owner {
            Owner::Legacy { id } => json!({"containerID": id}).to_string(),
            Owner::Attachment { id, ifname } => {
                json!({"containerID": id, "ifname": ifname, "node": "node-a"}).to_string()
            }
            Owner::Damaged => "not json".to_string(),
        };
        let (ok, out) = c.etcdctl(&["put", &keys.ip(e.ip), &value]);
        assert!(ok, "{out}");
        if let Some(idx) = keys.index_of(&e.owner, e.ip) {
            let (ok, out) = c.etcdctl(&["put", &idx, &value]);
            assert!(ok, "{out}");
        }
    }
}

pub fn etcd_config(c: &Cluster, node: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: c.endpoints(),
        prefix: PREFIX.into(),
        timeout: Duration::from_secs(5),
        node: node.into(),
        tls: None,
        auth: None,
        block_size: host_local::config::DEFAULT_BLOCK,
    }
}

/// Range set 0 of network `network`'s 1.0.0 configuration with the single subnet `subnet`.
fn range_set(network: &str, subnet: &str) -> host_local::config::RangeSet {
    host_local::config::IpamConfig::load(
        network,
        cni_proto::SpecVersion::V1_0_0,
        Some(&json!({ "subnet": subnet })),
        None,
        None,
        &cni_proto::CniArgs::default(),
    )
    .unwrap()
    .ranges
    .remove(0)
}

/// The conformance suite's factory on etcd: a member of its own per case.
fn etcd_stores() -> Option<host_local::store::conformance::Factory> {
    if !etcd_or_skip("etcd conformance") {
        return None;
    }
    let c = Cluster::start(1);
    let mut n = 0;
    Some(Box::new(move |seed: &[Entry]| {
        n += 1;
        let network = format!("conformance{n}");
        plant(&c, &network, seed);
        Box::new(EtcdStore::new(etcd_config(&c, "node-a"), &network)) as Box<dyn Store>
    }))
}

mod conformance_suite_on_etcd {
    host_local::conformance_tests!(super::etcd_stores);
}

#[test]
fn session_commit_conflicts_when_another_node_took_the_address() {
    if !etcd_or_skip("etcd conflict") {
        return;
    }
    let c = Cluster::start(1);
    let mut a = EtcdStore::new(etcd_config(&c, "node-a"), "race");
    let mut b = EtcdStore::new(etcd_config(&c, "node-b"), "race");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let att = |id| host_local::store::Attachment::parse(id, "eth0").unwrap();
    let mut sa = a.session().unwrap();
    // Session a reads its snapshot: 10.7.0.2 is free.
    let mut cands = [ip("10.7.0.2")].into_iter();
    assert_eq!(sa.first_free(&mut cands, 1).unwrap(), [ip("10.7.0.2")]);
    assert!(sa.find(&att("ca")).unwrap().is_empty());
    // Node b takes it meanwhile.
    let mut sb = b.session().unwrap();
    let pick = host_local::store::Pick {
        ip: ip("10.7.0.2"),
        set_index: 0,
    };
    sb.commit(&att("cb"), &[pick]).unwrap().finish().unwrap();
    drop(sb);
    let e = sa
        .commit(&att("ca"), &[pick])
        .expect_err("a's snapshot is stale");
    assert!(
        matches!(e, host_local::error::StoreError::Conflict { ip: i } if i == pick.ip),
        "{e}"
    );
    drop(sa);
    // The same attachment reserving twice concurrently: the index compare.
    let mut s1 = a.session().unwrap();
    assert!(s1.find(&att("cc")).unwrap().is_empty());
    let mut s2 = b.session().unwrap();
    let p3 = host_local::store::Pick {
        ip: ip("10.7.0.3"),
        set_index: 0,
    };
    let p4 = host_local::store::Pick {
        ip: ip("10.7.0.4"),
        ..p3
    };
    s2.commit(&att("cc"), &[p3]).unwrap().finish().unwrap();
    drop(s2);
    assert!(matches!(
        s1.commit(&att("cc"), &[p4]),
        Err(host_local::error::StoreError::Conflict { .. })
    ));
    drop(s1);
    let owners = check_consistent(&c, "race");
    assert_eq!(
        owners.keys().cloned().collect::<Vec<_>>(),
        ["10.7.0.2", "10.7.0.3"]
    );
    assert_eq!(owners["10.7.0.2"], ("cb".into(), "node-b".into()));
}

/// ADD, CHECK, DEL over the spec versions, requested addresses,
/// exclusions, exhaustion, STATUS and GC, through the plugin binary.
#[test]
fn plugin_commands_on_etcd() {
    if !etcd_or_skip("etcd plugin commands") {
        return;
    }
    let c = Cluster::start(1);
    // Versions: ADD, CHECK with prevResult (0.4.0 on), DEL twice.
    for (i, version) in ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let ipam = if version.starts_with("0.2") {
            json!({"subnet": "10.20.0.0/24"})
        } else {
            json!({"ranges": [[{"subnet": "10.20.0.0/24"}], [{"subnet": "fd20::/120"}]]})
        };
        let net = Net::new(&c, &format!("versions{i}"), ipam);
        let at = net.plugin().with_version(version);
        let o = at.add("c1", "eth0");
        assert_eq!(o.code, 0, "{version}: {o:?}");
        let result = o.json();
        let o2 = at.add("c2", "eth0");
        assert_eq!(o2.code, 0, "{version}: {o2:?}");
        assert_ne!(
            o.stdout, o2.stdout,
            "{version}: two containers, two addresses"
        );
        let want = if version.starts_with("0.2") { 1 } else { 2 };
        assert_eq!(check_consistent(&c, &net.name).len(), 2 * want, "{version}");
        if !version.starts_with("0.2") && !version.starts_with("0.3") {
            let chk = at.check_prev("c1", "eth0", &result);
            assert_eq!(chk.code, 0, "{version} CHECK: {chk:?}");
            let other = at.check_prev("c9", "eth0", &result);
            assert_ne!(other.code, 0, "{version}: CHECK of an unknown attachment");
        }
        for _ in 0..2 {
            let d = at.del("c1", "eth0");
            assert_eq!(d.code, 0, "{version} DEL: {d:?}");
        }
        let left = check_consistent(&c, &net.name);
        assert!(
            left.values().all(|(id, _)| id == "c2"),
            "{version}: {left:?}"
        );
        net.assert_disk_untouched();
    }

    // Requested addresses, exclusions, exhaustion, STATUS, GC.
    let net = Net::new(
        &c,
        "small",
        json!({"ranges": [[{"subnet": "10.21.0.0/24", "rangeStart": "10.21.0.10",
            "rangeEnd": "10.21.0.14", "exclude": ["10.21.0.12"]}]]}),
    );
    let o = net.plugin().add_args("req", "eth0", "IP=10.21.0.13");
    assert_eq!(o.ips(), ["10.21.0.13"], "{o:?}");
    let o = net.plugin().add_args("req2", "eth0", "IP=10.21.0.13");
    assert_eq!(o.err_code(), Some(101), "requested address taken: {o:?}");
    let o = net.plugin().add_args("req3", "eth0", "IP=10.21.0.12");
    assert_eq!(o.err_code(), Some(101), "excluded");
    assert_eq!(net.status().code, 0);
    let mut got: Vec<String> = ["a1", "a2", "a3"]
        .iter()
        .flat_map(|id| net.add_ok(id))
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["10.21.0.10", "10.21.0.11", "10.21.0.14"],
        "exclusion skipped"
    );
    let o = net.add("a4");
    assert_eq!(o.err_code(), Some(100), "exhausted: {o:?}");
    let st = net.status();
    assert_eq!(st.err_code(), Some(50), "STATUS when exhausted: {st:?}");
    assert_eq!(
        check_consistent(&c, "small").len(),
        4,
        "the failed ADDs wrote nothing"
    );
    // GC keeps the listed attachments only.
    let g = net.gc(&["a2", "req"]);
    assert_eq!(g.code, 0, "{g:?}");
    let left: BTreeSet<String> = check_consistent(&c, "small")
        .into_values()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, BTreeSet::from(["a2".to_string(), "req".to_string()]));
    // Round robin: after req took .13, a1, a2, a3 got .14, .10, .11; GC
    // freed .14 and .11; ADDs continue after the cursor (.11), skipping the
    // exclusion (.12) and what is taken (.13, then .10 after wrapping).
    assert_eq!(net.add_ok("a5"), ["10.21.0.14"]);
    assert_eq!(net.add_ok("a6"), ["10.21.0.11"]);
    net.assert_disk_untouched();
}

/// etcd down: ADD and DEL code 11 within the timeout, STATUS 50; bad
/// configuration code 7 naming the key.
#[test]
fn unreachable_etcd_is_try_again_later() {
    if !etcd_or_skip("etcd unreachable") {
        return;
    }
    let c = Cluster::start(1);
    let mut net = Net::new(&c, "down", json!({"subnet": "10.22.0.0/24"}));
    net.add_ok("c1");
    drop(c); // every member gone
    net.timeout = "1s".into();
    let t = std::time::Instant::now();
    let o = net.add("c2");
    assert_eq!(o.err_code(), Some(11), "{o:?}");
    // Not a speed check: the call must end (by its 1 s timeout), not hang;
    // the bound is generous for a loaded machine.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert!(o.json()["msg"].as_str().unwrap().contains("etcd"), "{o:?}");
    assert_eq!(net.del("c1").err_code(), Some(11));
    assert_eq!(net.status().err_code(), Some(50));
    let mut bad = net.store();
    bad["timeout"] = json!("soon");
    let o = net.plugin().with_store(bad).add("c3", "eth0");
    assert_eq!(o.err_code(), Some(7), "{o:?}");
    assert!(o.stdout.contains("ipam.store.timeout"), "{o:?}");
    net.assert_disk_untouched();
}

/// first_free over a range holding more reservations than one read window
/// (256 keys): the holes past the first window are found, in order.
#[test]
fn first_free_walks_past_the_read_window() {
    if !etcd_or_skip("etcd read windows") {
        return;
    }
    let c = Cluster::start(1);
    let keys = Keys::new(PREFIX, "big");
    let holes = [300u32, 590];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut kv = etcd_client::Client::connect(c.endpoints(), None)
            .await
            .unwrap()
            .kv_client();
        let base = u32::from(std::net::Ipv4Addr::new(10, 50, 0, 1));
        for i in (0..700u32).filter(|i| !holes.contains(i)) {
            let ip = std::net::IpAddr::V4((base + i).into());
            let v = json!({"containerID": format!("c{i}"), "ifname": "eth0", "node": "n"});
            kv.put(keys.ip(ip), v.to_string(), None).await.unwrap();
        }
    });
    let set = range_set("big", "10.50.0.0/22");
    let mut st = EtcdStore::new(etcd_config(&c, "node-a"), "big");
    let mut s = st.session().unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let mut all = host_local::alloc::Candidates::new(&set, None).map(|(i, _)| i);
    assert_eq!(s.first_free(&mut all, 1).unwrap(), [ip("10.50.1.45")]);
    let mut after =
        host_local::alloc::Candidates::new(&set, Some(ip("10.50.1.45"))).map(|(i, _)| i);
    assert_eq!(s.first_free(&mut after, 1).unwrap(), [ip("10.50.2.79")]);
    let mut tail = host_local::alloc::Candidates::new(&set, Some(ip("10.50.2.79"))).map(|(i, _)| i);
    assert_eq!(s.first_free(&mut tail, 1).unwrap(), [ip("10.50.2.189")]);
    assert_eq!(s.count().unwrap(), 698);
}

/// etcd's current revision: every transaction that writes adds one.
fn revision(c: &Cluster) -> i64 {
    let (ok, out) = c.etcdctl(&["get", "/revision-probe", "-w", "json"]);
    assert!(ok, "etcdctl get: {out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["header"]["revision"].as_i64().expect("header.revision")
}

/// DEL of a dual-stack attachment releases both addresses in one
/// transaction: etcd failing during it leaves both reserved, never one.
#[test]
fn del_releases_every_address_in_one_transaction() {
    if !etcd_or_skip("etcd DEL in one transaction") {
        return;
    }
    let c = Cluster::start(1);
    let ipam = json!({"ranges": [[{"subnet": "10.31.0.0/24"}], [{"subnet": "fd31::/64"}]]});
    let net = Net::new(&c, "del-txn", ipam);
    assert_eq!(net.add_ok("c1").len(), 2);
    let before = revision(&c);
    let o = net.del("c1");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        revision(&c) - before,
        1,
        "one transaction for both releases"
    );
    assert!(check_consistent(&c, "del-txn").is_empty());
    assert_eq!(net.del("c1").code, 0, "DEL again: nothing left, success");
    net.assert_disk_untouched();
}
