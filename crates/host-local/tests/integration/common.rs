//! Helpers shared by every integration module: running a plugin binary with a
//! given environment and stdin, and locating ours and the reference.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Our plugin, built by cargo for this test run.
pub fn our_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_host-local"))
}

/// The Go reference plugin (Debian package containernetworking-plugins).
pub const REF_BIN: &str = "/usr/lib/cni/host-local";

/// True when CI demands that every suite runs (no skipping).
pub fn ci_required() -> bool {
    std::env::var_os("IPAM_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// The reference binary, or None after a loud skip notice (a panic in CI).
pub fn ref_bin_or_skip(what: &str) -> Option<PathBuf> {
    let p = PathBuf::from(REF_BIN);
    if p.exists() {
        return Some(p);
    }
    if ci_required() {
        panic!("{what}: reference plugin {REF_BIN} missing but IPAM_REQUIRE_ALL=1");
    }
    eprintln!("SKIPPED {what}: reference plugin {REF_BIN} not installed (apt-get install containernetworking-plugins)");
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
    /// The CNI error code printed on stdout, if any.
    pub fn err_code(&self) -> Option<u64> {
        self.json().get("code").and_then(|c| c.as_u64())
    }
}

/// One invocation: CNI_* variables from `env` (pairs), stdin bytes. The
/// environment is cleared first so nothing leaks in from the test runner.
pub fn run_plugin(bin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    {
        let mut si = child.stdin.take().unwrap();
        // A plugin may exit before reading stdin (e.g. missing env); ignore EPIPE.
        let _ = si.write_all(stdin);
    }
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
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

/// A snapshot of a directory tree: relative path -> file contents (dirs end in '/').
pub fn snapshot_dir(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
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
