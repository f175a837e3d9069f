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
}

impl FindingKind {
    fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::OtherOwner => "other-owner",
            FindingKind::OutsideRanges => "outside-ranges",
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
    pub results_cache: PathBuf,
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
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let network = a.network.as_str();
    super::check_network_name(network)?;
    let cfgs = load_configs(a.config.config.as_deref())?;
    super::refuse_etcd("check", network, &cfgs)?;
    let Some(cache) = results_cache(ctx.results_dir.as_deref(), network)? else {
        bail!(
            "check needs libcni's result cache: {} does not exist (give --results-dir)",
            super::DEFAULT_RESULTS_DIR
        );
    };
    let valid = a.valid.load()?;
    let view = ctx.read_one(network, &cfgs)?;
    if let Some(v) = &valid {
        super::valid::guard_list(v, &view, a.force, "skipped as stale")?;
    }
    let owners: HashMap<IpAddr, &Owner> =
        view.reservations.iter().map(|r| (r.ip, &r.owner)).collect();
    let mut findings = Vec::new();
    let mut checked = 0;
    let mut stale = 0;
    for c in cache.attachments.values() {
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
                Some(Owner::Attachment { id, ifname }) if *id == c.id && *ifname == c.ifname => {
                    continue
                }
                Some(Owner::Legacy { id }) if *id == c.id => continue,
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
                pod: cache.pod(&r.owner),
                detail: p.detail.clone(),
            });
        }
    }
    findings.sort_by_key(|f| f.address);
    let report = CheckReport {
        data_dir: view.data_dir.clone(),
        network: network.to_string(),
        results_cache: cache.dir.clone(),
        valid: valid.as_ref().map(super::leaks::ValidSource::new),
        attachments: checked,
        stale_cache_entries: stale,
        reservations: view.reservations.len(),
        ranges_checked: view.config.is_some(),
        findings,
    };
    if a.json {
        out::json("check", &report)?;
    } else {
        out::print(&render(ctx, &report))?;
    }
    Ok(if report.findings.is_empty() {
        OK
    } else {
        FOUND
    })
}

fn render(ctx: &Ctx, r: &CheckReport) -> String {
    let style = ctx.style;
    let mut o = String::new();
    let _ = writeln!(o, "{} {}", style.paint("network", BOLD), r.network);
    let _ = writeln!(
        o,
        "checked {} cached attachment{} ({}) against {} reservation{}{}",
        r.attachments,
        plural(r.attachments),
        r.results_cache.display(),
        r.reservations,
        plural(r.reservations),
        if r.ranges_checked {
            ""
        } else {
            "; ranges not checked (no --config)"
        }
    );
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
    if r.findings.is_empty() {
        o.push_str("no findings\n");
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
