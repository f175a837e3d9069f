//! An in-memory store with the disk store's semantics, for tests of the
//! allocator and the plugin without a filesystem. Its knobs inject what a
//! real backend can do: a failing write, a concurrent writer taking an
//! address between a session's reads and its commit (a conflict, as a
//! networked backend sees it), a failing durability finish.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use super::{Attachment, Committed, Entry, Owner, Pick, Session, Store};
use crate::error::StoreError;

/// Reservations and cursors in maps.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    /// Address -> its reservation as recorded (owner, damage, node, time).
    pub reservations: BTreeMap<IpAddr, Entry>,
    pub cursors: BTreeMap<usize, IpAddr>,
    /// Makes every write (a reservation made or released) after the n-th fail.
    pub fail_after: Option<usize>,
    /// Addresses another writer reserves just before each of the next
    /// commits (one per commit, owner `racer`/`eth0`): the commit then
    /// conflicts when it meant to take that address.
    pub race: VecDeque<IpAddr>,
    /// The next this many commits each lose their first pick to another
    /// writer (owner `racer`/`eth0`), whichever address it is.
    pub race_picked: u32,
    /// Makes [`Committed::finish`] of every commit fail.
    pub fail_finish: bool,
    writes: usize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(MemSession { s: self }))
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

struct MemSession<'a> {
    s: &'a mut MemoryStore,
}

fn injected(op: &str, what: String) -> StoreError {
    StoreError::Backend {
        backend: "memory",
        op: op.to_string(),
        source: format!("injected failure: {what}").into(),
        retryable: false,
    }
}

impl Session for MemSession<'_> {
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .s
            .reservations
            .values()
            .filter(|e| e.owner.belongs_to(att.id(), att.ifname()))
            .cloned()
            .collect())
    }

    fn first_free(
        &mut self,
        candidates: &mut dyn Iterator<Item = IpAddr>,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        super::first_unreserved(candidates, want, |ip| {
            Ok(self.s.reservations.contains_key(&ip))
        })
    }

    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Entry>, StoreError> {
        Ok(self.s.reservations.get(&ip).cloned())
    }

    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        Ok(self.s.cursors.get(&set_index).copied())
    }

    fn commit(&mut self, att: &Attachment, picks: &[Pick]) -> Result<Committed, StoreError> {
        if self.s.race_picked > 0 && !picks.is_empty() {
            self.s.race_picked -= 1;
            self.s.race.push_front(picks[0].ip);
        }
        if let Some(ip) = self.s.race.pop_front() {
            self.s.reservations.entry(ip).or_insert(Entry::new(
                ip,
                Owner::Attachment {
                    id: "racer".into(),
                    ifname: "eth0".into(),
                },
            ));
        }
        if let Some(p) = picks
            .iter()
            .find(|p| self.s.reservations.contains_key(&p.ip))
        {
            return Err(StoreError::Conflict { ip: p.ip });
        }
        let mut made = Vec::new();
        for p in picks {
            self.s.writes += 1;
            if self.s.fail_after.is_some_and(|n| self.s.writes > n) {
                for ip in made {
                    self.s.reservations.remove(&ip);
                }
                return Err(injected("write", p.ip.to_string()));
            }
            self.s
                .reservations
                .insert(p.ip, Entry::new(p.ip, att.owner()));
            made.push(p.ip);
        }
        for p in picks {
            self.s.cursors.insert(p.set_index, p.ip);
        }
        if self.s.fail_finish {
            return Ok(Committed::after(|| {
                Err(injected("sync", "durability".into()))
            }));
        }
        Ok(Committed::durable())
    }

    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        let same = self
            .s
            .reservations
            .get(&entry.ip)
            .is_some_and(|e| e.owner == entry.owner);
        if same {
            self.s.writes += 1;
            if self.s.fail_after.is_some_and(|n| self.s.writes > n) {
                return Err(injected("release", entry.ip.to_string()));
            }
            self.s.reservations.remove(&entry.ip);
        }
        Ok(same)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(self.s.reservations.len() as u64)
    }

    fn list(&mut self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.s.reservations.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::Factory;

    fn memory_stores() -> Option<Factory> {
        Some(Box::new(|seed: &[Entry]| {
            let mut st = MemoryStore::new();
            for e in seed {
                st.reservations.insert(e.ip, e.clone());
            }
            Box::new(st) as Box<dyn Store>
        }))
    }

    mod conformance {
        crate::conformance_tests!(super::memory_stores);
    }
}
