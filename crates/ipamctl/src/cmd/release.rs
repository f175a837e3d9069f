//! `ipamctl release NETWORK`: the reservations of one container (by ID or
//! a unique prefix of 8+ characters), attachment or address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use host_local::store::Owner;

use super::change::{apply, plan, Plan};
use super::{load_configs, Ctx, FOUND};
use crate::attach::{ResultsCache, ValidSet};
use crate::cli::{ChangeArgs, ConfigArg, ValidArg};
use crate::inspect::{now_secs, Reservation};

/// The shortest container ID prefix accepted (as podman and crictl print them).
pub const MIN_PREFIX: usize = 8;

pub enum Selector {
    Container { id: String, ifname: Option<String> },
    Ip(IpAddr),
}

impl Selector {
    fn matches(&self, r: &Reservation) -> bool {
        match self {
            Selector::Ip(ip) => host_local::addr::canonical(*ip) == r.ip,
            Selector::Container { id, ifname } => match (&r.owner, ifname) {
                (Owner::Attachment { id: i, .. }, None) => i == id,
                (Owner::Attachment { id: i, ifname: f }, Some(want)) => i == id && f == want,
                (Owner::Legacy { id: i }, _) => i == id,
                (Owner::Damaged, _) => false,
            },
        }
    }
}

/// The full container ID `given` stands for: itself when some reservation
/// names it, else the one ID it is a prefix of (8+ characters). None: no
/// reservation of that container. An ambiguous prefix is an error.
fn resolve_id(given: &str, reservations: &[Reservation]) -> Result<Option<String>> {
    let ids: BTreeSet<&str> = reservations
        .iter()
        .filter_map(|r| r.owner.container_id())
        .collect();
    if ids.contains(given) {
        return Ok(Some(given.to_string()));
    }
    let matches: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with(given))
        .collect();
    if given.len() < MIN_PREFIX {
        if !matches.is_empty() {
            bail!(
                "--container {given}: no container has this ID; as a prefix it is shorter than \
                 {MIN_PREFIX} characters (it would match {})",
                matches.join(", ")
            );
        }
        return Ok(None);
    }
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => bail!(
            "--container {given}: ambiguous prefix, matches {} containers: {}",
            many.len(),
            many.join(", ")
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (a directory of the data directory).
    pub network: String,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Every reservation of this container (legacy ID-only files included); a unique ID
    /// prefix of 8 or more characters is accepted.
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Only this interface's reservations (and legacy ID-only files of the container).
    #[arg(long, value_name = "IF", requires = "container")]
    pub ifname: Option<String>,
    /// The reservation of this address, whoever holds it (damaged files too).
    #[arg(long, value_name = "ADDR", conflicts_with = "container")]
    pub ip: Option<IpAddr>,
    /// The attachments the runtime still has (as for leaks): a reservation it keeps is refused;
    /// without it, one with an entry in libcni's result cache is.
    #[command(flatten)]
    pub valid: ValidArg,
    /// Release it although the valid list or libcni's cache says its container is still there.
    #[arg(long)]
    pub force: bool,
    /// A network kept in etcd: release this node's reservations (default: the configuration's
    /// ipam.store.node); reservations naming no node (damaged values) are anyone's.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

impl Args {
    fn selector(&self) -> Result<Selector> {
        match (&self.container, self.ip) {
            (Some(id), None) => Ok(Selector::Container {
                id: id.clone(),
                ifname: self.ifname.clone(),
            }),
            (None, Some(ip)) => Ok(Selector::Ip(ip)),
            _ => bail!("give --container ID [--ifname IF] or --ip ADDR"),
        }
    }
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let network = a.network.as_str();
    let sel = a.selector()?;
    super::check_network_name(network)?;
    if let Selector::Container { id, ifname } = &sel {
        cni_proto::ContainerId::new(id).map_err(|e| anyhow!("--container: {e}"))?;
        if let Some(f) = ifname {
            cni_proto::IfName::new(f).map_err(|e| anyhow!("--ifname: {e}"))?;
        }
    }
    let cfgs = load_configs(a.config.config.as_deref())?;
    let valid = a.valid.load()?;
    let (mut view, scope) = ctx.read_scoped(network, &cfgs, a.node.as_deref(), false)?;
    if let (Some(s), Selector::Ip(ip)) = (&scope, &sel) {
        let ip = host_local::addr::canonical(*ip);
        if let Some(r) = view.reservations.iter().find(|r| r.ip == ip) {
            if let Some(other) = r.node.as_deref().filter(|n| *n != s.node) {
                bail!(
                    "{ip} in network {network} is held by {} of node {other}, not of node {} ({}); \
                     refusing (give --node {other} to release another node's reservation)",
                    r.owner,
                    s.node,
                    if s.named { "--node" } else { "ipam.store.node of the configuration" }
                );
            }
        }
    }
    // This node's reservations, and those naming no node (no node's GC removes them).
    if let Some(s) = &scope {
        view.reservations.retain(|r| s.owns(r) || r.node.is_none());
    }
    let (sel, what) = match sel {
        Selector::Ip(ip) => (Selector::Ip(ip), format!("{ip}")),
        Selector::Container { id, ifname } => {
            let what = match &ifname {
                Some(f) => format!("container {id} interface {f}"),
                None => format!("container {id}"),
            };
            match resolve_id(&id, &view.reservations)? {
                Some(full) => (Selector::Container { id: full, ifname }, what),
                None => (Selector::Container { id, ifname }, what),
            }
        }
    };
    let now = now_secs();
    let pods = super::change::pod_names(ctx.results_dir.as_deref(), network)?;
    let selected: Vec<&Reservation> = view
        .reservations
        .iter()
        .filter(|r| sel.matches(r))
        .collect();
    if !a.force {
        refuse_live(network, &selected, valid.as_ref(), pods.as_ref())?;
    }
    let planned = selected
        .into_iter()
        .map(|r| plan(r, "selected", now, pods.as_ref()))
        .collect();
    let nothing = format!("not reserved: no reservation of {what} in network {network}");
    apply(
        ctx,
        "release",
        &view,
        scope.as_ref(),
        Plan {
            planned,
            ..Plan::default()
        },
        &a.change,
        (&nothing, FOUND),
    )
}

/// Refuses to release a reservation whose container the runtime still has:
/// the valid list keeps it, or (without a list) libcni's result cache
/// records the attachment. The plugin would hand its address to a second pod.
fn refuse_live(
    network: &str,
    selected: &[&Reservation],
    valid: Option<&ValidSet>,
    cache: Option<&ResultsCache>,
) -> Result<()> {
    for r in selected {
        let why = match (valid, cache) {
            (Some(v), _) if v.keeps(&r.owner) => format!("{} keeps it", v.label()),
            (None, Some(c)) if c.knows(network, &r.owner) => format!(
                "libcni's result cache {} records it as attached{}",
                c.dir.display(),
                c.pod(&r.owner)
                    .map(|p| format!(" (pod {p})"))
                    .unwrap_or_default()
            ),
            _ => continue,
        };
        bail!(
            "{} is held by {} in network {network}, and {why}: its container is probably still \
             running, and releasing the address lets the plugin hand it to a second pod. Refusing \
             (use --force if the container is gone{})",
            r.ip,
            r.owner,
            if valid.is_none() {
                "; or give --valid with the runtime's live containers"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str) -> Reservation {
        Reservation {
            ip: "10.0.0.2".parse().unwrap(),
            owner: Owner::Attachment {
                id: id.into(),
                ifname: "eth0".into(),
            },
            damage: None,
            mtime: None,
            node: None,
            made_by: None,
            set_index: None,
            problems: vec![],
        }
    }

    #[test]
    fn prefixes() {
        let rs = [
            res("3f2a9c41aaaa"),
            res("3f2a9c41bbbb"),
            res("77aa00112233"),
        ];
        assert_eq!(
            resolve_id("77aa0011", &rs).unwrap().as_deref(),
            Some("77aa00112233")
        );
        assert_eq!(
            resolve_id("77aa00112233", &rs).unwrap().as_deref(),
            Some("77aa00112233")
        );
        assert!(resolve_id("3f2a9c41", &rs).is_err());
        assert!(resolve_id("77aa", &rs).is_err());
        assert_eq!(resolve_id("deadbeef", &rs).unwrap(), None);
    }
}
