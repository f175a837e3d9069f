//! The index cache outside the network directory
//! (`<dataDir>/.host-local-rs/<network>/`): container IDs to addresses in 256
//! hashed bucket files, the reservation count, and the `stamp` that says
//! whether the network directory changed behind the index's back.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};

use super::files::{read_small, write_in_place};
use super::session::DiskSession;
use super::sys::AtFlags;
use super::{sys, MAX_BUCKET_SIZE, STAMP, STAMP_MAGIC};
use crate::error::StoreError;
use crate::store::{Entry, Owner};

pub(super) struct Index {
    pub(super) dir: OwnedFd,
    pub(super) count: u64,
    pub(super) valid: bool,
}

pub(super) fn bucket_of(id: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("b{:02x}", h & 0xff)
}

pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl DiskSession<'_> {
    pub(super) fn stamp_text(&self) -> Result<String, StoreError> {
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
    pub(super) fn validate_index(&mut self) -> Result<(), StoreError> {
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
    pub(super) fn rebuild_index(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(idx) = self.index.as_mut() else {
            return Ok(());
        };
        idx.valid = false;
        // Invalidate first: a crash mid-rebuild must not leave a matching stamp.
        let _ = sys::unlinkat(idx.dir.as_fd(), STAMP, AtFlags::empty());
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
                None => match sys::unlinkat(idx.dir.as_fd(), &name, AtFlags::empty()) {
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
                    let _ = sys::unlinkat(idx.dir.as_fd(), &n, AtFlags::empty());
                }
            }
        }
        idx.count = entries.len() as u64;
        self.write_stamp()
    }

    pub(super) fn write_stamp(&mut self) -> Result<(), StoreError> {
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
                if (s, ns) > (st.st_ctime, st.st_ctime_nsec as i64) {
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

    pub(super) fn invalidate(&mut self) {
        if let Some(idx) = self.index.as_mut() {
            idx.valid = false;
            let _ = sys::unlinkat(idx.dir.as_fd(), STAMP, AtFlags::empty());
        }
    }

    pub(super) fn index_valid(&self) -> bool {
        self.index.as_ref().is_some_and(|i| i.valid)
    }

    pub(super) fn read_bucket(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
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

    pub(super) fn update_bucket(
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
            match sys::unlinkat(idx.dir.as_fd(), &name, AtFlags::empty()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            write_in_place(idx.dir.as_fd(), &name, text.as_bytes())
        };
        r.map_err(|e| StoreError::io("write index", path, e))
    }
}

fn index_line(e: &Entry) -> Option<String> {
    match &e.owner {
        Owner::Attachment { id, ifname } => Some(format!("{} {id} {ifname}\n", e.ip)),
        Owner::Legacy { id } => Some(format!("{} {id}\n", e.ip)),
        Owner::Damaged { .. } => None,
    }
}
