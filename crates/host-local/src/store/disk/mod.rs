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
//! The module by concern, each using only the ones after it: `open` opens
//! the directories, prepares an ADD's files and takes the lock; `session`
//! reads and commits under it; `index` is the index cache; `files` holds the
//! crash-safe writes and `dir` the network directory's reads; `record` is
//! the reservation file's content.

use std::path::PathBuf;

use super::{Attachment, Session, Store};
use crate::error::StoreError;

mod dir;
mod files;
mod index;
mod open;
mod record;
mod session;
#[cfg(test)]
mod tests;

pub use dir::{parse_reservation_name, CURSOR_PREFIX, MAX_RESERVATION_SIZE};
pub use index::INDEX_DIR;
pub use open::LOCK_FILE;
pub use record::{encode as encode_owner, parse as parse_owner};
pub use session::DiskSession;

/// A store for one network in `<data_dir>/<network>`.
#[derive(Debug)]
pub struct DiskStore {
    layout: open::Layout,
}

impl DiskStore {
    /// `network` must already be validated (it becomes a directory name).
    pub fn new(data_dir: impl Into<PathBuf>, network: &str) -> Self {
        DiskStore {
            layout: open::Layout {
                data_dir: data_dir.into(),
                network: network.to_string(),
                use_index: true,
                lock_timeout: None,
            },
        }
    }

    /// Sessions wait at most `timeout` for the lock, then fail with
    /// [`StoreError::LockTimeout`] (for the operator CLI; the plugin waits).
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.layout.lock_timeout = Some(timeout);
        self
    }

    /// A store that scans the directory on every call, like the reference.
    pub fn without_index(mut self) -> Self {
        self.layout.use_index = false;
        self
    }

    /// `<dataDir>/<network>`.
    pub fn network_dir(&self) -> PathBuf {
        self.layout.network_dir()
    }

    /// A session that only reads: it takes the lock but never creates the
    /// network directory or anything in it (for the operator CLI).
    pub fn read_session(&self) -> Result<DiskSession, StoreError> {
        self.layout.start(false, None)
    }
}

impl Store for DiskStore {
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(self.layout.start(true, None)?))
    }

    /// Writes and fsyncs `count` unnamed (O_TMPFILE) reservation files for
    /// the attachment before the lock is taken, for the commit to link.
    fn add_session(
        &mut self,
        att: &Attachment,
        count: usize,
    ) -> Result<Box<dyn Session + '_>, StoreError> {
        let content = record::encode(&att.owner()).map(String::into_bytes);
        Ok(Box::new(
            self.layout.start(true, content.map(|c| (c, count)))?,
        ))
    }

    fn read_session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(self.layout.start(false, None)?))
    }

    fn location(&self) -> String {
        self.layout.network_dir().display().to_string()
    }
}
