//! `ipamctl cluster` against a real etcd member (Debian etcd-server),
//! holding reservations made through the etcd store as several nodes; and
//! the other commands on a network kept in etcd (read through the store, or
//! refused), reachable or not.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use test_support::etcd as etcd_util;

use crate::common::have_etcd;
use crate::common::BIN;

fn reserve(endpoints: &[String], node: &str, id: &str, ip: &str) {
    reserve_in("clusternet", endpoints, node, id, ip);
}

fn reserve_in(network: &str, endpoints: &[String], node: &str, id: &str, ip: &str) {
    let mut store = crate::common::etcd_store(endpoints, "/ipamctl-test", network, node);
    crate::common::etcd_reserve(&mut store, id, ip);
}

/// (exit status, stdout, stderr) of ipamctl run in `dir`.
fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn assert_text(actual: &str, expected: &str) {
    if actual != expected {
        panic!("output differs\n--- expected\n{expected}\n--- actual\n{actual}\n---");
    }
}

/// `<dir>/net.d` with `net.d/10-<name>.conflist` for each (name, subnet)
/// kept in etcd at `endpoints`, and an empty data directory `<dir>/data`.
fn etcd_configs(dir: &Path, endpoints: &[String], nets: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for (name, subnet) in nets {
        let store = json!({"type": "etcd", "endpoints": endpoints, "prefix": "/ipamctl-test",
            "node": "node-b", "timeout": "2s"});
        let net = json!({"cniVersion": "1.0.0", "name": name,
            "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "subnet": subnet,
                "store": store}}]});
        std::fs::write(
            dir.join(format!("net.d/10-{name}.conflist")),
            net.to_string(),
        )
        .unwrap();
    }
}

#[test]
fn etcd_networks_are_read_from_etcd_by_list_metrics_and_show() {
    if !have_etcd() {
        return;
    }
    let c = etcd_util::Cluster::start(1);
    let eps = c.endpoints();
    // enet: three reservations on two nodes, one outside the subnet (its
    // commit moves node-b's cursor there: LAST RESERVED is the configured
    // node's), one damaged value.
    reserve_in("enet", &eps, "node-a", "c1", "10.60.0.2");
    reserve_in("enet", &eps, "node-a", "c2", "10.60.0.3");
    reserve_in("enet", &eps, "node-b", "c3", "10.61.0.9");
    let (ok, text) = c.etcdctl(&["put", "/ipamctl-test/enet/ips/4/0a3c0005", "garbage"]);
    assert!(ok, "{text}");
    // fullnet: a /29 whose five addresses are all taken.
    for i in 2..=6 {
        reserve_in(
            "fullnet",
            &eps,
            "node-b",
            &format!("f{i}"),
            &format!("10.62.0.{i}"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    etcd_configs(
        d,
        &eps,
        &[("enet", "10.60.0.0/24"), ("fullnet", "10.62.0.0/29")],
    );
    let ep = eps.join(",");
    let run = |args: &[&str]| {
        let mut full = vec!["--data-dir", "data"];
        full.extend_from_slice(args);
        let (code, out, err) = run_in(d, &full);
        (code, out.replace(&ep, "<etcd>"), err)
    };

    let (code, out, err) = run(&["list", "--config", "net.d"]);
    assert_eq!(code, 1, "fullnet is exhausted: {out}{err}");
    assert_text(
        &out,
        "\
data directory data
NETWORK  RESERVED  LEGACY  DAMAGED  PROBLEMS  SET  RANGES                 CAPACITY  FREE   USAGE  NOTE
enet            4       0        1         2    0  10.60.0.1-10.60.0.254       253   250    1.2%  in etcd <etcd>
fullnet         5       0        0         0    0  10.62.0.1-10.62.0.6           5     0  100.0%  EXHAUSTED; in etcd <etcd>
",
    );
    let (code, out, err) = run(&["list", "--config", "net.d", "--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let enet = &v["networks"][0];
    assert_eq!(enet["store"], "etcd");
    assert_eq!(enet["endpoints"], json!(["<etcd>"]));
    assert_eq!(enet["path"], "/ipamctl-test/enet/");
    assert_eq!(enet["reservations"], 4);
    assert_eq!(
        enet["oldestAgeSeconds"],
        Value::Null,
        "ages are unknown in etcd"
    );
    assert_eq!(enet["problems"]["damaged"], 1);
    assert_eq!(enet["problems"]["outside-ranges"], 1);
    assert_eq!(
        enet["rangeSets"][0]["reserved"], 3,
        "the damaged value blocks .5"
    );
    assert_eq!(v["networks"][1]["exhausted"], true);

    let (code, out, err) = run(&["metrics", "--config", "net.d"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "ipamctl_network_up{network=\"enet\"} 1",
        "ipamctl_reservations{network=\"enet\"} 4",
        "ipamctl_reservations{network=\"fullnet\"} 5",
        "ipamctl_network_exhausted{network=\"fullnet\"} 1",
        "ipamctl_range_set_usage_ratio{network=\"fullnet\",range_set=\"0\",ranges=\"10.62.0.1-10.62.0.6\"} 1",
        "ipamctl_problems{network=\"enet\",kind=\"damaged\"} 1",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    assert!(
        !out.contains("ipamctl_oldest_reservation_age_seconds{"),
        "ages are unknown in etcd, not 0: {out}"
    );

    let (code, out, err) = run(&["show", "enet", "--config", "net.d"]);
    assert_eq!(code, 1, "problems: {err}");
    assert_text(
        &out,
        "\
network enet  (in etcd <etcd>, keys /ipamctl-test/enet/)
config  net.d/10-enet.conflist
SET  RANGES                 GATEWAY    CAPACITY  RESERVED  FREE  USAGE  LAST RESERVED
  0  10.60.0.1-10.60.0.254  10.60.0.1       253         3   250   1.2%  10.61.0.9

ADDRESS    CONTAINER  IFNAME  NODE    AGE  PROBLEMS
10.60.0.2  c1         eth0    node-a    ?
10.60.0.3  c2         eth0    node-a    ?
10.60.0.5  -          -       -         ?  damaged: unreadable etcd value \"garbage\": names no attachment
10.61.0.9  c3         eth0    node-b    ?  outside-ranges: outside every configured range
4 reservations, 2 with problems
",
    );
    let (code, out, _) = run(&["show", "fullnet", "--config", "net.d", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["network"]["exhausted"], true);
    let r = &v["reservations"][0];
    assert_eq!(
        (&r["node"], &r["mtime"], &r["ageSeconds"], &r["containerId"]),
        (&json!("node-b"), &Value::Null, &Value::Null, &json!("f2"))
    );
    let (code, _, err) = run(&["show", "enet", "--config", "net.d", "--older-than", "1h"]);
    assert_eq!(code, 2, "etcd records no ages: {err}");
    assert!(err.contains("records no reservation times"), "{err}");
    // A leftover disk directory of the same name is not what list reads.
    std::fs::create_dir_all(d.join("data/enet")).unwrap();
    std::fs::write(d.join("data/enet/lock"), "").unwrap();
    let (_, out, _) = run(&["list", "--config", "net.d", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["networks"][0]["reservations"], 4, "{out}");
    let note = v["networks"][0]["notes"][0].as_str().unwrap_or_default();
    assert!(note.contains("keeps this network in etcd"), "{out}");
}

/// A directory whose net.d holds network `enet` kept in an etcd nobody
/// serves: nothing listens on the discard port.
fn unreachable_enet() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    etcd_configs(
        dir.path(),
        &["http://127.0.0.1:9".to_string()],
        &[("enet", "10.60.0.0/24")],
    );
    dir
}

#[test]
fn an_unreachable_etcd_is_an_error_not_an_empty_network() {
    let dir = unreachable_enet();
    let d = dir.path();
    let run = |args: &[&str]| {
        let mut full = vec!["--data-dir", "data", "--lock-timeout", "2s"];
        full.extend_from_slice(args);
        run_in(d, &full)
    };
    let (code, out, err) = run(&["list", "--config", "net.d"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("reading network enet from etcd http://127.0.0.1:9"),
        "{err}"
    );
    assert!(!out.contains("no store yet"), "{out}");
    let (code, out, _) = run(&["metrics", "--config", "net.d"]);
    assert_eq!(code, 2);
    assert!(
        out.lines()
            .any(|l| l == "ipamctl_network_up{network=\"enet\"} 0"),
        "{out}"
    );
    assert!(
        !out.contains("ipamctl_reservations{network=\"enet\"}"),
        "{out}"
    );
    let (code, _, err) = run(&["show", "enet", "--config", "net.d"]);
    assert_eq!(code, 2);
    assert!(err.contains("etcd http://127.0.0.1:9"), "{err}");
}

#[test]
fn a_silent_etcd_is_waited_for_at_most_lock_timeout() {
    // Accepts connections and never answers; the store's own timeout is 30s.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    etcd_configs(d, std::slice::from_ref(&ep), &[("enet", "10.60.0.0/24")]);
    let conf = d.join("net.d/10-enet.conflist");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace("\"2s\"", "\"30s\"")).unwrap();
    let start = std::time::Instant::now();
    let (code, out, err) = run_in(
        d,
        &[
            "--data-dir",
            "data",
            "--lock-timeout",
            "1s",
            "metrics",
            "--config",
            "net.d",
        ],
    );
    assert!(start.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(code, 2, "{err}");
    assert!(
        out.lines()
            .any(|l| l == "ipamctl_network_up{network=\"enet\"} 0"),
        "{out}"
    );
    assert!(err.contains(&ep), "{err}");
    drop(silent);
}

#[test]
fn leaks_check_gc_release_on_an_unreachable_etcd_fail_naming_it() {
    let dir = unreachable_enet();
    let d = dir.path();
    std::fs::write(d.join("valid.txt"), "c1 eth0\n").unwrap();
    for args in [
        &["leaks", "enet", "--valid", "valid.txt"][..],
        &["check", "enet", "--results-dir", "data"],
        &["gc", "enet", "--valid", "valid.txt", "--yes"],
        &["release", "enet", "--ip", "10.60.0.2", "--yes"],
    ] {
        let mut full = vec!["--data-dir", "data", "--lock-timeout", "2s"];
        full.extend_from_slice(args);
        full.extend(["--config", "net.d"]);
        let (code, out, err) = run_in(d, &full);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("reading network enet from etcd http://127.0.0.1:9"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("works on disk networks only"), "{err}");
    }
    // reconcile keeps a state per store directory: still disk networks only.
    let (code, _, err) = run_in(
        d,
        &[
            "--data-dir",
            "data",
            "reconcile",
            "enet",
            "--valid",
            "valid.txt",
            "--grace",
            "1h",
            "--state",
            "st.json",
            "--dry-run",
            "--config",
            "net.d",
        ],
    );
    assert_eq!(code, 2, "{err}");
    for want in [
        "works on disk networks only",
        "ipamctl cluster reclaim enet --config net.d --node NODE",
    ] {
        assert!(err.contains(want), "no {want:?} in {err}");
    }
}

#[test]
fn cluster_view_counts_per_node_and_finds_nodes_not_live() {
    if !have_etcd() {
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
