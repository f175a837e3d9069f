//! A network's keys as read: every key under `P/N/` at one revision
//! ([`EtcdSession::read_network`]) and sorted by kind
//! ([`NetworkKeys::parse`], pure), with the look-ups the invariant walk and
//! `ipamctl` make over them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::error::StoreError;
use crate::store::etcd::keys::{
    parse_ip_suffix, prefix_end, Activity, BlockRecord, Keys, Layout, Record,
};
use crate::store::etcd::EtcdSession;
use crate::store::Owner;

/// One key as read, with the revisions a guarded change compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawKey {
    pub key: Vec<u8>,
    /// None: too large for one answer of the client (never read).
    pub value: Option<Vec<u8>>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl RawKey {
    /// The key as text (keys of ours are ASCII; others shown lossily).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// Every key of a network, read at one revision.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub keys: Vec<RawKey>,
}

impl EtcdSession<'_> {
    /// Every key under the network's prefix `P/N/` with its revisions,
    /// read in pages at one revision (this session's snapshot).
    pub fn read_network(&mut self) -> Result<Snapshot, StoreError> {
        let start = self.keys.base().as_bytes().to_vec();
        let end = prefix_end(&start);
        let kvs = self.range("read every key of the network", start, end, false)?;
        Ok(Snapshot {
            revision: self.revision.unwrap_or(0),
            keys: kvs
                .into_iter()
                .map(|kv| RawKey {
                    key: kv.key,
                    value: kv.value.ok(),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                })
                .collect(),
        })
    }
}

/// An address key: the reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    /// Whom it names; Err: why it names no attachment (a damaged value).
    pub owner: Result<Owner, String>,
    /// The node it records.
    pub node: Option<String>,
    pub raw: RawKey,
}

/// An attachment index key `attachments/<id>/<ifname>/..` (ifname empty:
/// a legacy reservation's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentIndex {
    pub id: String,
    pub ifname: String,
    pub ip: IpAddr,
    pub raw: RawKey,
}

impl AttachmentIndex {
    /// The owner its address key must name.
    pub fn owner(&self) -> Owner {
        if self.ifname.is_empty() {
            Owner::Legacy {
                id: self.id.clone(),
            }
        } else {
            Owner::Attachment {
                id: self.id.clone(),
                ifname: self.ifname.clone(),
            }
        }
    }
}

/// A node's index key `nodes/<node>/ips/..` or block key `nodes/<node>/blocks/..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKey {
    pub node: String,
    /// The address (ips) or the block's first address (blocks).
    pub ip: IpAddr,
    pub raw: RawKey,
}

/// A block claim `blocks/..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub base: IpAddr,
    /// None: unreadable.
    pub record: Option<BlockRecord>,
    pub raw: RawKey,
}

/// A node's activity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeActivity {
    pub node: String,
    /// None: unreadable.
    pub activity: Option<Activity>,
    pub raw: RawKey,
}

/// A network's keys, sorted by kind.
#[derive(Clone, Debug, Default)]
pub struct NetworkKeys {
    /// The revision they were read at.
    pub revision: i64,
    pub addresses: BTreeMap<IpAddr, Address>,
    pub attachment_index: Vec<AttachmentIndex>,
    pub node_index: Vec<NodeKey>,
    pub claims: BTreeMap<IpAddr, Claim>,
    pub node_blocks: Vec<NodeKey>,
    pub activity: BTreeMap<String, NodeActivity>,
    /// The `layout` key: None when absent; `Some(None)` when unreadable.
    pub layout: Option<Option<Layout>>,
    /// Keys of no kind of the layout (written by hand; layout 1's cursors
    /// are not among them).
    pub other: Vec<RawKey>,
}

/// The keys of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeKeys<'a> {
    /// Address keys recording the node.
    pub addresses: Vec<&'a Address>,
    /// Its index keys `nodes/<node>/ips/..`.
    pub index: Vec<&'a NodeKey>,
    /// Its block keys `nodes/<node>/blocks/..`.
    pub blocks: Vec<&'a NodeKey>,
    /// Claims naming the node.
    pub claims: Vec<&'a Claim>,
    pub activity: Option<&'a NodeActivity>,
}

impl NodeKeys<'_> {
    /// Whether the node has no key at all.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
            && self.index.is_empty()
            && self.blocks.is_empty()
            && self.claims.is_empty()
            && self.activity.is_none()
    }
}

impl NetworkKeys {
    /// Sorts `snapshot`'s keys by kind (`keys`: the network's layout).
    pub fn parse(keys: &Keys, snapshot: Snapshot) -> NetworkKeys {
        let base = keys.base();
        let mut out = NetworkKeys {
            revision: snapshot.revision,
            ..NetworkKeys::default()
        };
        for raw in snapshot.keys {
            let Some(rest) = std::str::from_utf8(&raw.key)
                .ok()
                .and_then(|k| k.strip_prefix(base))
                .map(str::to_string)
            else {
                out.other.push(raw);
                continue;
            };
            if let Some(s) = rest.strip_prefix("ips/") {
                if let Some(ip) = parse_ip_suffix(s) {
                    let (owner, node) = match &raw.value {
                        Some(v) => Record::decode(v),
                        None => (
                            Err(
                                "etcd value too large to read (over the client's message limit)"
                                    .to_string(),
                            ),
                            None,
                        ),
                    };
                    out.addresses.insert(
                        ip,
                        Address {
                            ip,
                            owner,
                            node,
                            raw,
                        },
                    );
                    continue;
                }
            } else if let Some(s) = rest.strip_prefix("attachments/") {
                let parsed = s.split_once('/').and_then(|(id, r)| {
                    let (ifname, ip) = r.split_once('/')?;
                    Some((id.to_string(), ifname.to_string(), parse_ip_suffix(ip)?))
                });
                if let Some((id, ifname, ip)) = parsed {
                    out.attachment_index.push(AttachmentIndex {
                        id,
                        ifname,
                        ip,
                        raw,
                    });
                    continue;
                }
            } else if let Some(s) = rest.strip_prefix("blocks/") {
                if let Some(base) = parse_ip_suffix(s) {
                    let record = raw.value.as_deref().and_then(BlockRecord::decode);
                    out.claims.insert(base, Claim { base, record, raw });
                    continue;
                }
            } else if let Some(s) = rest.strip_prefix("nodes/") {
                if let Some((node, what)) = s.split_once('/') {
                    let node = node.to_string();
                    if what == "activity" {
                        let activity = raw.value.as_deref().and_then(Activity::decode);
                        out.activity.insert(
                            node.clone(),
                            NodeActivity {
                                node,
                                activity,
                                raw,
                            },
                        );
                        continue;
                    }
                    if let Some(ip) = what.strip_prefix("blocks/").and_then(parse_ip_suffix) {
                        out.node_blocks.push(NodeKey { node, ip, raw });
                        continue;
                    }
                    if let Some(ip) = what.strip_prefix("ips/").and_then(parse_ip_suffix) {
                        out.node_index.push(NodeKey { node, ip, raw });
                        continue;
                    }
                }
            } else if rest == "layout" {
                out.layout = Some(raw.value.as_deref().and_then(Layout::decode));
                continue;
            } else if rest.starts_with("cursors/") {
                continue; // layout 1's shared cursors: read by nobody now
            }
            out.other.push(raw);
        }
        out
    }

    /// Every node any key names (address values, node keys, claims).
    pub fn nodes(&self) -> BTreeSet<&str> {
        let mut n: BTreeSet<&str> = self
            .addresses
            .values()
            .filter_map(|a| a.node.as_deref())
            .collect();
        n.extend(self.node_index.iter().map(|k| k.node.as_str()));
        n.extend(self.node_blocks.iter().map(|k| k.node.as_str()));
        n.extend(
            self.claims
                .values()
                .filter_map(|c| c.record.as_ref().map(|r| r.node.as_str())),
        );
        n.extend(self.activity.keys().map(String::as_str));
        n
    }

    /// The keys of node `node`.
    pub fn node(&self, node: &str) -> NodeKeys<'_> {
        NodeKeys {
            addresses: self
                .addresses
                .values()
                .filter(|a| a.node.as_deref() == Some(node))
                .collect(),
            index: self.node_index.iter().filter(|k| k.node == node).collect(),
            blocks: self.node_blocks.iter().filter(|k| k.node == node).collect(),
            claims: self
                .claims
                .values()
                .filter(|c| c.record.as_ref().is_some_and(|r| r.node == node))
                .collect(),
            activity: self.activity.get(node),
        }
    }

    /// The block size blocks must have: the layout's, else `configured`.
    pub fn block_size(&self, configured: u32) -> u32 {
        match &self.layout {
            Some(Some(l)) => l.block_size,
            _ => configured,
        }
    }

    /// The attachment index key of a reservation, when it was read.
    pub fn attachment_index_of(&self, owner: &Owner, ip: IpAddr) -> Option<&AttachmentIndex> {
        self.attachment_index
            .iter()
            .find(|k| k.ip == ip && &k.owner() == owner)
    }

    /// Node `node`'s index key of `ip`, when it was read.
    pub fn node_index_of(&self, node: &str, ip: IpAddr) -> Option<&NodeKey> {
        self.node_index
            .iter()
            .find(|k| k.ip == ip && k.node == node)
    }
}

/// A network's raw keys the audit tests start from.
#[cfg(test)]
pub(super) mod fixtures {
    use super::{NetworkKeys, RawKey, Snapshot};
    use crate::store::etcd::keys::{Activity, BlockRecord, Keys, Record};

    pub const P: &str = "/p/net/";

    pub fn kv(key: &str, value: &[u8], rev: i64) -> RawKey {
        RawKey {
            key: key.as_bytes().to_vec(),
            value: Some(value.to_vec()),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    pub fn keys() -> Keys {
        Keys::new("/p", "net")
    }

    /// A consistent network: c1 on node-a at .5 (block .0/26 claimed by
    /// node-a), a legacy c2 without a node at .70, layout blockSize 64.
    pub fn good() -> Vec<RawKey> {
        let v = Record::new("c1", "eth0", "node-a").encode();
        let legacy = br#"{"containerID":"c2"}"#;
        let claim = BlockRecord {
            node: "node-a".into(),
            size: 64,
            full: false,
        }
        .encode();
        let act = Activity {
            at: 100,
            op: "ADD".into(),
            cursors: Default::default(),
        }
        .encode();
        vec![
            kv(&format!("{P}ips/4/0a000005"), &v, 10),
            kv(&format!("{P}attachments/c1/eth0/4/0a000005"), &v, 10),
            kv(&format!("{P}nodes/node-a/ips/4/0a000005"), &v, 10),
            kv(&format!("{P}ips/4/0a000046"), legacy, 11),
            kv(&format!("{P}attachments/c2//4/0a000046"), legacy, 11),
            kv(&format!("{P}blocks/4/0a000000"), &claim, 9),
            kv(&format!("{P}nodes/node-a/blocks/4/0a000000"), b"", 9),
            kv(&format!("{P}nodes/node-a/activity"), &act, 10),
            kv(&format!("{P}layout"), br#"{"version":2,"blockSize":64}"#, 1),
            kv(&format!("{P}cursors/0"), b"10.0.0.5", 3),
        ]
    }

    /// [`good`] with damaged address values (one unreadable, one too large
    /// to read), an unreadable claim, activity and layout, and two keys of
    /// no kind (upper-case hex; another network's prefix).
    pub fn damaged() -> Vec<RawKey> {
        let mut kvs = good();
        kvs.push(kv(&format!("{P}ips/4/0a000009"), b"garbage", 13));
        let mut big = kv(&format!("{P}ips/4/0a00000a"), b"", 14);
        big.value = None;
        kvs.push(big);
        kvs[5].value = Some(b"nope".to_vec());
        kvs[7].value = Some(b"nope".to_vec());
        kvs[8].value = Some(b"nope".to_vec());
        kvs.push(kv(&format!("{P}ips/4/0A000009"), b"x", 15));
        kvs.push(kv("/p/netother/ips/4/0a000009", b"x", 15));
        kvs
    }

    pub fn parse(kvs: Vec<RawKey>) -> NetworkKeys {
        NetworkKeys::parse(
            &keys(),
            Snapshot {
                revision: 20,
                keys: kvs,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{damaged, good, parse};
    use super::*;

    #[test]
    fn a_consistent_network_parses_by_kind() {
        let n = parse(good());
        assert_eq!(n.addresses.len(), 2);
        assert_eq!(n.attachment_index.len(), 2);
        assert_eq!(n.node_index.len(), 1);
        assert_eq!(n.claims.len(), 1);
        assert_eq!(n.node_blocks.len(), 1);
        assert_eq!(n.activity["node-a"].activity.as_ref().unwrap().at, 100);
        assert!(n.other.is_empty(), "{:?}", n.other);
        assert_eq!(n.nodes().into_iter().collect::<Vec<_>>(), ["node-a"]);
        let a = n.node("node-a");
        assert_eq!(
            (
                a.addresses.len(),
                a.index.len(),
                a.blocks.len(),
                a.claims.len()
            ),
            (1, 1, 1, 1)
        );
        assert!(a.activity.is_some() && !a.is_empty());
        assert!(n.node("node-b").is_empty());
    }

    #[test]
    fn damaged_values_unreadable_keys_and_strays_parse() {
        let n = parse(damaged());
        assert_eq!(n.other.len(), 2);
        assert_eq!(n.layout, Some(None));
        assert!(n.addresses[&"10.0.0.9".parse::<IpAddr>().unwrap()]
            .owner
            .is_err());
    }
}
