//! The store trait's conformance suite run from outside the crate, through
//! the public API only, as a further backend's integration test runs it
//! (`host_local::store::conformance::run_all` with a factory of fresh
//! stores holding the given entries). Here the disk store, whose factory
//! `conformance::disk_stores` its unit test shares.

use host_local::store::conformance;

#[test]
fn disk_store_passes_the_conformance_suite() {
    let d = tempfile::tempdir().unwrap();
    conformance::run_all(&mut conformance::disk_stores(d.path()));
}
