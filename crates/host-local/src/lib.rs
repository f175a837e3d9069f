//! host-local: a drop-in replacement for the CNI `host-local` IPAM plugin,
//! using the reference's on-disk layout.
//!
//! The library never exits or prints: [`run`] takes the environment, stdin
//! and stdout and returns an outcome; only `main` turns it into an exit code.
//! Two executables use it: `host-local` ([`delegate::run_disk_only`], the disk
//! store only) and `host-local-etcd` ([`run`], both stores), which `host-local`
//! hands the calls of etcd-store configurations to.
#![forbid(unsafe_code)]

pub mod addr;
pub mod alloc;
pub mod config;
pub mod delegate;
pub mod error;
pub mod plugin;
pub mod resolv;
pub mod store;

pub use plugin::HostLocal;

/// Runs one plugin invocation on the store its configuration chooses.
pub fn run(
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    stdin: &mut dyn std::io::Read,
    stdout: &mut dyn std::io::Write,
    stderr: &mut dyn std::io::Write,
) -> cni_proto::Outcome {
    let mut plugin = HostLocal::default();
    cni_proto::run(&mut plugin, lookup, stdin, stdout, stderr)
}
