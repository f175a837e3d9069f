//! Opening the data and network directories (never following a symlink
//! at the network's name) and taking the network's exclusive lock.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::index::{boot_id, Index};
use super::session::DiskSession;
use super::sys::{Errno, Mode, OFlags};
use super::{sys, DiskStore, Prepared, INDEX_DIR, LOCK_FILE};
use crate::error::StoreError;

impl DiskStore {
    pub(super) fn open_dirs(&self, create: bool) -> Result<(OwnedFd, OwnedFd), StoreError> {
        if create {
            if let Err(e) = std::fs::create_dir_all(&self.data_dir) {
                return Err(StoreError::io("create data directory", &self.data_dir, e));
            }
        }
        let data = sys::open_path(&self.data_dir, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| StoreError::io("open data directory", &self.data_dir, e))?;
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
            _ => StoreError::io("open network directory", self.network_dir(), e),
        })?;
        Ok((data, net))
    }

    fn open_index(&self, data: BorrowedFd<'_>) -> Option<OwnedFd> {
        if !self.use_index {
            return None;
        }
        let open = |dir: BorrowedFd<'_>, name: &str| -> Option<OwnedFd> {
            match sys::mkdirat(dir, name, sys::mode(0o700)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
            sys::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .ok()
        };
        let root = open(data, INDEX_DIR)?;
        open(root.as_fd(), &self.network)
    }

    /// A session that only reads: it takes the lock but never creates the
    /// network directory or anything in it (for the operator CLI).
    pub fn read_session(&self) -> Result<DiskSession<'_>, StoreError> {
        self.start(false, None)
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
            Err(e) => return Err(StoreError::io("open lock", &lock_path, e)),
        };
        let lock = std::fs::File::from(lock_fd);
        lock.lock()
            .map_err(|e| StoreError::io("lock", &lock_path, e))?;
        Ok(lock)
    }

    /// `dirs`: the data and network directories when already open.
    pub(super) fn start(
        &self,
        create: bool,
        dirs: Option<(OwnedFd, OwnedFd)>,
    ) -> Result<DiskSession<'_>, StoreError> {
        let (data, net) = match dirs {
            Some(d) => d,
            None => self.open_dirs(create)?,
        };
        let lock = self.lock(net.as_fd(), create)?;
        let index_fd = if create {
            self.open_index(data.as_fd())
        } else {
            None
        };
        let mut s = DiskSession {
            store: self,
            net,
            _lock: lock,
            index: None,
            multigrain: sys::multigrain_timestamps(),
            boot_id: String::new(),
            prepared: std::cell::RefCell::new(Prepared::default()),
        };
        if let Some(fd) = index_fd {
            s.boot_id = boot_id();
            s.index = Some(Index {
                dir: fd,
                count: 0,
                valid: false,
            });
            // The index is a cache: when it cannot be brought up to date (a
            // full or read-only filesystem), work from the directory alone.
            if s.validate_index().is_err() {
                s.invalidate();
            }
        }
        Ok(s)
    }
}
