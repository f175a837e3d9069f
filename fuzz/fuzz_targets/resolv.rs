//! resolv.conf text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let dns = host_local::resolv::parse(&text);
    for s in dns
        .nameservers
        .iter()
        .chain(&dns.search)
        .chain(&dns.options)
    {
        assert!(
            !s.is_empty() && !s.chars().any(char::is_whitespace),
            "{s:?}"
        );
    }
    // The parsed DNS goes into every result version.
    let r = cni_proto::CniResult {
        ips: vec![cni_proto::IpConfig {
            address: "10.0.0.2/24".parse().unwrap(),
            gateway: None,
            interface: None,
        }],
        dns,
        ..Default::default()
    };
    for v in cni_proto::SpecVersion::ALL {
        r.to_wire(v)
            .expect("a one-address result converts to every version");
    }
});
