//! One integration test binary driving the real executables (ours and, where
//! installed, the Go reference at /usr/lib/cni/host-local).
//!
//! Each area lives in its own module; `common` holds the process helpers.
// Root-only tests mount filesystems, wait for and kill processes through
// libc; every such block carries its SAFETY comment (clippy denies others).
#![allow(unsafe_code)]

mod bridge; // e2e: reference bridge plugin in netns (root)
mod common;
mod crash; // full / read-only filesystems (root, mounts)
mod cri; // e2e: containerd 1.6 CRI plugin driven over CRI v1 (root)
mod cri_api;
mod cri_cleanup;
mod cri_ipamctl; // e2e: ipamctl --cri against the private containerd (root)
mod cri_world;
mod differential; // reference vs ours, step by step
mod etcd; // the etcd store against real etcd members
mod etcd_auth; // username/password, roles limited to the prefix, refusals: one code
mod etcd_cluster; // several nodes, member and quorum loss, TLS
mod etcd_fleet; // per-node blocks: claims, borrowing, many nodes, kills, layout 1
mod etcd_forged; // CHECK and DEL verify the address key behind an index key
mod etcd_handoff; // host-local hands etcd-store calls to host-local-etcd
mod etcd_health; // STATUS 50 under NOSPACE, CORRUPT, without a leader
mod etcd_pages; // big values and long node names: reads in pages under 4 MiB
mod etcd_slow; // a stopped (hung) follower, and leader, during sequential ADDs
mod etcd_tls; // certificates made by the tests
mod faults; // SIGKILL fault injection under concurrent ADD/DEL
mod gc_status; // GC, STATUS, exclude
mod hostile; // escapes, planted symlinks/FIFOs/huge files, oversized input
mod load; // 64 processes of mixed ADD/CHECK/DEL/GC on one network
mod mixed; // reference and ours on one data directory
mod netns_util;
mod podman; // e2e: podman 4 CNI backend (root)
mod race; // concurrent processes on one network
mod store_conformance; // the store trait's suite through the public API
mod upstream; // upstream v1.1.1 host-local tests, ported to the binary
mod versions; // ours over every spec version
