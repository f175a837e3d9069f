//! Helpers every test harness of the workspace needs, written once: running
//! a plugin binary (or the plugin in process) with a CNI environment and a
//! configuration on stdin, building network configurations, a network under
//! test (`Net`: ADD, DEL, CHECK, GC, STATUS on it), snapshotting stores, a
//! tiny deterministic RNG and the loud-skip rule. Used by
//! host-local's integration tests (through `tests/integration/common.rs`),
//! ipamctl's tests, ipam-bench and the fuzz targets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;

use host_local::error::StoreError;
use host_local::store::memory::MemoryStore;
use host_local::store::{Session, Store};

pub mod etcd;
mod net;

pub use net::{attachments, Net};

/// The Go reference plugin (Debian package containernetworking-plugins).
pub const REF_BIN: &str = "/usr/lib/cni/host-local";

/// True when CI demands that every suite runs (no skipping).
pub fn ci_required() -> bool {
    std::env::var_os("IPAM_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Skips a test loudly, or fails it when IPAM_REQUIRE_ALL=1. Returns false
/// (so `if !precondition { return skip(..) }` reads naturally).
pub fn skip(what: &str, why: &str) -> bool {
    if ci_required() {
        panic!("{what}: {why}, but IPAM_REQUIRE_ALL=1");
    }
    // Written to the stderr handle, not with eprintln!, so that libtest's
    // output capture does not swallow it when the (skipped) test passes; a
    // failed write to stderr leaves nothing better to report it on.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {what}: {why} (set IPAM_REQUIRE_ALL=1 to make this fail) ***\n"
    );
    false
}

/// Where the reference is while our Debian package host-local-rs is
/// installed: the package diverts it (dpkg-divert --rename) and puts ours at
/// REF_BIN.
pub const REF_BIN_DIVERTED: &str = "/usr/lib/cni/host-local.go";

/// The reference's path: the diverted one when it exists, else REF_BIN.
pub fn ref_bin_path() -> PathBuf {
    let diverted = PathBuf::from(REF_BIN_DIVERTED);
    if diverted.exists() {
        diverted
    } else {
        PathBuf::from(REF_BIN)
    }
}

/// Err when `bin` answers VERSION like ours: ours lists spec 1.1.0, the Go
/// reference v1.1.1 does not. Comparing ours with ours would prove nothing.
pub fn check_is_reference(bin: &Path) -> Result<(), String> {
    let out = run_plugin(bin, &[("CNI_COMMAND", "VERSION")], b"{}");
    let supported = out.json()["supportedVersions"].clone();
    let list = supported.as_array().ok_or_else(|| {
        format!(
            "{}: VERSION printed no supportedVersions: {out:?}",
            bin.display()
        )
    })?;
    if list.iter().any(|v| v == "1.1.0") {
        return Err(format!(
            "{} answers VERSION like OUR plugin ({supported}), not like the Go reference: \
             is the host-local-rs package installed without its diversion?",
            bin.display()
        ));
    }
    Ok(())
}

/// The reference binary (checked to be the Go one), or None after a loud
/// skip notice (a panic in CI).
pub fn ref_bin_or_skip(what: &str) -> Option<PathBuf> {
    let p = ref_bin_path();
    if p.exists() {
        if let Err(e) = check_is_reference(&p) {
            panic!("{what}: {e}");
        }
        return Some(p);
    }
    skip(
        what,
        &format!(
            "reference plugin {REF_BIN} not installed (apt-get install containernetworking-plugins)"
        ),
    );
    None
}

/// The outcome of one plugin invocation.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout parsed as JSON (Null when empty).
    pub fn json(&self) -> serde_json::Value {
        if self.stdout.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The addresses (without prefix length) of an ADD result's `ips`.
    pub fn ips(&self) -> Vec<String> {
        self.json()["ips"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|i| {
                        i["address"]
                            .as_str()
                            .unwrap()
                            .split('/')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The CNI error code printed on stdout, if any.
    pub fn err_code(&self) -> Option<u64> {
        self.json().get("code").and_then(|c| c.as_u64())
    }

    /// The `msg` of the CNI error printed on stdout ("" when there is none).
    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_string()
    }
}

/// The usual environment of one command for (container, ifname).
pub fn cni_env<'a>(
    command: &'a str,
    container: &'a str,
    ifname: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

/// A command for one plugin invocation: the environment cleared (nothing
/// leaks in from the runner) but for PATH and the `env` pairs; stdin and
/// stdout piped, stderr piped too (callers may redirect it).
pub fn plugin_command(bin: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// One invocation: CNI_* variables from `env` (pairs), stdin bytes.
pub fn run_plugin(bin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Output {
    finish(plugin_command(bin, env), bin, stdin)
}

/// Like `run_plugin`, but with the child's working directory set (so a
/// relative path in a config cannot land in the source tree).
pub fn run_plugin_in(bin: &Path, env: &[(&str, &str)], stdin: &[u8], cwd: &Path) -> Output {
    let mut cmd = plugin_command(bin, env);
    cmd.current_dir(cwd);
    finish(cmd, bin, stdin)
}

/// Like `run_plugin`, but not waited for: stdin written and closed, the
/// child running. Many can be in flight at once; `wait_plugin` collects one.
pub fn spawn_plugin(bin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Child {
    start(plugin_command(bin, env), bin, stdin)
}

/// Waits for a child started by `spawn_plugin`: its exit code and output.
pub fn wait_plugin(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn start(mut cmd: Command, bin: &Path, stdin: &[u8]) -> Child {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    {
        let mut si = child.stdin.take().unwrap();
        // A plugin may exit before reading stdin (e.g. missing env): EPIPE is
        // expected then, and what it printed tells the test the rest.
        let _ = si.write_all(stdin);
    }
    child
}

fn finish(cmd: Command, bin: &Path, stdin: &[u8]) -> Output {
    wait_plugin(start(cmd, bin, stdin))
}

/// An environment lookup for `cni_proto::run` from pairs (in process).
pub fn lookup_from<'a>(env: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
}

/// Runs `plugin` in process, as its binary would run: exit code and output.
pub fn run_in_process(
    plugin: &mut dyn cni_proto::Plugin,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Output {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let o = cni_proto::run(
        plugin,
        &lookup_from(env),
        &mut &stdin[..],
        &mut out,
        &mut err,
    );
    Output {
        code: o.exit_code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// A memory store that outlives the plugin's per-command store: each
/// command gets a copy of `shared`, written back when the plugin drops it.
pub struct PersistStore {
    inner: MemoryStore,
    shared: Rc<RefCell<MemoryStore>>,
}

impl PersistStore {
    /// A store opener for `HostLocal::new` over `shared`.
    pub fn opener(shared: Rc<RefCell<MemoryStore>>) -> host_local::plugin::StoreOpener {
        Box::new(move |_: &host_local::config::StoreConfig, _: &str| {
            Ok(Box::new(PersistStore {
                inner: shared.borrow().clone(),
                shared: shared.clone(),
            }) as Box<dyn Store>)
        })
    }
}

impl Store for PersistStore {
    fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
        self.inner.session()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

impl Drop for PersistStore {
    fn drop(&mut self) {
        *self.shared.borrow_mut() = std::mem::take(&mut self.inner);
    }
}

/// A network configuration for host-local on stdin: `ipam` gets `type` and
/// `dataDir` added; `top` keys are merged into the top level.
pub fn net_conf(
    version: &str,
    name: &str,
    data_dir: &Path,
    mut ipam: serde_json::Value,
    top: serde_json::Value,
) -> Vec<u8> {
    ipam["type"] = "host-local".into();
    ipam["dataDir"] = data_dir.to_string_lossy().into_owned().into();
    let mut c = serde_json::json!({
        "cniVersion": version,
        "name": name,
        "type": "bridge",
        "ipam": ipam,
    });
    if let serde_json::Value::Object(m) = top {
        for (k, v) in m {
            c[k] = v;
        }
    }
    serde_json::to_vec(&c).unwrap()
}

/// A snapshot of a directory tree: relative path -> file contents (dirs end in '/').
pub fn snapshot_dir(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// One file of a store snapshot: permission bits and contents (dirs: empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub is_dir: bool,
    pub data: Vec<u8>,
}

/// A snapshot of a data directory as the reference would see it: every
/// entry (relative path -> mode + contents) except our private index under
/// `.host-local-rs/`.
pub fn store_snapshot(data_dir: &Path) -> BTreeMap<String, Entry> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".host-local-rs" || rel.starts_with(".host-local-rs/") {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            let is_dir = md.is_dir();
            let data = if is_dir {
                Vec::new()
            } else {
                std::fs::read(&p).unwrap_or_default()
            };
            let key = if is_dir { format!("{rel}/") } else { rel };
            out.insert(key, Entry { mode, is_dir, data });
            if is_dir {
                walk(root, &p, out);
            }
        }
    }
    walk(data_dir, data_dir, &mut out);
    out
}

/// The reservation files of a network directory: address -> contents
/// (`lock` and `last_reserved_ip.*` left out).
pub fn reservations(net_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(net_dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lock" || name.starts_with("last_reserved_ip.") {
            continue;
        }
        let data = std::fs::read(e.path()).unwrap_or_default();
        out.insert(name, String::from_utf8_lossy(&data).into_owned());
    }
    out
}

/// The sorted names in a directory (empty when it does not exist).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// xorshift64*: enough randomness for tests (victims, operations), no
/// dependency, deterministic for a seed.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_local::HostLocal;

    #[test]
    fn in_process_runs_persist_across_commands() {
        let shared = Rc::new(RefCell::new(MemoryStore::new()));
        let mut plugin = HostLocal::new(PersistStore::opener(shared.clone()));
        let conf = net_conf(
            "1.0.0",
            "net",
            Path::new("/nonexistent"),
            serde_json::json!({"subnet": "10.7.0.0/24"}),
            serde_json::json!({}),
        );
        let o = run_in_process(&mut plugin, &cni_env("ADD", "c1", "eth0"), &conf);
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(o.ips(), ["10.7.0.2"]);
        let o = run_in_process(&mut plugin, &cni_env("ADD", "c1", "eth0"), &conf);
        assert_eq!(o.err_code(), Some(102), "a duplicate: the store persisted");
        drop(plugin);
        assert_eq!(shared.borrow().reservations.len(), 1);
    }
}
