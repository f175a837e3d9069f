//! Port of backend/allocator/config_test.go (v1.1.1): "IPAM config". The Go
//! tests call LoadIPAMConfig and compare the parsed struct; through the
//! binary the parse shows in ADD: the result's `cniVersion`, each range
//! set's first address and gateway, and each range's bounds (the range set
//! text in an error, or where the round-robin cursor wraps). Parse errors
//! are ADD errors with the reference's text. CNI_ARGS and `args` show as the
//! addresses handed out, or as the leftover list of "failed to allocate all
//! requested IPs".

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::{add, call, cidr, fails, fails_with, ip, ok, result, Ip};

/// The Go tests' network config around `ipam` (`top`: extra top-level keys).
fn conf(version: &str, dir: &Path, ipam: Value, top: Value) -> String {
    super::conf(version, "mynet", dir, ipam, top)
}

fn entry(addr: &str, gw: &str) -> Ip {
    Ip {
        address: cidr(addr),
        gateway: Some(ip(gw)),
    }
}

/// Seeds `last_reserved_ip.<set>` of network mynet.
fn cursor(dir: &Path, set: usize, addr: &str) {
    let net = dir.join("mynet");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(net.join(format!("last_reserved_ip.{set}")), addr).unwrap();
}

/// The leftover addresses of "failed to allocate all requested IPs: a b c"
/// (the reference lists them in map order, so as a set).
#[track_caller]
fn leftovers(msg: &str) -> BTreeSet<String> {
    let prefix = "failed to allocate all requested IPs: ";
    assert!(msg.starts_with(prefix), "{msg}");
    let rest = &msg[prefix.len()..];
    // Our detail follows the list in parentheses.
    let list = rest.split(" (").next().unwrap();
    list.split(' ').map(str::to_string).collect()
}

fn set(l: &[&str]) -> BTreeSet<String> {
    l.iter().map(|s| s.to_string()).collect()
}

/// ADD with `ipam` (in a fresh data directory, no extra top-level keys) fails with the
/// reference's text for what LoadIPAMConfig refuses.
#[track_caller]
fn add_fails_with(version: &str, ipam: Value, reference: &str) {
    let tmp = TempDir::new().unwrap();
    let c = conf(version, tmp.path(), ipam, json!({}));
    fails_with(&add("a", "eth0", &c), reference);
}

/// Go: "Should parse an old-style config".
#[test]
fn should_parse_an_old_style_config() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        "0.3.1",
        tmp.path(),
        json!({
            "subnet": "10.1.2.0/24",
            "rangeStart": "10.1.2.9",
            "rangeEnd": "10.1.2.20",
            "gateway": "10.1.2.30"
        }),
        json!({}),
    );
    let v = ok(&add("a", "eth0", &c));
    assert_eq!(v["cniVersion"], "0.3.1");
    let r = result(&v);
    // RangeStart 10.1.2.9, Gateway 10.1.2.30, Subnet 10.1.2.0/24
    assert_eq!(r.ips, [entry("10.1.2.9/24", "10.1.2.30")]);
    // RangeEnd 10.1.2.20: the walk wraps after it
    cursor(tmp.path(), 0, "10.1.2.20");
    let r = result(&ok(&add("b", "eth0", &c)));
    assert_eq!(r.ips, [entry("10.1.2.10/24", "10.1.2.30")]);
}

/// Go: "Should parse a new-style config".
#[test]
fn should_parse_a_new_style_config() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        "0.3.1",
        tmp.path(),
        json!({"ranges": [
            [
                {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30"},
                {"subnet": "10.1.4.0/24"}
            ],
            [{"subnet": "11.1.2.0/24", "rangeStart": "11.1.2.9", "rangeEnd": "11.1.2.20", "gateway": "11.1.2.30"}]
        ]}),
        json!({}),
    );
    let v = ok(&add("a", "eth0", &c));
    assert_eq!(v["cniVersion"], "0.3.1");
    let r = result(&v);
    assert_eq!(
        r.ips,
        [
            entry("10.1.2.9/24", "10.1.2.30"),
            entry("11.1.2.9/24", "11.1.2.30")
        ]
    );
    // Set 0: after RangeEnd 10.1.2.20 comes the second range, RangeStart
    // 10.1.4.1 = its Gateway (skipped); set 1 wraps after 11.1.2.20.
    cursor(tmp.path(), 0, "10.1.2.20");
    cursor(tmp.path(), 1, "11.1.2.20");
    let r = result(&ok(&add("b", "eth0", &c)));
    assert_eq!(
        r.ips,
        [
            entry("10.1.4.2/24", "10.1.4.1"),
            entry("11.1.2.10/24", "11.1.2.30")
        ]
    );
    // The second range ends at 10.1.4.254, then back to the first range.
    cursor(tmp.path(), 0, "10.1.4.254");
    let r = result(&ok(&add("c", "eth0", &c)));
    assert_eq!(r.ips[0], entry("10.1.2.10/24", "10.1.2.30"));
}

/// Go: "Should parse a mixed config with runtime args".
#[test]
fn should_parse_a_mixed_config_with_runtime_args() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        "0.3.1",
        tmp.path(),
        json!({
            "subnet": "10.1.2.0/24",
            "rangeStart": "10.1.2.9",
            "rangeEnd": "10.1.2.20",
            "gateway": "10.1.2.30",
            "ranges": [[
                {"subnet": "11.1.2.0/24", "rangeStart": "11.1.2.9", "rangeEnd": "11.1.2.20", "gateway": "11.1.2.30"}
            ]]
        }),
        json!({"runtimeConfig": {"irrelevant": "a", "ipRanges": [[{"subnet": "12.1.3.0/24"}]]}}),
    );
    let v = ok(&add("a", "eth0", &c));
    assert_eq!(v["cniVersion"], "0.3.1");
    let r = result(&v);
    // The RuntimeConfig should always be first
    assert_eq!(
        r.ips,
        [
            entry("12.1.3.2/24", "12.1.3.1"),
            entry("10.1.2.9/24", "10.1.2.30"),
            entry("11.1.2.9/24", "11.1.2.30")
        ]
    );
    // RangeStart 12.1.3.1 (the gateway, skipped) and RangeEnd 12.1.3.254.
    fails_with(
        &call("ADD", "b", "eth0", &c, Some("IP=12.1.3.2")),
        "failed to allocate for range 0: requested IP address 12.1.3.2 is not available in range set 12.1.3.1-12.1.3.254",
    );
}

fn cni_args_conf(dir: &Path) -> String {
    conf(
        "0.3.1",
        dir,
        json!({"ranges": [[
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30"}
        ]]}),
        json!({}),
    )
}

/// ADD with CNI_ARGS `cni_args` hands out the address `want`, and only it.
#[track_caller]
fn check_cni_args(cni_args: &str, want: &str) {
    let tmp = TempDir::new().unwrap();
    let c = cni_args_conf(tmp.path());
    let r = result(&ok(&call("ADD", "a", "eth0", &c, Some(cni_args))));
    assert_eq!(r.ips[0].address.addr(), ip(want));
    assert_eq!(r.ips.len(), 1);
}

/// Go: "Should parse CNI_ARGS env" "without prefix".
#[test]
fn should_parse_cni_args_env_without_prefix() {
    check_cni_args("IP=10.1.2.10", "10.1.2.10");
}

/// Go: "Should parse CNI_ARGS env" "with prefix".
#[test]
fn should_parse_cni_args_env_with_prefix() {
    check_cni_args("IP=10.1.2.11/24", "10.1.2.11");
}

fn config_args_conf(dir: &Path, ips: Value) -> String {
    conf(
        "0.3.1",
        dir,
        json!({"ranges": [
            [{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30"}],
            [{"subnet": "11.1.2.0/24", "rangeStart": "11.1.2.9", "rangeEnd": "11.1.2.20", "gateway": "11.1.2.30"}],
            [{"subnet": "2001:db8:1::/64"}]
        ]}),
        json!({"args": {"cni": {"ips": ips}}}),
    )
}

/// IPArgs = [10.1.2.10 (CNI_ARGS), 10.1.2.11, 11.11.11.11, 2001:db8:1::11]:
/// through ADD, the first address of range set 0 (CNI_ARGS comes first) and
/// 2001:db8:1::11 are placed; 10.1.2.11 (a second one for set 0) and
/// 11.11.11.11 (outside every set) are left over, and nothing stays reserved.
/// `ips` are the config's `args`, `cni_args` the CNI_ARGS.
#[track_caller]
fn check_config_args(ips: Value, cni_args: &str) {
    let tmp = TempDir::new().unwrap();
    let c = config_args_conf(tmp.path(), ips);
    let msg = fails(&call("ADD", "a", "eth0", &c, Some(cni_args)));
    assert_eq!(leftovers(&msg), set(&["10.1.2.11", "11.11.11.11"]), "{msg}");
    let left: Vec<_> = super::super::common::reservations(&tmp.path().join("mynet"))
        .into_keys()
        .collect();
    assert!(left.is_empty(), "reserved after a failed ADD: {left:?}");
}

/// Go: "Should parse config args" "without prefix".
#[test]
fn should_parse_config_args_without_prefix() {
    check_config_args(
        json!(["10.1.2.11", "11.11.11.11", "2001:db8:1::11"]),
        "IP=10.1.2.10",
    );
}

/// Go: "Should parse config args" "with prefix".
#[test]
fn should_parse_config_args_with_prefix() {
    check_config_args(
        json!(["10.1.2.11/24", "11.11.11.11/24", "2001:db8:1::11/64"]),
        "IP=10.1.2.10/24",
    );
}

/// Go: "Should detect overlap between rangesets".
#[test]
fn should_detect_overlap_between_rangesets() {
    add_fails_with(
        "0.3.1",
        json!({"ranges": [
            [{"subnet": "10.1.2.0/24"}, {"subnet": "10.2.2.0/24"}],
            [{"subnet": "10.1.4.0/24"}, {"subnet": "10.1.6.0/24"}, {"subnet": "10.1.8.0/24"}, {"subnet": "10.1.2.0/24"}]
        ]}),
        "range set 0 overlaps with 1",
    );
}

/// Go: "Should detect overlap within rangeset".
#[test]
fn should_detect_overlap_within_rangeset() {
    add_fails_with(
        "0.3.1",
        json!({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "10.1.2.0/24"}]]}),
        "invalid range set 0: subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap",
    );
}

/// Go: "should error on rangesets with different families".
#[test]
fn should_error_on_rangesets_with_different_families() {
    add_fails_with(
        "0.3.1",
        json!({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "2001:db8:5::/64"}]]}),
        "invalid range set 0: mixed address families",
    );
}

/// Go: "Should should error on too many ranges".
#[test]
fn should_should_error_on_too_many_ranges() {
    add_fails_with(
        "0.2.0",
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "11.1.2.0/24"}]]}),
        "CNI version 0.2.0 does not support more than 1 address per family",
    );
}

/// Go: "Should allow one v4 and v6 range for 0.2.0".
#[test]
fn should_allow_one_v4_and_v6_range_for_0_2_0() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        "0.2.0",
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8:1::/48"}]]}),
        json!({}),
    );
    ok(&add("a", "eth0", &c));
}

/// Go: "Should parse custom IPs from runtime configuration". IPArgs =
/// [192.168.0.1, 192.168.0.5, 2001:db8::1]: none is in 10.1.2.0/24, so ADD
/// lists all three as left over.
#[test]
fn should_parse_custom_ips_from_runtime_configuration() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        "0.3.1",
        tmp.path(),
        json!({"subnet": "10.1.2.0/24"}),
        json!({"runtimeConfig": {"ips": ["192.168.0.1", "192.168.0.5/24", "2001:db8::1/64"]}}),
    );
    let msg = fails(&add("a", "eth0", &c));
    assert_eq!(
        leftovers(&msg),
        set(&["192.168.0.1", "192.168.0.5", "2001:db8::1"])
    );
}
