//! The whole plugin (cni_proto::run with HostLocal) on an in-memory store
//! that persists across the steps of one input: a short sequence of
//! commands (ADD, DEL, CHECK, GC, STATUS, VERSION, none, unknown) with
//! environment variants, all fed the same fuzzed network configuration.
//!
//! Input: byte 0 = number of steps (mod 9); then 3 bytes per step (command,
//! attachment, environment variant); the rest is stdin.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::rc::Rc;

use host_local::store::memory::MemoryStore;
use host_local::HostLocal;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const COMMANDS: [&str; 9] = [
    "ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "add", "ADD",
];
const IDS: [(&str, &str); 8] = [
    ("c1", "eth0"),
    ("c1", "eth1"),
    ("c2", "eth0"),
    ("c3", "net1"),
    ("-bad", "eth0"),
    ("c1", "a/b"),
    ("a.b_c-D", "123456789012345"),
    ("c1", "1234567890123456"),
];
const ARGS: [&str; 8] = [
    "",
    "IgnoreUnknown=1",
    "IP=10.0.0.5",
    "IP=garbage",
    "K8S_POD_NAME=x",
    "IgnoreUnknown=1;IP=2001:db8::5;K=V",
    "IgnoreUnknown=yes",
    "=;",
];

/// resolvConf names a file the plugin opens and reads: the fuzzer must not
/// point it at a FIFO or a terminal (trusted configuration, see SECURITY.md).
fn resolv_conf_is_safe(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().all(|(k, v)| {
            let safe_value = match v {
                Value::String(s) => {
                    matches!(
                        s.as_str(),
                        "" | "/etc/resolv.conf" | "/nonexistent/resolv.conf"
                    )
                }
                _ => true,
            };
            (!k.eq_ignore_ascii_case("resolvconf") || safe_value) && resolv_conf_is_safe(v)
        }),
        Value::Array(a) => a.iter().all(resolv_conf_is_safe),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 9);
    if rest.len() < 3 * n {
        return;
    }
    let (steps, stdin) = rest.split_at(3 * n);
    if let Ok(v) = serde_json::from_slice::<Value>(stdin) {
        if !resolv_conf_is_safe(&v) {
            return;
        }
    }
    let shared = Rc::new(RefCell::new(MemoryStore::new()));
    // A memory store that persists across the steps (the plugin drops its
    // store after every command).
    let mut plugin = HostLocal::new(test_support::PersistStore::opener(shared.clone()));
    for step in steps.chunks(3) {
        let command = COMMANDS[usize::from(step[0]) % COMMANDS.len()];
        let (id, ifname) = IDS[usize::from(step[1]) % IDS.len()];
        let variant = step[2];
        let mut map: HashMap<&str, OsString> = HashMap::new();
        map.insert("CNI_COMMAND", command.into());
        map.insert("CNI_CONTAINERID", id.into());
        map.insert("CNI_IFNAME", ifname.into());
        if variant & 0x80 == 0 {
            map.insert("CNI_NETNS", "/var/run/netns/x".into());
        }
        if variant & 0x40 == 0 {
            map.insert("CNI_PATH", "/opt/cni/bin:/usr/lib/cni".into());
        }
        let args = ARGS[usize::from(variant & 7)];
        if !args.is_empty() {
            map.insert("CNI_ARGS", args.into());
        }
        let lookup = |k: &str| map.get(k).cloned();
        let before = shared.borrow().reservations.clone();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let outcome = cni_proto::run(&mut plugin, &lookup, &mut &stdin[..], &mut out, &mut err);
        assert!(outcome.exit_code == 0 || outcome.exit_code == 1);
        if outcome.exit_code != 0 || !out.is_empty() {
            // Whatever is printed is one JSON document.
            let v: Value = serde_json::from_slice(&out).expect("stdout is JSON");
            if outcome.exit_code != 0 {
                assert!(v["code"].as_u64().is_some(), "error without code: {v}");
                assert!(v["msg"].as_str().is_some(), "error without msg: {v}");
                // A failed command changes nothing (GC may have removed some
                // before failing on others; DEL is best effort).
                if !matches!(command, "GC" | "DEL") {
                    assert_eq!(
                        shared.borrow().reservations,
                        before,
                        "failed {command} changed the store"
                    );
                }
            }
        }
        let after = shared.borrow().reservations.clone();
        match command {
            "CHECK" | "STATUS" | "VERSION" | "" => {
                assert_eq!(after, before, "{command:?} changed the store")
            }
            "ADD" if outcome.exit_code == 0 => {
                // Nothing another attachment held was taken over.
                for (ip, owner) in &before {
                    assert_eq!(after.get(ip), Some(owner), "ADD changed {ip}");
                }
            }
            _ => {}
        }
    }
});
