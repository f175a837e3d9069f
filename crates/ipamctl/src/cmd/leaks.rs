//! `ipamctl leaks NETWORK`: reservations whose attachment the runtime no
//! longer knows (a valid list: authoritative; the result cache: a heuristic).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use host_local::store::Owner;
use serde::Serialize;

use super::scope::NodeScope;
use super::valid::{guard_list, KeepRule};
use super::{age_cell, load_configs, plural, pod_cell, results_cache, Ctx, FOUND, OK};
use crate::attach;
use crate::cli::{ConfigArg, ValidArg};
use crate::inspect::now_secs;
use crate::out;
use crate::render::{colored, Table, BOLD, DIM, RED, YELLOW};
use crate::report::ReservationReport;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidSource {
    /// The file, "stdin", or the CRI endpoint.
    pub path: String,
    /// "file", "stdin" or "cri".
    pub kind: &'static str,
    /// With --cri: the runtime (`containerd 1.6.20`) and its sandboxes; else null.
    pub cri: Option<CriSource>,
    pub attachments: usize,
    /// When the list was made (its file's modification time; stdin: when
    /// read), whole seconds since the epoch.
    pub mtime: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CriSource {
    pub runtime: Option<String>,
    pub ready: usize,
    pub not_ready: usize,
}

impl ValidSource {
    /// For humans: `valid attachments from valid.txt (3 listed)`, or
    /// `pod sandboxes from CRI unix:///... (containerd 1.6.20: 2 ready, 1 not ready)`.
    pub fn describe(&self) -> String {
        self.describe_with(None)
    }

    /// [`describe`](Self::describe) with `extra` inside the parentheses.
    pub fn describe_with(&self, extra: Option<&str>) -> String {
        let extra = extra.map(|e| format!("; {e}")).unwrap_or_default();
        match &self.cri {
            Some(c) => format!(
                "pod sandboxes from CRI {} ({}{} ready, {} not ready{extra})",
                self.path,
                c.runtime
                    .as_deref()
                    .map(|r| format!("{r}: "))
                    .unwrap_or_default(),
                c.ready,
                c.not_ready
            ),
            None => format!(
                "valid attachments from {} ({} listed{extra})",
                self.path, self.attachments
            ),
        }
    }

    pub fn new(v: &attach::ValidSet) -> ValidSource {
        use attach::SourceKind;
        ValidSource {
            kind: match v.kind {
                SourceKind::File => "file",
                SourceKind::Stdin => "stdin",
                SourceKind::Cri { .. } => "cri",
            },
            cri: match &v.kind {
                SourceKind::Cri {
                    runtime,
                    ready,
                    not_ready,
                } => Some(CriSource {
                    runtime: runtime.clone(),
                    ready: *ready,
                    not_ready: *not_ready,
                }),
                _ => None,
            },
            path: v.source.clone(),
            attachments: v.count,
            mtime: v.made as i64,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheSource {
    pub path: PathBuf,
    pub entries: usize,
    pub heuristic: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sources {
    pub valid: Option<ValidSource>,
    pub results_cache: Option<CacheSource>,
    pub authoritative: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Damaged,
    NotValid,
    NoCachedResult,
}

/// Why gc keeps a leak, for the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    No,
    MinAge,
    AfterList,
    Nodeless,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leak {
    #[serde(flatten)]
    pub reservation: ReservationReport,
    pub reason: Reason,
    pub heuristic: bool,
    pub cached_result: Option<bool>,
    /// Why `gc` (same --min-age) keeps it for now; null: gc removes it.
    pub gc_keeps: Option<String>,
    #[serde(skip)]
    damage: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaksReport {
    pub data_dir: PathBuf,
    pub network: String,
    /// The node whose reservations were looked at (a network kept in
    /// etcd); null on disk.
    pub node: Option<String>,
    pub sources: Sources,
    pub reservations: usize,
    pub leaks: Vec<Leak>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    min_age: std::time::Duration,
    #[serde(skip)]
    scope: Option<super::scope::NodeScope>,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (a directory of the data directory).
    pub network: String,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub valid: ValidArg,
    /// Report every reservation although the list keeps none of them (see gc's guards).
    #[arg(long)]
    pub force: bool,
    /// A network kept in etcd: this node's reservations (default: the configuration's
    /// ipam.store.node).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Mark the leaks younger than this: `gc` with the same --min-age keeps them.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::parse_duration)]
    pub min_age: std::time::Duration,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let network = a.network.as_str();
    let results_dir = &ctx.results_dir;
    super::check_network_name(network)?;
    let cfgs = load_configs(a.config.config.as_deref())?;
    let valid = a.valid.load()?;
    let cache = results_cache(results_dir.as_deref(), network)?;
    // An empty cache for this network says the runtime does not keep one:
    // every reservation would look leaked.
    let cache = match cache {
        Some(c) if c.entries == 0 && results_dir.is_none() => None,
        Some(c) if c.entries == 0 && valid.is_none() => bail!(
            "results cache {}: no entries for network {network}; the runtime does not seem to keep \
             libcni's cache, so it cannot tell leaks (give --valid FILE)",
            c.dir.display()
        ),
        other => other,
    };
    if valid.is_none() && cache.is_none() {
        bail!(
            "no source of valid attachments: give --valid FILE, or --results-dir (libcni's cache; {} \
             does not exist or has no entry for network {network})",
            super::DEFAULT_RESULTS_DIR
        );
    }
    let (mut view, scope) = ctx.read_scoped(network, &cfgs, a.node.as_deref(), true)?;
    super::scope::restrict(&mut view, scope.as_ref(), true);
    let now = now_secs();
    if let Some(v) = &valid {
        guard_list(v, &view, a.force, "reported as leaked")?;
    }
    let rule = KeepRule {
        min_age: a.min_age,
        list: valid.as_ref().map(|v| (v.made, v.label())),
    };
    let mut leaks = Vec::new();
    for r in &view.reservations {
        let cached = cache.as_ref().map(|c| c.knows(network, &r.owner));
        let reason = if matches!(r.owner, Owner::Damaged) {
            Some(Reason::Damaged)
        } else if let Some(v) = &valid {
            (!v.keeps(&r.owner)).then_some(Reason::NotValid)
        } else {
            (cached == Some(false)).then_some(Reason::NoCachedResult)
        };
        let Some(reason) = reason else { continue };
        leaks.push(Leak {
            reservation: ReservationReport::new(
                r,
                now,
                cache.as_ref().and_then(|c| c.pod(&r.owner)),
            ),
            reason,
            heuristic: reason == Reason::NoCachedResult,
            cached_result: cached,
            gc_keeps: if scope.is_some() && NodeScope::nodeless(r) {
                Some(super::scope::nodeless_text(network, r))
            } else {
                rule.reason(r, now)
            },
            damage: r.damage.clone(),
        });
    }
    let report = LeaksReport {
        data_dir: view.data_dir.clone(),
        network: network.to_string(),
        node: scope.as_ref().map(|s| s.node.clone()),
        sources: Sources {
            valid: valid.as_ref().map(ValidSource::new),
            results_cache: cache.as_ref().map(|c| CacheSource {
                path: c.dir.clone(),
                entries: c.entries,
                heuristic: true,
            }),
            authoritative: valid.is_some(),
        },
        reservations: view.reservations.len(),
        leaks,
        path: view.path.clone(),
        min_age: a.min_age,
        scope,
    };
    if a.json {
        out::json("leaks", &report)?;
    } else {
        out::print(&render(ctx, &report))?;
    }
    Ok(if report.leaks.is_empty() { OK } else { FOUND })
}

fn render(ctx: &Ctx, r: &LeaksReport) -> String {
    let style = ctx.style;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {}  {}",
        style.paint("network", BOLD),
        r.network,
        style.paint(&format!("({})", r.path.display()), DIM)
    );
    if let Some(s) = &r.scope {
        let _ = writeln!(o, "{}", s.describe());
    }
    if let Some(v) = &r.sources.valid {
        let _ = writeln!(o, "source: {}", v.describe_with(Some("authoritative")));
    }
    if let Some(c) = &r.sources.results_cache {
        let role = if r.sources.valid.is_some() {
            "shown for reference"
        } else {
            "HEURISTIC: a missing cache entry only suggests a leak"
        };
        let _ = writeln!(
            o,
            "source: libcni result cache {} ({} entries for this network; {role})",
            c.path.display(),
            c.entries
        );
    }
    o.push('\n');
    if r.leaks.is_empty() {
        let _ = writeln!(
            o,
            "no leaks among {} reservation{}",
            r.reservations,
            plural(r.reservations)
        );
        return o;
    }
    let with_pods = r.leaks.iter().any(|l| l.reservation.pod.is_some());
    let with_cached = r.sources.results_cache.is_some() && r.sources.valid.is_some();
    // etcd records no ages: the node is what tells reservations apart.
    let etcd = r.scope.is_some();
    let mut headers = vec!["ADDRESS", "CONTAINER", "IFNAME"];
    if with_pods {
        headers.push("POD");
    }
    headers.extend([if etcd { "NODE" } else { "AGE>" }, "WHY"]);
    if with_cached {
        headers.push("CACHED");
    }
    let kind_of = |l: &Leak| match l.gc_keeps.as_deref() {
        None => Keep::No,
        Some(k) if k.starts_with("damaged, and names no node") => Keep::Nodeless,
        Some(k) if k.starts_with("made after") || k.starts_with("may have been made after") => {
            Keep::AfterList
        }
        Some(_) => Keep::MinAge,
    };
    let mut t = Table::new(&headers);
    for l in &r.leaks {
        let x = &l.reservation;
        let (c, i) = ctx.owner_cells(x);
        let why = match l.reason {
            Reason::Damaged => colored(
                format!(
                    "damaged {} ({})",
                    if etcd { "value" } else { "file" },
                    l.damage.as_deref().unwrap_or("")
                ),
                RED,
            ),
            Reason::NotValid => colored("not a valid attachment", RED),
            Reason::NoCachedResult => colored("no cached result (heuristic)", YELLOW),
        };
        let why = match kind_of(l) {
            Keep::AfterList => colored(
                format!("{}; gc keeps it: made after the list", why.text),
                YELLOW,
            ),
            Keep::MinAge => colored(
                format!("{}; gc keeps it for now (--min-age)", why.text),
                YELLOW,
            ),
            Keep::Nodeless => colored(
                format!("{}; names no node: only release --ip removes it", why.text),
                YELLOW,
            ),
            Keep::No => why,
        };
        let mut row = vec![x.address.to_string().into(), c, i];
        if with_pods {
            row.push(pod_cell(x));
        }
        let third = if etcd {
            x.node.clone().map_or_else(|| colored("-", DIM), Into::into)
        } else {
            age_cell(x)
        };
        row.extend([third, why]);
        if with_cached {
            row.push(match l.cached_result {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            });
        }
        t.row(row);
    }
    o.push_str(&t.render(style));
    let heur = r.leaks.iter().filter(|l| l.heuristic).count();
    let count = |k: Keep| r.leaks.iter().filter(|l| kind_of(l) == k).count();
    let (young, after, nodeless) = (
        count(Keep::MinAge),
        count(Keep::AfterList),
        count(Keep::Nodeless),
    );
    let mut notes = Vec::new();
    if heur > 0 {
        notes.push(format!(
            "{heur} only suspected: heuristic, verify before releasing"
        ));
    }
    if young > 0 {
        notes.push(format!(
            "{young} younger than --min-age {}: gc keeps {} for now",
            crate::duration::show(r.min_age),
            if young == 1 { "it" } else { "them" }
        ));
    }
    if after > 0 {
        notes.push(format!(
            "{after} made after the list was: gc keeps {}; make the list again",
            if after == 1 { "it" } else { "them" }
        ));
    }
    if nodeless > 0 {
        notes.push(format!(
            "{nodeless} damaged naming no node: gc keeps {}; release --ip removes {}",
            if nodeless == 1 { "it" } else { "them" },
            if nodeless == 1 { "it" } else { "them" }
        ));
    }
    let _ = writeln!(
        o,
        "{} of {} reservations leaked{}",
        r.leaks.len(),
        r.reservations,
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
    o
}
