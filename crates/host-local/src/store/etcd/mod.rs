//! The etcd store: one pool shared by every node of a cluster, the
//! reservations kept in etcd ([`keys`] documents the layout).
//!
//! A session reads from one snapshot: its first read fixes the revision,
//! later reads ask for that revision. [`Session::commit`] is one etcd
//! transaction for every range set of the ADD: it succeeds only if each
//! address key is still absent (`create_revision == 0`) and the
//! attachment's index holds nothing created after the snapshot, and then
//! writes every address key, index key and cursor. Otherwise nothing is
//! written and it answers [`StoreError::Conflict`]; the allocator picks
//! again. The cursor is a round-robin hint and is not compared: comparing it
//! would make every pair of concurrent ADDs on a pool conflict. A release is
//! one transaction deleting the address key (and its index key) only while
//! the address key still holds the bytes that were read.
//!
//! etcd commits through its raft log (fsynced on a quorum) before it
//! answers, so a successful commit is already durable.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use crate::addr;
pub use crate::config::EtcdConfig;
use crate::error::{Failure, StoreError};
use crate::store::{self, Attachment, Committed, Entry, Pick, Session, Store};

pub mod keys;
mod rpc;

use keys::{prefix_end, Keys, Record};
use rpc::Rpc;

/// A key and its value as etcd returned them.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Keys fetched per range read when listing.
const PAGE: i64 = 10_000;
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
}

impl EtcdStore {
    pub fn new(cfg: EtcdConfig, network: &str) -> Self {
        let keys = Keys::new(&cfg.prefix, network);
        EtcdStore {
            cfg,
            keys,
            rpc: None,
        }
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
        if self.rpc.is_none() {
            self.rpc = Some(Rpc::new(&self.cfg)?);
        }
        let EtcdStore { cfg, keys, rpc } = self;
        let rpc = rpc.as_mut().expect("set above");
        Ok(EtcdSession {
            deadline: Instant::now() + rpc.timeout(),
            rpc,
            keys,
            node: &cfg.node,
            revision: None,
            values: HashMap::new(),
            windows: Vec::new(),
        })
    }
}

impl Store for EtcdStore {
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        Ok(Box::new(self.etcd_session()?))
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

/// Reads from one revision and at most one commit; every call ends by the
/// session's deadline (the configured timeout from its start).
pub struct EtcdSession<'a> {
    rpc: &'a mut Rpc,
    keys: &'a Keys,
    node: &'a str,
    deadline: Instant,
    /// The snapshot: fixed by the first read.
    revision: Option<i64>,
    /// Address -> the value bytes read (release compares against them).
    values: HashMap<IpAddr, Vec<u8>>,
    /// Stretches of addresses whose reservations were read.
    windows: Vec<Window>,
}

impl EtcdSession<'_> {
    fn opts(&self) -> GetOptions {
        match self.revision {
            Some(r) => GetOptions::new().with_revision(r),
            None => GetOptions::new(),
        }
    }

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

    /// Every key-value in `[start, end)` at the snapshot, page by page.
    fn range(
        &mut self,
        op: &str,
        start: Vec<u8>,
        end: Vec<u8>,
        keys_only: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        let mut from = start;
        loop {
            let mut o = self.opts().with_range(end.clone()).with_limit(PAGE);
            if keys_only {
                o = o.with_keys_only();
            }
            let mut resp = self.rpc.get(op, self.deadline, from.clone(), o)?;
            self.note_revision(resp.header());
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else { break };
            from = last.key().to_vec();
            from.push(0);
            out.extend(kvs.into_iter().map(|kv| kv.into_key_value()));
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// Every reservation with the node that made it, at the snapshot.
    fn list_all(&mut self) -> Result<Vec<Entry>, StoreError> {
        let start = self.keys.ips().into_bytes();
        let end = prefix_end(&start);
        let kvs = self.range("list reservations", start, end, false)?;
        let mut out = Vec::with_capacity(kvs.len());
        for (k, v) in kvs {
            let Some(ip) = self.keys.parse_ip(&k) else {
                continue; // not an address key of ours (written by hand): not a reservation
            };
            let (owner, node) = Record::decode(&v);
            self.values.insert(ip, v);
            out.push(Entry::recorded(ip, owner).on_node(node));
        }
        Ok(out)
    }

    /// The value of `entry.ip`'s key while it still names `entry.owner`
    /// (this session's read, else the latest); None once it does not.
    fn held_value(&mut self, entry: &Entry) -> Result<Option<Vec<u8>>, StoreError> {
        let cached = self
            .values
            .get(&entry.ip)
            .filter(|v| Record::owner(v) == entry.owner)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        Ok(self
            .read_value(entry.ip, true)?
            .filter(|v| Record::owner(v) == entry.owner))
    }

    fn read_value(&mut self, ip: IpAddr, latest: bool) -> Result<Option<Vec<u8>>, StoreError> {
        let opts = if latest {
            GetOptions::new()
        } else {
            self.opts()
        };
        let mut resp = self.rpc.get(
            &format!("read {ip}"),
            self.deadline,
            self.keys.ip(ip).into_bytes(),
            opts,
        )?;
        if !latest {
            self.note_revision(resp.header());
        }
        let v = resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.into_key_value().1);
        match &v {
            Some(b) => self.values.insert(ip, b.clone()),
            None => self.values.remove(&ip),
        };
        Ok(v)
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
    fn find(&mut self, att: &Attachment) -> Result<Vec<Entry>, StoreError> {
        let start = self.keys.container(att.id()).into_bytes();
        let end = prefix_end(&start);
        let kvs = self.range(&format!("find {att}"), start, end, false)?;
        let mut out = Vec::new();
        for (k, v) in kvs {
            let Some((_, ip)) = self.keys.parse_index(att.id(), &k) else {
                continue; // not an index key (written by hand): names no reservation
            };
            let (owner, node) = Record::decode(&v);
            match owner {
                Ok(owner) if owner.belongs_to(att.id(), att.ifname()) => {
                    self.values.insert(ip, v);
                    out.push(Entry::new(ip, owner).on_node(node));
                }
                // Another ifname's, or a damaged value: not this attachment's.
                _ => {}
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
        Ok(self.read_value(ip, false)?.map(|v| {
            let (owner, node) = Record::decode(&v);
            Entry::recorded(ip, owner).on_node(node)
        }))
    }

    fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        let o = self.opts();
        let mut resp = self.rpc.get(
            &format!("read cursor {set_index}"),
            self.deadline,
            self.keys.cursor(set_index).into_bytes(),
            o,
        )?;
        self.note_revision(resp.header());
        Ok(resp
            .take_kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.trim().parse().ok()))
    }

    fn commit(&mut self, att: &Attachment, picks: &[Pick]) -> Result<Committed, StoreError> {
        if picks.is_empty() {
            return Ok(Committed::durable());
        }
        let value = Record::new(att.id(), att.ifname(), self.node).encode();
        let mut when = Vec::with_capacity(picks.len() + 1);
        let mut then = Vec::with_capacity(picks.len() * 3);
        let mut check = Vec::with_capacity(picks.len());
        for p in picks {
            let key = self.keys.ip(p.ip);
            when.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
            then.push(TxnOp::put(key.clone(), value.clone(), None));
            then.push(TxnOp::put(
                self.keys.index(att.id(), att.ifname(), p.ip),
                value.clone(),
                None,
            ));
            then.push(TxnOp::put(
                self.keys.cursor(p.set_index),
                p.ip.to_string(),
                None,
            ));
            check.push(TxnOp::get(key, None));
        }
        if let Some(rev) = self.revision {
            // Nothing added to this attachment since the snapshot (a
            // concurrent ADD of the same attachment).
            let idx = self.keys.attachment(att.id(), att.ifname()).into_bytes();
            let end = prefix_end(&idx);
            when.push(Compare::create_revision(idx, CompareOp::Less, rev + 1).with_range(end));
        }
        let txn = Txn::new().when(when).and_then(then).or_else(check);
        let resp = self
            .rpc
            .txn(&format!("reserve for {att}"), self.deadline, txn)?;
        if resp.succeeded() {
            self.wrote(resp.header());
            for p in picks {
                self.values.insert(p.ip, value.clone());
            }
            return Ok(Committed::durable());
        }
        // Which address was taken (the first found), else the index moved.
        let taken = resp
            .op_responses()
            .into_iter()
            .zip(picks)
            .find_map(|(r, p)| match r {
                TxnOpResponse::Get(g) if !g.kvs().is_empty() => Some(p.ip),
                _ => None,
            });
        Err(StoreError::Conflict {
            ip: taken.unwrap_or(picks[0].ip),
        })
    }

    fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        let Some(value) = self.held_value(entry)? else {
            return Ok(false);
        };
        let key = self.keys.ip(entry.ip);
        let index = self.keys.index_of(&entry.owner, entry.ip);
        let mut then = vec![TxnOp::delete(key.clone(), None)];
        // When the address moved on, the index key still naming it is stale.
        let mut otherwise = Vec::new();
        if let Some(i) = index {
            then.push(TxnOp::delete(i.clone(), None));
            otherwise.push(TxnOp::delete(i, None));
        }
        let txn = Txn::new()
            .when(vec![Compare::value(key, CompareOp::Equal, value)])
            .and_then(then)
            .or_else(otherwise);
        let resp = self
            .rpc
            .txn(&format!("release {}", entry.ip), self.deadline, txn)?;
        self.values.remove(&entry.ip);
        self.wrote(resp.header());
        Ok(resp.succeeded())
    }

    /// One transaction for all of them (each address key compared with the
    /// value this session read): etcd down or slow leaves every reservation
    /// in place, never some. When one of them changed meanwhile, the
    /// transaction writes nothing and each is released on its own terms.
    fn release_all(&mut self, entries: &[&Entry]) -> Vec<Failure> {
        if entries.len() < 2 {
            return store::release_each(self, entries);
        }
        let what = format!(
            "release {}",
            entries
                .iter()
                .map(|e| e.ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (mut when, mut then) = (Vec::new(), Vec::new());
        for e in entries {
            let value = match self.held_value(e) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(source) => return vec![Failure { what, source }],
            };
            let key = self.keys.ip(e.ip);
            when.push(Compare::value(key.clone(), CompareOp::Equal, value));
            then.push(TxnOp::delete(key, None));
            if let Some(i) = self.keys.index_of(&e.owner, e.ip) {
                then.push(TxnOp::delete(i, None));
            }
        }
        if when.is_empty() {
            return Vec::new();
        }
        let txn = Txn::new().when(when).and_then(then);
        match self.rpc.txn(&what, self.deadline, txn) {
            Err(source) => vec![Failure { what, source }],
            Ok(resp) if resp.succeeded() => {
                for e in entries {
                    self.values.remove(&e.ip);
                }
                self.wrote(resp.header());
                Vec::new()
            }
            Ok(_) => store::release_each(self, entries),
        }
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

    /// Only what this node reserved: other nodes' runtimes own theirs.
    fn list_collectable(&mut self) -> Result<Vec<Entry>, StoreError> {
        let node = self.node;
        Ok(self
            .list_all()?
            .into_iter()
            .filter(|e| e.node.as_deref() == Some(node))
            .collect())
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
