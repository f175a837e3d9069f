//! `ipamctl cluster` against a real etcd member (Debian etcd-server),
//! holding reservations made through the etcd store as several nodes.

use std::process::Command;
use std::time::Duration;

use host_local::store::etcd::{EtcdConfig, EtcdStore};
use host_local::store::{Attachment, Pick, Store};
use serde_json::{json, Value};

use test_support::etcd as etcd_util;

const BIN: &str = env!("CARGO_BIN_EXE_ipamctl");

fn reserve(endpoints: &[String], node: &str, id: &str, ip: &str) {
    let cfg = EtcdConfig {
        endpoints: endpoints.to_vec(),
        prefix: "/ipamctl-test".into(),
        timeout: Duration::from_secs(5),
        node: node.into(),
        tls: None,
    };
    let mut store = EtcdStore::new(cfg, "clusternet");
    let mut s = store.session().unwrap();
    let pick = Pick {
        ip: ip.parse().unwrap(),
        set_index: 0,
    };
    s.commit(&Attachment::parse(id, "eth0").unwrap(), &[pick])
        .unwrap()
        .finish()
        .unwrap();
}

#[test]
fn cluster_view_counts_per_node_and_finds_nodes_not_live() {
    if !etcd_util::etcd_installed() {
        if std::env::var("IPAM_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("IPAM_REQUIRE_ALL=1 but etcd is not installed");
        }
        eprintln!("SKIPPED: etcd not installed (apt-get install etcd-server etcd-client)");
        return;
    }
    let c = etcd_util::Cluster::start(1);
    let eps = c.endpoints();
    for (i, node) in ["node-a", "node-a", "node-a", "node-b", "node-b"]
        .iter()
        .enumerate()
    {
        reserve(&eps, node, &format!("c{i}"), &format!("10.40.0.{}", i + 2));
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("10-clusternet.conf");
    let store = json!({"type": "etcd", "endpoints": eps, "prefix": "/ipamctl-test"});
    let net = json!({"cniVersion": "1.0.0", "name": "clusternet", "type": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "store": store}});
    std::fs::write(&conf, net.to_string()).unwrap();
    let live = dir.path().join("live.txt");
    std::fs::write(&live, "# live nodes\nnode-a\nnode-c\n").unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let conf_s = conf.to_str().unwrap();
    let (code, out, err) = run(&["cluster", "clusternet", "--config", conf_s, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reservations"], 5);
    assert_eq!(
        v["nodes"],
        json!([{"node": "node-a", "reservations": 3}, {"node": "node-b", "reservations": 2}])
    );
    let live_s = live.to_str().unwrap();
    let (code, out, err) = run(&[
        "cluster",
        "clusternet",
        "--config",
        conf_s,
        "--live-nodes",
        live_s,
        "--json",
    ]);
    assert_eq!(code, 1, "a node not live: {out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["notLive"], json!(["node-b"]));
    assert_eq!(v["nodes"][1]["live"], json!(false));
    let (code, out, _) = run(&[
        "cluster",
        "clusternet",
        "--config",
        conf_s,
        "--live-nodes",
        live_s,
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("not live: node-b (2 reservation(s)"), "{out}");
    // A network on the disk store has no cluster view.
    let disk = dir.path().join("disk.conf");
    std::fs::write(
        &disk,
        json!({"cniVersion": "1.0.0", "name": "disknet", "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.41.0.0/24"}})
        .to_string(),
    )
    .unwrap();
    let (code, _, err) = run(&["cluster", "disknet", "--config", disk.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("does not use the etcd store"), "{err}");
}
