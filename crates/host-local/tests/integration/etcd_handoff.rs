//! `host-local` carries only the disk store and hands etcd-store calls to
//! `host-local-etcd` beside it (`host_local::delegate`). The other etcd
//! suites go through that hand-over; these check the split itself. No etcd
//! member is needed: an endpoint nobody listens on is enough to tell which
//! executable answered (the etcd store's "try again later", code 11).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::common::*;

fn etcd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_host-local-etcd"))
}

/// An ADD on an etcd-store network whose only endpoint refuses connections.
fn add_on_dead_etcd(bin: &Path, data: &Path) -> Output {
    Net::new(bin, "handoff", data, json!({"subnet": "10.23.0.0/24"}))
        .with_store(json!({"type": "etcd", "endpoints": ["http://127.0.0.1:9"], "node": "n1", "timeout": "1s"}))
        .add("c1", "eth0")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn host_local_links_no_etcd_client() {
    // The gRPC service paths of etcd's API are in any binary with its client.
    let needle = b"etcdserverpb.KV";
    assert!(contains(&std::fs::read(etcd_bin()).unwrap(), needle));
    assert!(
        !contains(&std::fs::read(our_bin()).unwrap(), needle),
        "host-local must not link the etcd client: every disk-store call would map it"
    );
}

#[test]
fn etcd_calls_reach_host_local_etcd_also_through_a_symlink() {
    let data = tempfile::tempdir().unwrap();
    let direct = add_on_dead_etcd(&our_bin(), data.path());
    assert_eq!(direct.err_code(), Some(11), "{direct:?}");
    // As containerd's /opt/cni/bin/host-local -> /usr/lib/cni/host-local:
    // the sibling is looked up beside the resolved executable.
    let bin_dir = tempfile::tempdir().unwrap();
    let link = bin_dir.path().join("host-local");
    std::os::unix::fs::symlink(our_bin(), &link).unwrap();
    let linked = add_on_dead_etcd(&link, data.path());
    assert_eq!(linked.err_code(), Some(11), "{linked:?}");
    assert_eq!(dir_names(data.path()), Vec::<String>::new());
}

#[test]
fn without_host_local_etcd_an_etcd_config_is_refused_and_disk_still_works() {
    let bin_dir = tempfile::tempdir().unwrap();
    let alone = bin_dir.path().join("host-local");
    std::fs::copy(our_bin(), &alone).unwrap();
    let data = tempfile::tempdir().unwrap();
    let o = add_on_dead_etcd(&alone, data.path());
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.err_code(), Some(7), "{o:?}");
    let msg = o.msg();
    let missing = bin_dir.path().join("host-local-etcd");
    assert!(
        msg.contains("ipam.store.type") && msg.contains(&missing.display().to_string()),
        "{msg}"
    );
    assert_eq!(dir_names(data.path()), Vec::<String>::new());
    // The same executable serves the disk store on its own.
    let o = Net::new(
        &alone,
        "disk",
        data.path(),
        json!({"subnet": "10.24.0.0/24"}),
    )
    .add("c1", "eth0");
    assert_eq!(o.ips(), vec!["10.24.0.2"], "{o:?}");
}
