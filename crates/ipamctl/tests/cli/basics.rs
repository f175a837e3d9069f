//! The first round: every command on the fixture, human and JSON snapshots,
//! stores written by the Go plugin, reads racing allocations.
//!
//! Over 600 lines (~970) because each command's test carries its expected
//! output inline, as a snapshot; the item-by-item guards are in guards.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use test_support::Net;

use crate::common::*;

#[test]
fn list_human_without_and_with_config() {
    let f = fixture();
    let r = f.run(&["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
data directory data
NETWORK  RESERVED  LEGACY  DAMAGED  PROBLEMS  NOTE
net1           10       1        2         2
other           1       0        0         0
",
    );
    let r = f.run(&["list", "--config", "net1.conflist"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
data directory data
NETWORK  RESERVED  LEGACY  DAMAGED  PROBLEMS  SET  RANGES                    CAPACITY  FREE  USAGE  NOTE
net1           10       1        2         5    0  10.1.0.1-10.1.0.254            249   244   2.0%
                                                1  2001:db8::1-2001:db8::ff       254   252   0.8%
other           1       0        0         0                                                        not in the configuration
",
    );
}

#[test]
fn list_json() {
    let f = fixture();
    let r = f.run(&["list", "--json", "--config", "net1.conflist"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    let expected = json!({
      "schema": 2,
      "command": "list",
      "dataDir": "data",
      "config": "net1.conflist",
      "networks": [
        {
          "name": "net1",
          "store": "disk",
          "endpoints": null,
          "path": "data/net1",
          "dataDir": "data",
          "exists": true,
          "error": null,
          "configError": null,
          "reservations": 10,
          "formats": {"attachment": 7, "damaged": 2, "legacy": 1},
          "withProblems": 5,
          "problems": {"damaged": 2, "outside-ranges": 1, "excluded": 1, "gateway": 1, "duplicate": 0},
          "exhausted": false,
          "oldestAgeSeconds": "<time>",
          "config": {"source": "net1.conflist", "dataDir": "/var/lib/cni/networks", "runtimeRanges": false},
          "rangeSets": [
            {
              "index": 0, "family": 4,
              "ranges": [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.1", "rangeEnd": "10.1.0.254",
                          "gateway": "10.1.0.1", "exclude": ["10.1.0.20/30"]}],
              "capacity": 249, "reserved": 5, "free": 244, "usage": 0.02008,
              "exhausted": false, "lastReserved": "10.1.0.3"
            },
            {
              "index": 1, "family": 6,
              "ranges": [{"subnet": "2001:db8::/120", "rangeStart": "2001:db8::1", "rangeEnd": "2001:db8::ff",
                          "gateway": "2001:db8::1", "exclude": []}],
              "capacity": 254, "reserved": 2, "free": 252, "usage": 0.007874,
              "exhausted": false, "lastReserved": "2001:db8::3"
            }
          ],
          "strays": [],
          "notes": []
        },
        {
          "name": "other",
          "store": "disk",
          "endpoints": null,
          "path": "data/other",
          "dataDir": "data",
          "exists": true,
          "error": null,
          "configError": null,
          "reservations": 1,
          "formats": {"attachment": 1, "damaged": 0, "legacy": 0},
          "withProblems": 0,
          "problems": {"damaged": 0, "outside-ranges": 0, "excluded": 0, "gateway": 0, "duplicate": 0},
          "exhausted": false,
          "oldestAgeSeconds": "<time>",
          "config": null,
          "rangeSets": [],
          "strays": [],
          "notes": []
        }
      ],
      "configErrors": []
    });
    assert_eq!(v, expected, "{}", serde_json::to_string_pretty(&v).unwrap());
}

const SHOW_HUMAN: &str = "\
network net1  (data/net1)
config  net1.conflist
SET  RANGES                    GATEWAY      CAPACITY  RESERVED  FREE  USAGE  LAST RESERVED
  0  10.1.0.1-10.1.0.254       10.1.0.1          249         5   244   2.0%  10.1.0.3
  1  2001:db8::1-2001:db8::ff  2001:db8::1       254         2   252   0.8%  2001:db8::3

ADDRESS      CONTAINER  IFNAME     AGE  PROBLEMS
10.1.0.1     c3         eth0      3h0m  gateway: gateway of range 10.1.0.1-10.1.0.254 in range set 0; never handed out
10.1.0.2     c1         eth0      3h0m
10.1.0.3     c2         eth0      3h0m
10.1.0.4     legacy1    (legacy)  3h0m
10.1.0.5     -          -         3h0m  damaged: empty: names no attachment
10.1.0.6     -          -         3h0m  damaged: not UTF-8: names no attachment
10.1.0.21    c5         eth0      3h0m  excluded: excluded (10.1.0.20-10.1.0.23) from range 10.1.0.1-10.1.0.254 in range set 0
10.9.0.9     c4         eth0      3h0m  outside-ranges: outside every configured range
2001:db8::2  c1         eth0      3h0m
2001:db8::3  c2         eth0      3h0m
10 reservations, 5 with problems
";

#[test]
fn show_human_reports_every_problem() {
    let f = fixture();
    let r = f.run(&["show", "net1", "--config", "net1.conflist"]);
    assert_eq!(r.code, 1, "problems found: exit 1; {}", r.stderr);
    assert_text(&r.stdout, SHOW_HUMAN);
    assert!(!r.stdout.contains('\x1b'), "no colour when not a terminal");
}

#[test]
fn show_without_config_only_knows_damage() {
    let f = fixture();
    let r = f.run(&["show", "other"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
network other  (data/other)
no config: range problems (outside, excluded, gateway) and exhaustion not checked; use --config

ADDRESS      CONTAINER  IFNAME   AGE  PROBLEMS
192.168.5.7  k1         net0    3h0m
1 reservation, 0 with problems
",
    );
}

#[test]
fn show_map() {
    let f = fixture();
    let r = f.run(&["show", "net1", "--config", "net1.conflist", "--map"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let map = r.stdout.split_once("with problems\n").unwrap().1;
    assert_text(
        map,
        "
range set 0, range 0: 10.1.0.1-10.1.0.254 (subnet 10.1.0.0/24, gateway 10.1.0.1)
  10.1.0.0     !###!!......... ....x!xx........ ................ ................
  10.1.0.64   ................ ................ ................ ................
  10.1.0.128  ................ ................ ................ ................
  10.1.0.192  ................ ................ ................ ...............

range set 1, range 0: 2001:db8::1-2001:db8::ff (subnet 2001:db8::/120, gateway 2001:db8::1)
  2001:db8::     G##............ ................ ................ ................
  2001:db8::40  ................ ................ ................ ................
  2001:db8::80  ................ ................ ................ ................
  2001:db8::c0  ................ ................ ................ ................
legend: # reserved  ! reserved with a problem  . free  x excluded  G gateway  (blank) outside the range
",
    );
    // A limit on rows summarises what is left out.
    let r = f.run(&[
        "show",
        "net1",
        "--config",
        "net1.conflist",
        "--map",
        "--map-rows",
        "2",
    ]);
    assert!(
        r.stdout
            .contains("... 2 rows all free (10.1.0.64 - 10.1.0.191)"),
        "{}",
        r.stdout
    );
    let r = f.run(&["show", "net1", "--map"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--map needs --config"), "{}", r.stderr);
}

#[test]
fn show_json() {
    let f = fixture();
    let r = f.run(&["show", "net1", "--config", "net1.conflist", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["schema"], 2);
    assert_eq!(v["command"], "show");
    assert_eq!(v["network"]["name"], "net1");
    assert_eq!(v["network"]["withProblems"], 5);
    let t = "<time>";
    let expected = json!([
      {"address": "10.1.0.1", "family": 4, "format": "attachment", "containerId": "c3", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": null,
       "problems": [{"kind": "gateway", "detail": "gateway of range 10.1.0.1-10.1.0.254 in range set 0; never handed out"}]},
      {"address": "10.1.0.2", "family": 4, "format": "attachment", "containerId": "c1", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 0, "problems": []},
      {"address": "10.1.0.3", "family": 4, "format": "attachment", "containerId": "c2", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 0, "problems": []},
      {"address": "10.1.0.4", "family": 4, "format": "legacy", "containerId": "legacy1", "ifname": null, "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 0, "problems": []},
      {"address": "10.1.0.5", "family": 4, "format": "damaged", "containerId": null, "ifname": null, "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 0,
       "problems": [{"kind": "damaged", "detail": "empty: names no attachment"}]},
      {"address": "10.1.0.6", "family": 4, "format": "damaged", "containerId": null, "ifname": null, "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 0,
       "problems": [{"kind": "damaged", "detail": "not UTF-8: names no attachment"}]},
      {"address": "10.1.0.21", "family": 4, "format": "attachment", "containerId": "c5", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": null,
       "problems": [{"kind": "excluded", "detail": "excluded (10.1.0.20-10.1.0.23) from range 10.1.0.1-10.1.0.254 in range set 0"}]},
      {"address": "10.9.0.9", "family": 4, "format": "attachment", "containerId": "c4", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": null,
       "problems": [{"kind": "outside-ranges", "detail": "outside every configured range"}]},
      {"address": "2001:db8::2", "family": 6, "format": "attachment", "containerId": "c1", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 1, "problems": []},
      {"address": "2001:db8::3", "family": 6, "format": "attachment", "containerId": "c2", "ifname": "eth0", "pod": null, "node": null,
       "mtime": t, "ageSeconds": t, "rangeSet": 1, "problems": []}
    ]);
    assert_eq!(
        v["reservations"],
        expected,
        "{}",
        serde_json::to_string_pretty(&v["reservations"]).unwrap()
    );
    // Ages are real: about three hours.
    let raw: Value = serde_json::from_str(&r.stdout).unwrap();
    let age = raw["reservations"][0]["ageSeconds"].as_i64().unwrap();
    assert!((AGE.as_secs() as i64..AGE.as_secs() as i64 + 120).contains(&age));
    // With --map the JSON carries the grid too.
    let r = f.run(&[
        "show",
        "net1",
        "--config",
        "net1.conflist",
        "--json",
        "--map",
    ]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["map"][0]["rows"][0]["start"], "10.1.0.0");
    assert_eq!(
        v["map"][0]["rows"][0]["cells"],
        " !###!!.........\
         ....x!xx........\
         ................\
         ................"
    );
}

#[test]
fn leaks_from_valid_list() {
    let f = fixture();
    std::fs::write(
        f.root().join("valid.txt"),
        "# still running\nc1 eth0\nlegacy1 eth0\nc3\n",
    )
    .unwrap();
    let r = f.run(&["leaks", "net1", "--valid", "valid.txt"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
network net1  (data/net1)
source: valid attachments from valid.txt (3 listed; authoritative)

ADDRESS      CONTAINER  IFNAME   AGE  WHY
10.1.0.3     c2         eth0    3h0m  not a valid attachment
10.1.0.5     -          -       3h0m  damaged file (empty)
10.1.0.6     -          -       3h0m  damaged file (not UTF-8)
10.1.0.21    c5         eth0    3h0m  not a valid attachment
10.9.0.9     c4         eth0    3h0m  not a valid attachment
2001:db8::3  c2         eth0    3h0m  not a valid attachment
6 of 10 reservations leaked
",
    );
}

#[test]
fn leaks_json_from_gc_config_on_stdin() {
    let f = fixture();
    let gc = json!({
        "cniVersion": "1.1.0", "name": "net1",
        "cni.dev/valid-attachments": [
            {"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "eth0"},
            {"containerID": "c3", "ifname": "eth0"}, {"containerID": "c4", "ifname": "eth0"},
            {"containerID": "c5", "ifname": "eth0"}, {"containerID": "legacy1", "ifname": "eth1"}
        ]
    });
    let r = f.run_stdin(
        &[
            "leaks",
            "net1",
            "--valid",
            "-",
            "--json",
            "--results-dir",
            "results",
        ],
        Some(&gc.to_string()),
    );
    // The results directory does not exist: an error naming it.
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("results cache results"), "{}", r.stderr);
    let r = f.run_stdin(
        &["leaks", "net1", "--valid", "-", "--json"],
        Some(&gc.to_string()),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["schema"], 2);
    assert_eq!(v["command"], "leaks");
    assert_eq!(
        v["sources"]["valid"],
        json!({"path": "stdin", "kind": "stdin", "cri": null, "attachments": 6, "mtime": "<time>"})
    );
    assert_eq!(v["sources"]["authoritative"], true);
    let leaks: Vec<(&str, &str, bool)> = v["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["address"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
                l["heuristic"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        leaks,
        [
            ("10.1.0.5", "damaged", false),
            ("10.1.0.6", "damaged", false)
        ]
    );
}

#[test]
fn leaks_from_results_cache_are_heuristic() {
    let f = fixture();
    let res = f.root().join("results");
    std::fs::create_dir_all(&res).unwrap();
    // libcni's cniCacheV1 format, and an older cache holding only the result.
    std::fs::write(
        res.join("net1-c1-eth0"),
        json!({"kind": "cniCacheV1", "containerId": "c1", "ifName": "eth0",
               "networkName": "net1", "config": "e30=", "result": {"cniVersion": "1.0.0"}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        res.join("net1-c2-eth0"),
        r#"{"cniVersion":"0.4.0","ips":[]}"#,
    )
    .unwrap();
    std::fs::write(res.join("net1-legacy1-eth0"), "{}").unwrap();
    std::fs::write(res.join("other-c4-eth0"), "{}").unwrap();
    let r = f.run(&["leaks", "net1", "--results-dir", "results"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
network net1  (data/net1)
source: libcni result cache results (3 entries for this network; HEURISTIC: a missing cache entry only suggests a leak)

ADDRESS    CONTAINER  IFNAME   AGE  WHY
10.1.0.1   c3         eth0    3h0m  no cached result (heuristic)
10.1.0.5   -          -       3h0m  damaged file (empty)
10.1.0.6   -          -       3h0m  damaged file (not UTF-8)
10.1.0.21  c5         eth0    3h0m  no cached result (heuristic)
10.9.0.9   c4         eth0    3h0m  no cached result (heuristic)
5 of 10 reservations leaked (3 only suspected: heuristic, verify before releasing)
",
    );
    let r = f.run(&["leaks", "net1", "--results-dir", "results", "--json"]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["sources"]["authoritative"], false);
    assert_eq!(v["sources"]["resultsCache"]["heuristic"], true);
    assert_eq!(v["leaks"][0]["reason"], "no-cached-result");
    assert_eq!(v["leaks"][0]["heuristic"], true);
}

#[test]
fn reads_change_nothing() {
    let f = fixture();
    std::fs::remove_dir_all(f.data().join(".host-local-rs")).unwrap();
    std::fs::write(f.root().join("valid.txt"), "c1 eth0\n").unwrap();
    let before = tree(f.root());
    for args in [
        &["list"][..],
        &["list", "--config", "net1.conflist", "--json"],
        &["show", "net1", "--config", "net1.conflist", "--map"],
        &["show", "net1", "--json"],
        &["leaks", "net1", "--valid", "valid.txt"],
        &["metrics", "--config", "net1.conflist"],
        &["release", "net1", "--container", "c1", "--dry-run"],
        &["gc", "net1", "--valid", "valid.txt", "--dry-run"],
    ] {
        let r = f.run(args);
        assert!(r.code <= 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!(before, tree(f.root()), "a read command changed the store");
    assert!(!f.data().join(".host-local-rs").exists());
}

#[test]
fn release_needs_yes_without_a_terminal() {
    let f = fixture();
    let before = tree(f.root());
    let r = f.run(&["release", "net1", "--container", "c1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("without --yes"), "{}", r.stderr);
    assert!(
        r.stdout.contains("10.1.0.2"),
        "the plan is shown: {}",
        r.stdout
    );
    assert_eq!(before, tree(f.root()));
    let r = f.run(&["release", "net1", "--container", "c1", "--dry-run"]);
    assert_eq!(r.code, 0);
    assert_text(
        &r.stdout,
        "\
would remove 2 reservations of network net1 (dry run: nothing changed)
ADDRESS      CONTAINER  IFNAME   AGE  WHY
10.1.0.2     c1         eth0    3h0m  selected
2001:db8::2  c1         eth0    3h0m  selected
",
    );
    assert_eq!(before, tree(f.root()));
}

#[test]
fn release_by_container_and_by_ip() {
    let f = fixture();
    let r = f.run(&[
        "release",
        "net1",
        "--container",
        "c1",
        "--ifname",
        "eth0",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("2 of 2 reservations removed"),
        "{}",
        r.stdout
    );
    assert!(!f.net().join("10.1.0.2").exists());
    assert!(!f.net().join("2001:db8::2").exists());
    // A damaged file is released by address.
    let r = f.run(&["release", "net1", "--ip", "10.1.0.5", "--yes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["command"], "release");
    assert_eq!(v["dryRun"], false);
    assert_eq!(v["removed"], json!(["10.1.0.5"]));
    assert_eq!(v["skipped"], json!([]));
    assert!(!f.net().join("10.1.0.5").exists());
    // Legacy files match their container whatever the ifname.
    let r = f.run(&[
        "release",
        "net1",
        "--container",
        "legacy1",
        "--ifname",
        "eth7",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.net().join("10.1.0.4").exists());
    // Nothing left to match: said, exit 1 (tested further in release_not_reserved).
    let r = f.run(&["release", "net1", "--container", "c1", "--yes"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("not reserved"), "{}", r.stdout);
    // The rest is untouched.
    let r = f.run(&["show", "net1", "--json"]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["network"]["reservations"], 6);
    // Usage errors.
    let r = f.run(&["release", "net1", "--ifname", "eth0"]);
    assert_eq!(r.code, 2);
    let r = f.run(&["release", "net1", "--container", "c1", "--ip", "10.1.0.3"]);
    assert_eq!(r.code, 2);
}

#[test]
fn gc_removes_invalid_and_damaged() {
    let f = fixture();
    std::fs::write(
        f.root().join("valid.json"),
        r#"[{"containerID":"c1","ifname":"eth0"},{"containerID":"legacy1","ifname":"eth0"}]"#,
    )
    .unwrap();
    let r = f.run(&["gc", "net1", "--valid", "valid.json", "--dry-run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["dryRun"], true);
    let planned: Vec<&str> = v["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        planned,
        [
            "10.1.0.1",
            "10.1.0.3",
            "10.1.0.5",
            "10.1.0.6",
            "10.1.0.21",
            "10.9.0.9",
            "2001:db8::3"
        ]
    );
    assert_eq!(v["removed"], json!([]));
    assert!(f.net().join("10.1.0.5").exists());
    let r = f.run(&["gc", "net1", "--valid", "valid.json", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("7 of 7 reservations removed"),
        "{}",
        r.stdout
    );
    let mut left: Vec<String> = std::fs::read_dir(f.net())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "10.1.0.2",
            "10.1.0.4",
            "2001:db8::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    // An empty list would remove everything: refused.
    std::fs::write(f.root().join("empty.txt"), "# nothing runs\n").unwrap();
    let r = f.run(&["gc", "net1", "--valid", "empty.txt", "--yes"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert!(f.net().join("10.1.0.2").exists());
}

#[test]
fn metrics_stdout_and_textfile() {
    let f = fixture();
    let r = f.run(&["metrics", "--config", "net1.conflist"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text: String = r
        .stdout
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && !l.starts_with("ipamctl_last_run")
                && !l.starts_with("ipamctl_oldest_reservation_age_seconds")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_text(
        &text,
        r#"ipamctl_network_up{network="net1"} 1
ipamctl_network_up{network="other"} 1
ipamctl_reservations{network="net1"} 10
ipamctl_reservations{network="other"} 1
ipamctl_stray_files{network="net1"} 0
ipamctl_stray_files{network="other"} 0
ipamctl_network_exhausted{network="net1"} 0
ipamctl_problems{network="net1",kind="damaged"} 2
ipamctl_problems{network="net1",kind="outside-ranges"} 1
ipamctl_problems{network="net1",kind="excluded"} 1
ipamctl_problems{network="net1",kind="gateway"} 1
ipamctl_problems{network="net1",kind="duplicate"} 0
ipamctl_problems{network="other",kind="damaged"} 0
ipamctl_range_set_capacity{network="net1",range_set="0",ranges="10.1.0.1-10.1.0.254"} 249
ipamctl_range_set_capacity{network="net1",range_set="1",ranges="2001:db8::1-2001:db8::ff"} 254
ipamctl_range_set_reserved{network="net1",range_set="0",ranges="10.1.0.1-10.1.0.254"} 5
ipamctl_range_set_reserved{network="net1",range_set="1",ranges="2001:db8::1-2001:db8::ff"} 2
ipamctl_range_set_free{network="net1",range_set="0",ranges="10.1.0.1-10.1.0.254"} 244
ipamctl_range_set_free{network="net1",range_set="1",ranges="2001:db8::1-2001:db8::ff"} 252
ipamctl_range_set_usage_ratio{network="net1",range_set="0",ranges="10.1.0.1-10.1.0.254"} 0.020080321285140562
ipamctl_range_set_usage_ratio{network="net1",range_set="1",ranges="2001:db8::1-2001:db8::ff"} 0.007874015748031496
ipamctl_range_set_exhausted{network="net1",range_set="0",ranges="10.1.0.1-10.1.0.254"} 0
ipamctl_range_set_exhausted{network="net1",range_set="1",ranges="2001:db8::1-2001:db8::ff"} 0
"#,
    );
    // Every sample has HELP and TYPE.
    assert!(r.stdout.contains("# TYPE ipamctl_range_set_free gauge"));
    // The oldest reservation is about three hours old.
    let oldest: i64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ipamctl_oldest_reservation_age_seconds{network=\"net1\"} "))
        .expect("oldest age of net1")
        .parse()
        .unwrap();
    assert!((AGE.as_secs() as i64..AGE.as_secs() as i64 + 120).contains(&oldest));
    let out_dir = f.root().join("textfile");
    std::fs::create_dir_all(&out_dir).unwrap();
    let r = f.run(&[
        "metrics",
        "--config",
        "net1.conflist",
        "--output",
        "textfile/ipam.prom",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ipam.prom"], "no temporary file left");
    let written = std::fs::read_to_string(out_dir.join("ipam.prom")).unwrap();
    assert!(written.contains("ipamctl_reservations{network=\"net1\"} 10"));
    // An unwritable path: exit 2 naming it.
    let r = f.run(&["metrics", "--output", "missing/dir/ipam.prom"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing/dir/ipam.prom"), "{}", r.stderr);
}

#[test]
fn errors_name_the_path() {
    let f = fixture();
    let r = f.run(&["show", "nosuch"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("data/nosuch"), "{}", r.stderr);
    let r = run_in(f.root(), &["--data-dir", "absent", "list"], None);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("data directory absent"), "{}", r.stderr);
    let r = f.run(&["list", "--config", "nosuch.conflist"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nosuch.conflist"), "{}", r.stderr);
    std::fs::write(f.root().join("bad.conf"), "{not json").unwrap();
    let r = f.run(&["list", "--config", "bad.conf"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.conf"), "{}", r.stderr);
    let r = f.run(&["leaks", "net1", "--valid", "nosuch.txt"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nosuch.txt"), "{}", r.stderr);
    // A store directory without a lock: nothing is created to read it.
    std::fs::create_dir_all(f.data().join("nolock")).unwrap();
    let r = f.run(&["show", "nolock"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nolock/lock"), "{}", r.stderr);
    assert!(!f.data().join("nolock/lock").exists());
    let r = f.run(&["list"]);
    assert_eq!(r.code, 2, "an unreadable network fails list");
    assert!(r.stdout.contains("nolock"), "{}", r.stdout);
    let r = f.run(&["bogus"]);
    assert_eq!(r.code, 2);
}

#[test]
fn config_directory_matches_by_name() {
    let f = fixture();
    let d = f.root().join("net.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("10-net1.conflist"), CONFLIST).unwrap();
    std::fs::write(
        d.join("20-other.conf"),
        r#"{"cniVersion":"0.4.0","name":"other","type":"bridge",
            "ipam":{"type":"host-local","subnet":"192.168.5.0/24"}}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("30-dhcp.conf"),
        r#"{"cniVersion":"0.4.0","name":"dhcpnet","type":"macvlan","ipam":{"type":"dhcp"}}"#,
    )
    .unwrap();
    std::fs::write(d.join("99-broken.conflist"), "{").unwrap();
    std::fs::write(d.join("README"), "not a config").unwrap();
    let r = f.run(&["list", "--config", "net.d", "--json"]);
    // The broken file is an error (exit 2), reported, not skipped (reads.rs).
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("99-broken.conflist"),
        "a message names it"
    );
    let v = parse_json(&r.stdout);
    assert_eq!(v["configErrors"][0]["file"], "net.d/99-broken.conflist");
    assert_eq!(v["configErrors"].as_array().unwrap().len(), 1, "{v}");
    let nets = v["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 2);
    assert_eq!(nets[1]["name"], "other");
    assert_eq!(nets[1]["config"]["source"], "net.d/20-other.conf");
    assert_eq!(nets[1]["rangeSets"][0]["capacity"], 253);
    assert_eq!(nets[1]["rangeSets"][0]["reserved"], 1);
}

#[test]
fn help_has_examples_and_completions_work() {
    for cmd in [
        "list",
        "show",
        "leaks",
        "release",
        "gc",
        "metrics",
        "check",
        "completions",
    ] {
        let r = run_in(Path::new("."), &[cmd, "--help"], None);
        assert_eq!(r.code, 0, "{cmd}");
        assert!(r.stdout.contains("Examples:"), "{cmd} --help: {}", r.stdout);
    }
    // Exit codes are documented in the top-level help.
    let r = run_in(Path::new("."), &["--help"], None);
    assert!(
        r.stdout.contains("Exit status:") && r.stdout.contains("longer than --lock-timeout"),
        "{}",
        r.stdout
    );
    for shell in ["bash", "zsh", "fish"] {
        let r = run_in(Path::new("."), &["completions", shell], None);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("ipamctl"), "{shell}");
        assert!(r.stdout.contains("leaks"), "{shell}");
    }
}

/// Dual-stack `network` in `data` (cniVersion 1.0.0), run by `plugin`.
fn plugin_net(plugin: &Path, data: &Path, network: &str) -> Net {
    let ipam = json!({"ranges": [[{"subnet": "10.5.0.0/22"}], [{"subnet": "2001:db8:5::/64"}]]});
    Net::new(plugin, network, data, ipam).with_version("1.0.0")
}

fn conf_for(dir: &Path, network: &str, data: &Path) {
    let conf = json!({
        "cniVersion": "1.0.0", "name": network,
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "dataDir": data,
            "ranges": [[{"subnet": "10.5.0.0/22"}], [{"subnet": "2001:db8:5::/64"}]]}}]
    });
    std::fs::write(dir.join(format!("{network}.conflist")), conf.to_string()).unwrap();
}

#[test]
fn store_written_by_the_go_plugin() {
    let go_path = go_plugin();
    let go = go_path.as_path();
    if !go.exists() {
        skip(&format!("{GO_PLUGIN} missing"));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gonet = plugin_net(go, &data, "gonet");
    for id in ["g1", "g2", "g3"] {
        gonet.add_ok(id, "eth0");
    }
    conf_for(tmp.path(), "gonet", &data);
    let before = tree(tmp.path());
    // The data directory comes from the config's dataDir.
    let r = run_in(
        tmp.path(),
        &["show", "gonet", "--config", "gonet.conflist", "--json"],
        None,
    );
    assert_eq!(r.code, 0, "{}{}", r.stderr, r.stdout);
    let v = parse_json(&r.stdout);
    let got: Vec<(String, String, u64)> = v["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["containerId"].as_str().unwrap().to_string(),
                e["rangeSet"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("10.5.0.2".into(), "g1".into(), 0),
            ("10.5.0.3".into(), "g2".into(), 0),
            ("10.5.0.4".into(), "g3".into(), 0),
            ("2001:db8:5::2".into(), "g1".into(), 1),
            ("2001:db8:5::3".into(), "g2".into(), 1),
            ("2001:db8:5::4".into(), "g3".into(), 1),
        ]
    );
    assert_eq!(v["network"]["rangeSets"][0]["lastReserved"], "10.5.0.4");
    assert_eq!(v["network"]["rangeSets"][0]["capacity"], 1021);
    assert_eq!(
        before,
        tree(tmp.path()),
        "reading changed the Go plugin's store"
    );
    // g2 is gone from the runtime: found, collected, and the Go plugin carries on.
    std::fs::write(tmp.path().join("valid.txt"), "g1 eth0\ng3 eth0\n").unwrap();
    let d = data.to_str().unwrap();
    let r = run_in(
        tmp.path(),
        &["--data-dir", d, "leaks", "gonet", "--valid", "valid.txt"],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("10.5.0.3") && r.stdout.contains("2001:db8:5::3"));
    let r = run_in(
        tmp.path(),
        &[
            "--data-dir",
            d,
            "gc",
            "gonet",
            "--valid",
            "valid.txt",
            "--min-age",
            "0",
            "--yes",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!data.join("gonet/10.5.0.3").exists());
    gonet.add_ok("g4", "eth0");
    let r = run_in(tmp.path(), &["--data-dir", d, "list", "--json"], None);
    let v = parse_json(&r.stdout);
    assert_eq!(v["networks"][0]["reservations"], 6);
    assert_eq!(v["networks"][0]["withProblems"], 0);
}

/// Our plugin, built next to ipamctl (`cargo build -p host-local`).
fn our_plugin() -> Option<PathBuf> {
    let p = Path::new(BIN).parent()?.join("host-local");
    p.exists().then_some(p)
}

/// ipamctl reads while a plugin allocates: every state it sees is whole.
/// `whole_add`: the plugin reserves all range sets of an ADD under one lock
/// (ours); the reference takes the lock once per range set, so between its
/// sets a reader rightly sees one family only.
fn concurrent_reads(plugin: &Path, label: &str, whole_add: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    conf_for(tmp.path(), "cc", &data);
    let cc = plugin_net(plugin, &data, "cc");
    // The store exists before the readers start.
    cc.add_ok("seed", "eth0");
    const N: usize = 60;
    let writer = {
        let cc = cc.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                cc.add_ok(&format!("c{i}"), "eth0");
            }
        })
    };
    let d = data.to_str().unwrap().to_string();
    let mut last = 0u64;
    let mut reads = 0;
    let mut distinct = std::collections::BTreeSet::new();
    loop {
        let done = writer.is_finished();
        let r = run_in(
            tmp.path(),
            &[
                "--data-dir",
                &d,
                "show",
                "cc",
                "--config",
                "cc.conflist",
                "--json",
            ],
            None,
        );
        assert_eq!(r.code, 0, "{label}: {}{}", r.stderr, r.stdout);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        let res = v["reservations"].as_array().unwrap();
        assert_eq!(
            v["network"]["reservations"].as_u64().unwrap(),
            res.len() as u64
        );
        let mut per_container: BTreeMap<&str, usize> = BTreeMap::new();
        for e in res {
            assert_eq!(
                e["format"], "attachment",
                "{label}: half-written file seen: {e}"
            );
            assert!(e["problems"].as_array().unwrap().is_empty(), "{label}: {e}");
            *per_container
                .entry(e["containerId"].as_str().unwrap())
                .or_default() += 1;
        }
        for (c, n) in &per_container {
            if whole_add {
                // One ADD reserves both families at once: never one without the other.
                assert_eq!(*n, 2, "{label}: {c} holds {n} addresses mid-ADD");
            } else {
                assert!(*n == 1 || *n == 2, "{label}: {c} holds {n} addresses");
            }
        }
        let count = res.len() as u64;
        assert!(
            count >= last,
            "{label}: count went back from {last} to {count}"
        );
        let sets = v["network"]["rangeSets"].as_array().unwrap();
        let reserved: u64 = sets.iter().map(|s| s["reserved"].as_u64().unwrap()).sum();
        assert_eq!(reserved, count, "{label}: range set counts disagree");
        last = count;
        distinct.insert(count);
        let l = run_in(tmp.path(), &["--data-dir", &d, "list", "--json"], None);
        assert_eq!(l.code, 0, "{label}: {}", l.stderr);
        let lv: Value = serde_json::from_str(&l.stdout).unwrap();
        let lc = lv["networks"][0]["reservations"].as_u64().unwrap();
        assert!(
            lc >= count && (!whole_add || lc.is_multiple_of(2)),
            "{label}: list saw {lc} after {count}"
        );
        reads += 1;
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(last, 2 * (N as u64 + 1), "{label}: final count");
    eprintln!(
        "{label}: {reads} consistent reads, {} distinct states",
        distinct.len()
    );
}

#[test]
fn concurrent_reads_while_our_plugin_allocates() {
    match our_plugin() {
        Some(p) => concurrent_reads(&p, "host-local (Rust)", true),
        None => skip(&format!(
            "our plugin is not built next to {BIN} (run `cargo build -p host-local`)"
        )),
    }
}

#[test]
fn concurrent_reads_while_the_go_plugin_allocates() {
    let go_path = go_plugin();
    let go = go_path.as_path();
    if go.exists() {
        concurrent_reads(go, "host-local (Go)", false);
    } else {
        skip(&format!("{GO_PLUGIN} missing"));
    }
}
