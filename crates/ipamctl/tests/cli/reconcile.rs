//! `ipamctl reconcile`: leaks released once they stayed leaked for the
//! grace period, across runs sharing a state file. Through the real binary.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn actions(v: &Value, network: &str) -> Vec<(String, String)> {
    v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["network"] == network)
        .unwrap_or_else(|| panic!("{network} not reconciled: {v}"))["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["address"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Two runs with a 2s grace period: the first records the leaks (pending),
/// the second, at least 2s later, releases those still leaked, and not the
/// one whose container came back meanwhile, nor a young one.
#[test]
fn reconcile_releases_leaks_after_the_grace_period_across_runs() {
    let f = fixture();
    let net = f.data().join("rec");
    store(
        &net,
        &[
            ("10.8.0.2", "live\r\neth0"),
            ("10.8.0.3", "gone\r\neth0"),
            ("10.8.0.4", "back\r\neth0"),
            ("10.8.0.5", ""),
        ],
    );
    std::fs::write(net.join("10.8.0.6"), "young\r\neth0").unwrap();
    std::fs::write(f.root().join("valid.txt"), "live\n").unwrap();
    // Runs before the last take a long grace, so a slow machine cannot
    // make them release; the last one counts 2s from the first run.
    let reconcile = |grace: &str, extra: &[&str]| {
        let mut args = vec![
            "reconcile",
            "rec",
            "--valid",
            "valid.txt",
            "--grace",
            grace,
            "--state",
            "state.json",
        ];
        args.extend_from_slice(extra);
        f.run(&args)
    };
    let before = tree(&f.data());
    // A dry run changes nothing, not even the state file.
    let r = reconcile("1h", &["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.root().join("state.json").exists());
    assert_eq!(before, tree(&f.data()));

    let started = std::time::Instant::now();
    let r = reconcile("1h", &["--yes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(
        actions(&v, "rec"),
        [
            ("10.8.0.3".into(), "pending".into()),
            ("10.8.0.4".into(), "pending".into()),
            ("10.8.0.5".into(), "pending".into()),
            ("10.8.0.6".into(), "kept".into()),
        ]
    );
    assert_eq!(before, tree(&f.data()), "the first run releases nothing");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(f.root().join("state.json")).unwrap())
            .unwrap();
    let recorded = state["networks"]["data/rec"].as_array().unwrap();
    assert_eq!(recorded.len(), 3, "{state}");
    let first_seen = recorded[0]["firstSeen"].as_i64().unwrap();

    // Meanwhile `back` returned to the runtime.
    std::fs::write(f.root().join("valid.txt"), "live\nback\n").unwrap();
    let r = reconcile("1h", &["--yes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["networks"][0]["leaks"][0]["firstSeen"], first_seen);
    assert_eq!(
        actions(&v, "rec"),
        [
            ("10.8.0.3".into(), "pending".into()),
            ("10.8.0.5".into(), "pending".into()),
            ("10.8.0.6".into(), "kept".into()),
        ]
    );
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(f.root().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        again["networks"]["data/rec"][0]["firstSeen"], first_seen,
        "first seen is kept"
    );

    // A 2s grace period, over since the first run (the wait is the
    // behaviour under test; first seen is in whole seconds, rounded down).
    if let Some(rest) = Duration::from_millis(2100).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    std::fs::write(f.root().join("valid.txt"), "live\nback\n").unwrap();
    let r = reconcile("2s", &["--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("network rec: 3 of 5 reservations leaked; 2 released, 0 within the grace period, 1 kept by gc's rules"),
        "{}",
        r.stdout
    );
    for (name, there) in [
        ("10.8.0.2", true),
        ("10.8.0.3", false),
        ("10.8.0.4", true),
        ("10.8.0.5", false),
        ("10.8.0.6", true),
    ] {
        assert_eq!(net.join(name).exists(), there, "{name}");
    }
    let done: Value =
        serde_json::from_str(&std::fs::read_to_string(f.root().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(done["networks"], json!({}), "nothing left to wait for");
}

/// Guards and refusals: a list that matches nothing is refused per network
/// (exit 2, nothing recorded), a corrupt state file is an error naming it,
/// two runs on one state file exclude each other, and --dry-run or --yes is
/// required.
#[test]
fn reconcile_refuses_what_gc_refuses_and_a_bad_state_file() {
    let f = fixture();
    std::fs::write(f.root().join("zzz.txt"), "zzz\n").unwrap();
    let r = f.run(&[
        "reconcile",
        "net1",
        "--valid",
        "zzz.txt",
        "--grace",
        "1h",
        "--state",
        "s.json",
        "--yes",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("keeps none of the"), "{}", r.stderr);
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(f.root().join("s.json")).unwrap()).unwrap();
    assert_eq!(s["networks"], json!({}));
    std::fs::write(f.root().join("bad.json"), "[1]").unwrap();
    std::fs::write(f.root().join("valid.txt"), "c1\n").unwrap();
    let r = f.run(&[
        "reconcile",
        "net1",
        "--valid",
        "valid.txt",
        "--grace",
        "1h",
        "--state",
        "bad.json",
        "--yes",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("state file bad.json: not a reconcile state file"),
        "{}",
        r.stderr
    );
    let lock = std::fs::File::create(f.root().join("s.json.lock")).unwrap();
    lock.lock().unwrap();
    let r = f.run(&[
        "reconcile",
        "net1",
        "--valid",
        "valid.txt",
        "--grace",
        "1h",
        "--state",
        "s.json",
        "--yes",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("another ipamctl reconcile with this state file is running"),
        "{}",
        r.stderr
    );
    drop(lock);
    let r = f.run(&[
        "reconcile",
        "net1",
        "--valid",
        "valid.txt",
        "--grace",
        "1h",
        "--state",
        "s.json",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    // Every disk network without NETWORK: net1 and other.
    let r = f.run(&[
        "reconcile",
        "--valid",
        "valid.txt",
        "--grace",
        "1h",
        "--state",
        "s.json",
        "--force",
        "--yes",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    let nets: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["network"].as_str().unwrap())
        .collect();
    assert_eq!(nets, ["net1", "other"]);
}

/// The systemd service shipped in the .deb (disabled) runs a command line
/// the binary takes: its ExecStart with the default IPAMCTL_RECONCILE_ARGS,
/// the runtime's socket and the paths swapped for the fixture's.
#[test]
fn the_shipped_systemd_unit_runs_a_valid_reconcile() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let unit = std::fs::read_to_string(format!(
        "{root}/packaging/systemd/ipamctl-reconcile.service"
    ))
    .unwrap();
    let timer =
        std::fs::read_to_string(format!("{root}/packaging/systemd/ipamctl-reconcile.timer"))
            .unwrap();
    assert!(timer.contains("WantedBy=timers.target"));
    let cargo = std::fs::read_to_string(format!("{root}/crates/host-local/Cargo.toml")).unwrap();
    for f in ["ipamctl-reconcile.service", "ipamctl-reconcile.timer"] {
        assert!(
            cargo.contains(&format!(
                r#"["../../packaging/systemd/{f}", "usr/lib/systemd/system/{f}", "644"]"#
            )),
            "{f} not in the .deb's assets"
        );
    }
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim_matches('"')
            .to_string()
    };
    let env = value("Environment=");
    let args = env.strip_prefix("IPAMCTL_RECONCILE_ARGS=").unwrap();
    let exec = value("ExecStart=").replace("$IPAMCTL_RECONCILE_ARGS", args);
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[..2], ["/usr/bin/ipamctl", "reconcile"]);
    let f = fixture();
    std::fs::write(
        f.root().join("valid.txt"),
        "c1\nc2\nc3\nc4\nc5\nlegacy1\nk1\n",
    )
    .unwrap();
    let mut run: Vec<String> = Vec::new();
    let mut it = words[1..].iter();
    while let Some(w) = it.next() {
        match *w {
            "--config" => {
                it.next();
                run.extend(["--config".into(), "net1.conflist".into()]);
            }
            "--cri" => {
                assert_eq!(it.next(), Some(&"unix:///run/containerd/containerd.sock"));
                run.extend(["--valid".into(), "valid.txt".into()]);
            }
            "--state" => {
                assert_eq!(it.next(), Some(&"/var/lib/ipamctl/reconcile.json"));
                run.extend(["--state".into(), "state.json".into()]);
            }
            other => run.push(other.into()),
        }
    }
    assert!(
        run.contains(&"--yes".to_string()) && run.contains(&"--grace".to_string()),
        "{run:?}"
    );
    let refs: Vec<&str> = run.iter().map(String::as_str).collect();
    let r = f.run(&refs);
    assert_eq!(r.code, 0, "{refs:?}: {}{}", r.stdout, r.stderr);
    assert!(f.root().join("state.json").exists());
}
