//! The etcd key layout of one network (`P` = `prefix`, `N` = network name):
//!
//! | key | value |
//! |-----|-------|
//! | `P/N/ips/4/0a000005` (IPv4: 8 hex digits; IPv6: `6/` + 32) | `{"containerID","ifname","node"}` |
//! | `P/N/attachments/<containerID>/<ifname>/4/0a000005` | the same bytes as the address key |
//! | `P/N/attachments/<containerID>//4/0a000005` (legacy: no ifname) | the same bytes |
//! | `P/N/blocks/4/0a000040` | a block claimed by a node: [`BlockRecord`] `{"node","size","full"}` |
//! | `P/N/nodes/<node>/activity` | the node's last write and its round-robin cursors: [`Activity`] |
//! | `P/N/nodes/<node>/blocks/4/0a000040` | empty: the node's index of its blocks |
//! | `P/N/nodes/<node>/ips/4/0a000005` | the same bytes as the address key: the node's index of its reservations |
//! | `P/N/layout` | [`Layout`] `{"version":2,"blockSize":64}`, written once by the first node |
//! | `P/N/cursors/<range set index>` | layout 1 only (one shared cursor): no longer read or written |
//!
//! The address key is the reservation; the attachment and node keys index it
//! and are written and deleted in the same transaction. A block is the
//! aligned run of `size` addresses starting at its key's address; the node
//! that claimed it (create-if-absent) hands out its addresses, other nodes
//! borrow from it only when no block is left unclaimed. `full` is a hint
//! (set when its last usable address is taken, cleared by a release in it):
//! what is free is always decided by the address keys.
//!
//! Fixed-width lowercase hex makes keys sort as the addresses do, so the
//! keys of a range are one range read `[start, end + "\0")`. Container IDs,
//! ifnames, node names and network names cannot contain `/`, so each prefix
//! names exactly one thing. Under `nodes/<node>/`, `activity` sorts before
//! `blocks/`, which sorts before `ips/`: the node's activity and blocks are
//! one range read that does not touch its reservations.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::store::Owner;

/// Keys of one network under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    /// `P/N/`
    base: String,
}

/// The smallest key after every key starting with `prefix` (etcd's range end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// The hex part of an address key: family digit, `/`, fixed-width hex.
pub fn ip_suffix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) => format!("4/{:08x}", u32::from(v)),
        IpAddr::V6(v) => format!("6/{:032x}", u128::from(v)),
    }
}

/// The address an [`ip_suffix`] names (exact width, lowercase).
pub fn parse_ip_suffix(s: &str) -> Option<IpAddr> {
    let (fam, hex) = s.split_once('/')?;
    let ok = |w: usize| {
        hex.len() == w
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match fam {
        "4" if ok(8) => Some(IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(hex, 16).ok()?,
        ))),
        "6" if ok(32) => Some(IpAddr::V6(Ipv6Addr::from(
            u128::from_str_radix(hex, 16).ok()?,
        ))),
        _ => None,
    }
}

impl Keys {
    pub fn new(prefix: &str, network: &str) -> Self {
        Keys {
            base: format!("{prefix}/{network}/"),
        }
    }

    /// `P/N/`: every key of the network.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `P/N/ips/`: every address key.
    pub fn ips(&self) -> String {
        format!("{}ips/", self.base)
    }

    pub fn ip(&self, ip: IpAddr) -> String {
        format!("{}ips/{}", self.base, ip_suffix(ip))
    }

    /// The address of an address key, if it is one.
    pub fn parse_ip(&self, key: &[u8]) -> Option<IpAddr> {
        let k = std::str::from_utf8(key).ok()?;
        parse_ip_suffix(k.strip_prefix(&self.base)?.strip_prefix("ips/")?)
    }

    /// `[start, end]` of addresses as an etcd range `[key, range_end)`.
    pub fn ip_range(&self, start: IpAddr, end: IpAddr) -> (String, Vec<u8>) {
        let mut e = self.ip(end).into_bytes();
        e.push(0);
        (self.ip(start), e)
    }

    /// `P/N/attachments/<id>/`: the index keys of every ifname of a container.
    pub fn container(&self, id: &str) -> String {
        format!("{}attachments/{id}/", self.base)
    }

    /// `P/N/attachments/<id>/<ifname>/`
    pub fn attachment(&self, id: &str, ifname: &str) -> String {
        format!("{}attachments/{id}/{ifname}/", self.base)
    }

    pub fn index(&self, id: &str, ifname: &str, ip: IpAddr) -> String {
        format!("{}{}", self.attachment(id, ifname), ip_suffix(ip))
    }

    /// The index key of a reservation held by `owner`: a legacy owner (no
    /// ifname, imported from an old store) has an empty ifname segment;
    /// damaged reservations name no one and have none.
    pub fn index_of(&self, owner: &Owner, ip: IpAddr) -> Option<String> {
        match owner {
            Owner::Attachment { id, ifname } => Some(self.index(id, ifname, ip)),
            Owner::Legacy { id } => Some(self.index(id, "", ip)),
            Owner::Damaged => None,
        }
    }

    /// (ifname, address) of an index key under [`Keys::container`]`(id)`
    /// (ifname empty: a legacy reservation).
    pub fn parse_index(&self, id: &str, key: &[u8]) -> Option<(String, IpAddr)> {
        let k = std::str::from_utf8(key).ok()?;
        let rest = k.strip_prefix(&self.container(id))?;
        let (ifname, ip) = rest.split_once('/')?;
        Some((ifname.to_string(), parse_ip_suffix(ip)?))
    }

    /// Layout 1's shared cursor of a range set (read by the migration only).
    pub fn cursor(&self, set_index: usize) -> String {
        format!("{}cursors/{set_index}", self.base)
    }

    /// `P/N/layout`
    pub fn layout(&self) -> String {
        format!("{}layout", self.base)
    }

    /// `P/N/blocks/`: every block claim.
    pub fn blocks(&self) -> String {
        format!("{}blocks/", self.base)
    }

    /// The claim of the block starting at `base`.
    pub fn block(&self, base: IpAddr) -> String {
        format!("{}blocks/{}", self.base, ip_suffix(base))
    }

    /// The claims of the blocks from `first` to `last` as an etcd range
    /// `[key, range_end)`.
    pub fn block_range(&self, first: IpAddr, last: IpAddr) -> (Vec<u8>, Vec<u8>) {
        let mut e = self.block(last).into_bytes();
        e.push(0);
        (self.block(first).into_bytes(), e)
    }

    /// The block a claim key names.
    pub fn parse_block(&self, key: &[u8]) -> Option<IpAddr> {
        let k = std::str::from_utf8(key).ok()?;
        parse_ip_suffix(k.strip_prefix(&self.base)?.strip_prefix("blocks/")?)
    }

    /// `P/N/nodes/`: every node's keys.
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.base)
    }

    /// `P/N/nodes/<node>/`
    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}/", self.base)
    }

    pub fn activity(&self, node: &str) -> String {
        format!("{}activity", self.node(node))
    }

    /// `P/N/nodes/<node>/blocks/`
    pub fn node_blocks(&self, node: &str) -> String {
        format!("{}blocks/", self.node(node))
    }

    pub fn node_block(&self, node: &str, base: IpAddr) -> String {
        format!("{}{}", self.node_blocks(node), ip_suffix(base))
    }

    /// `P/N/nodes/<node>/ips/`
    pub fn node_ips(&self, node: &str) -> String {
        format!("{}ips/", self.node(node))
    }

    pub fn node_ip(&self, node: &str, ip: IpAddr) -> String {
        format!("{}{}", self.node_ips(node), ip_suffix(ip))
    }

    /// The node index key of a reservation recorded as made by `node`.
    pub fn node_index_of(&self, node: Option<&str>, ip: IpAddr) -> Option<String> {
        node.map(|n| self.node_ip(n, ip))
    }

    /// (node, what follows `nodes/<node>/`) of a key under [`Keys::nodes`].
    pub fn parse_node_key<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str)> {
        let k = std::str::from_utf8(key).ok()?;
        let rest = k.strip_prefix(&self.base)?.strip_prefix("nodes/")?;
        rest.split_once('/')
    }

    /// The block of a key under [`Keys::node_blocks`]`(node)`.
    pub fn parse_node_block(&self, node: &str, key: &[u8]) -> Option<IpAddr> {
        let k = std::str::from_utf8(key).ok()?;
        parse_ip_suffix(k.strip_prefix(&self.node_blocks(node))?)
    }

    /// The address of a key under [`Keys::node_ips`]`(node)`.
    pub fn parse_node_ip(&self, node: &str, key: &[u8]) -> Option<IpAddr> {
        let k = std::str::from_utf8(key).ok()?;
        parse_ip_suffix(k.strip_prefix(&self.node_ips(node))?)
    }
}

/// A block claim's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub node: String,
    /// Addresses in the block.
    pub size: u32,
    /// Its last usable address was taken (a hint for borrowers).
    #[serde(default)]
    pub full: bool,
}

impl BlockRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and numbers serializes")
    }

    pub fn decode(v: &[u8]) -> Option<BlockRecord> {
        serde_json::from_slice(v).ok()
    }

    /// The same claim with `full` set to `full`.
    pub fn with_full(&self, full: bool) -> BlockRecord {
        BlockRecord {
            full,
            ..self.clone()
        }
    }
}

/// A node's activity key: when it last wrote (its own clock, seconds since
/// the epoch) and, per range set, the last address it handed out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// What it last did: ADD, DEL, GC, import.
    #[serde(default)]
    pub op: String,
    /// Range set index (as text) -> last address handed out.
    #[serde(default)]
    pub cursors: std::collections::BTreeMap<String, IpAddr>,
}

impl Activity {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and numbers serializes")
    }

    /// None when unreadable (then the node's cursors are unknown).
    pub fn decode(v: &[u8]) -> Option<Activity> {
        serde_json::from_slice(v).ok()
    }

    /// Seconds since the epoch, now.
    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The `layout` key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub version: u32,
    #[serde(rename = "blockSize")]
    pub block_size: u32,
}

/// The layout this version writes.
pub const LAYOUT_VERSION: u32 = 2;

impl Layout {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("numbers serialize")
    }

    pub fn decode(v: &[u8]) -> Option<Layout> {
        serde_json::from_slice(v).ok()
    }
}

/// What an address key holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Record {
    pub fn new(id: &str, ifname: &str, node: &str) -> Self {
        Record {
            container_id: id.to_string(),
            ifname: Some(ifname.to_string()),
            node: Some(node.to_string()),
        }
    }

    /// The bytes written (serde's field order: deterministic, so values
    /// can be compared byte for byte in a transaction).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings serializes")
    }

    /// The owner and node a value records; Err says why an unreadable
    /// value names no attachment (it is a damaged reservation: it still
    /// reserves its address).
    pub fn decode(value: &[u8]) -> (Result<Owner, String>, Option<String>) {
        let Ok(r) = serde_json::from_slice::<Record>(value) else {
            let text = String::from_utf8_lossy(value);
            let shown: String = text.chars().take(64).collect();
            return (Err(format!("unreadable etcd value {shown:?}")), None);
        };
        let owner = Owner::from_parts(&r.container_id, r.ifname.as_deref())
            .map_err(|why| format!("etcd value names no attachment: {why}"));
        (owner, r.node)
    }

    /// The owner a value records ([`Owner::Damaged`] when it names none).
    pub fn owner(value: &[u8]) -> Owner {
        Record::decode(value).0.unwrap_or(Owner::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout() {
        let k = Keys::new("/cni/ipam", "net1");
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(k.ip(ip), "/cni/ipam/net1/ips/4/0a000005");
        assert_eq!(
            k.ip("2001:db8::1".parse().unwrap()),
            "/cni/ipam/net1/ips/6/20010db8000000000000000000000001"
        );
        assert_eq!(
            k.index("c1", "eth0", ip),
            "/cni/ipam/net1/attachments/c1/eth0/4/0a000005"
        );
        assert_eq!(k.cursor(2), "/cni/ipam/net1/cursors/2");
        let legacy = Owner::Legacy { id: "c1".into() };
        let lk = k.index_of(&legacy, ip).unwrap();
        assert_eq!(lk, "/cni/ipam/net1/attachments/c1//4/0a000005");
        assert_eq!(
            k.parse_index("c1", lk.as_bytes()),
            Some((String::new(), ip))
        );
        assert_eq!(k.index_of(&Owner::Damaged, ip), None);
        assert_eq!(k.parse_ip(k.ip(ip).as_bytes()), Some(ip));
        assert_eq!(
            k.parse_index("c1", k.index("c1", "eth0", ip).as_bytes()),
            Some(("eth0".into(), ip))
        );
        assert_eq!(k.parse_ip(b"/cni/ipam/net1/ips/4/0A000005"), None);
        assert_eq!(k.parse_ip(b"/cni/ipam/net2/ips/4/0a000005"), None);
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }

    #[test]
    fn records() {
        let r = Record::new("c1", "eth0", "n1");
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"containerID":"c1","ifname":"eth0","node":"n1"}"#
        );
        let (owner, node) = Record::decode(&r.encode());
        assert!(owner.unwrap().belongs_to("c1", "eth0"));
        assert_eq!(node.as_deref(), Some("n1"));
        assert_eq!(
            Record::decode(br#"{"containerID":"c1"}"#).0,
            Ok(Owner::Legacy { id: "c1".into() })
        );
        assert!(Record::decode(b"").0.unwrap_err().contains("unreadable"));
        let bad = br#"{"containerID":"a/b","ifname":"eth0"}"#;
        assert!(Record::decode(bad)
            .0
            .unwrap_err()
            .contains("invalid container ID"));
        assert_eq!(Record::owner(bad), Owner::Damaged);
    }

    proptest! {
        #[test]
        fn keys_sort_as_addresses(a: u32, b: u32, x: u128, y: u128) {
            let k = Keys::new("/p", "n");
            let (a4, b4) = (IpAddr::V4(a.into()), IpAddr::V4(b.into()));
            prop_assert_eq!(a.cmp(&b), k.ip(a4).cmp(&k.ip(b4)));
            let (x6, y6) = (IpAddr::V6(x.into()), IpAddr::V6(y.into()));
            prop_assert_eq!(x.cmp(&y), k.ip(x6).cmp(&k.ip(y6)));
            prop_assert_eq!(k.parse_ip(k.ip(a4).as_bytes()), Some(a4));
            prop_assert_eq!(k.parse_ip(k.ip(x6).as_bytes()), Some(x6));
            // A range read [start, end] holds exactly the addresses between.
            let (lo, hi) = (a.min(b), a.max(b));
            let (s, e) = k.ip_range(IpAddr::V4(lo.into()), IpAddr::V4(hi.into()));
            let key = k.ip(a4);
            prop_assert!(s.as_str() <= key.as_str() && key.as_bytes() < e.as_slice());
        }
    }
}
