//! Which reservations `leaks`, `gc`, `release` and `check` act on. On a
//! network kept in etcd every node's reservations are in one store, and
//! GC on a node only ever removes its own: so do these commands, for the
//! node of the configuration's `ipam.store.node` unless `--node` names
//! another (an operator cleaning up after a gone node). Damaged values
//! that name no node belong to no node's GC: `leaks` reports them and
//! `release --ip` removes them; `gc` keeps them.

use anyhow::{bail, Result};
use host_local::store::Owner;

use super::Ctx;
use crate::configs::Configs;
use crate::inspect::{NetworkView, Reservation};

/// The node a command on a network kept in etcd acts for.
#[derive(Clone, Debug)]
pub struct NodeScope {
    pub node: String,
    /// `--node` named it (else it is the configuration's `ipam.store.node`).
    pub named: bool,
    /// Reservations of other nodes, left out.
    pub others: usize,
}

/// Why `gc` keeps a damaged value that names no node.
pub fn nodeless_text(network: &str, r: &Reservation) -> String {
    format!(
        "damaged, and names no node: every node's GC skips it; remove it with \
         `ipamctl release {network} --ip {}`",
        r.ip
    )
}

impl NodeScope {
    /// Whether `r` is this node's reservation.
    pub fn owns(&self, r: &Reservation) -> bool {
        r.node.as_deref() == Some(self.node.as_str())
    }

    /// A damaged value naming no node (no node's GC removes it).
    pub fn nodeless(r: &Reservation) -> bool {
        r.owner == Owner::Damaged && r.node.is_none()
    }

    /// `node node-a (--node)` or `node node-a (ipam.store.node)`, and the
    /// reservations left out.
    pub fn describe(&self) -> String {
        format!(
            "node {} ({}); {} reservation{} of other nodes not considered",
            self.node,
            if self.named {
                "--node"
            } else {
                "ipam.store.node of the configuration"
            },
            self.others,
            super::plural(self.others)
        )
    }
}

impl Ctx {
    /// Reads `network` as [`Ctx::read_one`] does, and for a network kept in
    /// etcd the node the command acts for: `node` (`--node`), else the
    /// configuration's. The view still holds every node's reservations
    /// ([`NodeScope::owns`] tells them apart); with `times`, each gets the
    /// latest it can have been made (for gc's `--min-age`). `--node` on a
    /// disk network is refused.
    pub fn read_scoped(
        &self,
        network: &str,
        cfgs: &Configs,
        node: Option<&str>,
        times: bool,
    ) -> Result<(NetworkView, Option<NodeScope>)> {
        let etcd = cfgs.etcd(network).and_then(|c| c.etcd_store().cloned());
        let Some(ecfg) = etcd else {
            if let Some(n) = node {
                bail!(
                    "--node {n}: network {network} is not kept in etcd (no --config naming it with \
                     an etcd store); a disk store's reservations have no node"
                );
            }
            return Ok((self.read_one(network, cfgs)?, None));
        };
        if let Some(n) = node {
            crate::etcd::check_node_name("--node", n)?;
        }
        let mut view = self.read_one(network, cfgs)?;
        if times {
            let mut store = crate::etcd::open(&ecfg, network, self.lock_timeout);
            let made = crate::etcd::made_by(&crate::etcd::read_keys(&mut store)?);
            for r in &mut view.reservations {
                r.made_by = made.get(&r.ip).cloned();
            }
        }
        let mut scope = NodeScope {
            node: node.map_or_else(|| ecfg.node.clone(), str::to_string),
            named: node.is_some(),
            others: 0,
        };
        scope.others = view
            .reservations
            .iter()
            .filter(|r| !scope.owns(r) && !NodeScope::nodeless(r))
            .count();
        Ok((view, Some(scope)))
    }
}

/// Keeps in `view` the reservations of `scope`'s node, and damaged values
/// naming no node when `nodeless`; without a scope (disk), every one.
pub fn restrict(view: &mut NetworkView, scope: Option<&NodeScope>, nodeless: bool) {
    if let Some(s) = scope {
        view.reservations
            .retain(|r| s.owns(r) || (nodeless && NodeScope::nodeless(r)));
    }
}
