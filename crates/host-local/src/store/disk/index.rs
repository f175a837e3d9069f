//! The index cache outside the network directory
//! (`<dataDir>/.host-local-rs/<network>/`): container IDs to addresses in 256
//! hashed bucket files, the reservation count, and the `stamp` that says
//! whether the network directory changed behind the index's back.
//!
//! [`Index`] owns its directory, its count and whether it can be trusted.
//! It is a cache: when it cannot follow a change (a full or read-only
//! filesystem), it drops itself (removes its stamp, so no later process
//! trusts it either) and the session works from the directory alone; its
//! failures never fail the operation.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::dir::{read_small, write_in_place, NetDir};
use super::files::Aux;
use crate::error::StoreError;
use crate::store::sys::{self, AtFlags, Mode, OFlags};
use crate::store::{Entry, Owner};

/// The index root inside the data directory. Network names start with an
/// alphanumeric character, so no network can be called this.
pub const INDEX_DIR: &str = ".host-local-rs";
const STAMP: &str = "stamp";
const STAMP_MAGIC: &str = "hlrs1";
const MAX_BUCKET_SIZE: u64 = 64 << 20;

pub(super) struct Index {
    dir: OwnedFd,
    path: PathBuf,
    count: u64,
    valid: bool,
    boot_id: String,
    /// Whether the filesystem's timestamps are fine-grained (see `write_stamp`).
    multigrain: bool,
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

fn index_line(e: &Entry) -> Option<String> {
    match &e.owner {
        Owner::Attachment { id, ifname } => Some(format!("{} {id} {ifname}\n", e.ip)),
        Owner::Legacy { id } => Some(format!("{} {id}\n", e.ip)),
        Owner::Damaged => None,
    }
}

impl Index {
    /// Opens (creating) `<data>/.host-local-rs/<network>` and checks it
    /// against the network directory, rebuilding it when they disagree.
    /// None when it cannot be had: the session then works without it.
    pub(super) fn open(
        data: BorrowedFd<'_>,
        data_dir: &Path,
        network: &str,
        net: &NetDir,
    ) -> Option<Index> {
        let open = |dir: BorrowedFd<'_>, name: &str| -> Option<OwnedFd> {
            match sys::mkdirat(dir, name, sys::mode(0o700)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => return None, // read-only or full: no index, see the module text
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
        let mut idx = Index {
            dir: open(root.as_fd(), network)?,
            path: data_dir.join(INDEX_DIR).join(network),
            count: 0,
            valid: false,
            boot_id: boot_id(),
            multigrain: sys::multigrain_timestamps(),
        };
        // When it cannot be brought up to date, work from the directory alone.
        if idx.validate(net).is_err() {
            idx.invalidate();
        }
        Some(idx)
    }

    /// Whether the index matches the directory and may be used.
    pub(super) fn valid(&self) -> bool {
        self.valid
    }

    /// The reservation count, when the index is valid.
    pub(super) fn count(&self) -> Option<u64> {
        self.valid.then_some(self.count)
    }

    /// The index directory, for temporary files and the spare cursor.
    pub(super) fn aux(&self) -> Aux<'_> {
        Aux {
            fd: self.dir.as_fd(),
            path: &self.path,
        }
    }

    fn stamp_text(&self, net: &NetDir) -> Result<String, StoreError> {
        let st = net.stat()?;
        Ok(format!(
            "{STAMP_MAGIC} {} {} {} {}.{} {}.{} {}\n",
            self.boot_id,
            st.st_dev,
            st.st_ino,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
            self.count
        ))
    }

    /// Compares the stamp with the directory; rebuilds the index when they differ.
    fn validate(&mut self, net: &NetDir) -> Result<(), StoreError> {
        let stamp = read_small(self.dir.as_fd(), STAMP, 4096).ok().flatten();
        let current = self.stamp_text(net)?;
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
                        self.count = n;
                        self.valid = true;
                        return Ok(());
                    }
                }
            }
        }
        let entries = net.scan(true)?;
        self.rebuild(net, &entries)
    }

    /// Writes every bucket and the stamp from a full scan's entries.
    fn rebuild(&mut self, net: &NetDir, entries: &[Entry]) -> Result<(), StoreError> {
        // Invalidate first: a crash mid-rebuild must not leave a matching stamp.
        self.invalidate();
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
                Some(text) => write_in_place(self.dir.as_fd(), &name, text.as_bytes())
                    .map_err(|e| StoreError::io("write index", self.path.join(&name), e))?,
                None => match sys::unlinkat(self.dir.as_fd(), &name, AtFlags::empty()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StoreError::io(
                            "remove index bucket",
                            self.path.join(&name),
                            e,
                        ))
                    }
                },
            }
        }
        // Temporary files of crashed runs live here, never in the network
        // directory; one that cannot be removed now is tried at the next rebuild.
        if let Ok(rd) = std::fs::read_dir(&self.path) {
            for e in rd.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with(".tmp") {
                    let _ = sys::unlinkat(self.dir.as_fd(), &n, AtFlags::empty());
                }
            }
        }
        self.count = entries.len() as u64;
        self.write_stamp(net)
    }

    /// Rebuilds the index from a full scan the session made anyway; drops it
    /// when that fails.
    pub(super) fn refresh(&mut self, net: &NetDir, entries: &[Entry]) {
        if self.rebuild(net, entries).is_err() {
            self.invalidate();
        }
    }

    fn write_stamp(&mut self, net: &NetDir) -> Result<(), StoreError> {
        if !self.multigrain {
            // Coarse timestamps: hold the lock until the clock has moved past
            // the directory's ctime, so any later change gets a different one.
            let st = net.stat()?;
            for _ in 0..100 {
                let (s, ns) = sys::coarse_now();
                if (s, ns) > (st.st_ctime, st.st_ctime_nsec as i64) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        }
        let text = self.stamp_text(net)?;
        write_in_place(self.dir.as_fd(), STAMP, text.as_bytes())
            .map_err(|e| StoreError::io("write index stamp", self.path.join(STAMP), e))?;
        self.valid = true;
        Ok(())
    }

    /// The directory changed (and its change is done): records the new stamp
    /// when the index was valid and the index itself did not change.
    pub(super) fn restamp(&mut self, net: &NetDir) {
        if self.valid && self.write_stamp(net).is_err() {
            self.invalidate();
        }
    }

    /// Stops trusting the index, here and in every later process.
    pub(super) fn invalidate(&mut self) {
        self.valid = false;
        // Gone already, or removal failed on a read-only filesystem, where
        // nothing can change the directory behind the stamp's back either.
        let _ = sys::unlinkat(self.dir.as_fd(), STAMP, AtFlags::empty());
    }

    /// The entries the index records for container `id` (to be verified
    /// against the directory before use).
    pub(super) fn bucket(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        let name = bucket_of(id);
        let data = read_small(self.dir.as_fd(), &name, MAX_BUCKET_SIZE)
            .map_err(|e| StoreError::io("read index", self.path.join(&name), e))?
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
            out.push(Entry::new(ip, owner));
        }
        Ok(out)
    }

    /// Follows a change the session made to the directory: `added` entries
    /// of container `id` and `removed` addresses of it. When the index
    /// cannot follow, it drops itself; the change stands either way.
    pub(super) fn record(
        &mut self,
        net: &NetDir,
        id: Option<&str>,
        added: &[Entry],
        removed: &[IpAddr],
    ) {
        if !self.valid {
            return;
        }
        let ok = match id {
            Some(id) => self.update_bucket(id, added, removed).is_ok(),
            None => true, // damaged entries are in no bucket
        };
        if !ok {
            self.invalidate();
            return;
        }
        self.count = (self.count + added.len() as u64).saturating_sub(removed.len() as u64);
        self.restamp(net);
    }

    fn update_bucket(
        &mut self,
        id: &str,
        add: &[Entry],
        remove: &[IpAddr],
    ) -> Result<(), StoreError> {
        let name = bucket_of(id);
        let path = self.path.join(&name);
        let data = read_small(self.dir.as_fd(), &name, MAX_BUCKET_SIZE)
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
            match sys::unlinkat(self.dir.as_fd(), &name, AtFlags::empty()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            write_in_place(self.dir.as_fd(), &name, text.as_bytes())
        };
        r.map_err(|e| StoreError::io("write index", path, e))
    }
}
