//! `ipamctl cluster import` against a real etcd member: a disk store made
//! by the real plugin moved into etcd as one node's, then used by the
//! plugin in cluster mode; refusals that write nothing; a second run that
//! imports nothing; a failure part way that takes back what was written.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use host_local::config::DEFAULT_BLOCK;
use host_local::store::etcd::{EtcdStore, ImportError, ImportRequest};
use host_local::store::{Entry, Owner};
use serde_json::{json, Value};
use test_support::etcd as etcd_util;
use test_support::Net;

use crate::common::{have_etcd, run_in, skip, store, tree, BIN};

const PREFIX: &str = "/imp";
const SUBNET: &str = "10.70.0.0/24";

/// Our plugin, built next to ipamctl (`cargo build -p host-local`), with
/// `host-local-etcd` beside it for the etcd store.
fn our_plugin() -> Option<PathBuf> {
    let p = Path::new(BIN).parent()?.join("host-local");
    (p.exists() && p.with_file_name("host-local-etcd").exists()).then_some(p)
}

fn store_json(endpoints: &[String], node: &str) -> Value {
    json!({"type": "etcd", "endpoints": endpoints, "prefix": PREFIX, "node": node,
        "timeout": "5s"})
}

/// `<dir>/net.d/10-net1.conflist`: network net1 in etcd as `node`.
fn etcd_conf(dir: &Path, endpoints: &[String], node: &str) {
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    let net = json!({"cniVersion": "1.0.0", "name": "net1",
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "subnet": SUBNET,
            "store": store_json(endpoints, node)}}]});
    std::fs::write(dir.join("net.d/10-net1.conflist"), net.to_string()).unwrap();
}

/// Every key under the test prefix with its value.
fn dump(c: &etcd_util::Cluster) -> BTreeMap<String, String> {
    c.dump(&format!("{PREFIX}/"))
}

/// ipamctl in `dir`: (exit status, stdout, stderr).
fn ipamctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let r = run_in(dir, args, None);
    (r.code, r.stdout, r.stderr)
}

fn import(dir: &Path, node: &str, json: bool) -> (i32, String, String) {
    let mut args = vec![
        "cluster",
        "import",
        "net1",
        "--config",
        "net.d",
        "--node",
        node,
        "--from",
        "data/net1",
    ];
    if json {
        args.push("--json");
    }
    ipamctl(dir, &args)
}

fn hex(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().unwrap();
    format!("{:08x}", u32::from(a))
}

/// The network's layout key as its first node writes it, with `block_size`.
fn put_layout(c: &etcd_util::Cluster, block_size: u32) {
    let (ok, t) = c.etcdctl(&[
        "put",
        &format!("{PREFIX}/net1/layout"),
        &format!(r#"{{"version":2,"blockSize":{block_size}}}"#),
    ]);
    assert!(ok, "{t}");
}

fn etcd_store(endpoints: &[String], node: &str) -> EtcdStore {
    crate::common::etcd_store(endpoints, PREFIX, "net1", node)
}

/// A reservation made through the etcd store as `node`.
fn reserve(endpoints: &[String], node: &str, id: &str, ip: &str) {
    crate::common::etcd_reserve(&mut etcd_store(endpoints, node), id, ip);
}

#[test]
fn import_of_a_plugin_made_disk_store_keeps_its_addresses_in_cluster_mode() {
    if !have_etcd() {
        return;
    }
    let Some(plugin) = our_plugin() else {
        skip("our plugin is not built next to ipamctl (cargo build -p host-local --bins)");
        return;
    };
    let c = etcd_util::Cluster::start(1);
    let eps = c.endpoints();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let data = d.join("data");
    // The node on the disk store: three pods through the real plugin, and
    // a file an old plugin version left (the container ID alone).
    let disk = Net::new(&plugin, "net1", &data, json!({"subnet": SUBNET})).with_version("1.0.0");
    let mut ips = BTreeMap::new();
    for id in ["c1", "c2", "c3"] {
        ips.insert(id, disk.add_ok(id, "eth0")[0].clone());
    }
    assert_eq!(ips["c3"], "10.70.0.4");
    std::fs::write(data.join("net1/10.70.0.9"), "legacy-c4").unwrap();
    etcd_conf(d, &eps, "node-a");
    let before = tree(&data.join("net1"));

    let start = Instant::now();
    let (code, out, err) = import(d, "node-a", true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(start.elapsed() < Duration::from_secs(20));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["command"], "cluster import");
    assert_eq!(v["outcome"], "imported");
    assert_eq!(
        (&v["reservations"], &v["imported"], &v["alreadyPresent"]),
        (&json!(4), &json!(4), &json!(0))
    );
    assert_eq!(
        (&v["blocksClaimed"], &v["borrowed"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(v["layoutWritten"], true);
    assert_eq!(v["cursors"], json!({"0": "10.70.0.4"}));
    assert_eq!(v["refused"], json!([]));
    assert_eq!(
        tree(&data.join("net1")),
        before,
        "the disk files are untouched"
    );

    let keys = dump(&c);
    let base = format!("{PREFIX}/net1");
    for (id, ip) in &ips {
        let h = hex(ip);
        let rec = format!(r#"{{"containerID":"{id}","ifname":"eth0","node":"node-a"}}"#);
        assert_eq!(keys[&format!("{base}/ips/4/{h}")], rec);
        assert_eq!(keys[&format!("{base}/attachments/{id}/eth0/4/{h}")], rec);
        assert_eq!(keys[&format!("{base}/nodes/node-a/ips/4/{h}")], rec);
    }
    let legacy = r#"{"containerID":"legacy-c4","node":"node-a"}"#;
    let h9 = hex("10.70.0.9");
    assert_eq!(keys[&format!("{base}/ips/4/{h9}")], legacy);
    assert_eq!(
        keys[&format!("{base}/attachments/legacy-c4//4/{h9}")],
        legacy
    );
    assert_eq!(keys[&format!("{base}/nodes/node-a/ips/4/{h9}")], legacy);
    assert_eq!(
        keys[&format!("{base}/blocks/4/0a460000")],
        r#"{"node":"node-a","size":64,"full":false}"#
    );
    assert_eq!(keys[&format!("{base}/nodes/node-a/blocks/4/0a460000")], "");
    assert_eq!(
        keys[&format!("{base}/layout")],
        r#"{"version":2,"blockSize":64}"#
    );
    let act: Value = serde_json::from_str(&keys[&format!("{base}/nodes/node-a/activity")]).unwrap();
    assert_eq!(act["op"], "import");
    assert_eq!(act["cursors"], json!({"0": "10.70.0.4"}));
    assert_eq!(keys.len(), 4 * 3 + 2 + 1 + 1, "{keys:#?}");
    // The keys' invariants hold (check walks them on an etcd network).
    std::fs::create_dir_all(d.join("results")).unwrap();
    let invariants = || {
        let args = [
            "--results-dir",
            "results",
            "check",
            "net1",
            "--config",
            "net.d",
            "--json",
        ];
        let (code, out, err) = ipamctl(d, &args);
        assert_eq!(code, 0, "{out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["invariants"]["violations"], json!([]), "{out}");
        v["invariants"]["keys"].clone()
    };
    assert_eq!(invariants(), json!(16));

    // The node in cluster mode: a new pod gets none of the imported
    // addresses; the imported pods' DEL and CHECK work, the legacy one's too.
    let cluster = disk.with_store(store_json(&eps, "node-a"));
    let new = cluster.add_ok("c5", "eth0")[0].clone();
    assert!(
        !ips.values().any(|ip| *ip == new) && new != "10.70.0.9",
        "ADD handed out imported address {new}"
    );
    let o = cluster.check("c2", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    let o = cluster.del("c1", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    let o = cluster.del("legacy-c4", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    let keys = dump(&c);
    for gone in [
        format!("{base}/ips/4/{}", hex(&ips["c1"])),
        format!("{base}/attachments/c1/eth0/4/{}", hex(&ips["c1"])),
        format!("{base}/ips/4/{h9}"),
        format!("{base}/attachments/legacy-c4//4/{h9}"),
        format!("{base}/nodes/node-a/ips/4/{h9}"),
    ] {
        assert!(!keys.contains_key(&gone), "{gone} left after DEL");
    }
    let (code, out, err) = ipamctl(d, &["cluster", "net1", "--config", "net.d", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["nodes"],
        json!([{"node": "node-a", "reservations": 3}]),
        "c2, c3, c5"
    );
    invariants();
    assert_eq!(
        tree(&data.join("net1")),
        before,
        "cluster mode left the disk alone"
    );
}

#[test]
fn import_refuses_addresses_held_by_another_node_and_writes_nothing() {
    if !have_etcd() {
        return;
    }
    let c = etcd_util::Cluster::start(1);
    let eps = c.endpoints();
    put_layout(&c, DEFAULT_BLOCK);
    // node-b holds .3 in etcd for another container, and .5 for the very
    // container the disk names: either way not node-a's to import.
    reserve(&eps, "node-b", "c9", "10.70.0.3");
    reserve(&eps, "node-b", "c5", "10.70.0.5");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(
        &d.join("data/net1"),
        &[
            ("10.70.0.2", "c1\r\neth0"),
            ("10.70.0.3", "c3\r\neth0"),
            ("10.70.0.5", "c5\r\neth0"),
            ("10.70.0.6", ""),
            ("10.99.0.9", "c7\r\neth0"),
        ],
    );
    etcd_conf(d, &eps, "node-a");
    let before = dump(&c);

    let (code, out, err) = import(d, "node-a", false);
    assert_eq!(code, 1, "{out}{err}");
    crate::common::assert_text(
        &out,
        "\
refused: 4 addresses of data/net1 cannot be imported into network net1 as node node-a's; nothing was written
ADDRESS    PROBLEM         CONTAINER  IFNAME  NODE    DETAIL
10.70.0.3  held            c9         eth0    node-b
10.70.0.5  held            c5         eth0    node-b
10.70.0.6  damaged         -          -       -       damaged on disk: empty
10.99.0.9  outside-ranges  -          -       -       outside every range of the network
held: etcd reserves these for another container or node; the node's pod and that one would share the address. Find out which is right (ipamctl show NETWORK --config CONF --ip ADDR), release the wrong one, then import again.
outside-ranges: the configuration's ranges do not hold these; fix the ranges, or release them on disk (ipamctl release NETWORK --ip ADDR) once their pods are gone.
damaged: these files name no container; release them on disk (ipamctl release NETWORK --ip ADDR, or gc) once you know no pod uses the address.
",
    );
    assert_eq!(dump(&c), before, "a refused import writes nothing");

    let (code, out, _) = import(d, "node-a", true);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "refused");
    assert_eq!(v["imported"], 0);
    assert_eq!(
        v["refused"][0],
        json!({"address": "10.70.0.3", "problem": "held", "containerId": "c9", "ifname": "eth0",
            "node": "node-b", "detail": null})
    );
    let problems: Vec<&str> = v["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["problem"].as_str().unwrap())
        .collect();
    assert_eq!(problems, ["held", "held", "damaged", "outside-ranges"]);
    assert_eq!(dump(&c), before);

    // Another blockSize in etcd than in the configuration: refused too.
    put_layout(&c, 16);
    let before = dump(&c);
    std::fs::write(
        d.join("data/net1/.keep"),
        "", // a stray file changes nothing
    )
    .unwrap();
    for f in ["10.70.0.3", "10.70.0.5", "10.70.0.6", "10.99.0.9"] {
        std::fs::remove_file(d.join("data/net1").join(f)).unwrap();
    }
    let (code, out, err) = import(d, "node-a", false);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(
            "/imp/net1/layout records blockSize 16, the configuration's ipam.store.blockSize is 64"
        ),
        "{err}"
    );
    assert_eq!(dump(&c), before);
}

#[test]
fn import_twice_imports_nothing_new_the_second_time() {
    if !have_etcd() {
        return;
    }
    let c = etcd_util::Cluster::start(1);
    let eps = c.endpoints();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(
        &d.join("data/net1"),
        &[
            ("10.70.0.2", "c1\r\neth0"),
            ("10.70.0.3", "c2\r\neth0"),
            ("10.70.0.70", "c3\r\neth1"),
            ("10.70.0.71", "old-c4"),
        ],
    );
    std::fs::write(d.join("data/net1/last_reserved_ip.0"), "10.70.0.71").unwrap();
    etcd_conf(d, &eps, "node-a");

    let (code, out, err) = import(d, "node-a", false);
    assert_eq!(code, 0, "{out}{err}");
    let first = dump(&c);
    let ep = eps.join(",");
    crate::common::assert_text(
        &out.replace(&ep, "<etcd>"),
        "\
imported 4 reservations of data/net1 into network net1 as node node-a's (etcd <etcd>, keys /imp/net1/)
  imported         4
  already present  0
  blocks claimed   2
  borrowed         0 (in blocks other nodes claimed)
  layout written   yes
  cursors          set 0: 10.70.0.71
  transactions     1
the files in data/net1 are unchanged; switch the node's configuration to the etcd store next
",
    );
    let (code, out, err) = import(d, "node-a", false);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.replace(&ep, "<etcd>"),
        "nothing new to import: all 4 reservations of data/net1 are in etcd already as node \
         node-a's (network net1, etcd <etcd>)\n"
    );
    let (code, out, _) = import(d, "node-a", true);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "nothing-new");
    assert_eq!(
        (&v["imported"], &v["alreadyPresent"]),
        (&json!(0), &json!(4))
    );
    assert_eq!(v["transactions"], 0);
    assert_eq!(dump(&c), first, "the second and third runs wrote nothing");
    // The same directory as another node's is refused: node-a holds them.
    let (code, out, _) = import(d, "node-b", false);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused: 4 addresses"), "{out}");
    assert_eq!(dump(&c), first);
}

#[test]
fn import_takes_back_its_writes_when_a_later_transaction_fails() {
    if !have_etcd() {
        return;
    }
    let c = etcd_util::Cluster::start(1);
    let eps = c.endpoints();
    // 300 reservations: 8 transactions of at most 40.
    let (entries, sets) = three_hundred();
    let cursors = BTreeMap::new();
    let req = ImportRequest {
        node: "node-a",
        entries: &entries,
        cursors: &cursors,
        sets: &sets,
    };
    let before = dump(&c);
    let intruder = format!("{PREFIX}/net1/ips/4/{}", hex("10.70.1.10"));
    let intruder_value = r#"{"containerID":"x1","ifname":"eth0","node":"node-z"}"#;
    let mut batches = Vec::new();
    let mut store = etcd_store(&eps, "node-a");
    let r = store.import(&req, &mut |p| {
        batches.push(*p);
        if p.batch == 2 {
            // Someone takes an address of a later transaction meanwhile.
            let (ok, t) = c.etcdctl(&["put", &intruder, intruder_value]);
            assert!(ok, "{t}");
        }
    });
    let Err(ImportError::Write(f)) = r else {
        panic!("expected a write failure, got {r:?}");
    };
    assert_eq!(batches.len(), 6, "{batches:?}");
    assert_eq!(batches[0].batches, 8);
    assert_eq!(f.taken.len(), 1, "{f}");
    assert_eq!(f.taken[0].ip.to_string(), "10.70.1.10");
    assert_eq!(f.taken[0].node.as_deref(), Some("node-z"));
    assert_eq!(f.written, batches[5].written);
    assert_eq!(f.taken_back, f.written, "{f}");
    assert!(f.left.is_empty() && f.undo.is_empty(), "{f}");
    let text = f.to_string();
    assert!(
        text.contains("10.70.1.10 held by x1 eth0 on node node-z, taken after it was read"),
        "{text}"
    );
    let mut after = dump(&c);
    assert_eq!(after.remove(&intruder).as_deref(), Some(intruder_value));
    assert_eq!(after, before, "everything the run wrote was taken back");
}

/// 300 reservations of 10.70.0.0/22 for containers c0..c299, and its range sets.
fn three_hundred() -> (Vec<Entry>, Vec<host_local::config::RangeSet>) {
    let sets = host_local::config::IpamConfig::load(
        "net1",
        cni_proto::SpecVersion::V1_0_0,
        Some(&json!({"type": "host-local", "subnet": "10.70.0.0/22"})),
        None,
        None,
        &cni_proto::CniArgs::default(),
    )
    .unwrap()
    .ranges;
    let entries = (0..300u32)
        .map(|i| {
            let ip = IpAddr::V4((u32::from(std::net::Ipv4Addr::new(10, 70, 0, 2)) + i).into());
            let owner = Owner::Attachment {
                id: format!("c{i}"),
                ifname: "eth0".into(),
            };
            Entry::new(ip, owner)
        })
        .collect();
    (entries, sets)
}

#[test]
fn import_recognises_its_own_transaction_sent_again_after_a_lost_answer() {
    use etcd_util::{Proxy, ProxyMode};
    if !have_etcd() {
        return;
    }
    let c = etcd_util::Cluster::start(1);
    // Two ways to the one member: a answers first; then a drops answers
    // and b forwards, so a transaction applied through a is sent again
    // through b and fails its compares against its own writes.
    let a = Proxy::start(&c.endpoint(0), ProxyMode::Forward);
    let b = Proxy::start(&c.endpoint(0), ProxyMode::Reject);
    let mut store = etcd_store(&[a.endpoint(), b.endpoint()], "node-a");
    let (entries, sets) = three_hundred();
    let cursors = BTreeMap::new();
    let req = ImportRequest {
        node: "node-a",
        entries: &entries,
        cursors: &cursors,
        sets: &sets,
    };
    let done = store
        .import(&req, &mut |p| {
            if p.batch == 2 {
                a.set(ProxyMode::DropAnswers);
                b.set(ProxyMode::Forward);
            }
        })
        .unwrap();
    assert_eq!((done.imported, done.already_present), (300, 0));
    assert_eq!(done.blocks_claimed.len(), 5, "{done:?}");
    assert_eq!(done.transactions, 8);
    let keys = dump(&c);
    // 300 reservations of three keys, 5 claims of two, layout, activity.
    assert_eq!(keys.len(), 300 * 3 + 5 * 2 + 2);
    assert!(keys
        .iter()
        .filter(|(k, _)| k.contains("/ips/4/") && !k.contains("/nodes/"))
        .all(|(_, v)| v.ends_with(r#""node":"node-a"}"#)));
}

/// A /14 of 200,000 reservations: the reads are range reads and the
/// writes transactions of 40, so it takes seconds, not hours. Not run by
/// default (it writes 200,000 files and 600,000 keys):
/// `cargo test -p ipamctl --test cli -- --ignored import_of_200000`.
#[test]
#[ignore]
fn import_of_200000_reservations_of_a_slash_14() {
    if !have_etcd() {
        return;
    }
    let c = etcd_util::Cluster::start_args(1, &["--quota-backend-bytes", "8589934592"]);
    let eps = c.endpoints();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let net = d.join("data/net1");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(net.join("lock"), "").unwrap();
    const N: u32 = 200_000;
    let first = u32::from(std::net::Ipv4Addr::new(10, 64, 0, 2));
    for i in 0..N {
        let ip = std::net::Ipv4Addr::from(first + i);
        std::fs::write(net.join(ip.to_string()), format!("pod-{i:06}\r\neth0")).unwrap();
    }
    std::fs::create_dir_all(d.join("net.d")).unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "net1",
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.64.0.0/14",
            "store": store_json(&eps, "node-a")}}]});
    std::fs::write(d.join("net.d/10-net1.conflist"), conf.to_string()).unwrap();
    let start = Instant::now();
    let (code, out, err) = import(d, "node-a", true);
    let took = start.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"], N);
    eprintln!(
        "imported {N} reservations in {took:.1?} ({} transactions, {} blocks claimed)",
        v["transactions"], v["blocksClaimed"]
    );
    let start = Instant::now();
    let (code, out, err) = import(d, "node-a", true);
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("second run (nothing new) in {:.1?}", start.elapsed());
    assert!(took < Duration::from_secs(600), "{took:?}");
}

#[test]
fn import_of_an_empty_directory_says_so_without_asking_etcd() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(&d.join("data/net1"), &[]);
    // Nothing listens on the discard port.
    etcd_conf(d, &["http://127.0.0.1:9".to_string()], "node-a");
    let (code, out, err) = import(d, "node-a", false);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "nothing to import: data/net1 holds no reservations\n");
    // Not a store directory: refused, naming it.
    std::fs::create_dir_all(d.join("data/net2")).unwrap();
    let (code, _, err) = ipamctl(
        d,
        &[
            "cluster",
            "import",
            "net1",
            "--config",
            "net.d",
            "--node",
            "node-a",
            "--from",
            "data/net2",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("data/net2/lock: no lock file"), "{err}");
}
