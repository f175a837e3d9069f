//! Waiting a bounded time for a lock file's flock (for callers that must
//! not hang behind a stuck holder, such as the operator CLI), and finding
//! the holder's PID in /proc/locks.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// Takes `lock`'s exclusive flock, waiting at most `timeout`.
pub(crate) fn lock_within(lock: &File, path: &Path, timeout: Duration) -> Result<(), StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", path, e)),
            Err(TryLockError::WouldBlock) => {}
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(StoreError::LockTimeout {
                path: path.to_path_buf(),
                holder_pid: holder_pid(lock),
            });
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The PID holding a lock on `lock`'s inode, from /proc/locks (None when
/// not found: no procfs, or the holder is in another PID namespace).
fn holder_pid(lock: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = lock.metadata().ok()?;
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    find_holder(
        &text,
        dev_major(meta.dev()),
        dev_minor(meta.dev()),
        meta.ino(),
    )
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
            Err(StoreError::LockTimeout { path, holder_pid }) => {
                assert_eq!(path, p);
                if Path::new("/proc/locks").exists() {
                    assert_eq!(holder_pid, Some(std::process::id()));
                }
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        lock_within(&other, &p, Duration::from_millis(30)).unwrap();
    }
}
