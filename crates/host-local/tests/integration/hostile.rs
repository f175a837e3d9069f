//! Hostile inputs through the real binary: names and data directories trying
//! to escape, symlinks, FIFOs, directories and huge files planted in the
//! network directory, a read-only file system, oversized input.
//!
//! Every test runs in a sandbox holding `data/` (the dataDir), `outside/` (a
//! sibling with a file worth protecting) and `cwd/` (the child's working
//! directory), and checks that nothing outside `data/` changed. Every child
//! runs under a timeout (killed after it) with its peak memory measured.
//!
//! One concern, many cases: each hostile input is its own short test, so the
//! file is long (~770 lines) rather than split by an arbitrary line.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{ci_required, cni_env, our_bin};

/// A generous bound on a single invocation's wall time.
const TIMEOUT: Duration = Duration::from_secs(10);
/// For the one input that is slow by design (the worst 1 MiB configuration).
const SLOW_TIMEOUT: Duration = Duration::from_secs(60);
/// A generous bound on a single invocation's peak RSS.
const MAX_RSS_KIB: i64 = 64 * 1024;
/// The bound for realistic oversized configurations (just under the 1 MiB
/// stdin limit, parsed into serde_json values, kept whole and in part).
const MAX_INPUT_RSS_KIB: i64 = 256 * 1024;
/// The bound for the worst 1 MiB configuration (half a million one-key
/// objects): about 126 MiB measured, a 120x amplification. See SECURITY.md.
const MAX_WORST_RSS_KIB: i64 = 256 * 1024;

/// One invocation under a timeout, with its resource use.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    #[allow(dead_code)] // shown by Debug in failure messages
    stderr: String,
    elapsed: Duration,
    killed: bool,
    /// ru_maxrss from wait4 (KiB). Linux carries the spawning process's own
    /// high-water mark across a vfork+exec into this figure, so it is an
    /// upper bound of the child's peak.
    rusage_maxrss_kib: i64,
    /// The child's own VmHWM, sampled from /proc every millisecond while it
    /// ran (a lower bound of its peak).
    polled_hwm_kib: i64,
    /// The test process's own VmHWM after the child exited.
    parent_hwm_kib: i64,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
    fn err_code(&self) -> u64 {
        assert_eq!(self.code, 1, "expected a failure: {self:?}");
        let v = self.json();
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code: {v}"))
    }
    fn ok(&self) -> Value {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
    fn address(&self) -> String {
        self.ok()["ips"][0]["address"]
            .as_str()
            .expect("an address")
            .to_string()
    }
    /// The child's peak RSS as well as it can be known: the wait4 figure when
    /// it exceeds what the test process itself carried in, else the polled one.
    fn peak_kib(&self) -> i64 {
        if self.rusage_maxrss_kib > self.parent_hwm_kib {
            self.rusage_maxrss_kib
        } else {
            self.polled_hwm_kib
        }
    }
    /// Finished on its own within TIMEOUT and within `max_rss_kib`.
    fn assert_bounded_by(&self, what: &str, max_rss_kib: i64) {
        assert!(!self.killed, "{what}: killed after {TIMEOUT:?}");
        assert!(self.elapsed < TIMEOUT, "{what}: took {:?}", self.elapsed);
        assert!(
            self.peak_kib() < max_rss_kib,
            "{what}: peak RSS {} KiB (wait4 {} KiB, polled {} KiB, test process {} KiB)",
            self.peak_kib(),
            self.rusage_maxrss_kib,
            self.polled_hwm_kib,
            self.parent_hwm_kib
        );
        eprintln!(
            "{what}: exit {} in {:?}, peak RSS {} KiB (wait4 {}, polled {}, test process {})",
            self.code,
            self.elapsed,
            self.peak_kib(),
            self.rusage_maxrss_kib,
            self.polled_hwm_kib,
            self.parent_hwm_kib
        );
    }
}

fn vm_hwm_kib(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `bin` with exactly `env` (plus PATH), `stdin`, in `cwd`, killing it
/// after `timeout`.
fn run_limited(
    bin: &Path,
    env: &[(&str, &str)],
    stdin: Vec<u8>,
    cwd: &Path,
    timeout: Duration,
) -> Run {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    let pid = child.id() as libc::pid_t;
    let mut si = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The plugin may stop reading early (oversized input): ignore EPIPE.
        let _ = si.write_all(&stdin);
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let r_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let r_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut polled = 0i64;
    let mut killed = false;
    let proc_status = format!("/proc/{pid}/status");
    loop {
        // SAFETY: pid is our child, not yet reaped; the pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if let Some(k) = std::fs::read_to_string(&proc_status)
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        {
            polled = polled.max(k);
        }
        if start.elapsed() > timeout && !killed {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    // Reaped with wait4 above: the Child must not wait again.
    drop(child);
    writer.join().unwrap();
    let stdout = String::from_utf8_lossy(&r_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&r_err.join().unwrap()).into_owned();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let parent_hwm_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(vm_hwm_kib)
        .unwrap_or(i64::MAX);
    Run {
        code,
        stdout,
        stderr,
        elapsed,
        killed,
        rusage_maxrss_kib: ru.ru_maxrss,
        polled_hwm_kib: polled,
        parent_hwm_kib,
    }
}

/// A description of a tree that notices content, mode, owner, size, mtime,
/// symlink targets and file types.
fn describe(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let meta = format!(
                "mode {:o} uid {} size {} mtime {}.{}",
                m.mode(),
                m.uid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            );
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, format!("link -> {} {meta}", t.display()));
            } else if m.is_dir() {
                out.insert(format!("{rel}/"), meta);
                walk(root, &p, out);
            } else if m.is_file() {
                let data = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, format!("{meta} {:?}", String::from_utf8_lossy(&data)));
            } else {
                out.insert(rel, format!("special {meta}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

struct Sandbox {
    dir: tempfile::TempDir,
    before: BTreeMap<String, String>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["data/net", "outside/netdir", "cwd"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("outside/victim"), "precious").unwrap();
        std::fs::write(root.join("outside/forged"), "victim\r\neth0").unwrap();
        std::fs::set_permissions(
            root.join("outside/victim"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let mut s = Sandbox {
            dir,
            before: BTreeMap::new(),
        };
        s.before = s.outside_state();
        s
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn data(&self) -> PathBuf {
        self.root().join("data")
    }
    fn net(&self) -> PathBuf {
        self.data().join("net")
    }
    fn outside(&self) -> PathBuf {
        self.root().join("outside")
    }
    /// Everything but `data/`: the sibling, the working directory, the root's entries.
    fn outside_state(&self) -> BTreeMap<String, String> {
        let mut all = describe(self.root());
        all.retain(|k, _| !k.starts_with("data/") || k == "data/");
        all.remove("data/");
        all
    }
    fn assert_outside_unchanged(&self, what: &str) {
        assert_eq!(
            self.outside_state(),
            self.before,
            "{what}: something outside the data directory changed"
        );
    }
    /// A config for network `net` in this sandbox's data directory.
    fn conf(&self, version: &str) -> Vec<u8> {
        conf_with(version, "net", &self.data(), &[])
    }
    fn run(&self, command: &str, id: &str, stdin: &[u8]) -> Run {
        self.run_bounded(command, id, stdin, MAX_RSS_KIB)
    }
    fn run_bounded(&self, command: &str, id: &str, stdin: &[u8], max_rss_kib: i64) -> Run {
        let env = cni_env(command, id, "eth0");
        let r = run_limited(
            &our_bin(),
            &env,
            stdin.to_vec(),
            &self.root().join("cwd"),
            TIMEOUT,
        );
        r.assert_bounded_by(&format!("{command} {id}"), max_rss_kib);
        r
    }
}

fn conf_with(version: &str, name: &str, data: &Path, extra: &[(&str, Value)]) -> Vec<u8> {
    let mut c = json!({
        "cniVersion": version,
        "name": name,
        "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.0.0.0/29", "dataDir": data},
    });
    for (k, v) in extra {
        c[*k] = v.clone();
    }
    serde_json::to_vec(&c).unwrap()
}

/// A GC config keeping only `valid`.
fn gc_conf(sb: &Sandbox, valid: &[(&str, &str)]) -> Vec<u8> {
    let list: Vec<Value> = valid
        .iter()
        .map(|(c, i)| json!({"containerID": c, "ifname": i}))
        .collect();
    conf_with(
        "1.1.0",
        "net",
        &sb.data(),
        &[("cni.dev/valid-attachments", Value::Array(list))],
    )
}

/// Runs every command with a raw config text; each must be refused with one of `codes`.
fn all_refused(sb: &Sandbox, raw: &[u8], codes: &[u64], what: &str) {
    for cmd in ["ADD", "CHECK", "DEL", "GC", "STATUS"] {
        let r = sb.run(cmd, "c1", raw);
        let code = r.err_code();
        assert!(
            codes.contains(&code),
            "{what} {cmd}: code {code}, expected one of {codes:?}: {}",
            r.stdout
        );
    }
}

#[test]
fn network_name_escapes_are_refused() {
    let sb = Sandbox::new();
    let data = serde_json::to_string(&sb.data()).unwrap();
    for name in [
        r#"".""#,
        r#""..""#,
        r#""a/b""#,
        r#""../outside""#,
        r#""..\/outside""#,
        r#""/abs""#,
        r#""a\u0000b""#,
        r#""\u0000""#,
        r#""net\u0000/../../outside""#,
        r#""\u002e\u002e""#,
        r#""""#,
        r#""-n""#,
    ] {
        let raw = format!(
            r#"{{"cniVersion":"1.1.0","name":{name},"type":"host-local","ipam":{{"type":"host-local","subnet":"10.0.0.0/29","dataDir":{data}}}}}"#
        );
        all_refused(&sb, raw.as_bytes(), &[7], name);
    }
    // Only the pre-made (empty) network directory exists in data/.
    assert_eq!(describe(&sb.data()).keys().collect::<Vec<_>>(), ["net/"]);
    sb.assert_outside_unchanged("names");
}

#[test]
fn bad_data_dirs_are_refused() {
    let sb = Sandbox::new();
    let root = sb.root().display().to_string();
    let cases: Vec<(String, &[u64])> = vec![
        // Relative: would land in the working directory.
        (r#""data""#.into(), &[7]),
        (r#""./data""#.into(), &[7]),
        (r#""../outside""#.into(), &[7]),
        // Absolute with `..`, escaping into the sibling.
        (format!(r#""{root}/data/../outside""#), &[7]),
        (format!(r#""{root}/data/net/..""#), &[7]),
        // NUL: would truncate the path at the system call.
        (format!(r#""{root}/outside\u0000/x""#), &[7]),
        (r#""\u0000""#.into(), &[7]),
        // Not Unicode: a lone surrogate escape cannot be decoded.
        (format!(r#""{root}/data/\udcff""#), &[6]),
        (r#""\ud800""#.into(), &[6]),
        // Not a string.
        ("5".into(), &[7]),
        ("[]".into(), &[7]),
    ];
    for (dd, codes) in &cases {
        let raw = format!(
            r#"{{"cniVersion":"1.1.0","name":"net","type":"host-local","ipam":{{"type":"host-local","subnet":"10.0.0.0/29","dataDir":{dd}}}}}"#
        );
        all_refused(&sb, raw.as_bytes(), codes, dd);
    }
    // Raw invalid UTF-8 in the JSON text itself.
    let mut raw = format!(
        r#"{{"cniVersion":"1.1.0","name":"net","type":"host-local","ipam":{{"type":"host-local","subnet":"10.0.0.0/29","dataDir":"{root}/data/"#
    )
    .into_bytes();
    raw.extend_from_slice(b"\xff\xfe\"}}");
    all_refused(&sb, &raw, &[6], "invalid UTF-8 bytes");
    assert!(describe(&sb.root().join("cwd")).is_empty());
    assert_eq!(describe(&sb.data()).keys().collect::<Vec<_>>(), ["net/"]);
    sb.assert_outside_unchanged("dataDir");
}

#[test]
fn symlinked_reservation_is_never_followed() {
    let sb = Sandbox::new();
    let net = sb.net();
    // A link to a file, and a link to a file whose content names an attachment.
    std::os::unix::fs::symlink(sb.outside().join("victim"), net.join("10.0.0.2")).unwrap();
    std::os::unix::fs::symlink(sb.outside().join("forged"), net.join("10.0.0.3")).unwrap();
    let conf = sb.conf("1.1.0");
    let addr = sb.run("ADD", "c1", &conf).address();
    assert_eq!(addr, "10.0.0.4/29", "the links count as taken");
    sb.run("CHECK", "c1", &conf).ok();
    // The forged file names "victim eth0": a link cannot stand for it.
    let r = sb.run("CHECK", "victim", &conf);
    r.err_code();
    sb.run("DEL", "victim", &conf).ok();
    sb.run("DEL", "c1", &conf).ok();
    let r = sb.run("GC", "c1", &gc_conf(&sb, &[]));
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    sb.assert_outside_unchanged("reservation symlinks");
}

#[test]
fn dangling_lock_symlink_is_refused_and_not_created() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(sb.outside().join("created"), sb.net().join("lock")).unwrap();
    let conf = sb.conf("1.1.0");
    for cmd in ["ADD", "DEL", "CHECK", "STATUS"] {
        let r = sb.run(cmd, "c1", &conf);
        let code = r.err_code();
        assert!(
            [5, 50, 51].contains(&code),
            "{cmd}: code {code}: {}",
            r.stdout
        );
        assert!(
            r.json()["msg"].as_str().unwrap().contains("symlink"),
            "{r:?}"
        );
    }
    let r = sb.run("GC", "c1", &gc_conf(&sb, &[]));
    assert_eq!(r.err_code(), 5);
    assert!(!sb.outside().join("created").exists());
    sb.assert_outside_unchanged("dangling lock");
}

#[test]
fn lock_symlink_to_a_file_is_refused() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(sb.outside().join("victim"), sb.net().join("lock")).unwrap();
    let conf = sb.conf("1.1.0");
    assert_eq!(sb.run("ADD", "c1", &conf).err_code(), 5);
    assert_eq!(sb.run("DEL", "c1", &conf).err_code(), 5);
    // Nothing reserved behind the refused lock.
    let names: Vec<String> = describe(&sb.net()).into_keys().collect();
    assert_eq!(names, ["lock"]);
    sb.assert_outside_unchanged("lock to file");
}

#[test]
fn cursor_symlink_is_replaced_not_written_through() {
    let sb = Sandbox::new();
    let cursor = sb.net().join("last_reserved_ip.0");
    std::os::unix::fs::symlink(sb.outside().join("victim"), &cursor).unwrap();
    let conf = sb.conf("1.0.0");
    assert_eq!(sb.run("ADD", "c1", &conf).address(), "10.0.0.2/29");
    let m = std::fs::symlink_metadata(&cursor).unwrap();
    assert!(m.is_file(), "the cursor is a regular file again");
    assert_eq!(std::fs::read_to_string(&cursor).unwrap().trim(), "10.0.0.2");
    // A dangling one too.
    std::fs::remove_file(&cursor).unwrap();
    std::os::unix::fs::symlink(sb.outside().join("created"), &cursor).unwrap();
    assert_eq!(sb.run("ADD", "c2", &conf).address(), "10.0.0.3/29");
    assert!(!sb.outside().join("created").exists());
    sb.assert_outside_unchanged("cursor symlink");
}

#[test]
fn network_dir_symlink_is_refused() {
    let sb = Sandbox::new();
    std::fs::remove_dir(sb.net()).unwrap();
    std::os::unix::fs::symlink(sb.outside().join("netdir"), sb.net()).unwrap();
    std::os::unix::fs::symlink(sb.outside().join("missing"), sb.data().join("net2")).unwrap();
    std::os::unix::fs::symlink(sb.outside().join("victim"), sb.data().join("net3")).unwrap();
    for name in ["net", "net2", "net3"] {
        let conf = conf_with("1.1.0", name, &sb.data(), &[]);
        for cmd in ["ADD", "DEL", "CHECK", "STATUS"] {
            let r = sb.run(cmd, "c1", &conf);
            let code = r.err_code();
            assert!([5, 50, 51].contains(&code), "{name} {cmd}: {}", r.stdout);
        }
    }
    assert!(!sb.outside().join("missing").exists());
    sb.assert_outside_unchanged("network dir symlink");
}

#[test]
fn reservation_that_is_a_directory_or_fifo() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.net().join("10.0.0.2")).unwrap();
    std::fs::write(sb.net().join("10.0.0.2/keep"), "x").unwrap();
    for name in ["10.0.0.3", "last_reserved_ip.0"] {
        let c = std::ffi::CString::new(sb.net().join(name).to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    let conf = sb.conf("1.1.0");
    assert_eq!(sb.run("ADD", "c1", &conf).address(), "10.0.0.4/29");
    sb.run("CHECK", "c1", &conf).ok();
    sb.run("DEL", "c1", &conf).ok();
    sb.run("STATUS", "c1", &conf).ok();
    let r = sb.run("GC", "c1", &gc_conf(&sb, &[]));
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    sb.assert_outside_unchanged("directory and FIFO");
}

#[test]
fn fifo_lock_does_not_hang() {
    let sb = Sandbox::new();
    let c = std::ffi::CString::new(sb.net().join("lock").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let conf = sb.conf("1.1.0");
    for cmd in ["ADD", "DEL", "STATUS"] {
        let r = sb.run(cmd, "c1", &conf);
        assert!(r.code == 0 || r.code == 1, "{cmd}: {r:?}");
    }
    sb.assert_outside_unchanged("FIFO lock");
}

#[test]
fn huge_planted_files_are_not_read() {
    let sb = Sandbox::new();
    let big = 512u64 << 20;
    for name in ["10.0.0.2", "last_reserved_ip.0"] {
        let f = std::fs::File::create(sb.net().join(name)).unwrap();
        f.set_len(big).unwrap();
    }
    let conf = sb.conf("1.1.0");
    // The huge file counts as taken (damaged), never read whole.
    assert_eq!(sb.run("ADD", "c1", &conf).address(), "10.0.0.3/29");
    sb.run("CHECK", "c1", &conf).ok();
    sb.run("STATUS", "c1", &conf).ok();
    sb.run("DEL", "c9", &conf).ok();
    let r = sb.run("GC", "c1", &gc_conf(&sb, &[("c1", "eth0")]));
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    sb.run("DEL", "c1", &conf).ok();
    sb.assert_outside_unchanged("huge files");
}

#[test]
fn read_only_file_system() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let sb = Sandbox::new();
        let conf = sb.conf("1.1.0");
        std::fs::set_permissions(sb.net(), std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(sb.run("ADD", "c1", &conf).err_code(), 5);
        std::fs::set_permissions(sb.net(), std::fs::Permissions::from_mode(0o755)).unwrap();
        sb.assert_outside_unchanged("mode 000 network dir");
        return;
    }
    let sb = Sandbox::new();
    let conf = sb.conf("1.1.0");
    assert_eq!(sb.run("ADD", "c1", &conf).address(), "10.0.0.2/29");
    let data = sb.data();
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let d = data.to_str().unwrap();
    if !mount(&["--bind", d, d]) {
        assert!(!ci_required(), "read-only test: bind mount failed");
        eprintln!("SKIPPED read_only_file_system: cannot bind-mount (no CAP_SYS_ADMIN?)");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let guard = Unmount(d.to_string());
    assert!(mount(&["-o", "remount,ro,bind", d]), "remount read-only");
    let before = describe(&data);
    sb.run("CHECK", "c1", &conf).ok();
    let r = sb.run("ADD", "c2", &conf);
    assert_eq!(r.err_code(), 5, "{}", r.stdout);
    assert!(r.stdout.contains("Read-only file system"), "{}", r.stdout);
    let r = sb.run("DEL", "c1", &conf);
    assert_eq!(r.err_code(), 5, "{}", r.stdout);
    let r = sb.run("STATUS", "c1", &conf);
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    assert_eq!(describe(&data), before);
    drop(guard);
    // Writable again: the store is intact.
    sb.run("CHECK", "c1", &conf).ok();
    assert_eq!(sb.run("ADD", "c2", &conf).address(), "10.0.0.3/29");
    sb.assert_outside_unchanged("read-only file system");
}

#[test]
fn oversized_stdin_is_refused() {
    let sb = Sandbox::new();
    let mut raw = format!(
        r#"{{"cniVersion":"1.0.0","name":"net","ipam":{{"type":"host-local","subnet":"10.0.0.0/29","dataDir":"{}"}},"pad":""#,
        sb.data().display()
    )
    .into_bytes();
    raw.resize(raw.len() + (16 << 20), b'x');
    raw.extend_from_slice(b"\"}");
    let r = sb.run_bounded("ADD", "c1", &raw, MAX_INPUT_RSS_KIB);
    assert_eq!(r.err_code(), 5, "{}", r.stdout);
    assert!(r.stdout.contains("larger than"), "{}", r.stdout);
    assert!(describe(&sb.net()).is_empty());
    sb.assert_outside_unchanged("16 MiB stdin");
}

#[test]
fn ten_thousand_range_sets_are_refused() {
    let sb = Sandbox::new();
    let ranges: Vec<Value> = (0..10_000)
        .map(|i| json!([{"subnet": format!("10.{}.{}.0/24", i / 256, i % 256)}]))
        .collect();
    let conf = serde_json::to_vec(&json!({
        "cniVersion": "1.0.0", "name": "net", "type": "host-local",
        "ipam": {"type": "host-local", "ranges": ranges, "dataDir": sb.data()},
    }))
    .unwrap();
    for cmd in ["ADD", "DEL", "CHECK"] {
        let r = sb.run_bounded(cmd, "c1", &conf, MAX_INPUT_RSS_KIB);
        assert_eq!(r.err_code(), 7, "{}", r.stdout);
        assert!(r.stdout.contains("ipam.ranges"), "{}", r.stdout);
    }
    assert!(describe(&sb.net()).is_empty());
    sb.assert_outside_unchanged("10,000 range sets");
}

#[test]
fn forty_thousand_routes_are_refused() {
    // 40,000 routes is about 0.9 MiB of JSON, just under the stdin limit: it
    // is the route limit (1024) that refuses it.
    let sb = Sandbox::new();
    let routes: Vec<Value> = (0..40_000).map(|_| json!({"dst": "10.0.0.0/8"})).collect();
    let conf = serde_json::to_vec(&json!({
        "cniVersion": "1.0.0", "name": "net", "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.0.0.0/29", "routes": routes, "dataDir": sb.data()},
    }))
    .unwrap();
    let r = sb.run_bounded("ADD", "c1", &conf, MAX_INPUT_RSS_KIB);
    assert_eq!(r.err_code(), 7, "{}", r.stdout);
    assert!(r.stdout.contains("ipam.routes"), "{}", r.stdout);
    assert!(describe(&sb.net()).is_empty());
    sb.assert_outside_unchanged("40,000 routes");
}

#[test]
fn huge_cni_args_are_refused() {
    let sb = Sandbox::new();
    let conf = sb.conf("1.0.0");
    // Linux caps one environment string at 128 KiB (MAX_ARG_STRLEN): a 1 MiB
    // CNI_ARGS cannot even reach an exec'ed plugin.
    let mega = vec!["K=V"; (1 << 20) / 4].join(";");
    let err = Command::new(our_bin())
        .env_clear()
        .env("CNI_ARGS", &mega)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect_err("a 1 MiB environment string is refused by execve");
    assert_eq!(err.raw_os_error(), Some(libc::E2BIG), "{err}");
    // The largest that fits, through the binary.
    let big = vec!["K=V"; 30_000].join(";");
    let mut env = cni_env("ADD", "c1", "eth0");
    env.push(("CNI_ARGS", &big));
    let r = run_limited(
        &our_bin(),
        &env,
        conf.clone(),
        &sb.root().join("cwd"),
        TIMEOUT,
    );
    r.assert_bounded_by("120 KiB CNI_ARGS", MAX_INPUT_RSS_KIB);
    assert_eq!(r.err_code(), 4, "{}", &r.stdout[..200.min(r.stdout.len())]);
    // 1 MiB through the library (as an embedding runtime could pass it).
    for args in [mega.clone(), format!("IgnoreUnknown=1;{mega};IP=garbage")] {
        let mut vars = std::collections::HashMap::new();
        for (k, v) in cni_env("ADD", "c1", "eth0") {
            vars.insert(k.to_string(), std::ffi::OsString::from(v));
        }
        vars.insert("CNI_ARGS".into(), args.into());
        let lookup = |k: &str| vars.get(k).cloned();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let start = Instant::now();
        let o = host_local::run(&lookup, &mut &conf[..], &mut out, &mut err);
        assert!(start.elapsed() < TIMEOUT, "took {:?}", start.elapsed());
        assert_eq!(o.exit_code, 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(matches!(v["code"].as_u64(), Some(4)), "{}", &v["msg"]);
    }
    assert!(describe(&sb.net()).is_empty());
    sb.assert_outside_unchanged("huge CNI_ARGS");
}

#[test]
fn worst_case_one_mib_config_is_bounded() {
    // Just under the 1 MiB stdin limit, the shape that costs the most memory
    // once parsed: half a million one-key objects (as routes).
    let sb = Sandbox::new();
    let head = format!(
        r#"{{"cniVersion":"1.0.0","name":"net","ipam":{{"type":"host-local","subnet":"10.0.0.0/29","dataDir":"{}","routes":["#,
        sb.data().display()
    );
    let item = br#"{"a":1}"#;
    let n = ((1 << 20) - head.len() - 16) / (item.len() + 1);
    let mut raw = head.into_bytes();
    for i in 0..n {
        if i > 0 {
            raw.push(b',');
        }
        raw.extend_from_slice(item);
    }
    raw.extend_from_slice(b"]}}");
    assert!(raw.len() <= 1 << 20);
    // Parsing takes 1.6 s in a release build, 3.6 s in a debug one: allow
    // for a loaded machine.
    let env = cni_env("ADD", "c1", "eth0");
    let r = run_limited(&our_bin(), &env, raw, &sb.root().join("cwd"), SLOW_TIMEOUT);
    assert!(!r.killed, "killed after {SLOW_TIMEOUT:?}");
    assert!(
        r.peak_kib() < MAX_WORST_RSS_KIB,
        "peak RSS {} KiB: {r:?}",
        r.peak_kib()
    );
    eprintln!(
        "worst-case 1 MiB config: {:?}, peak RSS {} KiB",
        r.elapsed,
        r.peak_kib()
    );
    assert_eq!(r.err_code(), 7, "{}", r.stdout);
    assert!(describe(&sb.net()).is_empty());
    sb.assert_outside_unchanged("worst-case 1 MiB config");
}
