//! `ipamctl reconcile [NETWORK] --valid FILE --grace DURATION --state FILE
//! (--dry-run | --yes)`: for a timer. Records in the state file when each
//! leak was first seen, releases the leaks first seen at least `--grace`
//! ago, keeps the others; the same list guards and gc rules (`--min-age`,
//! made after the list) as `gc`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use host_local::store::{Entry, Owner};
use serde::{Deserialize, Serialize};

use super::change::{release_unchanged, Removal};
use super::leaks::ValidSource;
use super::valid::{guard_list, KeepRule};
use super::{age_cell, load_configs, plural, Ctx, FAILED, OK};
use crate::attach::ValidSet;
use crate::cli::{ConfigArg, ValidArg};
use crate::duration;
use crate::inspect::{now_secs, NetworkView, StoreKind};
use crate::out;
use crate::render::{age, colored, Table, BOLD, DIM, GREEN, RED, YELLOW};
use crate::report::ReservationReport;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network; without it every disk network (configured ones with --config, and the
    /// directories of the data directories).
    pub network: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub valid: ValidArg,
    /// Release a leak once it has been seen leaked for this long (counted from the first run
    /// that saw it), e.g. 30m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_duration)]
    pub grace: Duration,
    /// Where to record when each leak was first seen (JSON, replaced atomically); created when
    /// missing. One state file per list source.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Never release a reservation younger than this (as gc).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration::parse_duration)]
    pub min_age: Duration,
    /// Take a list that keeps none of a network's reservations (see gc's guards).
    #[arg(long)]
    pub force: bool,
    /// Show what would be released; change nothing, not even the state file.
    #[arg(long, conflicts_with = "yes", required_unless_present = "yes")]
    pub dry_run: bool,
    /// Release what is due and record the rest (reconcile never asks).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

/// The state file: per network directory, the leaks seen and since when.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct State {
    schema: u32,
    command: String,
    /// Keyed by the network's directory (`<dataDir>/<network>`).
    networks: BTreeMap<String, Vec<Seen>>,
}

const STATE_SCHEMA: u32 = 1;
const STATE_COMMAND: &str = "reconcile-state";

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Seen {
    address: IpAddr,
    format: String,
    container_id: Option<String>,
    ifname: Option<String>,
    /// Seconds since the epoch.
    first_seen: i64,
}

impl Seen {
    fn is(&self, ip: IpAddr, owner: &Owner) -> bool {
        let (format, id, ifname) = owner_key(owner);
        self.address == ip
            && self.format == format
            && self.container_id == id
            && self.ifname == ifname
    }
}

fn owner_key(owner: &Owner) -> (String, Option<String>, Option<String>) {
    match owner {
        Owner::Attachment { id, ifname } => {
            ("attachment".into(), Some(id.clone()), Some(ifname.clone()))
        }
        Owner::Legacy { id } => ("legacy".into(), Some(id.clone()), None),
        Owner::Damaged => ("damaged".into(), None, None),
    }
}

/// What reconcile did with a leak.
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Seen leaked longer than the grace period: released.
    Released,
    /// Due, but a dry run.
    WouldRelease,
    /// Within the grace period: recorded, kept.
    Pending,
    /// Kept by gc's rules (younger than --min-age, made after the list): not recorded.
    Kept,
    /// Changed since it was read (gone, another owner): left alone.
    Skipped,
    /// The removal failed.
    Failed,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeakAction {
    #[serde(flatten)]
    pub reservation: ReservationReport,
    /// When a run first saw it leaked (null: kept by gc's rules, not recorded).
    pub first_seen: Option<i64>,
    pub action: Action,
    pub detail: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkReconcile {
    pub network: String,
    pub data_dir: PathBuf,
    pub reservations: usize,
    pub leaks: Vec<LeakAction>,
}

#[derive(Serialize)]
pub struct NetworkError {
    pub network: String,
    pub error: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub grace_seconds: u64,
    pub min_age_seconds: u64,
    pub state: PathBuf,
    pub valid: ValidSource,
    pub networks: Vec<NetworkReconcile>,
    pub errors: Vec<NetworkError>,
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    if let Some(n) = &a.network {
        super::check_network_name(n)?;
    }
    let cfgs = load_configs(a.config.config.as_deref())?;
    let Some(valid) = a.valid.load()? else {
        bail!("reconcile needs the live attachments: give --cri URL or --valid FILE");
    };
    let (views, mut errors) = networks(ctx, a, &cfgs, &valid)?;
    let _lock = lock_state(&a.state)?;
    let mut state = read_state(&a.state)?;
    let now = now_secs();
    let rule = KeepRule {
        min_age: a.min_age,
        list: Some((valid.made, valid.label())),
    };
    let mut report = ReconcileReport {
        dry_run: a.dry_run,
        grace_seconds: a.grace.as_secs(),
        min_age_seconds: a.min_age.as_secs(),
        state: a.state.clone(),
        valid: ValidSource::new(&valid),
        networks: Vec::new(),
        errors: Vec::new(),
    };
    for view in &views {
        let key = view.path.display().to_string();
        if let Err(e) = guard_list(&valid, view, a.force, "released after the grace period") {
            // Its recorded leaks stay as they were.
            errors.push(NetworkError {
                network: view.name.clone(),
                error: format!("{e:#}"),
            });
            continue;
        }
        let seen = state.networks.remove(&key).unwrap_or_default();
        match reconcile_one(ctx, a, view, &valid, &rule, &seen, now) {
            Ok((r, still)) => {
                if !still.is_empty() {
                    state.networks.insert(key, still);
                }
                report.networks.push(r);
            }
            Err(e) => {
                state.networks.insert(key, seen);
                errors.push(NetworkError {
                    network: view.name.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    if !a.dry_run {
        write_state(&a.state, &state)?;
    }
    report.errors = errors;
    for e in &report.errors {
        out::warn(format_args!("{}: {}", e.network, e.error));
    }
    if a.json {
        out::json("reconcile", &report)?;
    } else {
        out::print(&render(ctx, &report))?;
    }
    Ok(if report.errors.is_empty() { OK } else { FAILED })
}

/// The networks to reconcile: NETWORK, or the one a GC configuration
/// names, or every disk network. Networks kept in etcd and unreadable ones
/// are errors of their own (the others are still reconciled).
fn networks(
    ctx: &Ctx,
    a: &Args,
    cfgs: &crate::configs::Configs,
    valid: &ValidSet,
) -> Result<(Vec<NetworkView>, Vec<NetworkError>)> {
    if let Some(n) = a.network.as_deref().or(valid.network.as_deref()) {
        super::refuse_etcd("reconcile", n, cfgs)?;
        return Ok((vec![ctx.read_one(n, cfgs)?], Vec::new()));
    }
    let mut views = Vec::new();
    let mut errors = Vec::new();
    for v in ctx.read_all(cfgs)? {
        if v.store != StoreKind::Disk {
            errors.push(NetworkError {
                network: v.name.clone(),
                error:
                    "kept in etcd: not reconciled (use the runtime's CNI GC with the node's name)"
                        .into(),
            });
        } else if let Some(e) = &v.error {
            errors.push(NetworkError {
                network: v.name.clone(),
                error: e.clone(),
            });
        } else {
            views.push(v);
        }
    }
    Ok((views, errors))
}

/// One network: each leak recorded, released when due, or kept; returns
/// the report and the leaks to keep recording.
fn reconcile_one(
    ctx: &Ctx,
    a: &Args,
    view: &NetworkView,
    valid: &ValidSet,
    rule: &KeepRule,
    seen: &[Seen],
    now: i64,
) -> Result<(NetworkReconcile, Vec<Seen>)> {
    let grace = a.grace.as_secs() as i64;
    let mut leaks = Vec::new();
    let mut still = Vec::new();
    let mut due = Vec::new();
    for r in view.reservations.iter().filter(|r| !valid.keeps(&r.owner)) {
        let reservation = ReservationReport::new(r, now, None);
        if let Some(reason) = rule.reason(r, now) {
            leaks.push(LeakAction {
                reservation,
                first_seen: None,
                action: Action::Kept,
                detail: reason,
            });
            continue;
        }
        let first = seen
            .iter()
            .find(|s| s.is(r.ip, &r.owner))
            .map_or(now, |s| s.first_seen.min(now));
        let (format, container_id, ifname) = owner_key(&r.owner);
        let record = Seen {
            address: r.ip,
            format,
            container_id,
            ifname,
            first_seen: first,
        };
        let leaked_for = now - first;
        if leaked_for >= grace {
            due.push((leaks.len(), r.owner.clone(), record));
            leaks.push(LeakAction {
                reservation,
                first_seen: Some(first),
                action: Action::WouldRelease,
                detail: format!(
                    "seen leaked for {}, the grace period is {}",
                    age(leaked_for),
                    duration::show(a.grace)
                ),
            });
        } else {
            leaks.push(LeakAction {
                reservation,
                first_seen: Some(first),
                action: Action::Pending,
                detail: format!(
                    "within the grace period {}: released in {} or later",
                    duration::show(a.grace),
                    age(grace - leaked_for)
                ),
            });
            still.push(record);
        }
    }
    if a.dry_run {
        // Nothing changes; the state file is not written either.
        still.extend(due.into_iter().map(|(_, _, s)| s));
    } else if !due.is_empty() {
        let entries: Vec<Entry> = due
            .iter()
            .map(|(_, owner, s)| Entry::new(s.address, owner.clone()))
            .collect();
        let outcomes = release_unchanged(ctx, view, entries)?;
        for ((i, _, record), (_, outcome)) in due.into_iter().zip(outcomes) {
            let l = &mut leaks[i];
            match outcome {
                Removal::Removed => l.action = Action::Released,
                Removal::Changed => {
                    l.action = Action::Skipped;
                    l.detail =
                        "changed since it was read (gone or another owner); left alone".into();
                }
                Removal::Failed(e) => {
                    l.action = Action::Failed;
                    l.detail = format!("error: {e}");
                    still.push(record);
                }
            }
        }
    }
    Ok((
        NetworkReconcile {
            network: view.name.clone(),
            data_dir: view.data_dir.clone(),
            reservations: view.reservations.len(),
            leaks,
        },
        still,
    ))
}

/// An exclusive lock on `<state>.lock`, so two runs never interleave their
/// reads and writes of the state file.
fn lock_state(state: &Path) -> Result<std::fs::File> {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("state lock {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "state lock {}: another ipamctl reconcile with this state file is running",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow!("state lock {}: {e}", path.display())),
    }
}

fn read_state(path: &Path) -> Result<State> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(State {
                schema: STATE_SCHEMA,
                command: STATE_COMMAND.into(),
                ..State::default()
            })
        }
        Err(e) => return Err(anyhow!("state file {}: {e}", path.display())),
    };
    let s: State = serde_json::from_str(&text).with_context(|| {
        format!(
            "state file {}: not a reconcile state file (move it away to start counting anew)",
            path.display()
        )
    })?;
    if s.schema != STATE_SCHEMA || s.command != STATE_COMMAND {
        bail!(
            "state file {}: command {:?}, schema {}; expected a {STATE_COMMAND} file of schema {STATE_SCHEMA}",
            path.display(),
            s.command,
            s.schema
        );
    }
    Ok(s)
}

/// Replaces the state file atomically (a temporary beside it, renamed).
fn write_state(path: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(state).context("serialising the state")? + "\n";
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .ok_or_else(|| anyhow!("state file {}: not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{base}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("state file {}: {e}", path.display())
    })
}

fn render(ctx: &Ctx, r: &ReconcileReport) -> String {
    let style = ctx.style;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "source: {}; grace period {}; state {}",
        r.valid.describe(),
        duration::show(Duration::from_secs(r.grace_seconds)),
        r.state.display()
    );
    let now = now_secs();
    for n in &r.networks {
        let count = |act: Action| n.leaks.iter().filter(|l| l.action == act).count();
        let released = count(Action::Released) + count(Action::WouldRelease);
        let _ = writeln!(
            o,
            "\n{} {}: {} of {} reservation{} leaked; {} {}, {} within the grace period, {} kept by gc's rules",
            style.paint("network", BOLD),
            n.network,
            n.leaks.len(),
            n.reservations,
            plural(n.reservations),
            released,
            if r.dry_run { "would be released" } else { "released" },
            count(Action::Pending),
            count(Action::Kept),
        );
        if n.leaks.is_empty() {
            continue;
        }
        let mut t = Table::new(&[
            "ADDRESS",
            "CONTAINER",
            "IFNAME",
            "AGE>",
            "FIRST SEEN",
            "ACTION",
        ]);
        for l in &n.leaks {
            let (c, i) = ctx.owner_cells(&l.reservation);
            let first = l.first_seen.map_or_else(
                || colored("-", DIM),
                |f| format!("{} ago", age(now - f)).into(),
            );
            let (text, color) = match l.action {
                Action::Released => ("released".to_string(), GREEN),
                Action::WouldRelease => (format!("would release: {}", l.detail), YELLOW),
                Action::Pending => (format!("pending: {}", l.detail), ""),
                Action::Kept => (format!("kept: {}", l.detail), DIM),
                Action::Skipped => (format!("skipped: {}", l.detail), YELLOW),
                Action::Failed => (format!("failed: {}", l.detail), RED),
            };
            t.row(vec![
                l.reservation.address.to_string().into(),
                c,
                i,
                age_cell(&l.reservation),
                first,
                colored(text, color),
            ]);
        }
        o.push_str(&t.render(style));
    }
    for e in &r.errors {
        let _ = writeln!(
            o,
            "{}",
            style.paint(&format!("{}: {}", e.network, e.error), RED)
        );
    }
    let _ = writeln!(
        o,
        "\n{}",
        if r.dry_run {
            "dry run: nothing changed, the state file was not written".to_string()
        } else {
            format!("state saved to {}", r.state.display())
        }
    );
    o
}
