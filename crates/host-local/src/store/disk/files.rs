//! Crash-safe file writes in the network directory: reservations created
//! (O_TMPFILE, written and fsynced, then linked: never replacing), cursors
//! replaced by rename, and the small-file reads and in-place writes the
//! index uses. See docs/crash-safety.md.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::session::DiskSession;
use super::sys::{AtFlags, Errno, Mode, OFlags};
use super::{sys, CURSOR_OLD, CURSOR_PREFIX, CURSOR_SPARE};
use crate::error::StoreError;

impl DiskSession<'_> {
    /// Creates `name` holding `content`, crash-safely, never replacing.
    pub(super) fn create_reservation(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name);
        let ready = {
            let mut p = self.prepared.borrow_mut();
            if p.content == content {
                p.files.pop()
            } else {
                None
            }
        };
        if let Some(f) = ready {
            // Written and fsynced by `DiskStore::prepare`.
            return sys::link_tmpfile(f.as_fd(), self.net.as_fd(), name)
                .map_err(|e| link_err(e, name, &path));
        }
        match sys::openat(
            self.net.as_fd(),
            ".",
            OFlags::TMPFILE | OFlags::WRONLY,
            sys::mode(0o600),
        ) {
            Ok(fd) => {
                let mut f = std::fs::File::from(fd);
                f.write_all(content)
                    .and_then(|_| sys::fsync(f.as_fd()))
                    .map_err(|e| StoreError::io("write reservation", &path, e))?;
                return sys::link_tmpfile(f.as_fd(), self.net.as_fd(), name)
                    .map_err(|e| link_err(e, name, &path));
            }
            Err(e)
                if matches!(
                    sys::errno(&e),
                    Some(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL)
                ) => {}
            Err(e) => return Err(StoreError::io("create reservation", &path, e)),
        }
        // No O_TMPFILE here: write a temporary file in the index directory
        // (same filesystem, outside the network directory), then link it.
        if let Some(idx) = &self.index {
            let tmp = format!(".tmp-res-{}", std::process::id());
            let _ = sys::unlinkat(idx.dir.as_fd(), &tmp, AtFlags::empty());
            let fd = sys::openat(
                idx.dir.as_fd(),
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                sys::mode(0o600),
            )
            .map_err(|e| {
                StoreError::io("create temporary", self.store.index_path().join(&tmp), e)
            })?;
            let mut f = std::fs::File::from(fd);
            let written = f.write_all(content).and_then(|_| sys::fsync(f.as_fd()));
            let linked = match written {
                Err(e) => {
                    let _ = sys::unlinkat(idx.dir.as_fd(), &tmp, AtFlags::empty());
                    return Err(StoreError::io("write reservation", &path, e));
                }
                Ok(()) => sys::linkat(idx.dir.as_fd(), &tmp, self.net.as_fd(), name),
            };
            let _ = sys::unlinkat(idx.dir.as_fd(), &tmp, AtFlags::empty());
            match linked {
                Ok(()) => return Ok(()),
                // The network directory is a mount of its own: last resort below.
                Err(e) if sys::errno(&e) == Some(Errno::XDEV) => {}
                Err(e) => return Err(link_err(e, name, &path)),
            }
        }
        // Last resort, the reference's way: exclusive create, then write.
        let fd = sys::openat(
            self.net.as_fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            sys::mode(0o600),
        )
        .map_err(|e| link_err(e, name, &path))?;
        let mut f = std::fs::File::from(fd);
        if let Err(e) = f.write_all(content).and_then(|_| sys::fsync(f.as_fd())) {
            let _ = sys::unlinkat(self.net.as_fd(), name, AtFlags::empty());
            return Err(StoreError::io("write reservation", &path, e));
        }
        Ok(())
    }

    /// Replaces `last_reserved_ip.<n>` atomically (rename), without the
    /// costs of a fresh temporary each time: the new value is written in
    /// place into a spare file kept in the index directory, the current
    /// cursor is hard-linked there first (so the rename frees no inode and no
    /// block, which ext4 does synchronously, about 0.2 ms), the spare is
    /// renamed over the cursor, and the old cursor becomes the next spare. A
    /// process killed at any point leaves the old or the new cursor, never a
    /// mix, and nothing stray in the network directory. (The cursor is only a
    /// round-robin hint: after a power loss it may hold an older value.)
    pub(super) fn write_cursor(&self, set_index: usize, ip: IpAddr) -> Result<(), StoreError> {
        let name = format!("{CURSOR_PREFIX}{set_index}");
        let path = self.path(&name);
        let text = ip.to_string();
        let in_net = || write_replace(self.net.as_fd(), self.net.as_fd(), &name, text.as_bytes());
        let Some(idx) = &self.index else {
            return in_net().map_err(|e| StoreError::io("write cursor", path, e));
        };
        let dir = idx.dir.as_fd();
        let swap = || -> io::Result<()> {
            write_in_place(dir, CURSOR_SPARE, text.as_bytes())?;
            let keep_old = matches!(sys::lstatat(self.net.as_fd(), &name),
                Ok(st) if sys::is_regular(&st));
            if keep_old {
                let _ = sys::unlinkat(dir, CURSOR_OLD, AtFlags::empty());
                sys::linkat(self.net.as_fd(), &name, dir, CURSOR_OLD)?;
            }
            sys::renameat(dir, CURSOR_SPARE, self.net.as_fd(), &name)?;
            if keep_old {
                sys::renameat(dir, CURSOR_OLD, dir, CURSOR_SPARE)?;
            }
            Ok(())
        };
        swap()
            .or_else(|e| match sys::errno(&e) {
                // The network directory is a mount of its own.
                Some(Errno::XDEV) => in_net(),
                _ => Err(e),
            })
            .map_err(|e| StoreError::io("write cursor", path, e))
    }

    /// Unlinks the names a failed commit made and fsyncs the directory;
    /// every failure is returned.
    pub(super) fn unlink_all(&self, made: &[String]) -> Vec<StoreError> {
        let mut undo = Vec::new();
        for name in made {
            if let Err(e) = sys::unlinkat(self.net.as_fd(), name, AtFlags::empty()) {
                undo.push(StoreError::io("remove reservation", self.path(name), e));
            }
        }
        if !made.is_empty() {
            if let Err(e) = self.fsync_dir() {
                undo.push(e);
            }
        }
        undo
    }

    pub(super) fn fsync_dir(&self) -> Result<(), StoreError> {
        sys::fsync(self.net.as_fd())
            .map_err(|e| StoreError::io("fsync", self.store.network_dir(), e))
    }

    pub(super) fn remove_name(&self, name: &str) -> Result<(), StoreError> {
        match sys::unlinkat(self.net.as_fd(), name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(e) if sys::errno(&e) == Some(Errno::ISDIR) => {
                sys::unlinkat(self.net.as_fd(), name, AtFlags::REMOVEDIR).map_err(|e| {
                    StoreError::io(
                        "remove directory in place of reservation",
                        self.path(name),
                        e,
                    )
                })
            }
            Err(e) => Err(StoreError::io("remove reservation", self.path(name), e)),
        }
    }
}

/// `e`, or `e` with every failure of undoing what led to it.
pub(super) fn with_undo(e: StoreError, undo: Vec<StoreError>) -> StoreError {
    if undo.is_empty() {
        e
    } else {
        StoreError::Undo {
            source: Box::new(e),
            undo,
        }
    }
}

pub(super) fn link_err(e: io::Error, name: &str, path: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::AlreadyExists {
        match name.parse() {
            Ok(ip) => StoreError::Conflict { ip },
            Err(_) => StoreError::io("link reservation", path, e),
        }
    } else {
        StoreError::io("link reservation", path, e)
    }
}

/// Reads a small file at `name` (None when missing), refusing symlinks and
/// anything larger than `max`.
pub(super) fn read_small(dir: BorrowedFd<'_>, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    let fd = match sys::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = sys::fstat(fd.as_fd())?;
    if !sys::is_regular(&st) || st.st_size as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a small regular file",
        ));
    }
    let mut buf = Vec::with_capacity(st.st_size as usize);
    std::fs::File::from(fd).take(max).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// Overwrites the index file `dir/name` with `data` in place (pwrite, then
/// ftruncate to the new length; never truncating to zero, which would make
/// ext4 flush the file on close). Not atomic, and it need not be: index files
/// are only trusted when the stamp, written last, matches the network
/// directory, and every change to that directory happens before its index
/// update, so a crash in between leaves a stamp that no longer matches.
pub(super) fn write_in_place(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let fd = sys::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW,
        sys::mode(0o600),
    )?;
    let f = std::fs::File::from(fd);
    f.write_all_at(data, 0)?;
    f.set_len(data.len() as u64)
}

/// Replaces `to_dir/name` atomically with `data`: a temporary file in
/// `tmp_dir` (same filesystem) renamed over it. A symlink at `name` is
/// replaced, never followed.
pub(super) fn write_replace(
    tmp_dir: BorrowedFd<'_>,
    to_dir: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let tmp = format!(".tmp-{}-{name}", std::process::id());
    let _ = sys::unlinkat(tmp_dir, &tmp, AtFlags::empty());
    let fd = sys::openat(
        tmp_dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
        sys::mode(0o600),
    )?;
    let mut f = std::fs::File::from(fd);
    if let Err(e) = f
        .write_all(data)
        .and_then(|_| sys::renameat(tmp_dir, &tmp, to_dir, name))
    {
        let _ = sys::unlinkat(tmp_dir, &tmp, AtFlags::empty());
        return Err(e);
    }
    Ok(())
}
