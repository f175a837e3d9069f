//! One integration test binary driving the real executables (ours and, where
//! installed, the Go reference at /usr/lib/cni/host-local).
//!
//! Each area lives in its own module; `common` holds the process helpers.

mod bridge; // e2e: reference bridge plugin in netns (root)
mod common;
mod netns_util;
mod podman; // e2e: podman 4 CNI backend (root)
