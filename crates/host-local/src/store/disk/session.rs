//! A session: everything done under the network's lock, reading the
//! directory (through the index when it is valid) and committing.

use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::files::{read_small, with_undo};
use super::index::Index;
use super::sys::{Errno, Mode, OFlags};
use super::{
    parse_reservation_name, sys, DiskStore, Prepared, CURSOR_PREFIX, MAX_RESERVATION_SIZE,
};
use crate::config::RangeSet;
use crate::error::StoreError;
use crate::store::{Attachment, Committed, Entry, Owner, Pick, Session};

/// Operations on the store under its lock (held until drop).
pub struct DiskSession<'a> {
    pub(super) store: &'a DiskStore,
    pub(super) net: OwnedFd,
    pub(super) _lock: std::fs::File,
    pub(super) index: Option<Index>,
    pub(super) multigrain: bool,
    pub(super) boot_id: String,
    /// Files written by `DiskStore::prepare`, used by `create_reservation`.
    pub(super) prepared: std::cell::RefCell<Prepared>,
}

/// What is at a name in the network directory.
pub(super) enum AtName {
    Missing,
    Found(Owner),
}

impl DiskSession<'_> {
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.store.network_dir().join(name)
    }

    /// Reads what is at `name` in the network directory, never following a
    /// symlink and never reading more than MAX_RESERVATION_SIZE.
    pub(super) fn read_entry(&self, name: &str) -> Result<AtName, StoreError> {
        let fd = match sys::openat(
            self.net.as_fd(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AtName::Missing),
            Err(e) if sys::errno(&e) == Some(Errno::LOOP) => {
                return Ok(AtName::Found(Owner::Damaged {
                    reason: "a symlink, not a reservation file".into(),
                }))
            }
            Err(e) if sys::errno(&e) == Some(Errno::NXIO) => {
                return Ok(AtName::Found(Owner::Damaged {
                    reason: "not a regular file".into(),
                }))
            }
            Err(e) => return Err(StoreError::io("open reservation", self.path(name), e)),
        };
        let st = sys::fstat(fd.as_fd())
            .map_err(|e| StoreError::io("stat reservation", self.path(name), e))?;
        if !sys::is_regular(&st) {
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
    pub(super) fn scan(&self, read: bool) -> Result<Vec<Entry>, StoreError> {
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
        crate::store::first_unreserved(candidates, |ip| self.is_reserved(ip))
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
            let undo = self.unlink_all(&made);
            // Report the write that failed, never an index side effect; when
            // nothing was linked the directory and its stamp still agree.
            if !made.is_empty() && self.index_valid() && self.write_stamp().is_err() {
                self.invalidate();
            }
            return Err(with_undo(e, undo));
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
                    let undo = self.unlink_all(&made);
                    self.invalidate();
                    return Err(with_undo(e, undo));
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
