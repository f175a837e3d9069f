//! `ipamctl cluster reclaim NETWORK --node NODE`: everything a gone node
//! holds in a network kept in etcd (its reservations with their index
//! keys, its blocks, its activity key), removed once the node has been
//! idle long enough, judged by its activity key's `at` (the node's own
//! clock at its last ADD, DEL, GC or STATUS heartbeat).
//!
//! Every removal is one transaction guarded by the revisions read (and by
//! the node's activity key: a node that writes again stops the reclaim),
//! so a reservation written meanwhile is never removed; blocks go only
//! once every reservation of the node is gone, the activity key last.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use host_local::config::EtcdConfig;
use host_local::store::etcd::audit::{NetworkKeys, NodeKeys, RawKey};
use host_local::store::etcd::{EtcdStore, Guard};
use host_local::store::Owner;
use serde::Serialize;

use crate::cmd::change::{confirm, plan, Planned};
use crate::cmd::{plural, Ctx, FAILED, FOUND, OK};
use crate::inspect::{now_secs, Reservation};
use crate::out;
use crate::render::{age, utc, Table, BOLD, RED, YELLOW};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name.
    network: String,
    /// A network configuration (.conf, .conflist) or a directory of them whose host-local
    /// section for NETWORK has a `store` of type etcd.
    #[arg(long, value_name = "PATH", required = true)]
    config: PathBuf,
    /// The gone node, as its reservations record it (its ipam.store.node).
    #[arg(long, value_name = "NODE", required = true)]
    node: String,
    /// Refuse a node whose activity key says it wrote less than this long ago.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::duration::parse_duration)]
    min_idle: Duration,
    /// Show what would be removed and change nothing.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    /// Do it without asking (required when stdin is not a terminal, and for a node without an
    /// activity key, whose idle time is unknown).
    #[arg(long, short = 'y')]
    yes: bool,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    json: bool,
}

pub const AFTER_HELP: &str = "Removes, from a network kept in etcd, everything node NODE holds: \
    each reservation (address key, attachment and node index keys), each block (claim and the \
    node's block key), then its activity key. Only for a node idle at least --min-idle, judged by \
    its activity key's `at` (the node's clock at its last ADD, DEL, GC, or STATUS heartbeat); a node \
    active more recently is refused (exit 2). A node without a readable activity key holding \
    reservations is idle since unknown: that is said, and --yes is required.\n\n\
    Each removal is guarded by the revisions read and by the node's activity key, so a \
    reservation written meanwhile, or anything after the node wrote again, is left alone and \
    reported (exit 1); blocks go only after every reservation of the node is gone. Errors exit 2.\n\n\
    Examples:\n  ipamctl cluster reclaim mynet --config /etc/cni/net.d --node worker-9 --dry-run\n  \
    ipamctl cluster reclaim mynet --config /etc/cni/net.d --node worker-9 --min-idle 24h --yes";

/// The node's activity, as read.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActivityReport {
    /// Seconds since the epoch (the node's clock).
    at: u64,
    op: String,
    idle_seconds: i64,
}

/// A block of the node: its claim and its block key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockReport {
    base: IpAddr,
    /// The claim's size (null: no claim naming the node).
    size: Option<u32>,
    /// `blocks/..` names the node.
    claimed: bool,
    /// `nodes/<node>/blocks/..` exists.
    node_key: bool,
}

/// Something not removed.
#[derive(Serialize)]
struct NotDone {
    what: String,
    reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReclaimReport {
    network: String,
    node: String,
    dry_run: bool,
    min_idle_seconds: u64,
    /// null: no readable activity key.
    activity: Option<ActivityReport>,
    /// The node has no readable activity key: its idle time is unknown.
    idle_unknown: bool,
    /// Its reservations (address keys recording the node).
    planned: Vec<Planned>,
    /// Node index keys naming no reservation of the node (stale).
    stale_index_keys: Vec<String>,
    blocks: Vec<BlockReport>,
    removed: Vec<IpAddr>,
    removed_blocks: Vec<IpAddr>,
    removed_keys: Vec<String>,
    activity_removed: bool,
    /// Left alone: changed since they were read.
    skipped: Vec<NotDone>,
    /// Removals that failed.
    failed: Vec<NotDone>,
    /// The node has an activity key (readable or not).
    #[serde(skip)]
    activity_key: bool,
}

/// The etcd store configured for `network` in `config`.
fn etcd_config(config: &std::path::Path, network: &str) -> Result<EtcdConfig> {
    let cfgs = crate::configs::load(config)?;
    let net = cfgs
        .get(network)
        .ok_or_else(|| anyhow!("network {network} not found in {}", config.display()))?;
    net.etcd_store().cloned().ok_or_else(|| {
        anyhow!(
            "network {} ({}) does not use the etcd store",
            net.network,
            net.source.display()
        )
    })
}

/// One of the node's reservations as a row of the plan.
fn reservation(a: &host_local::store::etcd::audit::Address) -> Reservation {
    let (owner, damage) = match &a.owner {
        Ok(o) => (o.clone(), None),
        Err(why) => (Owner::Damaged, Some(why.clone())),
    };
    Reservation {
        ip: a.ip,
        owner,
        damage,
        mtime: None,
        node: a.node.clone(),
        made_by: None,
        set_index: None,
        problems: Vec::new(),
    }
}

fn unchanged(k: &RawKey) -> Guard {
    Guard::Unchanged {
        key: k.key.clone(),
        mod_revision: k.mod_revision,
    }
}

/// The guard that the node wrote nothing since it was read: its activity
/// key is the one read (or still absent).
fn quiet(store: &EtcdStore, node: &NodeKeys<'_>, name: &str) -> Guard {
    match node.activity {
        Some(a) => unchanged(&a.raw),
        None => Guard::Unchanged {
            key: store.keys().activity(name).into_bytes(),
            mod_revision: 0,
        },
    }
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let network = a.network.as_str();
    crate::cmd::check_network_name(network)?;
    crate::etcd::check_node_name("--node", &a.node)?;
    let cfg = etcd_config(&a.config, network)?;
    let mut store = crate::etcd::open(&cfg, network, ctx.lock_timeout);
    let keys = crate::etcd::read_keys(&mut store)?;
    let node = keys.node(&a.node);
    let now = now_secs();
    if node.is_empty() {
        let nodes = keys.nodes();
        let near = crate::etcd::near_matches(&a.node, nodes.iter().copied());
        let known = if nodes.is_empty() {
            "no node holds anything".to_string()
        } else {
            format!(
                "nodes: {}",
                nodes.iter().copied().collect::<Vec<_>>().join(", ")
            )
        };
        let hint = match near.as_slice() {
            [] => String::new(),
            n => format!(
                "; did you mean {}? (node names are compared exactly)",
                n.join(" or ")
            ),
        };
        out::warn(format_args!(
            "node {} holds nothing in network {network} ({known}){hint}; nothing to reclaim",
            a.node
        ));
        return Ok(FOUND);
    }
    let activity = node.activity.and_then(|x| {
        x.activity.as_ref().map(|act| ActivityReport {
            at: act.at,
            op: act.op.clone(),
            idle_seconds: now - i64::try_from(act.at).unwrap_or(i64::MAX),
        })
    });
    if let Some(act) = &activity {
        let min = i64::try_from(a.min_idle.as_secs()).unwrap_or(i64::MAX);
        if act.idle_seconds < min {
            let when = if act.idle_seconds < 0 {
                format!("{} ahead of this clock", age(-act.idle_seconds))
            } else {
                format!("{} ago", age(act.idle_seconds))
            };
            bail!(
                "node {} was last active {} ({when}: {}), less than --min-idle {} ago; refusing to \
                 reclaim the addresses of a node that may still be running (its pods would lose \
                 them to others). Stop it first, or wait",
                a.node,
                utc(i64::try_from(act.at).unwrap_or(i64::MAX)),
                if act.op.is_empty() { "?" } else { &act.op },
                crate::duration::show(a.min_idle)
            );
        }
    }
    let mut report = plan_reclaim(&node, a, activity, now);
    if a.dry_run {
        emit(ctx, a, &report, " (dry run: nothing changed)")?;
        return Ok(OK);
    }
    if report.idle_unknown && !a.yes {
        if !a.json {
            out::print(&plan_text(ctx, &report, ""))?;
        }
        bail!(
            "node {} has no readable activity key, so how long it has been idle is unknown; \
             make sure it is gone, then give --yes",
            a.node
        );
    }
    if !a.json {
        out::print(&plan_text(ctx, &report, ""))?;
    }
    let question = format!("remove every key of node {} in network {network}?", a.node);
    if !confirm(&question, a.yes)? {
        out::warn("declined; nothing changed");
        return Ok(FOUND);
    }
    apply(&mut store, &keys, &node, &a.node, &mut report)?;
    if a.json {
        out::json("reclaim", &report)?;
    } else {
        out::print(&outcome_text(ctx, &report))?;
    }
    Ok(if !report.failed.is_empty() {
        FAILED
    } else if !report.skipped.is_empty() {
        FOUND
    } else {
        OK
    })
}

fn plan_reclaim(
    node: &NodeKeys<'_>,
    a: &Args,
    activity: Option<ActivityReport>,
    now: i64,
) -> ReclaimReport {
    let idle_unknown = activity.is_none();
    let planned = node
        .addresses
        .iter()
        .map(|x| {
            let why = match (&activity, &x.owner) {
                (_, Err(_)) => "damaged value recording the node".to_string(),
                (Some(act), _) => format!("node idle {}", age(act.idle_seconds)),
                (None, _) => "node idle since unknown (no activity key)".to_string(),
            };
            plan(&reservation(x), why, now, None)
        })
        .collect();
    let stale_index_keys = node
        .index
        .iter()
        .filter(|k| !node.addresses.iter().any(|x| x.ip == k.ip))
        .map(|k| k.raw.name())
        .collect();
    let mut bases: Vec<IpAddr> = node
        .blocks
        .iter()
        .map(|b| b.ip)
        .chain(node.claims.iter().map(|c| c.base))
        .collect();
    bases.sort();
    bases.dedup();
    let blocks = bases
        .into_iter()
        .map(|base| {
            let claim = node.claims.iter().find(|c| c.base == base);
            BlockReport {
                base,
                size: claim.and_then(|c| c.record.as_ref().map(|r| r.size)),
                claimed: claim.is_some(),
                node_key: node.blocks.iter().any(|b| b.ip == base),
            }
        })
        .collect();
    ReclaimReport {
        activity_key: node.activity.is_some(),
        network: a.network.clone(),
        node: a.node.clone(),
        dry_run: a.dry_run,
        min_idle_seconds: a.min_idle.as_secs(),
        activity,
        idle_unknown,
        planned,
        stale_index_keys,
        blocks,
        removed: Vec::new(),
        removed_blocks: Vec::new(),
        removed_keys: Vec::new(),
        activity_removed: false,
        skipped: Vec::new(),
        failed: Vec::new(),
    }
}

/// One guarded deletion, its outcome recorded in `report`; whether it was done.
fn guarded(
    s: &mut host_local::store::etcd::EtcdSession<'_>,
    report: &mut ReclaimReport,
    what: String,
    guards: &[Guard],
    delete: &[Vec<u8>],
) -> bool {
    s.renew_deadline();
    match s.delete_guarded(&format!("reclaim {what}"), guards, delete) {
        Ok(true) => true,
        Ok(false) => {
            report.skipped.push(NotDone {
                what,
                reason: format!(
                    "changed since it was read (written again or removed), or node {} wrote \
                     since (it is active again); left alone",
                    report.node
                ),
            });
            false
        }
        Err(e) => {
            report.failed.push(NotDone {
                what,
                reason: e.to_string(),
            });
            false
        }
    }
}

/// Removes the node's keys: each reservation, stale index keys, then (all
/// of them gone) each block, then (all gone) the activity key.
fn apply(
    store: &mut EtcdStore,
    keys: &NetworkKeys,
    node: &NodeKeys<'_>,
    name: &str,
    report: &mut ReclaimReport,
) -> Result<()> {
    let quiet = quiet(store, node, name);
    let k = store.keys().clone();
    let mut s = store
        .etcd_session()
        .map_err(|e| anyhow!("network {}: {e}", report.network))?;
    let mut all = true;
    for x in &node.addresses {
        let mut raws: Vec<&RawKey> = vec![&x.raw];
        if let Ok(owner) = &x.owner {
            raws.extend(keys.attachment_index_of(owner, x.ip).map(|i| &i.raw));
        }
        raws.extend(keys.node_index_of(name, x.ip).map(|i| &i.raw));
        let mut guards: Vec<Guard> = raws.iter().map(|r| unchanged(r)).collect();
        guards.push(quiet.clone());
        let delete: Vec<Vec<u8>> = raws.iter().map(|r| r.key.clone()).collect();
        if guarded(&mut s, report, x.ip.to_string(), &guards, &delete) {
            report.removed.push(x.ip);
        } else {
            all = false;
        }
    }
    for i in node
        .index
        .iter()
        .filter(|i| !node.addresses.iter().any(|x| x.ip == i.ip))
    {
        let name = i.raw.name();
        let guards = [unchanged(&i.raw), quiet.clone()];
        if guarded(
            &mut s,
            report,
            name.clone(),
            &guards,
            std::slice::from_ref(&i.raw.key),
        ) {
            report.removed_keys.push(name);
        } else {
            all = false;
        }
    }
    let no_reservations = Guard::NoneUnder {
        prefix: k.node_ips(name).into_bytes(),
    };
    let bases: Vec<IpAddr> = report.blocks.iter().map(|b| b.base).collect();
    for base in bases {
        let what = format!("block {base}");
        if !all {
            report.skipped.push(NotDone {
                what,
                reason: "kept: not every reservation of the node was removed".into(),
            });
            continue;
        }
        let mut raws: Vec<&RawKey> = Vec::new();
        raws.extend(
            node.claims
                .iter()
                .filter(|c| c.base == base)
                .map(|c| &c.raw),
        );
        raws.extend(node.blocks.iter().filter(|b| b.ip == base).map(|b| &b.raw));
        let mut guards: Vec<Guard> = raws.iter().map(|r| unchanged(r)).collect();
        guards.extend([quiet.clone(), no_reservations.clone()]);
        let delete: Vec<Vec<u8>> = raws.iter().map(|r| r.key.clone()).collect();
        if guarded(&mut s, report, what, &guards, &delete) {
            report.removed_blocks.push(base);
        } else {
            all = false;
        }
    }
    if let Some(act) = node.activity {
        if all {
            let guards = [
                unchanged(&act.raw),
                no_reservations,
                Guard::NoneUnder {
                    prefix: k.node_blocks(name).into_bytes(),
                },
            ];
            report.activity_removed = guarded(
                &mut s,
                report,
                act.raw.name(),
                &guards,
                std::slice::from_ref(&act.raw.key),
            );
        } else {
            report.skipped.push(NotDone {
                what: act.raw.name(),
                reason: "kept: not every key of the node was removed (run reclaim again)".into(),
            });
        }
    }
    Ok(())
}

fn emit(ctx: &Ctx, a: &Args, report: &ReclaimReport, tail: &str) -> Result<()> {
    if a.json {
        out::json("reclaim", report)
    } else {
        out::print(&plan_text(ctx, report, tail))
    }
}

fn plan_text(ctx: &Ctx, r: &ReclaimReport, tail: &str) -> String {
    let style = ctx.style;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {} of network {}",
        style.paint("node", BOLD),
        r.node,
        r.network
    );
    match &r.activity {
        Some(act) => {
            let _ = writeln!(
                o,
                "last active {} ({} ago: {}); --min-idle {}",
                utc(i64::try_from(act.at).unwrap_or(i64::MAX)),
                age(act.idle_seconds),
                if act.op.is_empty() { "?" } else { &act.op },
                crate::duration::show(Duration::from_secs(r.min_idle_seconds))
            );
        }
        None => {
            let _ = writeln!(
                o,
                "{}",
                style.paint(
                    "idle since unknown: no readable activity key (a node of an older version, or \
                     one that never wrote); make sure it is gone (--yes is required)",
                    YELLOW
                )
            );
        }
    }
    let (n, b) = (r.planned.len(), r.blocks.len());
    let _ = writeln!(
        o,
        "{} {n} reservation{}, {b} block{}{}{}{tail}",
        if r.dry_run {
            "would remove"
        } else {
            "to remove:"
        },
        plural(n),
        plural(b),
        if r.stale_index_keys.is_empty() {
            String::new()
        } else {
            format!(", {} stale index key(s)", r.stale_index_keys.len())
        },
        if r.activity_key {
            ", its activity key"
        } else {
            ""
        }
    );
    if !r.planned.is_empty() {
        let mut t = Table::new(&["ADDRESS", "CONTAINER", "IFNAME", "WHY"]);
        for p in &r.planned {
            let (c, i) = ctx.owner_cells(&p.reservation);
            t.row(vec![
                p.reservation.address.to_string().into(),
                c,
                i,
                p.why.clone().into(),
            ]);
        }
        o.push_str(&t.render(style));
    }
    if !r.blocks.is_empty() {
        let mut t = Table::new(&["BLOCK", "SIZE", "CLAIM", "NODE KEY"]);
        for bl in &r.blocks {
            let yes = |b: bool| if b { "yes" } else { "no" };
            t.row(vec![
                bl.base.to_string().into(),
                bl.size.map_or_else(|| "-".into(), |s| s.to_string()).into(),
                yes(bl.claimed).into(),
                yes(bl.node_key).into(),
            ]);
        }
        o.push_str(&t.render(style));
    }
    for k in &r.stale_index_keys {
        let _ = writeln!(o, "stale index key {k}: names no reservation of the node");
    }
    o
}

fn outcome_text(ctx: &Ctx, r: &ReclaimReport) -> String {
    let mut o = String::new();
    for ip in &r.removed {
        let _ = writeln!(o, "removed {ip}");
    }
    for b in &r.removed_blocks {
        let _ = writeln!(o, "removed block {b}");
    }
    for k in &r.removed_keys {
        let _ = writeln!(o, "removed {k}");
    }
    if r.activity_removed {
        let _ = writeln!(o, "removed the activity key of node {}", r.node);
    }
    for s in &r.skipped {
        let _ = writeln!(
            o,
            "{} {}: {}",
            ctx.style.paint("skipped", YELLOW),
            s.what,
            s.reason
        );
    }
    for f in &r.failed {
        let _ = writeln!(
            o,
            "{} {}: {}",
            ctx.style.paint("FAILED", RED),
            f.what,
            f.reason
        );
    }
    let _ = writeln!(
        o,
        "{} of {} reservation{} and {} of {} block{} removed from network {} for node {}",
        r.removed.len(),
        r.planned.len(),
        plural(r.planned.len()),
        r.removed_blocks.len(),
        r.blocks.len(),
        plural(r.blocks.len()),
        r.network,
        r.node
    );
    o
}
