//! Working on a disk network under the plugins' lock, waiting for it at most
//! `--lock-timeout`.
//!
//! The wait blocks in `flock(2)` like the plugins do, so ipamctl is in the
//! kernel's queue of waiters and is woken when the lock is released. Polling
//! a non-blocking lock instead starves under ADD/DEL churn: the lock is
//! free only for the instant between one holder's release and the next
//! waiter's wake-up, which a poller sleeping between attempts almost never
//! hits (issue 23 item 5: `list` took seconds and `show` timed out).
//!
//! A blocking flock cannot be given a deadline, so the session is opened on
//! a worker thread and the caller waits for it at most the timeout. A
//! worker still blocked then is abandoned: should it get the lock later it
//! drops it at once without doing the job (the decision is taken under a
//! mutex, so a job that started is always waited for, and one abandoned
//! never starts). ipamctl exits soon after, ending the thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use host_local::error::StoreError;
use host_local::store::disk::{DiskStore, LOCK_FILE};
use host_local::store::{Session, Store};

/// Whether the job may still start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Abandoned,
}

/// What the session is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: the session creates nothing (not even a missing lock file).
    Read,
    /// Removals through the plugin's own session (its index kept right).
    Change,
}

/// Runs `job` in a session of `<data_dir>/<network>` holding the lock,
/// waiting for the lock at most `timeout`. A timeout names the lock file and
/// its holder; the job's store errors are passed on.
pub fn in_session<T: Send + 'static>(
    data_dir: &Path,
    network: &str,
    access: Access,
    timeout: Duration,
    job: impl FnOnce(&mut dyn Session) -> Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    let lock_path = data_dir.join(network).join(LOCK_FILE);
    let state = Arc::new(Mutex::new(State::Waiting));
    let (tx, rx) = mpsc::channel();
    let worker_state = Arc::clone(&state);
    let (dir, net) = (data_dir.to_path_buf(), network.to_string());
    std::thread::Builder::new()
        .name(format!("lock {network}"))
        .spawn(move || {
            let mut store = DiskStore::new(dir, &net);
            let result = match access {
                Access::Read => store
                    .read_session()
                    .and_then(|mut s| start(&worker_state, &mut s, job)),
                Access::Change => store
                    .session()
                    .and_then(|mut s| start(&worker_state, s.as_mut(), job)),
            };
            // The caller may have given up: nobody to tell.
            let _ = tx.send(result);
        })
        .map_err(|e| anyhow!("starting a thread to wait for {}: {e}", lock_path.display()))?;
    let result = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(anyhow!(
                "waiting for lock {}: the worker ended",
                lock_path.display()
            ))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if *s == State::Running {
                // Got the lock just now: the job is short, wait for it.
                drop(s);
                rx.recv().map_err(|_| {
                    anyhow!("waiting for lock {}: the worker ended", lock_path.display())
                })?
            } else {
                *s = State::Abandoned;
                return Err(anyhow!("{}", timed_out(&lock_path)));
            }
        }
    };
    result.map_err(|e| anyhow!("{e}"))
}

/// On the worker, holding the lock: runs the job unless the caller gave up.
fn start<T>(
    state: &Mutex<State>,
    session: &mut dyn Session,
    job: impl FnOnce(&mut dyn Session) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        if *s == State::Abandoned {
            return Err(StoreError::LockTimeout {
                path: PathBuf::new(),
                holder_pid: None,
            });
        }
        *s = State::Running;
    }
    job(session)
}

/// The message for a lock not obtained in time: the lock file, and its
/// holder where /proc/locks shows one, with its command line.
fn timed_out(lock: &Path) -> String {
    let holder = holder_pid(lock)
        .map(|pid| match process_name(pid) {
            Some(cmd) => format!(" (held by PID {pid}: {cmd})"),
            None => format!(" (held by PID {pid})"),
        })
        .unwrap_or_default();
    format!("timed out waiting for lock {}{holder}", lock.display())
}

/// What process `pid` runs: its command line (at most 160 characters), else
/// its name; None when it is gone or hidden.
fn process_name(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let text = if text.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string()
    } else {
        text
    };
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    })
}

/// The PID holding a flock on `lock`, from /proc/locks (None when not found:
/// no procfs, the holder in another PID namespace, or just released).
fn holder_pid(lock: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(lock).ok()?;
    let dev = meta.dev();
    // The kernel's (glibc's) encoding of a dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    // /proc/locks is read in pages from a list other processes change
    // meanwhile: a line can be missed while locks come and go. Read again.
    (0..5).find_map(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let text = std::fs::read_to_string("/proc/locks").ok()?;
        find_holder(&text, major, minor, meta.ino())
    })
}

/// Lines like `1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF`; waiters
/// (`1: -> FLOCK ...`) are skipped. The device is `major:minor` in hex.
fn find_holder(text: &str, major: u64, minor: u64, ino: u64) -> Option<u32> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let at = fields.iter().position(|f| f.matches(':').count() == 2)?;
        let mut parts = fields[at].split(':');
        let (ma, mi, i) = (parts.next()?, parts.next()?, parts.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino;
        if !same {
            return None;
        }
        fields.get(at.checked_sub(1)?)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 77 08:01:99 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 5555 fd:01:1234 0 EOF\n";
        assert_eq!(find_holder(text, 0xfd, 1, 1234), Some(4242));
        assert_eq!(find_holder(text, 8, 1, 99), Some(77));
        assert_eq!(find_holder(text, 8, 1, 1234), None);
    }
}
