//! The validation pass: the decoded text of [`super::raw`] becomes ranges, routes and addresses,
//! with the reference's defaults and checks. Every error names the field path and the value and
//! starts with the reference's message where the reference has one (allocator/config.go,
//! range.go, range_set.go of containernetworking/plugins v1.1.1).

use std::net::IpAddr;
use std::path::PathBuf;

use cni_proto::{Route, SpecVersion};
use ipnet::IpNet;

use super::raw::{RawRange, RawRoute};
use super::{Range, RangeSet, MAX_ITEMS};
use crate::addr;
use crate::error::{Error, Result};

/// Refuses a list longer than [`MAX_ITEMS`]: bounded work for any input.
pub fn bounded<T>(field: &str, list: &[T]) -> Result<()> {
    if list.len() > MAX_ITEMS {
        return Err(Error::config(
            field,
            format!("{} items", list.len()),
            format!("more than {MAX_ITEMS} items"),
        ));
    }
    Ok(())
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

/// A net.IP field: "" and absent are unset; anything else must be an address.
fn opt_ip(field: &str, v: Option<&str>) -> Result<Option<IpAddr>> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Some(addr::canonical(ip))),
            Err(_) => Err(Error::config(field, s, format!("invalid IP address: {s}"))),
        },
    }
}

/// A types.IPNet field: must be CIDR text.
fn cidr(field: &str, s: &str) -> Result<IpNet> {
    s.parse()
        .map_err(|_| Error::config(field, s, format!("invalid CIDR address: {s}")))
}

/// The subnet of range `field` in range set `set`, in canonical form (an IPv4-mapped IPv6
/// subnet reads as IPv4).
fn subnet(field: &str, s: &str, set: usize) -> Result<IpNet> {
    let net = cidr(field, s)?;
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
            format!("invalid range set {set}: Network {net} too small to allocate from"),
        ));
    }
    if net.addr() != net.network() {
        return Err(Error::config(
            field,
            s,
            format!(
                "invalid range set {set}: Network has host bits set. For a subnet mask of length {} the network address is {}",
                net.prefix_len(),
                net.network()
            ),
        ));
    }
    Ok(net)
}

/// One range, with the reference's defaults: rangeStart the subnet's second address, rangeEnd
/// its last (IPv4: before the broadcast), gateway the second address. A gateway outside the
/// subnet is served as the reference serves it: reported, and not excluded from the range.
pub fn range(field: &str, raw: &RawRange, set: usize) -> Result<Range> {
    let sub_field = format!("{field}.subnet");
    let net = match raw.subnet.as_deref() {
        Some(s) => subnet(&sub_field, s, set)?,
        None => {
            return Err(Error::config(
                sub_field,
                "",
                format!("invalid range set {set}: IP <nil> not v4 nor v6"),
            ))
        }
    };
    let first = addr::next(net.network()).unwrap_or(net.network());
    let start_f = format!("{field}.rangeStart");
    let end_f = format!("{field}.rangeEnd");
    let start_given = opt_ip(&start_f, raw.range_start.as_deref())?;
    let end_given = opt_ip(&end_f, raw.range_end.as_deref())?;
    let inside = |ip: IpAddr| addr::same_family(ip, net.addr()) && net.contains(&ip);
    // As range.go: each end is checked against the subnet and the other end as written.
    if let Some(s) = start_given {
        if !inside(s) || end_given.is_some_and(|e| addr::to_u128(s) > addr::to_u128(e)) {
            return Err(Error::config(
                start_f,
                s.to_string(),
                format!("invalid range set {set}: RangeStart {s} not in network {net}"),
            ));
        }
    }
    let start = start_given.unwrap_or(first);
    if let Some(e) = end_given {
        if !inside(e) || addr::to_u128(e) < addr::to_u128(start) {
            return Err(Error::config(
                end_f,
                e.to_string(),
                format!("invalid range set {set}: RangeEnd {e} not in network {net}"),
            ));
        }
    }
    let end = end_given.unwrap_or_else(|| addr::default_range_end(&net));
    let gateway = opt_ip(&format!("{field}.gateway"), raw.gateway.as_deref())?.unwrap_or(first);
    let (exclude, exclude_text) = exclusions(field, raw.exclude.as_deref().unwrap_or(&[]), &net)?;
    Ok(Range {
        subnet: net,
        start,
        end,
        gateway,
        exclude: addr::merge_intervals(exclude),
        exclude_text,
    })
}

/// Exclusion intervals and their text.
type Exclusions = (Vec<(u128, u128)>, Vec<String>);

/// Our `exclude` extension: addresses or CIDRs inside the subnet.
fn exclusions(field: &str, list: &[String], net: &IpNet) -> Result<Exclusions> {
    bounded(&format!("{field}.exclude"), list)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let f = format!("{field}.exclude[{i}]");
        let bad = || Error::config(&f, s, "not an address or CIDR");
        let (lo, hi) = if s.contains('/') {
            let n: IpNet = s.parse().map_err(|_| bad())?;
            (n.network(), n.broadcast())
        } else {
            let ip: IpAddr = s.parse().map_err(|_| bad())?;
            (ip, ip)
        };
        let (lo, hi) = (addr::canonical(lo), addr::canonical(hi));
        if !addr::same_family(lo, net.addr()) || !net.contains(&lo) || !net.contains(&hi) {
            return Err(Error::config(&f, s, format!("not inside subnet {net}")));
        }
        out.push((addr::to_u128(lo), addr::to_u128(hi)));
    }
    Ok((out, list.to_vec()))
}

/// One range set (range_set.go's Canonicalize).
pub fn range_set(field: &str, raw: Option<&[RawRange]>, set: usize) -> Result<RangeSet> {
    let raw = raw.unwrap_or(&[]);
    bounded(field, raw)?;
    if raw.is_empty() {
        return Err(Error::config(
            field,
            "[]",
            format!("invalid range set {set}: empty range set"),
        ));
    }
    let mut out: Vec<Range> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let r = range(&f, r, set)?;
        if let Some(first) = out.first() {
            if !addr::same_family(first.start, r.start) {
                return Err(Error::config(
                    &f,
                    r.subnet.to_string(),
                    format!("invalid range set {set}: mixed address families"),
                ));
            }
        }
        out.push(r);
    }
    for (i, a) in out.iter().enumerate() {
        for (j, b) in out.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                return Err(Error::config(
                    format!("{field}[{j}]"),
                    b.subnet.to_string(),
                    format!("invalid range set {set}: subnets {a} and {b} overlap"),
                ));
            }
        }
    }
    Ok(RangeSet(out))
}

/// The `routes` list.
pub fn routes(raw: &[RawRoute]) -> Result<Vec<Route>> {
    bounded("ipam.routes", raw)?;
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("ipam.routes[{i}]");
            let dst = match r.dst.as_deref() {
                Some(s) => cidr(&format!("{f}.dst"), s)?,
                None => {
                    return Err(Error::config(
                        format!("{f}.dst"),
                        "",
                        "invalid CIDR address: (missing)",
                    ))
                }
            };
            Ok(Route {
                dst,
                gw: opt_ip(&format!("{f}.gw"), r.gw.as_deref())?,
                mtu: r.mtu,
                advmss: r.advmss,
                priority: r.priority,
                table: r.table,
                scope: r.scope,
            })
        })
        .collect()
}

/// Requested addresses of `args.cni.ips` or `runtimeConfig.ips` (ip.IP: an address or CIDR).
pub fn requested(field: &str, list: &[Option<String>], out: &mut Vec<IpAddr>) -> Result<()> {
    bounded(field, list)?;
    for (i, item) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let s = item.as_deref().unwrap_or("");
        let ip = parse_addr(s).ok_or_else(|| {
            if s.is_empty() {
                Error::config(&f, s, "cannot understand ip: IP <nil> not v4 nor v6")
            } else {
                Error::config(&f, s, format!("invalid IP address {s}"))
            }
        })?;
        out.push(ip);
    }
    Ok(())
}

/// Checks across range sets (config.go): the per-family limit of old versions, then overlaps.
pub fn across_sets(ranges: &[RangeSet], version: SpecVersion) -> Result<()> {
    let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
    let v6 = ranges.len() - v4;
    if (v4 > 1 || v6 > 1) && version < SpecVersion::V0_3_0 {
        return Err(Error::config(
            "cniVersion",
            version.as_str(),
            format!(
                "CNI version {} does not support more than 1 address per family",
                version.as_str()
            ),
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
    Ok(())
}

/// A dataDir must be absolute, free of NUL and of `..` components: it is where we create files
/// as root (the reference takes any path; see docs/DIFFERENCES.md). "" means the default.
pub fn data_dir(s: Option<&str>) -> Result<PathBuf> {
    let s = match s {
        None | Some("") => return Ok(PathBuf::from(super::DEFAULT_DATA_DIR)),
        Some(s) => s,
    };
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
