//! Step 3 of an import: the plan's writes in guarded transactions within
//! etcd's limits ([`batches`] and their costs), each sent, retried after
//! losing a race with an identical import or recognised as applied after a
//! lost answer; and, when one fails, the take-back of this run's earlier
//! transactions.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::plan::sort_key;
use super::{Holder, ImportError, Imported, Importer, Plan, Progress, WriteFailure};
use crate::error::{Failure, StoreError};
use crate::store::etcd::blocks::base_of;
use crate::store::etcd::keys::{BlockRecord, Keys, Layout, Record, LAYOUT_VERSION};
use crate::store::etcd::page::{Kv, Oversized};
use crate::store::Owner;

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
/// Transactions a batch is tried again after losing a race with an
/// identical import (its addresses already hold the same records).
const RETRIES: usize = 3;

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

impl Importer<'_> {
    fn layout_value(&self) -> Layout {
        Layout {
            version: LAYOUT_VERSION,
            block_size: self.block_size,
        }
    }

    /// Writes `plan` in [`batches`] (the layout key first when `layout`),
    /// `progress` hearing after each transaction; when one fails, takes
    /// back the transactions before it.
    pub(super) fn write_all(
        &mut self,
        plan: &Plan,
        layout: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Imported, ImportError> {
        let mut done = Imported {
            already_present: plan.present,
            borrowed: plan.borrowed,
            ..Imported::default()
        };
        let batches = batches(plan, self.keys, self.node, layout);
        let total = plan.new.len();
        let mut applied: Vec<Applied> = Vec::new();
        let mut claimed: BTreeSet<usize> = BTreeSet::new();
        for (k, batch) in batches.iter().enumerate() {
            let what = match span_text(plan, batch) {
                Some(span) => format!("write transaction {} of {} ({span})", k + 1, batches.len()),
                None => format!("write transaction {} of {}", k + 1, batches.len()),
            };
            match self.write(plan, batch.clone(), &what) {
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
                    return Err(ImportError::Write(self.take_back(plan, applied, failed)));
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
    use crate::store::etcd::import::plan::fixtures::{att, request, sets};
    use crate::store::etcd::import::{plan, Snapshot};
    use crate::store::Entry;
    use serde_json::json;
    use std::collections::BTreeMap;

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
}
