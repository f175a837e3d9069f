//! The network directory as the session sees it: its descriptor and path,
//! what is at a name (read without following a symlink, never more than a
//! reservation's size), the scan of every name, the cursors; and the
//! small-file reads and writes the cursors and the index share.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::record;
use crate::error::StoreError;
use crate::store::sys::{self, AtFlags, Errno, Mode, OFlags, Stat};
use crate::store::{Entry, Owner};

/// The reference's cursor file prefix.
pub const CURSOR_PREFIX: &str = "last_reserved_ip.";
/// Reservation files larger than this are damaged, never read whole.
pub const MAX_RESERVATION_SIZE: u64 = 4096;

/// True for names that are addresses in canonical text form.
pub fn parse_reservation_name(name: &str) -> Option<IpAddr> {
    let ip: IpAddr = name.parse().ok()?;
    (ip.to_string() == name).then_some(ip)
}

/// `<dataDir>/<network>`, opened without following a symlink.
pub(super) struct NetDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn mtime(st: &Stat) -> Option<SystemTime> {
    let secs = u64::try_from(st.st_mtime).ok()?;
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

impl NetDir {
    pub(super) fn new(fd: OwnedFd, path: PathBuf) -> Self {
        NetDir { fd, path }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(super) fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The directory's own path.
    pub(super) fn dir_path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it, for messages.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(super) fn stat(&self) -> Result<Stat, StoreError> {
        sys::fstat(self.fd()).map_err(|e| StoreError::io("stat", &self.path, e))
    }

    /// The reservation at `ip`'s name (None: nothing there), read and
    /// classified; a symlink, a directory or an oversized file is damage.
    pub(super) fn read_entry(&self, ip: IpAddr) -> Result<Option<Entry>, StoreError> {
        let name = ip.to_string();
        let fd = match sys::openat(
            self.fd(),
            &name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if sys::errno(&e) == Some(Errno::LOOP) => {
                return Ok(Some(Entry::damaged(
                    ip,
                    "a symlink, not a reservation file",
                )))
            }
            Err(e) if sys::errno(&e) == Some(Errno::NXIO) => {
                return Ok(Some(Entry::damaged(ip, "not a regular file")))
            }
            Err(e) => return Err(StoreError::io("open reservation", self.path(&name), e)),
        };
        let st = sys::fstat(fd.as_fd())
            .map_err(|e| StoreError::io("stat reservation", self.path(&name), e))?;
        let at = mtime(&st);
        if !sys::is_regular(&st) {
            return Ok(Some(Entry::damaged(ip, "not a regular file").reserved(at)));
        }
        if st.st_size as u64 > MAX_RESERVATION_SIZE {
            let reason = format!("{} bytes, larger than any reservation", st.st_size);
            return Ok(Some(Entry::damaged(ip, reason).reserved(at)));
        }
        let mut buf = Vec::with_capacity(st.st_size as usize);
        std::fs::File::from(fd)
            .take(MAX_RESERVATION_SIZE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io("read reservation", self.path(&name), e))?;
        Ok(Some(Entry::recorded(ip, record::parse(&buf)).reserved(at)))
    }

    /// Every entry named by an address, sorted by address. With `read`, each
    /// is read and classified; without, each is a damaged placeholder (for
    /// counting).
    pub(super) fn scan(&self, read: bool) -> Result<Vec<Entry>, StoreError> {
        let proc = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.fd)
        );
        let rd = std::fs::read_dir(&proc)
            .or_else(|_| std::fs::read_dir(&self.path))
            .map_err(|e| StoreError::io("list", &self.path, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| StoreError::io("list", &self.path, e))?;
            let name = ent.file_name();
            let Some(ip) = name.to_str().and_then(parse_reservation_name) else {
                continue; // not a reservation: the lock, cursors, strays
            };
            if read {
                // Gone since the listing: removed by another process.
                if let Some(e) = self.read_entry(ip)? {
                    out.push(e);
                }
            } else {
                out.push(Entry::new(ip, Owner::Damaged));
            }
        }
        out.sort_by_key(|e| (e.ip.is_ipv6(), crate::addr::to_u128(e.ip)));
        Ok(out)
    }

    /// Whether anything (a damaged file, a directory, a symlink) is at `ip`'s name.
    pub(super) fn is_reserved(&self, ip: IpAddr) -> Result<bool, StoreError> {
        let name = ip.to_string();
        match sys::lstatat(self.fd(), &name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("stat", self.path(&name), e)),
        }
    }

    /// `last_reserved_ip.<set_index>`, when present and readable.
    pub(super) fn cursor(&self, set_index: usize) -> Option<IpAddr> {
        let name = format!("{CURSOR_PREFIX}{set_index}");
        // A missing, damaged or planted cursor only costs round robin once.
        let data = read_small(self.fd(), &name, 256).ok().flatten()?;
        std::str::from_utf8(&data)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(crate::addr::canonical)
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
