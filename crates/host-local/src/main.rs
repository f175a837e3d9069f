//! The `host-local` executable: the process boundary only.
//!
//! It links the disk store only ([`host_local::delegate`]); a call whose
//! configuration asks for the etcd store is handed, by `exec`, to
//! `host-local-etcd` beside this executable, with the same environment and
//! the same stdin (from a memfd).
//!
//! `#![no_main]`: the C runtime calls `main` below directly, skipping the Rust
//! runtime's start-up (it reads /proc/self/maps to locate the main thread's
//! guard page and installs stack-overflow signal handlers), which is a
//! measurable part of a call that is mostly process start. Nothing here needs
//! it: std's environment, stdin and stdout work without it, and panics abort.
//!
//! The one `unsafe` thing in the plugin: `#[no_mangle]` on that C entry
//! point, which the `unsafe_code` lint reports because an unmangled symbol
//! could clash with another of the same name. `main` is the symbol the C
//! runtime looks for and nothing else in the binary defines it; the body
//! itself is safe code. Everything else lives in the library, which forbids
//! `unsafe`.
#![no_main]
#![allow(unsafe_code)]

use std::io::{Seek, Write};
use std::os::raw::{c_char, c_int};
use std::os::unix::process::CommandExt;

use host_local::delegate::{self, Local};

/// The process entry point, called by the C runtime.
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let lookup = |k: &str| std::env::var_os(k);
    let served = match delegate::run_disk_only(&lookup, &mut std::io::stdin().lock()) {
        Local::Served(served) => served,
        Local::Etcd { stdin } => {
            // Returns only when the exec failed; the call then reports why.
            let reason = exec_etcd(&stdin);
            delegate::refuse_etcd(&lookup, &stdin, &reason)
        }
    };
    // Nothing is left to report a failed write to: the runtime reads the
    // exit status, which stays the call's own.
    let _ = served.write_to(&mut std::io::stdout().lock(), &mut std::io::stderr().lock());
    served.outcome.exit_code
}

/// Replaces this process with `host-local-etcd` from this executable's
/// directory (symlinks resolved), stdin refilled with `stdin`. Returns the
/// reason when that fails.
fn exec_etcd(stdin: &[u8]) -> String {
    let exe = match std::env::current_exe() {
        Ok(p) => p.with_file_name(delegate::ETCD_EXE),
        Err(e) => return format!("cannot locate this executable: {e}"),
    };
    let input = rustix::fs::memfd_create("host-local-stdin", rustix::fs::MemfdFlags::CLOEXEC)
        .map(std::fs::File::from)
        .map_err(std::io::Error::from)
        .and_then(|mut f| {
            f.write_all(stdin)?;
            f.rewind()?;
            Ok(f)
        });
    match input {
        Ok(f) => {
            let err = std::process::Command::new(&exe).stdin(f).exec();
            format!("{}: {err}", exe.display())
        }
        Err(e) => format!("memfd for {}'s stdin: {e}", exe.display()),
    }
}
