//! host-local's errors, with the structured fields an operator needs, and the
//! one place where they become CNI error objects with codes.

use std::net::IpAddr;
use std::path::PathBuf;

use cni_proto::{code, CniError};

/// Codes of our own (the spec reserves 100 and above for plugins).
pub mod own_code {
    /// Every range set candidate is taken: nothing left to hand out.
    pub const RANGE_SET_EXHAUSTED: u32 = 100;
    /// A requested address cannot be given (taken, gateway, excluded, outside every range).
    pub const ADDRESS_UNAVAILABLE: u32 = 101;
    /// The attachment already holds an address in this range set.
    pub const DUPLICATE_ALLOCATION: u32 = 102;
    /// CHECK: the attachment holds no reservation in a range set.
    pub const NOT_RESERVED: u32 = 103;
    /// CHECK: prevResult's addresses differ from the reservations.
    pub const RESULT_MISMATCH: u32 = 104;
}

/// Errors from a store. The disk store's name the path involved; a
/// networked backend's name the backend and the operation, and say whether
/// trying again later can help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    /// A commit found an address reserved that it meant to reserve (it
    /// changed since the session read it): nothing was written; pick again.
    #[error("address {ip} was reserved concurrently")]
    Conflict { ip: IpAddr },
    /// A backend other than the disk failed.
    #[error("{backend} store: {op}: {source}")]
    Backend {
        backend: &'static str,
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// Whether trying again later can help (then CNI code 11).
        retryable: bool,
    },
    /// A session that creates nothing ([`crate::store::Store::read_session`])
    /// found no store: the network has none yet, or `path` is not one.
    #[error("{}: {}", path.display(), missing.text())]
    NoStore { path: PathBuf, missing: Missing },
    /// The backend refused our credentials or their permissions (password,
    /// client certificate, TLS), or they cannot be used: an operator has to
    /// fix the configuration or the backend's access rules; trying again
    /// does not help. The message names the setting.
    #[error("{backend} store: {op}: {source}")]
    Access {
        backend: &'static str,
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lock stayed held longer than the caller would wait.
    #[error("timed out waiting for lock {}{}", path.display(), holder_text(*holder_pid, holder_command.as_deref()))]
    LockTimeout {
        path: PathBuf,
        holder_pid: Option<u32>,
        /// The holder's command line, where /proc shows it.
        holder_command: Option<String>,
    },
    /// An operation failed and undoing its partial work failed too: every
    /// failure of the undo, after the one that made it necessary.
    #[error("{source}; undoing it failed too: {}", join_store(undo))]
    Undo {
        #[source]
        source: Box<StoreError>,
        undo: Vec<StoreError>,
    },
}

/// What a read that creates nothing did not find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The network's directory (or keys): no address was ever reserved.
    Network,
    /// The lock file of a directory that exists: not a host-local store.
    Lock,
}

impl Missing {
    fn text(self) -> &'static str {
        match self {
            Missing::Network => "does not exist (no store for this network yet)",
            Missing::Lock => "no lock file; not a host-local store (a read creates nothing)",
        }
    }
}

fn holder_text(pid: Option<u32>, command: Option<&str>) -> String {
    match (pid, command) {
        (Some(p), Some(c)) => format!(" (held by PID {p}: {c})"),
        (Some(p), None) => format!(" (held by PID {p})"),
        (None, _) => String::new(),
    }
}

fn join_store(errors: &[StoreError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl StoreError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether the same operation may succeed if tried again later.
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Conflict { .. } | StoreError::LockTimeout { .. } => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::Io { .. }
            | StoreError::Unsafe { .. }
            | StoreError::Undo { .. }
            | StoreError::NoStore { .. }
            | StoreError::Access { .. } => false,
        }
    }

    /// Whether access was refused (see [`StoreError::Access`]).
    pub fn access_refused(&self) -> bool {
        matches!(self, StoreError::Access { .. })
    }
}

/// One failure of a step that kept going (a teardown): what was being done
/// and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Failure {
    pub what: String,
    #[source]
    pub source: StoreError,
}

/// `"; "`-joined failures, for messages.
fn join(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn rollback_note(rollback: &[Failure]) -> String {
    if rollback.is_empty() {
        "; its reservations were taken back".into()
    } else {
        format!(
            "; taking its reservations back failed too ({} failure(s)): {}",
            rollback.len(),
            join(rollback)
        )
    }
}

/// A teardown that keeps going past failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teardown {
    Del,
    Gc,
}

impl std::fmt::Display for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Teardown::Del => "DEL",
            Teardown::Gc => "garbage collection",
        })
    }
}

/// Every failure of host-local.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field is missing, of the wrong type or invalid. `reason` starts with
    /// the reference's message where it has one; the field path and value follow.
    #[error("{reason} ({field}{})", if value.is_empty() { String::new() } else { format!(": {value}") })]
    Config {
        field: String,
        value: String,
        reason: String,
    },
    /// CNI_ARGS carried something we cannot use. `reason` is the reference's complete message
    /// (`ARGS: ...`), which names the pair.
    #[error("{reason}")]
    Args {
        key: String,
        value: String,
        reason: String,
    },
    /// The reference's wording (Go's `*PathError`: "open /x: no such file or directory"), then
    /// the field.
    #[error("{op} {}: {} (ipam.resolvConf)", path.display(), go_io_text(source))]
    ResolvConf {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to allocate for range {set_index}: no IP addresses available in range set: {set}"
    )]
    Exhausted { set_index: usize, set: String },
    /// `reason` starts with the reference's text for the case (`requested ip
    /// <ip> is subnet's gateway`, `requested IP address <ip> is not available
    /// in range set <set>`), our detail after it.
    #[error("failed to allocate for range {set_index}: {reason}")]
    Unavailable {
        ip: IpAddr,
        set_index: usize,
        reason: String,
    },
    /// `ips`: the leftover addresses separated by spaces, as the reference.
    #[error("failed to allocate all requested IPs: {ips} (each is outside every range set, or a second one for a range set)")]
    Unplaced { ips: String },
    #[error("cannot express the result in cniVersion {version}: {reason}")]
    Convert {
        version: &'static str,
        reason: String,
    },
    #[error("failed to allocate for range {set_index}: {ip} has been allocated to {container}, duplicate allocation is not allowed (interface {ifname})")]
    Duplicate {
        ip: IpAddr,
        set_index: usize,
        container: String,
        ifname: String,
    },
    #[error("host-local: Failed to find address added by container {container} (interface {ifname}, range set {set_index}: {set})")]
    NotReserved {
        container: String,
        ifname: String,
        set_index: usize,
        set: String,
    },
    #[error("prevResult does not match the reservations of container {container} interface {ifname}: {reason}")]
    Mismatch {
        container: String,
        ifname: String,
        reason: String,
    },
    #[error("store {network}: {source}")]
    Store {
        network: String,
        #[source]
        source: StoreError,
    },
    /// ADD's commit could not be made durable; `rollback` lists every
    /// failure of taking its reservations back (empty: all taken back).
    #[error("store {network}: {source}{}", rollback_note(rollback))]
    NotDurable {
        network: String,
        #[source]
        source: StoreError,
        rollback: Vec<Failure>,
    },
    /// ADD's pick-and-commit loop lost every race for its addresses.
    #[error("store {network}: gave up after {attempts} attempts, each losing an address to a concurrent ADD (last {ip})")]
    Contended {
        network: String,
        attempts: u32,
        ip: IpAddr,
    },
    /// DEL or GC did all it could and lists every failure.
    #[error("{op} left {} problem(s) in store {network}: {}", failures.len(), join(failures))]
    Teardown {
        op: Teardown,
        network: String,
        failures: Vec<Failure>,
    },
    #[error("cannot serve ADD: {reason}")]
    NotAvailable { reason: String },
    /// STATUS: the store cannot be used now.
    #[error("cannot serve ADD: store of network {network} unusable: {source}")]
    Unusable {
        network: String,
        #[source]
        source: StoreError,
    },
    /// The disk-only executable's answer for a configuration whose store it
    /// does not link: the call is handed to `exe` (never printed when that works).
    #[error("the {kind} store is served by {exe}")]
    HandOver {
        kind: &'static str,
        exe: &'static str,
    },
}

/// A store error, its network filled in at the plugin edge ([`Error::in_network`]).
impl From<StoreError> for Error {
    fn from(source: StoreError) -> Self {
        Error::Store {
            network: String::new(),
            source,
        }
    }
}

/// An I/O error as Go prints an errno ("no such file or directory"): Rust's text without the
/// " (os error N)" suffix, first letter in lower case.
pub fn go_io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(i)) => &text[..i],
        _ => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Error {
    pub fn config(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// This error with `network` named where a store error did not say it yet
    /// (the plugin edge adds it once for every operation).
    pub fn in_network(self, network: &str) -> Self {
        match self {
            Error::Store { network: n, source } if n.is_empty() => Error::Store {
                network: network.to_string(),
                source,
            },
            Error::Unusable { network: n, source } if n.is_empty() => Error::Unusable {
                network: network.to_string(),
                source,
            },
            other => other,
        }
    }

    /// This error as STATUS reports it: a store that fails is unusable (code 50).
    pub fn for_status(self) -> Self {
        match self {
            Error::Store { network, source } => Error::Unusable { network, source },
            other => other,
        }
    }

    /// The CNI code of this error: the only place codes are chosen.
    pub fn code(&self) -> u32 {
        match self {
            Error::Config { .. } => code::INVALID_CONFIG,
            Error::Args { .. } => code::INVALID_ENV,
            Error::ResolvConf { .. } => code::IO,
            Error::Exhausted { .. } => own_code::RANGE_SET_EXHAUSTED,
            Error::Unavailable { .. } | Error::Unplaced { .. } => own_code::ADDRESS_UNAVAILABLE,
            Error::Convert { .. } => code::INCOMPATIBLE_VERSION,
            Error::Duplicate { .. } => own_code::DUPLICATE_ALLOCATION,
            Error::NotReserved { .. } => own_code::NOT_RESERVED,
            Error::Mismatch { .. } => own_code::RESULT_MISMATCH,
            // One code for every refused credential or permission, whichever
            // call and step met it: the configuration is what is wrong.
            Error::Store { source, .. } if source.access_refused() => code::INVALID_CONFIG,
            Error::Teardown { failures, .. }
                if failures.iter().any(|f| f.source.access_refused()) =>
            {
                code::INVALID_CONFIG
            }
            Error::Store { source, .. } if source.retryable() => code::TRY_AGAIN_LATER,
            Error::Store { .. } => code::IO,
            Error::Contended { .. } => code::TRY_AGAIN_LATER,
            Error::NotDurable { .. } => code::IO,
            Error::Teardown { failures, .. } if failures.iter().all(|f| f.source.retryable()) => {
                code::TRY_AGAIN_LATER
            }
            Error::Teardown { .. } => code::IO,
            Error::NotAvailable { .. } | Error::Unusable { .. } => code::NOT_AVAILABLE,
            Error::HandOver { .. } => code::INVALID_CONFIG,
        }
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        CniError::new(e.code(), e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message starts with the reference's (v1.1.1) text for the case.
    #[test]
    fn messages_start_with_the_references_text() {
        let ip: IpAddr = "10.1.2.5".parse().unwrap();
        let cases = [
            (
                Error::Exhausted {
                    set_index: 0,
                    set: "10.0.0.1-10.0.0.2".into(),
                },
                "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.2",
            ),
            (
                Error::Duplicate {
                    ip,
                    set_index: 1,
                    container: "c1".into(),
                    ifname: "eth0".into(),
                },
                "failed to allocate for range 1: 10.1.2.5 has been allocated to c1, duplicate allocation is not allowed",
            ),
            (
                Error::Unplaced {
                    ips: "10.1.2.77 10.9.9.9".into(),
                },
                "failed to allocate all requested IPs: 10.1.2.77 10.9.9.9",
            ),
            (
                Error::NotReserved {
                    container: "c1".into(),
                    ifname: "eth0".into(),
                    set_index: 0,
                    set: "10.0.0.1-10.0.0.2".into(),
                },
                "host-local: Failed to find address added by container c1",
            ),
            (
                Error::Args {
                    key: "CNI_ARGS".into(),
                    value: "FOO=bar".into(),
                    reason: "ARGS: unknown args [\"FOO=bar\"]".into(),
                },
                "ARGS: unknown args [\"FOO=bar\"]",
            ),
            (
                Error::ResolvConf {
                    op: "open",
                    path: "/nonexistent/resolv.conf".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENOENT),
                },
                "open /nonexistent/resolv.conf: no such file or directory",
            ),
        ];
        for (e, reference) in cases {
            let msg = e.to_string();
            assert!(msg.starts_with(reference), "{msg:?} vs {reference:?}");
        }
    }
}
