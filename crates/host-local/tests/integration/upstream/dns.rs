//! Port of plugins/ipam/host-local/dns_test.go (v1.1.1): "parsing
//! resolv.conf". `parse` writes the contents to a file; here that file is the
//! config's `resolvConf` and the parsed value is the ADD result's `dns`.

use serde_json::json;
use tempfile::TempDir;

use super::{add, ok, result, Res};

/// parse(contents) through ADD: the result's DNS.
fn parse(contents: &str) -> Res {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("host_local_resolv");
    std::fs::write(&path, contents).unwrap();
    let c = super::conf(
        "1.0.0",
        "mynet",
        tmp.path(),
        json!({"subnet": "10.1.2.0/24", "resolvConf": path.to_str().unwrap()}),
        json!({}),
    );
    result(&ok(&add("a", "eth0", &c)))
}

fn strings(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

/// `Expect(*dns).Should(Equal(types.DNS{...}))`.
#[track_caller]
fn dns_equal(r: &Res, nameservers: &[&str], domain: &str, search: &[&str], options: &[&str]) {
    assert_eq!(r.nameservers, strings(nameservers));
    assert_eq!(r.domain, domain);
    assert_eq!(r.search, strings(search));
    assert_eq!(r.options, strings(options));
}

/// Go: "parses a simple resolv.conf file".
#[test]
fn parses_a_simple_resolv_conf_file() {
    let r = parse(
        "
		nameserver 192.0.2.0
		nameserver 192.0.2.1
		",
    );
    dns_equal(&r, &["192.0.2.0", "192.0.2.1"], "", &[], &[]);
}

/// Go: "ignores comments".
#[test]
fn ignores_comments() {
    let r = parse(
        "
nameserver 192.0.2.0
;nameserver 192.0.2.1
",
    );
    dns_equal(&r, &["192.0.2.0"], "", &[], &[]);
}

/// Go: "parses all fields".
#[test]
fn parses_all_fields() {
    let r = parse(
        "
nameserver 192.0.2.0
nameserver 192.0.2.2
domain example.com
;nameserver comment
#nameserver comment
search example.net example.org
search example.gov
options one two three
options four
",
    );
    dns_equal(
        &r,
        &["192.0.2.0", "192.0.2.2"],
        "example.com",
        &["example.net", "example.org", "example.gov"],
        &["one", "two", "three", "four"],
    );
}
