//! Importing a disk store's reservations into the etcd store as one node's
//! (`ipamctl cluster import`): moving a node's network from the disk store
//! to cluster mode without its pods losing their addresses.
//!
//! All or nothing, in three steps:
//!
//! 1. **Read** what etcd holds where the import writes, from one revision:
//!    the layout key, the address keys and block claims of every block
//!    holding an imported address (range reads over stretches of blocks,
//!    never one read per address), the node's activity key.
//! 2. **Plan** ([`plan`], pure): every address must be inside the
//!    network's ranges, named by its disk file (damaged files are refused,
//!    never guessed at), and either free in etcd or holding exactly the
//!    record this import would write (then it is already present). Anything
//!    else refuses the whole import, listing every address in the way;
//!    nothing is written.
//! 3. **Write** in transactions within etcd's limits ([`batches`]: at most
//!    [`OUTER_OPS`] operations per list, well under the 1.5 MiB request
//!    limit), each guarded: every address key must still be absent
//!    (`create_revision == 0`), so a transaction sent again after a member
//!    did not answer cannot apply twice, and an address someone took
//!    meanwhile fails its transaction. Block claims are create-if-absent
//!    inside it (a block claimed meanwhile by another node is left to
//!    it: the imported address is then borrowed, as the allocator
//!    borrows). When a transaction fails, every earlier one of this run is
//!    taken back (deleted only while each key is still the write this run
//!    made: its `mod_revision`), and every failure is reported.
//!
//! The node's activity key (op `import`, the disk store's cursors) goes in
//! the last transaction, the layout key (when absent) in the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::blocks::{self, base_of, last_of};
use super::keys::{prefix_end, Activity, BlockRecord, Keys, Layout, Record, LAYOUT_VERSION};
use super::page::{Kv, Oversized};
use super::rpc::Rpc;
use super::EtcdStore;
use crate::addr;
use crate::config::RangeSet;
use crate::error::{Failure, StoreError};
use crate::store::{Entry, Owner};

/// etcd's default `--max-txn-ops`: the most operations in each list of a
/// transaction (compares, success, failure). etcd counts a nested
/// transaction's lists against what the outer list leaves, so the outer
/// lists stay at [`OUTER_OPS`].
pub const MAX_TXN_OPS: usize = 128;
/// The most operations in one list of an import transaction: leaves room
/// for the nested transactions' own lists (at most 3 operations each).
pub const OUTER_OPS: usize = 120;
/// The most bytes of keys and values in one transaction (etcd's
/// `--max-request-bytes` is 1.5 MiB by default).
pub const TXN_BYTES: usize = 512 * 1024;
/// Blocks closer than this many addresses are read by one range read.
const MERGE_GAP: u128 = 4096;
/// The most addresses one range read spans (each read has its own deadline).
const READ_SPAN: u128 = 16384;
/// Transactions a batch is tried again after losing a race with an
/// identical import (its addresses already hold the same records).
const RETRIES: usize = 3;
/// The activity key's `op`.
pub const IMPORT_OP: &str = "import";

/// What to import: the disk store's reservations and cursors, as `node`'s.
#[derive(Clone, Copy, Debug)]
pub struct ImportRequest<'a> {
    /// The node the reservations become (recorded in each, indexed under it).
    pub node: &'a str,
    /// The disk store's reservations ([`crate::store::Session::list`]).
    pub entries: &'a [Entry],
    /// The disk store's cursors: range set index -> `last_reserved_ip.N`.
    pub cursors: &'a BTreeMap<usize, IpAddr>,
    /// The network's range sets (what is inside, the gateways, exclusions).
    pub sets: &'a [RangeSet],
}

/// Who holds an address in etcd that the import wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub ip: IpAddr,
    /// [`Owner::Damaged`] when the value names no attachment.
    pub owner: Owner,
    pub node: Option<String>,
    /// Why the value names no attachment.
    pub damage: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} held by {}", self.ip, self.owner)?;
        match (&self.node, &self.damage) {
            (_, Some(d)) => write!(f, " ({d})"),
            (Some(n), None) => write!(f, " on node {n}"),
            (None, None) => f.write_str(" (no node recorded)"),
        }
    }
}

/// Every address that stops an import; nothing was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    /// Held in etcd by another owner, or by the same owner on another node.
    pub held: Vec<Holder>,
    /// Inside no range of the network.
    pub outside: Vec<IpAddr>,
    /// Disk files naming no attachment, and why.
    pub damaged: Vec<(IpAddr, String)>,
}

impl Refusal {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.outside.is_empty() && self.damaged.is_empty()
    }

    /// Every address in the way.
    pub fn len(&self) -> usize {
        self.held.len() + self.outside.len() + self.damaged.len()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} address(es) cannot be imported, nothing was written",
            self.len()
        )?;
        let mut parts: Vec<String> = self.held.iter().map(|h| h.to_string()).collect();
        parts.extend(
            self.outside
                .iter()
                .map(|ip| format!("{ip} outside every range")),
        );
        parts.extend(
            self.damaged
                .iter()
                .map(|(ip, why)| format!("{ip} damaged on disk ({why})")),
        );
        write!(f, ": {}", parts.join("; "))
    }
}

/// A write that failed, and what taking back the run's earlier writes did.
#[derive(Debug)]
pub struct WriteFailure {
    /// Every failure of the writes, in order.
    pub failures: Vec<Failure>,
    /// Addresses someone else took after they were read.
    pub taken: Vec<Holder>,
    /// Addresses this run had written before it failed.
    pub written: usize,
    /// Of those, taken back.
    pub taken_back: usize,
    /// Written by this run and changed since by someone else: left alone.
    pub left: Vec<IpAddr>,
    /// Every failure of taking them back (what it leaves is named).
    pub undo: Vec<Failure>,
}

impl fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.failures.iter().map(|x| x.to_string()).collect();
        parts.extend(
            self.taken
                .iter()
                .map(|h| format!("{h}, taken after it was read")),
        );
        write!(f, "import failed: {}", parts.join("; "))?;
        write!(
            f,
            "; {} of the {} address(es) it had written were taken back",
            self.taken_back, self.written
        )?;
        if !self.left.is_empty() {
            let l: Vec<String> = self.left.iter().map(|ip| ip.to_string()).collect();
            write!(
                f,
                "; left alone, changed by someone else since: {}",
                l.join(", ")
            )?;
        }
        if !self.undo.is_empty() {
            let u: Vec<String> = self.undo.iter().map(|x| x.to_string()).collect();
            write!(f, "; taking back failed: {}", u.join("; "))?;
        }
        Ok(())
    }
}

/// Why an import did not happen, or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("node name {node:?}: expected 1 to 253 characters of letters, digits, '.', '-', '_'")]
    InvalidNode { node: String },
    /// Addresses in the way; nothing was written.
    #[error("{0}")]
    Refused(Refusal),
    #[error(
        "{key} records blockSize {found}, the configuration's ipam.store.blockSize is \
         {configured}: every node of a network must use the same; fix the configuration \
         (nothing was written)"
    )]
    BlockSize {
        key: String,
        found: u32,
        configured: u32,
    },
    #[error(
        "{key} holds {found:?}, not a layout this version knows (version {LAYOUT_VERSION}); \
         nothing was written"
    )]
    UnknownLayout { key: String, found: String },
    /// Reservations written by a version before layout 2 (no layout key):
    /// the plugin migrates them on its first call, an import must not
    /// pretend they are migrated.
    #[error(
        "{prefix} holds reservations but no layout key (written before layout 2): let this \
         version's plugin migrate the network first (any ADD on a node with the etcd store), \
         then import; nothing was written"
    )]
    OldLayout { prefix: String },
    #[error("reading etcd before the import: {0}")]
    Read(#[source] StoreError),
    /// A write failed after others succeeded; those were taken back.
    #[error("{0}")]
    Write(WriteFailure),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Read(e)
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Reservations written.
    pub imported: usize,
    /// Reservations etcd already held with the same record (an earlier import).
    pub already_present: usize,
    /// Blocks claimed for the node (their first address).
    pub blocks_claimed: Vec<IpAddr>,
    /// Imported addresses in blocks other nodes claimed: borrowed.
    pub borrowed: usize,
    /// The layout key was written (it was absent).
    pub layout_written: bool,
    /// The node's activity cursors as written (empty when nothing was written).
    pub cursors: BTreeMap<String, IpAddr>,
    /// Transactions that wrote.
    pub transactions: usize,
}

/// How far the writes are, after each transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Transactions done, of `batches`.
    pub batch: usize,
    pub batches: usize,
    /// Reservations written so far, of `total`.
    pub written: usize,
    pub total: usize,
}

/// The same rule as `ipam.store.node` (a key segment: no `/`).
pub fn valid_node(n: &str) -> bool {
    (1..=253).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether some range set hands out `ip` (inside one of its ranges, not
/// that range's gateway, not excluded): what a block's `full` hint counts.
pub fn usable(sets: &[RangeSet], ip: IpAddr) -> bool {
    sets.iter().any(|s| blocks::usable(s, ip))
}

/// What etcd held before the import, where it writes (read from one revision).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Address keys in the blocks of the imported addresses.
    pub values: HashMap<IpAddr, Result<Vec<u8>, Oversized>>,
    /// Block claims of those blocks; None when unreadable (claimed by
    /// someone all the same).
    pub claims: HashMap<IpAddr, Option<BlockRecord>>,
    /// The node's activity key, when present and readable.
    pub activity: Option<Activity>,
}

/// One reservation to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReservation {
    pub ip: IpAddr,
    pub owner: Owner,
    /// The address key's value (the index keys hold the same bytes).
    pub value: Vec<u8>,
}

/// What the import will write, from [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub block_size: u32,
    /// Sorted by address (IPv4 first).
    pub new: Vec<NewReservation>,
    pub present: usize,
    /// Unclaimed blocks holding an imported address, with their claims.
    pub claims: Vec<(IpAddr, BlockRecord)>,
    pub borrowed: usize,
    pub activity: Activity,
    /// The activity key as it was (restored if the import is taken back).
    pub prior_activity: Option<Activity>,
}

fn sort_key(ip: &IpAddr) -> (bool, u128) {
    (ip.is_ipv6(), addr::to_u128(*ip))
}

/// The record the import writes for `owner` on `node` (None: damaged).
fn record(owner: &Owner, node: &str) -> Option<Record> {
    Some(Record {
        container_id: owner.container_id()?.to_string(),
        ifname: owner.ifname().map(str::to_string),
        node: Some(node.to_string()),
    })
}

/// Plans the import of `req` against `snap` (pure): the reservations to
/// write, the blocks to claim with their `full` hints, the activity to
/// record; or every address in the way.
pub fn plan(
    req: &ImportRequest<'_>,
    block_size: u32,
    snap: &Snapshot,
    now: u64,
) -> Result<Plan, Refusal> {
    let mut refusal = Refusal::default();
    let mut entries: Vec<&Entry> = req.entries.iter().collect();
    entries.sort_by_key(|e| sort_key(&e.ip));
    entries.dedup_by_key(|e| e.ip);
    let mut new = Vec::new();
    let mut present = 0;
    // Every imported address, new or present.
    let mut imported: BTreeSet<(bool, u128)> = BTreeSet::new();
    for e in entries {
        let Some(rec) = record(&e.owner, req.node) else {
            let why = e
                .damage
                .clone()
                .unwrap_or_else(|| "names no attachment".into());
            refusal.damaged.push((e.ip, why));
            continue;
        };
        if !req.sets.iter().any(|s| s.contains(e.ip)) {
            refusal.outside.push(e.ip);
            continue;
        }
        match snap.values.get(&e.ip) {
            None => new.push(NewReservation {
                ip: e.ip,
                owner: e.owner.clone(),
                value: rec.encode(),
            }),
            Some(found) => {
                let (owner, node) = match found {
                    Ok(v) => Record::decode(v),
                    Err(big) => (Err(big.to_string()), None),
                };
                match owner {
                    Ok(o) if o == e.owner && node.as_deref() == Some(req.node) => present += 1,
                    Ok(o) => refusal.held.push(Holder {
                        ip: e.ip,
                        owner: o,
                        node,
                        damage: None,
                    }),
                    Err(why) => refusal.held.push(Holder {
                        ip: e.ip,
                        owner: Owner::Damaged,
                        node,
                        damage: Some(why),
                    }),
                }
            }
        }
        imported.insert(sort_key(&e.ip));
    }
    if !refusal.is_empty() {
        return Err(refusal);
    }
    // Blocks holding an imported address, in address order.
    let mut blocks: BTreeMap<(bool, u128), (IpAddr, usize)> = BTreeMap::new();
    for n in &new {
        let b = base_of(n.ip, block_size);
        blocks.entry(sort_key(&b)).or_insert((b, 0)).1 += 1;
    }
    for &(v6, n) in &imported {
        let like = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        };
        let b = base_of(addr::from_u128(like, n), block_size);
        blocks.entry(sort_key(&b)).or_insert((b, 0));
    }
    let mut claims = Vec::new();
    let mut borrowed = 0;
    for (base, new_in_block) in blocks.into_values() {
        match snap.claims.get(&base) {
            Some(Some(c)) if c.node == req.node => {}
            Some(_) => borrowed += new_in_block,
            None => {
                let b = addr::to_u128(base);
                let full = (b..=b + (u128::from(block_size) - 1)).all(|a| {
                    let ip = addr::from_u128(base, a);
                    !usable(req.sets, ip)
                        || snap.values.contains_key(&ip)
                        || imported.contains(&sort_key(&ip))
                });
                claims.push((
                    base,
                    BlockRecord {
                        node: req.node.to_string(),
                        size: block_size,
                        full,
                    },
                ));
            }
        }
    }
    // The node's own cursors win (it allocated in cluster mode already);
    // the disk's fill in the range sets it has none for.
    let mut cursors = snap
        .activity
        .as_ref()
        .map(|a| a.cursors.clone())
        .unwrap_or_default();
    for (&i, &ip) in req.cursors {
        if req.sets.get(i).is_some_and(|s| s.contains(ip)) {
            cursors.entry(i.to_string()).or_insert(ip);
        }
    }
    Ok(Plan {
        block_size,
        new,
        present,
        claims,
        borrowed,
        activity: Activity {
            at: now,
            op: IMPORT_OP.to_string(),
            cursors,
        },
        prior_activity: snap.activity.clone(),
    })
}

/// One write of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The layout key (compared absent).
    Layout,
    /// `plan.claims[i]`, create-if-absent.
    Claim(usize),
    /// `plan.new[i]`: address key (compared absent), its two index keys.
    Address(usize),
    /// The node's activity key.
    Activity,
}

/// The operations of one transaction, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    fn addresses(&self) -> impl Iterator<Item = usize> + '_ {
        self.ops.iter().filter_map(|o| match o {
            Op::Address(i) => Some(*i),
            _ => None,
        })
    }
}

/// (operations in the success list, bytes of keys and values) of `op`.
fn cost(op: Op, plan: &Plan, keys: &Keys, node: &str) -> (usize, usize) {
    match op {
        Op::Layout => (1, keys.layout().len() * 2 + 32),
        Op::Claim(i) => {
            let base = plan.claims[i].0;
            (
                1,
                keys.block(base).len() * 2 + keys.node_block(node, base).len() + node.len() + 48,
            )
        }
        Op::Address(i) => {
            let n = &plan.new[i];
            let index = keys
                .index_of(&n.owner, n.ip)
                .map_or(0, |k| k.len() + n.value.len());
            // Put, compare and get of the address key; the two index puts.
            (
                3,
                keys.ip(n.ip).len() * 3
                    + n.value.len()
                    + index
                    + keys.node_ip(node, n.ip).len()
                    + n.value.len(),
            )
        }
        Op::Activity => (
            1,
            keys.activity(node).len() + 64 + plan.activity.cursors.len() * 64,
        ),
    }
}

/// Splits the plan's writes into transactions within etcd's limits: at
/// most [`OUTER_OPS`] operations in each list and [`TXN_BYTES`] bytes;
/// the layout first, each block's claim with (before) its first new
/// address, the activity last. Nothing when there is nothing new.
pub fn batches(plan: &Plan, keys: &Keys, node: &str, layout: bool) -> Vec<Batch> {
    if plan.new.is_empty() {
        return Vec::new();
    }
    let mut order = Vec::new();
    if layout {
        order.push(Op::Layout);
    }
    let mut claim_of: HashMap<IpAddr, usize> = plan
        .claims
        .iter()
        .enumerate()
        .map(|(i, (base, _))| (*base, i))
        .collect();
    for (i, n) in plan.new.iter().enumerate() {
        if let Some(c) = claim_of.remove(&base_of(n.ip, plan.block_size)) {
            order.push(Op::Claim(c));
        }
        order.push(Op::Address(i));
    }
    // Claims of blocks holding only addresses already present.
    let mut rest: Vec<usize> = claim_of.into_values().collect();
    rest.sort_unstable();
    order.extend(rest.into_iter().map(Op::Claim));
    order.push(Op::Activity);
    let mut out = Vec::new();
    let mut cur = Batch::default();
    let (mut ops, mut bytes) = (0, 0);
    for op in order {
        let (o, b) = cost(op, plan, keys, node);
        if !cur.ops.is_empty() && (ops + o > OUTER_OPS || bytes + b > TXN_BYTES) {
            out.push(std::mem::take(&mut cur));
            (ops, bytes) = (0, 0);
        }
        cur.ops.push(op);
        ops += o;
        bytes += b;
    }
    out.push(cur);
    out
}

/// Stretches of addresses `[first, last]` covering the blocks of `ips`
/// (blocks closer than [`MERGE_GAP`] merged), each at most [`READ_SPAN`]
/// addresses: what the import reads.
pub fn read_spans(ips: &[IpAddr], block_size: u32) -> Vec<(IpAddr, IpAddr)> {
    let mut bases: Vec<IpAddr> = ips.iter().map(|ip| base_of(*ip, block_size)).collect();
    bases.sort_by_key(sort_key);
    bases.dedup();
    let mut spans: Vec<(IpAddr, IpAddr)> = Vec::new();
    for b in bases {
        let last = last_of(b, block_size);
        match spans.last_mut() {
            Some((first, end))
                if addr::same_family(*end, b)
                    && addr::to_u128(b) - addr::to_u128(*end) <= MERGE_GAP
                    && addr::to_u128(last) - addr::to_u128(*first) < READ_SPAN =>
            {
                *end = last;
            }
            _ => spans.push((b, last)),
        }
    }
    spans
}

/// A transaction this run applied (or may have): what to take back.
#[derive(Debug)]
struct Applied {
    /// The revision it was applied at; None when its outcome is unknown
    /// (etcd did not answer).
    revision: Option<i64>,
    batch: Batch,
}

/// The outcome of one batch.
struct Wrote {
    written: usize,
    present: usize,
    layout: bool,
    activity: bool,
    claimed: BTreeSet<usize>,
    applied: Applied,
}

fn wrote(batch: Batch, revision: Option<i64>, claimed: BTreeSet<usize>, present: usize) -> Wrote {
    Wrote {
        written: batch.addresses().count(),
        present,
        layout: batch.ops.contains(&Op::Layout),
        activity: batch.ops.contains(&Op::Activity),
        claimed,
        applied: Applied { revision, batch },
    }
}

/// A batch that failed.
struct Failed {
    failures: Vec<Failure>,
    taken: Vec<Holder>,
    /// The batch, when it may have been applied after all.
    maybe: Option<Applied>,
}

/// What the keys of a batch whose compares failed hold now.
#[derive(Default)]
struct Seen {
    /// Addresses holding exactly the record the batch writes.
    same: BTreeSet<usize>,
    /// The layout key holds the layout the batch writes.
    same_layout: bool,
    /// The `mod_revision`s of those.
    revisions: BTreeSet<i64>,
    /// Claims holding the batch's claim, with their `mod_revision`.
    claims: HashMap<usize, i64>,
}

fn claims_of(batch: &Batch) -> impl Iterator<Item = usize> + '_ {
    batch.ops.iter().filter_map(|o| match o {
        Op::Claim(i) => Some(*i),
        _ => None,
    })
}

/// Who an address key's value (as read) names.
fn holder(ip: IpAddr, value: &Result<Vec<u8>, Oversized>) -> Holder {
    let (owner, node) = match value {
        Ok(v) => Record::decode(v),
        Err(big) => (Err(big.to_string()), None),
    };
    let (owner, damage) = match owner {
        Ok(o) => (o, None),
        Err(why) => (Owner::Damaged, Some(why)),
    };
    Holder {
        ip,
        owner,
        node,
        damage,
    }
}

fn conflict(reason: String) -> StoreError {
    StoreError::Backend {
        backend: "etcd",
        op: "import".into(),
        source: reason.into(),
        retryable: true,
    }
}

/// `first-last` of a batch's addresses, for messages.
fn span_text(plan: &Plan, batch: &Batch) -> Option<String> {
    let addrs: Vec<usize> = batch.addresses().collect();
    let (a, b) = (addrs.first()?, addrs.last()?);
    Some(format!("{}-{}", plan.new[*a].ip, plan.new[*b].ip))
}

/// One import against one store.
struct Importer<'a> {
    rpc: &'a mut Rpc,
    keys: &'a Keys,
    node: &'a str,
    block_size: u32,
}

impl EtcdStore {
    /// Imports `req`'s reservations as `req.node`'s (see the module
    /// documentation); `progress` hears after each transaction.
    pub fn import(
        &mut self,
        req: &ImportRequest<'_>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Imported, ImportError> {
        if !valid_node(req.node) {
            return Err(ImportError::InvalidNode {
                node: req.node.to_string(),
            });
        }
        if req.entries.is_empty() {
            return Ok(Imported::default()); // nothing to read or write
        }
        if self.rpc.is_none() {
            self.rpc = Some(Rpc::new(&self.cfg, self.keys.base())?);
        }
        let EtcdStore { cfg, keys, rpc, .. } = self;
        let mut im = Importer {
            rpc: rpc.as_mut().expect("set above"),
            keys,
            node: req.node,
            block_size: cfg.block_size,
        };
        im.run(req, progress)
    }
}

impl Importer<'_> {
    /// Each call gets the configured timeout of its own: an import of
    /// many reservations is many calls.
    fn deadline(&self) -> Instant {
        Instant::now() + self.rpc.timeout()
    }

    fn layout_value(&self) -> Layout {
        Layout {
            version: LAYOUT_VERSION,
            block_size: self.block_size,
        }
    }

    /// Whether the layout key must be written (it is absent), after
    /// checking the one there; and the revision the reads are at.
    fn read_layout(&mut self) -> Result<(bool, Option<i64>), ImportError> {
        let key = self.keys.layout();
        let d = self.deadline();
        let (kv, rev) =
            self.rpc
                .get_one("read the layout key", d, key.clone().into_bytes(), None)?;
        let Some(kv) = kv else {
            // Absent: a new network, or reservations of layout 1.
            let start = self.keys.ips().into_bytes();
            let mut o = GetOptions::new()
                .with_range(prefix_end(&start))
                .with_keys_only()
                .with_limit(1);
            if let Some(r) = rev {
                o = o.with_revision(r);
            }
            let d = self.deadline();
            let resp = self.rpc.get("look for reservations", d, start, o)?;
            if !resp.kvs().is_empty() {
                return Err(ImportError::OldLayout {
                    prefix: self.keys.base().to_string(),
                });
            }
            return Ok((true, rev));
        };
        let text = match &kv.value {
            Ok(v) => String::from_utf8_lossy(v).into_owned(),
            Err(big) => big.to_string(),
        };
        match kv.value.as_deref().ok().and_then(Layout::decode) {
            Some(l) if l.version != LAYOUT_VERSION => {
                Err(ImportError::UnknownLayout { key, found: text })
            }
            Some(l) if l.block_size != self.block_size => Err(ImportError::BlockSize {
                key,
                found: l.block_size,
                configured: self.block_size,
            }),
            Some(_) => Ok((false, rev)),
            None => Err(ImportError::UnknownLayout { key, found: text }),
        }
    }

    /// What etcd holds in the blocks of the imported addresses, at `rev`:
    /// a range read of address keys and one of block claims per stretch of
    /// blocks ([`read_spans`]).
    fn read(&mut self, req: &ImportRequest<'_>, rev: Option<i64>) -> Result<Snapshot, StoreError> {
        let ips: Vec<IpAddr> = req.entries.iter().map(|e| e.ip).collect();
        let mut snap = Snapshot::default();
        let mut rev = rev;
        for (first, last) in read_spans(&ips, self.block_size) {
            let (s, e) = self.keys.ip_range(first, last);
            let d = self.deadline();
            let op = format!("read addresses {first}-{last}");
            let page = self.rpc.range(&op, d, s.into_bytes(), e, rev, false)?;
            rev = rev.or(page.revision);
            for kv in page.kvs {
                if let Some(ip) = self.keys.parse_ip(&kv.key) {
                    snap.values.insert(ip, kv.value);
                }
            }
            let mut e = self.keys.block(last).into_bytes();
            e.push(0);
            let s = self.keys.block(first).into_bytes();
            let d = self.deadline();
            let op = format!("read block claims {first}-{last}");
            let page = self.rpc.range(&op, d, s, e, rev, false)?;
            for kv in page.kvs {
                if let Some(b) = self.keys.parse_block(&kv.key) {
                    let rec = kv.value.ok().as_deref().and_then(BlockRecord::decode);
                    snap.claims.insert(b, rec);
                }
            }
        }
        let d = self.deadline();
        let key = self.keys.activity(self.node).into_bytes();
        let (kv, _) = self.rpc.get_one("read the node's activity", d, key, rev)?;
        snap.activity = kv.and_then(|kv| Activity::decode(kv.value.ok()?.as_slice()));
        Ok(snap)
    }

    fn run(
        &mut self,
        req: &ImportRequest<'_>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Imported, ImportError> {
        let (layout, rev) = self.read_layout()?;
        let snap = self.read(req, rev)?;
        let plan =
            plan(req, self.block_size, &snap, Activity::now()).map_err(ImportError::Refused)?;
        let mut done = Imported {
            already_present: plan.present,
            borrowed: plan.borrowed,
            ..Imported::default()
        };
        let batches = batches(&plan, self.keys, self.node, layout);
        let total = plan.new.len();
        let mut applied: Vec<Applied> = Vec::new();
        let mut claimed: BTreeSet<usize> = BTreeSet::new();
        for (k, batch) in batches.iter().enumerate() {
            let what = match span_text(&plan, batch) {
                Some(span) => format!("write transaction {} of {} ({span})", k + 1, batches.len()),
                None => format!("write transaction {} of {}", k + 1, batches.len()),
            };
            match self.write(&plan, batch.clone(), &what) {
                Ok(w) => {
                    done.imported += w.written;
                    done.already_present += w.present;
                    done.layout_written |= w.layout;
                    claimed.extend(w.claimed);
                    done.transactions += 1;
                    if w.activity {
                        done.cursors = plan.activity.cursors.clone();
                    }
                    applied.push(w.applied);
                }
                Err(mut failed) => {
                    if let Some(a) = failed.maybe.take() {
                        applied.push(a);
                    }
                    return Err(ImportError::Write(self.take_back(&plan, applied, failed)));
                }
            }
            progress(&Progress {
                batch: k + 1,
                batches: batches.len(),
                written: done.imported,
                total,
            });
        }
        done.blocks_claimed = claimed.into_iter().map(|i| plan.claims[i].0).collect();
        Ok(done)
    }

    /// The transaction of `batch`: every address key and the layout key
    /// compared absent; the claims create-if-absent; on failure, every key
    /// but the activity read back.
    fn batch_txn(&self, plan: &Plan, batch: &Batch) -> Txn {
        let (keys, node) = (self.keys, self.node);
        let absent = |k: String| Compare::create_revision(k, CompareOp::Equal, 0);
        let (mut when, mut then, mut otherwise) = (Vec::new(), Vec::new(), Vec::new());
        for op in &batch.ops {
            match *op {
                Op::Layout => {
                    when.push(absent(keys.layout()));
                    then.push(TxnOp::put(
                        keys.layout(),
                        self.layout_value().encode(),
                        None,
                    ));
                    otherwise.push(TxnOp::get(keys.layout(), None));
                }
                Op::Claim(i) => {
                    let (base, rec) = &plan.claims[i];
                    let claim = Txn::new()
                        .when(vec![absent(keys.block(*base))])
                        .and_then(vec![
                            TxnOp::put(keys.block(*base), rec.encode(), None),
                            TxnOp::put(keys.node_block(node, *base), Vec::new(), None),
                        ]);
                    then.push(TxnOp::txn(claim));
                    otherwise.push(TxnOp::get(keys.block(*base), None));
                }
                Op::Address(i) => {
                    let n = &plan.new[i];
                    let key = keys.ip(n.ip);
                    when.push(absent(key.clone()));
                    then.push(TxnOp::put(key.clone(), n.value.clone(), None));
                    if let Some(index) = keys.index_of(&n.owner, n.ip) {
                        then.push(TxnOp::put(index, n.value.clone(), None));
                    }
                    then.push(TxnOp::put(keys.node_ip(node, n.ip), n.value.clone(), None));
                    otherwise.push(TxnOp::get(key, None));
                }
                Op::Activity => {
                    then.push(TxnOp::put(
                        keys.activity(node),
                        plan.activity.encode(),
                        None,
                    ));
                }
            }
        }
        Txn::new().when(when).and_then(then).or_else(otherwise)
    }

    /// Writes `batch`. A batch whose compares failed because some of its
    /// addresses hold exactly the records it writes (an identical import
    /// ran meanwhile) counts those as present and writes the rest; one
    /// whose answer was lost and that was sent again is recognised as
    /// applied when every compared key holds its write.
    fn write(&mut self, plan: &Plan, mut batch: Batch, what: &str) -> Result<Wrote, Failed> {
        let mut present = 0;
        for _ in 0..=RETRIES {
            let txn = self.batch_txn(plan, &batch);
            let d = self.deadline();
            let resp = match self.rpc.txn(what, d, txn) {
                Ok(r) => r,
                Err(source) => {
                    // Perhaps applied all the same: take_back reads it back.
                    return Err(Failed {
                        failures: vec![Failure {
                            what: what.to_string(),
                            source,
                        }],
                        taken: Vec::new(),
                        maybe: Some(Applied {
                            revision: None,
                            batch,
                        }),
                    });
                }
            };
            if resp.succeeded() {
                let rev = resp.header().map(|h| h.revision());
                let nested = resp.op_responses().into_iter().filter_map(|r| match r {
                    TxnOpResponse::Txn(t) => Some(t.succeeded()),
                    _ => None,
                });
                // The claims are the batch's only nested transactions.
                let claimed = claims_of(&batch)
                    .zip(nested)
                    .filter_map(|(i, ok)| ok.then_some(i))
                    .collect();
                return Ok(wrote(batch, rev, claimed, present));
            }
            let seen = self.compared(plan, &batch, &resp, what)?;
            let addresses = batch.addresses().count();
            let layout = batch.ops.contains(&Op::Layout);
            // Sent again after an attempt that got no answer, and every
            // compared key holds this batch's write, at one revision: that
            // attempt was applied.
            if self.rpc.resent()
                && seen.same.len() == addresses
                && seen.same_layout == layout
                && seen.revisions.len() == 1
            {
                let r = seen.revisions.first().copied();
                let claimed = seen
                    .claims
                    .into_iter()
                    .filter(|(_, cr)| Some(*cr) == r)
                    .map(|(i, _)| i)
                    .collect();
                return Ok(wrote(batch, r, claimed, present));
            }
            if seen.same.is_empty() && !seen.same_layout {
                return Err(Failed {
                    failures: vec![Failure {
                        what: what.to_string(),
                        source: conflict(
                            "its compares failed, yet every key it compared is as read".into(),
                        ),
                    }],
                    taken: Vec::new(),
                    maybe: None,
                });
            }
            // Someone imported the same records meanwhile: those are
            // present; write the rest.
            present += seen.same.len();
            batch.ops.retain(|o| match o {
                Op::Address(i) => !seen.same.contains(i),
                Op::Layout => !seen.same_layout,
                _ => true,
            });
        }
        Err(Failed {
            failures: vec![Failure {
                what: what.to_string(),
                source: conflict(format!("lost {RETRIES} races with an identical import")),
            }],
            taken: Vec::new(),
            maybe: None,
        })
    }

    /// What the keys of a batch whose compares failed hold now (its
    /// failure list read them back, in the batch's order); Err when an
    /// address was taken by someone else or the layout written with
    /// another value.
    fn compared(
        &self,
        plan: &Plan,
        batch: &Batch,
        resp: &etcd_client::TxnResponse,
        what: &str,
    ) -> Result<Seen, Failed> {
        let gets = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next().map(Kv::from),
            _ => None,
        });
        let read_back = batch
            .ops
            .iter()
            .copied()
            .filter(|o| !matches!(o, Op::Activity));
        let mut seen = Seen::default();
        let mut taken = Vec::new();
        for (op, kv) in read_back.zip(gets) {
            let Some(kv) = kv else { continue };
            match op {
                Op::Address(i) => {
                    let n = &plan.new[i];
                    match &kv.value {
                        Ok(v) if *v == n.value => {
                            seen.same.insert(i);
                            seen.revisions.insert(kv.mod_revision);
                        }
                        other => taken.push(holder(n.ip, other)),
                    }
                }
                Op::Layout => match kv.value.as_deref().ok().and_then(Layout::decode) {
                    Some(l) if l == self.layout_value() => {
                        seen.same_layout = true;
                        seen.revisions.insert(kv.mod_revision);
                    }
                    _ => {
                        return Err(Failed {
                            failures: vec![Failure {
                                what: what.to_string(),
                                source: conflict(format!(
                                    "{} was written meanwhile with another layout",
                                    self.keys.layout()
                                )),
                            }],
                            taken,
                            maybe: None,
                        })
                    }
                },
                Op::Claim(i) => {
                    let ours = kv
                        .value
                        .as_deref()
                        .ok()
                        .and_then(BlockRecord::decode)
                        .is_some_and(|c| c == plan.claims[i].1);
                    if ours {
                        seen.claims.insert(i, kv.mod_revision);
                    }
                }
                Op::Activity => {}
            }
        }
        if !taken.is_empty() {
            return Err(Failed {
                failures: Vec::new(),
                taken,
                maybe: None,
            });
        }
        Ok(seen)
    }

    /// Takes back every transaction in `applied`, newest first: each key
    /// deleted only while it is still the write this run made (its
    /// `mod_revision`); the activity key restored as it was.
    fn take_back(&mut self, plan: &Plan, applied: Vec<Applied>, failed: Failed) -> WriteFailure {
        let mut out = WriteFailure {
            failures: failed.failures,
            taken: failed.taken,
            written: 0,
            taken_back: 0,
            left: Vec::new(),
            undo: Vec::new(),
        };
        for a in applied.into_iter().rev() {
            let span = span_text(plan, &a.batch).unwrap_or_else(|| "claims".into());
            let rev = match a.revision {
                Some(r) => r,
                None => match self.applied_revision(plan, &a.batch) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue, // not applied
                    Err(source) => {
                        out.undo.push(Failure {
                            what: format!(
                                "read back {span} (a transaction whose outcome is unknown; \
                                 what it wrote may remain)"
                            ),
                            source,
                        });
                        continue;
                    }
                },
            };
            out.written += a.batch.addresses().count();
            let what = format!("take back {span}");
            // The layout key (in the first transaction, taken back last)
            // stays when anything this run wrote does: the keys left
            // follow it.
            let mut batch = a.batch.clone();
            if !out.left.is_empty() || !out.undo.is_empty() {
                batch.ops.retain(|o| *o != Op::Layout);
            }
            let txn = Txn::new().and_then(self.undo_ops(plan, &batch, rev));
            let d = self.deadline();
            match self.rpc.txn(&what, d, txn) {
                Ok(resp) => {
                    let undone = resp
                        .op_responses()
                        .into_iter()
                        .map(|r| matches!(r, TxnOpResponse::Txn(t) if t.succeeded()));
                    for (op, ok) in batch.ops.iter().zip(undone) {
                        if let Op::Address(i) = op {
                            if ok {
                                out.taken_back += 1;
                            } else {
                                out.left.push(plan.new[*i].ip);
                            }
                        }
                    }
                }
                Err(source) => out.undo.push(Failure {
                    what: format!("{what} (what it wrote remains)"),
                    source,
                }),
            }
        }
        out.left.sort_by_key(sort_key);
        out
    }

    /// One nested transaction per write of `batch`: undone while its key
    /// is still at `rev` (etcd counts each against what the outer list of
    /// at most [`OUTER_OPS`] leaves: at most 3 operations).
    fn undo_ops(&self, plan: &Plan, batch: &Batch, rev: i64) -> Vec<TxnOp> {
        let (keys, node) = (self.keys, self.node);
        let mut ops = Vec::new();
        for op in &batch.ops {
            let (key, undo) = match *op {
                Op::Layout => (keys.layout(), vec![TxnOp::delete(keys.layout(), None)]),
                Op::Claim(i) => {
                    let b = plan.claims[i].0;
                    let undo = vec![
                        TxnOp::delete(keys.block(b), None),
                        TxnOp::delete(keys.node_block(node, b), None),
                    ];
                    (keys.block(b), undo)
                }
                Op::Address(i) => {
                    let n = &plan.new[i];
                    let mut undo = vec![TxnOp::delete(keys.ip(n.ip), None)];
                    if let Some(index) = keys.index_of(&n.owner, n.ip) {
                        undo.push(TxnOp::delete(index, None));
                    }
                    undo.push(TxnOp::delete(keys.node_ip(node, n.ip), None));
                    (keys.ip(n.ip), undo)
                }
                Op::Activity => {
                    let k = keys.activity(node);
                    let undo = match &plan.prior_activity {
                        Some(prior) => vec![TxnOp::put(k.clone(), prior.encode(), None)],
                        None => vec![TxnOp::delete(k.clone(), None)],
                    };
                    (k, undo)
                }
            };
            let at_rev = Compare::mod_revision(key, CompareOp::Equal, rev);
            ops.push(TxnOp::txn(Txn::new().when(vec![at_rev]).and_then(undo)));
        }
        ops
    }

    /// The revision at which a batch whose outcome is unknown was applied,
    /// read back: its addresses holding this import's records, all at one
    /// revision (or, for a batch of claims, its first claim or the
    /// activity); None when it was not applied.
    fn applied_revision(&mut self, plan: &Plan, batch: &Batch) -> Result<Option<i64>, StoreError> {
        let addrs: Vec<usize> = batch.addresses().collect();
        let mut revs = BTreeSet::new();
        if let (Some(&a), Some(&b)) = (addrs.first(), addrs.last()) {
            let (lo, hi) = (plan.new[a].ip, plan.new[b].ip);
            let (s, e) = self.keys.ip_range(lo, hi);
            let d = self.deadline();
            let op = format!("read back {lo}-{hi}");
            let page = self.rpc.range(&op, d, s.into_bytes(), e, None, false)?;
            let found: HashMap<IpAddr, Kv> = page
                .kvs
                .into_iter()
                .filter_map(|kv| Some((self.keys.parse_ip(&kv.key)?, kv)))
                .collect();
            for &i in &addrs {
                let n = &plan.new[i];
                if let Some(kv) = found.get(&n.ip) {
                    if kv.value.as_deref() == Ok(n.value.as_slice()) {
                        revs.insert(kv.mod_revision);
                    }
                }
            }
        } else {
            let (key, value) = match (claims_of(batch).next(), batch.ops.contains(&Op::Activity)) {
                (Some(i), _) => (self.keys.block(plan.claims[i].0), plan.claims[i].1.encode()),
                (None, true) => (self.keys.activity(self.node), plan.activity.encode()),
                (None, false) => return Ok(None),
            };
            let d = self.deadline();
            let (kv, _) = self.rpc.get_one("read back", d, key.into_bytes(), None)?;
            if let Some(kv) = kv.filter(|kv| kv.value.as_deref() == Ok(value.as_slice())) {
                revs.insert(kv.mod_revision);
            }
        }
        // One transaction writes all its keys at one revision.
        Ok(revs.first().copied().filter(|_| revs.len() == 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sets(ipam: serde_json::Value) -> Vec<RangeSet> {
        crate::config::load_ipam(cni_proto::SpecVersion::V1_0_0, &ipam)
            .unwrap()
            .ranges
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn att(id: &str) -> Owner {
        Owner::Attachment {
            id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn value(id: &str, ifname: Option<&str>, node: &str) -> Result<Vec<u8>, Oversized> {
        Ok(Record {
            container_id: id.into(),
            ifname: ifname.map(str::to_string),
            node: Some(node.into()),
        }
        .encode())
    }

    fn request<'a>(
        entries: &'a [Entry],
        cursors: &'a BTreeMap<usize, IpAddr>,
        sets: &'a [RangeSet],
    ) -> ImportRequest<'a> {
        ImportRequest {
            node: "n1",
            entries,
            cursors,
            sets,
        }
    }

    #[test]
    fn node_names_and_usable_addresses() {
        let s = sets(
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "exclude": ["10.0.0.9/32"]}],
            [{"subnet": "10.0.1.0/24"}]]}),
        );
        assert!(usable(&s, ip("10.0.0.2")) && usable(&s, ip("10.0.1.2")));
        assert!(!usable(&s, ip("10.0.0.1")), "a gateway");
        assert!(!usable(&s, ip("10.0.0.9")), "excluded");
        assert!(
            !usable(&s, ip("10.0.0.0")) && !usable(&s, ip("10.0.2.1")),
            "outside"
        );
        assert!(valid_node("worker-3.example_1"));
        assert!(!valid_node("a/b") && !valid_node("") && !valid_node(&"x".repeat(254)));
    }

    #[test]
    fn plan_refuses_every_address_in_the_way_and_writes_nothing() {
        let s =
            sets(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/120"}]]}));
        let entries = vec![
            Entry::new(ip("10.0.0.2"), att("c1")),
            Entry::new(ip("10.0.0.3"), att("c2")),
            Entry::new(ip("10.0.0.4"), att("c3")),
            Entry::new(ip("10.0.0.5"), att("c4")),
            Entry::damaged(ip("10.0.0.6"), "empty file"),
            Entry::new(ip("10.9.0.9"), att("c5")),
            Entry::new(ip("2001:db8::5"), Owner::Legacy { id: "c6".into() }),
        ];
        let mut snap = Snapshot::default();
        // Another container; the same container on another node; garbage;
        // the same container with an ifname where the disk has none.
        snap.values
            .insert(ip("10.0.0.2"), value("x9", Some("eth0"), "n1"));
        snap.values
            .insert(ip("10.0.0.3"), value("c2", Some("eth0"), "n2"));
        snap.values.insert(ip("10.0.0.4"), Ok(b"garbage".to_vec()));
        snap.values
            .insert(ip("2001:db8::5"), value("c6", Some("eth0"), "n1"));
        // c4's address holds exactly what the import writes: present, not in the way.
        snap.values
            .insert(ip("10.0.0.5"), value("c4", Some("eth0"), "n1"));
        let cursors = BTreeMap::new();
        let r = plan(&request(&entries, &cursors, &s), 64, &snap, 0).unwrap_err();
        let held: Vec<(IpAddr, Owner, Option<&str>)> = r
            .held
            .iter()
            .map(|h| (h.ip, h.owner.clone(), h.node.as_deref()))
            .collect();
        assert_eq!(
            held,
            vec![
                (ip("10.0.0.2"), att("x9"), Some("n1")),
                (ip("10.0.0.3"), att("c2"), Some("n2")),
                (ip("10.0.0.4"), Owner::Damaged, None),
                (ip("2001:db8::5"), att("c6"), Some("n1")),
            ]
        );
        assert!(r.held[2].damage.as_deref().unwrap().contains("unreadable"));
        assert_eq!(r.outside, vec![ip("10.9.0.9")]);
        assert_eq!(r.damaged, vec![(ip("10.0.0.6"), "empty file".to_string())]);
        assert_eq!(r.len(), 6);
        let text = r.to_string();
        assert!(text.starts_with("6 address(es) cannot be imported, nothing was written: "));
        assert!(
            text.contains("10.0.0.3 held by c2 eth0 on node n2"),
            "{text}"
        );
        assert!(text.contains("10.9.0.9 outside every range"), "{text}");
        assert!(
            text.contains("10.0.0.6 damaged on disk (empty file)"),
            "{text}"
        );
    }

    #[test]
    fn plan_claims_free_blocks_with_their_full_hint() {
        // Range 10.0.0.1-10.0.0.30, gateway .1, .9-.10 excluded; blocks of 4.
        let s = sets(
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.30",
            "exclude": ["10.0.0.9/32", "10.0.0.10/32"]}]]}),
        );
        let entries = vec![
            // Block .0-.3: .0 outside, .1 the gateway: .2 and .3 are all of it.
            Entry::new(ip("10.0.0.2"), att("a")),
            Entry::new(ip("10.0.0.3"), Owner::Legacy { id: "b".into() }),
            // Block .4-.7: .6 held by another node, .7 free.
            Entry::new(ip("10.0.0.5"), att("c")),
            Entry::new(ip("10.0.0.4"), att("d")),
            // Block .8-.11: .9, .10 excluded, .11 present already, .8 new.
            Entry::new(ip("10.0.0.8"), att("e")),
            Entry::new(ip("10.0.0.11"), att("f")),
            // Block .12-.15 claimed by n1 already; .16-.19 by n2: borrowed.
            Entry::new(ip("10.0.0.12"), att("g")),
            Entry::new(ip("10.0.0.17"), att("h")),
            // Block .28-.31: .31 is outside the range; .28-.30 imported.
            Entry::new(ip("10.0.0.28"), att("i")),
            Entry::new(ip("10.0.0.29"), att("j")),
            Entry::new(ip("10.0.0.30"), att("k")),
        ];
        let mut snap = Snapshot::default();
        snap.values
            .insert(ip("10.0.0.6"), value("z", Some("eth0"), "n2"));
        snap.values
            .insert(ip("10.0.0.11"), value("f", Some("eth0"), "n1"));
        let rec = |node: &str| BlockRecord {
            node: node.into(),
            size: 4,
            full: false,
        };
        snap.claims.insert(ip("10.0.0.12"), Some(rec("n1")));
        snap.claims.insert(ip("10.0.0.16"), Some(rec("n2")));
        snap.activity = Some(Activity {
            at: 1,
            op: "ADD".into(),
            cursors: [("1".to_string(), ip("10.0.0.40"))].into(),
        });
        let cursors: BTreeMap<usize, IpAddr> = [(0, ip("10.0.0.5")), (3, ip("10.0.0.7"))].into();
        let p = plan(&request(&entries, &cursors, &s), 4, &snap, 42).unwrap();
        let new: Vec<IpAddr> = p.new.iter().map(|n| n.ip).collect();
        assert_eq!(
            new,
            [
                "10.0.0.2",
                "10.0.0.3",
                "10.0.0.4",
                "10.0.0.5",
                "10.0.0.8",
                "10.0.0.12",
                "10.0.0.17",
                "10.0.0.28",
                "10.0.0.29",
                "10.0.0.30"
            ]
            .map(ip)
        );
        assert_eq!(
            String::from_utf8(p.new[1].value.clone()).unwrap(),
            r#"{"containerID":"b","node":"n1"}"#,
            "a legacy file becomes a legacy record"
        );
        assert_eq!(
            String::from_utf8(p.new[0].value.clone()).unwrap(),
            r#"{"containerID":"a","ifname":"eth0","node":"n1"}"#
        );
        assert_eq!(p.present, 1);
        assert_eq!(p.borrowed, 1);
        let claims: Vec<(IpAddr, bool)> = p.claims.iter().map(|(b, c)| (*b, c.full)).collect();
        assert_eq!(
            claims,
            vec![
                (ip("10.0.0.0"), true),
                (ip("10.0.0.4"), false),
                (ip("10.0.0.8"), true),
                (ip("10.0.0.28"), true),
            ]
        );
        assert!(p.claims.iter().all(|(_, c)| c.node == "n1" && c.size == 4));
        // The node's own cursor stays; the disk's fills set 0; set 3 does not exist.
        assert_eq!(
            p.activity,
            Activity {
                at: 42,
                op: "import".into(),
                cursors: [
                    ("0".to_string(), ip("10.0.0.5")),
                    ("1".to_string(), ip("10.0.0.40"))
                ]
                .into(),
            }
        );
    }

    #[test]
    fn an_import_already_done_plans_nothing_to_write() {
        let s = sets(json!({"subnet": "10.0.0.0/24"}));
        let entries = vec![
            Entry::new(ip("10.0.0.2"), att("a")),
            Entry::new(ip("10.0.0.3"), Owner::Legacy { id: "b".into() }),
        ];
        let mut snap = Snapshot::default();
        snap.values
            .insert(ip("10.0.0.2"), value("a", Some("eth0"), "n1"));
        snap.values.insert(ip("10.0.0.3"), value("b", None, "n1"));
        let cursors = BTreeMap::new();
        let p = plan(&request(&entries, &cursors, &s), 64, &snap, 0).unwrap();
        assert!(p.new.is_empty());
        assert_eq!(p.present, 2);
        let keys = Keys::new("/p", "net");
        assert!(batches(&p, &keys, "n1", true).is_empty());
    }

    /// Every batch within etcd's limits; everything written exactly once;
    /// the layout first, each claim with its block's first address, the
    /// activity last.
    fn check_batches(p: &Plan, bs: &[Batch], keys: &Keys) {
        let mut seen = BTreeSet::new();
        let mut claims = BTreeSet::new();
        for (k, b) in bs.iter().enumerate() {
            let ops: usize = b.ops.iter().map(|o| cost(*o, p, keys, "n1").0).sum();
            let bytes: usize = b.ops.iter().map(|o| cost(*o, p, keys, "n1").1).sum();
            assert!(ops <= OUTER_OPS, "batch {k}: {ops} operations");
            // Nested transactions' lists count against what the outer one leaves.
            assert!(ops + 3 <= MAX_TXN_OPS);
            assert!(
                bytes <= TXN_BYTES || b.ops.len() == 1,
                "batch {k}: {bytes} bytes"
            );
            for o in &b.ops {
                match o {
                    Op::Address(i) => {
                        assert!(seen.insert(*i));
                        let base = base_of(p.new[*i].ip, p.block_size);
                        if let Some(c) = p.claims.iter().position(|(b, _)| *b == base) {
                            assert!(claims.contains(&c), "claim of {base} after its address");
                        }
                    }
                    Op::Claim(c) => assert!(claims.insert(*c)),
                    Op::Layout => assert_eq!((k, b.ops[0]), (0, Op::Layout)),
                    Op::Activity => assert_eq!(k, bs.len() - 1),
                }
            }
        }
        assert_eq!(seen.len(), p.new.len());
        assert_eq!(claims.len(), p.claims.len());
        assert_eq!(bs.last().unwrap().ops.last(), Some(&Op::Activity));
    }

    #[test]
    fn batches_stay_within_etcds_limits() {
        let s = sets(json!({"subnet": "10.0.0.0/16"}));
        let entries: Vec<Entry> = (0..5000u32)
            .map(|i| {
                let a =
                    IpAddr::V4((u32::from(std::net::Ipv4Addr::new(10, 0, 0, 2)) + i * 3).into());
                Entry::new(a, att(&format!("c{i}")))
            })
            .collect();
        let cursors = BTreeMap::new();
        let p = plan(
            &request(&entries, &cursors, &s),
            64,
            &Snapshot::default(),
            0,
        )
        .unwrap();
        assert_eq!(p.new.len(), 5000);
        assert_eq!(p.claims.len(), 5000 * 3 / 64 + 1);
        let keys = Keys::new("/cni/ipam", "net");
        let bs = batches(&p, &keys, "n1", true);
        check_batches(&p, &bs, &keys);
        // About 40 reservations a transaction (3 puts each, the claims between).
        assert!((120..=130).contains(&bs.len()), "{}", bs.len());

        // Container IDs of 4000 bytes (the largest a disk file holds): the
        // byte budget, not the operation count, splits them.
        let long: Vec<Entry> = (0..100u32)
            .map(|i| {
                let a = IpAddr::V4((u32::from(std::net::Ipv4Addr::new(10, 0, 1, 0)) + i).into());
                Entry::new(a, att(&format!("{i}{}", "x".repeat(4000))))
            })
            .collect();
        let p = plan(&request(&long, &cursors, &s), 64, &Snapshot::default(), 0).unwrap();
        let bs = batches(&p, &keys, "n1", false);
        check_batches(&p, &bs, &keys);
        // By operations alone three would do.
        assert!(bs.len() >= 4, "{}", bs.len());
        assert!(!bs[0].ops.contains(&Op::Layout));
    }

    #[test]
    fn read_spans_cover_the_blocks_in_few_range_reads() {
        let ips: Vec<IpAddr> = [
            "10.0.0.5",
            "10.0.0.70",
            "10.0.16.1",
            "10.1.0.1",
            "2001:db8::1",
            "10.0.0.6",
        ]
        .map(ip)
        .to_vec();
        assert_eq!(
            read_spans(&ips, 64),
            vec![
                // .0/26 and .64/26 are next to each other; 10.0.16.0 is
                // within 4096 addresses of them, 10.1.0.0 is not.
                (ip("10.0.0.0"), ip("10.0.16.63")),
                (ip("10.1.0.0"), ip("10.1.0.63")),
                (ip("2001:db8::"), ip("2001:db8::3f")),
            ]
        );
        // A /14 full of reservations: spans of at most READ_SPAN addresses.
        let all: Vec<IpAddr> = (0..1u32 << 18)
            .map(|i| IpAddr::V4((u32::from(std::net::Ipv4Addr::new(10, 64, 0, 0)) + i).into()))
            .collect();
        let spans = read_spans(&all, 64);
        assert_eq!(spans.len(), (1 << 18) / READ_SPAN as usize);
        assert_eq!(spans[0], (ip("10.64.0.0"), ip("10.64.63.255")));
        assert_eq!(spans.last().unwrap().1, ip("10.67.255.255"));
    }
}
