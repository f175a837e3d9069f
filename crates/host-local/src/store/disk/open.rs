//! Opening the data and network directories (never following a symlink
//! at the network's name), preparing an ADD's files before the lock, and
//! taking the network's exclusive lock: everything that starts a session.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use super::dir::NetDir;
use super::files::tmpfile;
use super::index::Index;
use super::session::{DiskSession, Prepared};
use crate::error::{Missing, StoreError};
use crate::store::sys::{self, Errno, Mode, OFlags};

/// The lock file's name.
pub const LOCK_FILE: &str = "lock";

/// Where a network's store is and how its sessions start.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub data_dir: PathBuf,
    pub network: String,
    pub use_index: bool,
    /// Wait at most this long for the lock (None: as long as it takes).
    pub lock_timeout: Option<Duration>,
}

impl Layout {
    /// `<dataDir>/<network>`.
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join(&self.network)
    }

    fn open_dirs(&self, create: bool) -> Result<(OwnedFd, NetDir), StoreError> {
        if create {
            if let Err(e) = std::fs::create_dir_all(&self.data_dir) {
                return Err(StoreError::io("create data directory", &self.data_dir, e));
            }
        }
        let absent = |e: &io::Error| !create && e.kind() == io::ErrorKind::NotFound;
        let no_store = || StoreError::NoStore {
            path: self.network_dir(),
            missing: Missing::Network,
        };
        let data =
            sys::open_path(&self.data_dir, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| {
                match absent(&e) {
                    true => no_store(),
                    false => StoreError::io("open data directory", &self.data_dir, e),
                }
            })?;
        if create {
            match sys::mkdirat(data.as_fd(), &self.network, sys::mode(0o755)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::io(
                        "create network directory",
                        self.network_dir(),
                        e,
                    ))
                }
            }
        }
        let net = sys::openat(
            data.as_fd(),
            &self.network,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| match sys::errno(&e) {
            Some(Errno::LOOP | Errno::NOTDIR) => StoreError::Unsafe {
                path: self.network_dir(),
                reason: "is not a directory (a symlink or a file); refusing to use it".into(),
            },
            _ if absent(&e) => no_store(),
            _ => StoreError::io("open network directory", self.network_dir(), e),
        })?;
        Ok((data, NetDir::new(net, self.network_dir())))
    }

    /// Opens `lock` in the network directory (created when `create`; read
    /// only on a read-only filesystem; never through a symlink) and takes
    /// its exclusive flock, waiting for it. The one place the lock is taken:
    /// a timeout or a report of the holder belongs here.
    fn lock(&self, net: BorrowedFd<'_>, create: bool) -> Result<std::fs::File, StoreError> {
        let lock_path = self.network_dir().join(LOCK_FILE);
        let flags = OFlags::RDWR
            | OFlags::NOFOLLOW
            | if create {
                OFlags::CREATE
            } else {
                OFlags::empty()
            };
        let lock_fd = match sys::openat(net, LOCK_FILE, flags, sys::mode(0o750)) {
            Ok(fd) => fd,
            Err(e) if matches!(sys::errno(&e), Some(Errno::ROFS | Errno::ACCESS)) => sys::openat(
                net,
                LOCK_FILE,
                OFlags::RDONLY | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| StoreError::io("open lock", &lock_path, e))?,
            Err(e) if sys::errno(&e) == Some(Errno::LOOP) => {
                return Err(StoreError::Unsafe {
                    path: lock_path,
                    reason: "is a symlink; refusing to follow it".into(),
                })
            }
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoStore {
                    path: lock_path,
                    missing: Missing::Lock,
                })
            }
            Err(e) => return Err(StoreError::io("open lock", &lock_path, e)),
        };
        let lock = std::fs::File::from(lock_fd);
        match self.lock_timeout {
            Some(t) => crate::store::lock_wait::lock_within(&lock, &lock_path, t)?,
            None => lock
                .lock()
                .map_err(|e| StoreError::io("lock", &lock_path, e))?,
        }
        Ok(lock)
    }

    /// A session. With `create`, the directories, the lock file and the
    /// index are created as needed; without, nothing is (a session that
    /// only reads, for the operator CLI). `prepare`: the content and number
    /// of reservation files to write and fsync before the lock is taken, so
    /// concurrent ADDs do their data writes and file fsyncs in parallel and
    /// the journal batches their commits (best effort: the commit writes
    /// its own for any missing).
    pub fn start(
        &self,
        create: bool,
        prepare: Option<(Vec<u8>, usize)>,
    ) -> Result<DiskSession, StoreError> {
        let (data, net) = self.open_dirs(create)?;
        let mut prepared = Prepared::default();
        if let Some((content, count)) = prepare {
            for _ in 0..count.min(16) {
                // A failure here is met again, and reported, by the commit.
                let Ok(f) = tmpfile(net.fd(), &content) else {
                    break;
                };
                prepared.files.push(f);
            }
            prepared.content = content;
        }
        let lock = self.lock(net.fd(), create)?;
        let index = if create && self.use_index {
            Index::open(data.as_fd(), &self.data_dir, &self.network, &net)
        } else {
            None
        };
        Ok(DiskSession::new(net, lock, index, prepared))
    }
}
