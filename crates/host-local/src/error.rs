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

/// Errors from the on-disk (or any) store. Every variant names the path or
/// the address involved.
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
    #[error("address {ip} was taken concurrently")]
    Taken { ip: IpAddr },
    #[error("{reason}")]
    Backend { reason: String },
    /// The lock stayed held longer than the caller would wait.
    #[error("timed out waiting for lock {path}{}", holder_pid.map(|p| format!(" (held by PID {p})")).unwrap_or_default())]
    LockTimeout {
        path: PathBuf,
        holder_pid: Option<u32>,
    },
}

impl StoreError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
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
    #[error("no IP addresses available in range set {set_index} ({set})")]
    Exhausted { set_index: usize, set: String },
    #[error("requested address {ip} {reason}")]
    Unavailable { ip: IpAddr, reason: String },
    #[error("requested addresses left over (outside every range set, or a second one for a range set): {ips}")]
    Unplaced { ips: String },
    #[error("cannot express the result in cniVersion {version}: {reason}")]
    Convert {
        version: &'static str,
        reason: String,
    },
    #[error("{ip} in range set {set_index} is already allocated to container {container} (interface {ifname}); duplicate allocation is not allowed")]
    Duplicate {
        ip: IpAddr,
        set_index: usize,
        container: String,
        ifname: String,
    },
    #[error("no address reserved for container {container} interface {ifname} in range set {set_index} ({set})")]
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
    #[error("garbage collection left {count} problem(s): {list}")]
    Gc { count: usize, list: String },
    #[error("cannot serve ADD: {reason}")]
    NotAvailable { reason: String },
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
            Error::Store { source, .. } => match source {
                StoreError::Taken { .. } | StoreError::LockTimeout { .. } => code::TRY_AGAIN_LATER,
                _ => code::IO,
            },
            Error::Gc { .. } => code::IO,
            Error::NotAvailable { .. } => code::NOT_AVAILABLE,
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
