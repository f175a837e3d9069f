//! The third round (issue 23), the list of live attachments: a list that
//! matches nothing is refused by `leaks` as by `gc`; a stale list removes
//! nothing made after it; `check` and `release` take the list into account.
//! One test per item, through the real binary.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::common::*;

/// Sets `path`'s modification time to `ago` before now.
fn age_file(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

/// Item 3: a list of truncated or upper-cased IDs matches nothing; `leaks`
/// refuses it (as `gc` does) instead of calling every reservation leaked,
/// and says why.
#[test]
fn leaks_refuses_a_list_that_matches_nothing() {
    let f = fixture();
    let ids: Vec<String> = ["3fa", "b07", "c9e"]
        .iter()
        .map(|p| format!("{p}{}", "d".repeat(61)))
        .collect();
    store(
        &f.data().join("pods"),
        &[
            ("10.3.0.2", &format!("{}\r\neth0", ids[0])),
            ("10.3.0.3", &format!("{}\r\neth0", ids[1])),
            ("10.3.0.4", &format!("{}\r\neth0", ids[2])),
        ],
    );
    let short: String = ids.iter().map(|i| format!("{}\n", &i[..12])).collect();
    std::fs::write(f.root().join("short.txt"), short).unwrap();
    let upper: String = ids
        .iter()
        .map(|i| format!("{}\n", i.to_uppercase()))
        .collect();
    std::fs::write(f.root().join("upper.txt"), upper).unwrap();
    for (list, why) in [("short.txt", "truncated"), ("upper.txt", "differ in case")] {
        for cmd in ["leaks", "gc"] {
            let mut args = vec![cmd, "pods", "--valid", list];
            if cmd == "gc" {
                args.push("--dry-run");
            }
            let r = f.run(&args);
            assert_eq!(r.code, 2, "{cmd} {list}: {}", r.stdout);
            assert!(
                r.stderr
                    .contains("keeps none of the 3 reservations of network pods")
                    && r.stderr.contains(why),
                "{cmd} {list}: {}",
                r.stderr
            );
            assert_eq!(r.stdout, "", "{cmd} {list}");
        }
    }
    // A list that keeps one of them is taken: the others are leaks.
    std::fs::write(f.root().join("one.txt"), format!("{}\n", ids[0])).unwrap();
    let r = f.run(&["leaks", "pods", "--valid", "one.txt"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("2 of 3 reservations leaked"),
        "{}",
        r.stdout
    );
    // --force: the operator says every container is gone.
    let r = f.run(&["leaks", "pods", "--valid", "upper.txt", "--force", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(parse_json(&r.stdout)["leaks"].as_array().unwrap().len(), 3);
}

/// Item 4: a list written an hour ago, a container started ten minutes ago
/// (not in it): `gc` keeps its reservation (older than --min-age, but made
/// after the list) and removes the old leak; `leaks` marks it.
#[test]
fn a_stale_list_removes_nothing_made_after_it() {
    let f = fixture();
    let net = f.data().join("stale");
    store(
        &net,
        &[("10.4.0.2", "live\r\neth0"), ("10.4.0.3", "gone\r\neth0")],
    );
    std::fs::write(net.join("10.4.0.4"), "new\r\neth0").unwrap();
    age_file(&net.join("10.4.0.4"), Duration::from_secs(600));
    std::fs::write(f.root().join("valid.txt"), "live\n").unwrap();
    age_file(&f.root().join("valid.txt"), Duration::from_secs(3600));

    let r = f.run(&["leaks", "stale", "--valid", "valid.txt", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["leaks"][0]["address"], "10.4.0.3");
    assert_eq!(v["leaks"][0]["gcKeeps"], Value::Null);
    assert_eq!(v["leaks"][1]["address"], "10.4.0.4");
    let keeps = v["leaks"][1]["gcKeeps"].as_str().unwrap();
    assert!(
        keeps.starts_with("made after the valid list valid.txt"),
        "{keeps}"
    );
    let r = f.run(&["leaks", "stale", "--valid", "valid.txt"]);
    assert!(
        r.stdout.contains("10.4.0.4  new        eth0     10m  not a valid attachment; gc keeps it: made after the list\n")
            && r.stdout.contains("(1 made after the list was: gc keeps it; make the list again)"),
        "{}",
        r.stdout
    );

    let r = f.run(&["gc", "stale", "--valid", "valid.txt", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
1 reservation of network stale to remove:
ADDRESS   CONTAINER  IFNAME   AGE  WHY
10.4.0.3  gone       eth0    3h0m  not a valid attachment
kept 10.4.0.4: made after the valid list valid.txt was written less --min-age 5m (the list is 1h0m old, the reservation 10m); its container cannot be in it: make the list again
removed 10.4.0.3
1 of 1 reservation removed from network stale
",
    );
    assert!(net.join("10.4.0.4").exists());
    assert!(!net.join("10.4.0.3").exists());
    // A fresh list without it: now it goes.
    std::fs::write(f.root().join("valid.txt"), "live\n").unwrap();
    let r = f.run(&["gc", "stale", "--valid", "valid.txt", "--yes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(parse_json(&r.stdout)["removed"], json!(["10.4.0.4"]));
}

/// Item 2: the documented workflow (leaks, gc, a new pod gets the reclaimed
/// address) leaves the gone container's libcni cache entry behind; `check
/// --valid` skips it as stale instead of calling the new pod a
/// duplicate-address risk.
#[test]
fn check_with_valid_skips_the_cache_entries_of_gone_containers() {
    let f = fixture();
    let net = f.data().join("pods");
    store(
        &net,
        &[("10.5.0.2", "live\r\neth0"), ("10.5.0.3", "gone\r\neth0")],
    );
    let res = f.root().join("results");
    cache_entry(
        &res,
        "pods",
        "live",
        "eth0",
        Some(("shop", "web-0")),
        &["10.5.0.2/24"],
    );
    cache_entry(
        &res,
        "pods",
        "gone",
        "eth0",
        Some(("shop", "web-1")),
        &["10.5.0.3/24"],
    );
    std::fs::write(f.root().join("valid.txt"), "live\n").unwrap();
    let r = f.run(&["gc", "pods", "--valid", "valid.txt", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!net.join("10.5.0.3").exists());
    // The plugin hands the address to a new pod.
    std::fs::write(net.join("10.5.0.3"), "new\r\neth0").unwrap();
    cache_entry(
        &res,
        "pods",
        "new",
        "eth0",
        Some(("shop", "web-2")),
        &["10.5.0.3/24"],
    );
    std::fs::write(f.root().join("valid.txt"), "live\nnew\n").unwrap();

    let r = f.run(&[
        "check",
        "pods",
        "--results-dir",
        "results",
        "--valid",
        "valid.txt",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_text(
        &r.stdout,
        "\
network pods
checked 2 cached attachments (results) against 2 reservations; ranges not checked (no --config)
valid attachments from valid.txt (2 listed): 1 cached attachment of containers not listed skipped as stale

no findings
",
    );
    let r = f.run(&[
        "check",
        "pods",
        "--results-dir",
        "results",
        "--valid",
        "valid.txt",
        "--json",
    ]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["staleCacheEntries"], 1);
    assert_eq!(v["attachments"], 2);
    assert_eq!(v["valid"]["attachments"], 2);
    assert_eq!(v["findings"], json!([]));
    // Without the list the stale entry is a finding, with a hint.
    let r = f.run(&["check", "pods", "--results-dir", "results"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("10.5.0.3  other-owner  gone")
            && r.stdout.contains("give --valid to skip those"),
        "{}",
        r.stdout
    );
    // A list that matches nothing would hide every finding: refused.
    std::fs::write(f.root().join("other.txt"), "zzz\n").unwrap();
    let r = f.run(&[
        "check",
        "pods",
        "--results-dir",
        "results",
        "--valid",
        "other.txt",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("keeps none"), "{}", r.stderr);
}

/// Item 8: `release --ip` of an address whose container libcni's cache
/// records, or the valid list keeps, is refused (nothing changes) unless
/// the list says it is gone or --force.
#[test]
fn release_refuses_the_address_of_a_live_container() {
    let f = fixture();
    let res = f.root().join("results");
    cache_entry(
        &res,
        "net1",
        "c2",
        "eth0",
        Some(("kube-system", "dns-7f")),
        &["10.1.0.3/24"],
    );
    let before = tree(&f.data());
    let r = f.run(&[
        "release",
        "net1",
        "--ip",
        "10.1.0.3",
        "--results-dir",
        "results",
        "--yes",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("10.1.0.3 is held by c2 eth0 in network net1, and libcni's result cache results records it as attached (pod kube-system/dns-7f)")
            && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    // The container, too; and a list that keeps it, cache or not.
    let r = f.run(&[
        "release",
        "net1",
        "--container",
        "c2",
        "--results-dir",
        "results",
        "--dry-run",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    std::fs::write(f.root().join("valid.txt"), "c1\nc2\n").unwrap();
    let r = f.run(&[
        "release",
        "net1",
        "--ip",
        "10.1.0.3",
        "--valid",
        "valid.txt",
        "--yes",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("and the valid list valid.txt keeps it"),
        "{}",
        r.stderr
    );
    assert_eq!(
        before,
        tree(&f.data()),
        "a refused release changed something"
    );
    // The authoritative list says c2 is gone: its lingering cache entry does not matter.
    std::fs::write(f.root().join("valid.txt"), "c1\n").unwrap();
    let r = f.run(&[
        "release",
        "net1",
        "--ip",
        "10.1.0.3",
        "--valid",
        "valid.txt",
        "--results-dir",
        "results",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.net().join("10.1.0.3").exists());
    // --force: the operator knows better.
    let r = f.run_stdin(
        &[
            "release",
            "net1",
            "--ip",
            "2001:db8::3",
            "--valid",
            "-",
            "--yes",
        ],
        Some("c2\n"),
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    let r = f.run_stdin(
        &[
            "release",
            "net1",
            "--ip",
            "2001:db8::3",
            "--valid",
            "-",
            "--force",
            "--yes",
        ],
        Some("c2\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.net().join("2001:db8::3").exists());
    // A damaged file names no container: released without a word.
    let r = f.run(&[
        "release",
        "net1",
        "--ip",
        "10.1.0.5",
        "--results-dir",
        "results",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `gc --from-report`: a `leaks --json` report applied exactly. What
/// changed since the report (released and taken by another pod, made
/// again, not reported at all) is left alone and listed; what the report
/// marks as kept stays.
#[test]
fn gc_from_report_removes_exactly_the_unchanged_reported_leaks() {
    let f = fixture();
    let net = f.data().join("rep");
    store(
        &net,
        &[
            ("10.6.0.2", "live\r\neth0"),
            ("10.6.0.3", "gone1\r\neth0"),
            ("10.6.0.4", "gone2\r\neth0"),
            ("10.6.0.5", ""),
            ("10.6.0.6", "gone4\r\neth0"),
        ],
    );
    std::fs::write(net.join("10.6.0.7"), "young\r\neth0").unwrap();
    age_file(&net.join("10.6.0.7"), Duration::from_secs(60));
    std::fs::write(f.root().join("valid.txt"), "live\n").unwrap();
    let r = f.run(&["leaks", "rep", "--valid", "valid.txt", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    std::fs::write(f.root().join("report.json"), &r.stdout).unwrap();
    // Since the report: gone2's address went to a new pod, gone4's file was
    // made again, and a new leak appeared.
    std::fs::write(net.join("10.6.0.4"), "newpod\r\neth0").unwrap();
    age_file(&net.join("10.6.0.4"), Duration::from_secs(7200));
    age_file(&net.join("10.6.0.6"), Duration::from_secs(7200));
    write_aged(&net.join("10.6.0.8"), b"gone3\r\neth0");

    let r = f.run(&["gc", "rep", "--from-report", "report.json", "--dry-run"]);
    assert_eq!(r.code, 1, "skipped entries: exit 1; {}", r.stderr);
    assert_text(
        &r.stdout,
        "\
would remove 2 reservations of network rep (dry run: nothing changed)
ADDRESS   CONTAINER  IFNAME   AGE  WHY
10.6.0.3  gone1      eth0    3h0m  in the leaks report
10.6.0.5  -          -       3h0m  in the leaks report
kept 10.6.0.7: the report marks it as kept by gc: younger than --min-age 5m (1m old); the container may have started after the list was made
skipped 10.6.0.4: changed since the report: now held by newpod eth0, the report names gone2 eth0; left alone
skipped 10.6.0.6: changed since the report: made again since the report (its modification time changed); left alone
",
    );
    let r = f.run(&[
        "gc",
        "rep",
        "--from-report",
        "report.json",
        "--yes",
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["removed"], json!(["10.6.0.3", "10.6.0.5"]));
    let skipped: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["10.6.0.4", "10.6.0.6"]);
    assert!(v["skipped"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("made again since the report"));
    for (name, there) in [
        ("10.6.0.2", true),
        ("10.6.0.3", false),
        ("10.6.0.4", true),
        ("10.6.0.5", false),
        ("10.6.0.6", true),
        ("10.6.0.7", true),
        ("10.6.0.8", true),
    ] {
        assert_eq!(net.join(name).exists(), there, "{name}");
    }
    // Applied again: nothing left to remove, the rest still skipped.
    let r = f.run(&["gc", "rep", "--from-report", "report.json", "--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("skipped 10.6.0.3: changed since the report: no longer reserved"),
        "{}",
        r.stdout
    );

    // Refused: another network's report, a heuristic one, not a leaks report.
    let other = r#"{"schema": 2, "command": "leaks", "dataDir": "data", "network": "other",
                    "sources": {"authoritative": true}, "leaks": []}"#;
    let r = f.run_stdin(&["gc", "rep", "--from-report", "-", "--yes"], Some(other));
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("a report for network \"other\", not \"rep\""),
        "{}",
        r.stderr
    );
    cache_entry(
        &f.root().join("results"),
        "rep",
        "live",
        "eth0",
        None,
        &["10.6.0.2/24"],
    );
    let heur = f
        .run(&["leaks", "rep", "--results-dir", "results", "--json"])
        .stdout;
    let r = f.run_stdin(&["gc", "rep", "--from-report", "-", "--yes"], Some(&heur));
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("made without --valid"), "{}", r.stderr);
    let show = f.run(&["show", "rep", "--json"]).stdout;
    let r = f.run_stdin(&["gc", "rep", "--from-report", "-", "--yes"], Some(&show));
    assert_eq!(r.code, 2, "{}", r.stdout);
    // --valid and --from-report exclude each other.
    let r = f.run(&[
        "gc",
        "rep",
        "--from-report",
        "report.json",
        "--valid",
        "valid.txt",
    ]);
    assert_eq!(r.code, 2);
    assert!(net.join("10.6.0.8").exists());
}
