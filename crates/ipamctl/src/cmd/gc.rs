//! `ipamctl gc NETWORK --valid FILE`: removes reservations whose attachment
//! is not valid, behind guards against a wrong list.

use std::time::Duration;

use anyhow::{bail, Result};
use host_local::store::Owner;

use super::change::{apply, plan, Skipped};
use super::valid::{guard_list, KeepRule};
use super::{load_configs, Ctx, OK};
use crate::attach;
use crate::cli::{ChangeArgs, ConfigArg, ValidRequired};
use crate::duration;
use crate::inspect::now_secs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (a directory of the data directory).
    pub network: String,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub valid: ValidRequired,
    /// Override the guards: a list matching nothing, another network's GC configuration,
    /// removing every reservation.
    #[arg(long, alias = "allow-empty")]
    pub force: bool,
    /// Never remove a reservation younger than this.
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
    super::refuse_etcd("gc", network, &cfgs)?;
    let valid = attach::load_valid(&a.valid.valid)?;
    if valid.is_empty() && !a.force {
        bail!(
            "valid attachments {}: empty; this would remove every reservation (use --force if that is meant)",
            valid.source
        );
    }
    let view = ctx.read_one(network, &cfgs)?;
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
        if let Some(reason) = rule.reason(r, now) {
            kept.push(Skipped {
                address: r.ip,
                reason,
            });
            continue;
        }
        let why = match &r.owner {
            Owner::Damaged { reason } => format!("damaged file ({reason})"),
            _ => "not a valid attachment".into(),
        };
        planned.push(plan(r, why, now, pods.as_ref()));
    }
    apply(
        ctx,
        "gc",
        &view,
        planned,
        kept,
        change,
        (&format!("nothing to remove in network {network}"), OK),
    )
}
