//! Multi-process races on one network: many concurrent ADDs (all spawned
//! before any is waited for) must hand out distinct addresses that agree with
//! the files; concurrent DELs must leave only `lock` and the cursors. Also
//! ours and the reference racing on one directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::json;

use super::common::{our_bin, our_net, ref_bin_or_skip, reservations, wait_plugin, Net, Output};

/// The dual-stack network the processes race on, its data in `dir`.
fn rnet(dir: &Path) -> Net {
    our_net(
        "rnet",
        dir,
        json!({"ranges": [[{"subnet": "10.8.0.0/24"}], [{"subnet": "2001:db8:8::/64"}]]}),
    )
    .with_version("1.0.0")
}

/// Spawns every (bin, container) command at once, then waits for all.
/// Each small config fits in the pipe buffer: no child waits on us.
fn race(cmd: &str, jobs: &[(PathBuf, String)], net: &Net) -> Vec<(String, Output)> {
    let children: Vec<(String, Child)> = jobs
        .iter()
        .map(|(bin, id)| (id.clone(), net.with_bin(bin).spawn(cmd, id, "eth0")))
        .collect();
    children
        .into_iter()
        .map(|(id, c)| (id, wait_plugin(c)))
        .collect()
}

/// Checks the ADD results: all succeeded, no address twice, and the files
/// hold exactly what the results say.
fn check_adds(results: &[(String, Output)], net: &Path) {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (id, out) in results {
        assert_eq!(out.code, 0, "ADD {id} failed: {out:?}");
        let ips = out.json()["ips"].as_array().unwrap().clone();
        assert_eq!(ips.len(), 2, "{id}: {ips:?}");
        for ip in ips {
            let cidr = ip["address"].as_str().unwrap();
            let addr = cidr.split('/').next().unwrap().to_string();
            if let Some(prev) = owner.insert(addr.clone(), id.clone()) {
                panic!("address {addr} handed out twice: to {prev} and {id}");
            }
        }
    }
    let files = reservations(net);
    let expected: BTreeMap<String, String> = owner
        .into_iter()
        .map(|(a, id)| (a, format!("{id}\r\neth0")))
        .collect();
    assert_eq!(
        files, expected,
        "reservation files disagree with the results"
    );
}

fn check_only_lock_and_cursors(net: &Path) {
    let names: BTreeSet<String> = std::fs::read_dir(net)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = ["lock", "last_reserved_ip.0", "last_reserved_ip.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want, "after concurrent DELs");
}

#[test]
fn race_32_adds_then_32_dels() {
    let t = tempfile::tempdir().unwrap();
    let c = rnet(t.path());
    let net = t.path().join("rnet");
    for round in 0..2 {
        let jobs: Vec<(PathBuf, String)> = (0..32)
            .map(|i| (our_bin(), format!("r{round}-c{i}")))
            .collect();
        let adds = race("ADD", &jobs, &c);
        check_adds(&adds, &net);
        assert_eq!(reservations(&net).len(), 64);
        let dels = race("DEL", &jobs, &c);
        for (id, out) in &dels {
            assert_eq!(out.code, 0, "DEL {id}: {out:?}");
            assert_eq!(out.stdout, "", "DEL {id}");
        }
        check_only_lock_and_cursors(&net);
    }
}

#[test]
fn race_ours_and_reference_16_plus_16() {
    let Some(refb) = ref_bin_or_skip("race::race_ours_and_reference_16_plus_16") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let c = rnet(t.path());
    let net = t.path().join("rnet");
    for round in 0..2 {
        // Interleaved so both binaries start at the same moments.
        let jobs: Vec<(PathBuf, String)> = (0..32)
            .map(|i| {
                let bin = if i % 2 == 0 { our_bin() } else { refb.clone() };
                (bin, format!("m{round}-c{i}"))
            })
            .collect();
        let adds = race("ADD", &jobs, &c);
        check_adds(&adds, &net);
        // DELs by the other binary than the one that added.
        let swapped: Vec<(PathBuf, String)> = jobs
            .iter()
            .enumerate()
            .map(|(i, (_, id))| {
                (
                    if i % 2 == 0 { refb.clone() } else { our_bin() },
                    id.clone(),
                )
            })
            .collect();
        let dels = race("DEL", &swapped, &c);
        for (id, out) in &dels {
            assert_eq!(out.code, 0, "DEL {id}: {out:?}");
        }
        check_only_lock_and_cursors(&net);
    }
}
