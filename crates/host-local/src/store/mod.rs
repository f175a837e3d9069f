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
use std::time::SystemTime;

use crate::alloc::Candidates;
use crate::config::{RangeSet, StoreConfig};
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

/// Who holds a reservation: identity only. How a backend records it (the
/// reference's file content on disk, a JSON record in etcd) is that
/// backend's own encoding; what an operator needs beside it is in [`Entry`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// An attachment: container ID and ifname.
    Attachment { id: String, ifname: String },
    /// Written by old versions of the reference: the container ID alone.
    Legacy { id: String },
    /// Recorded content that names no attachment (empty, unparseable, not a
    /// regular file, ...; [`Entry::damage`] says what). Still reserves its
    /// address; all damaged owners are the same owner.
    Damaged,
}

impl Owner {
    /// The owner a backend's record names, validated once for every backend:
    /// a container ID and ifname as CNI accepts them (`ifname` None: a
    /// legacy record). Err says why the record names no attachment.
    pub fn from_parts(id: &str, ifname: Option<&str>) -> Result<Owner, String> {
        if cni_proto::ContainerId::new(id).is_err() {
            return Err(format!("invalid container ID {:?}", truncate(id)));
        }
        match ifname {
            None => Ok(Owner::Legacy { id: id.to_string() }),
            Some(i) if cni_proto::IfName::new(i).is_ok() => Ok(Owner::Attachment {
                id: id.to_string(),
                ifname: i.to_string(),
            }),
            Some(i) => Err(format!("invalid ifname {:?}", truncate(i))),
        }
    }

    /// Whether this reservation belongs to attachment (`id`, `ifname`): an
    /// attachment owner equal to both, or a legacy owner with the same ID
    /// (old files record no ifname). Damaged reservations belong to no one.
    pub fn belongs_to(&self, id: &str, ifname: &str) -> bool {
        match self {
            Owner::Attachment { id: i, ifname: f } => i == id && f == ifname,
            Owner::Legacy { id: i } => i == id,
            Owner::Damaged => false,
        }
    }

    /// The container ID, when the reservation names one.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            Owner::Attachment { id, .. } | Owner::Legacy { id } => Some(id),
            Owner::Damaged => None,
        }
    }

    /// The ifname, when the reservation records one.
    pub fn ifname(&self) -> Option<&str> {
        match self {
            Owner::Attachment { ifname, .. } => Some(ifname),
            Owner::Legacy { .. } | Owner::Damaged => None,
        }
    }
}

/// At most 64 bytes of `s`, for messages quoting recorded content.
pub fn truncate(s: &str) -> &str {
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
            Owner::Damaged => f.write_str("damaged"),
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
            Owner::Damaged => false,
        }
    }
}

/// One reservation as a backend read it: who holds the address, and what
/// an operator needs to judge it (each backend fills in what it records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ip: IpAddr,
    pub owner: Owner,
    /// The node that made it (a shared backend; None on disk).
    pub node: Option<String>,
    /// When it was made, where the backend records it (disk: the file's mtime).
    pub reserved_at: Option<SystemTime>,
    /// Why the recorded content names no attachment (set with [`Owner::Damaged`]).
    pub damage: Option<String>,
}

impl Entry {
    pub fn new(ip: IpAddr, owner: Owner) -> Self {
        Entry {
            ip,
            owner,
            node: None,
            reserved_at: None,
            damage: None,
        }
    }

    /// A reservation whose content names no attachment, and why.
    pub fn damaged(ip: IpAddr, reason: impl Into<String>) -> Self {
        Entry {
            damage: Some(reason.into()),
            ..Entry::new(ip, Owner::Damaged)
        }
    }

    /// The entry for what a backend recorded: the owner, or the damage.
    pub fn recorded(ip: IpAddr, owner: Result<Owner, String>) -> Self {
        match owner {
            Ok(o) => Entry::new(ip, o),
            Err(reason) => Entry::damaged(ip, reason),
        }
    }

    pub fn on_node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    pub fn reserved(mut self, at: Option<SystemTime>) -> Self {
        self.reserved_at = at;
        self
    }
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

    /// A session in which `att` will probably commit `count` reservations
    /// (an ADD). A backend may get ready for that commit before the session
    /// starts (disk: the reservation files written and fsynced before the
    /// lock, so concurrent ADDs do that work in parallel); by default the
    /// same as [`Store::session`].
    fn add_session(
        &mut self,
        _att: &Attachment,
        _count: usize,
    ) -> Result<Box<dyn Session + '_>, StoreError> {
        self.session()
    }

    /// A session that creates nothing (the operator CLI's reads): where the
    /// network has no store, [`StoreError::NoStore`]. By default the same
    /// as [`Store::session`], for backends whose sessions create nothing.
    fn read_session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        self.session()
    }

    /// Where this network's reservations are kept, for people: a directory,
    /// a key prefix.
    fn location(&self) -> String;
}

/// Reads and one commit, from one consistent view of the store.
pub trait Session {
    /// Reservations belonging to `att` ([`Owner::belongs_to`]): its own and
    /// legacy ones holding its container ID alone. Never other ifnames'.
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError>;

    /// The first `want` (at least one) of `candidates`, in order, that are
    /// not reserved (damaged reservations count as reserved); fewer when the
    /// candidates run out. A backend reads what it needs for the candidates
    /// it is offered and no more.
    fn first_free(
        &mut self,
        candidates: &mut dyn Iterator<Item = IpAddr>,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError>;

    /// The next free addresses range set `set_index` hands out, in the order
    /// to try them (at least one wanted; fewer when the set is full). By
    /// default the reference's round robin over the whole set: the first
    /// `want` free of [`Candidates`] after [`Session::cursor`]. A backend
    /// shared by nodes hands out each node's addresses from its own part of
    /// the set (etcd: the node's blocks), reading only what that needs.
    fn next_free(
        &mut self,
        set_index: usize,
        set: &RangeSet,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let cursor = self.cursor(set_index)?;
        let mut candidates = Candidates::new(set, cursor).map(|(ip, _)| ip);
        self.first_free(&mut candidates, want)
    }

    /// Whether range set `set_index` could hand out an address now (STATUS).
    /// By default: fewer reservations than the set's capacity, or else
    /// [`Session::next_free`] finds one.
    fn has_free(&mut self, set_index: usize, set: &RangeSet) -> Result<bool, StoreError> {
        if u128::from(self.count()?) < set.capacity() {
            return Ok(true);
        }
        Ok(!self.next_free(set_index, set, 1)?.is_empty())
    }

    /// The reservation of `ip`, when reserved.
    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Entry>, StoreError>;

    /// The last address handed out in range set `set_index`, if recorded and readable.
    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError>;

    /// Reserves every pick for `att` and advances each pick's cursor, all or
    /// nothing. [`StoreError::Conflict`]: an address is reserved already (it
    /// changed since this session read it); nothing was written and the
    /// caller picks again in a new session. On success the reservations are
    /// visible; durable after [`Committed::finish`].
    fn commit(&mut self, att: &Attachment, picks: &[Pick]) -> Result<Committed, StoreError>;

    /// Removes the reservation of `entry.ip` if it still holds `entry.owner`.
    /// Returns whether it was removed.
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
/// reserved: the first `want` candidates, in the allocator's order, that `reserved` says are free.
fn first_unreserved(
    candidates: &mut dyn Iterator<Item = IpAddr>,
    want: usize,
    mut reserved: impl FnMut(IpAddr) -> Result<bool, StoreError>,
) -> Result<Vec<IpAddr>, StoreError> {
    let want = want.max(1);
    let mut free = Vec::with_capacity(want.min(16));
    for ip in candidates {
        if !reserved(ip)? {
            free.push(ip);
            if free.len() == want {
                break;
            }
        }
    }
    Ok(free)
}

/// [`open`] for an operator's tool, which must not hang behind a stuck
/// holder or member: every wait (disk: for the lock; etcd: the configured
/// timeout, when longer) is at most `wait`.
pub fn open_for_operator(
    cfg: &StoreConfig,
    network: &str,
    wait: std::time::Duration,
) -> Result<Box<dyn Store>, Error> {
    match cfg {
        StoreConfig::Disk { data_dir } => Ok(Box::new(
            disk::DiskStore::new(data_dir, network).with_lock_timeout(wait),
        )),
        StoreConfig::Etcd(c) => {
            let mut c = c.clone();
            c.timeout = c.timeout.min(wait);
            #[cfg(feature = "etcd")]
            return Ok(Box::new(etcd::EtcdStore::new(c, network).for_operator()));
            #[cfg(not(feature = "etcd"))]
            open(&StoreConfig::Etcd(c), network)
        }
    }
}

/// Opens the store `cfg` describes for `network` (already validated: it
/// names a directory or a key prefix).
pub fn open(cfg: &StoreConfig, network: &str) -> Result<Box<dyn Store>, Error> {
    match cfg {
        StoreConfig::Disk { data_dir } => Ok(Box::new(disk::DiskStore::new(data_dir, network))),
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd(c) => Ok(Box::new(etcd::EtcdStore::new(c.clone(), network))),
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd(_) => Err(Error::config(
            "ipam.store.type",
            "etcd",
            "this build has no etcd support (cargo feature \"etcd\")",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_chooses_the_configured_backend() {
        let disk = StoreConfig::Disk {
            data_dir: "/nonexistent/arch-test".into(),
        };
        assert!(open(&disk, "net").is_ok());
    }

    #[test]
    fn one_validation_of_recorded_owners() {
        assert_eq!(
            Owner::from_parts("c1", Some("eth0")),
            Ok(Owner::Attachment {
                id: "c1".into(),
                ifname: "eth0".into()
            })
        );
        assert_eq!(
            Owner::from_parts("c1", None),
            Ok(Owner::Legacy { id: "c1".into() })
        );
        assert!(Owner::from_parts("", Some("eth0")).is_err());
        assert!(Owner::from_parts("c/1", None).is_err());
        assert!(Owner::from_parts("c1", Some("a/b")).is_err());
        assert!(Owner::from_parts("c1", Some("")).is_err());
    }

    #[test]
    fn belongs_to_and_sets() {
        let a = Owner::Attachment {
            id: "c1".into(),
            ifname: "eth0".into(),
        };
        let l = Owner::Legacy { id: "c1".into() };
        let d = Owner::Damaged;
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
