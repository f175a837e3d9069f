//! The `ipam` section of a network configuration, validated, with defaults
//! applied, plus the requested addresses from CNI_ARGS, `args` and
//! `runtimeConfig`.
//!
//! Decoding follows Go's encoding/json ([`cni_proto::gojson`]) into the typed
//! structs of [`raw`]; [`validate`] then checks them, naming the field path.

pub mod raw;
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
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses in the order given: CNI_ARGS, args, runtimeConfig.
    pub requested: Vec<IpAddr>,
    /// The `store` object of the ipam section, as written, for the store layer to decode.
    pub store: Option<Value>,
}

/// CNI_ARGS keys host-local understands (the reference's IPAMEnvArgs).
pub const KNOWN_ARGS: &[&str] = &["IgnoreUnknown", "IP"];

/// Decodes the parts of a network configuration host-local reads, with Go's rules.
pub fn decode_net(doc: &Doc) -> Result<raw::RawNet> {
    gojson::decode(doc, &raw::NET, "").map_err(|e| {
        let value = e.path.clone();
        Error::config(
            if e.path.is_empty() {
                "(document)".to_owned()
            } else {
                e.path
            },
            "",
            format!("json: {} ({value})", e.reason),
        )
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
        let net = decode_net(doc)?;
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
                    reason: format!("invalid IP address {ip}"),
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
        // As the reference, the old style counts only with a subnet ("" is none).
        if ipam.subnet.as_deref().is_some_and(|s| !s.is_empty()) {
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
            data_dir,
            resolv_conf,
            requested,
            store: ipam.store,
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
mod tests {
    use super::*;
    use serde_json::json;

    fn load(ipam: Value) -> Result<IpamConfig> {
        IpamConfig::load(
            "net",
            SpecVersion::V1_0_0,
            Some(&ipam),
            None,
            None,
            &CniArgs::parse("").unwrap(),
        )
    }

    #[test]
    fn old_style_defaults() {
        let c = load(json!({"type": "host-local", "subnet": "10.1.2.0/24"})).unwrap();
        let r = &c.ranges[0].0[0];
        assert_eq!(r.start.to_string(), "10.1.2.1");
        assert_eq!(r.end.to_string(), "10.1.2.254");
        assert_eq!(r.gateway.to_string(), "10.1.2.1");
        assert_eq!(r.capacity(), 253);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn v6_defaults() {
        let c = load(json!({"subnet": "2001:db8::/120"})).unwrap();
        let r = &c.ranges[0].0[0];
        assert_eq!(r.start.to_string(), "2001:db8::1");
        assert_eq!(r.end.to_string(), "2001:db8::ff");
        assert_eq!(r.capacity(), 254);
    }

    #[test]
    fn too_small_and_host_bits() {
        for s in ["10.0.0.0/31", "10.0.0.1/32", "2001:db8::/127"] {
            let e = load(json!({"subnet": s})).unwrap_err().to_string();
            assert!(e.contains("too small"), "{s}: {e}");
        }
        let e = load(json!({"subnet": "10.0.0.5/24"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("host bits") && e.contains("10.0.0.0"), "{e}");
    }

    #[test]
    fn start_end_gateway_validated() {
        let e = load(json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"})).unwrap_err();
        assert!(e.to_string().contains("ipam.rangeStart"), "{e}");
        let e = load(
            json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.5"}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid range set 0: RangeStart 10.0.0.9 not in network 10.0.0.0/24"),
            "{e}"
        );
        let e = load(json!({"subnet": "10.0.0.0/24", "rangeStart": "bogus"})).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert_eq!(e.code(), cni_proto::code::INVALID_CONFIG);
    }

    #[test]
    fn gateway_outside_the_subnet_is_served() {
        // As the reference: reported as is, and .1 is not held back for it.
        let c = load(json!({"subnet": "10.0.0.0/24", "gateway": "10.9.0.1"})).unwrap();
        let r = &c.ranges[0].0[0];
        assert_eq!(r.gateway.to_string(), "10.9.0.1");
        assert_eq!(r.capacity(), 254);
        let c = load(json!({"subnet": "10.0.0.0/24", "gateway": "fd00::1"})).unwrap();
        assert_eq!(c.ranges[0].0[0].gateway.to_string(), "fd00::1");
    }

    fn doc(text: &str) -> Result<IpamConfig> {
        IpamConfig::from_doc(
            "n",
            SpecVersion::V1_0_0,
            &Doc::parse(text.as_bytes()).unwrap(),
            &CniArgs::parse("").unwrap(),
        )
    }

    #[test]
    fn go_key_case() {
        let c = doc(r#"{"IPAM": {"Subnet": "10.0.0.0/24", "RangeStart": "10.0.0.7", "RANGEEND": "10.0.0.9",
            "Routes": [{"Dst": "0.0.0.0/0", "GW": "10.0.0.1"}], "ResolvConf": "/etc/r", "DataDir": "/d",
            "Store": {"x": 1}}}"#)
        .unwrap();
        let r = &c.ranges[0].0[0];
        assert_eq!(
            (r.start.to_string(), r.end.to_string()),
            ("10.0.0.7".into(), "10.0.0.9".into())
        );
        assert_eq!(c.routes[0].gw.unwrap().to_string(), "10.0.0.1");
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/r")));
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.store, Some(json!({"x": 1})));
        let c = doc(r#"{"ipam": {"Ranges": [[{"SUBNET": "10.1.0.0/24"}]]},
            "Args": {"CNI": {"IPs": ["10.1.0.5"]}}, "RuntimeConfig": {"IPS": ["10.1.0.6"]}}"#)
        .unwrap();
        assert_eq!(c.ranges[0].0[0].subnet.to_string(), "10.1.0.0/24");
        assert_eq!(c.requested.len(), 2);
    }

    #[test]
    fn go_nulls_and_empty_strings() {
        let c = doc(
            r#"{"ipam": {"subnet": "10.0.0.0/24", "rangeStart": null, "rangeEnd": "",
            "gateway": null, "routes": null, "ranges": null, "dataDir": null, "resolvConf": ""},
            "args": null, "runtimeConfig": null}"#,
        )
        .unwrap();
        assert_eq!(c.ranges.len(), 1);
        assert_eq!(c.ranges[0].0[0].start.to_string(), "10.0.0.1");
        assert!(c.routes.is_empty() && c.resolv_conf.is_none());
        // "subnet": "" beside ranges is no old-style range.
        let c =
            doc(r#"{"ipam": {"subnet": "", "ranges": [[{"subnet": "10.1.0.0/24"}]]}}"#).unwrap();
        assert_eq!(c.ranges.len(), 1);
        let e = doc(r#"{"ipam": null}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("IPAM config missing 'ipam' key"),
            "{e}"
        );
    }

    #[test]
    fn go_duplicate_keys() {
        // The last wins; a repeated object merges into the earlier one, as Go does.
        let c = doc(
            r#"{"ipam": {"subnet": "10.0.0.0/24", "subnet": "10.1.0.0/24"},
                        "ipam": {"rangeStart": "10.1.0.9"}}"#,
        )
        .unwrap();
        let r = &c.ranges[0].0[0];
        assert_eq!(
            (r.subnet.to_string(), r.start.to_string()),
            ("10.1.0.0/24".into(), "10.1.0.9".into())
        );
    }

    #[test]
    fn type_errors_name_the_path() {
        let e = doc(r#"{"ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": 5}]]}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("ipam.ranges[0][1].subnet"), "{e}");
        assert!(e.to_string().starts_with("json: "), "{e}");
        let e = doc(r#"{"ipam": {"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0", "mtu": "1400"}]}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("ipam.routes[0].mtu"), "{e}");
    }

    /// The reference's messages (allocator/*.go, checked by running /usr/lib/cni/host-local
    /// v1.1.1) start ours.
    #[test]
    fn reference_messages() {
        for (ipam, want) in [
            (json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.4"}), "invalid range set 0: RangeStart 10.1.3.4 not in network 10.1.2.0/24"),
            (json!({"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.4"}), "invalid range set 0: RangeEnd 10.1.3.4 not in network 10.1.2.0/24"),
            (json!({"subnet": "10.1.2.0/24", "rangeStart": "bogus"}), "invalid IP address: bogus"),
            (json!({"subnet": "bogus"}), "invalid CIDR address: bogus"),
            (json!({"subnet": "10.1.2.5/24"}), "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0"),
            (json!({"subnet": "10.1.2.0/31"}), "invalid range set 0: Network 10.1.2.0/31 too small to allocate from"),
            (json!({"ranges": [[]]}), "invalid range set 0: empty range set"),
            (json!({"ranges": [null]}), "invalid range set 0: empty range set"),
            (json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "fd00::/64"}]]}), "invalid range set 0: mixed address families"),
            (json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.1.2.0/25"}]]}), "invalid range set 0: subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.126 overlap"),
            (json!({"subnet": "10.1.1.0/24", "ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.2.0/25"}]]}), "range set 1 overlaps with 2"),
            (json!({"type": "host-local"}), "no IP ranges specified"),
            (json!({"subnet": "10.1.2.0/24", "routes": [{"dst": "bogus"}]}), "invalid CIDR address: bogus"),
            (json!({"subnet": "10.1.2.0/24", "routes": [{"dst": "1.0.0.0/8", "gw": "x"}]}), "invalid IP address: x"),
        ] {
            let e = load(ipam.clone()).unwrap_err().to_string();
            assert!(e.starts_with(want), "{ipam}: {e}");
        }
        let ipam = json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.1.0/24"}]]});
        let e = load_ipam(SpecVersion::V0_2_0, &ipam)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("CNI version 0.2.0 does not support more than 1 address per family"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_sets_refused() {
        let e = load(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}))
            .unwrap_err();
        assert!(e.to_string().contains("range set 0 overlaps with 1"), "{e}");
        let e = load(json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}))
            .unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        let e = load(json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "2001:db8::/64"}]]}))
            .unwrap_err();
        assert!(e.to_string().contains("mixed"), "{e}");
    }

    #[test]
    fn two_sets_per_family_need_030() {
        let ipam = json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.1.0/24"}]]});
        let e = load_ipam(SpecVersion::V0_2_0, &ipam).unwrap_err();
        assert!(
            e.to_string().contains("more than 1 address per family"),
            "{e}"
        );
        assert!(load_ipam(SpecVersion::V0_3_0, &ipam).is_ok());
    }

    #[test]
    fn exclusions() {
        let c = load(json!({"ranges": [[{"subnet": "10.0.0.0/24", "exclude": ["10.0.0.10", "10.0.0.16/28"]}]]})).unwrap();
        let r = &c.ranges[0].0[0];
        assert!(r.is_excluded("10.0.0.10".parse().unwrap()));
        assert!(r.is_excluded("10.0.0.31".parse().unwrap()));
        assert!(!r.is_excluded("10.0.0.32".parse().unwrap()));
        assert_eq!(r.capacity(), 253 - 1 - 16);
        let e = load(json!({"ranges": [[{"subnet": "10.0.0.0/24", "exclude": ["10.0.1.1"]}]]}))
            .unwrap_err();
        assert!(e.to_string().contains("exclude[0]"), "{e}");
    }

    #[test]
    fn requested_sources_in_order() {
        let args = json!({"cni": {"ips": ["10.0.0.7"]}});
        let rc = json!({"ips": ["10.0.0.8/24"], "ipRanges": [[{"subnet": "10.9.0.0/24"}]]});
        let c = IpamConfig::load(
            "n",
            SpecVersion::V1_0_0,
            Some(&json!({"subnet": "10.0.0.0/24"})),
            Some(&args),
            Some(&rc),
            &CniArgs::parse("IP=10.0.0.6").unwrap(),
        )
        .unwrap();
        let got: Vec<String> = c.requested.iter().map(|i| i.to_string()).collect();
        assert_eq!(got, ["10.0.0.6", "10.0.0.7", "10.0.0.8"]);
        assert_eq!(c.ranges[0].0[0].subnet.to_string(), "10.9.0.0/24");
    }

    #[test]
    fn unknown_args_refused_unless_ignored() {
        let ipam = json!({"subnet": "10.0.0.0/24"});
        let e = IpamConfig::load(
            "n",
            SpecVersion::V1_0_0,
            Some(&ipam),
            None,
            None,
            &CniArgs::parse("FOO=bar").unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.code(), cni_proto::code::INVALID_ENV);
        assert!(IpamConfig::load(
            "n",
            SpecVersion::V1_0_0,
            Some(&ipam),
            None,
            None,
            &CniArgs::parse("IgnoreUnknown=1;FOO=bar").unwrap()
        )
        .is_ok());
    }

    #[test]
    fn data_dir_must_be_safe() {
        for d in ["relative/dir", "/var/../etc", "/a\0b"] {
            assert!(
                load(json!({"subnet": "10.0.0.0/24", "dataDir": d})).is_err(),
                "{d}"
            );
        }
    }

    #[test]
    fn missing_ipam_and_ranges() {
        let e = IpamConfig::load(
            "n",
            SpecVersion::V1_0_0,
            None,
            None,
            None,
            &CniArgs::parse("").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ipam"));
        let e = load(json!({"type": "host-local"})).unwrap_err();
        assert!(e.to_string().contains("no IP ranges"));
    }
}
