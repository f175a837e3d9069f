//! The CRI v1 client of the `cri` suite lives in the `cri-client` crate
//! (shared with ipamctl's `--cri`); this module keeps the suite's imports.

pub use cri_client::*;
