//! The reservation store behind a trait, shaped for a local directory and a
//! networked database alike: the disk store in the reference layout, an
//! in-memory store for tests, and any backend chosen by the `store` object
//! of the ipam configuration ([`open`]).
//!
//! A [`Store`] hands out [`Session`]s. On disk a session holds the exclusive
//! lock until dropped; a networked backend reads from one snapshot and
//! commits with compare-and-swap. Either way the allocator reads, picks, and
//! makes all reservations of one ADD in one [`Session::commit`], which is all
//! or nothing and may answer [`StoreError::Conflict`] (never on disk): the
//! allocator then starts a new session and picks again (`alloc::add`).
//! Durability is part of the commit: the returned [`Committed`] is finished
//! once the session is gone, and only then is the ADD reported.
//!
//! [`conformance`] holds the tests every backend must pass.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::config::{IpamConfig, RangeSet};
use crate::error::{Error, Failure, StoreError};

#[doc(hidden)]
pub mod conformance;
pub mod disk;
#[cfg(feature = "etcd")]
pub mod etcd;
mod lock_wait;
pub mod memory;
mod sys;

/// A validated attachment (CNI_CONTAINERID, CNI_IFNAME), built once from the
/// request and passed down as is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attachment {
    id: cni_proto::ContainerId,
    ifname: cni_proto::IfName,
}

impl Attachment {
    pub fn new(id: cni_proto::ContainerId, ifname: cni_proto::IfName) -> Self {
        Attachment { id, ifname }
    }

    /// Validates both parts (code 4 errors naming the variable).
    pub fn parse(id: &str, ifname: &str) -> Result<Self, cni_proto::ProtoError> {
        Ok(Attachment {
            id: cni_proto::ContainerId::new(id)?,
            ifname: cni_proto::IfName::new(ifname)?,
        })
    }

    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    pub fn ifname(&self) -> &str {
        self.ifname.as_str()
    }

    /// The owner its reservations record.
    pub fn owner(&self) -> Owner {
        Owner::Attachment {
            id: self.id().to_string(),
            ifname: self.ifname().to_string(),
        }
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.ifname)
    }
}

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

    /// Whether this reservation belongs to attachment (`id`, `ifname`): an
    /// attachment owner equal to both, or a legacy owner with the same ID
    /// (old files record no ifname). Damaged reservations belong to no one.
    pub fn belongs_to(&self, id: &str, ifname: &str) -> bool {
        match self {
            Owner::Attachment { id: i, ifname: f } => i == id && f == ifname,
            Owner::Legacy { id: i } => i == id,
            Owner::Damaged { .. } => false,
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

/// A set of attachments answering [`Owner::belongs_to`] for all of them at
/// once (GC's list of valid attachments): an owner is held when it belongs
/// to some member.
#[derive(Clone, Debug, Default)]
pub struct AttachmentSet {
    exact: HashSet<(String, String)>,
    /// Containers all of whose attachments are members.
    whole: HashSet<String>,
    ids: HashSet<String>,
}

impl AttachmentSet {
    pub fn insert(&mut self, id: &str, ifname: &str) {
        self.exact.insert((id.to_string(), ifname.to_string()));
        self.ids.insert(id.to_string());
    }

    /// Makes every attachment of container `id` a member, whatever its ifname.
    pub fn insert_container(&mut self, id: &str) {
        self.whole.insert(id.to_string());
        self.ids.insert(id.to_string());
    }

    /// Every container ID in the set (with or without an ifname).
    pub fn container_ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// Whether `owner` belongs to some attachment of the set.
    pub fn holds(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Attachment { id, ifname } => {
                self.whole.contains(id) || self.exact.contains(&(id.clone(), ifname.clone()))
            }
            Owner::Legacy { id } => self.ids.contains(id),
            Owner::Damaged { .. } => false,
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

/// The durability half of a commit. The reservations are visible once
/// [`Session::commit`] returns; they survive a crash once [`Committed::finish`]
/// has returned `Ok`. Call it after the session is dropped (the disk store
/// then fsyncs its directory outside the lock, so concurrent ADDs' journal
/// commits batch) and before the ADD reports; a backend whose commit is
/// already durable returns [`Committed::durable`].
#[must_use = "the reservations are durable only after Committed::finish"]
pub struct Committed {
    finish: Option<Box<dyn FnOnce() -> Result<(), StoreError>>>,
}

impl Committed {
    /// Nothing left to do.
    pub fn durable() -> Self {
        Committed { finish: None }
    }

    /// `finish` completes durability; it must not need the session.
    pub fn after(finish: impl FnOnce() -> Result<(), StoreError> + 'static) -> Self {
        Committed {
            finish: Some(Box::new(finish)),
        }
    }

    /// Completes durability. On error the caller takes the reservations back.
    pub fn finish(self) -> Result<(), StoreError> {
        match self.finish {
            Some(f) => f(),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Committed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("pending", &self.finish.is_some())
            .finish()
    }
}

/// A reservation store for one network.
pub trait Store {
    /// Starts a session. Disk: holds the exclusive lock until dropped.
    /// Networked: reads come from one snapshot and the commit is
    /// compare-and-swap against what was read.
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError>;

    /// A hint before an ADD: `count` reservations for `att` will probably be
    /// committed, so work that needs no lock may happen now (disk: writing
    /// and fsyncing their content). Best effort; failures surface in
    /// [`Session::commit`].
    fn prepare(&mut self, _att: &Attachment, _count: usize) {}
}

/// Reads and one commit, from one consistent view of the store.
pub trait Session {
    /// Reservations belonging to `att` ([`Owner::belongs_to`]): its own and
    /// legacy ones holding its container ID alone. Never other ifnames'.
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError>;

    /// The first of `candidates`, in order, that is not reserved (damaged
    /// reservations count as reserved); `None` when all are. `set` bounds
    /// the candidates, so a networked backend can answer with a bounded
    /// number of round trips (one read of the set's keys) whatever their
    /// number; the disk store probes each name locally.
    fn first_free(
        &mut self,
        set: &RangeSet,
        candidates: &mut dyn Iterator<Item = IpAddr>,
    ) -> Result<Option<IpAddr>, StoreError>;

    /// The owner of `ip`, when reserved.
    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Owner>, StoreError>;

    /// The last address handed out in range set `set_index`, if recorded and readable.
    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError>;

    /// Reserves every pick for `att` and advances each pick's cursor, all or
    /// nothing. [`StoreError::Conflict`]: an address is reserved already (it
    /// changed since this session read it); nothing was written and the
    /// caller picks again in a new session. On success the reservations are
    /// visible; durable after [`Committed::finish`].
    fn commit(&mut self, att: &Attachment, picks: &[Pick]) -> Result<Committed, StoreError>;

    /// Removes the reservation of `entry.ip` if it still holds `entry.owner`
    /// (damaged entries: if still damaged). Returns whether it was removed.
    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError>;

    /// [`Session::release`] of every entry (DEL of an attachment with an
    /// address per range set), returning every failure. A backend that can
    /// release them in one step does, so a failure leaves all of them in
    /// place (etcd: one transaction); the default releases one by one and
    /// goes on after a failure.
    fn release_all(&mut self, entries: &[&Entry]) -> Vec<Failure> {
        release_each(self, entries)
    }

    /// Number of reservations (damaged ones included), without reading them.
    fn count(&mut self) -> Result<u64, StoreError>;

    /// Every reservation, reading each one (the operator CLI).
    fn list(&mut self) -> Result<Vec<Entry>, StoreError>;

    /// The reservations GC on this node may remove: on disk every one; a
    /// shared backend only those this node made.
    fn list_collectable(&mut self) -> Result<Vec<Entry>, StoreError> {
        self.list()
    }

    /// Whether a reservation could be written now (STATUS): not read-only,
    /// not out of space. Cheap; the default assumes yes.
    fn writable(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// [`Session::release`] of each entry in turn, every failure kept.
pub fn release_each<S: Session + ?Sized>(s: &mut S, entries: &[&Entry]) -> Vec<Failure> {
    entries
        .iter()
        .filter_map(|e| {
            s.release(e).err().map(|source| Failure {
                what: format!("release {}", e.ip),
                source,
            })
        })
        .collect()
}

/// [`Session::first_free`] for a store that tells cheaply and locally whether an address is
/// reserved: the first candidate, in the allocator's order, that `reserved` says is free.
fn first_unreserved(
    candidates: &mut dyn Iterator<Item = IpAddr>,
    mut reserved: impl FnMut(IpAddr) -> Result<bool, StoreError>,
) -> Result<Option<IpAddr>, StoreError> {
    for ip in candidates {
        if !reserved(ip)? {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// Opens the store the configuration chooses: its `ipam.store` object
/// (absent or null: the disk store in `dataDir`; `{"type": "disk"}` the
/// same). Each backend owns the keys of its object; invalid ones are code 7
/// errors naming `ipam.store.<key>`.
pub fn open(cfg: &IpamConfig) -> Result<Box<dyn Store>, Error> {
    #[cfg(feature = "etcd")]
    return open_with(cfg, &mut etcd::open);
    #[cfg(not(feature = "etcd"))]
    return open_with(cfg, &mut |_, _| {
        Err(Error::config(
            "ipam.store.type",
            "etcd",
            "this build has no etcd support (cargo feature \"etcd\")",
        ))
    });
}

/// Opens the etcd store for a configuration and its `ipam.store` object.
pub type EtcdOpener<'a> =
    dyn FnMut(&IpamConfig, &Map<String, Value>) -> Result<Box<dyn Store>, Error> + 'a;

/// [`open`], with the etcd store opened by `etcd`: the `host-local`
/// executable passes one that hands the call to `host-local-etcd`
/// ([`crate::delegate`]), so the etcd client is not linked into it.
pub fn open_with(cfg: &IpamConfig, etcd: &mut EtcdOpener<'_>) -> Result<Box<dyn Store>, Error> {
    let Some(v) = cfg.store.as_ref().filter(|v| !v.is_null()) else {
        return Ok(Box::new(disk::DiskStore::new(
            cfg.data_dir.clone(),
            &cfg.network,
        )));
    };
    let Value::Object(obj) = v else {
        return Err(Error::config(
            "ipam.store",
            v.to_string(),
            "expected an object with a \"type\"",
        ));
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(Error::config(
                "ipam.store.type",
                other.to_string(),
                "expected a string",
            ))
        }
        None => return Err(Error::config("ipam.store.type", "", "missing")),
    };
    match kind {
        "disk" => {
            if let Some(k) = obj.keys().find(|k| k.as_str() != "type") {
                return Err(Error::config(
                    format!("ipam.store.{k}"),
                    obj[k].to_string(),
                    "unknown key for the disk store",
                ));
            }
            Ok(Box::new(disk::DiskStore::new(
                cfg.data_dir.clone(),
                &cfg.network,
            )))
        }
        "etcd" => etcd(cfg, obj),
        other => Err(Error::config(
            "ipam.store.type",
            other,
            "unknown store type (known: disk, etcd)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(store: Option<Value>) -> IpamConfig {
        let mut ipam = json!({"subnet": "10.0.0.0/24", "dataDir": "/nonexistent/arch-test"});
        if let Some(s) = store {
            ipam["store"] = s;
        }
        crate::config::load_ipam(cni_proto::SpecVersion::V1_0_0, &ipam).unwrap()
    }

    #[test]
    fn open_chooses_the_disk_store_by_default() {
        assert!(open(&cfg(None)).is_ok());
        assert!(open(&cfg(Some(Value::Null))).is_ok());
        assert!(open(&cfg(Some(json!({"type": "disk"})))).is_ok());
    }

    #[test]
    fn open_rejects_what_it_does_not_know() {
        for (store, field) in [
            (json!({"type": "nosuch"}), "ipam.store.type"),
            (json!({}), "ipam.store.type"),
            (json!({"type": 3}), "ipam.store.type"),
            (json!("disk"), "ipam.store"),
            (json!({"type": "disk", "path": "/x"}), "ipam.store.path"),
        ] {
            let e = open(&cfg(Some(store.clone()))).err().unwrap();
            assert_eq!(e.code(), cni_proto::code::INVALID_CONFIG, "{store}: {e}");
            assert!(
                matches!(&e, Error::Config { field: f, .. } if f == field),
                "{store}: {e}"
            );
        }
    }

    #[test]
    fn belongs_to_and_sets() {
        let a = Owner::Attachment {
            id: "c1".into(),
            ifname: "eth0".into(),
        };
        let l = Owner::Legacy { id: "c1".into() };
        let d = Owner::Damaged {
            reason: "empty".into(),
        };
        assert!(a.belongs_to("c1", "eth0"));
        assert!(!a.belongs_to("c1", "eth1"));
        assert!(!a.belongs_to("c2", "eth0"));
        assert!(l.belongs_to("c1", "eth9"));
        assert!(!l.belongs_to("c2", "eth0"));
        assert!(!d.belongs_to("", ""));
        let mut set = AttachmentSet::default();
        set.insert("c1", "eth1");
        assert!(!set.holds(&a));
        assert!(set.holds(&l));
        assert!(!set.holds(&d));
        set.insert("c1", "eth0");
        assert!(set.holds(&a));
        let mut whole = AttachmentSet::default();
        whole.insert_container("c1");
        assert!(whole.holds(&a) && whole.holds(&l) && !whole.holds(&d));
        assert!(!whole.holds(&Owner::Legacy { id: "c2".into() }));
    }
}
