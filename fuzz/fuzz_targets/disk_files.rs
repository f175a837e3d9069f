//! The disk store's readers on a real directory (tmpfs when available):
//! fuzzed bytes planted as the cursor file `last_reserved_ip.0`, as a
//! foreign reservation file `10.0.0.3`, and, after a first ADD has built
//! the index, appended to the index bucket files; then ADD, CHECK, ADD, DEL, DEL
//! through host_local::run with the production DiskStore.
//!
//! Input: byte 0 = cursor length, byte 1 = reservation length (0xff: no
//! reservation file), then those pieces, the rest is the bucket text.
#![no_main]

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use host_local::store::Owner;
use libfuzzer_sys::fuzz_target;

fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("host-local-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    })
}

fn invoke(command: &str, id: &str, stdin: &str) -> (i32, String) {
    let mut map: HashMap<&str, OsString> = HashMap::new();
    map.insert("CNI_COMMAND", command.into());
    map.insert("CNI_CONTAINERID", id.into());
    map.insert("CNI_IFNAME", "eth0".into());
    map.insert("CNI_NETNS", "/var/run/netns/x".into());
    map.insert("CNI_PATH", "/opt/cni/bin".into());
    let lookup = |k: &str| map.get(k).cloned();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let o = host_local::run(&lookup, &mut stdin.as_bytes(), &mut out, &mut err);
    (o.exit_code, String::from_utf8_lossy(&out).into_owned())
}

fn owners(net: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(net)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.parse::<std::net::IpAddr>()
                .ok()
                .map(|_| (n, std::fs::read(e.path()).unwrap_or_default()))
        })
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (cl, rl) = (usize::from(data[0]), usize::from(data[1]));
    let rest = &data[2..];
    let rlen = if rl == 0xff { 0 } else { rl };
    if rest.len() < cl + rlen {
        return;
    }
    let cursor = &rest[..cl];
    let reservation = (rl != 0xff).then(|| &rest[cl..cl + rlen]);
    let bucket = &rest[cl + rlen..];
    // A planted file naming c1 or c2 would make their ADD a duplicate: skip.
    if reservation
        .and_then(|r| host_local::store::disk::parse_owner(r).ok())
        .and_then(|o: Owner| o.container_id().map(|c| c == "c1" || c == "c2"))
        .unwrap_or(false)
    {
        return;
    }

    let data_dir = root().join("d");
    let _ = std::fs::remove_dir_all(&data_dir);
    let net = data_dir.join("fz");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(net.join("last_reserved_ip.0"), cursor).unwrap();
    if let Some(r) = reservation {
        std::fs::write(net.join("10.0.0.3"), r).unwrap();
    }
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"fz","type":"host-local","ipam":{{"type":"host-local","subnet":"10.0.0.0/29","dataDir":"{}"}}}}"#,
        data_dir.display()
    );

    let (code, out) = invoke("ADD", "c1", &conf);
    assert_eq!(code, 0, "ADD c1: {out}");
    assert!(
        reservation.is_none() || !out.contains("\"10.0.0.3/"),
        "handed out a reserved address: {out}"
    );
    // Append to the index buckets: the network directory does not change, so
    // the stamp still matches and the buckets are believed, then verified.
    // (Appending, not replacing: the index is trusted to list every
    // reservation it was told about; an index that omits one is out of the
    // threat model, see SECURITY.md.)
    let idx = data_dir.join(".host-local-rs").join("fz");
    if let Ok(rd) = std::fs::read_dir(&idx) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('b') {
                let mut text = std::fs::read(e.path()).unwrap();
                text.extend_from_slice(bucket);
                std::fs::write(e.path(), text).unwrap();
            }
        }
    }
    let (code, out) = invoke("CHECK", "c1", &conf);
    assert_eq!(code, 0, "CHECK c1 after ADD: {out}");
    let (code, out) = invoke("ADD", "c2", &conf);
    assert_eq!(code, 0, "ADD c2: {out}");
    assert!(
        reservation.is_none() || !out.contains("\"10.0.0.3/"),
        "handed out a reserved address: {out}"
    );
    let (code, out) = invoke("DEL", "c1", &conf);
    assert_eq!(code, 0, "DEL c1: {out}");
    let (code, out) = invoke("DEL", "c2", &conf);
    assert_eq!(code, 0, "DEL c2: {out}");

    // Only the planted foreign file can remain, unchanged.
    let left = owners(&net);
    match reservation {
        Some(r) => assert_eq!(left, vec![("10.0.0.3".to_string(), r.to_vec())]),
        None => assert!(left.is_empty(), "left behind: {left:?}"),
    }
});
