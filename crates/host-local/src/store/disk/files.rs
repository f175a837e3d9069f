//! Crash-safe writes in the network directory: reservations created
//! (O_TMPFILE, written and fsynced, then linked: never replacing), cursors
//! replaced by rename, names removed. See docs/crash-safety.md.

use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::dir::{write_in_place, write_replace, NetDir, CURSOR_PREFIX};
use crate::error::StoreError;
use crate::store::sys::{self, AtFlags, Errno, OFlags};

/// The spare cursor file (see `write_cursor`) and the old cursor's link.
const CURSOR_SPARE: &str = "cursor.spare";
const CURSOR_OLD: &str = "cursor.old";

/// A directory on the network directory's filesystem but outside it (the
/// index's), for temporary files: nothing stray is ever left in the network
/// directory.
#[derive(Clone, Copy)]
pub(super) struct Aux<'a> {
    pub fd: BorrowedFd<'a>,
    pub path: &'a Path,
}

/// An unnamed reservation file (O_TMPFILE) holding `content`, written and
/// fsynced: linking it under an address is the whole of a reservation.
pub(super) fn tmpfile(net: BorrowedFd<'_>, content: &[u8]) -> io::Result<std::fs::File> {
    let fd = sys::openat(net, ".", OFlags::TMPFILE | OFlags::WRONLY, sys::mode(0o600))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(content)?;
    sys::fsync(f.as_fd())?;
    Ok(f)
}

impl NetDir {
    /// Creates `name` holding `content`, crash-safely, never replacing.
    /// `ready`: an unnamed file already holding `content` (written and
    /// fsynced before the lock).
    pub(super) fn create_reservation(
        &self,
        name: &str,
        content: &[u8],
        ready: Option<std::fs::File>,
        aux: Option<Aux<'_>>,
    ) -> Result<(), StoreError> {
        let path = self.path(name);
        if let Some(f) = ready {
            return sys::link_tmpfile(f.as_fd(), self.fd(), name)
                .map_err(|e| link_err(e, name, &path));
        }
        match sys::openat(
            self.fd(),
            ".",
            OFlags::TMPFILE | OFlags::WRONLY,
            sys::mode(0o600),
        ) {
            Ok(fd) => {
                let mut f = std::fs::File::from(fd);
                f.write_all(content)
                    .and_then(|_| sys::fsync(f.as_fd()))
                    .map_err(|e| StoreError::io("write reservation", &path, e))?;
                return sys::link_tmpfile(f.as_fd(), self.fd(), name)
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
        if let Some(aux) = aux {
            let tmp = format!(".tmp-res-{}", std::process::id());
            // A leftover of a crashed process with our PID: gone or not, the
            // exclusive create below says.
            let _ = sys::unlinkat(aux.fd, &tmp, AtFlags::empty());
            let fd = sys::openat(
                aux.fd,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                sys::mode(0o600),
            )
            .map_err(|e| StoreError::io("create temporary", aux.path.join(&tmp), e))?;
            let mut f = std::fs::File::from(fd);
            let written = f.write_all(content).and_then(|_| sys::fsync(f.as_fd()));
            let linked = match written {
                Err(e) => {
                    // The write's error is the one reported; a temporary left
                    // behind is removed by the next index rebuild.
                    let _ = sys::unlinkat(aux.fd, &tmp, AtFlags::empty());
                    return Err(StoreError::io("write reservation", &path, e));
                }
                Ok(()) => sys::linkat(aux.fd, &tmp, self.fd(), name),
            };
            // Linked or not, the temporary name is no longer needed (see above).
            let _ = sys::unlinkat(aux.fd, &tmp, AtFlags::empty());
            match linked {
                Ok(()) => return Ok(()),
                // The network directory is a mount of its own: last resort below.
                Err(e) if sys::errno(&e) == Some(Errno::XDEV) => {}
                Err(e) => return Err(link_err(e, name, &path)),
            }
        }
        // Last resort, the reference's way: exclusive create, then write.
        let fd = sys::openat(
            self.fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            sys::mode(0o600),
        )
        .map_err(|e| link_err(e, name, &path))?;
        let mut f = std::fs::File::from(fd);
        if let Err(e) = f.write_all(content).and_then(|_| sys::fsync(f.as_fd())) {
            // The write's error is the one reported; an empty file left
            // behind would be a damaged reservation, which GC reclaims.
            let _ = sys::unlinkat(self.fd(), name, AtFlags::empty());
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
    pub(super) fn write_cursor(
        &self,
        set_index: usize,
        ip: IpAddr,
        aux: Option<Aux<'_>>,
    ) -> Result<(), StoreError> {
        let name = format!("{CURSOR_PREFIX}{set_index}");
        let path = self.path(&name);
        let text = ip.to_string();
        let in_net = || write_replace(self.fd(), self.fd(), &name, text.as_bytes());
        let Some(aux) = aux else {
            return in_net().map_err(|e| StoreError::io("write cursor", path, e));
        };
        let dir = aux.fd;
        let swap = || -> io::Result<()> {
            write_in_place(dir, CURSOR_SPARE, text.as_bytes())?;
            let keep_old = matches!(sys::lstatat(self.fd(), &name),
                Ok(st) if sys::is_regular(&st));
            if keep_old {
                // A stale link from an interrupted swap; linkat says if it stayed.
                let _ = sys::unlinkat(dir, CURSOR_OLD, AtFlags::empty());
                sys::linkat(self.fd(), &name, dir, CURSOR_OLD)?;
            }
            sys::renameat(dir, CURSOR_SPARE, self.fd(), &name)?;
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
            if let Err(e) = sys::unlinkat(self.fd(), name, AtFlags::empty()) {
                undo.push(StoreError::io("remove reservation", self.path(name), e));
            }
        }
        if !made.is_empty() {
            if let Err(e) = self.fsync() {
                undo.push(e);
            }
        }
        undo
    }

    pub(super) fn fsync(&self) -> Result<(), StoreError> {
        sys::fsync(self.fd()).map_err(|e| StoreError::io("fsync", self.dir_path(), e))
    }

    /// Removes what is at `name`: a file, or a directory in a reservation's place.
    pub(super) fn remove_name(&self, name: &str) -> Result<(), StoreError> {
        match sys::unlinkat(self.fd(), name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(e) if sys::errno(&e) == Some(Errno::ISDIR) => {
                sys::unlinkat(self.fd(), name, AtFlags::REMOVEDIR).map_err(|e| {
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

fn link_err(e: io::Error, name: &str, path: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::AlreadyExists {
        match name.parse() {
            Ok(ip) => StoreError::Conflict { ip },
            Err(_) => StoreError::io("link reservation", path, e),
        }
    } else {
        StoreError::io("link reservation", path, e)
    }
}
