//! An in-memory store with the disk store's semantics, for tests of the
//! allocator and the plugin without a filesystem.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Entry, Owner, Pick, Session, Store};
use crate::error::StoreError;

/// Reservations and cursors in maps. `fail_after` makes the n-th write fail,
/// to test that ADD leaves nothing behind.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub reservations: BTreeMap<IpAddr, Owner>,
    pub cursors: BTreeMap<usize, IpAddr>,
    pub fail_after: Option<usize>,
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
}

struct MemSession<'a> {
    s: &'a mut MemoryStore,
}

impl Session for MemSession<'_> {
    fn find(&mut self, id: &str, ifname: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .s
            .reservations
            .iter()
            .filter(|(_, o)| match o {
                Owner::Attachment { id: i, ifname: f } => i == id && f == ifname,
                Owner::Legacy { id: i } => i == id,
                Owner::Damaged { .. } => false,
            })
            .map(|(ip, o)| Entry {
                ip: *ip,
                owner: o.clone(),
            })
            .collect())
    }

    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        Ok(self.s.reservations.contains_key(&ip))
    }

    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Owner>, StoreError> {
        Ok(self.s.reservations.get(&ip).cloned())
    }

    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        Ok(self.s.cursors.get(&set_index).copied())
    }

    fn reserve(&mut self, id: &str, ifname: &str, picks: &[Pick]) -> Result<(), StoreError> {
        let mut made = Vec::new();
        for p in picks {
            self.s.writes += 1;
            let fail = self.s.fail_after.is_some_and(|n| self.s.writes > n);
            if fail || self.s.reservations.contains_key(&p.ip) {
                for ip in made {
                    self.s.reservations.remove(&ip);
                }
                return Err(if fail {
                    StoreError::Backend {
                        reason: format!("injected failure writing {}", p.ip),
                    }
                } else {
                    StoreError::Taken { ip: p.ip }
                });
            }
            self.s.reservations.insert(
                p.ip,
                Owner::Attachment {
                    id: id.into(),
                    ifname: ifname.into(),
                },
            );
            made.push(p.ip);
        }
        for p in picks {
            self.s.cursors.insert(p.set_index, p.ip);
        }
        Ok(())
    }

    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        let same = match (self.s.reservations.get(&entry.ip), &entry.owner) {
            (Some(Owner::Damaged { .. }), Owner::Damaged { .. }) => true,
            (Some(o), want) => o == want,
            (None, _) => false,
        };
        if same {
            self.s.reservations.remove(&entry.ip);
        }
        Ok(same)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(self.s.reservations.len() as u64)
    }

    fn list(&mut self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .s
            .reservations
            .iter()
            .map(|(ip, o)| Entry {
                ip: *ip,
                owner: o.clone(),
            })
            .collect())
    }
}
