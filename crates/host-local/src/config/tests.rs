//! Unit tests of configuration loading (decoding, defaults, validation, messages).
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
    assert_eq!(
        c.store,
        StoreConfig::Disk {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR)
        }
    );
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
    let e =
        load(json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.5"}))
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
fn notes_for_what_is_served_although_it_looks_wrong() {
    let c = load(json!({"subnet": "10.0.0.0/24", "gateway": "10.9.0.1"})).unwrap();
    assert_eq!(
        c.notes(),
        ["host-local: note: range set 0: gateway 10.9.0.1 is outside subnet 10.0.0.0/24; served as the reference serves it"]
    );
    let ipam = json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]});
    let c = load_ipam(SpecVersion::V0_2_0, &ipam).unwrap();
    assert_eq!(
        c.notes(),
        ["host-local: note: route to ::/0 dropped: a 0.2.0 result carries no IPv6 address"]
    );
    assert!(load_ipam(SpecVersion::V0_3_0, &ipam)
        .unwrap()
        .notes()
        .is_empty());
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
    let c = doc(
        r#"{"IPAM": {"Subnet": "10.0.0.0/24", "RangeStart": "10.0.0.7", "RANGEEND": "10.0.0.9",
        "Routes": [{"Dst": "0.0.0.0/0", "GW": "10.0.0.1"}], "ResolvConf": "/etc/r", "DataDir": "/d",
        "Store": {"TYPE": "disk"}}}"#,
    )
    .unwrap();
    let r = &c.ranges[0].0[0];
    assert_eq!(
        (r.start.to_string(), r.end.to_string()),
        ("10.0.0.7".into(), "10.0.0.9".into())
    );
    assert_eq!(c.routes[0].gw.unwrap().to_string(), "10.0.0.1");
    assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/r")));
    assert_eq!(
        c.store,
        StoreConfig::Disk {
            data_dir: PathBuf::from("/d")
        }
    );
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
    // "subnet": null beside ranges is no old-style range; "" is an error, as in Go.
    let c = doc(r#"{"ipam": {"subnet": null, "ranges": [[{"subnet": "10.1.0.0/24"}]]}}"#);
    assert_eq!(c.unwrap().ranges.len(), 1);
    let e = doc(r#"{"ipam": {"subnet": "", "ranges": [[{"subnet": "10.1.0.0/24"}]]}}"#);
    let e = e.unwrap_err().to_string();
    assert!(e.starts_with("invalid CIDR address: "), "{e}");
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
    let e =
        doc(r#"{"ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": 5}]]}}"#).unwrap_err();
    assert!(e.to_string().contains("ipam.ranges[0][1].subnet"), "{e}");
    assert!(e.to_string().starts_with("json: "), "{e}");
    let text =
        r#"{"ipam": {"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0", "mtu": "1400"}]}}"#;
    let d = Doc::parse(text.as_bytes()).unwrap();
    let args = CniArgs::parse("").unwrap();
    let e = IpamConfig::from_doc("n", SpecVersion::V1_1_0, &d, &args).unwrap_err();
    assert!(e.to_string().contains("ipam.routes[0].mtu"), "{e}");
    // Below 1.1.0 the reference's routes have no mtu: the key is ignored.
    let c = IpamConfig::from_doc("n", SpecVersion::V1_0_0, &d, &args).unwrap();
    assert_eq!(c.routes[0].mtu, None);
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
    let c = load(
        json!({"ranges": [[{"subnet": "10.0.0.0/24", "exclude": ["10.0.0.10", "10.0.0.16/28"]}]]}),
    )
    .unwrap();
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
