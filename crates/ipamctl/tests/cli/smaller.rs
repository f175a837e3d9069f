//! The third round (issue 23), item 11: the smaller things an operator
//! trips over. Through the real binary. (The lock holder's command line is
//! checked with the held lock in guards.rs.)

use std::path::Path;

use crate::common::*;

/// SCHEMA.md ships with the binary (`ipamctl schema`, and in the .deb).
#[test]
fn schema_is_shipped() {
    let r = run_in(Path::new("."), &["schema"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SCHEMA.md")).unwrap();
    assert_eq!(r.stdout, file);
    let cargo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../host-local/Cargo.toml"
    ))
    .unwrap();
    assert!(
        cargo.contains(
            r#"["../ipamctl/SCHEMA.md", "usr/share/doc/host-local-rs/SCHEMA.md", "644"]"#
        ),
        "the .deb's assets lack SCHEMA.md"
    );
}

/// The man page has FILES, ENVIRONMENT, SEE ALSO and every metric `metrics` prints.
#[test]
fn man_page_has_files_environment_see_also_and_the_metrics() {
    let r = run_in(Path::new("."), &["man"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let page = r.stdout;
    for section in [
        ".SH FILES\n",
        ".SH ENVIRONMENT\n",
        ".SH METRICS\n",
        ".SH \"SEE ALSO\"\n",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(page.contains("\\fBNO_COLOR\\fR"));
    assert!(page.contains("/var/lib/cni/results/"));
    let f = fixture();
    let metrics = f.run(&["metrics", "--config", "net1.conflist"]).stdout;
    let names: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
        .collect();
    assert!(names.len() >= 12, "{metrics}");
    for n in names {
        let roff = n.replace('-', "\\-");
        assert!(
            page.contains(&format!("\\fB{roff}\\fR")),
            "metric {n} not in the man page"
        );
    }
}

/// `--results-dir` is a global option: list and metrics take it too.
#[test]
fn every_command_takes_results_dir() {
    let f = fixture();
    std::fs::create_dir_all(f.root().join("results")).unwrap();
    for cmd in [&["list"][..], &["metrics"], &["show", "net1"]] {
        let mut args = cmd.to_vec();
        args.extend(["--results-dir", "results"]);
        let r = f.run(&args);
        assert_ne!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let r = f.run(&["--results-dir", "results", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Go's compound durations, as Go programs print them.
#[test]
fn lock_timeout_takes_go_durations() {
    let f = fixture();
    for d in ["1h0m", "1h0m0s", "1m30s", "2.5s", "500ms"] {
        let r = f.run(&["--lock-timeout", d, "list"]);
        assert_eq!(r.code, 0, "{d}: {}", r.stderr);
    }
    let r = f.run(&["--lock-timeout", "1x", "list"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown unit \"x\""), "{}", r.stderr);
}

/// A mistyped network name gets a suggestion.
#[test]
fn a_mistyped_network_gets_a_suggestion() {
    let f = fixture();
    let r = f.run(&["show", "nte1"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("network directory data/nte1: does not exist (no store for network nte1); did you mean net1?"),
        "{}",
        r.stderr
    );
    let r = f.run(&["leaks", "Other", "--valid", "-"]);
    assert!(r.stderr.contains("did you mean other?"), "{}", r.stderr);
    let r = f.run(&["show", "zzzzzz"]);
    assert!(r.stderr.contains("; networks: net1, other"), "{}", r.stderr);
    let r = f.run(&["show", "nte1", "--config", "net1.conflist"]);
    assert!(
        r.stderr.contains(
            "no host-local configuration for network nte1 in net1.conflist; did you mean net1?"
        ),
        "{}",
        r.stderr
    );
}

/// `--cri` takes the runtime's endpoint as kubelet does; an endpoint that
/// does not answer is an error naming it (the CRI runs themselves are in
/// host-local's integration suite, against a private containerd:
/// `cri_ipamctl`).
#[test]
fn cri_endpoints_that_do_not_answer_are_errors_naming_them() {
    let f = fixture();
    std::fs::create_dir_all(f.root().join("results")).unwrap();
    for cmd in [
        &["leaks", "net1"][..],
        &["gc", "net1", "--dry-run"],
        // An empty result cache: check reads it beside the runtime (the
        // machine may have none at /var/lib/cni/results).
        &["check", "net1", "--results-dir", "results"],
    ] {
        let mut args = cmd.to_vec();
        args.extend([
            "--cri",
            "unix:///nonexistent/cri.sock",
            "--cri-timeout",
            "2s",
        ]);
        let r = f.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(
            r.stderr.contains("CRI unix:///nonexistent/cri.sock"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = f.run(&["leaks", "net1", "--cri", "tcp://127.0.0.1:1"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("expected unix:///path/to/socket"),
        "{}",
        r.stderr
    );
    let r = f.run(&[
        "leaks",
        "net1",
        "--cri",
        "unix:///x.sock",
        "--valid",
        "v.txt",
    ]);
    assert_eq!(r.code, 2, "--cri and --valid exclude each other");
    let r = f.run(&["gc", "net1", "--dry-run"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("give --valid FILE, --cri URL or --from-report FILE"),
        "{}",
        r.stderr
    );
}
