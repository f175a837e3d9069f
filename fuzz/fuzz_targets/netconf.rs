//! The network configuration on stdin: the envelope (NetConf::parse), then
//! the IPAM section (IpamConfig::from_doc), the GC list and the prevResult, as
//! the plugin reads them. Optional CNI_ARGS in front: `<args>\n<json>` when
//! the input starts with `A`.
#![no_main]

use cni_proto::{CniArgs, CniResult, NetConf, SpecVersion};
use host_local::config::IpamConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (args, json) = match data.strip_prefix(b"A") {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (std::str::from_utf8(&rest[..i]).ok(), &rest[i + 1..]),
            None => (None, rest),
        },
        None => (None, data),
    };
    let args = match args.map(CniArgs::parse) {
        Some(Ok(a)) => a,
        Some(Err(_)) => return,
        None => CniArgs::default(),
    };
    let Ok(conf) = NetConf::parse(json, &SpecVersion::ALL) else {
        return;
    };
    // The name was validated: it becomes a directory name.
    let name = conf.name.as_str();
    assert!(!name.is_empty() && !name.contains('/') && name != "." && name != "..");
    let _ = host_local::plugin::valid_attachments(&conf.doc);
    if let Some(prev) = &conf.prev_result {
        let _ = CniResult::from_wire(prev, conf.cni_version);
    }
    if let Ok(cfg) = IpamConfig::from_doc(name, conf.cni_version, &conf.doc, &args) {
        // What the store will use as paths: absolute, no `..`, no NUL.
        if let host_local::config::StoreConfig::Disk { data_dir } = &cfg.store {
            let dd = data_dir.to_str().expect("dataDir is UTF-8");
            assert!(dd.starts_with('/'), "{dd:?}");
            assert!(!dd.contains('\0'));
            assert!(!dd.split('/').any(|c| c == ".."), "{dd:?}");
        }
        for set in &cfg.ranges {
            let _ = set.capacity();
            let _ = set.to_string();
        }
    }
});
