//! The `ipam` section of a network configuration, validated, with defaults
//! applied, plus the requested addresses from CNI_ARGS, `args` and
//! `runtimeConfig`.
//!
//! Decoding follows Go's encoding/json ([`cni_proto::gojson`]) into the typed
//! structs of [`raw`]; [`validate`] then checks them, naming the field path.

pub mod raw;
pub mod store;
pub mod validate;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use cni_proto::gojson::{self, Doc};
use cni_proto::{CniArgs, Route, SpecVersion};
use ipnet::IpNet;
use serde_json::Value;

use crate::addr;
use crate::error::{Error, Result};
pub use store::{
    AuthConfig, EtcdConfig, StoreConfig, TlsFiles, DEFAULT_BLOCK, MAX_BLOCK, MIN_BLOCK,
};
pub use validate::parse_addr;

/// Where the reference keeps its stores.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// Largest number of range sets, ranges per set, routes or exclusions we
/// accept: bounded work for any input.
pub const MAX_ITEMS: usize = 1024;

/// Largest number of ranges over all range sets (overlap checks are quadratic).
pub const MAX_RANGES: usize = 4096;

/// One range of addresses inside a subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    /// First address handed out (inclusive).
    pub start: IpAddr,
    /// Last address handed out (inclusive).
    pub end: IpAddr,
    /// Reported in results and never handed out.
    pub gateway: IpAddr,
    /// Addresses never handed out (our extension), merged intervals.
    pub exclude: Vec<(u128, u128)>,
    /// The exclusions as written, for display.
    pub exclude_text: Vec<String>,
}

impl Range {
    /// True when `ip` lies in the subnet and between start and end.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if !addr::same_family(ip, self.start) || !self.subnet.contains(&ip) {
            return false;
        }
        let n = addr::to_u128(ip);
        addr::to_u128(self.start) <= n && n <= addr::to_u128(self.end)
    }

    /// The exclusion interval holding `ip`, if any.
    pub fn excluded_interval(&self, ip: IpAddr) -> Option<(u128, u128)> {
        let n = addr::to_u128(ip);
        self.exclude
            .iter()
            .copied()
            .find(|&(s, e)| s <= n && n <= e)
    }

    /// True when `ip` is never handed out from this range.
    pub fn is_excluded(&self, ip: IpAddr) -> bool {
        self.excluded_interval(ip).is_some()
    }

    /// Addresses this range can hand out: the span minus the gateway and
    /// exclusions inside it (saturating for huge IPv6 ranges).
    pub fn capacity(&self) -> u128 {
        let (s, e) = (addr::to_u128(self.start), addr::to_u128(self.end));
        let mut cap = addr::span(self.start, self.end);
        let mut gw_counted = false;
        for &(xs, xe) in &self.exclude {
            let (a, b) = (xs.max(s), xe.min(e));
            if a <= b {
                cap = cap.saturating_sub((b - a).saturating_add(1));
                let g = addr::to_u128(self.gateway);
                if a <= g && g <= b {
                    gw_counted = true;
                }
            }
        }
        if !gw_counted && self.contains(self.gateway) {
            cap = cap.saturating_sub(1);
        }
        cap
    }

    pub(crate) fn overlaps(&self, other: &Range) -> bool {
        addr::same_family(self.start, other.start)
            && addr::to_u128(self.start) <= addr::to_u128(other.end)
            && addr::to_u128(other.start) <= addr::to_u128(self.end)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ranges of one family tried in order; each set yields one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// The range holding `ip`.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn is_ipv4(&self) -> bool {
        self.0[0].start.is_ipv4()
    }

    pub fn capacity(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |a, r| a.saturating_add(r.capacity()))
    }

    pub(crate) fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The validated IPAM configuration of one invocation.
#[derive(Clone, Debug)]
pub struct IpamConfig {
    /// The network name: the store's directory name.
    pub network: String,
    pub version: SpecVersion,
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses in the order given: CNI_ARGS, args, runtimeConfig.
    pub requested: Vec<IpAddr>,
    /// Which store keeps the reservations (`ipam.store`, with `ipam.dataDir` for the disk).
    pub store: StoreConfig,
}

impl IpamConfig {
    /// What an operator may want to know about a configuration served as the reference serves
    /// it although it looks wrong: a gateway outside its subnet, and routes that a 0.1.0/0.2.0
    /// result drops because no range set gives an address of their family.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, set) in self.ranges.iter().enumerate() {
            for r in &set.0 {
                let g = r.gateway;
                if !addr::same_family(g, r.subnet.addr()) || !r.subnet.contains(&g) {
                    out.push(format!(
                        "host-local: note: range set {i}: gateway {g} is outside subnet {}; served as the reference serves it",
                        r.subnet
                    ));
                }
            }
        }
        if self.version <= SpecVersion::V0_2_0 {
            for route in &self.routes {
                let v4 = matches!(route.dst, IpNet::V4(_));
                if !self.ranges.iter().any(|s| s.is_ipv4() == v4) {
                    out.push(format!(
                        "host-local: note: route to {} dropped: a {} result carries no IPv{} address",
                        route.dst,
                        self.version.as_str(),
                        if v4 { 4 } else { 6 }
                    ));
                }
            }
        }
        out
    }
}

/// CNI_ARGS keys host-local understands (the reference's IPAMEnvArgs).
pub const KNOWN_ARGS: &[&str] = &["IgnoreUnknown", "IP"];

/// Decodes the parts of a network configuration host-local reads, with Go's rules. Below
/// 1.1.0 (`old_routes`) a route's 1.1.0-only fields are ignored, as the reference ignores them.
pub fn decode_net(doc: &Doc, old_routes: bool) -> Result<raw::RawNet> {
    let kind = if old_routes {
        &raw::NET_PRE_1_1
    } else {
        &raw::NET
    };
    gojson::decode(doc, kind, "").map_err(|e| {
        let field = if e.path.is_empty() {
            "(document)".to_owned()
        } else {
            e.path
        };
        // Go's decoder says "json: cannot unmarshal ..."; ours keeps the prefix.
        Error::config(field, "", format!("json: {}", e.reason))
    })
}

impl IpamConfig {
    /// Builds the configuration from the envelope's parts (each already chosen from the
    /// document; prefer [`IpamConfig::from_doc`], which also merges repeated keys as Go does).
    pub fn load(
        network: &str,
        version: SpecVersion,
        ipam: Option<&Value>,
        args: Option<&Value>,
        runtime_config: Option<&Value>,
        cni_args: &CniArgs,
    ) -> Result<IpamConfig> {
        let mut doc = Vec::new();
        for (k, v) in [
            ("ipam", ipam),
            ("args", args),
            ("runtimeConfig", runtime_config),
        ] {
            if let Some(v) = v {
                doc.push((k.to_owned(), Doc::from(v)));
            }
        }
        Self::from_doc(network, version, &Doc::Object(doc), cni_args)
    }

    /// Builds the configuration from the whole network configuration document.
    pub fn from_doc(
        network: &str,
        version: SpecVersion,
        doc: &Doc,
        cni_args: &CniArgs,
    ) -> Result<IpamConfig> {
        let net = decode_net(doc, version < SpecVersion::V1_1_0)?;
        Self::from_raw(network, version, net, cni_args)
    }

    fn from_raw(
        network: &str,
        version: SpecVersion,
        net: raw::RawNet,
        cni_args: &CniArgs,
    ) -> Result<IpamConfig> {
        let Some(mut ipam) = net.ipam else {
            return Err(Error::config("ipam", "", "IPAM config missing 'ipam' key"));
        };

        // Requested addresses: CNI_ARGS IP=, then args.cni.ips, then runtimeConfig.ips.
        let mut requested = Vec::new();
        if let Err(e) = cni_args.check_known(KNOWN_ARGS) {
            return Err(Error::Args {
                key: "CNI_ARGS".into(),
                value: cni_args
                    .pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
                reason: e.to_string(),
            });
        }
        if let Some(ip) = cni_args.get("IP") {
            if !ip.is_empty() {
                let parsed = parse_addr(ip).ok_or_else(|| Error::Args {
                    key: "IP".into(),
                    value: ip.into(),
                    reason: format!(
                        "ARGS: error parsing value of pair {:?}: invalid IP address {ip}",
                        format!("IP={ip}")
                    ),
                })?;
                requested.push(parsed);
            }
        }
        if let Some(ips) = net.args.and_then(|a| a.cni).and_then(|c| c.ips) {
            validate::requested("args.cni.ips", &ips, &mut requested)?;
        }
        let rc = net.runtime_config;
        if let Some(ips) = &rc.ips {
            validate::requested("runtimeConfig.ips", ips, &mut requested)?;
        }

        // Range sets in the reference's order: runtimeConfig.ipRanges, the old-style range,
        // then ipam.ranges. Go's set index counts over that combined list.
        let mut sources: Vec<(String, Option<Vec<raw::RawRange>>)> = Vec::new();
        let rc_sets = rc.ip_ranges.unwrap_or_default();
        validate::bounded("runtimeConfig.ipRanges", &rc_sets)?;
        for (i, set) in rc_sets.into_iter().enumerate() {
            sources.push((format!("runtimeConfig.ipRanges[{i}]"), set));
        }
        // As the reference, the old style counts only with a subnet (where "" is an error,
        // and `null` none: the reference refuses `null` too, we read it as absent).
        if ipam.subnet.is_some() {
            sources.push(("ipam".to_owned(), None));
        }
        let cfg_sets = ipam.ranges.take().unwrap_or_default();
        validate::bounded("ipam.ranges", &cfg_sets)?;
        for (i, set) in cfg_sets.into_iter().enumerate() {
            sources.push((format!("ipam.ranges[{i}]"), set));
        }
        if sources.is_empty() {
            return Err(Error::config("ipam.ranges", "", "no IP ranges specified"));
        }
        if sources.len() > MAX_ITEMS {
            return Err(Error::config(
                "ipam.ranges",
                format!("{} range sets", sources.len()),
                format!("more than {MAX_ITEMS} range sets"),
            ));
        }
        let total: usize = sources
            .iter()
            .map(|(_, s)| s.as_ref().map_or(1, Vec::len))
            .sum();
        if total > MAX_RANGES {
            return Err(Error::config(
                "ipam.ranges",
                format!("{total} ranges"),
                format!("more than {MAX_RANGES} ranges in all"),
            ));
        }
        let mut ranges = Vec::with_capacity(sources.len());
        for (i, (field, set)) in sources.iter().enumerate() {
            ranges.push(match set {
                None if field == "ipam" => {
                    RangeSet(vec![validate::range("ipam", &ipam.old_style(), i)?])
                }
                set => validate::range_set(field, set.as_deref(), i)?,
            });
        }
        validate::across_sets(&ranges, version)?;

        let routes = validate::routes(ipam.routes.as_deref().unwrap_or(&[]))?;
        let data_dir = validate::data_dir(ipam.data_dir.as_deref())?;
        let store = StoreConfig::from_value(ipam.store.as_ref(), data_dir, &store::host_name)?;
        let resolv_conf = ipam
            .resolv_conf
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Ok(IpamConfig {
            network: network.to_string(),
            version,
            ranges,
            routes,
            resolv_conf,
            requested,
            store,
        })
    }
}

/// Tests' shorthand: the configuration of network "n" from an `ipam` object
/// alone (no args, no runtimeConfig, empty CNI_ARGS).
#[cfg(test)]
pub(crate) fn load_ipam(version: SpecVersion, ipam: &Value) -> Result<IpamConfig> {
    IpamConfig::load(
        "n",
        version,
        Some(ipam),
        None,
        None,
        &CniArgs::parse("").unwrap(),
    )
}

#[cfg(test)]
mod tests;
