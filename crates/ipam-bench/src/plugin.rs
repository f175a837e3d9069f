//! Running one plugin invocation and measuring it: the plugin under test
//! (its binary, data directory and stderr file), spawning it with a CNI
//! environment, reaping it with wait4() for its peak RSS, and the checks on
//! what it printed.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::{NETWORK, SUBNET};

pub(crate) struct Plugin {
    pub(crate) path: PathBuf,
    /// Whether VERSION lists 1.1.0; if not, STATUS is measured as the error exit it is.
    pub(crate) supports_status: bool,
    /// How STATUS failed, for plugins without 1.1.0.
    pub(crate) status_note: Option<String>,
    pub(crate) data: TempDir,
    pub(crate) stderr: File,
}

pub(crate) struct Run {
    pub(crate) wall: Duration,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) maxrss_kib: i64,
}

pub(crate) fn new_plugin(path: &Path, root: &Path) -> Result<Plugin> {
    let path = fs::canonicalize(path).with_context(|| format!("plugin {}", path.display()))?;
    let mut p = Plugin {
        path,
        supports_status: false,
        status_note: None,
        data: new_datadir(root)?,
        stderr: tempfile::tempfile_in(root)?,
    };
    let run = invoke(&mut p, "VERSION", "", br#"{"cniVersion":"1.1.0"}"#)?;
    expect_ok(&p, &run, "VERSION")?;
    let v: Value = serde_json::from_slice(&run.stdout).context("VERSION output")?;
    p.supports_status = v["supportedVersions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s == "1.1.0"));
    Ok(p)
}

pub(crate) fn new_datadir(root: &Path) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("ipam-bench-")
        .tempdir_in(root)
        .with_context(|| format!("tempdir in {}", root.display()))
}

pub(crate) fn netconf(version: &str, data_dir: &Path, prev: Option<&Value>) -> Vec<u8> {
    let top = match prev {
        Some(p) => json!({"prevResult": p}),
        None => json!({}),
    };
    test_support::net_conf(version, NETWORK, data_dir, json!({"subnet": SUBNET}), top)
}

/// Starts the plugin with only PATH and CNI_* in its environment and the config on stdin.
pub(crate) fn spawn(
    path: &Path,
    cmd: &str,
    id: &str,
    stdin: &[u8],
    stderr: &File,
) -> Result<Child> {
    let mut env = vec![("CNI_COMMAND", cmd), ("CNI_PATH", "/usr/lib/cni")];
    if !id.is_empty() {
        env.extend([
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", "/var/run/netns/bench"),
            ("CNI_IFNAME", "eth0"),
        ]);
    }
    let mut child = test_support::plugin_command(path, &env)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| format!("spawning {}", path.display()))?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    match pipe.write_all(stdin) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(child),
    }
}

/// ADDs measured for peak RSS.
pub(crate) const RSS_RUNS: usize = 11;

/// Peak RSS (KiB) of RSS_RUNS ADDs of new containers on the plugin's current store, each run
/// under GNU time and followed by its DEL. None when /usr/bin/time is missing.
pub(crate) fn rss_via_time(p: &mut Plugin, size: usize) -> Result<Option<Vec<i64>>> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(RSS_RUNS);
    for j in 0..RSS_RUNS {
        let id = format!("rss-{size}-{j}");
        let dir = p.data.path().to_path_buf();
        let conf = netconf("1.0.0", &dir, None);
        let report = tempfile::NamedTempFile::new()?;
        let mut child = Command::new(time)
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(report.path())
            .arg(&p.path)
            .env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("CNI_CONTAINERID", &id)
            .env("CNI_NETNS", "/var/run/netns/bench")
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning /usr/bin/time")?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(&conf)?;
        let o = child.wait_with_output()?;
        ensure!(
            o.status.success(),
            "{} ADD {id} under time failed: {}",
            p.path.display(),
            String::from_utf8_lossy(&o.stdout)
        );
        let kib: i64 = fs::read_to_string(report.path())?
            .trim()
            .lines()
            .last()
            .unwrap_or_default()
            .parse()
            .context("GNU time's %M")?;
        out.push(kib);
        let del = invoke(p, "DEL", &id, &netconf("1.0.0", &dir, None))?;
        expect_ok(p, &del, &format!("DEL {id}"))?;
    }
    Ok(Some(out))
}

/// Reads the child's stdout to the end and reaps it with wait4() for its peak RSS.
pub(crate) fn finish(mut child: Child) -> Result<(ExitStatus, Vec<u8>, i64)> {
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut out)?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; status and ru are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    Ok((ExitStatus::from_raw(status), out, ru.ru_maxrss))
}

pub(crate) fn invoke(p: &mut Plugin, cmd: &str, id: &str, stdin: &[u8]) -> Result<Run> {
    p.stderr.set_len(0)?;
    p.stderr.seek(SeekFrom::Start(0))?;
    let t = Instant::now();
    let child = spawn(&p.path, cmd, id, stdin, &p.stderr)?;
    let (status, stdout, maxrss_kib) = finish(child)?;
    let wall = t.elapsed();
    let mut stderr = Vec::new();
    p.stderr.seek(SeekFrom::Start(0))?;
    p.stderr.read_to_end(&mut stderr)?;
    Ok(Run {
        wall,
        status,
        stdout,
        stderr,
        maxrss_kib,
    })
}

pub(crate) fn expect_ok(p: &Plugin, run: &Run, what: &str) -> Result<()> {
    if !run.status.success() {
        bail!(
            "{} {what} failed ({})\nstdout: {}\nstderr: {}",
            p.path.display(),
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    Ok(())
}

pub(crate) fn first_address(stdout: &[u8]) -> Result<(Value, String)> {
    let v: Value = serde_json::from_slice(stdout).with_context(|| {
        format!(
            "ADD result is not JSON: {}",
            String::from_utf8_lossy(stdout)
        )
    })?;
    let a = v["ips"][0]["address"]
        .as_str()
        .context("ADD result without ips[0].address")?;
    let a = a.split('/').next().unwrap_or(a).to_string();
    Ok((v, a))
}
