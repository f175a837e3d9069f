//! Where a node's next address comes from: its own blocks first (round
//! robin from its cursor), then a block it claims, then, only when no block
//! is left unclaimed, a free address borrowed from another node's block.
//! Every read is bounded by what it needs: one range read of the node's
//! activity and block index, one of each block's address keys (a block is
//! at most `MAX_BLOCK` addresses), and claims and borrowing scan the pool's
//! block keys in windows, never its address keys.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use etcd_client::GetOptions;

use super::blocks::{self, SetBlocks};
use super::keys::{prefix_end, Activity, BlockRecord};
use super::{EtcdSession, Window};
use crate::addr;
use crate::config::RangeSet;
use crate::error::StoreError;

/// Block claim keys read at once when looking for an unclaimed block
/// (keys only: about 50 bytes each).
const CLAIM_WINDOW: u128 = 1024;
/// Block claims read at once (with their values) when borrowing.
const BORROW_WINDOW: u128 = 256;
/// Unclaimed blocks whose addresses are read in one window before moving
/// on (an unclaimed block with nothing usable free is rare: fully excluded,
/// or taken by addresses requested by name).
const TRIES_PER_WINDOW: usize = 4;

/// The node's own state, read once per session.
#[derive(Debug, Default)]
pub(super) struct Mine {
    /// Its activity key (default when absent).
    pub activity: Activity,
    /// Whether the activity key exists (else: the node's first call).
    pub known: bool,
    /// The first address of each block it claimed.
    pub blocks: BTreeSet<IpAddr>,
}

/// A block placement read: its claim (None: unclaimed or unreadable) and how
/// many usable addresses were free in it.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub claim: Option<BlockRecord>,
    pub free: usize,
}

/// A stable number of a node's name (FNV-1a): where in the pool its block
/// claims start, so nodes claiming at once spread out.
fn name_hash(node: &str, set_index: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain(set_index.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A number differing between calls (after a lost race: spread out).
fn random() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = t ^ u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl EtcdSession<'_> {
    /// The node's activity and blocks: one range read over
    /// `nodes/<node>/activity` and `nodes/<node>/blocks/`.
    pub(super) fn mine(&mut self) -> Result<&Mine, StoreError> {
        if self.mine.is_none() {
            let start = self.keys.activity(self.node).into_bytes();
            let end = prefix_end(self.keys.node_blocks(self.node).as_bytes());
            let kvs = self.range("read this node's blocks", start.clone(), end, false)?;
            let mut mine = Mine::default();
            for kv in kvs {
                if kv.key == start {
                    mine.known = true;
                    // Unreadable: no cursors (a hint); rewritten by the next commit.
                    if let Some(a) = kv.value.ok().as_deref().and_then(Activity::decode) {
                        mine.activity = a;
                    }
                } else if let Some(b) = self.keys.parse_node_block(self.node, &kv.key) {
                    mine.blocks.insert(b);
                }
            }
            if !mine.known && self.record {
                self.check_layout()?;
            }
            self.mine = Some(mine);
        }
        Ok(self.mine.as_ref().expect("set above"))
    }

    /// The reserved addresses (as numbers) of the block at `base`: one
    /// range read of its address keys, remembered for the session.
    fn taken_in(&mut self, base: IpAddr) -> Result<&BTreeSet<u128>, StoreError> {
        let (lo, hi) = (
            addr::to_u128(base),
            addr::to_u128(blocks::last_of(base, self.block_size)),
        );
        let v4 = base.is_ipv4();
        let found = self
            .windows
            .iter()
            .position(|w| w.v4 == v4 && w.lo <= lo && hi <= w.hi);
        let i = match found {
            Some(i) => i,
            None => {
                let last = blocks::last_of(base, self.block_size);
                let (s, e) = self.keys.ip_range(base, last);
                let kvs = self.range(&format!("read block {base}"), s.into_bytes(), e, true)?;
                let taken = kvs
                    .iter()
                    .filter_map(|kv| self.keys.parse_ip(&kv.key))
                    .map(addr::to_u128)
                    .collect();
                self.windows.push(Window { v4, lo, hi, taken });
                self.windows.len() - 1
            }
        };
        Ok(&self.windows[i].taken)
    }

    /// The free usable addresses of the block at `base` that `keep` admits,
    /// in order, at most `want`, and how many usable ones are free in all.
    fn free_in(
        &mut self,
        set: &RangeSet,
        base: IpAddr,
        want: usize,
        keep: impl Fn(IpAddr) -> bool,
    ) -> Result<(Vec<IpAddr>, usize), StoreError> {
        let size = self.block_size;
        let taken = self.taken_in(base)?;
        let free: Vec<IpAddr> = blocks::usable_in(set, base, size)
            .filter(|ip| !taken.contains(&addr::to_u128(*ip)))
            .collect();
        let total = free.len();
        Ok((
            free.into_iter().filter(|ip| keep(*ip)).take(want).collect(),
            total,
        ))
    }

    /// [`EtcdSession::free_in`] in round-robin order: after `cursor` when it
    /// lies in the block, then wrapping round to the addresses before it.
    fn free_from(
        &mut self,
        set: &RangeSet,
        base: IpAddr,
        want: usize,
        cursor: Option<IpAddr>,
    ) -> Result<(Vec<IpAddr>, usize), StoreError> {
        let c = cursor.filter(|c| blocks::base_of(*c, self.block_size) == base);
        let (mut f, total) = self.free_in(set, base, want, |ip| c.is_none_or(|c| ip > c))?;
        if let Some(c) = c {
            if f.len() < want {
                f.extend(self.free_in(set, base, want - f.len(), |ip| ip <= c)?.0);
            }
        }
        Ok((f, total))
    }

    /// [`crate::store::Session::next_free`] for the etcd store: the node's
    /// blocks, else a claim, else borrowing.
    pub(super) fn place(
        &mut self,
        set_index: usize,
        set: &RangeSet,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let want = want.max(1);
        let size = self.block_size;
        let mine = self.mine()?;
        let cursor = mine.activity.cursors.get(&set_index.to_string()).copied();
        let own: Vec<IpAddr> = mine
            .blocks
            .iter()
            .copied()
            .filter(|b| set.is_ipv4() == b.is_ipv4())
            .collect();
        // Round robin within the node: from the cursor's block on, wrapping
        // round to the addresses before the cursor in its block.
        let at = cursor
            .map(|c| blocks::base_of(c, size))
            .filter(|b| own.contains(b));
        let split = at.map_or(0, |b| own.iter().position(|x| *x == b).unwrap_or(0));
        let order: Vec<IpAddr> = own[split..].iter().chain(&own[..split]).copied().collect();
        let mut free = Vec::new();
        for (i, base) in order.iter().enumerate() {
            let after = if i == 0 {
                cursor.filter(|_| at.is_some())
            } else {
                None
            };
            let (f, total) = self.free_in(set, *base, want - free.len(), |ip| {
                after.is_none_or(|c| ip > c)
            })?;
            self.seen.insert(
                *base,
                Seen {
                    claim: Some(self.own_claim()),
                    free: total,
                },
            );
            free.extend(f);
            if free.len() >= want {
                return Ok(free);
            }
        }
        if let (Some(base), Some(c)) = (at, cursor) {
            let (f, _) = self.free_in(set, base, want - free.len(), |ip| ip <= c)?;
            free.extend(f);
        }
        if !free.is_empty() {
            return Ok(free);
        }
        let claimed = self.claim(set_index, set, want, cursor)?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        self.borrow(set_index, set, want)
    }

    /// This node's claim record as written (not full).
    pub(super) fn own_claim(&self) -> BlockRecord {
        BlockRecord {
            node: self.node.to_string(),
            size: self.block_size,
            full: false,
        }
    }

    /// Where a scan of the set's `n` blocks starts: the node's own place,
    /// or after a lost race (`want` > 1) anywhere.
    fn scan_start(&self, set_index: usize, n: u128, want: usize) -> u128 {
        let h = if want > 1 {
            random()
        } else {
            name_hash(self.node, set_index)
        };
        u128::from(h) % n
    }

    /// Free addresses of an unclaimed block, which the commit claims.
    fn claim(
        &mut self,
        set_index: usize,
        set: &RangeSet,
        want: usize,
        cursor: Option<IpAddr>,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let size = self.block_size;
        let all = SetBlocks::new(set, size);
        let n = all.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let start = self.scan_start(set_index, n, want);
        let pick = if want > 1 {
            random()
        } else {
            name_hash(self.node, set_index)
        };
        for window in all.windows(start, CLAIM_WINDOW) {
            let claimed = self.block_keys(&window)?;
            let unclaimed: Vec<IpAddr> = window
                .into_iter()
                .filter(|b| !claimed.contains(b))
                .collect();
            if unclaimed.is_empty() {
                continue;
            }
            let k = (pick % unclaimed.len() as u64) as usize;
            for base in unclaimed
                .iter()
                .cycle()
                .skip(k)
                .take(TRIES_PER_WINDOW.min(unclaimed.len()))
            {
                let (f, total) = self.free_from(set, *base, want, cursor)?;
                if !f.is_empty() {
                    self.claims.insert(*base);
                    self.seen.insert(
                        *base,
                        Seen {
                            claim: None,
                            free: total,
                        },
                    );
                    return Ok(f);
                }
            }
        }
        Ok(Vec::new())
    }

    /// The claims among the blocks of `window` (keys only).
    fn block_keys(&mut self, window: &[IpAddr]) -> Result<BTreeSet<IpAddr>, StoreError> {
        let (first, last) = (window[0], window[window.len() - 1]);
        let (start, end) = self.keys.block_range(first, last);
        let kvs = self.range(
            &format!("read block claims {first}-{last}"),
            start,
            end,
            true,
        )?;
        Ok(kvs
            .iter()
            .filter_map(|kv| self.keys.parse_block(&kv.key))
            .collect())
    }

    /// Free addresses in other nodes' blocks, scanning claims (with their
    /// `full` hints) in windows; blocks found full are marked so by the
    /// commit, so later borrowers skip them.
    fn borrow(
        &mut self,
        set_index: usize,
        set: &RangeSet,
        want: usize,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let size = self.block_size;
        let all = SetBlocks::new(set, size);
        let n = all.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let start = self.scan_start(set_index, n, want);
        for window in all.windows(start, BORROW_WINDOW) {
            let (first, last) = (window[0], window[window.len() - 1]);
            let (from, to) = self.keys.block_range(first, last);
            let kvs = self.range(
                &format!("read block claims {first}-{last}"),
                from,
                to,
                false,
            )?;
            let claims: HashMap<IpAddr, Option<BlockRecord>> = kvs
                .iter()
                .filter_map(|kv| {
                    let base = self.keys.parse_block(&kv.key)?;
                    let rec = kv.value.as_ref().ok().and_then(|v| BlockRecord::decode(v));
                    Some((base, rec))
                })
                .collect();
            for base in window {
                let Some(rec) = claims.get(&base) else {
                    continue; // unclaimed: the claim pass found nothing free in it
                };
                if rec.as_ref().is_some_and(|r| r.full || r.node == self.node) {
                    continue; // full, or ours (read already)
                }
                let (f, total) = self.free_in(set, base, want, |_| true)?;
                self.seen.insert(
                    base,
                    Seen {
                        claim: rec.clone(),
                        free: total,
                    },
                );
                if !f.is_empty() {
                    return Ok(f);
                }
            }
        }
        Ok(Vec::new())
    }

    /// Blocks this session found with nothing usable free whose claim does
    /// not say so yet: (block, its claim as read).
    pub(super) fn newly_full(&self) -> Vec<(IpAddr, BlockRecord)> {
        self.seen
            .iter()
            .filter(|(_, s)| s.free == 0)
            .filter_map(|(b, s)| Some((*b, s.claim.clone().filter(|c| !c.full)?)))
            .collect()
    }

    /// Reads with this session's snapshot.
    pub(super) fn opts(&self) -> GetOptions {
        match self.revision {
            Some(r) => GetOptions::new().with_revision(r),
            None => GetOptions::new(),
        }
    }
}
