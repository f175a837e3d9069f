//! The *at() system calls the disk store needs, through `rustix` (no
//! `unsafe` here). Every path is relative to a directory descriptor and
//! never follows a symlink at the last component, so nothing planted in the
//! data directory can redirect a write. Every call is retried on EINTR, in
//! one place ([`retry`]), and errors come back as `std::io::Error`; match
//! them with [`errno`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Access, FileType};
pub use rustix::fs::{AtFlags, Mode, OFlags, Stat};
pub use rustix::io::Errno;

/// Runs a system call, again while it fails with EINTR.
fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// The errno behind an error from this module.
pub fn errno(e: &io::Error) -> Option<Errno> {
    Errno::from_io_error(e)
}

/// A permission mode from its octal bits.
pub fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits)
}

/// openat(2) with O_CLOEXEC added.
pub fn openat(dir: BorrowedFd<'_>, name: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    retry(|| rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, mode))
}

/// open(2) of an absolute or relative path with O_CLOEXEC added.
pub fn open_path(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    retry(|| rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty()))
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &str, mode: Mode) -> io::Result<()> {
    retry(|| rustix::fs::mkdirat(dir, name, mode))
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &str, flags: AtFlags) -> io::Result<()> {
    retry(|| rustix::fs::unlinkat(dir, name, flags))
}

pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    retry(|| rustix::fs::renameat(from_dir, from, to_dir, to))
}

/// linkat(2) of a named file; fails with EEXIST rather than replace.
pub fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    retry(|| rustix::fs::linkat(from_dir, from, to_dir, to, AtFlags::empty()))
}

/// Gives an O_TMPFILE file a name in `to_dir`; fails with EEXIST rather than
/// replace. Uses AT_EMPTY_PATH, or /proc/self/fd without the capability.
pub fn link_tmpfile(file: BorrowedFd<'_>, to_dir: BorrowedFd<'_>, to: &str) -> io::Result<()> {
    match retry(|| rustix::fs::linkat(file, "", to_dir, to, AtFlags::EMPTY_PATH)) {
        Ok(()) => return Ok(()),
        Err(e) if matches!(errno(&e), Some(Errno::PERM | Errno::NOENT | Errno::INVAL)) => {}
        Err(e) => return Err(e),
    }
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    retry(|| {
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            to_dir,
            to,
            AtFlags::SYMLINK_FOLLOW,
        )
    })
}

/// fstatat(2) without following a symlink at the last component.
pub fn lstatat(dir: BorrowedFd<'_>, name: &str) -> io::Result<Stat> {
    retry(|| rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW))
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    retry(|| rustix::fs::fstat(fd))
}

/// Whether `st` describes a regular file.
pub fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    retry(|| rustix::fs::fsync(fd))
}

/// Whether the directory could take a new file now: EROFS or EACCES when it
/// is read-only (for us), ENOSPC when its filesystem has no block or no
/// inode left (filesystems that report no totals are given the benefit).
pub fn can_create_in(dir: BorrowedFd<'_>) -> io::Result<()> {
    retry(|| {
        rustix::fs::accessat(
            dir,
            ".",
            Access::WRITE_OK | Access::EXEC_OK,
            AtFlags::EACCESS,
        )
    })?;
    let st = retry(|| rustix::fs::fstatvfs(dir))?;
    if (st.f_blocks > 0 && st.f_bfree == 0) || (st.f_files > 0 && st.f_ffree == 0) {
        return Err(Errno::NOSPC.into());
    }
    Ok(())
}

/// The coarse real-time clock file timestamps come from on kernels without
/// fine-grained (multigrain) timestamps.
pub fn coarse_now() -> (i64, i64) {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    (ts.tv_sec, ts.tv_nsec)
}

/// True on kernels (6.13 and later) whose ext4/xfs/btrfs/tmpfs give a changed
/// directory a ctime distinct from any ctime read before the change.
pub fn multigrain_timestamps() -> bool {
    let uname = rustix::system::uname();
    let rel = uname.release().to_string_lossy();
    let mut parts = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 13)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn errors_keep_their_errno() {
        let d = tempfile::tempdir().unwrap();
        let dir = open_path(d.path(), OFlags::RDONLY | OFlags::DIRECTORY).unwrap();
        std::os::unix::fs::symlink("/nonexistent", d.path().join("l")).unwrap();
        let e = openat(
            dir.as_fd(),
            "l",
            OFlags::RDONLY | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .unwrap_err();
        assert_eq!(errno(&e), Some(Errno::LOOP), "{e}");
        let e = openat(dir.as_fd(), "missing", OFlags::RDONLY, Mode::empty()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!is_regular(&lstatat(dir.as_fd(), "l").unwrap()));
        let f = openat(
            dir.as_fd(),
            "f",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            mode(0o600),
        )
        .unwrap();
        assert!(is_regular(&fstat(f.as_fd()).unwrap()));
        assert!(openat(dir.as_fd(), "a\0b", OFlags::RDONLY, Mode::empty()).is_err());
    }
}
