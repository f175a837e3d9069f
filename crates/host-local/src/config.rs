//! The `ipam` section of a network configuration, validated, with defaults
//! applied, plus the requested addresses from CNI_ARGS, `args` and
//! `runtimeConfig`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use cni_proto::{CniArgs, Route, SpecVersion};
use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::addr;
use crate::error::{Error, Result};

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

    fn overlaps(&self, other: &Range) -> bool {
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

    fn overlaps(&self, other: &RangeSet) -> bool {
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
    /// The raw `ipam.store` object choosing the backend (absent: the disk
    /// store); decoded by `store::open`, which owns its keys.
    pub store: Option<serde_json::Value>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

fn want_str<'a>(field: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str().ok_or_else(|| {
        Error::config(
            field,
            short(v),
            format!("expected a string, found {}", type_name(v)),
        )
    })
}

fn want_list<'a>(field: &str, v: &'a Value) -> Result<&'a Vec<Value>> {
    let list = v.as_array().ok_or_else(|| {
        Error::config(
            field,
            short(v),
            format!("expected a list, found {}", type_name(v)),
        )
    })?;
    if list.len() > MAX_ITEMS {
        return Err(Error::config(
            field,
            format!("{} items", list.len()),
            format!("more than {MAX_ITEMS} items"),
        ));
    }
    Ok(list)
}

fn want_obj<'a>(field: &str, v: &'a Value) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        Error::config(
            field,
            short(v),
            format!("expected an object, found {}", type_name(v)),
        )
    })
}

/// Parses an address, accepting the CIDR form as the reference's `ip.IP` does
/// (`10.1.2.3/24` means 10.1.2.3).
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let ip = match t.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => t.parse::<IpNet>().ok()?.addr(),
    };
    Some(addr::canonical(ip))
}

fn opt_addr(field: &str, v: Option<&Value>) -> Result<Option<IpAddr>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let s = want_str(field, v)?;
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<IpAddr>() {
                Ok(ip) => Ok(Some(addr::canonical(ip))),
                Err(_) => Err(Error::config(field, s, "not an IP address")),
            }
        }
    }
}

fn parse_subnet(field: &str, v: &Value) -> Result<IpNet> {
    let s = want_str(field, v)?;
    let net: IpNet = s.parse().map_err(|_| {
        Error::config(
            field,
            s,
            "not a CIDR subnet (like 10.1.2.0/24 or 2001:db8::/64)",
        )
    })?;
    let net = match net {
        IpNet::V6(n6) => match n6.addr().to_ipv4_mapped() {
            Some(v4) if n6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), n6.prefix_len() - 96)
                    .map_err(|e| Error::config(field, s, e.to_string()))?
            }
            _ => net,
        },
        v4 => v4,
    };
    if net.prefix_len() + 2 > net.max_prefix_len() {
        return Err(Error::config(
            field,
            s,
            "network too small to allocate from",
        ));
    }
    if net.addr() != net.network() {
        return Err(Error::config(
            field,
            s,
            format!(
                "network has host bits set; for a prefix of length {} the network address is {}",
                net.prefix_len(),
                net.network()
            ),
        ));
    }
    Ok(net)
}

/// Parses one range object (`{subnet, rangeStart?, rangeEnd?, gateway?, exclude?}`).
fn parse_range(field: &str, obj: &Map<String, Value>) -> Result<Range> {
    let subnet_v = obj
        .get("subnet")
        .ok_or_else(|| Error::config(format!("{field}.subnet"), "", "missing"))?;
    let subnet = parse_subnet(&format!("{field}.subnet"), subnet_v)?;
    let in_subnet = |name: &str, ip: IpAddr| -> Result<IpAddr> {
        if !addr::same_family(ip, subnet.addr()) || !subnet.contains(&ip) {
            return Err(Error::config(
                format!("{field}.{name}"),
                ip.to_string(),
                format!("not in network {subnet}"),
            ));
        }
        Ok(ip)
    };
    let start = match opt_addr(&format!("{field}.rangeStart"), obj.get("rangeStart"))? {
        Some(ip) => in_subnet("rangeStart", ip)?,
        None => addr::next(subnet.network()).unwrap_or(subnet.network()),
    };
    let end = match opt_addr(&format!("{field}.rangeEnd"), obj.get("rangeEnd"))? {
        Some(ip) => in_subnet("rangeEnd", ip)?,
        None => addr::default_range_end(&subnet),
    };
    if addr::to_u128(end) < addr::to_u128(start) {
        return Err(Error::config(
            format!("{field}.rangeEnd"),
            end.to_string(),
            format!("before rangeStart {start}"),
        ));
    }
    let gateway = match opt_addr(&format!("{field}.gateway"), obj.get("gateway"))? {
        Some(ip) => in_subnet("gateway", ip)?,
        None => addr::next(subnet.network()).unwrap_or(subnet.network()),
    };
    let mut exclude = Vec::new();
    let mut exclude_text = Vec::new();
    if let Some(v) = obj.get("exclude") {
        let list = want_list(&format!("{field}.exclude"), v)?;
        for (i, item) in list.iter().enumerate() {
            let f = format!("{field}.exclude[{i}]");
            let s = want_str(&f, item)?;
            let (lo, hi) = if s.contains('/') {
                let n: IpNet = s
                    .parse()
                    .map_err(|_| Error::config(&f, s, "not an address or CIDR"))?;
                (n.network(), n.broadcast())
            } else {
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| Error::config(&f, s, "not an address or CIDR"))?;
                let ip = addr::canonical(ip);
                (ip, ip)
            };
            let (lo, hi) = (addr::canonical(lo), addr::canonical(hi));
            if !addr::same_family(lo, subnet.addr())
                || !subnet.contains(&lo)
                || !subnet.contains(&hi)
            {
                return Err(Error::config(&f, s, format!("not inside subnet {subnet}")));
            }
            exclude.push((addr::to_u128(lo), addr::to_u128(hi)));
            exclude_text.push(s.to_string());
        }
    }
    Ok(Range {
        subnet,
        start,
        end,
        gateway,
        exclude: addr::merge_intervals(exclude),
        exclude_text,
    })
}

fn parse_range_set(field: &str, v: &Value) -> Result<RangeSet> {
    let list = want_list(field, v)?;
    if list.is_empty() {
        return Err(Error::config(field, "[]", "empty range set"));
    }
    let mut set = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let obj = want_obj(&f, item)?;
        let r = parse_range(&f, obj)?;
        if let Some(first) = set.first() {
            let first: &Range = first;
            if !addr::same_family(first.start, r.start) {
                return Err(Error::config(
                    &f,
                    r.subnet.to_string(),
                    "mixed address families in one range set",
                ));
            }
        }
        for (j, prev) in set.iter().enumerate() {
            let prev: &Range = prev;
            if prev.overlaps(&r) {
                return Err(Error::config(
                    &f,
                    r.to_string(),
                    format!("overlaps range {j} ({prev}) of the same set"),
                ));
            }
        }
        set.push(r);
    }
    Ok(RangeSet(set))
}

fn parse_routes(v: &Value) -> Result<Vec<Route>> {
    let list = want_list("ipam.routes", v)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let f = format!("ipam.routes[{i}]");
        let obj = want_obj(&f, item)?;
        let dst_s = want_str(&format!("{f}.dst"), obj.get("dst").unwrap_or(&Value::Null))?;
        let dst: IpNet = dst_s
            .parse()
            .map_err(|_| Error::config(format!("{f}.dst"), dst_s, "not a CIDR"))?;
        let gw = opt_addr(&format!("{f}.gw"), obj.get("gw"))?;
        let num = |k: &str| -> Result<Option<u32>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        Error::config(
                            format!("{f}.{k}"),
                            short(v),
                            "expected a non-negative integer",
                        )
                    }),
            }
        };
        out.push(Route {
            dst,
            gw,
            mtu: num("mtu")?,
            advmss: num("advmss")?,
            priority: num("priority")?,
            table: num("table")?,
            scope: num("scope")?,
        });
    }
    Ok(out)
}

fn requested_list(field: &str, v: &Value, out: &mut Vec<IpAddr>) -> Result<()> {
    let list = want_list(field, v)?;
    for (i, item) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let s = want_str(&f, item)?;
        let ip = parse_addr(s).ok_or_else(|| Error::config(&f, s, "not an IP address"))?;
        out.push(ip);
    }
    Ok(())
}

/// CNI_ARGS keys host-local understands (the reference's IPAMEnvArgs).
pub const KNOWN_ARGS: &[&str] = &["IgnoreUnknown", "IP"];

impl IpamConfig {
    /// Builds the configuration from the envelope's parts.
    pub fn load(
        network: &str,
        version: SpecVersion,
        ipam: Option<&Value>,
        args: Option<&Value>,
        runtime_config: Option<&Value>,
        cni_args: &CniArgs,
    ) -> Result<IpamConfig> {
        let ipam = match ipam {
            None | Some(Value::Null) => {
                return Err(Error::config("ipam", "", "IPAM config missing 'ipam' key"));
            }
            Some(v) => want_obj("ipam", v)?,
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
                    reason: "not an IP address".into(),
                })?;
                requested.push(parsed);
            }
        }
        if let Some(a) = args.filter(|v| !v.is_null()) {
            let a = want_obj("args", a)?;
            if let Some(c) = a.get("cni").filter(|v| !v.is_null()) {
                let c = want_obj("args.cni", c)?;
                if let Some(ips) = c.get("ips").filter(|v| !v.is_null()) {
                    requested_list("args.cni.ips", ips, &mut requested)?;
                }
            }
        }
        let mut ranges = Vec::new();
        if let Some(rc) = runtime_config.filter(|v| !v.is_null()) {
            let rc = want_obj("runtimeConfig", rc)?;
            if let Some(ips) = rc.get("ips").filter(|v| !v.is_null()) {
                requested_list("runtimeConfig.ips", ips, &mut requested)?;
            }
            if let Some(rr) = rc.get("ipRanges").filter(|v| !v.is_null()) {
                let list = want_list("runtimeConfig.ipRanges", rr)?;
                for (i, set) in list.iter().enumerate() {
                    ranges.push(parse_range_set(
                        &format!("runtimeConfig.ipRanges[{i}]"),
                        set,
                    )?);
                }
            }
        }

        // Old style: a single range directly in `ipam`, placed first.
        if ipam.get("subnet").is_some_and(|v| !v.is_null()) {
            let r = parse_range("ipam", ipam)?;
            ranges.push(RangeSet(vec![r]));
        } else {
            for k in ["rangeStart", "rangeEnd", "gateway"] {
                // Like the reference, these mean nothing without a subnet; but
                // a wrong type is still a mistake worth reporting.
                if let Some(v) = ipam.get(k).filter(|v| !v.is_null()) {
                    want_str(&format!("ipam.{k}"), v)?;
                }
            }
        }
        if let Some(rs) = ipam.get("ranges").filter(|v| !v.is_null()) {
            let list = want_list("ipam.ranges", rs)?;
            for (i, set) in list.iter().enumerate() {
                ranges.push(parse_range_set(&format!("ipam.ranges[{i}]"), set)?);
            }
        }
        if ranges.is_empty() {
            return Err(Error::config("ipam.ranges", "", "no IP ranges specified"));
        }
        if ranges.len() > MAX_ITEMS {
            return Err(Error::config(
                "ipam.ranges",
                format!("{} range sets", ranges.len()),
                format!("more than {MAX_ITEMS} range sets"),
            ));
        }
        let total: usize = ranges.iter().map(|s| s.0.len()).sum();
        if total > MAX_RANGES {
            return Err(Error::config(
                "ipam.ranges",
                format!("{total} ranges"),
                format!("more than {MAX_RANGES} ranges in all"),
            ));
        }
        let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
        let v6 = ranges.len() - v4;
        if (v4 > 1 || v6 > 1) && version < SpecVersion::V0_3_0 {
            return Err(Error::config(
                "cniVersion",
                version.as_str(),
                "does not support more than 1 address per family",
            ));
        }
        for i in 0..ranges.len() {
            for j in i + 1..ranges.len() {
                if ranges[i].overlaps(&ranges[j]) {
                    return Err(Error::config(
                        "ipam.ranges",
                        format!("{} / {}", ranges[i], ranges[j]),
                        format!("range set {i} overlaps with {j}"),
                    ));
                }
            }
        }

        let routes = match ipam.get("routes").filter(|v| !v.is_null()) {
            Some(v) => parse_routes(v)?,
            None => Vec::new(),
        };
        let data_dir = match ipam.get("dataDir").filter(|v| !v.is_null()) {
            Some(v) => {
                let s = want_str("ipam.dataDir", v)?;
                if s.is_empty() {
                    PathBuf::from(DEFAULT_DATA_DIR)
                } else {
                    check_data_dir(s)?
                }
            }
            None => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let resolv_conf = match ipam.get("resolvConf").filter(|v| !v.is_null()) {
            Some(v) => {
                let s = want_str("ipam.resolvConf", v)?;
                (!s.is_empty()).then(|| PathBuf::from(s))
            }
            None => None,
        };
        Ok(IpamConfig {
            network: network.to_string(),
            version,
            ranges,
            routes,
            data_dir,
            resolv_conf,
            requested,
            store: ipam.get("store").filter(|v| !v.is_null()).cloned(),
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

/// A dataDir must be absolute, free of NUL and of `..` components: it is
/// where we create files as root.
fn check_data_dir(s: &str) -> Result<PathBuf> {
    if s.contains('\0') {
        return Err(Error::config(
            "ipam.dataDir",
            s.escape_debug().to_string(),
            "contains a NUL byte",
        ));
    }
    if !s.starts_with('/') {
        return Err(Error::config("ipam.dataDir", s, "must be an absolute path"));
    }
    if s.split('/').any(|c| c == "..") {
        return Err(Error::config("ipam.dataDir", s, "must not contain '..'"));
    }
    Ok(PathBuf::from(s))
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
        assert!(e.to_string().contains("before rangeStart"), "{e}");
        let e = load(json!({"subnet": "10.0.0.0/24", "gateway": "10.9.0.1"})).unwrap_err();
        assert!(e.to_string().contains("ipam.gateway"), "{e}");
        let e = load(json!({"subnet": "10.0.0.0/24", "rangeStart": "bogus"})).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert_eq!(e.code(), cni_proto::code::INVALID_CONFIG);
    }

    #[test]
    fn overlapping_sets_refused() {
        let e = load(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}))
            .unwrap_err();
        assert!(e.to_string().contains("range set 0 overlaps with 1"), "{e}");
        let e = load(json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}))
            .unwrap_err();
        assert!(e.to_string().contains("overlaps range 0"), "{e}");
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
