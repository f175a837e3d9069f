//! Thin, checked wrappers over the *at() system calls the disk store needs.
//! Every path is relative to a directory descriptor and never follows a
//! symlink at the last component, so nothing planted in the data directory
//! can redirect a write.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// openat(2) with O_CLOEXEC added.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &str,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    loop {
        // SAFETY: c is a valid NUL-terminated string, dir a valid descriptor.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just returned by openat and is owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// open(2) of an absolute or relative path with O_CLOEXEC added.
pub fn open_path(path: &std::path::Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: c is a valid NUL-terminated string.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &str, mode: libc::mode_t) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: valid string and descriptor.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(|_| ())
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: valid string and descriptor.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(|_| ())
}

pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    let (a, b) = (cname(from)?, cname(to)?);
    // SAFETY: valid strings and descriptors.
    check(unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            a.as_ptr(),
            to_dir.as_raw_fd(),
            b.as_ptr(),
        )
    })
    .map(|_| ())
}

/// linkat(2) of a named file; fails with EEXIST rather than replace.
pub fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    let (a, b) = (cname(from)?, cname(to)?);
    // SAFETY: valid strings and descriptors.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            a.as_ptr(),
            to_dir.as_raw_fd(),
            b.as_ptr(),
            0,
        )
    })
    .map(|_| ())
}

/// Gives an O_TMPFILE file a name in `to_dir`; fails with EEXIST rather than
/// replace. Uses AT_EMPTY_PATH, or /proc/self/fd without the capability.
pub fn link_tmpfile(file: BorrowedFd<'_>, to_dir: BorrowedFd<'_>, to: &str) -> io::Result<()> {
    let b = cname(to)?;
    let empty = c"";
    // SAFETY: valid strings and descriptors.
    let rc = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            empty.as_ptr(),
            to_dir.as_raw_fd(),
            b.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(
        e.raw_os_error(),
        Some(libc::EPERM) | Some(libc::ENOENT) | Some(libc::EINVAL)
    ) {
        return Err(e);
    }
    let proc_path = cname(&format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    // SAFETY: valid strings and descriptors.
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            to_dir.as_raw_fd(),
            b.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(|_| ())
}

/// fstatat(2) without following a symlink at the last component.
pub fn lstatat(dir: BorrowedFd<'_>, name: &str) -> io::Result<libc::stat> {
    let c = cname(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid string, descriptor and output buffer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() })
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor and output buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() })
}

pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::fsync(fd.as_raw_fd()) }).map(|_| ())
}

/// Whether the directory could take a new file now: EROFS or EACCES when it
/// is read-only (for us), ENOSPC when its filesystem has no block or no
/// inode left (filesystems that report no totals are given the benefit).
pub fn can_create_in(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated ".".
    check(unsafe {
        libc::faccessat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    })?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid descriptor and output buffer.
    check(unsafe { libc::fstatvfs(dir.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded and filled the buffer.
    let st = unsafe { st.assume_init() };
    if (st.f_blocks > 0 && st.f_bfree == 0) || (st.f_files > 0 && st.f_ffree == 0) {
        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}

/// The coarse real-time clock file timestamps come from on kernels without
/// fine-grained (multigrain) timestamps.
pub fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid output buffer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

/// True on kernels (6.13 and later) whose ext4/xfs/btrfs/tmpfs give a changed
/// directory a ctime distinct from any ctime read before the change.
pub fn multigrain_timestamps() -> bool {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: valid output buffer.
    if unsafe { libc::uname(u.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: uname succeeded.
    let u = unsafe { u.assume_init() };
    let rel: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 13)
}
