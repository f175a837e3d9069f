//! The session's writes: the ADD's one transaction (address keys, both
//! index keys, block claims, `full` hints, the node's activity), guarded
//! releases (alone or an attachment's together) with their index keys, the
//! hint and the activity, and the activity heartbeat.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::blocks;
use super::keys::{prefix_end, Activity, BlockRecord, Record};
use super::{EtcdSession, Held};
use crate::error::{Failure, StoreError};
use crate::store::{self, Attachment, Committed, Entry, Owner, Pick};

impl EtcdSession<'_> {
    pub(super) fn reserve(
        &mut self,
        att: &Attachment,
        picks: &[Pick],
    ) -> Result<Committed, StoreError> {
        if picks.is_empty() {
            return Ok(Committed::durable());
        }
        let value = Record::new(att.id(), att.ifname(), self.node).encode();
        let node = self.node;
        let mut when = Vec::with_capacity(picks.len() + 2);
        let mut then = Vec::with_capacity(picks.len() * 4 + 4);
        let mut check = Vec::with_capacity(picks.len());
        let mut per_block: BTreeMap<IpAddr, usize> = BTreeMap::new();
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
                self.keys.node_ip(node, p.ip),
                value.clone(),
                None,
            ));
            check.push(TxnOp::get(key, None));
            *per_block
                .entry(blocks::base_of(p.ip, self.block_size))
                .or_default() += 1;
        }
        // Blocks: claimed with the first address handed out from them (the
        // claim compared absent: two nodes never claim one block); marked
        // full when this takes their last free address.
        let mut marked = BTreeSet::new();
        for (base, n) in &per_block {
            let full = self.seen.get(base).is_some_and(|s| s.free <= *n);
            let key = self.keys.block(*base);
            if self.claims.contains(base) {
                let claim = BlockRecord {
                    full,
                    ..self.own_claim()
                };
                when.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
                then.push(TxnOp::put(key, claim.encode(), None));
                then.push(TxnOp::put(self.keys.node_block(node, *base), "", None));
            } else if let Some(claim) = self.seen.get(base).and_then(|s| s.claim.clone()) {
                if full && !claim.full {
                    then.push(mark(&key, &claim, true));
                    marked.insert(*base);
                }
            }
        }
        for (base, claim) in self.newly_full() {
            if !marked.contains(&base) && !per_block.contains_key(&base) {
                then.push(mark(&self.keys.block(base), &claim, true));
            }
        }
        if self.record {
            let mut activity = self.mine()?.activity.clone();
            for p in picks {
                activity.cursors.insert(p.set_index.to_string(), p.ip);
            }
            activity.at = Activity::now();
            activity.op = "ADD".into();
            then.push(TxnOp::put(
                self.keys.activity(node),
                activity.encode(),
                None,
            ));
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
        let mine = |r: &TxnOpResponse| match r {
            TxnOpResponse::Get(g) => g.kvs().first().is_some_and(|kv| kv.value() == value),
            _ => false,
        };
        // Sent again after an attempt that got no answer: when every address
        // holds this attachment's record, that attempt was applied.
        let applied_before = !resp.succeeded()
            && self.rpc.resent()
            && resp.op_responses().iter().filter(|r| mine(r)).count() == picks.len();
        if resp.succeeded() || applied_before {
            let rev = resp.header().map_or(0, |h| h.revision());
            let revs: Vec<(i64, i64)> = resp
                .op_responses()
                .iter()
                .filter_map(|r| match r {
                    TxnOpResponse::Get(g) => g
                        .kvs()
                        .first()
                        .map(|kv| (kv.create_revision(), kv.mod_revision())),
                    _ => None,
                })
                .collect();
            self.wrote(resp.header());
            if let Some(m) = self.mine.as_mut() {
                for p in picks {
                    m.activity.cursors.insert(p.set_index.to_string(), p.ip);
                }
                m.blocks.extend(std::mem::take(&mut self.claims));
            }
            self.seen.clear();
            for (k, p) in picks.iter().enumerate() {
                let (create_revision, mod_revision) = revs.get(k).copied().unwrap_or((rev, rev));
                let held = Held {
                    owner: att.owner(),
                    damage: None,
                    node: Some(self.node.to_string()),
                    create_revision,
                    mod_revision,
                };
                self.values.insert(p.ip, held);
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

    /// Deletes the address key only while it is the very write read
    /// (`mod_revision`), so the transaction is guarded: sent again after a
    /// member did not answer, or applied late by that member, it deletes
    /// nothing that was written since (a new reservation of the same
    /// attachment holds the same bytes, not the same revision). Its
    /// attachment and node index keys go with it; its block is no longer
    /// full.
    pub(super) fn release_one(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        let Some(held) = self.held_value(entry)? else {
            return Ok(false);
        };
        let key = self.keys.ip(entry.ip);
        let mut then = vec![TxnOp::delete(key.clone(), None)];
        // When the address moved on, the index keys written with the
        // reservation read (same create_revision) are stale.
        let mut otherwise = Vec::new();
        for i in self.index_keys(&entry.owner, &held, entry.ip) {
            then.push(TxnOp::delete(i.clone(), None));
            let stale = Compare::create_revision(i.clone(), CompareOp::Equal, held.create_revision);
            otherwise.push(TxnOp::txn(
                Txn::new()
                    .when(vec![stale])
                    .and_then(vec![TxnOp::delete(i, None)]),
            ));
        }
        then.extend(self.after_release(&[(entry.ip, held.node.clone())])?);
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key,
                CompareOp::Equal,
                held.mod_revision,
            )])
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
    /// revision this session read): etcd down or slow leaves every reservation
    /// in place, never some. When one of them changed meanwhile, the
    /// transaction writes nothing and each is released on its own terms.
    pub(super) fn release_together(&mut self, entries: &[&Entry]) -> Vec<Failure> {
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
        let (mut when, mut then, mut released) = (Vec::new(), Vec::new(), Vec::new());
        for e in entries {
            let held = match self.held_value(e) {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(source) => return vec![Failure { what, source }],
            };
            let key = self.keys.ip(e.ip);
            when.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                held.mod_revision,
            ));
            then.push(TxnOp::delete(key, None));
            for i in self.index_keys(&e.owner, &held, e.ip) {
                then.push(TxnOp::delete(i, None));
            }
            released.push((e.ip, held.node.clone()));
        }
        if when.is_empty() {
            return Vec::new();
        }
        match self.after_release(&released) {
            Ok(ops) => then.extend(ops),
            Err(source) => return vec![Failure { what, source }],
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
}

/// A nested transaction setting a block claim's `full` hint, applied only
/// while the claim is still `current` byte for byte.
fn mark(key: &str, current: &BlockRecord, full: bool) -> TxnOp {
    TxnOp::txn(
        Txn::new()
            .when(vec![Compare::value(
                key.to_string(),
                CompareOp::Equal,
                current.encode(),
            )])
            .and_then(vec![TxnOp::put(
                key.to_string(),
                current.with_full(full).encode(),
                None,
            )]),
    )
}

/// How old a node's activity may get before a STATUS or GC that writes
/// nothing else records it (seconds): the clock `ipamctl cluster reclaim`
/// reads, refreshed without a write per STATUS call.
const HEARTBEAT_SECS: u64 = 300;

impl EtcdSession<'_> {
    /// The index keys of a reservation: its attachment's and its node's.
    fn index_keys(&self, owner: &Owner, held: &Held, ip: IpAddr) -> Vec<String> {
        [
            self.keys.index_of(owner, ip),
            self.keys.node_index_of(held.node.as_deref(), ip),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// What a release writes beside the deletions: the blocks it frees an
    /// address in are no longer full; this node's own releases are its
    /// activity (DEL, or GC after [`Session::list_collectable`]).
    fn after_release(
        &mut self,
        released: &[(IpAddr, Option<String>)],
    ) -> Result<Vec<TxnOp>, StoreError> {
        let mut ops = Vec::new();
        let bases: BTreeSet<IpAddr> = released
            .iter()
            .map(|(ip, _)| blocks::base_of(*ip, self.block_size))
            .collect();
        // The node's own blocks' claims are known bytes: no read.
        let own = match self.record {
            true => self.mine()?.blocks.clone(),
            false => BTreeSet::new(),
        };
        for base in bases {
            let key = self.keys.block(base);
            if own.contains(&base) {
                ops.push(mark(&key, &self.own_claim().with_full(true), false));
                continue;
            }
            let (kv, _) = self.rpc.get_one(
                &format!("read block {base}"),
                self.deadline,
                key.clone().into_bytes(),
                None,
            )?;
            let claim = kv.and_then(|kv| BlockRecord::decode(kv.value.ok()?.as_slice()));
            if let Some(c) = claim.filter(|c| c.full) {
                ops.push(mark(&key, &c, false));
            }
        }
        let mine = released
            .iter()
            .any(|(_, n)| n.as_deref() == Some(self.node));
        if self.record && mine {
            let op = if self.collecting { "GC" } else { "DEL" };
            ops.push(self.activity_op(op)?);
        }
        Ok(ops)
    }

    /// The put of this node's activity key: now, `op`, its cursors as read.
    fn activity_op(&mut self, op: &str) -> Result<TxnOp, StoreError> {
        let mut a = self.mine()?.activity.clone();
        a.at = Activity::now();
        a.op = op.to_string();
        Ok(TxnOp::put(self.keys.activity(self.node), a.encode(), None))
    }

    /// Records the node's activity when it is older than
    /// [`HEARTBEAT_SECS`] (STATUS, a GC removing nothing).
    pub(super) fn heartbeat(&mut self, op: &str) -> Result<(), StoreError> {
        if !self.record {
            return Ok(());
        }
        let at = self.mine()?.activity.at;
        if Activity::now().saturating_sub(at) < HEARTBEAT_SECS {
            return Ok(());
        }
        let put = self.activity_op(op)?;
        let resp = self.rpc.txn(
            "record this node's activity",
            self.deadline,
            Txn::new().and_then(vec![put]),
        )?;
        self.wrote(resp.header());
        Ok(())
    }
}
