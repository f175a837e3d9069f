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

/// Item 5: while the lock is held, ipamctl waits for it in the kernel's
/// queue of flock waiters, like the plugins (/proc/locks lists it as
/// blocked), so it is woken when the lock is released. A poller of a
/// non-blocking lock is never in that queue, and under churn only wins when
/// an attempt falls between one holder's release and the next waiter's
/// wake-up.
#[test]
fn reads_wait_for_the_lock_in_the_kernels_queue() {
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        skip("no /proc/locks");
        return;
    };
    drop(locks);
    let f = fixture();
    let net = f.data().join("held");
    store(&net, &[("10.36.0.2", "c1\r\neth0")]);
    let lock = std::fs::File::open(net.join("lock")).unwrap();
    lock.lock().unwrap();
    let ino = lock.metadata().unwrap().ino();
    let child = Command::new(BIN)
        .args([
            "--data-dir",
            "data",
            "--lock-timeout",
            "60s",
            "show",
            "held",
            "--json",
        ])
        .current_dir(f.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // `N: -> FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<ino> 0 EOF`
    let queued = |text: &str| {
        text.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1) == Some(&"->")
                && w.get(2) == Some(&"FLOCK")
                && w.get(5) == Some(&pid.as_str())
                && w.get(6).is_some_and(|d| d.ends_with(&format!(":{ino}")))
        })
    };
    let start = Instant::now();
    let mut seen = false;
    // A bound, not a measurement: ipamctl queues within milliseconds.
    while start.elapsed() < Duration::from_secs(30) {
        if queued(&std::fs::read_to_string("/proc/locks").unwrap()) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(
        seen,
        "ipamctl (PID {pid}) never waited in the kernel's queue for the lock"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        parse_json(&String::from_utf8(out.stdout).unwrap())["network"]["reservations"],
        1
    );
}

/// Item 5, the situation of the issue: under ADD/DEL churn (the lock taken
/// and released by one process after another, always someone waiting)
/// every read gets its turn.
#[test]
fn reads_get_the_lock_under_churn() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let f = fixture();
    let net = f.data().join("busy");
    store(&net, &[("10.35.0.2", "c1\r\neth0")]);
    let stop = Arc::new(AtomicBool::new(false));
    // Four "plugins", each taking the lock (blocking, as the plugins do)
    // on its own open file, holding it 20ms, and coming back 2ms after.
    let churn: Vec<_> = (0..4)
        .map(|_| {
            let (stop, lock) = (Arc::clone(&stop), net.join("lock"));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let file = std::fs::File::open(&lock).unwrap();
                    file.lock().unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    drop(file);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    // Generous bound: it only keeps a broken wait from hanging the test.
    let results: Vec<Run> = (0..3)
        .map(|_| f.run(&["--lock-timeout", "20s", "show", "busy", "--json"]))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        t.join().unwrap();
    }
    for r in results {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(parse_json(&r.stdout)["network"]["reservations"], 1);
    }
}

/// Item 6: a network whose subnet has host bits set and a file that is not
/// JSON are reported by list (a row, exit 2), metrics (a sample naming the
/// file, exit 2) and show, not only warned about on stderr.
#[test]
fn unusable_configurations_are_reported_not_skipped() {
    let f = fixture();
    let d = f.root().join("net.d");
    std::fs::create_dir_all(&d).unwrap();
    conf(
        &d.join("10-ok.conflist"),
        "ok",
        None,
        json!([[{"subnet": "10.41.0.0/29"}]]),
    );
    conf(
        &d.join("20-hostbits.conflist"),
        "hostbits",
        None,
        json!([[{"subnet": "10.40.0.5/24"}]]),
    );
    std::fs::write(d.join("30-junk.conflist"), "nope").unwrap();
    store(&f.data().join("hostbits"), &[("10.40.0.7", "h1\r\neth0")]);
    let hostbits =
        "configuration net.d/20-hostbits.conflist: invalid range set 0: Network has host bits \
                    set. For a subnet mask of length 24 the network address is 10.40.0.0 \
                    (ipam.ranges[0][0].subnet: 10.40.0.5/24)";

    let r = f.run(&["list", "--config", "net.d"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let rows: Vec<&str> = r.stdout.lines().collect();
    assert!(
        rows.iter().any(|l| l.starts_with("hostbits")
            && l.ends_with(&format!("config error: {hostbits} (1 reserved)"))),
        "{}",
        r.stdout
    );
    assert!(
        rows.iter()
            .any(|l| l.starts_with("config error: net.d/30-junk.conflist: not JSON")),
        "{}",
        r.stdout
    );
    let r = f.run(&["list", "--config", "net.d", "--json"]);
    assert_eq!(r.code, 2);
    let v = parse_json(&r.stdout);
    let errors = v["configErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(errors[0]["file"], "net.d/20-hostbits.conflist");
    assert_eq!(errors[0]["network"], "hostbits");
    assert_eq!(errors[1]["network"], Value::Null);
    assert_eq!(listed(&v, "hostbits")["configError"], hostbits);
    assert_eq!(listed(&v, "hostbits")["reservations"], 1);
    assert_eq!(listed(&v, "ok")["configError"], Value::Null);

    let r = f.run(&["metrics", "--config", "net.d"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for line in [
        "ipamctl_config_error{file=\"net.d/20-hostbits.conflist\",network=\"hostbits\"} 1\n",
        "ipamctl_config_error{file=\"net.d/30-junk.conflist\",network=\"\"} 1\n",
    ] {
        assert!(r.stdout.contains(line), "{line} missing from\n{}", r.stdout);
    }

    let r = f.run(&["show", "hostbits", "--config", "net.d"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "config error: {hostbits}; every ADD on this network fails\n"
        )),
        "{}",
        r.stdout
    );
}

/// Item 7: files that are no reservation, lock or cursor (an interrupted
/// write's temporary, an address with a suffix, an address under a
/// non-canonical name beside its canonical one) are reported by show, list
/// and metrics, and not counted as reservations.
#[test]
fn stray_files_are_reported() {
    let f = fixture();
    let net = f.data().join("strays");
    store(
        &net,
        &[
            ("10.22.2.203", "c1\r\neth0"),
            ("fd00:22::99", "c1\r\neth0"),
            (".tmp-4711", "10.22.2.9"),
            ("10.22.2.204.tmp", "c2\r\neth0"),
            ("fd00:22:0:0::99", "c3\r\neth0"),
        ],
    );
    std::fs::write(net.join("last_reserved_ip.0"), "10.22.2.203").unwrap();
    let r = f.run(&["show", "strays"]);
    assert_eq!(r.code, 1, "strays are findings; {}", r.stderr);
    assert_text(
        r.stdout.split_once("2 reservations, 0 with problems\n").unwrap().1,
        "
3 stray files in data/strays (no reservation, lock or cursor; not counted):
FILE             WHY
.tmp-4711        a temporary file, left by an interrupted write; not a reservation (safe to delete while no plugin runs)
10.22.2.204.tmp  a temporary file, left by an interrupted write; not a reservation (safe to delete while no plugin runs)
fd00:22:0:0::99  not the canonical name of fd00:22::99, beside fd00:22::99: the plugins reserve and look up fd00:22::99, so this file reserves nothing
",
    );
    let v = parse_json(&f.run(&["show", "strays", "--json"]).stdout);
    assert_eq!(v["network"]["reservations"], 2);
    let names: Vec<&str> = v["network"]["strays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [".tmp-4711", "10.22.2.204.tmp", "fd00:22:0:0::99"]);
    let r = f.run(&["list"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("strays") && l.ends_with("3 stray files (not counted)")),
        "{}",
        r.stdout
    );
    let r = f.run(&["metrics"]);
    assert!(
        r.stdout
            .contains("ipamctl_stray_files{network=\"strays\"} 3\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("ipamctl_reservations{network=\"strays\"} 2\n"),
        "{}",
        r.stdout
    );
}

/// Item 9: `show --ip` without a network searches every network; a lookup
/// that finds nothing says what the address is (gateway, excluded, outside
/// every range, free), and `--pod` says pod names come from libcni's cache.
#[test]
fn show_ip_searches_every_network_and_no_match_says_why() {
    let f = fixture();
    let d = f.root().join("net.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("10-net1.conflist"), CONFLIST).unwrap();
    conf(
        &d.join("20-side.conflist"),
        "side",
        None,
        json!([[{"subnet": "10.37.0.0/29"}]]),
    );
    store(&f.data().join("side"), &[("10.37.0.2", "s1\r\nnet1")]);
    // Found in one network (the fixture's `other` has no configuration).
    let r = f.run(&["show", "--ip", "10.37.0.2", "--config", "net.d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_text(
        &r.stdout,
        "\
ADDRESS    NETWORK  CONTAINER  IFNAME  POD   AGE  PROBLEMS
10.37.0.2  side     s1         net1    -    3h0m
reserved in 1 of the 3 networks searched

NETWORK  ADDRESS IS      DETAIL
other    unknown         not reserved; without --config it is not known whether network other hands it out
net1     outside-ranges  outside every configured range of network net1
",
    );
    let v = parse_json(
        &f.run(&["show", "--ip", "10.37.0.2", "--config", "net.d", "--json"])
            .stdout,
    );
    assert_eq!(v["command"], "show");
    assert_eq!(v["found"][0]["network"], "side");
    assert_eq!(v["found"][0]["containerId"], "s1");
    assert_eq!(v["networks"], 3);
    // Nobody holds it: what it is to each network.
    let r = f.run(&["show", "--ip", "10.1.0.22", "--config", "net.d", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = parse_json(&r.stdout);
    assert_eq!(v["found"], json!([]));
    let state = |net: &str| {
        v["notFound"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["network"] == net)
            .map(|x| x["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state("net1").as_deref(), Some("excluded"));
    assert_eq!(state("side").as_deref(), Some("outside-ranges"));
    // With a network: the reason for no match.
    for (ip, why) in [
        ("10.37.0.1", "10.37.0.1 is not reserved: the gateway of range 10.37.0.1-10.37.0.6 in range set 0: never handed out"),
        ("10.37.0.5", "10.37.0.5 is not reserved: free in range set 0 (10.37.0.1-10.37.0.6): the plugin may hand it out"),
        ("10.99.0.5", "10.99.0.5 is not reserved: outside every configured range of network side"),
    ] {
        let r = f.run(&["show", "side", "--ip", ip, "--config", "net.d"]);
        assert_eq!(r.code, 1, "{ip}: {}", r.stderr);
        assert!(r.stdout.contains(&format!("no reservation matches: {why}\n")), "{ip}: {}", r.stdout);
    }
    let v = parse_json(
        &f.run(&[
            "show",
            "side",
            "--ip",
            "10.37.0.5",
            "--config",
            "net.d",
            "--json",
        ])
        .stdout,
    );
    assert_eq!(v["lookup"]["state"], "free");
    assert!(
        v.get("address").is_none(),
        "`address` marks reservation objects only"
    );
    // --pod: where pod names come from.
    cache_entry(
        &f.root().join("results"),
        "side",
        "s1",
        "net1",
        Some(("shop", "web-0")),
        &["10.37.0.2/29"],
    );
    let r = f.run(&[
        "show",
        "side",
        "--pod",
        "shop/web-9",
        "--results-dir",
        "results",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "no reservation matches: pod shop/web-9 has no entry for network side in libcni's result cache results (pod names come from that cache only)\n"
        ),
        "{}",
        r.stdout
    );
    // A network is still required for everything but --ip.
    let r = f.run(&["show", "--problems"]);
    assert_eq!(r.code, 2);
}
