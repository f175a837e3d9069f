//! `ipamctl cluster`: the cluster-wide view of a network kept in etcd:
//! reservations per node, and with `--live-nodes` the nodes that hold
//! reservations but are not in the list (gone nodes whose addresses only an
//! operator can reclaim: GC on a node only ever removes its own).
//!
//! Reads only; the etcd connection comes from the network's `ipam.store`.
//! `cluster reclaim` ([`reclaim`]) writes: a gone node's keys removed;
//! `cluster import` ([`import`]) writes: a node's disk store into etcd.

pub mod import;
pub mod reclaim;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use host_local::config::{EtcdConfig, StoreConfig};
use host_local::store::{Entry, Owner, Store};
use serde::Serialize;

/// Exit status when `--live-nodes` finds nodes that are not live.
const FOUND: u8 = 1;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The network name.
    #[arg(required = true)]
    network: Option<String>,
    /// A network configuration (.conf, .conflist) or a directory of them whose host-local
    /// section for NETWORK has a `store` of type etcd.
    #[arg(long, value_name = "PATH", required = true)]
    config: Option<PathBuf>,
    /// Live node names, one per line (`#` comments), or - for stdin: nodes holding reservations
    /// that are not listed are reported (exit status 1).
    #[arg(long, value_name = "FILE")]
    live_nodes: Option<String>,
    /// JSON output: {"schema", "command": "cluster", "network", "nodes": [{"node", "reservations",
    /// "live"?}], "notLive"?: [names], "nearMatches"?: [{"node", "listed"}]}.
    #[arg(long)]
    json: bool,
}

/// What `cluster` does besides its view.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Removes everything a gone node holds (reservations, blocks, activity) once it has been
    /// idle long enough.
    #[command(after_help = reclaim::AFTER_HELP)]
    Reclaim(reclaim::Args),
    /// Imports a node's disk store (a network directory) into the network's etcd store as that
    /// node's reservations: the step that moves a node to cluster mode with its pods' addresses.
    #[command(after_help = import::AFTER_HELP)]
    Import(import::Args),
}

/// The after_help text of the subcommand.
pub const AFTER_HELP: &str = "Examples:\n  ipamctl cluster mynet --config /etc/cni/net.d\n  \
    kubectl get nodes -o name | sed 's|node/||' > live.txt\n  \
    ipamctl cluster mynet --config /etc/cni/net.d --live-nodes live.txt\n  \
    ipamctl cluster reclaim mynet --config /etc/cni/net.d --node worker-9 --dry-run\n\n\
    Reservations without a node (damaged values) are counted under \"-\". A --live-nodes list \
    that names none of the nodes holding reservations is refused (exit 2): it is not this \
    cluster's, or names nodes differently; names that differ only in case or as a short name \
    and an FQDN (node-1, node-1.example.com) are pointed out. Node names are compared exactly \
    (each node's ipam.store.node, by default its host name).\n\n\
    `ipamctl cluster import --help`: moving a node from the disk store to cluster mode.";

fn read_live(src: &str) -> Result<BTreeSet<String>> {
    let text = crate::cli::read_file_arg(src, "live nodes")?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The etcd store configured for `network` in `config`, and its configuration.
fn store_for(config: &std::path::Path, network: &str) -> Result<(Box<dyn Store>, EtcdConfig)> {
    let cfgs = crate::configs::load(config)?;
    let net = cfgs
        .get(network)
        .ok_or_else(|| anyhow!("network {network} not found in {}", config.display()))?;
    let cfg = net.etcd_store().cloned().ok_or_else(|| {
        anyhow!(
            "network {} ({}) does not use the etcd store",
            net.network,
            net.source.display()
        )
    })?;
    let store = host_local::store::open(&StoreConfig::Etcd(cfg.clone()), network)
        .map_err(|e| anyhow!("{}: {e}", net.source.display()))?;
    Ok((store, cfg))
}

/// Reservations per node ("-" for values naming none).
pub fn per_node(entries: &[Entry]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in entries {
        let node = match (&e.node, &e.owner) {
            (Some(n), Owner::Attachment { .. } | Owner::Legacy { .. }) => n.clone(),
            _ => "-".to_string(),
        };
        *m.entry(node).or_insert(0) += 1;
    }
    m
}

/// The `--json` document (its own schema 1; see SCHEMA.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterReport<'a> {
    schema: u32,
    command: &'static str,
    network: &'a str,
    reservations: usize,
    nodes: Vec<NodeReport<'a>>,
    /// Only with --live-nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_live: Option<Vec<&'a String>>,
    /// Only with --live-nodes: nodes not live whose name the list has in another spelling.
    #[serde(skip_serializing_if = "Option::is_none")]
    near_matches: Option<Vec<NearMatch<'a>>>,
}

/// A node holding reservations that the live list names differently.
#[derive(Serialize)]
struct NearMatch<'a> {
    node: &'a str,
    listed: Vec<&'a str>,
}

/// For each node of `nodes` not in `live`, the names of `live` it may be.
fn near<'a>(nodes: &[&'a String], live: &'a BTreeSet<String>) -> Vec<NearMatch<'a>> {
    nodes
        .iter()
        .filter_map(|n| {
            let listed = crate::etcd::near_matches(n, live.iter().map(String::as_str));
            (!listed.is_empty()).then_some(NearMatch { node: n, listed })
        })
        .collect()
}

fn near_text(near: &[NearMatch<'_>]) -> String {
    near.iter()
        .map(|m| format!("{} is listed as {}", m.node, m.listed.join(" or ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Serialize)]
struct NodeReport<'a> {
    node: &'a str,
    reservations: usize,
    /// Only with --live-nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<bool>,
}

fn render(
    counts: &BTreeMap<String, usize>,
    live: Option<&BTreeSet<String>>,
    not_live: &[&String],
    near: &[NearMatch<'_>],
    total: usize,
) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let width = counts.keys().map(String::len).max().unwrap_or(4).max(4);
    let _ = writeln!(
        o,
        "{:<width$}  RESERVATIONS{}",
        "NODE",
        if live.is_some() { "  LIVE" } else { "" }
    );
    for (n, c) in counts {
        let mark = match live {
            Some(l) if n != "-" => {
                if l.contains(n) {
                    "  yes"
                } else {
                    "  NO"
                }
            }
            _ => "",
        };
        let _ = writeln!(o, "{n:<width$}  {c:>12}{mark}");
    }
    let _ = writeln!(o, "{total} reservation(s) on {} node(s)", counts.len());
    if !not_live.is_empty() {
        let held: usize = not_live.iter().map(|n| counts[*n]).sum();
        let _ = writeln!(
            o,
            "not live: {} ({held} reservation(s); reclaim them with `ipamctl cluster reclaim \
             NETWORK --config PATH --node NODE`, or a CNI GC whose store names that node)",
            not_live
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !near.is_empty() {
        let _ = writeln!(
            o,
            "near matches: {} (node names are compared exactly: each node's ipam.store.node, by \
             default its host name)",
            near_text(near)
        );
    }
    o
}

pub fn run(ctx: &crate::cmd::Ctx, a: &Args) -> Result<u8> {
    match &a.action {
        Some(Action::Reclaim(r)) => reclaim::run(ctx, r),
        Some(Action::Import(i)) => import::run(ctx, i),
        None => view(a),
    }
}

fn view(a: &Args) -> Result<u8> {
    let (Some(network), Some(config)) = (a.network.as_deref(), a.config.as_deref()) else {
        bail!("give NETWORK and --config PATH");
    };
    cni_proto::NetworkName::new(network).map_err(|e| anyhow!("network {network:?}: {e}"))?;
    let live = a.live_nodes.as_deref().map(read_live).transpose()?;
    if live.as_ref().is_some_and(|l| l.is_empty()) {
        bail!("the live node list is empty: every node would be reported");
    }
    let (mut store, cfg) = store_for(config, network)?;
    let endpoints = cfg.endpoints.join(",");
    let entries = store
        .read_session()
        .and_then(|mut s| s.list())
        .with_context(|| format!("reading network {network} from etcd {endpoints}"))?;
    let counts = per_node(&entries);
    let not_live: Vec<&String> = match &live {
        Some(l) => counts
            .keys()
            .filter(|n| *n != "-" && !l.contains(*n))
            .collect(),
        None => Vec::new(),
    };
    let near = live
        .as_ref()
        .map(|l| near(&not_live, l))
        .unwrap_or_default();
    let holding = counts.keys().filter(|n| *n != "-").count();
    if let (Some(l), Some(src)) = (&live, &a.live_nodes) {
        if holding > 0 && not_live.len() == holding {
            let names: Vec<&str> = not_live.iter().map(|n| n.as_str()).collect();
            bail!(
                "live nodes {src}: the list ({} name{}) matches none of the {holding} node{} holding \
                 reservations in network {network} ({}){}; it is not this cluster's list, or names \
                 nodes differently (node names are compared exactly: each node's ipam.store.node, by \
                 default its host name). Refusing: every node would be reported as not live",
                l.len(),
                crate::cmd::plural(l.len()),
                crate::cmd::plural(holding),
                names.join(", "),
                if near.is_empty() {
                    String::new()
                } else {
                    format!("; near matches: {}", near_text(&near))
                }
            );
        }
    }
    if a.json {
        let doc = ClusterReport {
            schema: 1,
            command: "cluster",
            network,
            reservations: entries.len(),
            nodes: counts
                .iter()
                .map(|(n, c)| NodeReport {
                    node: n,
                    reservations: *c,
                    live: live.as_ref().map(|l| n == "-" || l.contains(n)),
                })
                .collect(),
            not_live: live.as_ref().map(|_| not_live.clone()),
            near_matches: live.as_ref().map(|_| near),
        };
        crate::out::print(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        crate::out::print(&render(
            &counts,
            live.as_ref(),
            &not_live,
            &near,
            entries.len(),
        ))?;
    }
    if live.is_some() && !not_live.is_empty() {
        return Ok(FOUND);
    }
    Ok(0)
}
