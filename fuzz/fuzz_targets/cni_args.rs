//! CNI_ARGS: `K=V;K2=V2`.
#![no_main]

use cni_proto::CniArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let Ok(a) = CniArgs::parse(s) else { return };
    // What parses prints back as it came and parses again to the same.
    let printed = a.to_string();
    assert_eq!(printed, s);
    assert_eq!(CniArgs::parse(&printed).expect("reparse"), a);
    let _ = a.get("IP");
    let _ = a.check_known(host_local::config::KNOWN_ARGS);
});
