//! Runs the real ipamctl binary on stores in the reference layout.

mod basics;
mod common;
mod guards;
