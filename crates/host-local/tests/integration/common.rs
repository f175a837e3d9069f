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
/// Where it is while our Debian package host-local-rs is installed: the
/// package diverts it (dpkg-divert --rename) and puts ours at REF_BIN.
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

/// True when CI demands that every suite runs (no skipping).
pub fn ci_required() -> bool {
    std::env::var_os("IPAM_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// The reference binary, or None after a loud skip notice (a panic in CI).
pub fn ref_bin_or_skip(what: &str) -> Option<PathBuf> {
    let p = ref_bin_path();
    if p.exists() {
        if let Err(e) = check_is_reference(&p) {
            panic!("{what}: {e}");
        }
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
}

/// One invocation: CNI_* variables from `env` (pairs), stdin bytes. The
/// environment is cleared first so nothing leaks in from the test runner.
pub fn run_plugin(bin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Output {
    spawn_plugin(bin, env, stdin, None)
}

fn spawn_plugin(bin: &Path, env: &[(&str, &str)], stdin: &[u8], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
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

// ---- helpers for the differential / versions / mixed / race suites ----

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
pub fn store_snapshot(data_dir: &Path) -> std::collections::BTreeMap<String, Entry> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Entry>) {
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
            if md.is_dir() {
                out.insert(
                    format!("{rel}/"),
                    Entry {
                        mode,
                        is_dir: true,
                        data: Vec::new(),
                    },
                );
                walk(root, &p, out);
            } else {
                out.insert(
                    rel,
                    Entry {
                        mode,
                        is_dir: false,
                        data: std::fs::read(&p).unwrap_or_default(),
                    },
                );
            }
        }
    }
    walk(data_dir, data_dir, &mut out);
    out
}

/// The reservation files of a network directory: address -> contents
/// (`lock` and `last_reserved_ip.*` left out).
pub fn reservations(net_dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
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

/// Like `run_plugin`, but with the child's working directory set (so a
/// relative path in a config cannot land in the source tree).
pub fn run_plugin_in(bin: &Path, env: &[(&str, &str)], stdin: &[u8], cwd: &Path) -> Output {
    spawn_plugin(bin, env, stdin, Some(cwd))
}

/// A mount made by a test (tmpfs or a bind mount), detached on drop, also
/// when the test panics. Needs root (CAP_SYS_ADMIN).
pub struct MountGuard {
    pub path: PathBuf,
}

fn cstr(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn check_mount(rc: libc::c_int, what: &str) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

impl MountGuard {
    /// Mounts a tmpfs at `path` with `opts` (e.g. "size=64k,mode=0755").
    pub fn tmpfs(path: &Path, opts: &str) -> std::io::Result<MountGuard> {
        let (src, fs, target) = (c"tmpfs", c"tmpfs", cstr(path));
        let data = std::ffi::CString::new(opts).unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        check_mount(rc, &format!("mount tmpfs on {}", path.display()))?;
        Ok(MountGuard {
            path: path.to_path_buf(),
        })
    }

    /// Bind-mounts `src` on `path`, read-only.
    pub fn bind_ro(src: &Path, path: &Path) -> std::io::Result<MountGuard> {
        let (s, t) = (cstr(src), cstr(path));
        // SAFETY: valid strings; null fstype and data are allowed for MS_BIND.
        let rc = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        check_mount(rc, &format!("bind {} on {}", src.display(), path.display()))?;
        let g = MountGuard {
            path: path.to_path_buf(),
        };
        // SAFETY: as above; remounting the bind read-only.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        check_mount(rc, &format!("remount {} read-only", path.display()))?;
        Ok(g)
    }

    /// Remounts this tmpfs read-only (`mount -o remount,ro`).
    pub fn remount_ro(&self) -> std::io::Result<()> {
        let t = cstr(&self.path);
        // SAFETY: valid string; null source and data are allowed for MS_REMOUNT.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        check_mount(rc, &format!("remount {} read-only", self.path.display()))
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let t = cstr(&self.path);
        // SAFETY: valid string. MNT_DETACH so a stray open descriptor cannot keep it.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

/// True when mounts can be made here (root with CAP_SYS_ADMIN). Otherwise
/// a loud skip, or a panic under IPAM_REQUIRE_ALL=1.
pub fn can_mount_or_skip(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return crate::netns_util::skip(what, "needs root to mount a tmpfs / read-only bind");
    }
    let probe = tempfile::tempdir().unwrap();
    match MountGuard::tmpfs(probe.path(), "size=4k") {
        Ok(_g) => true,
        Err(e) => crate::netns_util::skip(what, &format!("cannot mount ({e})")),
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

#[test]
fn reference_lookup_refuses_a_binary_answering_like_ours() {
    let err = check_is_reference(&our_bin()).expect_err("our plugin passed as the reference");
    assert!(err.contains("like OUR plugin"), "{err}");
    if let Some(refb) = ref_bin_or_skip("reference_lookup_refuses_a_binary_answering_like_ours") {
        check_is_reference(&refb).unwrap();
    }
}
