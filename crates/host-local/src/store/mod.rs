//! The reservation store behind a trait: the disk store in the reference
//! layout, and an in-memory store for tests.
//!
//! A [`Store`] hands out [`Session`]s; everything done through one session
//! happens under the store's exclusive lock (the `lock` file's flock on disk,
//! a transaction or lease in a networked backend). Reserving the addresses of
//! one ADD is one call, [`Session::reserve`], which is all or nothing.

use std::fmt;
use std::net::IpAddr;

use crate::error::StoreError;

pub mod disk;
mod lock_wait;
pub mod memory;
mod sys;

/// Who holds a reservation, as recorded in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The current format: `<containerID>\r\n<ifname>`.
    Attachment { id: String, ifname: String },
    /// Written by old versions of the reference: the container ID alone.
    Legacy { id: String },
    /// Empty, unparseable or not a regular file: names no attachment.
    Damaged { reason: String },
}

impl Owner {
    /// Parses the content of a reservation file the way both plugins write it.
    pub fn parse(content: &[u8]) -> Owner {
        let Ok(text) = std::str::from_utf8(content) else {
            return Owner::Damaged {
                reason: "not UTF-8".into(),
            };
        };
        let t = text.trim();
        if t.is_empty() {
            return Owner::Damaged {
                reason: "empty".into(),
            };
        }
        match t.split_once("\r\n") {
            Some((id, ifname)) => {
                if cni_proto::ContainerId::new(id).is_ok() && cni_proto::IfName::new(ifname).is_ok()
                {
                    Owner::Attachment {
                        id: id.to_string(),
                        ifname: ifname.to_string(),
                    }
                } else {
                    Owner::Damaged {
                        reason: format!("unparseable content {:?}", truncate(t)),
                    }
                }
            }
            None => {
                if cni_proto::ContainerId::new(t).is_ok() {
                    Owner::Legacy { id: t.to_string() }
                } else {
                    Owner::Damaged {
                        reason: format!("unparseable content {:?}", truncate(t)),
                    }
                }
            }
        }
    }

    /// The container ID, when the reservation names one.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            Owner::Attachment { id, .. } | Owner::Legacy { id } => Some(id),
            Owner::Damaged { .. } => None,
        }
    }

    /// The file content the reference writes for this owner.
    pub fn to_content(&self) -> Option<String> {
        match self {
            Owner::Attachment { id, ifname } => Some(format!("{id}\r\n{ifname}")),
            Owner::Legacy { id } => Some(id.clone()),
            Owner::Damaged { .. } => None,
        }
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Attachment { id, ifname } => write!(f, "{id} {ifname}"),
            Owner::Legacy { id } => write!(f, "{id} (legacy, no ifname)"),
            Owner::Damaged { reason } => write!(f, "damaged: {reason}"),
        }
    }
}

/// One reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ip: IpAddr,
    pub owner: Owner,
}

/// A reservation to make: the address and the index of its range set (for
/// the round-robin cursor `last_reserved_ip.<index>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub ip: IpAddr,
    pub set_index: usize,
}

/// A reservation store for one network.
pub trait Store {
    /// Takes the exclusive lock; it is held until the session is dropped.
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError>;

    /// A hint before an ADD's session: `count` reservations for the
    /// attachment will probably be made, so work that needs no lock (writing
    /// their content durably) may happen now. Best effort; failures surface
    /// in [`Session::reserve`].
    fn prepare(&mut self, _id: &str, _ifname: &str, _count: usize) {}

    /// Makes durable what the last session reserved. Called after that
    /// session (and its lock) is gone and before the result is reported; on
    /// error the caller releases those reservations again.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Operations under the store's lock.
pub trait Session {
    /// Reservations whose file names container `id`: those for `ifname` and
    /// legacy ones holding the ID alone. Never those of other ifnames.
    fn find(&mut self, id: &str, ifname: &str) -> Result<Vec<Entry>, StoreError>;

    /// True when `ip` is reserved (by anyone, damaged files included).
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool, StoreError>;

    /// The owner of `ip`, when reserved.
    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Owner>, StoreError>;

    /// The last address handed out in range set `set_index`, if recorded and readable.
    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError>;

    /// Reserves every pick for the attachment, or none: if one address is
    /// taken ([`StoreError::Taken`]) or a write fails, the ones made by this
    /// call are removed again. Advances each pick's cursor on success. The
    /// reservations are visible at once, durable after [`Store::sync`].
    fn reserve(&mut self, id: &str, ifname: &str, picks: &[Pick]) -> Result<(), StoreError>;

    /// Removes the reservation of `entry.ip` if it still holds `entry.owner`
    /// (damaged entries: if still damaged). Returns whether it was removed.
    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError>;

    /// Number of reservations (damaged ones included), without reading them.
    fn count(&mut self) -> Result<u64, StoreError>;

    /// Every reservation, reading each one (GC, the operator CLI).
    fn list(&mut self) -> Result<Vec<Entry>, StoreError>;

    /// Whether a reservation could be written now (STATUS): not read-only,
    /// not out of space. Cheap; the default assumes yes.
    fn writable(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
