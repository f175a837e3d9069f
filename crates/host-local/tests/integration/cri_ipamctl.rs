//! ipamctl's `--cri` against the `cri` suite's private containerd
//! (`cri_world`): the runtime's live pod sandboxes, listed over CRI with the
//! shared `cri-client`, as the source of truth of `leaks`, `gc`, `check` and
//! `reconcile`. Runs the ipamctl binary built beside our plugin.
//!
//! Leaks are reservation files of sandboxes containerd never had (what a
//! crashed runtime or a lost DEL leaves): deterministic, unlike a sandbox
//! removed behind containerd's back (that path is
//! `cri::cri_e2e_ipamctl_finds_sandbox_removed_behind_containerds_back`). A
//! stopped sandbox still listed (not ready) counts as live: its
//! reservation, written here as a DEL that failed would leave it, stays.
//!
//! Needs what the `cri` suite needs (root, containerd, ...); otherwise a
//! loud SKIPPED.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::cri::{ipamctl, ipamctl_bin, reservation_objects, run_pod, stop_twice_and_remove, Pod};
use crate::cri_world::*;
use crate::netns_util::*;

/// A reservation file an hour old (older than gc's --min-age).
fn old_file(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// (address, containerId) of every reservation object in an ipamctl document.
fn owners(v: &Value) -> BTreeMap<String, String> {
    reservation_objects(v)
        .into_iter()
        .map(|o| {
            let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
            (s("address"), s("containerId"))
        })
        .collect()
}

fn json(r: &Run, what: &str) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}{}", r.stdout, r.stderr))
}

#[test]
fn cri_e2e_ipamctl_takes_the_runtimes_sandboxes_as_the_truth() {
    let what = "cri e2e (ipamctl --cri)";
    if !cri_ready(what) {
        return;
    }
    let Some(bin) = ipamctl_bin(what) else {
        return;
    };
    let t0 = std::time::Instant::now();
    let w = CriWorld::start(4, false);
    let mut cri = w.cri();
    let a = run_pod(&w, &mut cri, "a", vec![]);
    let b = run_pod(&w, &mut cri, "b", vec![]);
    // Stopped (CNI DEL ran) but not removed: listed, not ready.
    let c = run_pod(&w, &mut cri, "c", vec![]);
    cri.stop_pod_sandbox(&c.id).unwrap();
    let netdir = w.data_dir.join(&w.net);
    // As a DEL that failed would have left it.
    old_file(&netdir.join(&c.v4), &format!("{}\r\neth0", c.id));
    // Leaks: two sandboxes containerd never had, one of them dual-stack.
    let gone1 = "d".repeat(64);
    let gone2 = "e".repeat(64);
    let leaked4 = format!("{}200", w.v4_prefix);
    let leaked6 = format!("{}200", w.v6_prefix);
    let leaked4b = format!("{}201", w.v4_prefix);
    old_file(&netdir.join(&leaked4), &format!("{gone1}\r\neth0"));
    old_file(&netdir.join(&leaked6), &format!("{gone1}\r\neth0"));
    old_file(&netdir.join(&leaked4b), &format!("{gone2}\r\neth0"));
    let live_store = |pods: &[&Pod]| -> BTreeMap<String, (String, String)> {
        let mut m: BTreeMap<String, (String, String)> = pods
            .iter()
            .flat_map(|p| [&p.v4, &p.v6].map(|ip| (ip.clone(), (p.id.clone(), "eth0".to_owned()))))
            .collect();
        m.insert(c.v4.clone(), (c.id.clone(), "eth0".into()));
        m
    };

    let endpoint = format!("unix://{}", w.socket.display());
    let data = w.data_dir.display().to_string();
    let results = w.results_dir.display().to_string();
    let base = [
        "--data-dir",
        data.as_str(),
        "--results-dir",
        results.as_str(),
        "--no-trunc",
    ];
    let with = |cmd: &[&str], extra: &[&str]| {
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend_from_slice(&base);
        args.extend_from_slice(&["--cri", endpoint.as_str()]);
        args.extend_from_slice(extra);
        ipamctl(&bin, &args)
    };

    // leaks: exactly the three files of the two gone sandboxes.
    let r = with(&["leaks", &w.net], &["--json"]);
    assert_eq!(r.code, 1, "ipamctl leaks --cri: {}{}", r.stdout, r.stderr);
    let v = json(&r, "leaks --json");
    let want: BTreeMap<String, String> = [
        (leaked4.clone(), gone1.clone()),
        (leaked4b.clone(), gone2.clone()),
        (leaked6.clone(), gone1.clone()),
    ]
    .into();
    assert_eq!(owners(&v["leaks"]), want, "{}", r.stdout);
    let src = &v["sources"]["valid"];
    assert_eq!(src["kind"], "cri", "{src}");
    assert_eq!(src["path"], endpoint.as_str());
    assert_eq!(
        (
            src["cri"]["ready"].as_u64(),
            src["cri"]["notReady"].as_u64()
        ),
        (Some(2), Some(1)),
        "{src}"
    );
    assert!(
        src["cri"]["runtime"]
            .as_str()
            .unwrap_or_default()
            .starts_with("containerd"),
        "{src}"
    );
    assert_eq!(v["sources"]["authoritative"], true);

    // check: every cached attachment of a listed sandbox holds its address.
    let r = with(&["check", &w.net], &[]);
    assert_eq!(r.code, 0, "ipamctl check --cri: {}{}", r.stdout, r.stderr);

    // reconcile: recorded first (a 1h grace), released with a grace of 0.
    let state = w.tmp.join("reconcile.json");
    let state_s = state.display().to_string();
    let r = with(
        &["reconcile", &w.net],
        &["--grace", "1h", "--state", &state_s, "--yes", "--json"],
    );
    assert_eq!(
        r.code, 0,
        "ipamctl reconcile --cri: {}{}",
        r.stdout, r.stderr
    );
    let v = json(&r, "reconcile --json");
    let pending: Vec<&str> = reservation_objects(&v)
        .into_iter()
        .map(|o| o["action"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["pending"; 3], "{}", r.stdout);

    // gc --dry-run plans exactly the leaks; gc with a grace-0 reconcile of
    // one of them first, then gc for the rest.
    let r = with(&["gc", &w.net], &["--dry-run", "--json"]);
    assert_eq!(
        r.code, 0,
        "ipamctl gc --cri --dry-run: {}{}",
        r.stdout, r.stderr
    );
    assert_eq!(owners(&json(&r, "gc --dry-run")["planned"]), want);
    let r = with(
        &["reconcile", &w.net],
        &["--grace", "0s", "--state", &state_s, "--yes", "--json"],
    );
    assert_eq!(
        r.code, 0,
        "ipamctl reconcile --cri --grace 0s: {}{}",
        r.stdout, r.stderr
    );
    let v = json(&r, "reconcile");
    let released: Vec<&str> = reservation_objects(&v)
        .into_iter()
        .map(|o| o["action"].as_str().unwrap())
        .collect();
    assert_eq!(released, ["released"; 3], "{}", r.stdout);
    assert_store(&netdir, &live_store(&[&a, &b]), "after reconcile --cri");
    // Nothing left for gc; every pod kept its addresses.
    let r = with(&["gc", &w.net], &["--yes"]);
    assert_eq!(r.code, 0, "ipamctl gc --cri: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("nothing to remove"), "{}", r.stdout);
    old_file(&netdir.join(&leaked4b), &format!("{gone2}\r\neth0"));
    let r = with(&["gc", &w.net], &["--yes", "--json"]);
    assert_eq!(r.code, 0, "ipamctl gc --cri: {}{}", r.stdout, r.stderr);
    assert_eq!(json(&r, "gc")["removed"], serde_json::json!([leaked4b]));
    assert_store(&netdir, &live_store(&[&a, &b]), "after gc --cri");

    for p in [&a, &b] {
        stop_twice_and_remove(&mut cri, p);
    }
    cri.remove_pod_sandbox(&c.id).unwrap();
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}
