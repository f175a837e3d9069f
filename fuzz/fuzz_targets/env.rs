//! The environment: Env::from_lookup over a fuzzed map of the CNI_*
//! variables (values are arbitrary bytes, not necessarily UTF-8).
#![no_main]

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use cni_proto::Env;
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 6] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

fuzz_target!(|vars: Vec<(u8, Vec<u8>)>| {
    let mut map: HashMap<&str, OsString> = HashMap::new();
    for (k, v) in vars {
        map.insert(KEYS[usize::from(k) % KEYS.len()], OsString::from_vec(v));
    }
    let lookup = |k: &str| map.get(k).cloned();
    if let Ok(env) = Env::from_lookup(&lookup) {
        if let Some(id) = &env.container_id {
            let id = id.as_str();
            assert!(!id.is_empty() && !id.contains('/') && id != "." && id != "..");
        }
        if let Some(ifname) = &env.ifname {
            let i = ifname.as_str();
            assert!(!i.is_empty() && i.len() <= 15 && !i.contains('/'));
        }
        let _ = env.args.to_string();
    }
});
