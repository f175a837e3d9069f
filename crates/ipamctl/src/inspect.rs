//! Reading one network's store under the plugin's lock and explaining it
//! against the configuration.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use host_local::config::RangeSet;
use host_local::store::disk::DiskStore;
use host_local::store::{Owner, Session};
use serde::Serialize;

use crate::configs::NetConfig;

/// Kinds of problems a reservation can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Empty, unparseable or not a regular file: names no attachment.
    Damaged,
    /// Not inside any configured range.
    OutsideRanges,
    /// Inside a range but excluded from allocation.
    Excluded,
    /// The gateway of a range.
    Gateway,
    /// One attachment holds more than one address of a range set.
    Duplicate,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 5] = [
        ProblemKind::Damaged,
        ProblemKind::OutsideRanges,
        ProblemKind::Excluded,
        ProblemKind::Gateway,
        ProblemKind::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Damaged => "damaged",
            ProblemKind::OutsideRanges => "outside-ranges",
            ProblemKind::Excluded => "excluded",
            ProblemKind::Gateway => "gateway",
            ProblemKind::Duplicate => "duplicate",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
}

/// One reservation file, explained.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub ip: IpAddr,
    pub owner: Owner,
    /// Modification time, seconds since the epoch.
    pub mtime: Option<i64>,
    /// The range set this address is handed out from (None: not allocatable).
    pub set_index: Option<usize>,
    pub problems: Vec<Problem>,
}

impl Reservation {
    pub fn format(&self) -> &'static str {
        match self.owner {
            Owner::Attachment { .. } => "attachment",
            Owner::Legacy { .. } => "legacy",
            Owner::Damaged { .. } => "damaged",
        }
    }

    pub fn container_id(&self) -> Option<&str> {
        self.owner.container_id()
    }

    pub fn ifname(&self) -> Option<&str> {
        match &self.owner {
            Owner::Attachment { ifname, .. } => Some(ifname),
            _ => None,
        }
    }
}

/// Usage of one range set.
#[derive(Clone, Debug)]
pub struct SetUsage {
    pub index: usize,
    pub set: RangeSet,
    pub capacity: u128,
    pub reserved: u128,
    pub last_reserved: Option<IpAddr>,
}

impl SetUsage {
    pub fn free(&self) -> u128 {
        self.capacity.saturating_sub(self.reserved)
    }

    /// No address left to hand out: every ADD on the network fails.
    pub fn exhausted(&self) -> bool {
        self.free() == 0
    }

    pub fn usage(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.reserved as f64 / self.capacity as f64
        }
    }
}

/// One network's store, read under its lock.
#[derive(Clone, Debug)]
pub struct NetworkView {
    pub name: String,
    /// The data directory it was read from.
    pub data_dir: PathBuf,
    pub path: PathBuf,
    pub exists: bool,
    pub reservations: Vec<Reservation>,
    pub config: Option<NetConfig>,
    pub sets: Vec<SetUsage>,
    pub error: Option<String>,
    /// Remarks for the operator (a disagreeing --data-dir, ...).
    pub notes: Vec<String>,
}

impl NetworkView {
    pub fn problem_counts(&self) -> BTreeMap<ProblemKind, u64> {
        let mut m: BTreeMap<ProblemKind, u64> = ProblemKind::ALL.iter().map(|k| (*k, 0)).collect();
        for r in &self.reservations {
            let mut kinds: Vec<ProblemKind> = r.problems.iter().map(|p| p.kind).collect();
            kinds.dedup();
            for k in kinds {
                *m.entry(k).or_default() += 1;
            }
        }
        m
    }

    pub fn problem_total(&self) -> u64 {
        self.reservations
            .iter()
            .filter(|r| !r.problems.is_empty())
            .count() as u64
    }

    pub fn format_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut m: BTreeMap<&'static str, u64> = ["attachment", "legacy", "damaged"]
            .iter()
            .map(|k| (*k, 0))
            .collect();
        for r in &self.reservations {
            *m.entry(r.format()).or_default() += 1;
        }
        m
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mtime_of(path: &Path) -> Option<i64> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let t = m.modified().ok()?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

/// Reads `<data_dir>/<name>` under the plugin's lock (waiting at most
/// `lock_timeout`), creating nothing. A missing directory is not an error
/// when `allow_missing` (a configured network that never had an address).
pub fn read_network(
    data_dir: &Path,
    name: &str,
    config: Option<&NetConfig>,
    allow_missing: bool,
    lock_timeout: Duration,
) -> Result<NetworkView> {
    let store = DiskStore::new(data_dir, name).with_lock_timeout(lock_timeout);
    let path = store.network_dir();
    let mut view = NetworkView {
        name: name.to_string(),
        data_dir: data_dir.to_path_buf(),
        path: path.clone(),
        exists: true,
        reservations: Vec::new(),
        config: config.cloned(),
        sets: Vec::new(),
        error: None,
        notes: Vec::new(),
    };
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if allow_missing {
                view.exists = false;
                classify(&mut view, &[]);
                return Ok(view);
            }
            return Err(anyhow!(
                "network directory {}: does not exist (no store for network {name})",
                path.display()
            ));
        }
        Err(e) => return Err(anyhow!("network directory {}: {e}", path.display())),
        Ok(_) => {}
    }
    let lock = path.join(host_local::store::disk::LOCK_FILE);
    if std::fs::symlink_metadata(&lock).is_err() && std::fs::symlink_metadata(&path)?.is_dir() {
        return Err(anyhow!(
            "{}: no lock file; not a host-local store (ipamctl creates nothing to read it)",
            lock.display()
        ));
    }
    let mut cursors = Vec::new();
    {
        let mut s = store.read_session().map_err(|e| anyhow!("{e}"))?;
        let entries = s.list().map_err(|e| anyhow!("{e}"))?;
        for e in entries {
            let mtime = mtime_of(&path.join(e.ip.to_string()));
            view.reservations.push(Reservation {
                ip: e.ip,
                owner: e.owner,
                mtime,
                set_index: None,
                problems: Vec::new(),
            });
        }
        if let Some(c) = config {
            for i in 0..c.ipam.ranges.len() {
                cursors.push(s.cursor(i).ok().flatten());
            }
        }
    }
    classify(&mut view, &cursors);
    Ok(view)
}

/// Finds each reservation's range set and problems, and each set's usage.
fn classify(view: &mut NetworkView, cursors: &[Option<IpAddr>]) {
    for r in &mut view.reservations {
        if let Owner::Damaged { reason } = &r.owner {
            r.problems.push(Problem {
                kind: ProblemKind::Damaged,
                detail: if reason.is_empty() {
                    "names no attachment".into()
                } else {
                    format!("{reason}: names no attachment")
                },
            });
        }
    }
    let Some(cfg) = view.config.clone() else {
        return;
    };
    let sets = &cfg.ipam.ranges;
    for r in &mut view.reservations {
        let gateway = sets
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.0.iter().map(move |rg| (i, rg)))
            .find(|(_, rg)| rg.gateway == r.ip);
        if let Some((i, rg)) = gateway {
            r.problems.push(Problem {
                kind: ProblemKind::Gateway,
                detail: format!("gateway of range {rg} in range set {i}; never handed out"),
            });
        }
        let holder = sets
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.range_for(r.ip).map(|rg| (i, rg)));
        match holder {
            Some((i, rg)) => {
                if let Some((a, b)) = rg.excluded_interval(r.ip) {
                    let (a, b) = (
                        host_local::addr::from_u128(r.ip, a),
                        host_local::addr::from_u128(r.ip, b),
                    );
                    let what = if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    };
                    r.problems.push(Problem {
                        kind: ProblemKind::Excluded,
                        detail: format!("excluded ({what}) from range {rg} in range set {i}"),
                    });
                } else if gateway.is_none() {
                    r.set_index = Some(i);
                }
            }
            None if gateway.is_none() => {
                let note = if cfg.runtime_ranges {
                    " (the plugin also takes ipRanges from the runtime; may be legitimate)"
                } else {
                    ""
                };
                r.problems.push(Problem {
                    kind: ProblemKind::OutsideRanges,
                    detail: format!("outside every configured range{note}"),
                });
            }
            None => {}
        }
    }
    // One attachment, several addresses of one set.
    let mut holders: HashMap<(usize, String, Option<String>), usize> = HashMap::new();
    for r in &view.reservations {
        if let (Some(i), Some(id)) = (r.set_index, r.container_id()) {
            *holders
                .entry((i, id.to_string(), r.ifname().map(str::to_string)))
                .or_default() += 1;
        }
    }
    for r in &mut view.reservations {
        if let (Some(i), Some(id)) = (r.set_index, r.container_id()) {
            let key = (i, id.to_string(), r.ifname().map(str::to_string));
            let n = holders.get(&key).copied().unwrap_or(0);
            if n > 1 {
                r.problems.push(Problem {
                    kind: ProblemKind::Duplicate,
                    detail: format!("attachment holds {n} addresses in range set {i}"),
                });
            }
        }
    }
    view.sets = sets
        .iter()
        .enumerate()
        .map(|(i, s)| SetUsage {
            index: i,
            set: s.clone(),
            capacity: s.capacity(),
            reserved: view
                .reservations
                .iter()
                .filter(|r| r.set_index == Some(i))
                .count() as u128,
            last_reserved: cursors.get(i).copied().flatten(),
        })
        .collect();
}

/// The networks under `data_dir`: directories whose name is a valid
/// network name, dot-directories (our index) skipped. Also returns the
/// names skipped as invalid.
pub fn network_names(data_dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let rd = std::fs::read_dir(data_dir)
        .map_err(|e| anyhow!("data directory {}: {e}", data_dir.display()))?;
    let mut names = Vec::new();
    let mut skipped = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| anyhow!("data directory {}: {e}", data_dir.display()))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let ft = ent
            .file_type()
            .map_err(|e| anyhow!("{}: {e}", ent.path().display()))?;
        if !(ft.is_dir() || ft.is_symlink()) {
            continue;
        }
        if cni_proto::NetworkName::new(&name).is_err() {
            skipped.push(name);
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok((names, skipped))
}
