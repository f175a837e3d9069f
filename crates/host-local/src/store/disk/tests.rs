//! The disk store's own tests; the trait's contract is `conformance`.

use std::path::Path;

use super::*;
use crate::error::StoreError;
use crate::store::conformance::{self, reserve};
use crate::store::{Attachment, Entry, Owner, Pick};

fn att(id: &str, ifname: &str) -> Attachment {
    Attachment::parse(id, ifname).unwrap()
}

fn store(dir: &Path) -> DiskStore {
    DiskStore::new(dir, "net")
}

/// The sorted file names of a directory.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn pick(ip: &str, set: usize) -> Pick {
    Pick {
        ip: ip.parse().unwrap(),
        set_index: set,
    }
}

fn disk_stores() -> Option<conformance::Factory> {
    Some(conformance::disk_stores(tempfile::tempdir().unwrap()))
}

mod conformance_suite {
    crate::conformance_tests!(super::disk_stores);
}

#[test]
fn reserve_writes_reference_layout() {
    let d = tempfile::tempdir().unwrap();
    let mut st = store(d.path());
    {
        let mut s = st.session().unwrap();
        s.commit(
            &att("c1", "eth0"),
            &[pick("10.0.0.2", 0), pick("2001:db8::2", 1)],
        )
        .unwrap()
        .finish()
        .unwrap();
    }
    let net = d.path().join("net");
    assert_eq!(std::fs::read(net.join("10.0.0.2")).unwrap(), b"c1\r\neth0");
    assert_eq!(
        std::fs::read(net.join("2001:db8::2")).unwrap(),
        b"c1\r\neth0"
    );
    assert_eq!(
        std::fs::read_to_string(net.join("last_reserved_ip.0")).unwrap(),
        "10.0.0.2"
    );
    assert_eq!(
        std::fs::read_to_string(net.join("last_reserved_ip.1")).unwrap(),
        "2001:db8::2"
    );
    assert_eq!(
        names_in(&net),
        [
            "10.0.0.2",
            "2001:db8::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(net.join("10.0.0.2"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn cursor_is_replaced_by_rename_through_a_spare() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let mut st = store(d.path());
    let net = d.path().join("net");
    let cursor = net.join("last_reserved_ip.0");
    let mut s = st.session().unwrap();
    for (i, ip) in ["10.0.0.2", "10.0.0.10", "10.0.0.9"].iter().enumerate() {
        let before = std::fs::metadata(&cursor).ok().map(|m| m.ino());
        s.commit(&att(&format!("c{i}"), "eth0"), &[pick(ip, 0)])
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(std::fs::read_to_string(&cursor).unwrap(), *ip);
        let m = std::fs::metadata(&cursor).unwrap();
        assert_eq!(m.nlink(), 1);
        assert_ne!(
            Some(m.ino()),
            before,
            "a new inode: replaced, not rewritten"
        );
    }
    // The reference rewrites the cursor in place; we still replace it.
    std::fs::write(&cursor, "10.0.0.50").unwrap();
    assert_eq!(s.cursor(0).unwrap(), Some("10.0.0.50".parse().unwrap()));
    reserve(&mut *s, &att("c9", "eth0"), "10.0.0.51");
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), "10.0.0.51");
    assert_eq!(
        names_in(&net),
        [
            "10.0.0.10",
            "10.0.0.2",
            "10.0.0.51",
            "10.0.0.9",
            "last_reserved_ip.0",
            "lock"
        ]
    );
}

#[test]
fn reserve_is_all_or_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut st = store(d.path());
    let mut s = st.session().unwrap();
    reserve(&mut *s, &att("c1", "eth0"), "10.0.0.3");
    let e = s
        .commit(
            &att("c2", "eth0"),
            &[pick("10.0.0.2", 0), pick("10.0.0.3", 1)],
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert!(s.owner_of("10.0.0.2".parse().unwrap()).unwrap().is_none());
    assert_eq!(s.count().unwrap(), 1);
}

#[test]
fn index_sees_changes_made_behind_its_back() {
    let d = tempfile::tempdir().unwrap();
    let mut st = store(d.path());
    reserve(&mut *st.session().unwrap(), &att("c1", "eth0"), "10.0.0.2");
    let net = d.path().join("net");
    // The reference (or an operator) adds one and removes another.
    std::fs::write(net.join("10.0.0.9"), "c9\r\neth0").unwrap();
    std::fs::write(net.join("10.0.0.10"), "old").unwrap();
    std::fs::remove_file(net.join("10.0.0.2")).unwrap();
    let mut s = st.session().unwrap();
    assert_eq!(s.find(&att("c9", "eth0")).unwrap().len(), 1);
    assert_eq!(
        s.find(&att("old", "eth1")).unwrap().len(),
        1,
        "legacy file matches any ifname"
    );
    assert!(s.find(&att("c1", "eth0")).unwrap().is_empty());
    assert_eq!(s.count().unwrap(), 2);
}

#[test]
fn index_survives_in_place_rewrite() {
    let d = tempfile::tempdir().unwrap();
    let mut st = store(d.path());
    reserve(&mut *st.session().unwrap(), &att("c1", "eth0"), "10.0.0.2");
    // Rewriting content in place does not touch the directory's ctime.
    std::fs::write(d.path().join("net/10.0.0.2"), "c2\r\neth0").unwrap();
    let mut s = st.session().unwrap();
    assert!(s.find(&att("c1", "eth0")).unwrap().is_empty());
    assert_eq!(s.find(&att("c2", "eth0")).unwrap().len(), 1);
}

#[test]
fn release_checks_owner_and_damaged_files() {
    let d = tempfile::tempdir().unwrap();
    let mut st = store(d.path());
    let mut s = st.session().unwrap();
    reserve(&mut *s, &att("c1", "eth0"), "10.0.0.2");
    let wrong = Entry::new(
        "10.0.0.2".parse().unwrap(),
        Owner::Attachment {
            id: "c2".into(),
            ifname: "eth0".into(),
        },
    );
    assert!(!s.release(&wrong).unwrap());
    drop(s);
    std::fs::write(d.path().join("net/10.0.0.5"), "").unwrap();
    let mut s = st.session().unwrap();
    let all = s.list().unwrap();
    assert_eq!(all.len(), 2);
    let damaged = all
        .iter()
        .find(|e| matches!(e.owner, Owner::Damaged))
        .unwrap();
    assert!(s.release(damaged).unwrap());
    assert_eq!(s.count().unwrap(), 1);
}

#[test]
fn symlinks_are_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::write(&outside, "keep").unwrap();
    let net = d.path().join("data/net");
    std::fs::create_dir_all(&net).unwrap();
    std::os::unix::fs::symlink(&outside, net.join("last_reserved_ip.0")).unwrap();
    std::os::unix::fs::symlink(&outside, net.join("10.0.0.3")).unwrap();
    let mut st = DiskStore::new(d.path().join("data"), "net");
    let mut s = st.session().unwrap();
    assert!(s.owner_of("10.0.0.3".parse().unwrap()).unwrap().is_some());
    let e = s.owner_of("10.0.0.3".parse().unwrap()).unwrap().unwrap();
    assert_eq!(e.owner, Owner::Damaged);
    assert_eq!(
        e.damage.as_deref(),
        Some("a symlink, not a reservation file")
    );
    reserve(&mut *s, &att("c1", "eth0"), "10.0.0.2");
    drop(s);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    assert!(!std::fs::symlink_metadata(net.join("last_reserved_ip.0"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn lock_symlink_refused() {
    let d = tempfile::tempdir().unwrap();
    let net = d.path().join("net");
    std::fs::create_dir_all(&net).unwrap();
    std::os::unix::fs::symlink(d.path().join("elsewhere"), net.join("lock")).unwrap();
    let mut st = store(d.path());
    assert!(matches!(
        st.session().err().unwrap(),
        StoreError::Unsafe { .. }
    ));
    assert!(!d.path().join("elsewhere").exists());
}
