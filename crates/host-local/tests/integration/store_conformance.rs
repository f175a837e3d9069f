//! The store trait's conformance suite run from outside the crate, through
//! the public API only, as a further backend's integration test runs it
//! (`host_local::store::conformance::run_all` with a factory of fresh
//! stores holding the given entries). Here the disk store.

use host_local::store::disk::DiskStore;
use host_local::store::{conformance, Entry, Store};

#[test]
fn disk_store_passes_the_conformance_suite() {
    let d = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::run_all(&mut |seed: &[Entry]| {
        n += 1;
        let data = d.path().join(format!("d{n}"));
        let net = data.join("net");
        std::fs::create_dir_all(&net).unwrap();
        for e in seed {
            // Legacy and damaged entries, written as an older plugin or an
            // operator would (damaged: content no plugin writes).
            let content = e.owner.to_content().unwrap_or_else(|| "\r\n".into());
            std::fs::write(net.join(e.ip.to_string()), content).unwrap();
        }
        Box::new(DiskStore::new(data, "net")) as Box<dyn Store>
    });
}
