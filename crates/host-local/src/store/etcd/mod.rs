//! The etcd store: one pool shared by every node of a cluster, the
//! reservations kept in etcd ([`keys`] documents the layout).
//!
//! A session reads from one snapshot: its first read fixes the revision,
//! later reads ask for that revision. Where a node's next address comes
//! from is [`place`] (its blocks, a claim, borrowing); what it writes is
//! [`write`]. [`Session::commit`] is one etcd transaction for every range
//! set of the ADD: it succeeds only if each address key is still absent
//! (`create_revision == 0`), each block it claims is unclaimed, and the
//! attachment's index holds nothing created after the snapshot, and then
//! writes every address key, both index keys, the claims and the node's
//! activity (its cursors: a round-robin hint, not compared). Otherwise
//! nothing is written and it answers [`StoreError::Conflict`]; the
//! allocator picks again. A release is one transaction deleting the address
//! key (and its index keys) only while the address key is still the write
//! that was read (its `mod_revision`). Both are guarded, so the client may
//! send them again to another member when one does not answer ([`rpc`]).
//!
//! etcd commits through its raft log (fsynced on a quorum) before it
//! answers, so a successful commit is already durable.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use crate::addr;
pub use crate::config::EtcdConfig;
use crate::error::{Failure, StoreError};
use crate::store::{self, Attachment, Committed, Entry, Owner, Pick, Session, Store};

pub mod audit;
pub mod blocks;
mod errors;
mod health;
pub mod import;
pub mod keys;
mod layout;
mod node_lock;
mod page;
mod place;
mod repair;
mod rpc;
mod write;

pub use crate::config::AuthConfig;
pub use errors::{Attempt, Credential, EtcdError, Outcome};
pub use health::{Alarm, AlarmKind, Health};
pub use import::{Holder, ImportError, ImportRequest, Imported, Progress, Refusal, WriteFailure};
use keys::{prefix_end, Keys, Record};
use page::Kv;
use place::{Mine, Seen};
pub use repair::Guard;
use rpc::Rpc;
pub use rpc::{Calls, CALLS};

/// Addresses whose keys one read covers when looking for free addresses:
/// the span read is bounded, not only the answer (etcd 3.4 walks every key
/// in a range to count it, so reading to a range's end would cost as much
/// as the reservations ahead of the candidate).
const WINDOW: u128 = 256;

/// The etcd store of one network.
pub struct EtcdStore {
    cfg: EtcdConfig,
    keys: Keys,
    /// Created by the first session.
    rpc: Option<Rpc>,
    /// The operator CLI: records no activity, takes no node lock, migrates
    /// nothing.
    operator: bool,
}

impl EtcdStore {
    pub fn new(cfg: EtcdConfig, network: &str) -> Self {
        let keys = Keys::new(&cfg.prefix, network);
        EtcdStore {
            cfg,
            keys,
            rpc: None,
            operator: false,
        }
    }

    /// The store as the operator CLI uses it: its writes (a release, a
    /// reclaim) are not the node's activity, and it takes no node lock.
    pub fn for_operator(mut self) -> Self {
        self.operator = true;
        self
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.cfg
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A session with its own view of the node name (the cluster view and
    /// tests act for several nodes).
    pub fn etcd_session(&mut self) -> Result<EtcdSession<'_>, StoreError> {
        self.session_with(false)
    }

    /// A session; with `lock`, holding the node's lock ([`node_lock`]) for
    /// its lifetime, waited for at most half the timeout.
    fn session_with(&mut self, lock: bool) -> Result<EtcdSession<'_>, StoreError> {
        if self.rpc.is_none() {
            self.rpc = Some(Rpc::new(&self.cfg, self.keys.base())?);
        }
        let EtcdStore {
            cfg,
            keys,
            rpc,
            operator,
        } = self;
        let rpc = rpc.as_mut().expect("set above");
        let lock = match lock && !*operator {
            true => node_lock::take(keys.base(), &cfg.node, rpc.timeout() / 2),
            false => None,
        };
        Ok(EtcdSession {
            deadline: Instant::now() + rpc.timeout(),
            rpc,
            keys,
            node: &cfg.node,
            block_size: cfg.block_size,
            record: !*operator,
            revision: None,
            values: HashMap::new(),
            windows: Vec::new(),
            mine: None,
            claims: BTreeSet::new(),
            seen: HashMap::new(),
            collecting: false,
            _lock: lock,
        })
    }
}

impl Store for EtcdStore {
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(self.session_with(true)?))
    }

    fn add_session(
        &mut self,
        _att: &Attachment,
        _count: usize,
    ) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(self.session_with(true)?))
    }

    fn read_session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(self.session_with(false)?))
    }

    /// The network's key prefix (the endpoints are in the configuration).
    fn location(&self) -> String {
        self.keys.base().to_string()
    }
}

/// Addresses `lo..=hi` (as numbers) of one family, of which `taken` are
/// reserved.
struct Window {
    v4: bool,
    lo: u128,
    hi: u128,
    taken: BTreeSet<u128>,
}

/// An address key as this session read it: whom it names and the
/// revisions a release compares (`mod_revision`: the very write that was
/// read, so a delayed or repeated release cannot delete a later
/// reservation of the same attachment, whose value is the same bytes).
#[derive(Clone, Debug)]
struct Held {
    owner: Owner,
    /// Why the value names no attachment (unreadable, too large).
    damage: Option<String>,
    node: Option<String>,
    create_revision: i64,
    mod_revision: i64,
}

impl Held {
    fn of(kv: &Kv) -> Held {
        let (owner, node) = match &kv.value {
            Ok(v) => Record::decode(v),
            Err(big) => (Err(big.to_string()), None),
        };
        let (owner, damage) = match owner {
            Ok(o) => (o, None),
            Err(why) => (Owner::Damaged, Some(why)),
        };
        Held {
            owner,
            damage,
            node,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }

    /// The reservation of `ip` this key records.
    fn entry(&self, ip: IpAddr) -> Entry {
        Entry {
            damage: self.damage.clone(),
            ..Entry::new(ip, self.owner.clone()).on_node(self.node.clone())
        }
    }
}

/// Reads from one revision and at most one commit; every call ends by the
/// session's deadline (the configured timeout from its start).
pub struct EtcdSession<'a> {
    rpc: &'a mut Rpc,
    keys: &'a Keys,
    node: &'a str,
    deadline: Instant,
    /// The snapshot: fixed by the first read.
    revision: Option<i64>,
    /// Address -> its key as read (release compares against it).
    values: HashMap<IpAddr, Held>,
    /// Stretches of addresses whose reservations were read.
    windows: Vec<Window>,
    /// Addresses per block.
    block_size: u32,
    /// Whether writes record the node's activity (not the operator CLI's).
    record: bool,
    /// The node's activity and blocks, once read.
    mine: Option<Mine>,
    /// Blocks the commit claims for this node (their first addresses).
    claims: BTreeSet<IpAddr>,
    /// Blocks placement read: first address -> claim and free count.
    seen: HashMap<IpAddr, Seen>,
    /// The reservations were listed for GC: releases are GC's.
    collecting: bool,
    /// The node's lock, held until the session ends (None: not taken).
    _lock: Option<std::fs::File>,
}

impl EtcdSession<'_> {
    fn note_revision(&mut self, header: Option<&etcd_client::ResponseHeader>) {
        if self.revision.is_none() {
            self.revision = header.map(|h| h.revision());
        }
    }

    /// After this session's own write: later reads see it (and whatever
    /// else was committed up to it).
    fn wrote(&mut self, header: Option<&etcd_client::ResponseHeader>) {
        if let Some(h) = header {
            self.revision = Some(h.revision());
        }
        self.windows.clear();
    }

    /// Every key-value in `[start, end)` at the snapshot, in pages that
    /// stay under the client's message limit (values too large for it come
    /// back as [`page::Oversized`]).
    fn range(
        &mut self,
        op: &str,
        start: Vec<u8>,
        end: Vec<u8>,
        keys_only: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        let p = self
            .rpc
            .range(op, self.deadline, start, end, self.revision, keys_only)?;
        if self.revision.is_none() {
            self.revision = p.revision;
        }
        Ok(p.kvs)
    }

    /// The answering member's view: leader, raised alarms (cheap, local).
    pub fn health(&mut self) -> Result<Health, StoreError> {
        self.rpc.health(self.deadline)
    }

    /// The cluster's raised alarms, from etcd's alarm list (NOSPACE,
    /// CORRUPT): what `ipamctl metrics` exposes.
    pub fn alarms(&mut self) -> Result<Vec<Alarm>, StoreError> {
        self.rpc.alarms(self.deadline)
    }

    /// Every reservation with the node that made it, at the snapshot.
    fn list_all(&mut self) -> Result<Vec<Entry>, StoreError> {
        let start = self.keys.ips().into_bytes();
        let end = prefix_end(&start);
        let kvs = self.range("list reservations", start, end, false)?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let Some(ip) = self.keys.parse_ip(&kv.key) else {
                continue; // not an address key of ours (written by hand): not a reservation
            };
            let held = Held::of(&kv);
            out.push(held.entry(ip));
            self.values.insert(ip, held);
        }
        Ok(out)
    }

    /// `entry.ip`'s key while it still names `entry.owner` (this
    /// session's read, else the latest); None once it does not.
    fn held_value(&mut self, entry: &Entry) -> Result<Option<Held>, StoreError> {
        let cached = self
            .values
            .get(&entry.ip)
            .filter(|h| h.owner == entry.owner)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        Ok(self
            .read_value(entry.ip, true)?
            .filter(|h| h.owner == entry.owner))
    }

    /// The address key of `ip` at the snapshot (or the latest), cached.
    fn read_value(&mut self, ip: IpAddr, latest: bool) -> Result<Option<Held>, StoreError> {
        let revision = if latest { None } else { self.revision };
        let (kv, rev) = self.rpc.get_one(
            &format!("read {ip}"),
            self.deadline,
            self.keys.ip(ip).into_bytes(),
            revision,
        )?;
        if !latest && self.revision.is_none() {
            self.revision = rev;
        }
        let held = kv.map(|kv| Held::of(&kv));
        match &held {
            Some(h) => self.values.insert(ip, h.clone()),
            None => self.values.remove(&ip),
        };
        Ok(held)
    }

    /// Whether `ip` is reserved. Reads the keys of the [`WINDOW`] addresses
    /// from `ip` on (within its family) and remembers which stretches it has
    /// seen, so a walk over consecutive candidates costs one small range
    /// read per window, however large the pool and however full.
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        let n = addr::to_u128(ip);
        let v4 = ip.is_ipv4();
        if let Some(w) = self
            .windows
            .iter()
            .find(|w| w.v4 == v4 && w.lo <= n && n <= w.hi)
        {
            return Ok(w.taken.contains(&n));
        }
        let hi = n.saturating_add(WINDOW - 1).min(addr::family_max(ip));
        let end = addr::from_u128(ip, hi);
        let (s, e) = self.keys.ip_range(ip, end);
        let o = self.opts().with_range(e).with_keys_only();
        let mut resp = self.rpc.get(
            &format!("read addresses {ip}-{end}"),
            self.deadline,
            s.into_bytes(),
            o,
        )?;
        self.note_revision(resp.header());
        let taken: BTreeSet<u128> = resp
            .take_kvs()
            .iter()
            .filter_map(|kv| self.keys.parse_ip(kv.key()))
            .map(addr::to_u128)
            .collect();
        let reserved = taken.contains(&n);
        self.windows.push(Window {
            v4,
            lo: n,
            hi,
            taken,
        });
        Ok(reserved)
    }
}

impl Session for EtcdSession<'_> {
    /// The attachment's index keys name the candidates; each counts only
    /// when its address key (read at the snapshot) exists and names the
    /// attachment too: an index key without its address key, or naming
    /// another container's address (stale, or forged), reserves nothing for
    /// it, so CHECK does not pass on it and DEL does not touch that address.
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError> {
        let start = self.keys.container(att.id()).into_bytes();
        let end = prefix_end(&start);
        let kvs = self.range(&format!("find {att}"), start, end, true)?;
        let mut out = Vec::new();
        for kv in kvs {
            let Some((_, ip)) = self.keys.parse_index(att.id(), &kv.key) else {
                continue; // not an index key (written by hand): names no reservation
            };
            if out.iter().any(|e: &Entry| e.ip == ip) {
                continue; // legacy and current index keys of one address
            }
            let Some(held) = self.read_value(ip, false)? else {
                continue; // no address key: the index key reserves nothing
            };
            if held.owner.belongs_to(att.id(), att.ifname()) {
                out.push(held.entry(ip));
            }
        }
        Ok(out)
    }

    /// The first free candidates, from one windowed range read per stretch
    /// of consecutive candidates (usually one).
    fn first_free(
        &mut self,
        candidates: &mut dyn Iterator<Item = IpAddr>,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        store::first_unreserved(candidates, want, |ip| self.is_reserved(ip))
    }

    fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Entry>, StoreError> {
        Ok(self.read_value(ip, false)?.map(|h| h.entry(ip)))
    }

    /// The last address this node handed out in the set (its activity key).
    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        Ok(self
            .mine()?
            .activity
            .cursors
            .get(&set_index.to_string())
            .copied())
    }

    /// From the node's blocks, else a block it claims, else borrowed
    /// ([`place`]).
    fn next_free(
        &mut self,
        set_index: usize,
        set: &crate::config::RangeSet,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        self.place(set_index, set, want)
    }

    /// What an ADD would find, with the reads an ADD makes (never a count
    /// of the pool); refreshes the node's activity when it is old, so a
    /// node whose runtime asks for STATUS stays seen as alive.
    fn has_free(
        &mut self,
        set_index: usize,
        set: &crate::config::RangeSet,
    ) -> Result<bool, StoreError> {
        let free = !self.place(set_index, set, 1)?.is_empty();
        self.heartbeat("STATUS")?;
        Ok(free)
    }

    /// One transaction for every range set's pick ([`EtcdSession::reserve`]).
    fn commit(&mut self, att: &Attachment, picks: &[Pick]) -> Result<Committed, StoreError> {
        self.reserve(att, picks)
    }

    /// A guarded delete ([`EtcdSession::release_one`]).
    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        self.release_one(entry)
    }

    /// One transaction for all ([`EtcdSession::release_together`]).
    fn release_all(&mut self, entries: &[&Entry]) -> Vec<Failure> {
        self.release_together(entries)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        let start = self.keys.ips().into_bytes();
        let end = prefix_end(&start);
        let o = self.opts().with_range(end).with_count_only();
        let resp = self
            .rpc
            .get("count reservations", self.deadline, start, o)?;
        self.note_revision(resp.header());
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    fn list(&mut self) -> Result<Vec<Entry>, StoreError> {
        self.list_all()
    }

    /// etcd has a leader and raised no alarm (NOSPACE: every write fails;
    /// CORRUPT), from the answering member's status.
    fn writable(&mut self) -> Result<(), StoreError> {
        self.rpc.writable(self.deadline)
    }

    /// Only what this node reserved (its node index): other nodes'
    /// runtimes own theirs. Records the node's activity when it is old
    /// (a GC that removes nothing still shows the node alive).
    fn list_collectable(&mut self) -> Result<Vec<Entry>, StoreError> {
        let node = self.node;
        let start = self.keys.node_ips(node).into_bytes();
        let end = prefix_end(&start);
        let kvs = self.range("list this node's reservations", start, end, false)?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let Some(ip) = self.keys.parse_node_ip(node, &kv.key) else {
                continue; // not a node index key (written by hand): names no reservation
            };
            // The index key's revisions are not the address key's: a
            // release reads the address key itself.
            out.push(Held::of(&kv).entry(ip));
        }
        self.collecting = true;
        self.heartbeat("GC")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::StoreConfig;
    use serde_json::json;

    fn cfg(store: serde_json::Value) -> StoreConfig {
        let ipam = json!({"subnet": "10.0.0.0/24", "store": store});
        crate::config::load_ipam(cni_proto::SpecVersion::V1_0_0, &ipam)
            .unwrap()
            .store
    }

    #[test]
    fn open_dispatches_etcd_without_touching_the_network() {
        let s = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:1"], "node": "n1"});
        assert!(crate::store::open(&cfg(s), "n").is_ok());
    }

    #[test]
    fn unreachable_is_retryable() {
        let s = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:1"], "node": "n1",
            "timeout": "1s"});
        let mut store = crate::store::open(&cfg(s), "n").unwrap();
        let mut session = store.session().unwrap();
        let e = session.count().unwrap_err();
        assert!(e.retryable(), "{e}");
        assert!(e.to_string().contains("etcd"), "{e}");
    }
}
