//! A session: everything done under the network's lock, reading the
//! directory (through the index when it is valid) and committing.

use std::net::IpAddr;
use std::os::fd::AsFd;

use super::dir::NetDir;
use super::files::{with_undo, Aux};
use super::index::Index;
use super::record;
use crate::error::StoreError;
use crate::store::sys;
use crate::store::{Attachment, Committed, Entry, Pick, Session};

/// Reservation files written and fsynced before the lock, all holding
/// `content`: a commit for that owner links them instead of writing its own.
#[derive(Default)]
pub(super) struct Prepared {
    pub content: Vec<u8>,
    pub files: Vec<std::fs::File>,
}

/// Operations on the store under its lock (held until drop).
pub struct DiskSession {
    net: NetDir,
    _lock: std::fs::File,
    index: Option<Index>,
    prepared: Prepared,
}

impl DiskSession {
    pub(super) fn new(
        net: NetDir,
        lock: std::fs::File,
        index: Option<Index>,
        prepared: Prepared,
    ) -> Self {
        DiskSession {
            net,
            _lock: lock,
            index,
            prepared,
        }
    }

    /// The index, when it can be trusted.
    fn valid_index(&mut self) -> Option<&mut Index> {
        self.index.as_mut().filter(|i| i.valid())
    }

    fn aux(&self) -> Option<Aux<'_>> {
        self.index.as_ref().map(Index::aux)
    }

    /// A prepared file for `content`, if one is left.
    fn ready_file(&mut self, content: &[u8]) -> Option<std::fs::File> {
        (self.prepared.content == content)
            .then(|| self.prepared.files.pop())
            .flatten()
    }

    /// Whether anything (a damaged file, a directory, a symlink) is at `ip`'s name.
    pub fn is_reserved(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        self.net.is_reserved(ip)
    }

    /// Every entry, from the directory; the index is rebuilt from the scan.
    fn scan_and_refresh(&mut self) -> Result<Vec<Entry>, StoreError> {
        let entries = self.net.scan(true)?;
        if let Some(idx) = self.index.as_mut() {
            idx.refresh(&self.net, &entries);
        }
        Ok(entries)
    }
}

impl Session for DiskSession {
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError> {
        let (id, ifname) = (att.id(), att.ifname());
        let matches = |e: &Entry| e.owner.belongs_to(id, ifname);
        let Some(idx) = self.index.as_ref().filter(|i| i.valid()) else {
            return Ok(self.net.scan(true)?.into_iter().filter(matches).collect());
        };
        let mut found = Vec::new();
        for e in idx.bucket(id)?.into_iter().filter(matches) {
            match self.net.read_entry(e.ip)? {
                Some(on_disk) if on_disk.owner == e.owner => found.push(on_disk),
                // Someone changed a file in place: the index cannot be trusted.
                _ => {
                    let entries = self.scan_and_refresh()?;
                    return Ok(entries.into_iter().filter(matches).collect());
                }
            }
        }
        Ok(found)
    }

    /// Probes each name locally: a stat per candidate, no read.
    fn first_free(
        &mut self,
        candidates: &mut dyn Iterator<Item = IpAddr>,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        crate::store::first_unreserved(candidates, want, |ip| self.net.is_reserved(ip))
    }

    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Entry>, StoreError> {
        self.net.read_entry(ip)
    }

    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        Ok(self.net.cursor(set_index))
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
        let content = record::encode(&owner).expect("an attachment has content");
        let mut made: Vec<String> = Vec::new();
        let mut failure = None;
        for p in picks {
            let name = p.ip.to_string();
            let ready = self.ready_file(content.as_bytes());
            match self
                .net
                .create_reservation(&name, content.as_bytes(), ready, self.aux())
            {
                Ok(()) => made.push(name),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let undo = self.net.unlink_all(&made);
            // Report the write that failed, never an index side effect; when
            // nothing was linked the directory and its stamp still agree.
            if !made.is_empty() {
                if let Some(idx) = self.index.as_mut() {
                    idx.restamp(&self.net);
                }
            }
            return Err(with_undo(e, undo));
        }
        // A cursor that could not be written loses round robin once; the
        // reservations stand, so its error is not the commit's.
        for p in picks {
            let _ = self.net.write_cursor(p.set_index, p.ip, self.aux());
        }
        // The directory fsync happens in `Committed::finish`, after the lock
        // is released and before the ADD reports its result. Without a
        // descriptor of its own for that, fsync now, under the lock.
        let committed = match self.net.try_clone_fd() {
            Ok(fd) => {
                let dir = self.net.dir_path().to_path_buf();
                Committed::after(move || {
                    sys::fsync(fd.as_fd()).map_err(|e| StoreError::io("fsync", dir, e))
                })
            }
            Err(_) => {
                if let Err(e) = self.net.fsync() {
                    let undo = self.net.unlink_all(&made);
                    if let Some(idx) = self.index.as_mut() {
                        idx.invalidate();
                    }
                    return Err(with_undo(e, undo));
                }
                Committed::durable()
            }
        };
        let added: Vec<Entry> = picks
            .iter()
            .map(|p| Entry::new(p.ip, owner.clone()))
            .collect();
        if let Some(idx) = self.index.as_mut() {
            // The reservations are durable: an index that cannot follow is
            // dropped, the ADD does not fail.
            idx.record(&self.net, Some(att.id()), &added, &[]);
        }
        Ok(committed)
    }

    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        let Some(current) = self.net.read_entry(entry.ip)? else {
            return Ok(false);
        };
        if current.owner != entry.owner {
            return Ok(false);
        }
        // No directory fsync here: if a power loss undoes this unlink, the
        // reservation reappears naming an attachment that is gone, which GC
        // reclaims; it can never cause an address to be handed out twice.
        self.net.remove_name(&entry.ip.to_string())?;
        if let Some(idx) = self.index.as_mut() {
            idx.record(&self.net, current.owner.container_id(), &[], &[entry.ip]);
        }
        Ok(true)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        if let Some(n) = self.valid_index().and_then(|i| i.count()) {
            return Ok(n);
        }
        Ok(self.net.scan(false)?.len() as u64)
    }

    fn writable(&mut self) -> Result<(), StoreError> {
        sys::can_create_in(self.net.fd())
            .map_err(|e| StoreError::io("write to", self.net.dir_path(), e))
    }

    fn list(&mut self) -> Result<Vec<Entry>, StoreError> {
        self.scan_and_refresh()
    }
}
