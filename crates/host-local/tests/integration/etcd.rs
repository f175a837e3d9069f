//! The etcd store against real etcd members started by the tests.

use crate::etcd_util::{etcd_installed, Cluster};

/// Whether etcd is installed; otherwise a loud skip (a panic in CI).
pub fn etcd_or_skip(what: &str) -> bool {
    if etcd_installed() {
        return true;
    }
    if crate::common::ci_required() {
        panic!("{what}: etcd missing but IPAM_REQUIRE_ALL=1 (apt-get install etcd-server etcd-client)");
    }
    eprintln!("SKIPPED {what}: etcd not installed (apt-get install etcd-server etcd-client)");
    false
}

#[test]
fn harness_restarts_a_killed_member() {
    if !etcd_or_skip("etcd harness") {
        return;
    }
    let mut c = Cluster::start(3);
    let (ok, out) = c.etcdctl(&["put", "/etcd-test/k", "v"]);
    assert!(ok, "{out}");
    c.kill(0);
    let (ok, out) = c.etcdctl(&["get", "/etcd-test/k", "--print-value-only"]);
    assert!(ok && out.contains('v'), "{out}");
    c.restart(0);
    c.wait_healthy(0);
    assert!(c.is_running(0));
}
