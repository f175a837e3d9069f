//! Guarded deletions for the operator CLI (`ipamctl cluster reclaim`):
//! keys deleted in one transaction only while every guard holds, so a key
//! written since it was read (a reservation made meanwhile, a node that
//! became active) is never removed. Each transaction is guarded, so the
//! client may send it again to another member when one does not answer
//! ([`rpc`](super::rpc)); a repeat that finds every key already gone after
//! such a resend counts as applied.

use std::time::Instant;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::keys::prefix_end;
use super::EtcdSession;
use crate::error::StoreError;

/// A condition a guarded deletion needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// `key` is still the write that was read (its `mod_revision`; 0: it
    /// is still absent).
    Unchanged { key: Vec<u8>, mod_revision: i64 },
    /// No key starts with `prefix` (e.g. a node's reservation index:
    /// the node holds nothing).
    NoneUnder { prefix: Vec<u8> },
}

impl Guard {
    fn compare(&self) -> Compare {
        match self {
            Guard::Unchanged { key, mod_revision } => {
                Compare::mod_revision(key.clone(), CompareOp::Equal, *mod_revision)
            }
            // etcd compares an empty range as one absent key (revision 0),
            // and a range with keys key by key.
            Guard::NoneUnder { prefix } => {
                Compare::create_revision(prefix.clone(), CompareOp::Equal, 0)
                    .with_range(prefix_end(prefix))
            }
        }
    }
}

impl EtcdSession<'_> {
    /// Gives this session the configured timeout again from now (an
    /// operator's long run of guarded deletions, each bounded on its own).
    pub fn renew_deadline(&mut self) {
        self.deadline = Instant::now() + self.rpc.timeout();
    }

    /// Deletes every key of `delete` in one transaction while every guard
    /// holds. Ok(false): a guard failed (something changed since it was
    /// read) and nothing was deleted. `what` names the change in errors.
    pub fn delete_guarded(
        &mut self,
        what: &str,
        guards: &[Guard],
        delete: &[Vec<u8>],
    ) -> Result<bool, StoreError> {
        if delete.is_empty() {
            return Ok(true);
        }
        let when: Vec<Compare> = guards.iter().map(Guard::compare).collect();
        let then: Vec<TxnOp> = delete
            .iter()
            .map(|k| TxnOp::delete(k.clone(), None))
            .collect();
        let check: Vec<TxnOp> = delete.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
        let txn = Txn::new().when(when).and_then(then).or_else(check);
        let resp = self.rpc.txn(what, self.deadline, txn)?;
        self.values.clear();
        self.wrote(resp.header());
        if resp.succeeded() {
            return Ok(true);
        }
        // Sent again after an attempt that got no answer: when every key is
        // gone, that attempt was applied.
        let gone = resp.op_responses().iter().all(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().is_empty(),
            _ => false,
        });
        Ok(self.rpc.resent() && gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EtcdConfig, DEFAULT_BLOCK};
    use crate::store::etcd::EtcdStore;

    #[test]
    fn deletes_only_while_every_guard_holds() {
        if !test_support::etcd::etcd_installed() {
            eprintln!("SKIPPED: etcd not installed");
            return;
        }
        let c = test_support::etcd::Cluster::start(1);
        let put = |k: &str, v: &str| {
            let (ok, t) = c.etcdctl(&["put", k, v]);
            assert!(ok, "{t}");
        };
        put("/p/n/a", "1");
        put("/p/n/b", "1");
        let cfg = EtcdConfig {
            endpoints: c.endpoints(),
            prefix: "/p".into(),
            timeout: std::time::Duration::from_secs(5),
            node: "n1".into(),
            tls: None,
            auth: None,
            block_size: DEFAULT_BLOCK,
        };
        let mut store = EtcdStore::new(cfg, "n");
        let mut s = store.etcd_session().unwrap();
        let snap = s.read_network().unwrap();
        assert_eq!(snap.keys.len(), 2);
        let rev = |k: &str| {
            snap.keys
                .iter()
                .find(|x| x.key == k.as_bytes())
                .map(|x| x.mod_revision)
                .unwrap()
        };
        let (a, b) = (rev("/p/n/a"), rev("/p/n/b"));
        // b written again since it was read: nothing is deleted.
        put("/p/n/b", "2");
        let guards = [
            Guard::Unchanged {
                key: b"/p/n/a".to_vec(),
                mod_revision: a,
            },
            Guard::Unchanged {
                key: b"/p/n/b".to_vec(),
                mod_revision: b,
            },
        ];
        let both = [b"/p/n/a".to_vec(), b"/p/n/b".to_vec()];
        assert!(!s.delete_guarded("delete a and b", &guards, &both).unwrap());
        // A key under a prefix that must be empty.
        put("/p/n/ips/x", "1");
        s.renew_deadline();
        let only_a = [Guard::Unchanged {
            key: b"/p/n/a".to_vec(),
            mod_revision: a,
        }];
        let empty = Guard::NoneUnder {
            prefix: b"/p/n/ips/".to_vec(),
        };
        let with_empty = [only_a[0].clone(), empty.clone()];
        let del_a = [b"/p/n/a".to_vec()];
        assert!(!s.delete_guarded("delete a", &with_empty, &del_a).unwrap());
        let (ok, t) = c.etcdctl(&["del", "/p/n/ips/x"]);
        assert!(ok, "{t}");
        assert!(s.delete_guarded("delete a", &with_empty, &del_a).unwrap());
        // A key still absent is a guard too.
        let absent = Guard::Unchanged {
            key: b"/p/n/new".to_vec(),
            mod_revision: 0,
        };
        let del_b = [b"/p/n/b".to_vec()];
        assert!(s
            .delete_guarded("delete b", std::slice::from_ref(&absent), &del_b)
            .unwrap());
        let (_, t) = c.etcdctl(&["get", "--prefix", "/p/n/", "--keys-only"]);
        assert_eq!(t.trim(), "", "every key deleted");
        put("/p/n/new", "1");
        put("/p/n/c", "1");
        let del_c = [b"/p/n/c".to_vec()];
        assert!(!s.delete_guarded("delete c", &[absent], &del_c).unwrap());
    }
}
