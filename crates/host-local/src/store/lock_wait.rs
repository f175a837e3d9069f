//! Waiting a bounded time for a lock file's flock (for callers that must
//! not hang behind a stuck holder, such as the operator CLI), and finding
//! the holder in /proc/locks.
//!
//! The wait blocks in `flock(2)` as the plugins do, so the caller is in the
//! kernel's queue of waiters and is woken when the lock is released. Polling
//! a non-blocking lock instead starves under ADD/DEL churn: the lock is free
//! only for the instant between one holder's release and the next waiter's
//! wake-up, which a poller sleeping between attempts almost never hits. A
//! blocking flock has no deadline, so it runs on a worker thread on a second
//! descriptor of the same open file (flock locks belong to the open file, so
//! the caller's descriptor holds the lock once the worker has it); a worker
//! still blocked at the deadline is abandoned, and should it get the lock
//! later it releases it at once. The decision is taken under a mutex: a lock
//! taken in time is never released behind the caller's back.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::StoreError;

/// Who gets the lock the worker takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Waiting,
    Taken,
    Abandoned,
}

/// Takes `lock`'s exclusive flock, waiting at most `timeout`.
pub(crate) fn lock_within(lock: &File, path: &Path, timeout: Duration) -> Result<(), StoreError> {
    match lock.try_lock() {
        Ok(()) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", path, e)),
        Err(std::fs::TryLockError::WouldBlock) => {}
    }
    let second = lock
        .try_clone()
        .map_err(|e| StoreError::io("lock", path, e))?;
    let state = Arc::new(Mutex::new(Wait::Waiting));
    let worker_state = Arc::clone(&state);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("lock wait".into())
        .spawn(move || {
            let got = second.lock();
            let mut s = worker_state.lock().unwrap_or_else(|p| p.into_inner());
            if got.is_ok() && *s == Wait::Abandoned {
                // The caller gave up: the lock is nobody's; an unlock that
                // fails is undone when this descriptor closes below.
                let _ = second.unlock();
            } else if got.is_ok() {
                *s = Wait::Taken;
            }
            drop(s);
            // The caller may have given up: nobody to tell.
            let _ = tx.send(got);
        })
        .map_err(|e| StoreError::io("start a thread to wait for lock", path, e))?;
    match rx.recv_timeout(timeout) {
        Ok(got) => got.map_err(|e| StoreError::io("lock", path, e)),
        Err(_) => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if *s == Wait::Taken {
                return Ok(()); // taken just now
            }
            *s = Wait::Abandoned;
            drop(s);
            let holder = holder_pid(lock);
            Err(StoreError::LockTimeout {
                path: path.to_path_buf(),
                holder_pid: holder,
                holder_command: holder.and_then(process_name),
            })
        }
    }
}

/// What process `pid` runs: its command line (at most 160 characters), else
/// its name; None when it is gone or hidden.
fn process_name(pid: u32) -> Option<String> {
    // Unreadable (gone, another namespace): the PID alone is reported.
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

/// The PID holding a lock on `lock`'s inode, from /proc/locks (None when
/// not found: no procfs, or the holder is in another PID namespace).
fn holder_pid(lock: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = lock.metadata().ok()?;
    // /proc/locks is read in pages from a list other processes change
    // meanwhile: a line can be missed while locks come and go. Read again.
    (0..5).find_map(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let text = std::fs::read_to_string("/proc/locks").ok()?;
        find_holder(
            &text,
            dev_major(meta.dev()),
            dev_minor(meta.dev()),
            meta.ino(),
        )
    })
}

// The kernel's (glibc's) encoding of a dev_t.
fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
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

    #[test]
    fn times_out_naming_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = File::create(&p).unwrap();
        held.lock().unwrap();
        let other = File::open(&p).unwrap();
        match lock_within(&other, &p, Duration::from_millis(30)) {
            Err(StoreError::LockTimeout {
                path,
                holder_pid,
                holder_command,
            }) => {
                assert_eq!(path, p);
                if Path::new("/proc/locks").exists() {
                    assert_eq!(holder_pid, Some(std::process::id()));
                    assert!(holder_command.is_some());
                }
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        // The abandoned waiter takes the lock when it is freed and lets it go.
        let third = File::open(&p).unwrap();
        let free = (0..400).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            third.try_lock().is_ok()
        });
        assert!(free, "an abandoned wait kept the lock");
        drop(third);
        lock_within(&other, &p, Duration::from_millis(30)).unwrap();
    }

    #[test]
    fn a_waiter_is_woken_when_the_holder_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = File::create(&p).unwrap();
        held.lock().unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        let other = File::open(&p).unwrap();
        lock_within(&other, &p, Duration::from_secs(20)).unwrap();
        releaser.join().unwrap();
        // The caller's descriptor holds it: another open file cannot take it.
        let third = File::open(&p).unwrap();
        assert!(third.try_lock().is_err());
    }
}
