//! Reading one network's store through the store trait (under the plugin's
//! lock on disk, from one snapshot in etcd), creating nothing, and
//! explaining it against the configuration.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use host_local::config::{RangeSet, StoreConfig};
use host_local::error::{Missing, StoreError};
use host_local::store::{Entry, Owner, Store};
use serde::Serialize;

use crate::configs::NetConfig;
pub use crate::explain::{explain_unreserved, AddressState, Explanation, Stray};

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

/// Where a network's reservations are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// A directory of reservation files (the reference layout).
    Disk,
    /// The cluster-wide etcd store of the configuration's `ipam.store`.
    Etcd { endpoints: Vec<String> },
}

impl StoreKind {
    pub fn of(cfg: &StoreConfig) -> Self {
        match cfg {
            StoreConfig::Disk { .. } => StoreKind::Disk,
            StoreConfig::Etcd(c) => StoreKind::Etcd {
                endpoints: c.endpoints.clone(),
            },
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            StoreKind::Disk => "disk",
            StoreKind::Etcd { .. } => "etcd",
        }
    }
}

/// One reservation file (or etcd key), explained.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub ip: IpAddr,
    pub owner: Owner,
    /// Why the recorded content names no attachment (damaged ones).
    pub damage: Option<String>,
    /// Modification time, seconds since the epoch (etcd: unknown, None).
    pub mtime: Option<i64>,
    /// The node that made it (etcd only; None on disk or when the value names none).
    pub node: Option<String>,
    /// When `mtime` is unknown (etcd), the latest it can have been made
    /// (seconds since the epoch) and what says so: an activity key written
    /// after it (see `crate::etcd::made_by`).
    pub made_by: Option<(i64, String)>,
    /// The range set this address is handed out from (None: not allocatable).
    pub set_index: Option<usize>,
    pub problems: Vec<Problem>,
}

impl Reservation {
    pub fn format(&self) -> &'static str {
        match self.owner {
            Owner::Attachment { .. } => "attachment",
            Owner::Legacy { .. } => "legacy",
            Owner::Damaged => "damaged",
        }
    }

    pub fn container_id(&self) -> Option<&str> {
        self.owner.container_id()
    }

    pub fn ifname(&self) -> Option<&str> {
        self.owner.ifname()
    }

    /// The entry the store reported (what a release compares against).
    pub fn entry(&self) -> Entry {
        Entry {
            damage: self.damage.clone(),
            ..Entry::new(self.ip, self.owner.clone()).on_node(self.node.clone())
        }
    }
}

/// Seconds since the epoch (negative before it).
fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl From<Entry> for Reservation {
    fn from(e: Entry) -> Self {
        Reservation {
            ip: e.ip,
            owner: e.owner,
            damage: e.damage,
            mtime: e.reserved_at.map(epoch_secs),
            node: e.node,
            made_by: None,
            set_index: None,
            problems: Vec::new(),
        }
    }
}

/// The stray files of the network directory `dir` (read under its lock).
fn strays(dir: &Path) -> Result<Vec<Stray>, host_local::error::StoreError> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| host_local::error::StoreError::io("list", dir, e))?;
    let mut found = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| host_local::error::StoreError::io("list", dir, e))?;
        let is_dir = ent.file_type().is_ok_and(|t| t.is_dir());
        found.push((ent.file_name().to_string_lossy().into_owned(), is_dir));
    }
    let names: std::collections::HashSet<String> = found.iter().map(|(n, _)| n.clone()).collect();
    let mut out: Vec<Stray> = found
        .into_iter()
        .filter_map(|(name, is_dir)| {
            crate::explain::stray_reason(&name, is_dir, &names).map(|reason| Stray { name, reason })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
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
    pub store: StoreKind,
    /// The data directory it was read from (etcd: the configuration's, not read).
    pub data_dir: PathBuf,
    /// The network's directory (etcd: its key prefix).
    pub path: PathBuf,
    pub exists: bool,
    pub reservations: Vec<Reservation>,
    pub config: Option<NetConfig>,
    pub sets: Vec<SetUsage>,
    pub error: Option<String>,
    /// The network's only configuration is unusable: every ADD on it fails.
    pub config_error: Option<String>,
    /// Files of the network directory that are no reservation, lock or cursor.
    pub strays: Vec<Stray>,
    /// Remarks for the operator (a disagreeing --data-dir, ...).
    pub notes: Vec<String>,
}

impl NetworkView {
    /// A network with nothing read yet: no reservations, no usage, no error.
    pub fn new(
        name: &str,
        store: StoreKind,
        data_dir: &Path,
        path: PathBuf,
        config: Option<&NetConfig>,
    ) -> NetworkView {
        NetworkView {
            name: name.to_string(),
            store,
            data_dir: data_dir.to_path_buf(),
            path,
            exists: true,
            reservations: Vec::new(),
            config: config.cloned(),
            sets: Vec::new(),
            error: None,
            config_error: None,
            strays: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A network that could not be read, and why.
    pub fn failed(mut self, error: String) -> NetworkView {
        self.error = Some(error);
        self
    }

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

/// Opens network `name`'s store as `store` describes it for an operator's
/// reads and changes: no wait longer than `wait`.
pub fn open_store(store: &StoreConfig, name: &str, wait: Duration) -> Result<Box<dyn Store>> {
    host_local::store::open_for_operator(store, name, wait).map_err(|e| anyhow!("{e}"))
}

/// Reads network `name` from `store` (through the store trait, creating
/// nothing; waiting at most `wait`), reported as kept in `data_dir`. A
/// network with no store yet is not an error when `allow_missing` (a
/// configured network that never had an address).
pub fn read_network(
    store: &StoreConfig,
    data_dir: &Path,
    name: &str,
    config: Option<&NetConfig>,
    allow_missing: bool,
    wait: Duration,
) -> Result<NetworkView> {
    let mut st = open_store(store, name, wait)?;
    let mut view = NetworkView::new(
        name,
        StoreKind::of(store),
        data_dir,
        PathBuf::from(st.location()),
        config,
    );
    let sets = config.map_or(0, |c| c.ipam.ranges.len());
    let disk_dir = matches!(store, StoreConfig::Disk { .. }).then(|| data_dir.join(name));
    type Read = (Vec<Entry>, Vec<Option<IpAddr>>, Vec<Stray>);
    let mut read = || -> Result<Read, StoreError> {
        let mut s = st.read_session()?;
        let entries = s.list()?;
        // A cursor that cannot be read only leaves "last reserved" unknown.
        let cursors = (0..sets).map(|i| s.cursor(i).ok().flatten()).collect();
        // Files that are no reservation, listed under the same lock.
        let strays = match &disk_dir {
            Some(dir) => strays(dir)?,
            None => Vec::new(),
        };
        Ok((entries, cursors, strays))
    };
    match read() {
        Ok((entries, cursors, strays)) => {
            view.reservations = entries.into_iter().map(Reservation::from).collect();
            view.strays = strays;
            classify(&mut view, &cursors);
            Ok(view)
        }
        Err(StoreError::NoStore {
            missing: Missing::Network,
            ..
        }) if allow_missing => {
            view.exists = false;
            classify(&mut view, &[]);
            Ok(view)
        }
        Err(e) => Err(match store {
            StoreConfig::Etcd(c) => anyhow!(
                "reading network {name} from etcd {}: {e}",
                c.endpoints.join(",")
            ),
            StoreConfig::Disk { .. } => anyhow!("{e}"),
        }),
    }
}

/// Finds each reservation's range set and problems, and each set's usage.
fn classify(view: &mut NetworkView, cursors: &[Option<IpAddr>]) {
    for r in &mut view.reservations {
        if r.owner == Owner::Damaged {
            r.problems.push(Problem {
                kind: ProblemKind::Damaged,
                detail: match r.damage.as_deref() {
                    None | Some("") => "names no attachment".into(),
                    Some(reason) => format!("{reason}: names no attachment"),
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
