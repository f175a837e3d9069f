//! The JSON documents of SCHEMA.md (schema 2): the types every command's
//! report is built from. Keys are stable; new keys may be added within a
//! schema version, never removed or retyped.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::inspect::{NetworkView, Problem, ProblemKind, Reservation, SetUsage, StoreKind, Stray};

pub const SCHEMA: u32 = 2;

/// Above this, a count is not exact in a JSON number read as a double.
const EXACT: u128 = 1 << 53;

/// An address count. JSON: an integer up to 2^53, a decimal string above
/// (only IPv6 ranges wider than /75 reach that). Text: the number, or a
/// power of two above 2^53.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Count(pub u128);

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 <= EXACT {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 <= EXACT {
            return write!(f, "{}", self.0);
        }
        if self.0.is_power_of_two() {
            return write!(f, "2^{}", self.0.trailing_zeros());
        }
        let l = (self.0 as f64).log2();
        if (l - l.round()).abs() < 0.005 {
            write!(f, "~2^{}", l.round())
        } else {
            write!(f, "~2^{l:.2}")
        }
    }
}

/// The pod an attachment belongs to, from libcni's result cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationReport {
    pub address: IpAddr,
    pub family: u8,
    pub format: &'static str,
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub pod: Option<Pod>,
    /// The node that made it (etcd store only; null on disk).
    pub node: Option<String>,
    pub mtime: Option<i64>,
    pub age_seconds: Option<i64>,
    pub range_set: Option<usize>,
    pub problems: Vec<Problem>,
}

impl ReservationReport {
    pub fn new(r: &Reservation, now: i64, pod: Option<Pod>) -> ReservationReport {
        ReservationReport {
            address: r.ip,
            family: family(r.ip),
            format: r.format(),
            container_id: r.container_id().map(str::to_string),
            ifname: r.ifname().map(str::to_string),
            pod,
            node: r.node.clone(),
            mtime: r.mtime,
            age_seconds: r.mtime.map(|m| (now - m).max(0)),
            range_set: r.set_index,
            problems: r.problems.clone(),
        }
    }
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeReport {
    pub subnet: String,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub gateway: IpAddr,
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeSetReport {
    pub index: usize,
    pub family: u8,
    pub ranges: Vec<RangeReport>,
    pub capacity: Count,
    pub reserved: Count,
    pub free: Count,
    pub usage: f64,
    /// No free address: every ADD on the network fails.
    pub exhausted: bool,
    pub last_reserved: Option<IpAddr>,
    /// The ranges as text (`10.1.0.1-10.1.0.254`).
    #[serde(skip)]
    pub text: String,
}

impl RangeSetReport {
    pub fn new(u: &SetUsage) -> RangeSetReport {
        RangeSetReport {
            index: u.index,
            family: if u.set.is_ipv4() { 4 } else { 6 },
            ranges: u
                .set
                .0
                .iter()
                .map(|r| RangeReport {
                    subnet: r.subnet.to_string(),
                    range_start: r.start,
                    range_end: r.end,
                    gateway: r.gateway,
                    exclude: r.exclude_text.clone(),
                })
                .collect(),
            capacity: Count(u.capacity),
            reserved: Count(u.reserved),
            free: Count(u.free()),
            usage: u.usage(),
            exhausted: u.exhausted(),
            last_reserved: u.last_reserved,
            text: u.set.to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRef {
    pub source: PathBuf,
    pub data_dir: PathBuf,
    pub runtime_ranges: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkReport {
    pub name: String,
    /// Where the reservations are kept: "disk" or "etcd".
    pub store: &'static str,
    /// The etcd endpoints (null for the disk store).
    pub endpoints: Option<Vec<String>>,
    /// The network's directory (etcd: its key prefix).
    pub path: PathBuf,
    /// The data directory the network was read from (etcd: the configuration's, unused).
    pub data_dir: PathBuf,
    pub exists: bool,
    pub error: Option<String>,
    /// The only configuration naming this network could not be used (every ADD fails).
    pub config_error: Option<String>,
    pub reservations: usize,
    pub formats: BTreeMap<&'static str, u64>,
    pub with_problems: u64,
    pub problems: BTreeMap<ProblemKind, u64>,
    /// A range set has no free address.
    pub exhausted: bool,
    /// The oldest reservation file's age in seconds (null: none, or unknown).
    pub oldest_age_seconds: Option<i64>,
    pub config: Option<ConfigRef>,
    pub range_sets: Vec<RangeSetReport>,
    /// Files of the network directory that are no reservation, lock or cursor (not counted).
    pub strays: Vec<Stray>,
    /// Things the operator should know, e.g. a --data-dir the configuration disagrees with.
    pub notes: Vec<String>,
}

impl NetworkReport {
    pub fn new(v: &NetworkView, now: i64) -> NetworkReport {
        let range_sets: Vec<RangeSetReport> = v.sets.iter().map(RangeSetReport::new).collect();
        NetworkReport {
            name: v.name.clone(),
            store: v.store.as_str(),
            endpoints: match &v.store {
                StoreKind::Disk => None,
                StoreKind::Etcd { endpoints } => Some(endpoints.clone()),
            },
            path: v.path.clone(),
            data_dir: v.data_dir.clone(),
            exists: v.exists,
            error: v.error.clone(),
            config_error: v.config_error.clone(),
            reservations: v.reservations.len(),
            formats: v.format_counts(),
            with_problems: v.problem_total(),
            problems: v.problem_counts(),
            exhausted: range_sets.iter().any(|s| s.exhausted),
            oldest_age_seconds: v
                .reservations
                .iter()
                .filter_map(|r| r.mtime)
                .min()
                .map(|m| (now - m).max(0)),
            config: v.config.as_ref().map(|c| ConfigRef {
                source: c.source.clone(),
                data_dir: c.data_dir.clone(),
                runtime_ranges: c.runtime_ranges,
            }),
            range_sets,
            strays: v.strays.clone(),
            notes: v.notes.clone(),
        }
    }

    /// The note tables show for a network kept in etcd.
    pub fn etcd_note(&self) -> Option<String> {
        self.endpoints
            .as_ref()
            .map(|e| format!("in etcd {}", e.join(",")))
    }

    pub fn damaged(&self) -> u64 {
        self.problems
            .get(&ProblemKind::Damaged)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_above_2_53_are_strings_and_powers_of_two() {
        let j = |c: u128| serde_json::to_string(&Count(c)).unwrap();
        assert_eq!(j(249), "249");
        assert_eq!(j(1 << 53), "9007199254740992");
        assert_eq!(j((1 << 53) + 1), "\"9007199254740993\"");
        assert_eq!(Count(1 << 64).to_string(), "2^64");
        assert_eq!(Count((1 << 64) - 2).to_string(), "~2^64");
        assert_eq!(Count(3 << 62).to_string(), "~2^63.58");
        assert_eq!(Count(254).to_string(), "254");
    }
}
