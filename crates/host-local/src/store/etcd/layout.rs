//! The pool's layout key, checked on a node's first call, and the move of a
//! pool written by layout 1 (address keys, attachment index and one shared
//! cursor per range set: no blocks, no node index) to layout 2.
//!
//! Layout 1's address keys stay the reservations, so only the node index is
//! missing: it is written for every address key that records a node (each
//! guarded by the address key's revision, so one released meanwhile gets
//! none), then the layout key. Blocks need nothing: what is free in a block
//! is read from the address keys, so a block claimed later over layout-1
//! reservations hands out only what they leave free. The move is done by
//! the first node to call, and resumes where it stopped when that call ran
//! out of time (the node index keys already written are skipped).

use std::collections::HashSet;
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::keys::{prefix_end, Layout, Record, LAYOUT_VERSION};
use super::EtcdSession;
use crate::error::StoreError;

/// Node index keys written per transaction (etcd 3.4 allows 128 operations).
const BATCH: usize = 100;

/// A layout-1 reservation without its node index key: the address key
/// and its mod_revision, the address, the value, the index key to write.
type Missing = (Vec<u8>, i64, IpAddr, Vec<u8>, String);

fn refused(op: &str, why: String) -> StoreError {
    StoreError::Backend {
        backend: "etcd",
        op: op.to_string(),
        source: why.into(),
        retryable: false,
    }
}

impl EtcdSession<'_> {
    /// The pool's layout is this version's and its block size the
    /// configured one; a pool without a layout key is moved to it.
    pub(super) fn check_layout(&mut self) -> Result<(), StoreError> {
        let key = self.keys.layout();
        let (kv, _) = self.rpc.get_one(
            "read the pool's layout",
            self.deadline,
            key.clone().into_bytes(),
            None,
        )?;
        match kv {
            Some(kv) => self.compatible(kv.value.ok().as_deref()),
            None => {
                self.migrate()?;
                let mine = Layout {
                    version: LAYOUT_VERSION,
                    block_size: self.block_size,
                };
                let txn = Txn::new()
                    .when(vec![Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then(vec![TxnOp::put(key.clone(), mine.encode(), None)])
                    .or_else(vec![TxnOp::get(key, None)]);
                let resp = self
                    .rpc
                    .txn("write the pool's layout", self.deadline, txn)?;
                if resp.succeeded() {
                    return Ok(());
                }
                // Another node wrote it first: it must agree with ours.
                let theirs = resp.op_responses().into_iter().find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => {
                        g.kvs().first().map(|kv| kv.value().to_vec())
                    }
                    _ => None,
                });
                self.compatible(theirs.as_deref())
            }
        }
    }

    fn compatible(&self, value: Option<&[u8]>) -> Result<(), StoreError> {
        let key = self.keys.layout();
        let Some(l) = value.and_then(Layout::decode) else {
            return Err(refused(
                "read the pool's layout",
                format!("{key} is unreadable; it records the pool's layout and block size (restore it, e.g. {{\"version\":{LAYOUT_VERSION},\"blockSize\":{}}})", self.block_size),
            ));
        };
        if l.version > LAYOUT_VERSION {
            return Err(refused(
                "read the pool's layout",
                format!("{key} says layout {}, written by a newer version of this plugin (this one knows {LAYOUT_VERSION}): upgrade this node", l.version),
            ));
        }
        if l.block_size != self.block_size {
            return Err(refused(
                "read the pool's layout",
                format!(
                    "ipam.store.blockSize is {} but the pool's blocks hold {} addresses ({key}): set blockSize to {} on every node of the network",
                    self.block_size, l.block_size, l.block_size
                ),
            ));
        }
        Ok(())
    }

    /// Writes the node index of every layout-1 reservation lacking one.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let nodes = self.keys.nodes().into_bytes();
        let have: HashSet<Vec<u8>> = self
            .rpc
            .range(
                "read the node index",
                self.deadline,
                nodes.clone(),
                prefix_end(&nodes),
                None,
                true,
            )?
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let ips = self.keys.ips().into_bytes();
        let all = self
            .rpc
            .range(
                "read layout-1 reservations",
                self.deadline,
                ips.clone(),
                prefix_end(&ips),
                None,
                false,
            )?
            .kvs;
        let mut todo: Vec<Missing> = Vec::new();
        for kv in all {
            let (Some(ip), Ok(value)) = (self.keys.parse_ip(&kv.key), kv.value) else {
                continue; // not an address key, or too large to be a record: damage, no node
            };
            let Some(node) = Record::decode(&value).1 else {
                continue; // records no node: no node's GC removes it (ipamctl release does)
            };
            let index = self.keys.node_ip(&node, ip);
            if !have.contains(index.as_bytes()) {
                todo.push((kv.key, kv.mod_revision, ip, value, index));
            }
        }
        for batch in todo.chunks(BATCH) {
            let when: Vec<Compare> = batch
                .iter()
                .map(|(k, rev, ..)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
                .collect();
            let then: Vec<TxnOp> = batch
                .iter()
                .map(|(_, _, _, v, idx)| TxnOp::put(idx.clone(), v.clone(), None))
                .collect();
            let resp = self.rpc.txn(
                "index layout-1 reservations by node",
                self.deadline,
                Txn::new().when(when).and_then(then),
            )?;
            if resp.succeeded() {
                continue;
            }
            // One changed meanwhile: each on its own (a released one gets none).
            for (k, rev, ip, v, idx) in batch {
                let txn = Txn::new()
                    .when(vec![Compare::mod_revision(
                        k.clone(),
                        CompareOp::Equal,
                        *rev,
                    )])
                    .and_then(vec![TxnOp::put(idx.clone(), v.clone(), None)]);
                self.rpc.txn(
                    &format!("index the layout-1 reservation {ip} by node"),
                    self.deadline,
                    txn,
                )?;
            }
        }
        Ok(())
    }
}
