//! One lock per node and network, so a node's concurrent ADDs and DELs take
//! turns instead of racing each other through etcd: each reads the node's
//! blocks after the previous one committed, and none loses a
//! compare-and-swap to its own node. Only a matter of cost: every commit is
//! compare-and-swap, so without the lock (no writable lock directory, or a
//! holder stuck past the wait) the node still never hands out an address
//! twice; it only retries more.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::lock_wait::lock_within;

/// Where the lock files live: a tmpfs, emptied at boot (the locks hold no
/// state).
pub const LOCK_DIR: &str = "/run/host-local-etcd";

/// The lock file of `node` on the network whose keys start with `base`
/// (hashed: prefixes may hold any printable character).
fn path(base: &str, node: &str) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in base.bytes().chain([0]).chain(node.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    PathBuf::from(LOCK_DIR).join(format!("{h:016x}.lock"))
}

/// Takes the node's lock, waiting at most `wait`; None when it cannot be
/// had (see the module: the call goes on without it).
pub fn take(base: &str, node: &str, wait: Duration) -> Option<File> {
    let p = path(base, node);
    // No lock directory (not root, read-only /run): go on unlocked, as
    // the module says; the commits stay compare-and-swap.
    std::fs::create_dir_all(LOCK_DIR).ok()?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .ok()?;
    // A holder stuck past `wait` (a plugin stopped mid-call): unlocked too.
    lock_within(&f, &p, wait).ok()?;
    Some(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_lock_per_node_and_network() {
        let a = super::path("/p/n1/", "node-a");
        assert_eq!(a, super::path("/p/n1/", "node-a"));
        assert_ne!(a, super::path("/p/n1/", "node-b"));
        assert_ne!(a, super::path("/p/n2/", "node-a"));
    }
}
