//! The contract of [`Store`] and [`Session`] as tests, written once and run
//! by every backend, one `#[test]` per case per backend (so one broken
//! promise does not hide the others), with [`conformance_tests!`]:
//!
//! ```ignore
//! /// A fresh, empty store of the backend per call, holding `seed` written
//! /// behind the trait's back the way an older plugin or an operator would
//! /// (legacy ID-only owners, damaged entries: any unparseable content);
//! /// None when the backend cannot run here (the factory says why).
//! fn my_backend() -> Option<Factory> { ... }
//! mod my_backend_conformance {
//!     host_local::conformance_tests!(super::my_backend);
//! }
//! ```
//!
//! [`disk_stores`] is a complete example (the disk store's factory, run by its
//! unit tests and, through the public API, by
//! `crates/host-local/tests/integration/store_conformance.rs`). Each case
//! panics (with the case's name) on the first broken promise.

use std::net::IpAddr;
use std::path::Path;

use serde_json::json;

use super::disk::DiskStore;
use super::{Attachment, Entry, Owner, Pick, Session, Store};
use crate::config::{IpamConfig, RangeSet};

/// Makes a fresh store holding the given entries.
pub type MakeStore<'a> = dyn FnMut(&[Entry]) -> Box<dyn Store> + 'a;

/// A backend's [`MakeStore`], owning whatever its stores need (a temporary
/// directory, a server).
pub type Factory = Box<dyn FnMut(&[Entry]) -> Box<dyn Store>>;

/// One `#[test]` per case of the suite, each on stores from `$factory`, a
/// `fn() -> Option<Factory>` called once per case (None: the backend cannot
/// run here, and the case passes having said so through the factory).
/// Invoke it inside a module of its own: the tests are named after the cases.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            empty_store,
            commit_reserves_and_advances_cursor,
            commit_is_all_or_nothing,
            find_own_and_legacy_only,
            release_only_when_still_owned,
            release_all_of_an_attachment,
            first_free_in_order,
            first_free_up_to_want,
            damaged_counts_as_reserved,
            count_and_list,
            list_collectable_holds_own_commits,
            sessions_see_earlier_commits,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if let Some(mut make) = $factory() {
                    $crate::store::conformance::$case(&mut *make);
                }
            }
        )*
    };
}

/// The [`Factory`] of the disk store, for its unit test and the integration test that runs the
/// suite through the public API: each store a fresh data directory below `root` (kept, with
/// whatever owns it, as long as the factory) holding network `net`, `seed` written as its files
/// the way an older plugin or an operator would (a damaged entry as content no plugin writes).
pub fn disk_stores<R: AsRef<Path> + 'static>(root: R) -> Factory {
    let mut n = 0;
    Box::new(move |seed: &[Entry]| {
        n += 1;
        let data = root.as_ref().join(format!("d{n}"));
        let net = data.join("net");
        std::fs::create_dir_all(&net).expect("test data directory");
        for e in seed {
            let content = super::disk::encode_owner(&e.owner).unwrap_or_else(|| "\r\n".into());
            std::fs::write(net.join(e.ip.to_string()), content).expect("seeded entry");
        }
        Box::new(DiskStore::new(data, "net")) as Box<dyn Store>
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn att(id: &str, ifname: &str) -> Attachment {
    Attachment::parse(id, ifname).expect("valid test attachment")
}

fn pick(s: &str, set_index: usize) -> Pick {
    Pick {
        ip: ip(s),
        set_index,
    }
}

fn legacy(s: &str, id: &str) -> Entry {
    Entry::new(ip(s), Owner::Legacy { id: id.into() })
}

fn damaged(s: &str) -> Entry {
    Entry::damaged(ip(s), "planted by the conformance suite")
}

/// The owner of `addr`'s reservation, if any.
fn owner(s: &mut dyn Session, addr: IpAddr) -> Option<Owner> {
    s.owner_of(addr).unwrap().map(|e| e.owner)
}

/// The first free of `candidates`.
fn first(s: &mut dyn Session, candidates: &[IpAddr]) -> Option<IpAddr> {
    let free = s.first_free(&mut candidates.iter().copied(), 1).unwrap();
    assert!(free.len() <= 1, "first_free gave more than asked: {free:?}");
    free.first().copied()
}

/// Range set 0 of `10.9.0.0/24`.
fn set() -> RangeSet {
    let ipam = json!({"subnet": "10.9.0.0/24"});
    IpamConfig::load(
        "conformance",
        cni_proto::SpecVersion::V1_0_0,
        Some(&ipam),
        None,
        None,
        &cni_proto::CniArgs::parse("").expect("empty CNI_ARGS"),
    )
    .expect("valid test configuration")
    .ranges
    .remove(0)
}

/// Commits `addr` (range set 0) for `a` and finishes it: a reservation a case builds on.
#[track_caller]
pub(crate) fn reserve(s: &mut dyn Session, a: &Attachment, addr: &str) {
    s.commit(a, &[pick(addr, 0)]).unwrap().finish().unwrap();
}

fn ips(entries: &[Entry]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = entries.iter().map(|e| e.ip).collect();
    v.sort();
    v
}

pub fn empty_store(make: &mut MakeStore<'_>) {
    let mut st = make(&[]);
    let mut s = st.session().expect("session");
    assert_eq!(s.count().unwrap(), 0, "empty_store: count");
    assert!(s.list().unwrap().is_empty(), "empty_store: list");
    assert!(
        s.find(&att("c1", "eth0")).unwrap().is_empty(),
        "empty_store: find"
    );
    assert_eq!(s.cursor(0).unwrap(), None, "empty_store: cursor");
    assert_eq!(
        owner(&mut *s, ip("10.9.0.2")),
        None,
        "empty_store: owner_of"
    );
    s.writable().expect("empty_store: writable");
}

pub fn commit_reserves_and_advances_cursor(make: &mut MakeStore<'_>) {
    let name = "commit_reserves_and_advances_cursor";
    let mut st = make(&[]);
    let a = att("c1", "eth0");
    let committed = {
        let mut s = st.session().unwrap();
        let c = s
            .commit(&a, &[pick("10.9.0.2", 0), pick("fd09::2", 1)])
            .unwrap_or_else(|e| panic!("{name}: commit: {e}"));
        assert_eq!(owner(&mut *s, ip("10.9.0.2")), Some(a.owner()), "{name}");
        c
    };
    committed
        .finish()
        .unwrap_or_else(|e| panic!("{name}: finish: {e}"));
    let mut s = st.session().unwrap();
    assert_eq!(
        s.cursor(0).unwrap(),
        Some(ip("10.9.0.2")),
        "{name}: cursor 0"
    );
    assert_eq!(
        s.cursor(1).unwrap(),
        Some(ip("fd09::2")),
        "{name}: cursor 1"
    );
    assert_eq!(s.cursor(2).unwrap(), None, "{name}: cursor 2");
    assert_eq!(
        ips(&s.find(&a).unwrap()),
        [ip("10.9.0.2"), ip("fd09::2")],
        "{name}: find"
    );
    assert_eq!(owner(&mut *s, ip("fd09::2")), Some(a.owner()), "{name}");
    let c = s
        .commit(&att("c2", "eth0"), &[pick("10.9.0.7", 0)])
        .unwrap_or_else(|e| panic!("{name}: second commit: {e}"));
    assert_eq!(
        s.cursor(0).unwrap(),
        Some(ip("10.9.0.7")),
        "{name}: moved on"
    );
    drop(s);
    c.finish().unwrap();
}

pub fn commit_is_all_or_nothing(make: &mut MakeStore<'_>) {
    let name = "commit_is_all_or_nothing";
    let mut st = make(&[]);
    let mut s = st.session().unwrap();
    let first = s
        .commit(&att("c1", "eth0"), &[pick("10.9.0.3", 0)])
        .unwrap();
    drop(s);
    first.finish().unwrap();
    let mut s = st.session().unwrap();
    let e = s
        .commit(
            &att("c2", "eth0"),
            &[pick("fd09::5", 1), pick("10.9.0.3", 0)],
        )
        .expect_err("committing a reserved address must fail");
    assert!(
        matches!(e, crate::error::StoreError::Conflict { ip: i } if i == ip("10.9.0.3")),
        "{name}: want Conflict for 10.9.0.3, got {e}"
    );
    drop(s);
    let mut s = st.session().unwrap();
    assert_eq!(
        owner(&mut *s, ip("fd09::5")),
        None,
        "{name}: nothing written"
    );
    assert_eq!(s.cursor(1).unwrap(), None, "{name}: cursor not advanced");
    assert_eq!(s.count().unwrap(), 1, "{name}: count");
    assert!(
        s.find(&att("c2", "eth0")).unwrap().is_empty(),
        "{name}: find"
    );
    assert_eq!(
        owner(&mut *s, ip("10.9.0.3")),
        Some(att("c1", "eth0").owner()),
        "{name}: the holder keeps it"
    );
}

pub fn find_own_and_legacy_only(make: &mut MakeStore<'_>) {
    let name = "find_own_and_legacy_only";
    let mut st = make(&[
        legacy("10.9.0.50", "c1"),
        legacy("10.9.0.51", "c9"),
        damaged("10.9.0.52"),
    ]);
    let mut s = st.session().unwrap();
    reserve(&mut *s, &att("c1", "eth0"), "10.9.0.2");
    reserve(&mut *s, &att("c1", "eth1"), "10.9.0.3");
    reserve(&mut *s, &att("c2", "eth0"), "10.9.0.4");
    assert_eq!(
        ips(&s.find(&att("c1", "eth0")).unwrap()),
        [ip("10.9.0.2"), ip("10.9.0.50")],
        "{name}: own and legacy, never eth1's"
    );
    assert_eq!(
        ips(&s.find(&att("c1", "eth1")).unwrap()),
        [ip("10.9.0.3"), ip("10.9.0.50")],
        "{name}"
    );
    assert_eq!(
        ips(&s.find(&att("c2", "eth0")).unwrap()),
        [ip("10.9.0.4")],
        "{name}"
    );
    assert!(
        s.find(&att("c3", "eth0")).unwrap().is_empty(),
        "{name}: stranger"
    );
    for e in s.find(&att("c1", "eth0")).unwrap() {
        assert!(e.owner.belongs_to("c1", "eth0"), "{name}: {e:?}");
    }
}

pub fn release_only_when_still_owned(make: &mut MakeStore<'_>) {
    let name = "release_only_when_still_owned";
    let mut st = make(&[damaged("10.9.0.60"), legacy("10.9.0.61", "old")]);
    let mut s = st.session().unwrap();
    let a = att("c1", "eth0");
    reserve(&mut *s, &a, "10.9.0.2");
    let wrong = Entry::new(ip("10.9.0.2"), att("c1", "eth1").owner());
    assert!(!s.release(&wrong).unwrap(), "{name}: another ifname's");
    assert_eq!(owner(&mut *s, ip("10.9.0.2")), Some(a.owner()), "{name}");
    let mine = Entry::new(ip("10.9.0.2"), a.owner());
    assert!(s.release(&mine).unwrap(), "{name}: own");
    assert!(!s.release(&mine).unwrap(), "{name}: twice");
    assert_eq!(owner(&mut *s, ip("10.9.0.2")), None, "{name}: gone");
    assert!(
        !s.release(&Entry::new(ip("10.9.0.9"), a.owner())).unwrap(),
        "{name}: never reserved"
    );
    let listed = s.list().unwrap();
    let d = listed
        .iter()
        .find(|e| e.ip == ip("10.9.0.60"))
        .expect("damaged listed");
    assert!(matches!(d.owner, Owner::Damaged), "{name}: {d:?}");
    assert!(s.release(d).unwrap(), "{name}: damaged, still damaged");
    assert!(
        !s.release(&legacy("10.9.0.61", "other")).unwrap(),
        "{name}: legacy of another id"
    );
    assert!(
        s.release(&legacy("10.9.0.61", "old")).unwrap(),
        "{name}: legacy"
    );
    assert_eq!(s.count().unwrap(), 0, "{name}: all gone");
    // Released addresses are free again.
    assert_eq!(
        first(&mut *s, &[ip("10.9.0.2")]),
        Some(ip("10.9.0.2")),
        "{name}"
    );
}

pub fn release_all_of_an_attachment(make: &mut MakeStore<'_>) {
    let name = "release_all_of_an_attachment";
    let mut st = make(&[legacy("10.9.0.61", "c1")]);
    let mut s = st.session().unwrap();
    let a = att("c1", "eth0");
    let committed = s
        .commit(&a, &[pick("10.9.0.2", 0), pick("fd09::2", 1)])
        .unwrap();
    drop(s);
    committed.finish().unwrap();
    reserve(&mut *st.session().unwrap(), &att("c2", "eth0"), "10.9.0.3");
    let mut s = st.session().unwrap();
    let mut found = s.find(&a).unwrap();
    assert_eq!(
        ips(&found),
        [ip("10.9.0.2"), ip("10.9.0.61"), ip("fd09::2")],
        "{name}: dual stack and the legacy file"
    );
    // An entry that no longer holds (another container's address) is left.
    found.push(Entry::new(ip("10.9.0.3"), a.owner()));
    let targets: Vec<&Entry> = found.iter().collect();
    let failures = s.release_all(&targets);
    assert!(failures.is_empty(), "{name}: {failures:?}");
    drop(s);
    let mut s = st.session().unwrap();
    assert!(s.find(&a).unwrap().is_empty(), "{name}: all released");
    assert_eq!(
        owner(&mut *s, ip("10.9.0.3")),
        Some(att("c2", "eth0").owner()),
        "{name}: the other container keeps its address"
    );
    assert_eq!(s.count().unwrap(), 1, "{name}: count");
    assert!(s.release_all(&[]).is_empty(), "{name}: nothing to release");
}

pub fn first_free_in_order(make: &mut MakeStore<'_>) {
    let name = "first_free_in_order";
    let mut st = make(&[]);
    let mut s = st.session().unwrap();
    reserve(&mut *s, &att("c1", "eth0"), "10.9.0.2");
    reserve(&mut *s, &att("c2", "eth0"), "10.9.0.4");
    let set = set();
    let order = ["10.9.0.4", "10.9.0.2", "10.9.0.9", "10.9.0.3"].map(ip);
    assert_eq!(
        first(&mut *s, &order),
        Some(ip("10.9.0.9")),
        "{name}: the first free in the given order, not the lowest"
    );
    let taken = ["10.9.0.4", "10.9.0.2"].map(ip);
    assert_eq!(first(&mut *s, &taken), None, "{name}: all taken");
    assert_eq!(
        s.first_free(&mut std::iter::empty(), 1).unwrap(),
        Vec::<IpAddr>::new(),
        "{name}: none"
    );
    // Every candidate of a whole /24, in the allocator's order.
    let mut all = crate::alloc::Candidates::new(&set, Some(ip("10.9.0.1"))).map(|(i, _)| i);
    assert_eq!(
        s.first_free(&mut all, 1).unwrap(),
        [ip("10.9.0.3")],
        "{name}: walk"
    );
}

pub fn first_free_up_to_want(make: &mut MakeStore<'_>) {
    let name = "first_free_up_to_want";
    let mut st = make(&[damaged("10.9.0.5")]);
    let mut s = st.session().unwrap();
    reserve(&mut *s, &att("c1", "eth0"), "10.9.0.3");
    let order = [
        "10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.0.7",
    ]
    .map(ip);
    assert_eq!(
        s.first_free(&mut order.into_iter(), 3).unwrap(),
        ["10.9.0.2", "10.9.0.4", "10.9.0.6"].map(ip),
        "{name}: the first three free, in order"
    );
    assert_eq!(
        s.first_free(&mut order.into_iter(), 16).unwrap(),
        ["10.9.0.2", "10.9.0.4", "10.9.0.6", "10.9.0.7"].map(ip),
        "{name}: fewer when the candidates run out"
    );
    assert_eq!(
        s.first_free(&mut order.into_iter(), 0).unwrap(),
        [ip("10.9.0.2")],
        "{name}: at least one"
    );
}

pub fn damaged_counts_as_reserved(make: &mut MakeStore<'_>) {
    let name = "damaged_counts_as_reserved";
    let mut st = make(&[damaged("10.9.0.2"), legacy("10.9.0.3", "old")]);
    let mut s = st.session().unwrap();
    let order = ["10.9.0.2", "10.9.0.3", "10.9.0.4"].map(ip);
    assert_eq!(first(&mut *s, &order), Some(ip("10.9.0.4")), "{name}");
    assert!(
        matches!(owner(&mut *s, ip("10.9.0.2")), Some(Owner::Damaged)),
        "{name}: owner_of"
    );
    let e = s
        .commit(&att("c1", "eth0"), &[pick("10.9.0.2", 0)])
        .expect_err("a damaged reservation is taken");
    assert!(
        matches!(e, crate::error::StoreError::Conflict { .. }),
        "{name}: want Conflict, got {e}"
    );
    assert_eq!(s.count().unwrap(), 2, "{name}: count");
}

pub fn count_and_list(make: &mut MakeStore<'_>) {
    let name = "count_and_list";
    let mut st = make(&[damaged("10.9.0.70"), legacy("10.9.0.71", "old")]);
    let mut s = st.session().unwrap();
    s.commit(
        &att("c1", "eth0"),
        &[pick("10.9.0.2", 0), pick("fd09::2", 1)],
    )
    .unwrap()
    .finish()
    .unwrap();
    assert_eq!(s.count().unwrap(), 4, "{name}: count");
    let list = s.list().unwrap();
    assert_eq!(
        ips(&list),
        ["10.9.0.2", "10.9.0.70", "10.9.0.71", "fd09::2"].map(ip),
        "{name}: list"
    );
    let get = |a: &str| list.iter().find(|e| e.ip == ip(a)).unwrap().owner.clone();
    assert_eq!(get("10.9.0.2"), att("c1", "eth0").owner(), "{name}");
    assert_eq!(
        get("10.9.0.71"),
        Owner::Legacy { id: "old".into() },
        "{name}"
    );
    assert!(matches!(get("10.9.0.70"), Owner::Damaged), "{name}");
    let d = list.iter().find(|e| e.ip == ip("10.9.0.70")).unwrap();
    assert!(
        d.damage.as_deref().is_some_and(|r| !r.is_empty()),
        "{name}: a damaged entry says why: {d:?}"
    );
}

pub fn list_collectable_holds_own_commits(make: &mut MakeStore<'_>) {
    let name = "list_collectable_holds_own_commits";
    let mut st = make(&[]);
    let mut s = st.session().unwrap();
    reserve(&mut *s, &att("c1", "eth0"), "10.9.0.2");
    reserve(&mut *s, &att("c2", "eth0"), "10.9.0.3");
    let all = ips(&s.list().unwrap());
    let collectable = ips(&s.list_collectable().unwrap());
    assert_eq!(collectable, [ip("10.9.0.2"), ip("10.9.0.3")], "{name}");
    assert!(
        collectable.iter().all(|c| all.contains(c)),
        "{name}: a subset of list"
    );
}

pub fn sessions_see_earlier_commits(make: &mut MakeStore<'_>) {
    let name = "sessions_see_earlier_commits";
    let mut st = make(&[]);
    {
        let mut s = st.session().unwrap();
        let c = s
            .commit(&att("c1", "eth0"), &[pick("10.9.0.2", 0)])
            .unwrap();
        drop(s);
        c.finish().unwrap();
    }
    {
        let mut s = st.session().unwrap();
        assert_eq!(s.count().unwrap(), 1, "{name}");
        let e = s.find(&att("c1", "eth0")).unwrap();
        assert!(s.release(&e[0]).unwrap(), "{name}");
    }
    let mut s = st.session().unwrap();
    assert_eq!(s.count().unwrap(), 0, "{name}: the release stuck");
    assert_eq!(
        s.cursor(0).unwrap(),
        Some(ip("10.9.0.2")),
        "{name}: the cursor stays"
    );
}
