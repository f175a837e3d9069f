//! One module per command. Each computes a report (a `Serialize` struct of
//! crate::report types), then prints it as JSON or renders it as text; this
//! module holds what they share: where a network's store is, reading it,
//! and the table cells for reservations.

pub mod change;
pub mod check;
pub mod completions;
pub mod from_report;
pub mod gc;
pub mod leaks;
pub mod list;
pub mod lookup;
pub mod metrics;
pub mod reconcile;
pub mod release;
pub mod scope;
pub mod show;
pub mod valid;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::attach::ResultsCache;
use crate::cli::{Cli, Cmd};
use crate::configs::{self, Configs, NetConfig};
use crate::inspect::{self, NetworkView, StoreKind};
use crate::out;
use crate::render::{age, colored, Cell, Style, DIM};
use crate::report::ReservationReport;
use anyhow::{anyhow, bail, Result};
use host_local::config::StoreConfig;

pub const DEFAULT_DATA_DIR: &str = host_local::config::DEFAULT_DATA_DIR;
pub const DEFAULT_RESULTS_DIR: &str = "/var/lib/cni/results";

/// Exit codes (documented in `--help` and SCHEMA.md).
pub const OK: u8 = 0;
/// Findings: problems, exhaustion, leaks, not reserved, skipped removals.
pub const FOUND: u8 = 1;
/// Errors: usage, I/O, lock timeout, a refused change.
pub const FAILED: u8 = 2;

/// What every command needs from the global options.
pub struct Ctx {
    /// `--data-dir`, when given.
    pub data_dir: Option<PathBuf>,
    /// `--results-dir`, when given.
    pub results_dir: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub style: Style,
    /// Shorten container IDs (stdout is a terminal and no --no-trunc).
    pub trunc: bool,
}

pub fn run(cli: Cli) -> Result<u8> {
    let ctx = Ctx {
        data_dir: cli.data_dir.clone(),
        results_dir: cli.results_dir.clone(),
        lock_timeout: cli.lock_timeout,
        style: Style::detect(),
        trunc: !cli.no_trunc && std::io::stdout().is_terminal(),
    };
    match &cli.cmd {
        Cmd::List(a) => list::run(&ctx, a),
        Cmd::Show(a) => show::run(&ctx, a),
        Cmd::Leaks(a) => leaks::run(&ctx, a),
        Cmd::Release(a) => release::run(&ctx, a),
        Cmd::Gc(a) => gc::run(&ctx, a),
        Cmd::Check(a) => check::run(&ctx, a),
        Cmd::Metrics(a) => metrics::run(&ctx, a),
        Cmd::Reconcile(a) => reconcile::run(&ctx, a),
        Cmd::Cluster(a) => crate::cluster::run(&ctx, a),
        Cmd::Completions(a) => completions::run(&ctx, a),
        Cmd::Man => crate::man::run(&ctx),
        Cmd::Schema => crate::man::schema(&ctx),
    }
}

pub fn load_configs(path: Option<&Path>) -> Result<Configs> {
    let Some(p) = path else {
        return Ok(Configs::default());
    };
    let c = configs::load(p)?;
    for w in &c.warnings {
        out::warn(format_args!("warning: config {w}"));
    }
    for e in &c.errors {
        out::warn(format_args!(
            "error: config {}: {}{}",
            e.file.display(),
            e.error,
            e.network
                .as_deref()
                .map(|n| format!(" (every ADD on network {n} fails)"))
                .unwrap_or_default()
        ));
    }
    Ok(c)
}

pub fn check_network_name(network: &str) -> Result<()> {
    cni_proto::NetworkName::new(network)
        .map(|_| ())
        .map_err(|e| anyhow!("network {network:?}: {e}"))
}

/// `; did you mean NAME?` for the known name closest to `name` (a case
/// difference, or at most two edits for names of four characters or more,
/// one below), else `; networks: a, b` when there are at most eight.
pub fn suggest(name: &str, known: &[String]) -> String {
    let limit = if name.chars().count() >= 4 { 2 } else { 1 };
    let best = known
        .iter()
        .filter(|k| k.as_str() != name)
        .map(|k| {
            let d = if k.eq_ignore_ascii_case(name) {
                0
            } else {
                edit_distance(name, k)
            };
            (d, k)
        })
        .filter(|(d, _)| *d <= limit)
        .min();
    match best {
        Some((_, k)) => format!("; did you mean {k}?"),
        None if !known.is_empty() && known.len() <= 8 => {
            format!("; networks: {}", known.join(", "))
        }
        None => String::new(),
    }
}

/// Levenshtein distance (insertions, deletions, substitutions; a swap of
/// neighbours counts one).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// How a network's unusable configuration is reported.
pub fn config_error_text(e: &configs::ConfigError) -> String {
    format!("configuration {}: {}", e.file.display(), e.error)
}

/// The network directories of `data_dir`, warning about names that are no
/// valid network name.
fn scan_data_dir(data_dir: &Path) -> Result<Vec<String>> {
    let (names, skipped) = inspect::network_names(data_dir)?;
    for s in skipped {
        out::warn(format_args!(
            "warning: {}: not a valid network name; skipped",
            data_dir.join(s).display()
        ));
    }
    Ok(names)
}

impl Ctx {
    /// The directory for networks without a configured dataDir: `--data-dir`,
    /// else the plugin's default. Never another configuration's dataDir: the
    /// plugin itself falls back to the default.
    pub fn base_data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// Where `network`'s store is: its configuration's explicit dataDir
    /// (the plugin's), else the base directory; and a note when --data-dir
    /// disagrees with the configuration.
    pub fn data_dir_for(&self, cfg: Option<&NetConfig>) -> (PathBuf, Option<String>) {
        match (cfg.filter(|c| c.data_dir_explicit), &self.data_dir) {
            (Some(c), Some(given)) if &c.data_dir != given => (
                c.data_dir.clone(),
                Some(format!(
                    "--data-dir {} disagrees with the dataDir {} of {}; read from the configuration's",
                    given.display(),
                    c.data_dir.display(),
                    c.source.display()
                )),
            ),
            (Some(c), _) => (c.data_dir.clone(), None),
            (None, _) => (self.base_data_dir(), None),
        }
    }

    /// Reads one network, from the right data directory, or from etcd when
    /// its configuration keeps it there. Its directory must exist unless the
    /// network is configured (then it has no store yet: nothing reserved).
    pub fn read_one(&self, network: &str, cfgs: &Configs) -> Result<NetworkView> {
        check_network_name(network)?;
        if let Some(c) = cfgs.etcd(network) {
            return inspect::read_network(
                &c.ipam.store,
                &c.data_dir,
                network,
                Some(c),
                false,
                self.lock_timeout,
            );
        }
        let cfg = cfgs.get(network);
        let (dir, note) = self.data_dir_for(cfg);
        if let Some(n) = &note {
            out::warn(format_args!("warning: network {network}: {n}"));
        }
        let broken = cfgs.broken(network);
        if cfg.is_none()
            && broken.is_none()
            && std::fs::symlink_metadata(dir.join(network))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            bail!(
                "network directory {}: does not exist (no store for network {network}){}",
                dir.join(network).display(),
                self.suggestion(network, cfgs)
            );
        }
        let disk = StoreConfig::Disk {
            data_dir: dir.clone(),
        };
        let mut v = inspect::read_network(
            &disk,
            &dir,
            network,
            cfg,
            cfg.is_some() || broken.is_some(),
            self.lock_timeout,
        )?;
        v.notes.extend(note);
        v.config_error = broken.map(config_error_text);
        Ok(v)
    }

    /// Networks a mistyped `network` may have meant: `; did you mean NAME?`, or
    /// the networks there are (when few), or nothing.
    pub fn suggestion(&self, network: &str, cfgs: &Configs) -> String {
        let mut known: Vec<String> = cfgs.networks.keys().cloned().collect();
        known.extend(cfgs.broken_networks().map(str::to_string));
        if let Ok((names, _)) = inspect::network_names(&self.base_data_dir()) {
            known.extend(names);
        }
        known.sort();
        known.dedup();
        suggest(network, &known)
    }

    /// Every network: the configured ones, each from its own dataDir, and
    /// the directories that no configuration names in the base data
    /// directory and in every configured dataDir. Unreadable ones carry
    /// their error.
    pub fn read_all(&self, cfgs: &Configs) -> Result<Vec<NetworkView>> {
        let base = self.base_data_dir();
        // Without --data-dir, a missing default directory just holds no
        // networks when configurations say where theirs are.
        let scan = self.data_dir.is_some() || cfgs.networks.is_empty() || base.is_dir();
        let mut found = Vec::new();
        if scan {
            found = scan_data_dir(&base)?;
        }
        let mut views = Vec::new();
        for n in &found {
            if cfgs.get(n).is_none() {
                let disk = StoreConfig::Disk {
                    data_dir: base.clone(),
                };
                views.push(self.read_or_error(&disk, &base, n, None, None));
            }
        }
        // Networks only an unusable configuration names: reported, with
        // their store in the base directory when there is one.
        for n in cfgs.broken_networks() {
            if !found.iter().any(|f| f == n) {
                let mut v = NetworkView::new(n, StoreKind::Disk, &base, base.join(n), None);
                v.exists = false;
                views.push(v);
            }
        }
        for v in &mut views {
            v.config_error = cfgs.broken(&v.name).map(config_error_text);
        }
        // Unconfigured networks beside configured ones in their own dataDirs.
        let mut dirs: Vec<PathBuf> = cfgs
            .networks
            .values()
            .filter(|c| c.etcd_store().is_none())
            .map(|c| self.data_dir_for(Some(c)).0)
            .filter(|d| *d != base && d.is_dir())
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            for n in scan_data_dir(d)? {
                if cfgs.get(&n).is_none() {
                    let disk = StoreConfig::Disk {
                        data_dir: d.clone(),
                    };
                    views.push(self.read_or_error(&disk, d, &n, None, None));
                }
            }
        }
        for (n, c) in &cfgs.networks {
            if c.etcd_store().is_some() {
                // An unreachable etcd is the network's error, never an empty network.
                let mut v = self.read_or_error(&c.ipam.store, &c.data_dir, n, Some(c), None);
                if found.contains(n) {
                    let text = format!(
                        "{} exists, but the configuration {} keeps this network in etcd; \
                         the directory is not read",
                        base.join(n).display(),
                        c.source.display()
                    );
                    out::warn(format_args!("warning: network {n}: {text}"));
                    v.notes.push(text);
                }
                views.push(v);
                continue;
            }
            let (dir, mut note) = self.data_dir_for(Some(c));
            if note.is_none() && dir != base && found.contains(n) {
                note = Some(format!(
                    "{} exists, but the configuration {} names dataDir {}; read from there",
                    base.join(n).display(),
                    c.source.display(),
                    dir.display()
                ));
            }
            if let Some(text) = &note {
                out::warn(format_args!("warning: network {n}: {text}"));
            }
            let disk = StoreConfig::Disk {
                data_dir: dir.clone(),
            };
            views.push(self.read_or_error(&disk, &dir, n, Some(c), note));
        }
        views.sort_by(|a, b| (&a.name, &a.data_dir).cmp(&(&b.name, &b.data_dir)));
        Ok(views)
    }

    /// Reads one network; one that cannot be read carries its error.
    fn read_or_error(
        &self,
        store: &StoreConfig,
        dir: &Path,
        name: &str,
        cfg: Option<&NetConfig>,
        note: Option<String>,
    ) -> NetworkView {
        let read = inspect::read_network(store, dir, name, cfg, cfg.is_some(), self.lock_timeout);
        let mut v = read.unwrap_or_else(|e| {
            let path = match store {
                StoreConfig::Disk { .. } => dir.join(name),
                StoreConfig::Etcd(_) => PathBuf::new(),
            };
            NetworkView::new(name, StoreKind::of(store), dir, path, cfg).failed(format!("{e:#}"))
        });
        v.notes.extend(note);
        v
    }

    /// A container ID as shown in tables.
    pub fn id_text(&self, id: &str) -> String {
        if self.trunc && id.len() > 12 {
            id[..12].to_string()
        } else {
            id.to_string()
        }
    }

    /// CONTAINER and IFNAME cells.
    pub fn owner_cells(&self, r: &ReservationReport) -> (Cell, Cell) {
        match (&r.container_id, &r.ifname) {
            (Some(id), Some(f)) => (self.id_text(id).into(), f.clone().into()),
            (Some(id), None) => (self.id_text(id).into(), colored("(legacy)", DIM)),
            _ => (colored("-", DIM), colored("-", DIM)),
        }
    }
}

/// Refuses `command` (`reconcile`) on a network its configuration keeps in
/// etcd: it keeps a state per store directory, which such a network does
/// not have.
pub fn refuse_etcd(command: &str, network: &str, cfgs: &Configs) -> Result<()> {
    let Some(c) = cfgs.etcd(network) else {
        return Ok(());
    };
    let config = cfgs.path.as_deref().unwrap_or(&c.source);
    Err(anyhow!(
        "network {network} ({}): kept in etcd, not in a store directory; `ipamctl {command}` \
         works on disk networks only. On this node use `ipamctl gc {network} --config {} --valid \
         FILE` (or --cri URL), which acts for this node's ipam.store.node; reclaim a gone node's \
         addresses with `ipamctl cluster reclaim {network} --config {} --node NODE`",
        c.source.display(),
        config.display(),
        config.display()
    ))
}

/// The results cache for `network`: `--results-dir` (must exist), else the
/// default one when it exists.
pub fn results_cache(given: Option<&Path>, network: &str) -> Result<Option<ResultsCache>> {
    match given {
        Some(d) => Ok(Some(ResultsCache::load(d, network)?)),
        None if Path::new(DEFAULT_RESULTS_DIR).is_dir() => Ok(Some(ResultsCache::load(
            Path::new(DEFAULT_RESULTS_DIR),
            network,
        )?)),
        None => Ok(None),
    }
}

pub fn age_cell(r: &ReservationReport) -> Cell {
    r.age_seconds.map_or_else(|| "?".into(), |a| age(a).into())
}

pub fn pod_cell(r: &ReservationReport) -> Cell {
    r.pod
        .as_ref()
        .map_or_else(|| colored("-", DIM), |p| p.to_string().into())
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
