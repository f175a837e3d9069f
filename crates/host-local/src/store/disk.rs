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

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::sys;
use super::{Attachment, Committed, Entry, Owner, Pick, Session, Store};
use crate::config::RangeSet;
use crate::error::StoreError;

/// The reference's cursor file prefix.
pub const CURSOR_PREFIX: &str = "last_reserved_ip.";
/// The lock file's name.
pub const LOCK_FILE: &str = "lock";
/// The index root inside the data directory. Network names start with an
/// alphanumeric character, so no network can be called this.
pub const INDEX_DIR: &str = ".host-local-rs";
/// Reservation files larger than this are damaged, never read whole.
pub const MAX_RESERVATION_SIZE: u64 = 4096;
const STAMP: &str = "stamp";
/// The spare cursor file (see `write_cursor`) and the old cursor's link.
const CURSOR_SPARE: &str = "cursor.spare";
const CURSOR_OLD: &str = "cursor.old";
const STAMP_MAGIC: &str = "hlrs1";
const MAX_BUCKET_SIZE: u64 = 64 << 20;

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
struct Prepared {
    content: Vec<u8>,
    files: Vec<std::fs::File>,
    /// The data and network directories `prepare` opened, for the session.
    dirs: Option<(OwnedFd, OwnedFd)>,
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

    fn index_path(&self) -> PathBuf {
        self.data_dir.join(INDEX_DIR).join(&self.network)
    }

    fn open_dirs(&self, create: bool) -> Result<(OwnedFd, OwnedFd), StoreError> {
        if create {
            if let Err(e) = std::fs::create_dir_all(&self.data_dir) {
                return Err(StoreError::io("create data directory", &self.data_dir, e));
            }
        }
        let data = sys::open_path(&self.data_dir, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| StoreError::io("open data directory", &self.data_dir, e))?;
        if create {
            match sys::mkdirat(data.as_fd(), &self.network, 0o755) {
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
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => StoreError::Unsafe {
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
            match sys::mkdirat(dir, name, 0o700) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
            sys::openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
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

    /// `dirs`: the data and network directories when already open.
    fn start(
        &self,
        create: bool,
        dirs: Option<(OwnedFd, OwnedFd)>,
    ) -> Result<DiskSession<'_>, StoreError> {
        let (data, net) = match dirs {
            Some(d) => d,
            None => self.open_dirs(create)?,
        };
        let lock_path = self.network_dir().join(LOCK_FILE);
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | if create { libc::O_CREAT } else { 0 };
        let lock_fd = match sys::openat(net.as_fd(), LOCK_FILE, flags, 0o750) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)) => {
                sys::openat(net.as_fd(), LOCK_FILE, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                    .map_err(|e| StoreError::io("open lock", &lock_path, e))?
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
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
            let Ok(fd) = sys::openat(net.as_fd(), ".", libc::O_TMPFILE | libc::O_WRONLY, 0o600)
            else {
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

struct Index {
    dir: OwnedFd,
    count: u64,
    valid: bool,
}

/// Operations on the store under its lock (held until drop).
pub struct DiskSession<'a> {
    store: &'a DiskStore,
    net: OwnedFd,
    _lock: std::fs::File,
    index: Option<Index>,
    multigrain: bool,
    boot_id: String,
    /// Files written by `DiskStore::prepare`, used by `create_reservation`.
    prepared: std::cell::RefCell<Prepared>,
}

/// What is at a name in the network directory.
enum AtName {
    Missing,
    Found(Owner),
}

fn bucket_of(id: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("b{:02x}", h & 0xff)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// True for names that are addresses in canonical text form.
pub fn parse_reservation_name(name: &str) -> Option<IpAddr> {
    let ip: IpAddr = name.parse().ok()?;
    (ip.to_string() == name).then_some(ip)
}

impl DiskSession<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.network_dir().join(name)
    }

    fn stamp_text(&self) -> Result<String, StoreError> {
        let st = sys::fstat(self.net.as_fd())
            .map_err(|e| StoreError::io("stat", self.store.network_dir(), e))?;
        let count = self.index.as_ref().map_or(0, |i| i.count);
        Ok(format!(
            "{STAMP_MAGIC} {} {} {} {}.{} {}.{} {}\n",
            self.boot_id,
            st.st_dev,
            st.st_ino,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
            count
        ))
    }

    /// Compares the stamp with the directory; rebuilds the index when they differ.
    fn validate_index(&mut self) -> Result<(), StoreError> {
        let Some(idx) = &self.index else {
            return Ok(());
        };
        let stamp = read_small(idx.dir.as_fd(), STAMP, 4096).ok().flatten();
        let current = self.stamp_text()?;
        if let Some(stamp) = stamp {
            let text = String::from_utf8_lossy(&stamp);
            // The first line is the stamp (it is rewritten in place: a longer
            // previous one may leave a tail after it). Everything but the
            // count must match.
            let text = text.lines().next().unwrap_or_default();
            let current = current.lines().next().unwrap_or_default();
            let (a, b) = (text.rsplit_once(' '), current.rsplit_once(' '));
            if let (Some((sa, count)), Some((ca, _))) = (a, b) {
                if sa == ca {
                    if let Ok(n) = count.trim().parse::<u64>() {
                        let idx = self.index.as_mut().expect("checked above");
                        idx.count = n;
                        idx.valid = true;
                        return Ok(());
                    }
                }
            }
        }
        let entries = self.scan(true)?;
        self.rebuild_index(&entries)
    }

    /// Writes every bucket and the stamp from a full scan's entries.
    fn rebuild_index(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(idx) = self.index.as_mut() else {
            return Ok(());
        };
        idx.valid = false;
        // Invalidate first: a crash mid-rebuild must not leave a matching stamp.
        let _ = sys::unlinkat(idx.dir.as_fd(), STAMP, 0);
        let mut buckets: BTreeMap<String, String> = BTreeMap::new();
        for e in entries {
            if let Some(line) = index_line(e) {
                let id = e.owner.container_id().unwrap_or_default();
                buckets.entry(bucket_of(id)).or_default().push_str(&line);
            }
        }
        for i in 0..256u32 {
            let name = format!("b{i:02x}");
            match buckets.get(&name) {
                Some(text) => {
                    write_in_place(idx.dir.as_fd(), &name, text.as_bytes()).map_err(|e| {
                        StoreError::io("write index", self.store.index_path().join(&name), e)
                    })?
                }
                None => match sys::unlinkat(idx.dir.as_fd(), &name, 0) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StoreError::io(
                            "remove index bucket",
                            self.store.index_path().join(&name),
                            e,
                        ))
                    }
                },
            }
        }
        // Temporary files of crashed runs live here, never in the network directory.
        if let Ok(rd) = std::fs::read_dir(self.store.index_path()) {
            for e in rd.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with(".tmp") {
                    let _ = sys::unlinkat(idx.dir.as_fd(), &n, 0);
                }
            }
        }
        idx.count = entries.len() as u64;
        self.write_stamp()
    }

    fn write_stamp(&mut self) -> Result<(), StoreError> {
        if self.index.is_none() {
            return Ok(());
        }
        if !self.multigrain {
            // Coarse timestamps: hold the lock until the clock has moved past
            // the directory's ctime, so any later change gets a different one.
            let st = sys::fstat(self.net.as_fd())
                .map_err(|e| StoreError::io("stat", self.store.network_dir(), e))?;
            for _ in 0..100 {
                let (s, ns) = sys::coarse_now();
                if (s, ns) > (st.st_ctime, st.st_ctime_nsec) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        }
        let text = self.stamp_text()?;
        let idx = self.index.as_mut().expect("checked above");
        write_in_place(idx.dir.as_fd(), STAMP, text.as_bytes()).map_err(|e| {
            StoreError::io("write index stamp", self.store.index_path().join(STAMP), e)
        })?;
        idx.valid = true;
        Ok(())
    }

    fn invalidate(&mut self) {
        if let Some(idx) = self.index.as_mut() {
            idx.valid = false;
            let _ = sys::unlinkat(idx.dir.as_fd(), STAMP, 0);
        }
    }

    fn index_valid(&self) -> bool {
        self.index.as_ref().is_some_and(|i| i.valid)
    }

    fn read_bucket(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        let idx = self.index.as_ref().expect("index checked by caller");
        let name = bucket_of(id);
        let data = read_small(idx.dir.as_fd(), &name, MAX_BUCKET_SIZE)
            .map_err(|e| StoreError::io("read index", self.store.index_path().join(&name), e))?
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        let mut out = Vec::new();
        for line in text.lines() {
            let mut f = line.split(' ');
            let (Some(ip), Some(cid)) = (f.next(), f.next()) else {
                continue;
            };
            if cid != id {
                continue;
            }
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            let owner = match f.next() {
                Some(ifname) => Owner::Attachment {
                    id: cid.to_string(),
                    ifname: ifname.to_string(),
                },
                None => Owner::Legacy {
                    id: cid.to_string(),
                },
            };
            out.push(Entry { ip, owner });
        }
        Ok(out)
    }

    fn update_bucket(
        &mut self,
        id: &str,
        add: &[Entry],
        remove: &[IpAddr],
    ) -> Result<(), StoreError> {
        let Some(idx) = self.index.as_ref() else {
            return Ok(());
        };
        let name = bucket_of(id);
        let path = self.store.index_path().join(&name);
        let data = read_small(idx.dir.as_fd(), &name, MAX_BUCKET_SIZE)
            .map_err(|e| StoreError::io("read index", &path, e))?
            .unwrap_or_default();
        let mut text = String::with_capacity(data.len() + 64);
        for line in String::from_utf8_lossy(&data).lines() {
            let mut f = line.split(' ');
            let (ip, cid) = (f.next(), f.next());
            if cid == Some(id)
                && ip
                    .and_then(|i| i.parse::<IpAddr>().ok())
                    .is_some_and(|i| remove.contains(&i))
            {
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
        for e in add {
            if let Some(l) = index_line(e) {
                text.push_str(&l);
            }
        }
        let r = if text.is_empty() {
            match sys::unlinkat(idx.dir.as_fd(), &name, 0) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            write_in_place(idx.dir.as_fd(), &name, text.as_bytes())
        };
        r.map_err(|e| StoreError::io("write index", path, e))
    }

    /// Reads what is at `name` in the network directory, never following a
    /// symlink and never reading more than MAX_RESERVATION_SIZE.
    fn read_entry(&self, name: &str) -> Result<AtName, StoreError> {
        let fd = match sys::openat(
            self.net.as_fd(),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AtName::Missing),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Ok(AtName::Found(Owner::Damaged {
                    reason: "a symlink, not a reservation file".into(),
                }))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Ok(AtName::Found(Owner::Damaged {
                    reason: "not a regular file".into(),
                }))
            }
            Err(e) => return Err(StoreError::io("open reservation", self.path(name), e)),
        };
        let st = sys::fstat(fd.as_fd())
            .map_err(|e| StoreError::io("stat reservation", self.path(name), e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(AtName::Found(Owner::Damaged {
                reason: "not a regular file".into(),
            }));
        }
        if st.st_size as u64 > MAX_RESERVATION_SIZE {
            return Ok(AtName::Found(Owner::Damaged {
                reason: format!("{} bytes, larger than any reservation", st.st_size),
            }));
        }
        let mut buf = Vec::with_capacity(st.st_size as usize);
        std::fs::File::from(fd)
            .take(MAX_RESERVATION_SIZE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io("read reservation", self.path(name), e))?;
        Ok(AtName::Found(Owner::parse(&buf)))
    }

    /// Every entry of the network directory named by an address. With
    /// `read`, each is read and classified; without, owners are Damaged
    /// placeholders (for counting).
    fn scan(&self, read: bool) -> Result<Vec<Entry>, StoreError> {
        let dir = self.store.network_dir();
        let proc = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.net)
        );
        let rd = std::fs::read_dir(&proc)
            .or_else(|_| std::fs::read_dir(&dir))
            .map_err(|e| StoreError::io("list", &dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| StoreError::io("list", &dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(ip) = parse_reservation_name(name) else {
                continue;
            };
            let owner = if read {
                match self.read_entry(name)? {
                    AtName::Missing => continue,
                    AtName::Found(o) => o,
                }
            } else {
                Owner::Damaged {
                    reason: String::new(),
                }
            };
            out.push(Entry { ip, owner });
        }
        out.sort_by_key(|e| (e.ip.is_ipv6(), crate::addr::to_u128(e.ip)));
        Ok(out)
    }

    /// Creates `name` holding `content`, crash-safely, never replacing.
    fn create_reservation(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
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
            libc::O_TMPFILE | libc::O_WRONLY,
            0o600,
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
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                ) => {}
            Err(e) => return Err(StoreError::io("create reservation", &path, e)),
        }
        // No O_TMPFILE here: write a temporary file in the index directory
        // (same filesystem, outside the network directory), then link it.
        if let Some(idx) = &self.index {
            let tmp = format!(".tmp-res-{}", std::process::id());
            let _ = sys::unlinkat(idx.dir.as_fd(), &tmp, 0);
            let fd = sys::openat(
                idx.dir.as_fd(),
                &tmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )
            .map_err(|e| {
                StoreError::io("create temporary", self.store.index_path().join(&tmp), e)
            })?;
            let mut f = std::fs::File::from(fd);
            let written = f.write_all(content).and_then(|_| sys::fsync(f.as_fd()));
            let linked = match written {
                Err(e) => {
                    let _ = sys::unlinkat(idx.dir.as_fd(), &tmp, 0);
                    return Err(StoreError::io("write reservation", &path, e));
                }
                Ok(()) => sys::linkat(idx.dir.as_fd(), &tmp, self.net.as_fd(), name),
            };
            let _ = sys::unlinkat(idx.dir.as_fd(), &tmp, 0);
            match linked {
                Ok(()) => return Ok(()),
                // The network directory is a mount of its own: last resort below.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => return Err(link_err(e, name, &path)),
            }
        }
        // Last resort, the reference's way: exclusive create, then write.
        let fd = sys::openat(
            self.net.as_fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .map_err(|e| link_err(e, name, &path))?;
        let mut f = std::fs::File::from(fd);
        if let Err(e) = f.write_all(content).and_then(|_| sys::fsync(f.as_fd())) {
            let _ = sys::unlinkat(self.net.as_fd(), name, 0);
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
    fn write_cursor(&self, set_index: usize, ip: IpAddr) -> Result<(), StoreError> {
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
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG);
            if keep_old {
                let _ = sys::unlinkat(dir, CURSOR_OLD, 0);
                sys::linkat(self.net.as_fd(), &name, dir, CURSOR_OLD)?;
            }
            sys::renameat(dir, CURSOR_SPARE, self.net.as_fd(), &name)?;
            if keep_old {
                sys::renameat(dir, CURSOR_OLD, dir, CURSOR_SPARE)?;
            }
            Ok(())
        };
        swap()
            .or_else(|e| match e.raw_os_error() {
                // The network directory is a mount of its own.
                Some(libc::EXDEV) => in_net(),
                _ => Err(e),
            })
            .map_err(|e| StoreError::io("write cursor", path, e))
    }

    fn fsync_dir(&self) -> Result<(), StoreError> {
        sys::fsync(self.net.as_fd())
            .map_err(|e| StoreError::io("fsync", self.store.network_dir(), e))
    }

    fn remove_name(&self, name: &str) -> Result<(), StoreError> {
        match sys::unlinkat(self.net.as_fd(), name, 0) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                sys::unlinkat(self.net.as_fd(), name, libc::AT_REMOVEDIR).map_err(|e| {
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

fn index_line(e: &Entry) -> Option<String> {
    match &e.owner {
        Owner::Attachment { id, ifname } => Some(format!("{} {id} {ifname}\n", e.ip)),
        Owner::Legacy { id } => Some(format!("{} {id}\n", e.ip)),
        Owner::Damaged { .. } => None,
    }
}

/// Reads a small file at `name` (None when missing), refusing symlinks and
/// anything larger than `max`.
fn read_small(dir: BorrowedFd<'_>, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    let fd = match sys::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = sys::fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 > max {
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
fn write_in_place(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let fd = sys::openat(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW,
        0o600,
    )?;
    let f = std::fs::File::from(fd);
    f.write_all_at(data, 0)?;
    f.set_len(data.len() as u64)
}

/// Replaces `to_dir/name` atomically with `data`: a temporary file in
/// `tmp_dir` (same filesystem) renamed over it. A symlink at `name` is
/// replaced, never followed.
fn write_replace(
    tmp_dir: BorrowedFd<'_>,
    to_dir: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let tmp = format!(".tmp-{}-{name}", std::process::id());
    let _ = sys::unlinkat(tmp_dir, &tmp, 0);
    let fd = sys::openat(
        tmp_dir,
        &tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    )?;
    let mut f = std::fs::File::from(fd);
    if let Err(e) = f
        .write_all(data)
        .and_then(|_| sys::renameat(tmp_dir, &tmp, to_dir, name))
    {
        let _ = sys::unlinkat(tmp_dir, &tmp, 0);
        return Err(e);
    }
    Ok(())
}

impl DiskSession<'_> {
    /// Whether anything (a damaged file, a directory, a symlink) is at `ip`'s name.
    pub fn is_reserved(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        let name = ip.to_string();
        match sys::lstatat(self.net.as_fd(), &name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("stat", self.path(&name), e)),
        }
    }
}

impl Session for DiskSession<'_> {
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError> {
        let (id, ifname) = (att.id(), att.ifname());
        let matches = |o: &Owner| o.belongs_to(id, ifname);
        if self.index_valid() {
            let candidates: Vec<Entry> = self
                .read_bucket(id)?
                .into_iter()
                .filter(|e| matches(&e.owner))
                .collect();
            let mut stale = false;
            for e in &candidates {
                match self.read_entry(&e.ip.to_string())? {
                    AtName::Found(o) if o == e.owner => {}
                    _ => stale = true,
                }
            }
            if !stale {
                return Ok(candidates);
            }
            // Someone changed a file in place: the index cannot be trusted.
            self.invalidate();
            let entries = self.scan(true)?;
            if self.rebuild_index(&entries).is_err() {
                self.invalidate();
            }
            return Ok(entries.into_iter().filter(|e| matches(&e.owner)).collect());
        }
        Ok(self
            .scan(true)?
            .into_iter()
            .filter(|e| matches(&e.owner))
            .collect())
    }

    /// Probes each name locally: a stat per candidate, no read.
    fn first_free(
        &mut self,
        _set: &RangeSet,
        candidates: &mut dyn Iterator<Item = IpAddr>,
    ) -> Result<Option<IpAddr>, StoreError> {
        for ip in candidates {
            if !self.is_reserved(ip)? {
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }

    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Owner>, StoreError> {
        Ok(match self.read_entry(&ip.to_string())? {
            AtName::Missing => None,
            AtName::Found(o) => Some(o),
        })
    }

    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        let name = format!("{CURSOR_PREFIX}{set_index}");
        match read_small(self.net.as_fd(), &name, 256) {
            Ok(Some(data)) => Ok(std::str::from_utf8(&data)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .map(crate::addr::canonical)),
            // A missing, damaged or planted cursor only costs round robin once.
            Ok(None) | Err(_) => Ok(None),
        }
    }

    /// Links each reservation (never replacing: an existing name is a
    /// [`StoreError::Conflict`], which under the lock only a process
    /// ignoring it can cause), writes the cursors and the index. The
    /// directory fsync that makes the new names durable is left to the
    /// returned [`Committed`], run after the lock is released so concurrent
    /// ADDs' journal commits batch (the files' own data was fsynced before
    /// they were linked).
    fn commit(&mut self, att: &Attachment, picks: &[Pick]) -> Result<Committed, StoreError> {
        let owner = att.owner();
        let id = att.id();
        let content = owner.to_content().expect("attachment has content");
        let mut made: Vec<String> = Vec::new();
        let mut failure = None;
        for p in picks {
            let name = p.ip.to_string();
            match self.create_reservation(&name, content.as_bytes()) {
                Ok(()) => made.push(name),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for name in &made {
                let _ = sys::unlinkat(self.net.as_fd(), name, 0);
            }
            let _ = self.fsync_dir();
            // Report the write that failed, never an index side effect; when
            // nothing was linked the directory and its stamp still agree.
            if !made.is_empty() && self.index_valid() && self.write_stamp().is_err() {
                self.invalidate();
            }
            return Err(e);
        }
        let mut cursor_err = None;
        for p in picks {
            if let Err(e) = self.write_cursor(p.set_index, p.ip) {
                cursor_err.get_or_insert(e);
            }
        }
        // The directory fsync happens in `Committed::finish`, after the lock
        // is released and before the ADD reports its result. Without a
        // descriptor of its own for that, fsync now, under the lock.
        let committed = match self.net.try_clone() {
            Ok(fd) => {
                let dir = self.store.network_dir();
                Committed::after(move || {
                    sys::fsync(fd.as_fd()).map_err(|e| StoreError::io("fsync", dir, e))
                })
            }
            Err(_) => {
                if let Err(e) = self.fsync_dir() {
                    for name in &made {
                        let _ = sys::unlinkat(self.net.as_fd(), name, 0);
                    }
                    self.invalidate();
                    return Err(e);
                }
                Committed::durable()
            }
        };
        if self.index_valid() {
            let added: Vec<Entry> = picks
                .iter()
                .map(|p| Entry {
                    ip: p.ip,
                    owner: owner.clone(),
                })
                .collect();
            match self.update_bucket(id, &added, &[]) {
                Ok(()) => {
                    if let Some(idx) = self.index.as_mut() {
                        idx.count += picks.len() as u64;
                    }
                    // The reservations are durable: an index that cannot
                    // follow is dropped, the ADD does not fail.
                    if self.write_stamp().is_err() {
                        self.invalidate();
                    }
                }
                Err(_) => self.invalidate(),
            }
        }
        // A cursor that could not be written loses round robin once; the
        // reservations stand.
        let _ = cursor_err;
        Ok(committed)
    }

    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        let name = entry.ip.to_string();
        let current = match self.read_entry(&name)? {
            AtName::Missing => return Ok(false),
            AtName::Found(o) => o,
        };
        let same = match (&current, &entry.owner) {
            (Owner::Damaged { .. }, Owner::Damaged { .. }) => true,
            (a, b) => a == b,
        };
        if !same {
            return Ok(false);
        }
        // No directory fsync here: if a power loss undoes this unlink, the
        // reservation reappears naming an attachment that is gone, which GC
        // reclaims; it can never cause an address to be handed out twice.
        self.remove_name(&name)?;
        if self.index_valid() {
            let ok = match current.container_id() {
                Some(id) => self.update_bucket(id, &[], &[entry.ip]).is_ok(),
                None => true,
            };
            if ok {
                if let Some(idx) = self.index.as_mut() {
                    idx.count = idx.count.saturating_sub(1);
                }
                if self.write_stamp().is_err() {
                    self.invalidate();
                }
            } else {
                self.invalidate();
            }
        }
        Ok(true)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        if let Some(idx) = self.index.as_ref().filter(|i| i.valid) {
            return Ok(idx.count);
        }
        Ok(self.scan(false)?.len() as u64)
    }

    fn writable(&mut self) -> Result<(), StoreError> {
        sys::can_create_in(self.net.as_fd())
            .map_err(|e| StoreError::io("write to", self.store.network_dir(), e))
    }

    fn list(&mut self) -> Result<Vec<Entry>, StoreError> {
        let entries = self.scan(true)?;
        if self.index.is_some() && self.rebuild_index(&entries).is_err() {
            self.invalidate();
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(id: &str, ifname: &str) -> Attachment {
        Attachment::parse(id, ifname).unwrap()
    }

    fn store(dir: &Path) -> DiskStore {
        DiskStore::new(dir, "net")
    }

    /// The sorted file names of a directory.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn pick(ip: &str, set: usize) -> Pick {
        Pick {
            ip: ip.parse().unwrap(),
            set_index: set,
        }
    }

    #[test]
    fn conformance() {
        let d = tempfile::tempdir().unwrap();
        let mut n = 0;
        crate::store::conformance::run_all(&mut |seed: &[Entry]| {
            n += 1;
            let data = d.path().join(format!("d{n}"));
            let net = data.join("net");
            std::fs::create_dir_all(&net).unwrap();
            for e in seed {
                // Damaged: content no plugin writes.
                let content = e.owner.to_content().unwrap_or_else(|| "\r\n".into());
                std::fs::write(net.join(e.ip.to_string()), content).unwrap();
            }
            Box::new(DiskStore::new(data, "net")) as Box<dyn Store>
        });
    }

    #[test]
    fn reserve_writes_reference_layout() {
        let d = tempfile::tempdir().unwrap();
        let mut st = store(d.path());
        {
            let mut s = st.session().unwrap();
            s.commit(
                &att("c1", "eth0"),
                &[pick("10.0.0.2", 0), pick("2001:db8::2", 1)],
            )
            .unwrap()
            .finish()
            .unwrap();
        }
        let net = d.path().join("net");
        assert_eq!(std::fs::read(net.join("10.0.0.2")).unwrap(), b"c1\r\neth0");
        assert_eq!(
            std::fs::read(net.join("2001:db8::2")).unwrap(),
            b"c1\r\neth0"
        );
        assert_eq!(
            std::fs::read_to_string(net.join("last_reserved_ip.0")).unwrap(),
            "10.0.0.2"
        );
        assert_eq!(
            std::fs::read_to_string(net.join("last_reserved_ip.1")).unwrap(),
            "2001:db8::2"
        );
        assert_eq!(
            names_in(&net),
            [
                "10.0.0.2",
                "2001:db8::2",
                "last_reserved_ip.0",
                "last_reserved_ip.1",
                "lock"
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(net.join("10.0.0.2"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn cursor_is_replaced_by_rename_through_a_spare() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let mut st = store(d.path());
        let net = d.path().join("net");
        let cursor = net.join("last_reserved_ip.0");
        let mut s = st.session().unwrap();
        for (i, ip) in ["10.0.0.2", "10.0.0.10", "10.0.0.9"].iter().enumerate() {
            let before = std::fs::metadata(&cursor).ok().map(|m| m.ino());
            s.commit(&att(&format!("c{i}"), "eth0"), &[pick(ip, 0)])
                .unwrap()
                .finish()
                .unwrap();
            assert_eq!(std::fs::read_to_string(&cursor).unwrap(), *ip);
            let m = std::fs::metadata(&cursor).unwrap();
            assert_eq!(m.nlink(), 1);
            assert_ne!(
                Some(m.ino()),
                before,
                "a new inode: replaced, not rewritten"
            );
        }
        // The reference rewrites the cursor in place; we still replace it.
        std::fs::write(&cursor, "10.0.0.50").unwrap();
        assert_eq!(s.cursor(0).unwrap(), Some("10.0.0.50".parse().unwrap()));
        s.commit(&att("c9", "eth0"), &[pick("10.0.0.51", 0)])
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(std::fs::read_to_string(&cursor).unwrap(), "10.0.0.51");
        assert_eq!(
            names_in(&net),
            [
                "10.0.0.10",
                "10.0.0.2",
                "10.0.0.51",
                "10.0.0.9",
                "last_reserved_ip.0",
                "lock"
            ]
        );
    }

    #[test]
    fn reserve_is_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut st = store(d.path());
        let mut s = st.session().unwrap();
        s.commit(&att("c1", "eth0"), &[pick("10.0.0.3", 0)])
            .unwrap()
            .finish()
            .unwrap();
        let e = s
            .commit(
                &att("c2", "eth0"),
                &[pick("10.0.0.2", 0), pick("10.0.0.3", 1)],
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
        assert!(s.owner_of("10.0.0.2".parse().unwrap()).unwrap().is_none());
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn index_sees_changes_made_behind_its_back() {
        let d = tempfile::tempdir().unwrap();
        let mut st = store(d.path());
        st.session()
            .unwrap()
            .commit(&att("c1", "eth0"), &[pick("10.0.0.2", 0)])
            .unwrap()
            .finish()
            .unwrap();
        let net = d.path().join("net");
        // The reference (or an operator) adds one and removes another.
        std::fs::write(net.join("10.0.0.9"), "c9\r\neth0").unwrap();
        std::fs::write(net.join("10.0.0.10"), "old").unwrap();
        std::fs::remove_file(net.join("10.0.0.2")).unwrap();
        let mut s = st.session().unwrap();
        assert_eq!(s.find(&att("c9", "eth0")).unwrap().len(), 1);
        assert_eq!(
            s.find(&att("old", "eth1")).unwrap().len(),
            1,
            "legacy file matches any ifname"
        );
        assert!(s.find(&att("c1", "eth0")).unwrap().is_empty());
        assert_eq!(s.count().unwrap(), 2);
    }

    #[test]
    fn index_survives_in_place_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let mut st = store(d.path());
        st.session()
            .unwrap()
            .commit(&att("c1", "eth0"), &[pick("10.0.0.2", 0)])
            .unwrap()
            .finish()
            .unwrap();
        // Rewriting content in place does not touch the directory's ctime.
        std::fs::write(d.path().join("net/10.0.0.2"), "c2\r\neth0").unwrap();
        let mut s = st.session().unwrap();
        assert!(s.find(&att("c1", "eth0")).unwrap().is_empty());
        assert_eq!(s.find(&att("c2", "eth0")).unwrap().len(), 1);
    }

    #[test]
    fn release_checks_owner_and_damaged_files() {
        let d = tempfile::tempdir().unwrap();
        let mut st = store(d.path());
        let mut s = st.session().unwrap();
        s.commit(&att("c1", "eth0"), &[pick("10.0.0.2", 0)])
            .unwrap()
            .finish()
            .unwrap();
        let wrong = Entry {
            ip: "10.0.0.2".parse().unwrap(),
            owner: Owner::Attachment {
                id: "c2".into(),
                ifname: "eth0".into(),
            },
        };
        assert!(!s.release(&wrong).unwrap());
        drop(s);
        std::fs::write(d.path().join("net/10.0.0.5"), "").unwrap();
        let mut s = st.session().unwrap();
        let all = s.list().unwrap();
        assert_eq!(all.len(), 2);
        let damaged = all
            .iter()
            .find(|e| matches!(e.owner, Owner::Damaged { .. }))
            .unwrap();
        assert!(s.release(damaged).unwrap());
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn symlinks_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let net = d.path().join("data/net");
        std::fs::create_dir_all(&net).unwrap();
        std::os::unix::fs::symlink(&outside, net.join("last_reserved_ip.0")).unwrap();
        std::os::unix::fs::symlink(&outside, net.join("10.0.0.3")).unwrap();
        let mut st = DiskStore::new(d.path().join("data"), "net");
        let mut s = st.session().unwrap();
        assert!(s.owner_of("10.0.0.3".parse().unwrap()).unwrap().is_some());
        assert!(matches!(
            s.owner_of("10.0.0.3".parse().unwrap()).unwrap(),
            Some(Owner::Damaged { .. })
        ));
        s.commit(&att("c1", "eth0"), &[pick("10.0.0.2", 0)])
            .unwrap()
            .finish()
            .unwrap();
        drop(s);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(net.join("last_reserved_ip.0"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn lock_symlink_refused() {
        let d = tempfile::tempdir().unwrap();
        let net = d.path().join("net");
        std::fs::create_dir_all(&net).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), net.join("lock")).unwrap();
        let mut st = store(d.path());
        assert!(matches!(
            st.session().err().unwrap(),
            StoreError::Unsafe { .. }
        ));
        assert!(!d.path().join("elsewhere").exists());
    }
}
