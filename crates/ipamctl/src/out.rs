//! Writing to stdout and stderr. A closed stdout (`ipamctl show | head -1`)
//! ends the output quietly: later writes are skipped and the command keeps
//! its exit status; any other write error is reported.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::report::SCHEMA;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout.
pub fn print(text: &str) -> Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// One JSON document: `{"schema", "command", ...body}`.
pub fn json<T: Serialize>(command: &str, body: &T) -> Result<()> {
    #[derive(Serialize)]
    struct Envelope<'a, T: Serialize> {
        schema: u32,
        command: &'a str,
        #[serde(flatten)]
        body: &'a T,
    }
    let text = serde_json::to_string_pretty(&Envelope {
        schema: SCHEMA,
        command,
        body,
    })
    .context("serialising the JSON output")?;
    print(&(text + "\n"))
}

/// A message on stderr. A failure to write it is ignored: there is nowhere
/// left to report it.
pub fn warn(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "ipamctl: {msg}");
}
