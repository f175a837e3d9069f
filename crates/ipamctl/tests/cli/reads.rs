//! The third round (issue 23), what the read commands get right: the store
//! each network is really in, configurations and files that would
//! otherwise vanish, lookups across networks, the lock under churn. One
//! test per item, through the real binary.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;

/// The plugin's default data directory (configurations without dataDir).
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The network named `name` in a `list --json` document.
fn listed<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {v}"))
}

/// Item 1: network A names no dataDir, B names `<root>/x`. A is read from
/// the plugin's default directory (where the plugin keeps it), not from
/// B's dataDir, even though a directory A in `<root>/x` (a decoy, full)
/// exists.
#[test]
fn a_network_without_data_dir_is_read_from_the_default_not_from_another_configs() {
    let f = fixture();
    let root = f.root();
    let x = root.join("x");
    // A name that no store in the real default directory has.
    let a = format!("itemone-{}", std::process::id());
    assert!(!Path::new(DEFAULT_DATA_DIR).join(&a).exists());
    let d = root.join("net.d");
    std::fs::create_dir_all(&d).unwrap();
    conf(
        &d.join("10-a.conflist"),
        &a,
        None,
        json!([[{"subnet": "10.31.0.0/29"}]]),
    );
    conf(
        &d.join("20-b.conflist"),
        "b",
        Some(&x),
        json!([[{"subnet": "10.32.0.0/29"}]]),
    );
    store(&x.join("b"), &[("10.32.0.2", "b1\r\neth0")]);
    let decoy: Vec<(String, String)> = (2..7)
        .map(|i| (format!("10.31.0.{i}"), format!("d{i}\r\neth0")))
        .collect();
    let decoy: Vec<(&str, &str)> = decoy
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    store(&x.join(&a), &decoy);
    let default_path = format!("{DEFAULT_DATA_DIR}/{a}");

    let r = run_in(root, &["list", "--config", "net.d", "--json"], None);
    let v = parse_json(&r.stdout);
    let na = listed(&v, &a);
    assert_eq!(na["path"], default_path, "{}", r.stderr);
    assert_eq!(na["dataDir"], DEFAULT_DATA_DIR);
    assert_eq!(na["exists"], false);
    assert_eq!(na["reservations"], 0);
    assert_eq!(na["exhausted"], false);
    assert_eq!(listed(&v, "b")["path"], x.join("b").to_str().unwrap());
    assert_eq!(listed(&v, "b")["reservations"], 1);
    assert_eq!(v["dataDir"], DEFAULT_DATA_DIR);

    let r = run_in(root, &["metrics", "--config", "net.d"], None);
    for line in [
        format!("ipamctl_reservations{{network=\"{a}\"}} 0\n"),
        format!("ipamctl_network_exhausted{{network=\"{a}\"}} 0\n"),
        "ipamctl_reservations{network=\"b\"} 1\n".to_string(),
    ] {
        assert!(
            r.stdout.contains(&line),
            "{line} missing from\n{}",
            r.stdout
        );
    }

    // show looks there too (and never at the decoy).
    let r = run_in(root, &["show", &a, "--config", "net.d"], None);
    let both = format!("{}{}", r.stdout, r.stderr);
    assert!(both.contains(&default_path), "{both}");
    assert!(!both.contains("10.31.0.2"), "{both}");
}

/// Item 10: a configured network whose directory does not exist yet is no
/// error for `show` (as `list` says: no store yet), and `leaks` marks the
/// leaks `gc --dry-run` keeps because of `--min-age`, so the counts agree.
#[test]
fn a_configured_network_without_a_store_shows_empty_and_leaks_mark_what_gc_keeps() {
    let f = fixture();
    let d = f.root().join("net.d");
    std::fs::create_dir_all(&d).unwrap();
    conf(
        &d.join("10-fresh.conflist"),
        "fresh",
        None,
        json!([[{"subnet": "10.33.0.0/29"}]]),
    );
    let r = f.run(&["show", "fresh", "--config", "net.d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
network fresh  (data/fresh)
no store yet: data/fresh does not exist (no ADD on this network so far)
config  net.d/10-fresh.conflist
SET  RANGES               GATEWAY    CAPACITY  RESERVED  FREE  USAGE  LAST RESERVED
  0  10.33.0.1-10.33.0.6  10.33.0.1         5         0     5   0.0%  -

no reservations
0 reservations, 0 with problems
",
    );
    let r = f.run(&["show", "fresh", "--config", "net.d", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(parse_json(&r.stdout)["network"]["exists"], false);
    // Without a configuration a missing directory is still an error.
    let r = f.run(&["show", "fresh"]);
    assert_eq!(r.code, 2, "{}", r.stdout);

    // Two leaks, one of them made a minute ago.
    store(
        &f.data().join("mixed"),
        &[
            ("10.34.0.2", "live\r\neth0"),
            ("10.34.0.3", "gone1\r\neth0"),
        ],
    );
    let young = f.data().join("mixed/10.34.0.4");
    std::fs::write(&young, "gone2\r\neth0").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&young)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
    std::fs::write(f.root().join("valid.txt"), "live\n").unwrap();
    let r = f.run(&["leaks", "mixed", "--valid", "valid.txt"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_text(
        r.stdout.split_once("\n\n").unwrap().1,
        "\
ADDRESS    CONTAINER  IFNAME   AGE  WHY
10.34.0.3  gone1      eth0    3h0m  not a valid attachment
10.34.0.4  gone2      eth0      1m  not a valid attachment; gc keeps it for now (--min-age)
2 of 3 reservations leaked (1 younger than --min-age 5m: gc keeps it for now)
",
    );
    let r = f.run(&["leaks", "mixed", "--valid", "valid.txt", "--json"]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["leaks"][0]["gcKeeps"], Value::Null);
    assert!(v["leaks"][1]["gcKeeps"]
        .as_str()
        .unwrap()
        .starts_with("younger than --min-age 5m"));
    let gc = parse_json(
        &f.run(&["gc", "mixed", "--valid", "valid.txt", "--dry-run", "--json"])
            .stdout,
    );
    assert_eq!(gc["planned"].as_array().unwrap().len(), 1);
    assert_eq!(gc["kept"][0]["address"], "10.34.0.4");
    // The same --min-age on both: nothing kept, nothing marked.
    let r = f.run(&[
        "leaks",
        "mixed",
        "--valid",
        "valid.txt",
        "--min-age",
        "30s",
        "--json",
    ]);
    assert_eq!(parse_json(&r.stdout)["leaks"][1]["gcKeeps"], Value::Null);
}
