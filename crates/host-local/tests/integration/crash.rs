//! Storage failures through the real binary: a full filesystem (a small
//! tmpfs), a nearly full one at every page count where one of the writes of
//! an ADD fails, and a read-only data directory. Whatever fails, an ADD
//! either reports a result with its reservations in place, or fails (code 5)
//! and leaves the network directory byte-for-byte as it was.
//!
//! Needs root to mount: a loud skip otherwise (a panic under IPAM_REQUIRE_ALL=1).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::common::*;

const NET: &str = "crashnet";

/// The dual-stack network under test with its data directory at `data`.
fn net_on(data: &Path) -> Net {
    our_net(
        NET,
        data,
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/120"}]]}),
    )
}

/// Fills the filesystem at `dir` until ENOSPC, then gives back `pages` pages.
fn fill(dir: &Path, pages: u64) {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [0u8; 4096];
    let mut len = 0u64;
    loop {
        match f.write(&block) {
            Ok(4096) => len += 4096,
            Ok(n) => {
                // A partial page at the very end: trim back to a page boundary.
                f.set_len(len).unwrap();
                let _ = n;
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", path.display()),
        }
    }
    assert!(
        len >= pages * 4096,
        "filler too small to give back {pages} pages"
    );
    f.set_len(len - pages * 4096).unwrap();
    f.sync_all().unwrap();
}

type Snapshot = std::collections::BTreeMap<String, Vec<u8>>;

/// The whole data directory (network directory and index) but the filler.
fn store_snapshot(root: &Path) -> Snapshot {
    let mut s = snapshot_dir(root);
    s.remove("filler");
    s
}

/// Panics naming only the entries that differ.
fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    let show =
        |v: Option<&Vec<u8>>| v.map(|b| String::from_utf8_lossy(b).escape_debug().to_string());
    let diff: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {:?} -> {:?}", show(before.get(k)), show(after.get(k))))
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: the store changed:\n{}",
        diff.join("\n")
    );
}

#[test]
fn full_filesystem_add_fails_cleanly_and_del_still_frees() {
    if !can_mount_or_skip("crash::full_filesystem_add_fails_cleanly_and_del_still_frees") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let _g = MountGuard::tmpfs(data, "size=64k,mode=0755").unwrap();
    let o = net_on(data).add("c1", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    let c1 = o.ips();
    let o = net_on(data).add("c2", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    fill(data, 0);

    let before = store_snapshot(data);
    let o = net_on(data).add("c3", "eth0");
    assert_eq!(o.err_code(), Some(5), "ADD on a full filesystem: {o:?}");
    let m = o.msg();
    assert!(m.contains("No space left on device"), "{m}");
    assert!(
        m.contains("reservation") && m.contains(NET),
        "the message names the reservation write that failed, not a side effect: {m}"
    );
    assert_unchanged(&before, &store_snapshot(data), "a failed ADD");
    let o = net_on(data).status();
    assert_eq!(o.err_code(), Some(50), "STATUS on a full filesystem: {o:?}");

    // DEL must work on a full filesystem: it is how space comes back.
    let o = net_on(data).del("c1", "eth0");
    assert_eq!(o.code, 0, "DEL on a full filesystem: {o:?}");
    for ip in &c1 {
        assert!(!data.join(NET).join(ip).exists(), "{ip} released");
    }

    // Also when the index is stale (the reference, or an operator, changed
    // the directory behind its back) and cannot be rebuilt for lack of space.
    std::fs::remove_file(data.join("filler")).unwrap();
    std::fs::write(data.join(NET).join("10.0.0.77"), b"legacy-ctr").unwrap();
    fill(data, 0);
    let o = net_on(data).gc(&[("c2", "eth0")]);
    assert_eq!(o.code, 0, "GC on a full filesystem, stale index: {o:?}");
    assert!(
        !data.join(NET).join("10.0.0.77").exists(),
        "GC freed the legacy file"
    );
    // An empty file needs no page: it makes the index stale again.
    std::fs::write(data.join(NET).join("10.0.0.78"), b"").unwrap();
    let o = net_on(data).del("c2", "eth0");
    assert_eq!(o.code, 0, "DEL on a full filesystem, stale index: {o:?}");

    // With the space back, everything works again.
    std::fs::remove_file(data.join("filler")).unwrap();
    std::fs::remove_file(data.join(NET).join("10.0.0.78")).unwrap();
    let o = net_on(data).add("c3", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(net_on(data).del("c3", "eth0").code, 0);
    let names = dir_names(&data.join(NET));
    assert_eq!(names, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
}

/// Gives back 0..=8 pages before an ADD, so that each of its writes (first
/// reservation, second reservation, cursors, index bucket, index stamp) is
/// in turn the one that runs out of space. Either the ADD reports its result
/// and holds both addresses, or it fails with code 5 and the network
/// directory is unchanged; and the store stays consistent afterwards.
#[test]
fn nearly_full_filesystem_add_is_all_or_nothing() {
    if !can_mount_or_skip("crash::nearly_full_filesystem_add_is_all_or_nothing") {
        return;
    }
    let mut outcomes = Vec::new();
    for pages in 0..=8u64 {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        let _g = MountGuard::tmpfs(data, "size=64k,mode=0755").unwrap();
        let net = data.join(NET);
        assert_eq!(net_on(data).add("first", "eth0").code, 0);
        fill(data, pages);
        let before = store_snapshot(&net);
        let o = net_on(data).add("second", "eth0");
        let after = store_snapshot(&net);
        match o.code {
            0 => {
                let ips = o.ips();
                assert_eq!(ips.len(), 2);
                for ip in &ips {
                    assert_eq!(
                        after.get(ip).map(Vec::as_slice),
                        Some(&b"second\r\neth0"[..]),
                        "{pages} pages: ADD reported {ip} but it is not reserved: {after:?}"
                    );
                }
                outcomes.push(format!("{pages}: ok"));
            }
            _ => {
                assert_eq!(o.err_code(), Some(5), "{pages} pages: {o:?}");
                assert_unchanged(&before, &after, &format!("{pages} pages, failed ADD {o:?}"));
                outcomes.push(format!("{pages}: {}", o.msg()));
            }
        }
        // Consistency once space is back: the index agrees with the directory.
        std::fs::remove_file(data.join("filler")).unwrap();
        let again = net_on(data).add("second", "eth0");
        if o.code == 0 {
            assert_eq!(again.err_code(), Some(102), "{pages} pages: {again:?}");
        } else {
            assert_eq!(again.code, 0, "{pages} pages: {again:?}");
        }
        assert_eq!(net_on(data).del("second", "eth0").code, 0);
        assert_eq!(net_on(data).del("first", "eth0").code, 0);
        let left: Vec<String> = dir_names(&net)
            .into_iter()
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        assert!(left.is_empty(), "{pages} pages: DEL left {left:?}");
    }
    eprintln!("nearly full outcomes: {outcomes:#?}");
    assert!(outcomes[0].contains("No space"), "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| o.ends_with(": ok")),
        "with enough pages the ADD succeeds: {outcomes:?}"
    );
}

#[test]
fn read_only_data_dir_add_and_del_fail_and_change_nothing() {
    if !can_mount_or_skip("crash::read_only_data_dir_add_and_del_fail_and_change_nothing") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let prepared = d.path().join("prepared");
    std::fs::create_dir(&prepared).unwrap();
    let o = net_on(&prepared).add("c1", "eth0");
    assert_eq!(o.code, 0, "{o:?}");

    for stale in [false, true] {
        if stale {
            // Changed behind the index's back before going read-only.
            std::fs::write(prepared.join(NET).join("10.0.0.99"), b"legacy\r\neth0").unwrap();
        }
        let mnt = d.path().join(format!("ro-{stale}"));
        std::fs::create_dir(&mnt).unwrap();
        let _g = MountGuard::bind_ro(&prepared, &mnt).unwrap();
        let before = store_snapshot(&mnt);

        let o = net_on(&mnt).add("c2", "eth0");
        assert_eq!(o.err_code(), Some(5), "stale={stale}: ADD on ro: {o:?}");
        let m = o.msg();
        assert!(m.contains("Read-only file system"), "{m}");
        assert!(
            m.contains("reservation") && !m.contains("stamp"),
            "stale={stale}: names the reservation write, not the index: {m}"
        );
        let o = net_on(&mnt).del("c1", "eth0");
        assert_eq!(o.err_code(), Some(5), "stale={stale}: DEL on ro: {o:?}");
        assert!(o.msg().contains("Read-only file system"), "{o:?}");
        // DEL of something the store does not hold has nothing to write.
        let o = net_on(&mnt).del("never-added", "eth0");
        assert_eq!(o.code, 0, "stale={stale}: DEL of unknown on ro: {o:?}");
        let o = net_on(&mnt).gc(&[]);
        assert_eq!(o.err_code(), Some(5), "stale={stale}: GC on ro: {o:?}");
        assert_eq!(net_on(&mnt).status().err_code(), Some(50), "stale={stale}");
        assert_unchanged(&before, &store_snapshot(&mnt), &format!("stale={stale}"));
    }

    // A read-only data directory without the network directory yet.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mnt = d.path().join("ro-empty");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard::bind_ro(&empty, &mnt).unwrap();
    let o = net_on(&mnt).add("c1", "eth0");
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert!(o.msg().contains("Read-only file system"), "{o:?}");
    assert!(dir_names(&mnt).is_empty());

    // The prepared store is intact and writable where it is not mounted ro.
    assert_eq!(net_on(&prepared).del("c1", "eth0").code, 0);
}

#[test]
fn tmpfs_remounted_read_only() {
    if !can_mount_or_skip("crash::tmpfs_remounted_read_only") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let g = MountGuard::tmpfs(data, "size=256k,mode=0755").unwrap();
    assert_eq!(net_on(data).add("c1", "eth0").code, 0);
    g.remount_ro().unwrap();
    let before = store_snapshot(data);
    assert_eq!(net_on(data).add("c2", "eth0").err_code(), Some(5));
    assert_eq!(net_on(data).del("c1", "eth0").err_code(), Some(5));
    assert_eq!(net_on(data).status().err_code(), Some(50));
    assert_unchanged(&before, &store_snapshot(data), "remounted ro");
}

/// The network directory on a filesystem of its own (a mount at
/// `<dataDir>/<network>`): the index lives on the data directory's
/// filesystem, so temporaries made there cannot be renamed or linked into
/// the network directory (EXDEV). Round robin must still work.
#[test]
fn network_dir_on_its_own_filesystem_keeps_round_robin() {
    if !can_mount_or_skip("crash::network_dir_on_its_own_filesystem_keeps_round_robin") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let net = data.join(NET);
    std::fs::create_dir(&net).unwrap();
    let _g = MountGuard::tmpfs(&net, "size=1m,mode=0755").unwrap();
    let first = net_on(data).add("c1", "eth0").ips();
    let second = net_on(data).add("c2", "eth0").ips();
    assert_eq!(first, ["10.0.0.2", "2001:db8::2"]);
    assert_eq!(second, ["10.0.0.3", "2001:db8::3"]);
    assert_eq!(net_on(data).del("c2", "eth0").code, 0);
    let third = net_on(data).add("c3", "eth0").ips();
    assert_eq!(
        third,
        ["10.0.0.4", "2001:db8::4"],
        "round robin continues after the last address handed out"
    );
    assert_eq!(
        std::fs::read_to_string(net.join("last_reserved_ip.0"))
            .ok()
            .as_deref(),
        Some("10.0.0.4")
    );
    assert_eq!(
        dir_names(&net),
        [
            "10.0.0.2",
            "10.0.0.4",
            "2001:db8::2",
            "2001:db8::4",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ],
        "nothing stray in the network directory"
    );
}
