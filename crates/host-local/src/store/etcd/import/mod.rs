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
//! 2. **Plan** ([`plan()`], pure): every address must be inside the
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
//!
//! This file owns the public types (the request, what was done, why it was
//! not) and the entry point, [`EtcdStore::import`]; the steps are its
//! submodules: `read` (step 1), `plan` (step 2), `write` (step 3 and the
//! take-back).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use super::keys::{Activity, Keys, LAYOUT_VERSION};
use super::rpc::Rpc;
use super::EtcdStore;
use crate::config::RangeSet;
use crate::error::{Failure, StoreError};
use crate::store::{Entry, Owner};

mod plan;
mod read;
mod write;

pub use plan::{plan, usable, NewReservation, Plan, Snapshot, IMPORT_OP};
pub use read::read_spans;
pub use write::{batches, Batch, Op, MAX_TXN_OPS, OUTER_OPS, TXN_BYTES};

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

    fn run(
        &mut self,
        req: &ImportRequest<'_>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Imported, ImportError> {
        let (layout, rev) = self.read_layout()?;
        let snap = self.read(req, rev)?;
        let plan =
            plan(req, self.block_size, &snap, Activity::now()).map_err(ImportError::Refused)?;
        self.write_all(&plan, layout, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(valid_node("worker-3.example_1"));
        assert!(!valid_node("a/b") && !valid_node("") && !valid_node(&"x".repeat(254)));
    }
}
