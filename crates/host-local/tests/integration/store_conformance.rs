//! The store trait's conformance suite run from outside the crate, through
//! the public API only, as a further backend's integration test runs it
//! (`host_local::conformance_tests!` with a factory of fresh stores holding
//! the given entries): one test per case. Here the disk store, whose factory
//! `conformance::disk_stores` its unit test shares.

use host_local::store::conformance::{self, Factory};

fn disk_stores() -> Option<Factory> {
    Some(conformance::disk_stores(tempfile::tempdir().unwrap()))
}

host_local::conformance_tests!(disk_stores);
