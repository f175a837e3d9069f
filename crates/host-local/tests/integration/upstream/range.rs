//! Port of backend/allocator/range_test.go (v1.1.1): "IP ranges". A Range
//! is a config with that one range; Canonicalize's defaults show as the
//! first address handed out (after RangeStart, skipping the Gateway), the
//! gateway in the result, and the range's text `RangeStart-RangeEnd` in the
//! error for a taken requested address. Canonicalize's errors are ADD
//! errors, which the reference prefixes with `invalid range set 0: `.
//! `Contains` shows as whether a requested address is handed out.
//! `Overlaps` shows as two range sets being refused ("range set 0 overlaps
//! with 1") or served.

use std::path::Path;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::{add, call, cidr, fails_with, ip, ok, result, Ip};

/// A config whose one range set holds the range `r`.
fn one_range(dir: &Path, r: Value) -> String {
    super::conf("1.0.0", "mynet", dir, json!({"ranges": [[r]]}), json!({}))
}

/// Checks Canonicalize's result for `r`: the first ADD gets `first` with
/// `gateway`; a request for `first` by another container then names the
/// range as `start-end`.
#[track_caller]
fn canonical(r: Value, prefix: u8, first: &str, gateway: &str, start: &str, end: &str) {
    let tmp = TempDir::new().unwrap();
    let c = one_range(tmp.path(), r);
    let res = result(&ok(&add("a", "eth0", &c)));
    assert_eq!(
        res.ips,
        [Ip {
            address: cidr(&format!("{first}/{prefix}")),
            gateway: Some(ip(gateway)),
        }]
    );
    // The reference prints addresses as Go's net.IP.String (RFC 5952, as
    // Rust's Display): 2001:DB8:1::ffff:ffff:ffff:ffff is 2001:db8:1:0:ffff:...
    let (start, end) = (ip(start), ip(end));
    fails_with(
        &call("ADD", "b", "eth0", &c, Some(&format!("IP={first}"))),
        &format!(
            "failed to allocate for range 0: requested IP address {first} is not available in range set {start}-{end}"
        ),
    );
}

/// Go: "should generate sane defaults for ipv4 with a clean prefix".
#[test]
fn should_generate_sane_defaults_for_ipv4_with_a_clean_prefix() {
    canonical(
        json!({"subnet": "192.0.2.0/24"}),
        24,
        "192.0.2.2",
        "192.0.2.1",
        "192.0.2.1",
        "192.0.2.254",
    );
}

/// Go: "should generate sane defaults for a smaller ipv4 subnet".
#[test]
fn should_generate_sane_defaults_for_a_smaller_ipv4_subnet() {
    canonical(
        json!({"subnet": "192.0.2.0/25"}),
        25,
        "192.0.2.2",
        "192.0.2.1",
        "192.0.2.1",
        "192.0.2.126",
    );
}

/// ADD with a range of `subnet` fails with the reference's text.
#[track_caller]
fn refused(r: Value, reference: &str) {
    let tmp = TempDir::new().unwrap();
    let c = one_range(tmp.path(), r);
    fails_with(&add("a", "eth0", &c), reference);
}

/// Go: "should reject ipv4 subnet using a masked address".
#[test]
fn should_reject_ipv4_subnet_using_a_masked_address() {
    refused(
        json!({"subnet": "192.0.2.12/24"}),
        "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 192.0.2.0",
    );
}

/// Go: "should reject ipv6 subnet using a masked address".
#[test]
fn should_reject_ipv6_subnet_using_a_masked_address() {
    refused(
        json!({"subnet": "2001:DB8:1::24:19ff:fee1:c44a/64"}),
        "invalid range set 0: Network has host bits set. For a subnet mask of length 64 the network address is 2001:db8:1::",
    );
}

/// Go: "should reject ipv6 prefix with host bit set".
#[test]
fn should_reject_ipv6_prefix_with_host_bit_set() {
    refused(
        json!({"subnet": "2001:DB8:24:19ff::/63"}),
        "invalid range set 0: Network has host bits set. For a subnet mask of length 63 the network address is 2001:db8:24:19fe::",
    );
}

/// Go: "should reject ipv4 network with host bit set".
#[test]
fn should_reject_ipv4_network_with_host_bit_set() {
    refused(
        json!({"subnet": "192.168.127.0/23"}),
        "invalid range set 0: Network has host bits set. For a subnet mask of length 23 the network address is 192.168.126.0",
    );
}

/// Go: "should generate sane defaults for ipv6 with a clean prefix".
#[test]
fn should_generate_sane_defaults_for_ipv6_with_a_clean_prefix() {
    canonical(
        json!({"subnet": "2001:DB8:1::/64"}),
        64,
        "2001:db8:1::2",
        "2001:db8:1::1",
        "2001:DB8:1::1",
        "2001:DB8:1::ffff:ffff:ffff:ffff",
    );
}

/// Go: "Should reject a network that's too small".
#[test]
fn should_reject_a_network_thats_too_small() {
    refused(
        json!({"subnet": "192.0.2.0/31"}),
        "invalid range set 0: Network 192.0.2.0/31 too small to allocate from",
    );
}

/// Go: "should reject invalid RangeStart and RangeEnd specifications".
#[test]
fn should_reject_invalid_range_start_and_range_end_specifications() {
    refused(
        json!({"subnet": "192.0.2.0/24", "rangeStart": "192.0.3.0"}),
        "invalid range set 0: RangeStart 192.0.3.0 not in network 192.0.2.0/24",
    );
    refused(
        json!({"subnet": "192.0.2.0/24", "rangeEnd": "192.0.4.0"}),
        "invalid range set 0: RangeEnd 192.0.4.0 not in network 192.0.2.0/24",
    );
    // rangeStart .50 after rangeEnd .40: the reference's (misleading) text.
    refused(
        json!({"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.50", "rangeEnd": "192.0.2.40"}),
        "invalid range set 0: RangeStart 192.0.2.50 not in network 192.0.2.0/24",
    );
}

/// Go: "should parse all fields correctly".
#[test]
fn should_parse_all_fields_correctly() {
    canonical(
        json!({"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.40", "rangeEnd": "192.0.2.50", "gateway": "192.0.2.254"}),
        24,
        "192.0.2.40",
        "192.0.2.254",
        "192.0.2.40",
        "192.0.2.50",
    );
}

/// Requests each address by a fresh container: handed out iff `contains`.
#[track_caller]
fn contains(r: Value, cases: &[(&str, bool)]) {
    let tmp = TempDir::new().unwrap();
    let c = one_range(tmp.path(), r);
    for (i, (addr, inside)) in cases.iter().enumerate() {
        let out = call(
            "ADD",
            &format!("c{i}"),
            "eth0",
            &c,
            Some(&format!("IP={addr}")),
        );
        if *inside {
            let res = result(&ok(&out));
            assert_eq!(res.ips[0].address.addr(), ip(addr));
        } else {
            fails_with(
                &out,
                &format!("failed to allocate all requested IPs: {addr}"),
            );
        }
    }
}

/// Go: "should accept v4 IPs in range and reject IPs out of range".
#[test]
fn should_accept_v4_ips_in_range_and_reject_ips_out_of_range() {
    contains(
        json!({"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.40", "rangeEnd": "192.0.2.50", "gateway": "192.0.2.254"}),
        &[
            ("192.0.3.0", false),
            ("192.0.2.39", false),
            ("192.0.2.40", true),
            ("192.0.2.50", true),
            ("192.0.2.51", false),
        ],
    );
}

/// Go: "should accept v6 IPs in range and reject IPs out of range".
#[test]
fn should_accept_v6_ips_in_range_and_reject_ips_out_of_range() {
    contains(
        json!({"subnet": "2001:DB8:1::/64", "rangeStart": "2001:db8:1::40", "rangeEnd": "2001:db8:1::50"}),
        &[
            ("2001:db8:2::", false),
            ("2001:db8:1::39", false),
            ("2001:db8:1::40", true),
            ("2001:db8:1::50", true),
            ("2001:db8:1::51", false),
        ],
    );
}

/// One DescribeTable("Detecting overlap") entry: the two ranges as two range
/// sets, in both orders ("operation should be commutative").
fn overlap(r1: Value, r2: Value, expected: bool) {
    for (a, b) in [(&r1, &r2), (&r2, &r1)] {
        let tmp = TempDir::new().unwrap();
        let c = super::conf(
            "1.0.0",
            "mynet",
            tmp.path(),
            json!({"ranges": [[a], [b]]}),
            json!({}),
        );
        let out = add("a", "eth0", &c);
        if expected {
            fails_with(&out, "range set 0 overlaps with 1");
        } else {
            let res = result(&ok(&out));
            assert_eq!(res.ips.len(), 2);
        }
    }
}

/// Go: "Detecting overlap" entry "non-overlapping".
#[test]
fn detecting_overlap_non_overlapping() {
    overlap(
        json!({"subnet": "10.0.0.0/24"}),
        json!({"subnet": "10.0.1.0/24"}),
        false,
    );
}

/// Go: "Detecting overlap" entry "different families" (the bits overlap).
#[test]
fn detecting_overlap_different_families() {
    overlap(
        json!({"subnet": "0.0.0.0/24"}),
        json!({"subnet": "::/24"}),
        false,
    );
}

/// Go: "Detecting overlap" entry "Identical".
#[test]
fn detecting_overlap_identical() {
    overlap(
        json!({"subnet": "10.0.0.0/24"}),
        json!({"subnet": "10.0.0.0/24"}),
        true,
    );
}

/// Go: "Detecting overlap" entry "Containing".
#[test]
fn detecting_overlap_containing() {
    overlap(
        json!({"subnet": "10.0.0.0/20"}),
        json!({"subnet": "10.0.1.0/24"}),
        true,
    );
}

/// Go: "Detecting overlap" entry "same subnet, non overlapping start + end".
#[test]
fn detecting_overlap_same_subnet_non_overlapping_start_end() {
    overlap(
        json!({"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.127"}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.128"}),
        false,
    );
}

/// Go: "Detecting overlap" entry "same subnet, overlapping start + end".
#[test]
fn detecting_overlap_same_subnet_overlapping_start_end() {
    overlap(
        json!({"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.127"}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.127"}),
        true,
    );
}
