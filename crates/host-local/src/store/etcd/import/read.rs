//! Step 1 of an import: what etcd holds where the import writes, read at
//! one revision (the layout key, then range reads over stretches of the
//! imported addresses' blocks, then the node's activity key).

use std::net::IpAddr;

use etcd_client::GetOptions;

use super::plan::sort_key;
use super::{ImportError, ImportRequest, Importer, Snapshot};
use crate::addr;
use crate::error::StoreError;
use crate::store::etcd::blocks::{base_of, last_of};
use crate::store::etcd::keys::{prefix_end, Activity, BlockRecord, Layout, LAYOUT_VERSION};

/// Blocks closer than this many addresses are read by one range read.
const MERGE_GAP: u128 = 4096;
/// The most addresses one range read spans (each read has its own deadline).
const READ_SPAN: u128 = 16384;

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

impl Importer<'_> {
    /// Whether the layout key must be written (it is absent), after
    /// checking the one there; and the revision the reads are at.
    pub(super) fn read_layout(&mut self) -> Result<(bool, Option<i64>), ImportError> {
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
    pub(super) fn read(
        &mut self,
        req: &ImportRequest<'_>,
        rev: Option<i64>,
    ) -> Result<Snapshot, StoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::etcd::import::plan::fixtures::ip;

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
