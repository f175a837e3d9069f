//! Port of backend/allocator/range_set_test.go (v1.1.1): "range sets".
//! Membership shows as which requested addresses ADD hands out (and with
//! which range's gateway); overlaps as ADD errors.

use serde_json::{json, Value};
use tempfile::TempDir;

use super::{add, call, cidr, fails_with, ip, ok, result, Ip};

fn conf(dir: &std::path::Path, ranges: Value) -> String {
    super::conf(
        "1.0.0",
        "mynet",
        dir,
        json!({ "ranges": ranges }),
        json!({}),
    )
}

/// Go: "should detect set membership correctly". `RangeFor`'s error text
/// ("192.168.99.99 not in range set ...") never reaches the binary's output:
/// main.go only hands an address to the allocator after `Contains`, so a
/// non-member is reported as left over (docs/upstream-tests.md).
#[test]
fn should_detect_set_membership_correctly() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        tmp.path(),
        json!([[{"subnet": "192.168.0.0/24"}, {"subnet": "172.16.1.0/24"}]]),
    );
    // Contains(192.168.0.55) and RangeFor -> &p[0] (its gateway).
    let r = result(&ok(&call("ADD", "a", "eth0", &c, Some("IP=192.168.0.55"))));
    assert_eq!(
        r.ips,
        [Ip {
            address: cidr("192.168.0.55/24"),
            gateway: Some(ip("192.168.0.1")),
        }]
    );
    // RangeFor(192.168.99.99) fails.
    fails_with(
        &call("ADD", "b", "eth0", &c, Some("IP=192.168.99.99")),
        "failed to allocate all requested IPs: 192.168.99.99",
    );
}

/// Go: "should discover overlaps within a set".
#[test]
fn should_discover_overlaps_within_a_set() {
    let tmp = TempDir::new().unwrap();
    let c = conf(
        tmp.path(),
        json!([[{"subnet": "192.168.0.0/20"}, {"subnet": "192.168.2.0/24"}]]),
    );
    fails_with(
        &add("a", "eth0", &c),
        "invalid range set 0: subnets 192.168.0.1-192.168.15.254 and 192.168.2.1-192.168.2.254 overlap",
    );
}

/// Go: "should discover overlaps outside a set" (both orders).
#[test]
fn should_discover_overlaps_outside_a_set() {
    for sets in [
        json!([[{"subnet": "192.168.0.0/20"}], [{"subnet": "192.168.2.0/24"}]]),
        json!([[{"subnet": "192.168.2.0/24"}], [{"subnet": "192.168.0.0/20"}]]),
    ] {
        let tmp = TempDir::new().unwrap();
        let c = conf(tmp.path(), sets);
        fails_with(&add("a", "eth0", &c), "range set 0 overlaps with 1");
    }
}
