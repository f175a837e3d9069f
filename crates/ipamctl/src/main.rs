//! ipamctl: see, explain and repair host-local IPAM allocations.
//!
//! Works on any data directory in the reference layout (including one only
//! the Go plugin ever wrote), takes the plugin's flock for every read
//! (waiting a bounded time), and changes nothing unless asked (`release`,
//! `gc`, confirmed). Each command lives in `cmd/`, computes a report of
//! `report` types, and prints it as JSON or text.

mod attach;
mod cli;
mod cluster;
mod cmd;
mod configs;
mod duration;
mod etcd;
mod explain;
mod inspect;
mod man;
mod out;
mod render;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            out::warn(format_args!("{e:#}"));
            ExitCode::from(cmd::FAILED)
        }
    }
}
