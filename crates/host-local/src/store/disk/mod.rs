//! The disk store, in exactly the reference's layout:
//!
//! ```text
//! <dataDir>/<network>/lock                 empty; flock'ed by every operation
//! <dataDir>/<network>/<address>            "<containerID>\r\n<ifname>" (or "<containerID>")
//! <dataDir>/<network>/last_reserved_ip.<n> the last address handed out in range set n
//! ```
//!
//! Crash safety: a reservation's content is written and fsynced in an
//! unnamed O_TMPFILE, then linked under its address (link never replaces),
//! then the directory is fsynced; the cursor is replaced by rename. No crash
//! leaves a named file in the network directory that names no attachment.
//!
//! Flat cost: an index outside the network directory
//! (`<dataDir>/.host-local-rs/<network>/`) maps container IDs to their
//! addresses in 256 hashed bucket files and keeps the reservation count. The
//! directory stays the source of truth: a `stamp` file records the network
//! directory's identity and change time (ctime, mtime, inode, device) and the
//! boot ID as of the index's last update; any other change to the directory
//! (the reference plugin, an operator, a crash mid-operation, a reboot after
//! power loss) makes the stamp disagree and the index is rebuilt from the
//! directory before use. Entries read from the index are verified against
//! the reservation file before they are acted on.
//!
//! The module by concern: `open` opens the directories and takes the lock,
//! `session` reads and commits under it, `files` holds the crash-safe file
//! writes, `index` the index cache.

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::sys;
use super::sys::OFlags;
use super::{Attachment, Session, Store};
use crate::error::StoreError;

mod files;
mod index;
mod open;
mod session;
#[cfg(test)]
mod tests;

pub use session::DiskSession;

/// The reference's cursor file prefix.
pub const CURSOR_PREFIX: &str = "last_reserved_ip.";
/// The lock file's name.
pub const LOCK_FILE: &str = "lock";
/// The index root inside the data directory. Network names start with an
/// alphanumeric character, so no network can be called this.
pub const INDEX_DIR: &str = ".host-local-rs";
/// Reservation files larger than this are damaged, never read whole.
pub const MAX_RESERVATION_SIZE: u64 = 4096;
pub(super) const STAMP: &str = "stamp";
/// The spare cursor file (see `write_cursor`) and the old cursor's link.
pub(super) const CURSOR_SPARE: &str = "cursor.spare";
pub(super) const CURSOR_OLD: &str = "cursor.old";
pub(super) const STAMP_MAGIC: &str = "hlrs1";
pub(super) const MAX_BUCKET_SIZE: u64 = 64 << 20;

/// A store for one network in `<data_dir>/<network>`.
#[derive(Debug)]
pub struct DiskStore {
    data_dir: PathBuf,
    network: String,
    use_index: bool,
    /// Unnamed reservation files written and fsynced before the lock.
    prepared: Prepared,
}

/// O_TMPFILE inodes holding `content`, written and fsynced by `prepare`.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    pub(super) content: Vec<u8>,
    pub(super) files: Vec<std::fs::File>,
    /// The data and network directories `prepare` opened, for the session.
    pub(super) dirs: Option<(OwnedFd, OwnedFd)>,
}

impl DiskStore {
    /// `network` must already be validated (it becomes a directory name).
    pub fn new(data_dir: impl Into<PathBuf>, network: &str) -> Self {
        DiskStore {
            data_dir: data_dir.into(),
            network: network.to_string(),
            use_index: true,
            prepared: Prepared::default(),
        }
    }

    /// A store that scans the directory on every call, like the reference.
    pub fn without_index(mut self) -> Self {
        self.use_index = false;
        self
    }

    /// `<dataDir>/<network>`.
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join(&self.network)
    }

    pub(super) fn index_path(&self) -> PathBuf {
        self.data_dir.join(INDEX_DIR).join(&self.network)
    }
}

impl Store for DiskStore {
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        let mut prepared = std::mem::take(&mut self.prepared);
        let s = self.start(true, prepared.dirs.take())?;
        *s.prepared.borrow_mut() = prepared;
        Ok(Box::new(s))
    }

    /// Writes and fsyncs `count` unnamed (O_TMPFILE) reservation files for
    /// the attachment before the lock is taken: concurrent ADDs then do their
    /// data writes and file fsyncs in parallel, and the journal batches their
    /// commits, instead of one after the other under the lock. `commit`
    /// links them. Unused ones vanish when closed. Best effort: on any
    /// failure `commit` writes its own and reports what fails.
    fn prepare(&mut self, att: &Attachment, count: usize) {
        let Some(content) = att.owner().to_content() else {
            return;
        };
        let Ok((data, net)) = self.open_dirs(true) else {
            return;
        };
        let mut files = Vec::with_capacity(count);
        for _ in 0..count.min(16) {
            let Ok(fd) = sys::openat(
                net.as_fd(),
                ".",
                OFlags::TMPFILE | OFlags::WRONLY,
                sys::mode(0o600),
            ) else {
                break;
            };
            let mut f = std::fs::File::from(fd);
            if f.write_all(content.as_bytes())
                .and_then(|_| sys::fsync(f.as_fd()))
                .is_err()
            {
                break;
            }
            files.push(f);
        }
        self.prepared = Prepared {
            content: content.into_bytes(),
            files,
            dirs: Some((data, net)),
        };
    }
}

/// True for names that are addresses in canonical text form.
pub fn parse_reservation_name(name: &str) -> Option<IpAddr> {
    let ip: IpAddr = name.parse().ok()?;
    (ip.to_string() == name).then_some(ip)
}
