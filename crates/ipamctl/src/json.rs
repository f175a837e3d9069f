//! The JSON documents of SCHEMA.md (schema 1). Keys are stable; new keys may
//! be added within a schema version, never removed or retyped.

use serde_json::{json, Map, Value};

use crate::inspect::{NetworkView, Reservation, SetUsage};

pub const SCHEMA: u64 = 1;

/// A count: an integer, exact up to 2^64-1; beyond that (huge IPv6
/// ranges) a floating-point number.
pub fn big(n: u128) -> Value {
    match u64::try_from(n) {
        Ok(v) => json!(v),
        Err(_) => json!(n as f64),
    }
}

pub fn envelope(command: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("schema".into(), json!(SCHEMA));
    m.insert("command".into(), json!(command));
    m
}

pub fn range_set(u: &SetUsage) -> Value {
    json!({
        "index": u.index,
        "family": if u.set.is_ipv4() { 4 } else { 6 },
        "ranges": u.set.0.iter().map(|r| json!({
            "subnet": r.subnet.to_string(),
            "rangeStart": r.start.to_string(),
            "rangeEnd": r.end.to_string(),
            "gateway": r.gateway.to_string(),
            "exclude": r.exclude_text,
        })).collect::<Vec<_>>(),
        "capacity": big(u.capacity),
        "reserved": big(u.reserved),
        "free": big(u.free()),
        "usage": u.usage(),
        "lastReserved": u.last_reserved.map(|ip| ip.to_string()),
    })
}

pub fn network(v: &NetworkView) -> Value {
    let problems: Map<String, Value> = v
        .problem_counts()
        .into_iter()
        .map(|(k, n)| (k.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "name": v.name,
        "path": v.path.display().to_string(),
        "exists": v.exists,
        "error": v.error,
        "reservations": v.reservations.len(),
        "formats": v.format_counts(),
        "withProblems": v.problem_total(),
        "problems": problems,
        "config": v.config.as_ref().map(|c| json!({
            "source": c.source.display().to_string(),
            "dataDir": c.ipam.data_dir.display().to_string(),
            "runtimeRanges": c.runtime_ranges,
        })),
        "rangeSets": v.sets.iter().map(range_set).collect::<Vec<_>>(),
    })
}

pub fn reservation(r: &Reservation, now: i64) -> Value {
    json!({
        "address": r.ip.to_string(),
        "family": if r.ip.is_ipv4() { 4 } else { 6 },
        "format": r.format(),
        "containerId": r.container_id(),
        "ifname": r.ifname(),
        "mtime": r.mtime,
        "ageSeconds": r.mtime.map(|m| (now - m).max(0)),
        "rangeSet": r.set_index,
        "problems": r.problems,
    })
}

pub fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}
