//! The commands that change or audit a network kept in etcd, against real
//! etcd members (Debian etcd-server): leaks, gc, release and check acting
//! for one node, `cluster reclaim` of a gone node, `cluster --live-nodes`
//! refusing a list that names no node, and `metrics` showing a raised
//! NOSPACE alarm. Reservations are made through the plugin's own etcd
//! store as several nodes.

use std::path::Path;
use std::process::Command;

use host_local::store::etcd::keys::Activity;
use serde_json::{json, Value};

use test_support::etcd::{self as etcd_util, Cluster};

use crate::common::BIN;

const PREFIX: &str = "/ipamctl-ops";
const NET: &str = "enet";

/// A network `enet` (10.60.0.0/24) kept in etcd, configured for node n1,
/// and a directory to run ipamctl in.
struct Fixture {
    c: Cluster,
    dir: tempfile::TempDir,
}

fn fixture_with(c: Cluster) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
    let store = json!({"type": "etcd", "endpoints": c.endpoints(), "prefix": PREFIX,
        "node": "n1", "timeout": "3s"});
    let net = json!({"cniVersion": "1.0.0", "name": NET,
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.60.0.0/24",
            "store": store}}]});
    std::fs::write(dir.path().join("net.d/10-enet.conflist"), net.to_string()).unwrap();
    Fixture { c, dir }
}

/// None (the test skips) without etcd.
fn fixture() -> Option<Fixture> {
    if !crate::common::have_etcd() {
        return None;
    }
    Some(fixture_with(Cluster::start(1)))
}

fn hex(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().unwrap();
    format!("{:08x}", u32::from(a))
}

impl Fixture {
    fn key(&self, rest: &str) -> String {
        format!("{PREFIX}/{NET}/{rest}")
    }

    /// Reserves `ip` for `id` eth0 as node `node` through the plugin's store.
    fn reserve(&self, node: &str, id: &str, ip: &str) {
        let mut store = crate::common::etcd_store(&self.c.endpoints(), PREFIX, NET, node);
        crate::common::etcd_reserve(&mut store, id, ip);
    }

    fn put(&self, key: &str, value: &str) {
        let (ok, t) = self.c.etcdctl(&["put", key, value]);
        assert!(ok, "etcdctl put {key}: {t}");
    }

    fn del(&self, key: &str) {
        let (ok, t) = self.c.etcdctl(&["del", key]);
        assert!(ok && t.trim() == "1", "etcdctl del {key}: {t}");
    }

    fn get(&self, key: &str) -> Option<String> {
        let (ok, t) = self.c.etcdctl(&["get", key, "--print-value-only"]);
        assert!(ok, "{t}");
        let v = t.strip_suffix('\n').unwrap_or(&t);
        (!t.is_empty()).then(|| v.to_string())
    }

    /// Every key under `P/N/<rest>`.
    fn keys(&self, rest: &str) -> Vec<String> {
        let (ok, t) = self
            .c
            .etcdctl(&["get", "--prefix", &self.key(rest), "--keys-only"]);
        assert!(ok, "{t}");
        t.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Makes node `node` last active `secs` ago (its activity key's `at`).
    fn active_ago(&self, node: &str, secs: u64, op: &str) {
        let key = self.key(&format!("nodes/{node}/activity"));
        let mut a = self
            .get(&key)
            .and_then(|v| Activity::decode(v.as_bytes()))
            .unwrap_or_default();
        a.at = Activity::now() - secs;
        a.op = op.into();
        self.put(&key, &String::from_utf8(a.encode()).unwrap());
    }

    /// (exit status, stdout, stderr) of ipamctl in the fixture's directory.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run_in(self.dir.path(), args)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }
}

fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn addresses(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["address"].as_str().unwrap_or_else(|| x.as_str().unwrap()))
        .collect()
}

#[test]
fn leaks_gc_and_release_on_an_etcd_network_act_for_one_node() {
    let Some(f) = fixture() else { return };
    f.reserve("n1", "c1", "10.60.0.2");
    f.reserve("n1", "c2", "10.60.0.3");
    f.reserve("n2", "c3", "10.60.0.4");
    // A damaged value naming no node: every node's GC skips it.
    f.put(&f.key(&format!("ips/4/{}", hex("10.60.0.9"))), "garbage");
    f.active_ago("n1", 7200, "ADD");
    f.active_ago("n2", 7200, "ADD");
    f.write("valid.txt", "c1\n");
    let cfg = ["--config", "net.d"];
    let with = |args: &[&'static str]| -> Vec<&'static str> {
        let mut v = args.to_vec();
        v.extend(cfg);
        v
    };

    let (code, out, err) = f.run(&with(&["leaks", NET, "--valid", "valid.txt", "--json"]));
    assert_eq!(code, 1, "leaks found: {out}{err}");
    let v = json_of(&out);
    assert_eq!(v["node"], "n1");
    assert_eq!(v["reservations"], 3, "n1's two and the damaged one: {out}");
    assert_eq!(addresses(&v["leaks"]), ["10.60.0.3", "10.60.0.9"]);
    assert_eq!(v["leaks"][0]["reason"], "not-valid");
    assert_eq!(v["leaks"][0]["gcKeeps"], Value::Null, "{out}");
    assert_eq!(v["leaks"][1]["reason"], "damaged");
    let keeps = v["leaks"][1]["gcKeeps"].as_str().unwrap();
    assert!(keeps.contains("names no node"), "{keeps}");
    let (_, out, _) = f.run(&with(&["leaks", NET, "--valid", "valid.txt"]));
    assert!(
        out.contains("node n1 (ipam.store.node of the configuration); 1 reservation of other nodes not considered"),
        "{out}"
    );
    // The same guards as on disk: a list keeping none of n2's reservations.
    let (code, _, err) = f.run(&with(&[
        "leaks",
        NET,
        "--valid",
        "valid.txt",
        "--node",
        "n2",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("keeps none of the 1 reservations"), "{err}");

    // A reservation made now: its node's activity is recent, so gc keeps it.
    f.reserve("n1", "c5", "10.60.0.5");
    if f.get(&f.key("nodes/n1/activity")).is_some_and(|v| {
        Activity::decode(v.as_bytes()).is_some_and(|a| a.at + 60 < Activity::now())
    }) {
        f.active_ago("n1", 0, "ADD"); // a plugin that does not record activity yet
    }
    let (code, out, err) = f.run(&with(&[
        "gc",
        NET,
        "--valid",
        "valid.txt",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&out);
    assert_eq!(v["node"], "n1");
    assert_eq!(addresses(&v["planned"]), ["10.60.0.3"], "{out}");
    assert_eq!(addresses(&v["kept"]), ["10.60.0.5", "10.60.0.9"], "{out}");
    let young = v["kept"][0]["reason"].as_str().unwrap();
    assert!(
        young.contains("may be younger than --min-age 5m"),
        "{young}"
    );
    assert!(young.contains("node n1 was last active"), "{young}");

    // A reviewed report is applied for the node it was made for only.
    let (_, report, _) = f.run(&with(&["leaks", NET, "--valid", "valid.txt", "--json"]));
    f.write("report.json", &report);
    let (code, out, err) = f.run(&with(&[
        "gc",
        NET,
        "--from-report",
        "report.json",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&out);
    assert_eq!(addresses(&v["planned"]), ["10.60.0.3"], "{out}");
    assert_eq!(addresses(&v["kept"]), ["10.60.0.5", "10.60.0.9"], "{out}");
    let (code, _, err) = f.run(&with(&[
        "gc",
        NET,
        "--from-report",
        "report.json",
        "--node",
        "n2",
        "--yes",
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("made for node n1, not node n2"), "{err}");
    // The plan as a table: each reservation's node, no column of unknown ages.
    let (_, out, _) = f.run(&with(&["gc", NET, "--valid", "valid.txt", "--dry-run"]));
    let table = "\
ADDRESS    CONTAINER  IFNAME  NODE  WHY
10.60.0.3  c2         eth0    n1    not a valid attachment
";
    assert!(out.contains(table), "{out}");
    assert!(
        out.contains("kept 10.60.0.9: damaged, and names no node"),
        "{out}"
    );

    let (code, out, err) = f.run(&with(&[
        "gc",
        NET,
        "--valid",
        "valid.txt",
        "--yes",
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json_of(&out)["removed"], json!(["10.60.0.3"]));
    let three = hex("10.60.0.3");
    for k in [
        format!("ips/4/{three}"),
        format!("attachments/c2/eth0/4/{three}"),
        format!("nodes/n1/ips/4/{three}"),
    ] {
        assert_eq!(f.get(&f.key(&k)), None, "{k} removed with the reservation");
    }
    assert!(
        f.get(&f.key(&format!("ips/4/{}", hex("10.60.0.4"))))
            .is_some(),
        "n2's is left"
    );

    // release: another node's address only with --node; a damaged one always.
    let (code, _, err) = f.run(&with(&["release", NET, "--ip", "10.60.0.4", "--yes"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("of node n2") && err.contains("--node n2"),
        "{err}"
    );
    let (code, out, err) = f.run(&with(&["release", NET, "--container", "c3", "--yes"]));
    assert_eq!(code, 1, "not this node's: {out}{err}");
    assert!(out.contains("not reserved"), "{out}");
    let (code, out, err) = f.run(&with(&[
        "release",
        NET,
        "--ip",
        "10.60.0.4",
        "--node",
        "n2",
        "--yes",
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&out);
    assert_eq!(
        (&v["node"], &v["removed"]),
        (&json!("n2"), &json!(["10.60.0.4"]))
    );
    assert!(f.keys("nodes/n2/ips/").is_empty());
    let (code, out, err) = f.run(&with(&["release", NET, "--ip", "10.60.0.9", "--yes"]));
    assert_eq!(code, 0, "the damaged value: {out}{err}");
    assert!(out.contains("removed 10.60.0.9"), "{out}");
    // What is left is consistent.
    let (code, out, err) = f.run(&with(&["check", NET]));
    assert_eq!(code, 0, "{out}{err}");
    // --node means nothing on a disk network.
    std::fs::create_dir_all(f.dir.path().join("data/disknet")).unwrap();
    let (code, _, err) = f.run(&[
        "--data-dir",
        "data",
        "gc",
        "disknet",
        "--valid",
        "valid.txt",
        "--node",
        "n1",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--node n1: network disknet is not kept in etcd"),
        "{err}"
    );
}

#[test]
fn check_lists_each_broken_invariant_of_an_etcd_network() {
    let Some(f) = fixture() else { return };
    f.reserve("n1", "c1", "10.60.0.2");
    f.reserve("n2", "c2", "10.60.0.70");
    let cfg = ["--config", "net.d"];
    let with = |args: &[&'static str]| -> Vec<&'static str> {
        let mut v = args.to_vec();
        v.extend(cfg);
        v
    };
    let (code, out, err) = f.run(&with(&["check", NET, "--json"]));
    assert_eq!(code, 0, "what the plugin writes holds: {out}{err}");
    let v = json_of(&out);
    assert_eq!(v["invariants"]["violations"], json!([]), "{out}");
    assert!(v["invariants"]["keys"].as_u64().unwrap() >= 6, "{out}");

    // This host's cache: c1 (n1's, this node's), c2 (recorded by n2: n2's GC
    // would remove it), c9 (reserved by nobody).
    let res = f.dir.path().join("results");
    for (id, ip) in [
        ("c1", "10.60.0.2/24"),
        ("c2", "10.60.0.70/24"),
        ("c9", "10.60.0.99/24"),
    ] {
        crate::common::cache_entry(&res, NET, id, "eth0", None, &[ip]);
    }
    let (code, out, err) = f.run(&with(&["--results-dir", "results", "check", NET, "--json"]));
    assert_eq!(code, 1, "{out}{err}");
    let v = json_of(&out);
    let found: Vec<(&str, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["kind"].as_str().unwrap(), x["address"].as_str().unwrap()))
        .collect();
    assert_eq!(
        found,
        [("other-node", "10.60.0.70"), ("missing", "10.60.0.99")],
        "{out}"
    );
    assert!(v["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("node n2's GC removes it"));
    assert_eq!(v["invariants"]["violations"], json!([]));

    // An index key deleted by hand, a damaged value, a block key without its claim.
    f.del(&f.key(&format!("attachments/c1/eth0/4/{}", hex("10.60.0.2"))));
    f.put(&f.key(&format!("ips/4/{}", hex("10.60.0.9"))), "garbage");
    f.put(
        &f.key(&format!("nodes/n2/blocks/4/{}", hex("10.60.0.192"))),
        "",
    );
    let (code, out, err) = f.run(&with(&["check", NET, "--json"]));
    assert_eq!(code, 1, "{out}{err}");
    let v = json_of(&out);
    let got: Vec<(&str, &str)> = v["invariants"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["kind"].as_str().unwrap(), x["key"].as_str().unwrap()))
        .collect();
    let (k2, k9, kb) = (
        f.key(&format!("ips/4/{}", hex("10.60.0.2"))),
        f.key(&format!("ips/4/{}", hex("10.60.0.9"))),
        f.key(&format!("nodes/n2/blocks/4/{}", hex("10.60.0.192"))),
    );
    assert_eq!(
        got,
        [
            ("damaged", k9.as_str()),
            ("missing-attachment-index", k2.as_str()),
            ("unclaimed-block", kb.as_str()),
        ],
        "{out}"
    );
    let (code, out, _) = f.run(&with(&["check", NET]));
    assert_eq!(code, 1);
    assert!(out.contains("3 violations"), "{out}");
    for want in [
        "missing-attachment-index",
        &k2,
        "attachments/c1/eth0/4/0a3c0002 does not exist",
    ] {
        assert!(out.contains(want), "no {want:?} in\n{out}");
    }
    // --node: only what concerns that node.
    let (code, out, _) = f.run(&with(&["check", NET, "--node", "n2", "--json"]));
    assert_eq!(code, 1);
    let v = json_of(&out);
    assert_eq!(
        v["invariants"]["violations"].as_array().unwrap().len(),
        1,
        "{out}"
    );
    assert_eq!(v["invariants"]["violations"][0]["node"], "n2");
}

#[test]
fn reclaim_removes_an_idle_node_and_refuses_an_active_one() {
    let Some(f) = fixture() else { return };
    f.reserve("n2", "c1", "10.60.0.2");
    f.reserve("n2", "c2", "10.60.0.3");
    f.reserve("n3", "c3", "10.60.0.70");
    f.active_ago("n2", 3 * 3600, "DEL");
    f.active_ago("n3", 60, "ADD");
    let base = ["cluster", "reclaim", NET, "--config", "net.d", "--node"];
    let reclaim = |node: &'static str, more: &[&'static str]| {
        let mut v = base.to_vec();
        v.push(node);
        v.extend(more);
        f.run(&v)
    };

    let (code, out, err) = reclaim("n3", &["--dry-run"]);
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        "node n3 was last active",
        "1m ago: ADD",
        "less than --min-idle 1h",
    ] {
        assert!(err.contains(want), "no {want:?} in {err}");
    }
    let (code, _, err) = reclaim("n3", &["--min-idle", "30s", "--dry-run"]);
    assert_eq!(code, 0, "idle long enough for a shorter --min-idle: {err}");

    let (code, out, err) = reclaim("n2", &["--dry-run", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&out);
    assert_eq!(v["command"], "reclaim");
    assert_eq!(addresses(&v["planned"]), ["10.60.0.2", "10.60.0.3"]);
    assert_eq!(v["activity"]["op"], "DEL");
    assert!(v["activity"]["idleSeconds"].as_i64().unwrap() >= 3 * 3600);
    assert_eq!(v["idleUnknown"], false);
    let (code, out, _) = reclaim("n2", &["--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would remove 2 reservations"), "{out}");
    assert!(out.contains("(3h0m ago: DEL)"), "{out}");
    // Without a terminal nothing changes without --yes.
    let (code, _, err) = reclaim("n2", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("without --yes"), "{err}");
    assert_eq!(f.keys("nodes/n2/ips/").len(), 2);

    // Plant a block of n2's where the plugin claimed none (and note every claim).
    if f.keys("nodes/n2/blocks/").is_empty() {
        let b = hex("10.60.0.0");
        f.put(
            &f.key(&format!("blocks/4/{b}")),
            r#"{"node":"n2","size":64,"full":false}"#,
        );
        f.put(&f.key(&format!("nodes/n2/blocks/4/{b}")), "");
    }
    let n2_claims = |f: &Fixture| {
        f.keys("blocks/")
            .into_iter()
            .filter(|k| f.get(k).is_some_and(|v| v.contains(r#""node":"n2""#)))
            .count()
    };
    assert!(n2_claims(&f) > 0);
    let (code, out, err) = reclaim("n2", &["--yes", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&out);
    assert_eq!(v["removed"], json!(["10.60.0.2", "10.60.0.3"]));
    assert_eq!(v["activityRemoved"], true);
    assert_eq!((&v["skipped"], &v["failed"]), (&json!([]), &json!([])));
    assert!(f.keys("nodes/n2/").is_empty(), "{:?}", f.keys("nodes/n2/"));
    assert_eq!(n2_claims(&f), 0);
    for ip in ["10.60.0.2", "10.60.0.3"] {
        assert_eq!(f.get(&f.key(&format!("ips/4/{}", hex(ip)))), None);
    }
    assert!(f.keys("attachments/c1/").is_empty() && f.keys("attachments/c2/").is_empty());
    assert_eq!(f.keys("nodes/n3/ips/").len(), 1, "n3 untouched");
    let (code, out, _) = f.run(&["check", NET, "--config", "net.d"]);
    assert_eq!(code, 0, "{out}");

    // A node with no activity key: idle since unknown, only with --yes.
    f.reserve("n4", "c4", "10.60.0.130");
    let act = f.key("nodes/n4/activity");
    if f.get(&act).is_some() {
        f.del(&act);
    }
    let (code, out, err) = reclaim("n4", &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("idle since unknown"), "{out}");
    let (code, _, err) = reclaim("n4", &["--json"]);
    assert_eq!(code, 2);
    assert!(err.contains("no readable activity key"), "{err}");
    let (code, out, err) = reclaim("n4", &["--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(f.keys("nodes/n4/").is_empty());
    // A name that holds nothing, with the spelling that does.
    let (code, _, err) = reclaim("N3", &["--dry-run"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean n3?"), "{err}");
}

#[test]
fn a_live_node_list_naming_no_node_is_refused_with_near_matches() {
    let Some(f) = fixture() else { return };
    f.reserve("node-1", "c1", "10.60.0.2");
    f.reserve("node-2", "c2", "10.60.0.70");
    f.write("fqdn.txt", "node-1.example.com\nNODE-2\n");
    let (code, out, err) = f.run(&[
        "cluster",
        NET,
        "--config",
        "net.d",
        "--live-nodes",
        "fqdn.txt",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        "matches none of the 2 nodes holding reservations",
        "node-1 is listed as node-1.example.com",
        "node-2 is listed as NODE-2",
    ] {
        assert!(err.contains(want), "no {want:?} in {err}");
    }
    f.write("live.txt", "node-1\nnode-2.example.com\n");
    let args = [
        "cluster",
        NET,
        "--config",
        "net.d",
        "--live-nodes",
        "live.txt",
    ];
    let (code, out, _) = f.run(&args);
    assert_eq!(code, 1, "node-2 is not live: {out}");
    assert!(
        out.contains("near matches: node-2 is listed as node-2.example.com"),
        "{out}"
    );
    let mut j = args.to_vec();
    j.push("--json");
    let (code, out, _) = f.run(&j);
    assert_eq!(code, 1);
    let v = json_of(&out);
    assert_eq!(v["notLive"], json!(["node-2"]));
    assert_eq!(
        v["nearMatches"],
        json!([{"node": "node-2", "listed": ["node-2.example.com"]}])
    );
}

#[test]
fn metrics_shows_a_nospace_alarm_and_the_network_down() {
    if !etcd_util::etcd_installed() {
        crate::common::skip("etcd not installed");
        return;
    }
    // etcd raises NOSPACE once its backend outgrows the quota.
    let f = fixture_with(Cluster::start_args(
        1,
        &["--quota-backend-bytes", "1048576"],
    ));
    f.reserve("n1", "c1", "10.60.0.2");
    let (code, out, err) = f.run(&["metrics", "--config", "net.d"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l == "ipamctl_network_up{network=\"enet\"} 1"),
        "{out}"
    );
    assert!(!out.contains("ipamctl_etcd_alarm{"), "{out}");
    let big = "x".repeat(100 * 1024); // one argument of etcdctl: under 128 KiB
    let mut raised = false;
    for i in 0..200 {
        let (ok, t) = f.c.etcdctl(&["put", &format!("/filler/{i}"), &big]);
        if !ok {
            assert!(t.contains("database space exceeded"), "{t}");
            raised = true;
            break;
        }
    }
    assert!(raised, "the quota was never reached");
    let (code, out, err) = f.run(&["metrics", "--config", "net.d"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l == "ipamctl_network_up{network=\"enet\"} 0"),
        "{out}"
    );
    let alarm = out
        .lines()
        .find(|l| l.starts_with("ipamctl_etcd_alarm{network=\"enet\",alarm=\"NOSPACE\",member=\""))
        .unwrap_or_else(|| panic!("no NOSPACE sample in\n{out}"));
    assert!(alarm.ends_with("\"} 1"), "{alarm}");
    assert!(
        out.contains("ipamctl_reservations{network=\"enet\"} 1"),
        "still read: {out}"
    );
    assert!(err.contains("etcd raised alarm NOSPACE"), "{err}");
    assert!(err.contains("--quota-backend-bytes"), "the advice: {err}");
}
