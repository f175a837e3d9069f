//! The invariants of a network's keys (layout 2, see [`keys`](super::keys)),
//! checked over one snapshot of every key under `P/N/`: what `ipamctl
//! check` reports and `ipamctl cluster reclaim` plans from.
//!
//! - every address key naming an attachment has its attachment index key,
//!   and (when it records a node) its node index key, each holding the same
//!   bytes;
//! - every index key (attachment or node) has its address key, and that key
//!   names the same owner (the attachment; the node);
//! - every node block key `nodes/<node>/blocks/..` has its claim
//!   `blocks/..` naming that node, and every claim has its node's block key;
//! - a claim's size is the layout's `blockSize`, and its block is aligned
//!   to it.
//!
//! Reading is [`EtcdSession::read_network`] (paged range reads at one
//! revision); [`NetworkKeys::parse`] and [`audit`] are pure functions over
//! what was read.
//!
//! [`EtcdSession::read_network`]: super::EtcdSession::read_network
//!
//! This file owns the invariant walk ([`audit`], [`Violation`]); reading
//! and sorting the keys is `network`'s (its types re-exported here).

use std::fmt;
use std::net::IpAddr;

use super::keys::Keys;
use crate::addr;

mod network;

pub use network::{
    Address, AttachmentIndex, Claim, NetworkKeys, NodeActivity, NodeKey, NodeKeys, RawKey, Snapshot,
};

/// What an invariant violation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// An address key whose value names no attachment: it reserves its
    /// address, no DEL releases it and every node's GC skips it.
    Damaged,
    /// An address key naming an attachment has no attachment index key:
    /// DEL and CHECK of that attachment do not find it.
    MissingAttachmentIndex,
    /// An address key recording a node has no node index key.
    MissingNodeIndex,
    /// An index key holds other bytes than its address key.
    IndexDiffers,
    /// An index key whose address key does not exist.
    DanglingIndex,
    /// An index key whose address key names another attachment or node.
    IndexOwnerMismatch,
    /// A node's block key without a claim.
    UnclaimedBlock,
    /// A node's block key whose claim names another node.
    ClaimOtherNode,
    /// A claim whose node has no block key for it.
    ClaimWithoutNodeBlock,
    /// A claim whose value is unreadable.
    UnreadableClaim,
    /// A claim whose size is not the layout's blockSize.
    BlockSize,
    /// A claim whose first address is not aligned to its size.
    BlockMisaligned,
    /// The layout key is unreadable.
    UnreadableLayout,
    /// A node's activity key is unreadable.
    UnreadableActivity,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 14] = [
        ViolationKind::Damaged,
        ViolationKind::MissingAttachmentIndex,
        ViolationKind::MissingNodeIndex,
        ViolationKind::IndexDiffers,
        ViolationKind::DanglingIndex,
        ViolationKind::IndexOwnerMismatch,
        ViolationKind::UnclaimedBlock,
        ViolationKind::ClaimOtherNode,
        ViolationKind::ClaimWithoutNodeBlock,
        ViolationKind::UnreadableClaim,
        ViolationKind::BlockSize,
        ViolationKind::BlockMisaligned,
        ViolationKind::UnreadableLayout,
        ViolationKind::UnreadableActivity,
    ];

    /// Its stable name (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::Damaged => "damaged",
            ViolationKind::MissingAttachmentIndex => "missing-attachment-index",
            ViolationKind::MissingNodeIndex => "missing-node-index",
            ViolationKind::IndexDiffers => "index-differs",
            ViolationKind::DanglingIndex => "dangling-index",
            ViolationKind::IndexOwnerMismatch => "index-owner-mismatch",
            ViolationKind::UnclaimedBlock => "unclaimed-block",
            ViolationKind::ClaimOtherNode => "claim-other-node",
            ViolationKind::ClaimWithoutNodeBlock => "claim-without-node-block",
            ViolationKind::UnreadableClaim => "unreadable-claim",
            ViolationKind::BlockSize => "block-size",
            ViolationKind::BlockMisaligned => "block-misaligned",
            ViolationKind::UnreadableLayout => "unreadable-layout",
            ViolationKind::UnreadableActivity => "unreadable-activity",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken invariant: the key concerned and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The key concerned (the one that exists).
    pub key: String,
    /// The address (or block) it is about.
    pub ip: Option<IpAddr>,
    /// The node it is about, when one.
    pub node: Option<String>,
    /// For people: what is wrong, naming the other key.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.kind, self.key, self.detail)
    }
}

fn bytes_text(v: &[u8]) -> String {
    let t = String::from_utf8_lossy(v);
    let shown: String = t.chars().take(80).collect();
    format!("{shown:?}")
}

/// Every broken invariant of `n` (`keys`: its layout; `configured_block`:
/// the configuration's blockSize, used when there is no layout key), in
/// key order within each kind. A pool without a layout key is layout 1's
/// (moved by the first node that calls): it has no node index yet, so
/// missing node index keys are not violations there.
pub fn audit(keys: &Keys, n: &NetworkKeys, configured_block: u32) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut push = |kind, key: String, ip: Option<IpAddr>, node: Option<&str>, detail: String| {
        out.push(Violation {
            kind,
            key,
            ip,
            node: node.map(str::to_string),
            detail,
        })
    };
    // Address keys and their index keys.
    for a in n.addresses.values() {
        let key = a.raw.name();
        let owner = match &a.owner {
            Ok(o) => o,
            Err(why) => {
                push(
                    ViolationKind::Damaged,
                    key,
                    Some(a.ip),
                    a.node.as_deref(),
                    format!(
                        "{why}: it keeps {} reserved, no DEL releases it and every node's GC skips it",
                        a.ip
                    ),
                );
                continue;
            }
        };
        let index_key = keys.index_of(owner, a.ip).expect("an owner with an ID");
        match n.attachment_index_of(owner, a.ip) {
            None => push(
                ViolationKind::MissingAttachmentIndex,
                key.clone(),
                Some(a.ip),
                a.node.as_deref(),
                format!("held by {owner}, but {index_key} does not exist: DEL and CHECK of that attachment do not find it"),
            ),
            Some(i) => {
                if let (Some(iv), Some(av)) = (&i.raw.value, &a.raw.value) {
                    if iv != av {
                        push(
                            ViolationKind::IndexDiffers,
                            i.raw.name(),
                            Some(a.ip),
                            a.node.as_deref(),
                            format!("holds {}, its address key {key} holds {}", bytes_text(iv), bytes_text(av)),
                        );
                    }
                }
            }
        }
        if let Some(node) = a.node.as_ref().filter(|_| n.layout.is_some()) {
            let node_key = keys.node_ip(node, a.ip);
            match n.node_index_of(node, a.ip) {
                None => push(
                    ViolationKind::MissingNodeIndex,
                    key.clone(),
                    Some(a.ip),
                    Some(node),
                    format!("records node {node}, but {node_key} does not exist"),
                ),
                Some(i) => {
                    if let (Some(iv), Some(av)) = (&i.raw.value, &a.raw.value) {
                        if iv != av {
                            push(
                                ViolationKind::IndexDiffers,
                                i.raw.name(),
                                Some(a.ip),
                                Some(node),
                                format!(
                                    "holds {}, its address key {key} holds {}",
                                    bytes_text(iv),
                                    bytes_text(av)
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    // Attachment index keys point at an address key naming their owner.
    for i in &n.attachment_index {
        let addr_key = keys.ip(i.ip);
        let owner = i.owner();
        match n.addresses.get(&i.ip) {
            None => push(
                ViolationKind::DanglingIndex,
                i.raw.name(),
                Some(i.ip),
                None,
                format!("{addr_key} does not exist: the index key reserves nothing"),
            ),
            Some(a) => match &a.owner {
                Ok(o) if *o == owner => {}
                Ok(o) => push(
                    ViolationKind::IndexOwnerMismatch,
                    i.raw.name(),
                    Some(i.ip),
                    a.node.as_deref(),
                    format!("indexes {owner}, but {addr_key} is held by {o}"),
                ),
                Err(_) => push(
                    ViolationKind::IndexOwnerMismatch,
                    i.raw.name(),
                    Some(i.ip),
                    a.node.as_deref(),
                    format!("indexes {owner}, but {addr_key} names no attachment (damaged)"),
                ),
            },
        }
    }
    // Node index keys point at an address key recording their node.
    for i in &n.node_index {
        let addr_key = keys.ip(i.ip);
        match n.addresses.get(&i.ip) {
            None => push(
                ViolationKind::DanglingIndex,
                i.raw.name(),
                Some(i.ip),
                Some(&i.node),
                format!("{addr_key} does not exist: the index key reserves nothing"),
            ),
            Some(a) if a.node.as_deref() == Some(i.node.as_str()) => {}
            Some(a) => push(
                ViolationKind::IndexOwnerMismatch,
                i.raw.name(),
                Some(i.ip),
                Some(&i.node),
                match &a.node {
                    Some(other) => format!(
                        "indexes node {}, but {addr_key} records node {other}",
                        i.node
                    ),
                    None => format!("indexes node {}, but {addr_key} records no node", i.node),
                },
            ),
        }
    }
    // Node block keys and claims name each other.
    for b in &n.node_blocks {
        let claim_key = keys.block(b.ip);
        match n.claims.get(&b.ip) {
            None => push(
                ViolationKind::UnclaimedBlock,
                b.raw.name(),
                Some(b.ip),
                Some(&b.node),
                format!(
                    "{claim_key} does not exist: node {} lists a block nobody claimed",
                    b.node
                ),
            ),
            Some(Claim {
                record: Some(r), ..
            }) if r.node != b.node => push(
                ViolationKind::ClaimOtherNode,
                b.raw.name(),
                Some(b.ip),
                Some(&b.node),
                format!("{claim_key} is claimed by node {}, not {}", r.node, b.node),
            ),
            Some(_) => {}
        }
    }
    let size = n.block_size(configured_block);
    for c in n.claims.values() {
        let key = c.raw.name();
        let Some(r) = &c.record else {
            push(
                ViolationKind::UnreadableClaim,
                key,
                Some(c.base),
                None,
                format!(
                    "unreadable claim {}: expected {{\"node\",\"size\",\"full\"}}",
                    c.raw
                        .value
                        .as_deref()
                        .map_or_else(|| "(too large)".into(), bytes_text)
                ),
            );
            continue;
        };
        if !n
            .node_blocks
            .iter()
            .any(|b| b.ip == c.base && b.node == r.node)
        {
            push(
                ViolationKind::ClaimWithoutNodeBlock,
                key.clone(),
                Some(c.base),
                Some(&r.node),
                format!(
                    "claimed by node {}, but {} does not exist",
                    r.node,
                    keys.node_block(&r.node, c.base)
                ),
            );
        }
        if r.size != size {
            let whose = if matches!(n.layout, Some(Some(_))) {
                "the layout's blockSize"
            } else {
                "the configured blockSize (no layout key)"
            };
            push(
                ViolationKind::BlockSize,
                key.clone(),
                Some(c.base),
                Some(&r.node),
                format!("size {}, {whose} is {size}", r.size),
            );
        }
        if r.size == 0 || !addr::to_u128(c.base).is_multiple_of(u128::from(r.size)) {
            push(
                ViolationKind::BlockMisaligned,
                key,
                Some(c.base),
                Some(&r.node),
                format!("{} is not aligned to the block size {}", c.base, r.size),
            );
        }
    }
    if let Some(None) = n.layout {
        push(
            ViolationKind::UnreadableLayout,
            keys.layout(),
            None,
            None,
            "unreadable: expected {\"version\",\"blockSize\"}".into(),
        );
    }
    for a in n.activity.values().filter(|a| a.activity.is_none()) {
        push(
            ViolationKind::UnreadableActivity,
            a.raw.name(),
            None,
            Some(&a.node),
            "unreadable: expected {\"at\",\"op\",\"cursors\"}; the node's idle time is unknown"
                .into(),
        );
    }
    out.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    out
}

#[cfg(test)]
mod tests {
    use super::network::fixtures::{damaged, good, keys, kv, parse, P};
    use super::*;
    use crate::store::etcd::keys::{BlockRecord, Record};

    fn kinds(kvs: Vec<RawKey>) -> Vec<(ViolationKind, String)> {
        audit(&keys(), &parse(kvs), 64)
            .into_iter()
            .map(|v| (v.kind, v.key))
            .collect()
    }

    fn without(kvs: Vec<RawKey>, key: &str) -> Vec<RawKey> {
        kvs.into_iter()
            .filter(|k| k.key != format!("{P}{key}").as_bytes())
            .collect()
    }

    #[test]
    fn a_consistent_network_has_no_violation() {
        assert_eq!(kinds(good()), []);
    }

    #[test]
    fn missing_index_keys_are_violations_of_their_address_key() {
        use ViolationKind::*;
        let addr = format!("{P}ips/4/0a000005");
        assert_eq!(
            kinds(without(good(), "attachments/c1/eth0/4/0a000005")),
            [(MissingAttachmentIndex, addr.clone())]
        );
        let v = audit(
            &keys(),
            &parse(without(good(), "nodes/node-a/ips/4/0a000005")),
            64,
        );
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].kind, &v[0].key), (MissingNodeIndex, &addr));
        assert!(
            v[0].detail.contains("/p/net/nodes/node-a/ips/4/0a000005"),
            "{}",
            v[0].detail
        );
        assert_eq!(v[0].node.as_deref(), Some("node-a"));
        // The address key gone: both index keys dangle.
        assert_eq!(
            kinds(without(good(), "ips/4/0a000005")),
            [
                (DanglingIndex, format!("{P}attachments/c1/eth0/4/0a000005")),
                (DanglingIndex, format!("{P}nodes/node-a/ips/4/0a000005")),
            ]
        );
    }

    #[test]
    fn index_keys_must_hold_the_same_bytes_and_owner() {
        use ViolationKind::*;
        let mut kvs = without(good(), "attachments/c1/eth0/4/0a000005");
        let other = Record::new("c9", "eth0", "node-a").encode();
        kvs.push(kv(
            &format!("{P}attachments/c9/eth0/4/0a000005"),
            &other,
            12,
        ));
        kvs.push(kv(&format!("{P}nodes/node-b/ips/4/0a000046"), b"{}", 12));
        let mut k = kinds(kvs);
        k.sort();
        assert_eq!(
            k,
            [
                (MissingAttachmentIndex, format!("{P}ips/4/0a000005")),
                (
                    IndexOwnerMismatch,
                    format!("{P}attachments/c9/eth0/4/0a000005")
                ),
                (
                    IndexOwnerMismatch,
                    format!("{P}nodes/node-b/ips/4/0a000046")
                ),
            ]
        );
        let mut kvs = good();
        kvs[2].value = Some(b"{\"containerID\":\"c1\"}".to_vec());
        assert_eq!(
            kinds(kvs),
            [(IndexDiffers, format!("{P}nodes/node-a/ips/4/0a000005"))]
        );
    }

    #[test]
    fn blocks_and_claims_name_each_other_and_fit_the_layout() {
        use ViolationKind::*;
        assert_eq!(
            kinds(without(good(), "nodes/node-a/blocks/4/0a000000")),
            [(ClaimWithoutNodeBlock, format!("{P}blocks/4/0a000000"))]
        );
        assert_eq!(
            kinds(without(good(), "blocks/4/0a000000")),
            [(UnclaimedBlock, format!("{P}nodes/node-a/blocks/4/0a000000"))]
        );
        let mut kvs = good();
        kvs.push(kv(&format!("{P}nodes/node-b/blocks/4/0a000000"), b"", 12));
        assert_eq!(
            kinds(kvs),
            [(ClaimOtherNode, format!("{P}nodes/node-b/blocks/4/0a000000"))]
        );
        let mut kvs = good();
        let odd = BlockRecord {
            node: "node-a".into(),
            size: 32,
            full: false,
        };
        kvs[5].value = Some(odd.encode());
        kvs.push(kv(&format!("{P}blocks/4/0a000050"), &odd.encode(), 12));
        kvs.push(kv(&format!("{P}nodes/node-a/blocks/4/0a000050"), b"", 12));
        let v = audit(&keys(), &parse(kvs), 32);
        let k: Vec<_> = v.iter().map(|v| (v.kind, v.key.as_str())).collect();
        let (b0, b50) = (
            format!("{P}blocks/4/0a000000"),
            format!("{P}blocks/4/0a000050"),
        );
        assert_eq!(
            k,
            [
                (BlockSize, b0.as_str()),
                (BlockSize, b50.as_str()),
                (BlockMisaligned, b50.as_str())
            ]
        );
        assert!(
            v[0].detail.contains("the layout's blockSize is 64"),
            "{}",
            v[0].detail
        );
        // Without a layout key, the configured size is the rule.
        let kvs: Vec<RawKey> = without(good(), "layout");
        assert_eq!(kinds(kvs.clone()), []);
        // ... and a layout-1 pool has no node index yet.
        assert_eq!(
            kinds(without(kvs.clone(), "nodes/node-a/ips/4/0a000005")),
            []
        );
        let v = audit(&keys(), &parse(kvs), 128);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].detail
                .contains("configured blockSize (no layout key) is 128"),
            "{}",
            v[0].detail
        );
    }

    #[test]
    fn damaged_values_unreadable_keys_and_strays() {
        use ViolationKind::*;
        let kvs = damaged();
        let mut k = kinds(kvs);
        k.sort();
        assert_eq!(
            k,
            [
                (Damaged, format!("{P}ips/4/0a000009")),
                (Damaged, format!("{P}ips/4/0a00000a")),
                (UnreadableClaim, format!("{P}blocks/4/0a000000")),
                (UnreadableLayout, format!("{P}layout")),
                (UnreadableActivity, format!("{P}nodes/node-a/activity")),
            ]
        );
        for k in ViolationKind::ALL {
            assert!(!k.as_str().is_empty());
        }
    }
}
