//! `ipamctl leaks NETWORK`: reservations whose attachment the runtime no
//! longer knows (a valid list: authoritative; the result cache: a heuristic).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use host_local::store::Owner;
use serde::Serialize;

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
    pub sources: Sources,
    pub reservations: usize,
    pub leaks: Vec<Leak>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    min_age: std::time::Duration,
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
    super::refuse_etcd("leaks", network, &cfgs)?;
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
    let view = ctx.read_one(network, &cfgs)?;
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
            gc_keeps: rule.reason(r, now),
            damage: r.damage.clone(),
        });
    }
    let report = LeaksReport {
        data_dir: view.data_dir.clone(),
        network: network.to_string(),
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
    let mut headers = vec!["ADDRESS", "CONTAINER", "IFNAME"];
    if with_pods {
        headers.push("POD");
    }
    headers.extend(["AGE>", "WHY"]);
    if with_cached {
        headers.push("CACHED");
    }
    let mut t = Table::new(&headers);
    for l in &r.leaks {
        let x = &l.reservation;
        let (c, i) = ctx.owner_cells(x);
        let why = match l.reason {
            Reason::Damaged => colored(
                format!("damaged file ({})", l.damage.as_deref().unwrap_or("")),
                RED,
            ),
            Reason::NotValid => colored("not a valid attachment", RED),
            Reason::NoCachedResult => colored("no cached result (heuristic)", YELLOW),
        };
        let why = match &l.gc_keeps {
            Some(k) if k.starts_with("made after") => colored(
                format!("{}; gc keeps it: made after the list", why.text),
                YELLOW,
            ),
            Some(_) => colored(
                format!("{}; gc keeps it for now (--min-age)", why.text),
                YELLOW,
            ),
            None => why,
        };
        let mut row = vec![x.address.to_string().into(), c, i];
        if with_pods {
            row.push(pod_cell(x));
        }
        row.extend([age_cell(x), why]);
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
    let young = r.leaks.iter().filter(|l| l.gc_keeps.is_some()).count();
    let mut notes = Vec::new();
    if heur > 0 {
        notes.push(format!(
            "{heur} only suspected: heuristic, verify before releasing"
        ));
    }
    let after = r
        .leaks
        .iter()
        .filter(|l| {
            l.gc_keeps
                .as_deref()
                .is_some_and(|k| k.starts_with("made after"))
        })
        .count();
    if young > after {
        notes.push(format!(
            "{} younger than --min-age {}: gc keeps {} for now",
            young - after,
            crate::duration::show(r.min_age),
            if young - after == 1 { "it" } else { "them" }
        ));
    }
    if after > 0 {
        notes.push(format!(
            "{after} made after the list was: gc keeps {}; make the list again",
            if after == 1 { "it" } else { "them" }
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
