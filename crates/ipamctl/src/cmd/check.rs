//! `ipamctl check NETWORK`: the reverse of `leaks`. Attachments the runtime
//! cached (libcni's result cache) whose reservation is missing or held by
//! another owner (a duplicate-address risk), and reservations outside the
//! configured ranges.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use host_local::store::Owner;
use serde::Serialize;

use super::{load_configs, plural, results_cache, Ctx, FOUND, OK};

use crate::cli::{ConfigArg, ValidArg};
use crate::inspect::ProblemKind;
use crate::out;
use crate::render::{colored, Table, BOLD, DIM, RED};
use crate::report::Pod;

#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A cached attachment's address has no reservation file: it can be handed out again.
    Missing,
    /// A cached attachment's address is reserved by another owner.
    OtherOwner,
    /// A reservation outside every configured range.
    OutsideRanges,
    /// etcd: a cached attachment's address is reserved for it, but recorded as made by
    /// another node, whose GC (with its own runtime's list) removes it.
    OtherNode,
}

impl FindingKind {
    fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::OtherOwner => "other-owner",
            FindingKind::OutsideRanges => "outside-ranges",
            FindingKind::OtherNode => "other-node",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: FindingKind,
    pub address: IpAddr,
    /// The attachment concerned: the cached one, or the reservation's owner.
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub pod: Option<Pod>,
    pub detail: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub data_dir: PathBuf,
    pub network: String,
    /// The node whose invariants were checked (`--node`); null: every node's.
    pub node: Option<String>,
    /// libcni's result cache compared with the store (null: none, on a
    /// network kept in etcd, where the invariants are checked alone).
    pub results_cache: Option<PathBuf>,
    /// The valid list, when given: cached attachments it does not keep are
    /// stale (their container is gone) and not checked.
    pub valid: Option<super::leaks::ValidSource>,
    /// Cached attachments of this network that were checked.
    pub attachments: usize,
    /// Cached attachments skipped because the valid list does not keep them.
    pub stale_cache_entries: usize,
    pub reservations: usize,
    /// Whether a configuration gave the ranges (else outside-ranges is not checked).
    pub ranges_checked: bool,
    pub findings: Vec<Finding>,
    /// A network kept in etcd: its keys' invariants; null on disk.
    pub invariants: Option<Invariants>,
}

/// The invariants of a network's etcd keys, checked over one snapshot.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invariants {
    /// The etcd revision read.
    pub revision: i64,
    /// Keys under the network's prefix.
    pub keys: usize,
    /// The layout key's version (null: none, a layout-1 pool not moved yet, whose missing
    /// node index keys are no violation; or unreadable).
    pub layout_version: Option<u32>,
    pub violations: Vec<ViolationReport>,
    /// Keys under the prefix that are no key of the layout (written by hand); not violations.
    pub stray_keys: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationReport {
    /// `damaged`, `missing-attachment-index`, ... (SCHEMA.md).
    pub kind: &'static str,
    pub key: String,
    pub address: Option<IpAddr>,
    pub node: Option<String>,
    pub detail: String,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (a directory of the data directory).
    pub network: String,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub valid: ValidArg,
    /// Take a --valid list that keeps none of the network's reservations.
    #[arg(long)]
    pub force: bool,
    /// A network kept in etcd: only the invariant violations about this node (default: every
    /// node's).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let network = a.network.as_str();
    super::check_network_name(network)?;
    let cfgs = load_configs(a.config.config.as_deref())?;
    let etcd = cfgs.etcd(network).and_then(|c| c.etcd_store().cloned());
    let cache = results_cache(ctx.results_dir.as_deref(), network)?;
    if cache.is_none() && etcd.is_none() {
        bail!(
            "check needs libcni's result cache: {} does not exist (give --results-dir)",
            super::DEFAULT_RESULTS_DIR
        );
    }
    let valid = a.valid.load()?;
    let (view, scope) = ctx.read_scoped(network, &cfgs, a.node.as_deref(), false)?;
    if let Some(v) = &valid {
        super::valid::guard_list(v, &view, a.force, "skipped as stale")?;
    }
    let invariants = match &etcd {
        Some(e) => Some(invariants(ctx, e, network, a.node.as_deref())?),
        None => None,
    };
    // The cache is this host's: its attachments' reservations are this node's.
    let this_node = scope.as_ref().filter(|s| !s.named).map(|s| s.node.as_str());
    let nodes: HashMap<IpAddr, Option<&str>> = view
        .reservations
        .iter()
        .map(|r| (r.ip, r.node.as_deref()))
        .collect();
    let owners: HashMap<IpAddr, &Owner> =
        view.reservations.iter().map(|r| (r.ip, &r.owner)).collect();
    let mut findings = Vec::new();
    let mut checked = 0;
    let mut stale = 0;
    for c in cache.iter().flat_map(|c| c.attachments.values()) {
        let owner = Owner::Attachment {
            id: c.id.clone(),
            ifname: c.ifname.clone(),
        };
        // The container is gone: its cache entry outlived it (a gc'd leak),
        // and its old address may rightly belong to someone else now.
        if valid.as_ref().is_some_and(|v| !v.keeps(&owner)) {
            stale += 1;
            continue;
        }
        checked += 1;
        for ip in &c.ips {
            let (kind, detail) = match owners.get(ip) {
                None => (
                    FindingKind::Missing,
                    format!(
                        "cached result {} holds it, but no reservation file does: the plugin may hand it out again",
                        c.file.display()
                    ),
                ),
                Some(o) if o.belongs_to(&c.id, &c.ifname) => match (this_node, nodes.get(ip)) {
                    (Some(me), Some(Some(other))) if *other != me => (
                        FindingKind::OtherNode,
                        format!(
                            "reserved for it, but recorded as made by node {other}, not this node \
                             {me}: node {other}'s GC removes it while the container runs here"
                        ),
                    ),
                    _ => continue,
                },
                Some(other) => (
                    FindingKind::OtherOwner,
                    format!("reserved by {other}: a duplicate-address risk"),
                ),
            };
            findings.push(Finding {
                kind,
                address: *ip,
                container_id: Some(c.id.clone()),
                ifname: Some(c.ifname.clone()),
                pod: c.pod.clone(),
                detail,
            });
        }
    }
    for r in &view.reservations {
        if let Some(p) = r
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::OutsideRanges)
        {
            findings.push(Finding {
                kind: FindingKind::OutsideRanges,
                address: r.ip,
                container_id: r.container_id().map(str::to_string),
                ifname: r.ifname().map(str::to_string),
                pod: cache.as_ref().and_then(|c| c.pod(&r.owner)),
                detail: p.detail.clone(),
            });
        }
    }
    findings.sort_by_key(|f| f.address);
    let report = CheckReport {
        data_dir: view.data_dir.clone(),
        network: network.to_string(),
        node: a.node.clone(),
        results_cache: cache.as_ref().map(|c| c.dir.clone()),
        valid: valid.as_ref().map(super::leaks::ValidSource::new),
        attachments: checked,
        stale_cache_entries: stale,
        reservations: view.reservations.len(),
        ranges_checked: view.config.is_some(),
        findings,
        invariants,
    };
    if a.json {
        out::json("check", &report)?;
    } else {
        out::print(&render(ctx, &report))?;
    }
    let violations = report.invariants.as_ref().map_or(0, |i| i.violations.len());
    Ok(if report.findings.is_empty() && violations == 0 {
        OK
    } else {
        FOUND
    })
}

/// The invariants of network `network`'s keys in etcd (`node`: only the
/// violations about that node).
fn invariants(
    ctx: &Ctx,
    cfg: &host_local::config::EtcdConfig,
    network: &str,
    node: Option<&str>,
) -> Result<Invariants> {
    use host_local::store::etcd::audit;
    let mut store = crate::etcd::open(cfg, network, ctx.lock_timeout);
    let keys = crate::etcd::read_keys(&mut store)?;
    let count = keys.addresses.len()
        + keys.attachment_index.len()
        + keys.node_index.len()
        + keys.claims.len()
        + keys.node_blocks.len()
        + keys.activity.len()
        + usize::from(keys.layout.is_some())
        + keys.other.len();
    let violations = audit::audit(store.keys(), &keys, cfg.block_size)
        .into_iter()
        .filter(|v| node.is_none() || v.node.as_deref() == node)
        .map(|v| ViolationReport {
            kind: v.kind.as_str(),
            key: v.key,
            address: v.ip,
            node: v.node,
            detail: v.detail,
        })
        .collect();
    Ok(Invariants {
        revision: keys.revision,
        keys: count,
        layout_version: keys
            .layout
            .as_ref()
            .and_then(|l| l.as_ref().map(|l| l.version)),
        violations,
        stray_keys: keys.other.iter().map(|k| k.name()).collect(),
    })
}

fn render(ctx: &Ctx, r: &CheckReport) -> String {
    let style = ctx.style;
    let mut o = String::new();
    let _ = writeln!(o, "{} {}", style.paint("network", BOLD), r.network);
    match &r.results_cache {
        Some(cache) => {
            let _ = writeln!(
                o,
                "checked {} cached attachment{} ({}) against {} reservation{}{}",
                r.attachments,
                plural(r.attachments),
                cache.display(),
                r.reservations,
                plural(r.reservations),
                if r.ranges_checked {
                    ""
                } else {
                    "; ranges not checked (no --config)"
                }
            );
        }
        None => {
            let _ = writeln!(
                o,
                "no libcni result cache (give --results-dir to compare it): {} reservation{} checked{}",
                r.reservations,
                plural(r.reservations),
                if r.ranges_checked { " against the ranges" } else { "" }
            );
        }
    }
    if let Some(i) = &r.invariants {
        let _ = writeln!(
            o,
            "checked the invariants of {} etcd key{} at revision {}{}: {} violation{}",
            i.keys,
            plural(i.keys),
            i.revision,
            r.node
                .as_deref()
                .map(|n| format!(" (violations about node {n})"))
                .unwrap_or_default(),
            i.violations.len(),
            plural(i.violations.len())
        );
    }
    if let Some(v) = &r.valid {
        let _ = writeln!(
            o,
            "{}: {} cached attachment{} of containers not listed skipped as stale",
            v.describe(),
            r.stale_cache_entries,
            plural(r.stale_cache_entries)
        );
    }
    o.push('\n');
    if let Some(i) = &r.invariants {
        if !i.violations.is_empty() {
            let mut t = Table::new(&["VIOLATION", "KEY", "DETAIL"]);
            for v in &i.violations {
                t.row(vec![
                    colored(v.kind, RED),
                    v.key.clone().into(),
                    v.detail.clone().into(),
                ]);
            }
            o.push_str(&t.render(style));
            let n = i.violations.len();
            let _ = writeln!(o, "{n} violation{}\n", plural(n));
        }
        if i.layout_version.is_none() && i.keys > 0 {
            let _ = writeln!(
                o,
                "note: no readable layout key: a layout-1 pool (no node index yet; the first \
                 node to call moves it), so missing node index keys are not reported"
            );
        }
        for k in &i.stray_keys {
            let _ = writeln!(
                o,
                "note: {k}: not a key of the layout (written by hand?); not read by the plugin"
            );
        }
    }
    let violations = r.invariants.as_ref().map_or(0, |i| i.violations.len());
    if r.findings.is_empty() {
        if violations == 0 {
            o.push_str("no findings\n");
        }
        return o;
    }
    let mut t = Table::new(&["ADDRESS", "FINDING", "CONTAINER", "IFNAME", "POD", "DETAIL"]);
    for f in &r.findings {
        let dash = || colored("-", DIM);
        t.row(vec![
            f.address.to_string().into(),
            colored(f.kind.as_str(), RED),
            f.container_id
                .as_deref()
                .map_or_else(dash, |id| ctx.id_text(id).into()),
            f.ifname.clone().map_or_else(dash, Into::into),
            f.pod.as_ref().map_or_else(dash, |p| p.to_string().into()),
            f.detail.clone().into(),
        ]);
    }
    o.push_str(&t.render(style));
    let _ = writeln!(
        o,
        "{} finding{}",
        r.findings.len(),
        plural(r.findings.len())
    );
    let other = r
        .findings
        .iter()
        .any(|f| matches!(f.kind, FindingKind::OtherOwner));
    if other && r.valid.is_none() {
        o.push_str(
            "an other-owner finding may be the stale cache entry of a container that is gone (its \
             address reclaimed by gc and handed out again): give --valid to skip those\n",
        );
    }
    o
}
