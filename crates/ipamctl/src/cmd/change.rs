//! What `release` and `gc` share: the plan, the confirmation, and the
//! removal through the plugin's own store session.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use host_local::config::StoreConfig;
use host_local::store::Entry;
use serde::Serialize;

use super::scope::NodeScope;
use super::{age_cell, plural, pod_cell, results_cache, Ctx, FAILED, FOUND, OK};
use crate::attach::ResultsCache;
use crate::cli::ChangeArgs;
use crate::inspect::{NetworkView, Reservation, StoreKind};
use crate::out;
use crate::render::{Table, YELLOW};
use crate::report::ReservationReport;

/// A reservation planned for removal.
#[derive(Serialize)]
pub struct Planned {
    #[serde(flatten)]
    pub reservation: ReservationReport,
    pub why: String,
    /// The reservation as read: removed only while it still holds.
    #[serde(skip)]
    entry: Entry,
}

/// An address not removed, and why.
#[derive(Serialize)]
pub struct Skipped {
    pub address: IpAddr,
    pub reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeReport {
    pub data_dir: PathBuf,
    pub network: String,
    /// The node acted for (a network kept in etcd); null on disk.
    pub node: Option<String>,
    pub dry_run: bool,
    pub planned: Vec<Planned>,
    pub removed: Vec<IpAddr>,
    pub skipped: Vec<Skipped>,
    /// Reservations left alone on purpose (gc: younger than --min-age).
    pub kept: Vec<Skipped>,
    /// How many of `skipped` were skipped while planning (changed since a
    /// report listed them), before any removal.
    #[serde(skip)]
    skipped_in_plan: usize,
}

/// What a change will do: the removals, and what it leaves alone on purpose
/// (`kept`) or because it changed since it was listed (`skipped`).
#[derive(Default)]
pub struct Plan {
    pub planned: Vec<Planned>,
    pub kept: Vec<Skipped>,
    pub skipped: Vec<Skipped>,
}

/// A planned removal; `pods`: libcni's result cache, to name the pod.
pub fn plan(
    r: &Reservation,
    why: impl Into<String>,
    now: i64,
    pods: Option<&ResultsCache>,
) -> Planned {
    Planned {
        reservation: ReservationReport::new(r, now, pods.and_then(|c| c.pod(&r.owner))),
        why: why.into(),
        entry: r.entry(),
    }
}

/// The result cache, to name pods in a plan: `--results-dir` (must be
/// readable), else the default one, best effort: a plan without pod names is
/// still right, so a default cache that cannot be read is only warned about.
pub fn pod_names(given: Option<&Path>, network: &str) -> Result<Option<ResultsCache>> {
    if given.is_some() {
        return results_cache(given, network);
    }
    match results_cache(None, network) {
        Ok(c) => Ok(c),
        Err(e) => {
            out::warn(format_args!("warning: pod names not shown: {e:#}"));
            Ok(None)
        }
    }
}

/// Asks on the terminal; without one, only --yes allows changes (also `cluster reclaim`).
pub fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to change anything without --yes (stdin is not a terminal); use --dry-run to see what would change");
    }
    // A prompt that cannot be shown (stderr closed) still reads the answer;
    // without a "y" nothing changes.
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ").and_then(|()| err.flush());
    drop(err);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn plan_table(ctx: &Ctx, title: &str, planned: &[Planned]) -> String {
    let mut o = format!("{title}\n");
    let with_pods = planned.iter().any(|p| p.reservation.pod.is_some());
    let with_nodes = planned.iter().any(|p| p.reservation.node.is_some());
    let mut headers = vec!["ADDRESS", "CONTAINER", "IFNAME"];
    if with_pods {
        headers.push("POD");
    }
    if with_nodes {
        headers.push("NODE");
    }
    // etcd records no times: no column of question marks.
    let with_ages = !with_nodes || planned.iter().any(|p| p.reservation.age_seconds.is_some());
    if with_ages {
        headers.push("AGE>");
    }
    headers.push("WHY");
    let mut t = Table::new(&headers);
    for p in planned {
        let (c, i) = ctx.owner_cells(&p.reservation);
        let mut row = vec![p.reservation.address.to_string().into(), c, i];
        if with_pods {
            row.push(pod_cell(&p.reservation));
        }
        if with_nodes {
            row.push(
                p.reservation
                    .node
                    .clone()
                    .unwrap_or_else(|| "-".into())
                    .into(),
            );
        }
        if with_ages {
            row.push(age_cell(&p.reservation));
        }
        row.push(p.why.clone().into());
        t.row(row);
    }
    o.push_str(&t.render(ctx.style));
    o
}

/// Shows the plan and, unless a dry run or declined, removes each planned
/// reservation if its file still names the owner listed.
/// `nothing`: the text and exit code when nothing is planned.
pub fn apply(
    ctx: &Ctx,
    command: &str,
    view: &NetworkView,
    scope: Option<&NodeScope>,
    plan: Plan,
    change: &ChangeArgs,
    nothing: (&str, u8),
) -> Result<u8> {
    if let (Some(s), false) = (scope, change.json) {
        out::print(&format!("{}\n", s.describe()))?;
    }
    let skipped_before = !plan.skipped.is_empty();
    let skipped_in_plan = plan.skipped.len();
    let mut report = ChangeReport {
        skipped_in_plan,
        data_dir: view.data_dir.clone(),
        network: view.name.clone(),
        node: scope.map(|s| s.node.clone()),
        dry_run: change.dry_run,
        planned: plan.planned,
        removed: Vec::new(),
        skipped: plan.skipped,
        kept: plan.kept,
    };
    if report.planned.is_empty() {
        emit(command, change, &report, || {
            format!("{}{}\n", kept_text(ctx, &report), nothing.0)
        })?;
        return Ok(if skipped_before { FOUND } else { nothing.1 });
    }
    if change.dry_run {
        emit(command, change, &report, || {
            plan_text(ctx, &report, "would remove", " (dry run: nothing changed)")
        })?;
        return Ok(if skipped_before { FOUND } else { OK });
    }
    if !change.json {
        out::print(&plan_text(ctx, &report, "", " to remove:"))?;
    }
    let n = report.planned.len();
    let question = format!(
        "remove {n} reservation{} of network {}?",
        plural(n),
        view.name
    );
    if !confirm(&question, change.yes)? {
        out::warn("declined; nothing changed");
        return Ok(FOUND);
    }
    let errors = remove(ctx, view, &mut report)?;
    emit(command, change, &report, || outcome_text(ctx, &report))?;
    Ok(if errors {
        FAILED
    } else if report.skipped.is_empty() {
        OK
    } else {
        FOUND
    })
}

/// Prints the report as JSON, or `text()` for humans.
fn emit(
    command: &str,
    change: &ChangeArgs,
    report: &ChangeReport,
    text: impl FnOnce() -> String,
) -> Result<()> {
    if change.json {
        out::json(command, report)
    } else {
        out::print(&text())
    }
}

/// What is kept, and what was skipped before any removal (changed since
/// it was listed).
fn kept_text(ctx: &Ctx, r: &ChangeReport) -> String {
    let mut o = String::new();
    for k in &r.kept {
        let _ = writeln!(o, "kept {}: {}", k.address, k.reason);
    }
    for s in &r.skipped[..r.skipped_in_plan] {
        let _ = writeln!(
            o,
            "{} {}: {}",
            ctx.style.paint("skipped", YELLOW),
            s.address,
            s.reason
        );
    }
    o
}

/// The plan's table under a title `<verb> N reservations of network NET<tail>`,
/// then what is kept.
fn plan_text(ctx: &Ctx, r: &ChangeReport, verb: &str, tail: &str) -> String {
    let n = r.planned.len();
    let verb = if verb.is_empty() {
        String::new()
    } else {
        format!("{verb} ")
    };
    let title = format!(
        "{verb}{n} reservation{} of network {}{tail}",
        plural(n),
        r.network
    );
    format!(
        "{}{}",
        plan_table(ctx, &title, &r.planned),
        kept_text(ctx, r)
    )
}

/// What became of one removal.
pub enum Removal {
    Removed,
    /// The file no longer names the owner listed (gone, or another owner).
    Changed,
    Failed(String),
}

/// Releases each entry in one session of the plugin's own store code (on
/// disk under the network's lock; in etcd each a transaction guarded by the
/// revision read), only while it still names the entry's owner.
pub fn release_unchanged(
    ctx: &Ctx,
    view: &NetworkView,
    entries: Vec<Entry>,
) -> Result<Vec<(IpAddr, Removal)>> {
    let cfg = match &view.store {
        StoreKind::Disk => StoreConfig::Disk {
            data_dir: view.data_dir.clone(),
        },
        // The network's own store (its configuration is how it is known to be in etcd).
        StoreKind::Etcd { .. } => view
            .config
            .as_ref()
            .map(|c| c.ipam.store.clone())
            .ok_or_else(|| {
                anyhow!(
                    "network {}: kept in etcd, but no configuration names its store",
                    view.name
                )
            })?,
    };
    let mut store = crate::inspect::open_store(&cfg, &view.name, ctx.lock_timeout)?;
    let mut s = store.session().map_err(|e| anyhow!("{e}"))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let outcome = match s.release(&e) {
                Ok(true) => Removal::Removed,
                Ok(false) => Removal::Changed,
                Err(err) => Removal::Failed(err.to_string()),
            };
            (e.ip, outcome)
        })
        .collect())
}

/// Removes each planned reservation through the plugin's own session (its
/// lock, its index kept right), only if its file still names the owner
/// listed; the others are skipped. Returns whether an error occurred.
fn remove(ctx: &Ctx, view: &NetworkView, report: &mut ChangeReport) -> Result<bool> {
    let entries: Vec<Entry> = report.planned.iter().map(|p| p.entry.clone()).collect();
    let mut errors = false;
    for (ip, outcome) in release_unchanged(ctx, view, entries)? {
        match outcome {
            Removal::Removed => report.removed.push(ip),
            Removal::Changed => report.skipped.push(Skipped {
                address: ip,
                reason: "changed since it was listed (gone, another owner, or written again); left alone"
                    .into(),
            }),
            Removal::Failed(e) => {
                errors = true;
                report.skipped.push(Skipped {
                    address: ip,
                    reason: format!("error: {e}"),
                });
            }
        }
    }
    Ok(errors)
}

fn outcome_text(ctx: &Ctx, r: &ChangeReport) -> String {
    let mut o = String::new();
    for ip in &r.removed {
        let _ = writeln!(o, "removed {ip}");
    }
    for s in &r.skipped[r.skipped_in_plan..] {
        let _ = writeln!(
            o,
            "{} {}: {}",
            ctx.style.paint("skipped", YELLOW),
            s.address,
            s.reason
        );
    }
    let n = r.planned.len();
    let _ = writeln!(
        o,
        "{} of {n} reservation{} removed from network {}",
        r.removed.len(),
        plural(n),
        r.network
    );
    o
}
