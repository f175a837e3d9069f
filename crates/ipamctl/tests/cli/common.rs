//! Shared helpers: running the binary, fixtures in the reference layout, snapshots.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_ipamctl");
/// Where the Go reference plugin is expected (see [`go_plugin`]).
pub const GO_PLUGIN: &str = test_support::REF_BIN;

/// The Go reference plugin: where our Debian package diverts it while
/// installed, else its own path (test-support's lookup).
pub fn go_plugin() -> PathBuf {
    test_support::ref_bin_path()
}

/// Skips a test loudly, or fails it when IPAM_REQUIRE_ALL=1.
pub fn skip(what: &str) {
    test_support::skip("ipamctl cli test", what);
}

/// Whether etcd is installed; otherwise a loud skip (a failure under
/// IPAM_REQUIRE_ALL=1).
pub fn have_etcd() -> bool {
    if test_support::etcd::etcd_installed() {
        return true;
    }
    skip("etcd not installed (apt-get install etcd-server etcd-client)");
    false
}

/// The etcd store of `network` under `prefix` as `node` (5 s timeout,
/// default block size), as the plugin opens it.
pub fn etcd_store(
    endpoints: &[String],
    prefix: &str,
    network: &str,
    node: &str,
) -> host_local::store::etcd::EtcdStore {
    let cfg = host_local::store::etcd::EtcdConfig {
        endpoints: endpoints.to_vec(),
        prefix: prefix.into(),
        timeout: Duration::from_secs(5),
        node: node.into(),
        tls: None,
        auth: None,
        block_size: host_local::config::DEFAULT_BLOCK,
    };
    host_local::store::etcd::EtcdStore::new(cfg, network)
}

/// Reserves `ip` for `id` eth0 through `store` (one session, one commit).
pub fn etcd_reserve(store: &mut host_local::store::etcd::EtcdStore, id: &str, ip: &str) {
    use host_local::store::{Attachment, Pick, Store};
    let mut s = store.session().unwrap();
    let pick = Pick {
        ip: ip.parse().unwrap(),
        set_index: 0,
    };
    s.commit(&Attachment::parse(id, "eth0").unwrap(), &[pick])
        .unwrap()
        .finish()
        .unwrap();
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ipamctl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out: Output = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A fixture: `<tmp>/data/net1` in the reference layout and its conflist.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
}

pub const AGE: Duration = Duration::from_secs(3 * 3600 + 5);

impl Fixture {
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }
    pub fn data(&self) -> PathBuf {
        self.root().join("data")
    }
    pub fn net(&self) -> PathBuf {
        self.data().join("net1")
    }
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut full = vec!["--data-dir", "data"];
        full.extend_from_slice(args);
        run_in(self.root(), &full, stdin)
    }
}

pub fn write_aged(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - AGE).unwrap();
}

pub const CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "net1",
  "plugins": [
    {"type": "bridge", "bridge": "cni0",
     "ipam": {"type": "host-local",
              "ranges": [[{"subnet": "10.1.0.0/24", "exclude": ["10.1.0.20/30"]}],
                         [{"subnet": "2001:db8::/120"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"#;

/// New and legacy files, an empty file, a garbage file, a file outside the
/// ranges, an excluded one, the gateway reserved; a second network without
/// a config; a dot-directory (an index) that is no network.
pub fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let f = Fixture { tmp };
    let net = f.net();
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(net.join("lock"), "").unwrap();
    for (name, content) in [
        ("10.1.0.2", &b"c1\r\neth0"[..]),
        ("10.1.0.3", b"c2\r\neth0"),
        ("10.1.0.4", b"legacy1"),
        ("10.1.0.5", b""),
        ("10.1.0.6", b"\xff\xfegarbage"),
        ("10.1.0.1", b"c3\r\neth0"),
        ("10.9.0.9", b"c4\r\neth0"),
        ("10.1.0.21", b"c5\r\neth0"),
        ("2001:db8::2", b"c1\r\neth0"),
        ("2001:db8::3", b"c2\r\neth0"),
    ] {
        write_aged(&net.join(name), content);
    }
    std::fs::write(net.join("last_reserved_ip.0"), "10.1.0.3").unwrap();
    std::fs::write(net.join("last_reserved_ip.1"), "2001:db8::3").unwrap();
    let other = f.data().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("lock"), "").unwrap();
    write_aged(&other.join("192.168.5.7"), b"k1\r\nnet0");
    std::fs::create_dir_all(f.data().join(".host-local-rs/net1")).unwrap();
    std::fs::write(f.root().join("net1.conflist"), CONFLIST).unwrap();
    f
}

/// Every path under `dir` with its content and mtime: to prove nothing changed.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
                out.insert(p, (Vec::new(), m.modified().unwrap()));
            } else {
                out.insert(
                    p.clone(),
                    (std::fs::read(&p).unwrap(), m.modified().unwrap()),
                );
            }
        }
    }
    out
}

/// Ages and timestamps vary between runs: replace them; round ratios.
pub fn normalise_json(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if (k == "mtime" || k == "ageSeconds" || k == "oldestAgeSeconds") && x.is_number() {
                    *x = json!("<time>");
                } else if k == "usage" && x.is_f64() {
                    // Six places: float parsing need not round-trip exactly.
                    *x = json!((x.as_f64().unwrap() * 1e6).round() / 1e6);
                } else {
                    normalise_json(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise_json),
        _ => {}
    }
}

pub fn parse_json(s: &str) -> Value {
    let mut v: Value = serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"));
    normalise_json(&mut v);
    v
}

pub fn assert_text(actual: &str, expected: &str) {
    if actual != expected {
        panic!("output differs\n--- expected\n{expected}\n--- actual\n{actual}\n---");
    }
}

/// A store directory in the reference layout holding `files`, aged.
pub fn store(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("lock"), "").unwrap();
    for (name, content) in files {
        write_aged(&dir.join(name), content.as_bytes());
    }
}

pub fn conf(path: &Path, network: &str, data_dir: Option<&Path>, ranges: Value) {
    let mut ipam = json!({"type": "host-local", "ranges": ranges});
    if let Some(d) = data_dir {
        ipam["dataDir"] = json!(d);
    }
    let c = json!({"cniVersion": "1.0.0", "name": network,
                   "plugins": [{"type": "bridge", "ipam": ipam}]});
    std::fs::write(path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
}

/// Replaces the temporary root in output with `<root>`.
pub fn rooted(text: &str, root: &Path) -> String {
    text.replace(root.to_str().unwrap(), "<root>")
}

/// libcni's cache file for an attachment, with the pod in its CNI args.
pub fn cache_entry(
    dir: &Path,
    net: &str,
    id: &str,
    ifname: &str,
    pod: Option<(&str, &str)>,
    ips: &[&str],
) {
    let mut args = vec![json!(["IgnoreUnknown", "1"])];
    if let Some((ns, name)) = pod {
        args.push(json!(["K8S_POD_NAMESPACE", ns]));
        args.push(json!(["K8S_POD_NAME", name]));
        args.push(json!(["K8S_POD_INFRA_CONTAINER_ID", id]));
    }
    let ips: Vec<Value> = ips
        .iter()
        .map(|a| json!({"address": a, "gateway": "10.1.0.1"}))
        .collect();
    let v = json!({
        "kind": "cniCacheV1", "containerId": id, "ifName": ifname, "networkName": net,
        "config": "e30=", "cniArgs": args,
        "result": {"cniVersion": "1.0.0", "interfaces": [{"name": ifname}], "ips": ips}
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{net}-{id}-{ifname}")), v.to_string()).unwrap();
}
