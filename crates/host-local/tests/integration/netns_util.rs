//! Helpers for the end-to-end suites (`bridge`, `podman`): preflight checks
//! (root, tools) with loud skips, shell-outs to ip/podman, unique names,
//! the plugin directory handed to runtimes, and reading the host-local store.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::our_bin;

/// Debian's reference plugins (package containernetworking-plugins).
pub const SYS_CNI_DIR: &str = "/usr/lib/cni";

/// Environment variable that points the e2e suites at another directory
/// holding a `host-local` (e.g. one with a symlink to the Go reference), to
/// validate the suites themselves. Unset in CI: the suites then use our build.
pub const PLUGIN_DIR_OVERRIDE: &str = "HOST_LOCAL_E2E_PLUGIN_DIR";

pub use crate::common::skip;

/// Find an executable in the usual system directories and $PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the suite can run: root, every tool on PATH, every file present.
/// Otherwise a loud skip (or a panic under IPAM_REQUIRE_ALL=1).
pub fn preflight(what: &str, tools: &[&str], files: &[&str]) -> bool {
    if !is_root() {
        return skip(what, "needs root (network namespaces, bridges)");
    }
    for t in tools {
        if which(t).is_none() {
            return skip(what, &format!("tool `{t}` not found (see .ci/e2e-deps.sh)"));
        }
    }
    for f in files {
        if !Path::new(f).exists() {
            return skip(what, &format!("{f} missing (see .ci/e2e-deps.sh)"));
        }
    }
    true
}

/// Result of one external command.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run a command, capturing everything; never panics on a non-zero exit.
pub fn run(prog: &str, args: &[&str]) -> Run {
    run_cmd(Command::new(prog).args(args))
}

pub fn run_cmd(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Run {
        ok: out.status.success(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run a command that must succeed; returns stdout.
pub fn must(prog: &str, args: &[&str]) -> String {
    let r = run(prog, args);
    assert!(
        r.ok,
        "`{prog} {}` failed ({}): {}{}",
        args.join(" "),
        r.code,
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// A short name unique to this process and call: `<prefix><pid%100000><n>`.
/// Keep prefix <= 5 chars when it names a link (IFNAMSIZ 15).
pub fn uniq(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// The directory the runtimes must search first for `host-local`: the
/// directory of our build (or the override for validating the suites).
pub fn plugin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(PLUGIN_DIR_OVERRIDE) {
        let d = PathBuf::from(d);
        eprintln!(
            "NOTE: {PLUGIN_DIR_OVERRIDE}={} -- the e2e suites are NOT testing our build",
            d.display()
        );
        return d;
    }
    our_bin()
        .parent()
        .expect("our_bin has a parent")
        .to_path_buf()
}

/// Assert that searching `dirs` in order finds our plugin first (not the
/// reference in /usr/lib/cni). Returns the resolved path.
pub fn assert_ours_found_first(dirs: &[PathBuf]) -> PathBuf {
    let first = dirs
        .iter()
        .map(|d| d.join("host-local"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no host-local in {dirs:?}"));
    let real = std::fs::canonicalize(&first).unwrap();
    if std::env::var_os(PLUGIN_DIR_OVERRIDE).is_none() {
        let ours = std::fs::canonicalize(our_bin()).unwrap();
        assert_eq!(
            real, ours,
            "the first host-local on the plugin path is not our build"
        );
        let reference = std::fs::canonicalize(crate::common::REF_BIN).ok();
        assert_ne!(Some(real.clone()), reference, "the reference would be used");
    }
    real
}

/// `a:b:c` for CNI_PATH.
pub fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// "10.1.2.3/24" -> canonical "10.1.2.3".
pub fn addr_of(cidr: &str) -> String {
    let a = cidr.split('/').next().unwrap();
    a.parse::<IpAddr>()
        .unwrap_or_else(|e| panic!("bad address {cidr:?}: {e}"))
        .to_string()
}

/// Reservations in a host-local network directory: address -> file content.
/// `lock` and `last_reserved_ip.*` are returned separately as the rest.
pub struct Store {
    pub reservations: BTreeMap<String, String>,
    pub other: BTreeSet<String>,
}

pub fn read_store(netdir: &Path) -> Store {
    let mut reservations = BTreeMap::new();
    let mut other = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(netdir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lock" || name.starts_with("last_reserved_ip.") {
                other.insert(name);
            } else {
                let content = std::fs::read(e.path()).unwrap_or_default();
                reservations.insert(name, String::from_utf8_lossy(&content).into_owned());
            }
        }
    }
    Store {
        reservations,
        other,
    }
}

/// Assert that the store holds exactly `expected` (address -> (containerID, ifname))
/// and nothing but `lock` / `last_reserved_ip.*` besides.
pub fn assert_store(netdir: &Path, expected: &BTreeMap<String, (String, String)>, when: &str) {
    let st = read_store(netdir);
    let want: BTreeMap<String, String> = expected
        .iter()
        .map(|(a, (c, i))| (a.clone(), format!("{c}\r\n{i}")))
        .collect();
    assert_eq!(
        st.reservations,
        want,
        "{when}: reservation files in {} differ from the addresses in use",
        netdir.display()
    );
    for o in &st.other {
        assert!(
            o == "lock" || o.starts_with("last_reserved_ip."),
            "{when}: stray file {o}"
        );
    }
}

/// Global-scope addresses ("addr/prefix", canonical) on `dev` inside netns `ns`.
pub fn ns_addrs(ns: &str, dev: &str) -> BTreeSet<String> {
    let out = must("ip", &["-n", ns, "-j", "addr", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j addr output");
    let mut set = BTreeSet::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "global" {
                let ip: IpAddr = a["local"].as_str().unwrap().parse().unwrap();
                set.insert(format!("{ip}/{}", a["prefixlen"]));
            }
        }
    }
    set
}

/// ping from inside netns `ns` (one packet, 2 s), retried a few times for
/// IPv6 neighbour discovery. Returns the last run.
pub fn ping_from_ns(ns: &str, target: &str) -> Run {
    let fam = if target.contains(':') { "-6" } else { "-4" };
    let mut last = None;
    for _ in 0..3 {
        let r = run(
            "ip",
            &["netns", "exec", ns, "ping", fam, "-c1", "-W2", target],
        );
        if r.ok {
            return r;
        }
        last = Some(r);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    last.unwrap()
}

/// Unmount (lazily) everything mounted at or under `root` (podman storage, netns).
pub fn umount_under(root: &Path) {
    let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let root = root.to_string_lossy().into_owned();
    let mut points: Vec<String> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m == &root || m.starts_with(&format!("{root}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = run("umount", &["-l", &p]);
    }
}

/// Ports (interface names) enslaved to bridge `br` in the host namespace.
pub fn bridge_ports(br: &str) -> Vec<String> {
    let r = run("ip", &["-j", "link", "show", "master", br]);
    if !r.ok {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect()
}
