//! The `host-local` executable: the process boundary only.
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

use std::os::raw::{c_char, c_int};

/// The process entry point, called by the C runtime.
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let lookup = |k: &str| std::env::var_os(k);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let outcome = host_local::run(
        &lookup,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    // Without the Rust runtime nothing flushes std's buffers at exit.
    use std::io::Write;
    let _ = stdout.lock().flush();
    let _ = stderr.lock().flush();
    outcome.exit_code
}
