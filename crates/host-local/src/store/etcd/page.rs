//! Range reads that keep every answer well under the client's message
//! limit (gRPC's 4 MiB receive limit) whatever the values' sizes.
//!
//! etcd limits a range by keys, not bytes, so the page size adapts: the
//! first page asks for [`FIRST_PAGE`] keys, each next one for as many keys
//! as fit [`BUDGET`] bytes at the last page's average size (at most
//! [`MAX_PAGE`]: every page makes etcd 3.4 walk the whole rest of the span
//! to count it, so pages stay large when values are small). An answer that
//! is too large anyway (a few big values among small ones) is asked again
//! for an eighth of the keys, down to one key; a single value too large
//! for any answer is read keys-only and reported as [`Oversized`], which
//! the store reports as a damaged reservation rather than failing the
//! whole read.

use std::time::Instant;

use etcd_client::{GetOptions, KeyValue};

use super::rpc::{is_too_large, Rpc};
use crate::error::StoreError;

/// gRPC's default receive limit, which the client keeps.
pub const MESSAGE_LIMIT: usize = 4 << 20;
/// Bytes one page aims at: half the limit.
const BUDGET: usize = 2 << 20;
/// Keys asked for first, before any size is known.
const FIRST_PAGE: i64 = 1000;
/// Most keys asked for in one page.
const MAX_PAGE: i64 = 10_000;
/// Keys asked for after an oversized value, before sizes are known again.
const AFTER_OVERSIZED: i64 = 16;
/// Bytes of framing per key-value in an answer besides key and value.
const KV_OVERHEAD: usize = 32;

/// A value that does not fit in one answer of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("etcd value too large to read (over the client's {MESSAGE_LIMIT} byte message limit)")]
pub struct Oversized;

/// One key as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    /// Empty for a keys-only read.
    pub value: Result<Vec<u8>, Oversized>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl From<KeyValue> for Kv {
    fn from(kv: KeyValue) -> Kv {
        let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
        let (key, value) = kv.into_key_value();
        Kv {
            key,
            value: Ok(value),
            create_revision,
            mod_revision,
        }
    }
}

/// Every key of a range, read at one revision.
#[derive(Debug, Default)]
pub struct Page {
    pub kvs: Vec<Kv>,
    /// The revision read: the one given, else the first answer's.
    pub revision: Option<i64>,
}

/// The smallest key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn options(end: &[u8], limit: i64, revision: Option<i64>, keys_only: bool) -> GetOptions {
    let mut o = GetOptions::new().with_range(end.to_vec()).with_limit(limit);
    if let Some(r) = revision {
        o = o.with_revision(r);
    }
    if keys_only {
        o = o.with_keys_only();
    }
    o
}

/// Keys to ask for next after a page of `n` keys and `bytes` bytes.
fn next_limit(n: usize, bytes: usize) -> i64 {
    let per = (bytes / n.max(1)).max(1);
    i64::try_from(BUDGET / per)
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE)
}

impl Rpc {
    /// Every key-value in `[start, end)` at `revision` (None: the latest,
    /// fixed by the first answer), page by page.
    pub fn range(
        &mut self,
        op: &str,
        deadline: Instant,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: Option<i64>,
        keys_only: bool,
    ) -> Result<Page, StoreError> {
        let mut page = Page {
            kvs: Vec::new(),
            revision,
        };
        let mut from = start;
        let mut limit = FIRST_PAGE;
        loop {
            let o = options(&end, limit, page.revision, keys_only);
            let mut resp = match self.get(op, deadline, from.clone(), o) {
                Ok(r) => r,
                Err(e) if is_too_large(&e) && limit > 1 => {
                    limit = (limit / 8).max(1);
                    continue;
                }
                Err(e) if is_too_large(&e) => {
                    // One value alone is too large: its key, and move on.
                    let o = options(&end, 1, page.revision, true);
                    let mut resp = self.get(op, deadline, from.clone(), o)?;
                    if page.revision.is_none() {
                        page.revision = resp.header().map(|h| h.revision());
                    }
                    let more = resp.more();
                    let Some(kv) = resp.take_kvs().into_iter().next() else {
                        break;
                    };
                    let mut kv = Kv::from(kv);
                    kv.value = Err(Oversized);
                    from = after(&kv.key);
                    page.kvs.push(kv);
                    limit = AFTER_OVERSIZED;
                    if !more {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if page.revision.is_none() {
                page.revision = resp.header().map(|h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else { break };
            from = after(last.key());
            let bytes = kvs
                .iter()
                .map(|kv| kv.key().len() + kv.value().len() + KV_OVERHEAD)
                .sum();
            limit = next_limit(kvs.len(), bytes);
            page.kvs.extend(kvs.into_iter().map(Kv::from));
            if !more {
                break;
            }
        }
        Ok(page)
    }

    /// The key `key` at `revision` (None: the latest), if present.
    pub fn get_one(
        &mut self,
        op: &str,
        deadline: Instant,
        key: Vec<u8>,
        revision: Option<i64>,
    ) -> Result<(Option<Kv>, Option<i64>), StoreError> {
        let end = after(&key);
        let page = self.range(op, deadline, key, end, revision, false)?;
        Ok((page.kvs.into_iter().next(), page.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_value_sizes() {
        // Small values: as many keys as etcd walks cheaply.
        assert_eq!(next_limit(1000, 1000 * 150), MAX_PAGE);
        // 253-character node names: about 440 bytes a key.
        let l = next_limit(1000, 1000 * 440);
        assert!((4000..5000).contains(&l), "{l}");
        // A page of big values: one at a time.
        assert_eq!(next_limit(2, 3_000_000), 1);
        assert_eq!(next_limit(0, 0), MAX_PAGE);
    }
}
