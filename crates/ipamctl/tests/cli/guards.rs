//! The second round (issue 13): never mislead an operator, never wipe a
//! live network, name pods. One test per item, through the real binary.
//!
//! Over 600 lines (~770) because each of the items is its own test
//! with its fixture and its expected output inline.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// net.d names two networks with different dataDirs: `full` (a /29, every
/// address taken) in `<root>/dataA`, `half` in `<root>/dataB`; the
/// fixture's `data` directory holds neither.
fn two_data_dirs(f: &Fixture) {
    let root = f.root();
    let d = root.join("net.d");
    std::fs::create_dir_all(&d).unwrap();
    conf(
        &d.join("10-full.conflist"),
        "full",
        Some(&root.join("dataA")),
        json!([[{"subnet": "10.7.0.0/29"}]]),
    );
    conf(
        &d.join("20-half.conflist"),
        "half",
        Some(&root.join("dataB")),
        json!([[{"subnet": "10.8.0.0/29"}]]),
    );
    store(
        &root.join("dataA/full"),
        &[
            ("10.7.0.2", "a1\r\neth0"),
            ("10.7.0.3", "a2\r\neth0"),
            ("10.7.0.4", "a3\r\neth0"),
            ("10.7.0.5", "a4\r\neth0"),
            ("10.7.0.6", "a5\r\neth0"),
        ],
    );
    store(&root.join("dataB/half"), &[("10.8.0.2", "b1\r\neth0")]);
}

#[test]
fn each_network_is_read_from_its_own_data_dir() {
    let f = fixture();
    two_data_dirs(&f);
    // With --data-dir (the fixture's, holding net1 and other): each
    // configured network is still read from its own dataDir, and said so.
    let r = f.run(&["list", "--config", "net.d"]);
    assert_eq!(r.code, 1, "an exhausted network: exit 1; {}", r.stderr);
    assert_text(
        &rooted(&r.stdout, f.root()),
        "\
data directory data
NETWORK  RESERVED  LEGACY  DAMAGED  PROBLEMS  SET  RANGES             CAPACITY  FREE   USAGE  NOTE
full            5       0        0         0    0  10.7.0.1-10.7.0.6         5     0  100.0%  EXHAUSTED; dataDir <root>/dataA
half            1       0        0         0    0  10.8.0.1-10.8.0.6         5     4   20.0%  dataDir <root>/dataB
net1           10       1        2         2                                                  not in the configuration
other           1       0        0         0                                                  not in the configuration
",
    );
    // Without --data-dir (the default directory need not exist; where it
    // does, other networks may show up beside ours).
    let default_absent = !Path::new("/var/lib/cni/networks").exists();
    let r = run_in(f.root(), &["list", "--config", "net.d", "--json"], None);
    if default_absent {
        assert_eq!(r.code, 1, "{}", r.stderr);
    }
    let v = parse_json(&r.stdout);
    let net = |name: &str| -> Value {
        v["networks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {v}"))
    };
    let root = f.root().to_str().unwrap();
    assert_eq!(net("full")["dataDir"], format!("{root}/dataA"));
    assert_eq!(net("full")["reservations"], 5);
    assert_eq!(net("full")["exhausted"], true);
    assert_eq!(net("full")["rangeSets"][0]["exhausted"], true);
    assert_eq!(net("full")["notes"], json!([]));
    assert_eq!(net("half")["dataDir"], format!("{root}/dataB"));
    assert_eq!(net("half")["exhausted"], false);
    // Metrics: the full network's usage is 1, not 0.
    let r = run_in(f.root(), &["metrics", "--config", "net.d"], None);
    if default_absent {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    for line in [
        "ipamctl_range_set_usage_ratio{network=\"full\",range_set=\"0\",ranges=\"10.7.0.1-10.7.0.6\"} 1\n",
        "ipamctl_range_set_exhausted{network=\"full\",range_set=\"0\",ranges=\"10.7.0.1-10.7.0.6\"} 1\n",
        "ipamctl_network_exhausted{network=\"full\"} 1\n",
        "ipamctl_reservations{network=\"half\"} 1\n",
    ] {
        assert!(r.stdout.contains(line), "{line} missing from\n{}", r.stdout);
    }
    // A --data-dir that disagrees is reported, and the configured one is read.
    let r = f.run(&["list", "--config", "net.d", "--json"]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["networks"][0]["name"], "full");
    assert_eq!(v["networks"][0]["reservations"], 5);
    let note = v["networks"][0]["notes"][0].as_str().unwrap();
    assert!(
        note.contains("--data-dir data disagrees") && note.contains("dataA"),
        "{note}"
    );
    assert!(
        r.stderr.contains("--data-dir data disagrees"),
        "{}",
        r.stderr
    );
    // leaks, gc and release take --config too, and use its dataDir.
    std::fs::write(f.root().join("valid.txt"), "a1\na2\na3\na4\n").unwrap();
    let r = run_in(
        f.root(),
        &["leaks", "full", "--config", "net.d", "--valid", "valid.txt"],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("10.7.0.6"), "{}", r.stdout);
    let r = run_in(
        f.root(),
        &[
            "gc",
            "full",
            "--config",
            "net.d",
            "--valid",
            "valid.txt",
            "--yes",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.root().join("dataA/full/10.7.0.6").exists());
    let r = run_in(
        f.root(),
        &[
            "release", "half", "--config", "net.d", "--ip", "10.8.0.2", "--yes",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.root().join("dataB/half/10.8.0.2").exists());
}

#[test]
fn exhausted_network_is_flagged_by_show() {
    let f = fixture();
    two_data_dirs(&f);
    let r = run_in(f.root(), &["show", "full", "--config", "net.d"], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_text(
        &rooted(&r.stdout, f.root()),
        "\
network full  (<root>/dataA/full)
config  net.d/10-full.conflist
SET  RANGES             GATEWAY   CAPACITY  RESERVED  FREE   USAGE  LAST RESERVED  NOTE
  0  10.7.0.1-10.7.0.6  10.7.0.1         5         5     0  100.0%  -              EXHAUSTED
EXHAUSTED: range set 0 (10.7.0.1-10.7.0.6) has no free address; every ADD on this network fails

ADDRESS   CONTAINER  IFNAME   AGE  PROBLEMS
10.7.0.2  a1         eth0    3h0m
10.7.0.3  a2         eth0    3h0m
10.7.0.4  a3         eth0    3h0m
10.7.0.5  a4         eth0    3h0m
10.7.0.6  a5         eth0    3h0m
5 reservations, 0 with problems
",
    );
    let r = run_in(
        f.root(),
        &["show", "full", "--config", "net.d", "--json"],
        None,
    );
    assert_eq!(r.code, 1);
    let v = parse_json(&r.stdout);
    assert_eq!(v["network"]["exhausted"], true);
    assert_eq!(v["network"]["rangeSets"][0]["free"], 0);
    // One free address: not exhausted, exit 0.
    std::fs::remove_file(f.root().join("dataA/full/10.7.0.4")).unwrap();
    let r = run_in(f.root(), &["show", "full", "--config", "net.d"], None);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(!r.stdout.contains("EXHAUSTED"), "{}", r.stdout);
}

#[test]
fn gc_refuses_a_list_that_matches_nothing() {
    let f = fixture();
    let long = |c: char| c.to_string().repeat(64);
    let (a, b) = (long('a'), long('b'));
    store(
        &f.data().join("pods"),
        &[
            ("10.3.0.2", &format!("{a}\r\neth0")),
            ("10.3.0.3", &format!("{b}\r\neth0")),
            ("10.3.0.4", &format!("{b}\r\nnet1")),
        ],
    );
    let before = tree(f.root());
    // IDs truncated the way `podman ps -q` prints them.
    std::fs::write(
        f.root().join("short.txt"),
        format!("{}\n{}\n", &a[..12], &b[..12]),
    )
    .unwrap();
    let r = f.run(&["gc", "pods", "--valid", "short.txt", "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("keeps none of the 3 reservations") && r.stderr.contains("truncated"),
        "{}",
        r.stderr
    );
    // IDs from another runtime.
    std::fs::write(f.root().join("other.txt"), "zzz1\nzzz2\n").unwrap();
    let r = f.run(&["gc", "pods", "--valid", "other.txt", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    // A GC configuration for another network.
    let gc = json!({"cniVersion": "1.1.0", "name": "elsewhere",
                    "cni.dev/valid-attachments": [{"containerID": a, "ifname": "eth0"}]});
    let r = f.run_stdin(
        &["gc", "pods", "--valid", "-", "--yes"],
        Some(&gc.to_string()),
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("for network \"elsewhere\", not \"pods\""),
        "{}",
        r.stderr
    );
    std::fs::remove_file(f.root().join("short.txt")).unwrap();
    std::fs::remove_file(f.root().join("other.txt")).unwrap();
    assert_eq!(before, tree(f.root()), "a refused gc changed something");
    // --force overrides: every container of the network is gone.
    std::fs::write(f.root().join("other.txt"), "zzz1\n").unwrap();
    let r = f.run(&["gc", "pods", "--valid", "other.txt", "--force", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("3 of 3 reservations removed"),
        "{}",
        r.stdout
    );
}

#[test]
fn gc_never_removes_a_reservation_younger_than_min_age() {
    let f = fixture();
    store(&f.data().join("young"), &[("10.4.0.2", "old1\r\neth0")]);
    // Made after the list: the container started a moment ago.
    std::fs::write(f.data().join("young/10.4.0.3"), "new1\r\neth0").unwrap();
    std::fs::File::options()
        .write(true)
        .open(f.data().join("young/10.4.0.3"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(90))
        .unwrap();
    write_aged(&f.data().join("young/10.4.0.4"), b"old2\r\neth0");
    std::fs::write(f.root().join("valid.txt"), "old1\n").unwrap();
    let r = f.run(&["gc", "young", "--valid", "valid.txt", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
1 reservation of network young to remove:
ADDRESS   CONTAINER  IFNAME   AGE  WHY
10.4.0.4  old2       eth0    3h0m  not a valid attachment
kept 10.4.0.3: younger than --min-age 5m (1m old); the container may have started after the list was made
removed 10.4.0.4
1 of 1 reservation removed from network young
",
    );
    assert!(f.data().join("young/10.4.0.3").exists());
    assert!(!f.data().join("young/10.4.0.4").exists());
    let r = f.run(&["gc", "young", "--valid", "valid.txt", "--json", "--dry-run"]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["kept"][0]["address"], "10.4.0.3");
    assert_eq!(v["planned"], json!([]));
    let r = f.run(&[
        "gc",
        "young",
        "--valid",
        "valid.txt",
        "--min-age",
        "0",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.data().join("young/10.4.0.3").exists());
}

/// Runs ipamctl, failing (instead of hanging) when it has not ended after a
/// minute: the lock timeout is what is tested, not speed.
fn run_bounded(dir: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let (mut out, mut err) = (String::new(), String::new());
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Run {
                code: status.code().unwrap_or(-1),
                stdout: out,
                stderr: err,
            };
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("ipamctl {args:?} still blocked after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `flock LOCK sh -c 'echo held; read x'`: holds the lock until its stdin closes.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin ends `read`, the shell, and flock with it.
        drop(self.0.stdin.take());
        if self.0.wait().is_err() {
            // Already reaped or not waitable: make sure it is gone.
            let _ = self.0.kill();
        }
    }
}

#[test]
fn a_held_lock_fails_after_the_timeout_naming_the_holder() {
    let f = fixture();
    let lock = f.net().join("lock");
    let mut child = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo held; read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock(1) from util-linux");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n");
    let holder = Holder(child);
    let pid = holder.0.id();
    for args in [
        &["show", "net1"][..],
        &["list"],
        &["metrics"],
        &["release", "net1", "--ip", "10.1.0.2", "--dry-run"],
    ] {
        let mut full = vec!["--data-dir", "data", "--lock-timeout", "200ms"];
        full.extend_from_slice(args);
        let r = run_bounded(f.root(), &full);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(
            r.stderr
                .contains("timed out waiting for lock data/net1/lock"),
            "{args:?}: {}",
            r.stderr
        );
        if Path::new("/proc/locks").exists() {
            // The holder by PID and command line (issue 23 item 11).
            assert!(
                r.stderr.contains(&format!("(held by PID {pid}: flock ")),
                "{args:?}: {}",
                r.stderr
            );
        }
    }
    drop(holder);
    let r = f.run(&["show", "net1"]);
    assert_eq!(
        r.code, 1,
        "readable again (1: its damaged files); {}",
        r.stderr
    );
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let f = fixture();
    // Far more output than a pipe buffers: the writer must meet the closed end.
    let files: Vec<(String, String)> = (0..3000)
        .map(|i| {
            (
                format!("10.2.{}.{}", i / 250, i % 250 + 2),
                format!("{}\r\neth0", format!("{i:x}").repeat(16)),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    store(&f.data().join("big"), &refs);
    for args in [&["show", "big"][..], &["show", "big", "--json"]] {
        let mut child = Command::new(BIN)
            .args(["--data-dir", "data"])
            .args(args)
            .current_dir(f.root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is dropped: like `| head -1`.
        let out = child.wait_with_output().unwrap();
        assert!(!first.is_empty());
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn release_says_not_reserved_and_takes_id_prefixes() {
    let f = fixture();
    let id1 = "3f2a9c41e7d04b55aa10";
    let id2 = "3f2a9c41ffff0000bb20";
    let id3 = "77aa0011223344556677";
    store(
        &f.data().join("pfx"),
        &[
            ("10.6.0.2", &format!("{id1}\r\neth0")),
            ("10.6.0.3", &format!("{id2}\r\neth0")),
            ("10.6.0.4", &format!("{id3}\r\neth0")),
            ("10.6.0.5", &format!("{id3}\r\nnet1")),
        ],
    );
    let before = tree(f.root());
    let r = f.run(&["release", "pfx", "--ip", "10.6.0.99", "--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "not reserved: no reservation of 10.6.0.99 in network pfx\n",
    );
    let r = f.run(&["release", "pfx", "--container", "nosuch", "--yes", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(parse_json(&r.stdout)["planned"], json!([]));
    // Ambiguous: both candidates named, nothing changed.
    let r = f.run(&["release", "pfx", "--container", "3f2a9c41", "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("ambiguous prefix") && r.stderr.contains(id1) && r.stderr.contains(id2),
        "{}",
        r.stderr
    );
    // Too short to be taken as a prefix.
    let r = f.run(&["release", "pfx", "--container", "77aa", "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("shorter than 8"), "{}", r.stderr);
    assert_eq!(before, tree(f.root()));
    // A unique prefix of 8 or more stands for the full ID.
    let r = f.run(&["release", "pfx", "--container", "77aa0011", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
would remove 2 reservations of network pfx (dry run: nothing changed)
ADDRESS   CONTAINER             IFNAME   AGE  WHY
10.6.0.4  77aa0011223344556677  eth0    3h0m  selected
10.6.0.5  77aa0011223344556677  net1    3h0m  selected
",
    );
    let r = f.run(&["release", "pfx", "--container", "3f2a9c41e7", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!f.data().join("pfx/10.6.0.2").exists());
    assert!(f.data().join("pfx/10.6.0.3").exists());
}

/// The fixture's net1 with pods for c1 and c2 in a result cache.
fn pod_cache(f: &Fixture) {
    let res = f.root().join("results");
    cache_entry(
        &res,
        "net1",
        "c1",
        "eth0",
        Some(("shop", "web-0")),
        &["10.1.0.2/24", "2001:db8::2/120"],
    );
    cache_entry(
        &res,
        "net1",
        "c2",
        "eth0",
        Some(("kube-system", "dns-7f")),
        &["10.1.0.3/24", "2001:db8::3/120"],
    );
}

#[test]
fn show_names_pods_and_finds_one_reservation() {
    let f = fixture();
    pod_cache(&f);
    let show = |extra: &[&str]| {
        let mut args = vec![
            "show",
            "net1",
            "--config",
            "net1.conflist",
            "--results-dir",
            "results",
        ];
        args.extend_from_slice(extra);
        f.run(&args)
    };
    let r = show(&["--pod", "shop/web-0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let table = r.stdout.split_once("\n\n").unwrap().1;
    assert_text(
        table,
        "\
ADDRESS      CONTAINER  IFNAME  POD          AGE  PROBLEMS
10.1.0.2     c1         eth0    shop/web-0  3h0m
2001:db8::2  c1         eth0    shop/web-0  3h0m
2 of 10 reservations shown, 0 with problems
",
    );
    let r = show(&["--ip", "2001:db8::3", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(
        v["reservations"][0]["pod"],
        json!({"namespace": "kube-system", "name": "dns-7f"})
    );
    assert_eq!(v["reservations"].as_array().unwrap().len(), 1);
    assert_eq!(v["filter"]["ip"], "2001:db8::3");
    // Nothing found: exit 1.
    let r = show(&["--pod", "shop/web-1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("no reservation matches"), "{}", r.stdout);
    // Problems only, and age filters.
    let r = show(&["--problems"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("5 of 10 reservations shown, 5 with problems"),
        "{}",
        r.stdout
    );
    let r = show(&["--older-than", "1d"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("0 of 10 reservations shown"),
        "{}",
        r.stdout
    );
    let r = show(&["--older-than", "2h", "--json"]);
    assert_eq!(
        parse_json(&r.stdout)["reservations"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    // So do the plans of gc and release.
    std::fs::write(f.root().join("valid.txt"), "c2\nc3\nc4\nc5\nlegacy1\n").unwrap();
    let r = f.run(&[
        "gc",
        "net1",
        "--valid",
        "valid.txt",
        "--results-dir",
        "results",
        "--dry-run",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
would remove 4 reservations of network net1 (dry run: nothing changed)
ADDRESS      CONTAINER  IFNAME  POD          AGE  WHY
10.1.0.2     c1         eth0    shop/web-0  3h0m  not a valid attachment
10.1.0.5     -          -       -           3h0m  damaged file (empty)
10.1.0.6     -          -       -           3h0m  damaged file (not UTF-8)
2001:db8::2  c1         eth0    shop/web-0  3h0m  not a valid attachment
",
    );
    let r = f.run(&[
        "release",
        "net1",
        "--ip",
        "10.1.0.3",
        "--results-dir",
        "results",
        // The cache records c2: release would refuse it (lists.rs).
        "--force",
        "--dry-run",
        "--json",
    ]);
    let v = parse_json(&r.stdout);
    assert_eq!(
        v["planned"][0]["pod"],
        json!({"namespace": "kube-system", "name": "dns-7f"})
    );
    // leaks names pods too.
    let r = f.run(&["leaks", "net1", "--results-dir", "results", "--json"]);
    let v = parse_json(&r.stdout);
    assert_eq!(v["leaks"][0]["pod"], Value::Null);
}

#[test]
fn check_finds_cached_attachments_without_their_reservation() {
    let f = fixture();
    pod_cache(&f);
    let res = f.root().join("results");
    // c6's address has no file: the plugin would hand it out again.
    cache_entry(
        &res,
        "net1",
        "c6",
        "eth0",
        Some(("shop", "web-1")),
        &["10.1.0.7/24"],
    );
    // c7's cached address is held by c5: two pods, one address.
    cache_entry(&res, "net1", "c7", "eth0", None, &["10.1.0.21/24"]);
    // Another network's entry is not looked at.
    cache_entry(&res, "other", "k9", "eth0", None, &["10.1.0.8/24"]);
    let r = f.run(&[
        "check",
        "net1",
        "--config",
        "net1.conflist",
        "--results-dir",
        "results",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
network net1
checked 4 cached attachments (results) against 10 reservations

ADDRESS    FINDING         CONTAINER  IFNAME  POD         DETAIL
10.1.0.7   missing         c6         eth0    shop/web-1  cached result results/net1-c6-eth0 holds it, but no reservation file does: the plugin may hand it out again
10.1.0.21  other-owner     c7         eth0    -           reserved by c5 eth0: a duplicate-address risk
10.9.0.9   outside-ranges  c4         eth0    -           outside every configured range
3 findings
an other-owner finding may be the stale cache entry of a container that is gone (its address reclaimed by gc and handed out again): give --valid to skip those
",
    );
    let r = f.run(&["check", "net1", "--results-dir", "results", "--json"]);
    assert_eq!(r.code, 1);
    let v = parse_json(&r.stdout);
    assert_eq!(v["command"], "check");
    assert_eq!(v["rangesChecked"], false);
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["missing", "other-owner"]);
    // All consistent: exit 0.
    std::fs::remove_file(res.join("net1-c6-eth0")).unwrap();
    std::fs::remove_file(res.join("net1-c7-eth0")).unwrap();
    let r = f.run(&["check", "net1", "--results-dir", "results"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("no findings"), "{}", r.stdout);
}

#[test]
fn huge_capacities_are_powers_of_two_in_tables_and_strings_in_json() {
    let f = fixture();
    std::fs::write(
        f.root().join("v6.conflist"),
        json!({"cniVersion": "1.0.0", "name": "v6",
               "plugins": [{"type": "bridge", "ipam": {"type": "host-local",
                 "ranges": [[{"subnet": "2001:db8:6::/64"}], [{"subnet": "2001:db8:7::/48"}]]}}]})
        .to_string(),
    )
    .unwrap();
    store(&f.data().join("v6"), &[("2001:db8:6::2", "c1\r\neth0")]);
    let r = f.run(&["show", "v6", "--config", "v6.conflist"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sets: String = r
        .stdout
        .lines()
        .skip(2)
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_text(
        &sets,
        "\
SET  RANGES                                             GATEWAY        CAPACITY  RESERVED   FREE  USAGE  LAST RESERVED
  0  2001:db8:6::1-2001:db8:6:0:ffff:ffff:ffff:ffff     2001:db8:6::1     ~2^64         1  ~2^64   0.0%  -
  1  2001:db8:7::1-2001:db8:7:ffff:ffff:ffff:ffff:ffff  2001:db8:7::1     ~2^80         0  ~2^80   0.0%  -
",
    );
    let r = f.run(&["show", "v6", "--config", "v6.conflist", "--json"]);
    let v = parse_json(&r.stdout);
    assert_eq!(
        v["network"]["rangeSets"][0]["capacity"],
        "18446744073709551614"
    );
    assert_eq!(v["network"]["rangeSets"][0]["reserved"], 1);
    assert_eq!(v["network"]["rangeSets"][0]["free"], "18446744073709551613");
}

#[test]
fn container_ids_are_short_on_a_terminal() {
    if !Path::new("/usr/bin/script").exists() {
        skip("script(1) from util-linux missing");
        return;
    }
    let f = fixture();
    let id = "0123456789abcdef0123456789abcdef";
    store(
        &f.data().join("tty"),
        &[("10.5.0.2", &format!("{id}\r\neth0"))],
    );
    let on_tty = |extra: &str| {
        let out = Command::new("script")
            .args([
                "-qec",
                &format!("{BIN} --data-dir data show tty {extra}"),
                "/dev/null",
            ])
            .current_dir(f.root())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };
    let short = on_tty("");
    assert!(short.contains("0123456789ab "), "{short}");
    assert!(!short.contains(id), "{short}");
    let full = on_tty("--no-trunc");
    assert!(full.contains(id), "{full}");
    // Not a terminal: always full.
    assert!(f.run(&["show", "tty"]).stdout.contains(id));
}
