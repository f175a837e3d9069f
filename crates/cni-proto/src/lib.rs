//! The CNI protocol: spec versions, the invocation environment, the network configuration
//! envelope, results in every spec version's wire shape, the error object, and [`run`], the
//! dispatcher a plugin binary's `main` calls.
//!
//! Behaviour follows the Go reference (`host-local` v1.1.1 built on the CNI Go library);
//! every observable choice was checked by running `/usr/lib/cni/host-local` and is recorded
//! beside the code that implements it. Deliberate differences are marked "Deviation".

pub mod config;
pub mod env;
pub mod error;
pub mod gojson;
mod json;
pub mod plugin;
mod read;
pub mod result;
pub mod version;

pub use config::NetConf;
pub use env::{CniArgs, Command, ContainerId, Env, IfName, NetworkName};
pub use error::{code, CniError, ProtoError};
pub use json::to_go_pretty;
pub use plugin::{run, Outcome, Plugin, Request};
pub use read::read_bounded;
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::SpecVersion;
