//! `ipamctl gc NETWORK --valid FILE`: removes reservations whose attachment
//! is not valid, behind guards against a wrong list; `--from-report FILE`:
//! exactly the leaks of a `leaks --json` report (`from_report`).

use std::time::Duration;

use anyhow::{bail, Result};
use host_local::store::Owner;

use super::change::{apply, plan, Plan, Skipped};
use super::from_report;
use super::scope::NodeScope;
use super::valid::{guard_list, KeepRule};
use super::{load_configs, Ctx, OK};

use crate::cli::{ChangeArgs, ConfigArg, ValidArg};
use crate::duration;
use crate::inspect::now_secs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (a directory of the data directory).
    pub network: String,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub valid: ValidArg,
    /// Remove exactly the leaks of this `ipamctl leaks --json` report (a file, or - for
    /// stdin): each only if its file still names the reported owner and was not made again
    /// since; the others are listed as skipped.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["valid", "cri"])]
    pub from_report: Option<String>,
    /// Override the guards: a list matching nothing, another network's GC configuration,
    /// removing every reservation, a report made without --valid.
    #[arg(long, alias = "allow-empty")]
    pub force: bool,
    /// A network kept in etcd: remove this node's reservations (default: the configuration's
    /// ipam.store.node); other nodes' are never touched.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Never remove a reservation younger than this (etcd records no times: the latest a
    /// reservation can have been made is its node's last activity).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration::parse_duration)]
    pub min_age: Duration,
    #[command(flatten)]
    pub change: ChangeArgs,
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let change = &a.change;
    let network = a.network.as_str();
    super::check_network_name(network)?;
    let cfgs = load_configs(a.config.config.as_deref())?;
    if let Some(report) = a.from_report.as_deref() {
        let (mut view, scope) = ctx.read_scoped(network, &cfgs, a.node.as_deref(), false)?;
        super::scope::restrict(&mut view, scope.as_ref(), true);
        let pods = super::change::pod_names(ctx.results_dir.as_deref(), network)?;
        let p = from_report::plan_from_report(
            report,
            &view,
            scope.as_ref().map(|s| s.node.as_str()),
            a.force,
            now_secs(),
            pods.as_ref(),
        )?;
        return apply(
            ctx,
            "gc",
            &view,
            scope.as_ref(),
            p,
            change,
            (&format!("nothing to remove in network {network}"), OK),
        );
    }
    let Some(valid) = a.valid.load()? else {
        bail!("gc needs the live attachments: give --valid FILE, --cri URL or --from-report FILE");
    };
    if valid.is_empty() && !a.force {
        bail!(
            "valid attachments {}: empty; this would remove every reservation (use --force if that is meant)",
            valid.source
        );
    }
    let (mut view, scope) = ctx.read_scoped(network, &cfgs, a.node.as_deref(), true)?;
    super::scope::restrict(&mut view, scope.as_ref(), true);
    guard_list(&valid, &view, a.force, "removed")?;
    let now = now_secs();
    let pods = super::change::pod_names(ctx.results_dir.as_deref(), network)?;
    let rule = KeepRule {
        min_age: a.min_age,
        list: Some((valid.made, valid.label())),
    };
    let mut planned = Vec::new();
    let mut kept = Vec::new();
    for r in view.reservations.iter().filter(|r| !valid.keeps(&r.owner)) {
        let nodeless = scope.is_some() && NodeScope::nodeless(r);
        let keep = if nodeless {
            Some(super::scope::nodeless_text(network, r))
        } else {
            rule.reason(r, now)
        };
        if let Some(reason) = keep {
            kept.push(Skipped {
                address: r.ip,
                reason,
            });
            continue;
        }
        let why = match (&r.owner, &r.damage) {
            (Owner::Damaged, Some(reason)) if scope.is_some() => {
                format!("damaged value ({reason})")
            }
            (Owner::Damaged, Some(reason)) => format!("damaged file ({reason})"),
            _ => "not a valid attachment".into(),
        };
        planned.push(plan(r, why, now, pods.as_ref()));
    }
    apply(
        ctx,
        "gc",
        &view,
        scope.as_ref(),
        Plan {
            planned,
            kept,
            skipped: Vec::new(),
        },
        change,
        (&format!("nothing to remove in network {network}"), OK),
    )
}
