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
