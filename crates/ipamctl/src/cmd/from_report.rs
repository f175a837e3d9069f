//! `gc NETWORK --from-report FILE`: applies exactly a `leaks --json`
//! report (reviewed, perhaps edited): removes only the reported
//! reservations whose file still names the reported owner and was not made
//! again since, and lists the others as skipped.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use host_local::store::Owner;
use serde::Deserialize;

use super::change::{plan, Plan, Skipped};
use crate::attach::ResultsCache;
use crate::inspect::{NetworkView, Reservation};
use crate::report::SCHEMA;

/// The part of a `leaks --json` document (SCHEMA.md, LeaksReport) gc uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaksIn {
    schema: u32,
    command: String,
    data_dir: PathBuf,
    network: String,
    /// The node of a network kept in etcd (absent in reports of older versions).
    #[serde(default)]
    node: Option<String>,
    sources: SourcesIn,
    leaks: Vec<LeakIn>,
}

#[derive(Deserialize)]
struct SourcesIn {
    authoritative: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeakIn {
    address: IpAddr,
    format: String,
    container_id: Option<String>,
    ifname: Option<String>,
    mtime: Option<i64>,
    #[serde(default)]
    gc_keeps: Option<String>,
}

impl LeakIn {
    /// The owner the report names.
    fn owner(&self, n: usize) -> Result<Owner> {
        let id = || {
            self.container_id
                .clone()
                .ok_or_else(|| anyhow!("leaks[{n}] ({}): no containerId", self.address))
        };
        Ok(match self.format.as_str() {
            "attachment" => Owner::Attachment {
                id: id()?,
                ifname: self
                    .ifname
                    .clone()
                    .ok_or_else(|| anyhow!("leaks[{n}] ({}): no ifname", self.address))?,
            },
            "legacy" => Owner::Legacy { id: id()? },
            "damaged" => Owner::Damaged,
            other => bail!(
                "leaks[{n}] ({}): format {other:?} (expected attachment, legacy or damaged)",
                self.address
            ),
        })
    }
}

/// The same reservation: the same owner (any damaged file for a damaged one).
fn same_owner(a: &Owner, b: &Owner) -> bool {
    match (a, b) {
        (Owner::Damaged, Owner::Damaged) => true,
        _ => a == b,
    }
}

/// Reads the report `path` (or `-`) for `view`, refusing one for another
/// network or store, of another schema, or (unless `force`) made without an
/// authoritative list; plans the removal of each reported leak that is
/// unchanged, keeps those the report marks as kept by gc, and skips the rest.
pub fn plan_from_report(
    path: &str,
    view: &NetworkView,
    node: Option<&str>,
    force: bool,
    now: i64,
    pods: Option<&ResultsCache>,
) -> Result<Plan> {
    let label = if path == "-" { "stdin" } else { path };
    let text = crate::cli::read_file_arg(path, "leaks report")?;
    let report: LeaksIn = serde_json::from_str(&text)
        .with_context(|| format!("leaks report {label}: not a `ipamctl leaks --json` document"))?;
    if report.command != "leaks" || report.schema != SCHEMA {
        bail!(
            "leaks report {label}: command {:?}, schema {}; expected the output of `ipamctl leaks --json` (schema {SCHEMA})",
            report.command,
            report.schema
        );
    }
    if report.network != view.name {
        bail!(
            "leaks report {label}: a report for network {:?}, not {:?}; refusing",
            report.network,
            view.name
        );
    }
    if report.node.as_deref() != node {
        let text = |n: Option<&str>| {
            n.map_or_else(
                || "no node (a disk store)".to_string(),
                |n| format!("node {n}"),
            )
        };
        bail!(
            "leaks report {label}: made for {}, not {}; refusing (give --node as the report was made)",
            text(report.node.as_deref()),
            text(node)
        );
    }
    if !same_dir(&report.data_dir, &view.data_dir) {
        bail!(
            "leaks report {label}: made on data directory {}, not {}; refusing",
            report.data_dir.display(),
            view.data_dir.display()
        );
    }
    if !report.sources.authoritative && !force {
        bail!(
            "leaks report {label}: made without --valid (libcni's cache, a heuristic: its leaks are \
             only suspected); verify them and use --force, or make the report with --valid"
        );
    }
    let mut out = Plan::default();
    for (n, leak) in report.leaks.iter().enumerate() {
        let owner = leak
            .owner(n)
            .with_context(|| format!("leaks report {label}"))?;
        let ip = host_local::addr::canonical(leak.address);
        if let Some(why) = &leak.gc_keeps {
            out.kept.push(Skipped {
                address: ip,
                reason: format!("the report marks it as kept by gc: {why}"),
            });
            continue;
        }
        let current: Option<&Reservation> = view.reservations.iter().find(|r| r.ip == ip);
        let skip = match current {
            None => Some("no longer reserved".to_string()),
            Some(r) if !same_owner(&r.owner, &owner) => {
                Some(format!("now held by {}, the report names {owner}", r.owner))
            }
            Some(r) if leak.mtime.is_some() && r.mtime != leak.mtime => {
                Some("made again since the report (its modification time changed)".to_string())
            }
            Some(_) => None,
        };
        match (skip, current) {
            (Some(reason), _) => out.skipped.push(Skipped {
                address: ip,
                reason: format!("changed since the report: {reason}; left alone"),
            }),
            (None, Some(r)) => out.planned.push(plan(r, "in the leaks report", now, pods)),
            (None, None) => {}
        }
    }
    Ok(out)
}

/// Whether two data directory paths name the same directory (as written, or
/// resolved when both exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}
