//! The `host-local` executable without the etcd store.
//!
//! The etcd store's client (gRPC, TLS, an async runtime) is most of a binary
//! that carries it: 3.9 MB against 1.5 MB, and about 0.7 MiB more peak RSS per
//! call from its mapped pages, paid by every disk-store call too. So the
//! `host-local` executable links only the disk store, and a call whose
//! configuration asks for the etcd store (`ipam.store.type` `"etcd"`) is handed,
//! with the same environment and stdin, to [`ETCD_EXE`] in the same directory,
//! which has both stores (its `main` is [`crate::run`]).
//!
//! The decision is the plugin's own: the call runs here exactly as it would be
//! served, with its output held back, and this executable's store opener
//! ([`open_here`]) answers [`Error::HandOver`] for a configuration whose store
//! it does not link. By then nothing has been written or printed: the store
//! is opened before any other effect.

use std::io::{self, Read, Write};

use cni_proto::Outcome;

use crate::config::StoreConfig;
use crate::error::Error;
use crate::plugin::HostLocal;
use crate::store::{disk::DiskStore, Store};

/// The executable, beside `host-local`, that serves the etcd store.
pub const ETCD_EXE: &str = "host-local-etcd";

/// A call served by the disk-only plugin: its exit status and what it printed.
pub struct Served {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What [`run_disk_only`] did with a call.
pub enum Local {
    /// Served (or refused) here.
    Served(Served),
    /// The configuration asks for the etcd store: run [`ETCD_EXE`] with this
    /// stdin (all of it: the dispatcher reads stdin to its end first).
    Etcd { stdin: Vec<u8> },
}

/// The store opener of this executable: the disk store; every other store
/// is handed over.
pub fn open_here(cfg: &StoreConfig, network: &str) -> Result<Box<dyn Store>, Error> {
    match cfg {
        StoreConfig::Disk { data_dir } => Ok(Box::new(DiskStore::new(data_dir, network))),
        // Every other store is linked into the executable with all of them.
        other => Err(Error::HandOver {
            kind: other.kind(),
            exe: ETCD_EXE,
        }),
    }
}

/// Runs one call on the disk store, or says that it is the etcd store's.
pub fn run_disk_only(
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    stdin: &mut dyn Read,
) -> Local {
    let mut recorded = Recording {
        inner: stdin,
        seen: Vec::new(),
    };
    let mut plugin = HostLocal::new(Box::new(open_here));
    let served = serve(&mut plugin, lookup, &mut recorded);
    match plugin.handed_over() {
        Some(_) => Local::Etcd {
            stdin: recorded.seen,
        },
        None => Local::Served(served),
    }
}

/// Serves a call of the etcd store when [`ETCD_EXE`] could not be started
/// (`reason`, e.g. `/opt/cni/bin/host-local-etcd: No such file or directory`):
/// a code 7 error naming `ipam.store.type` and the reason; everything before
/// the store (VERSION, configuration errors) is answered as usual.
pub fn refuse_etcd(
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    stdin: &[u8],
    reason: &str,
) -> Served {
    let reason =
        format!("the etcd store is served by {ETCD_EXE}, which could not be run: {reason}");
    let mut plugin = HostLocal::new(Box::new(move |cfg: &StoreConfig, network: &str| {
        open_here(cfg, network).map_err(|e| match e {
            Error::HandOver { kind, .. } => Error::config("ipam.store.type", kind, reason.clone()),
            other => other,
        })
    }));
    serve(&mut plugin, lookup, &mut &stdin[..])
}

fn serve(
    plugin: &mut HostLocal,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    stdin: &mut dyn Read,
) -> Served {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let outcome = cni_proto::run(plugin, lookup, stdin, &mut stdout, &mut stderr);
    Served {
        outcome,
        stdout,
        stderr,
    }
}

/// A reader that keeps what it has read.
struct Recording<'a> {
    inner: &'a mut dyn Read,
    seen: Vec<u8>,
}

impl Read for Recording<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Served {
    /// Writes the call's output to the process's streams.
    pub fn write_to(&self, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<()> {
        stdout.write_all(&self.stdout)?;
        stdout.flush()?;
        stderr.write_all(&self.stderr)?;
        stderr.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::tests::cni_env as env;

    fn conf(store: &str, dir: &std::path::Path) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{{"type":"host-local",
            "subnet":"10.5.0.0/24","dataDir":"{}"{store}}}}}"#,
            dir.display()
        )
    }

    #[test]
    fn etcd_configs_are_handed_over_with_all_of_stdin_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        // Key case as Go reads it: the decision is the plugin's own decoding.
        let text = conf(
            r#","Store":{"type":"etcd","endpoints":["http://127.0.0.1:1"]}"#,
            dir.path(),
        );
        match run_disk_only(&env("ADD"), &mut text.as_bytes()) {
            Local::Etcd { stdin } => assert_eq!(stdin, text.as_bytes()),
            Local::Served(s) => panic!("served: {}", String::from_utf8_lossy(&s.stdout)),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn disk_configs_are_served_here() {
        let dir = tempfile::tempdir().unwrap();
        for store in ["", r#","store":{"type":"disk"}"#, r#","store":null"#] {
            let text = conf(store, dir.path());
            let Local::Served(s) = run_disk_only(&env("DEL"), &mut text.as_bytes()) else {
                panic!("handed over: {store}");
            };
            assert_eq!(
                s.outcome.exit_code,
                0,
                "{}",
                String::from_utf8_lossy(&s.stdout)
            );
        }
    }

    #[test]
    fn a_failed_hand_over_is_a_config_error_naming_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let text = conf(
            r#","store":{"type":"etcd","endpoints":["http://127.0.0.1:1"],"node":"n"}"#,
            dir.path(),
        );
        let s = refuse_etcd(
            &env("ADD"),
            text.as_bytes(),
            "/x/host-local-etcd: No such file",
        );
        assert_eq!(s.outcome.exit_code, 1);
        let err: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
        assert_eq!(err["code"], 7);
        let msg = err["msg"].as_str().unwrap();
        assert!(
            msg.contains("ipam.store.type") && msg.contains("/x/host-local-etcd: No such file"),
            "{msg}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
