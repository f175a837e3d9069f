//! Cleanup for the `cri` suite: what a private containerd world can leave
//! outside its temp dir (shims and pods, the bridge, iptables rules and
//! chains, cgroups), removed by PID, name and comment: never by a broad
//! process name, never anything the test did not create.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use crate::netns_util::*;

/// portmap's shared chains (CNI-HOSTPORT-*), created by the first port
/// mapping and never removed by portmap: removed when they serve no port
/// mapping any more (CNI-HOSTPORT-DNAT holds no jump), so the test leaves
/// the tables as it found them.
pub fn remove_idle_hostport_chains() {
    for tool in ["iptables", "ip6tables"] {
        let dnat = run(tool, &["-t", "nat", "-S", "CNI-HOSTPORT-DNAT"]);
        if !dnat.ok || dnat.stdout.lines().any(|l| l.starts_with("-A ")) {
            continue; // gone already, or in use by someone's port mapping
        }
        // portmap's jumps into its chains: (chain, rule).
        let to_dnat: &[&str] = &[
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "CNI-HOSTPORT-DNAT",
        ];
        let jumps: [(&str, &[&str]); 3] = [
            ("PREROUTING", to_dnat),
            ("OUTPUT", to_dnat),
            (
                "POSTROUTING",
                &[
                    "-m",
                    "comment",
                    "--comment",
                    "CNI portfwd requiring masquerade",
                    "-j",
                    "CNI-HOSTPORT-MASQ",
                ],
            ),
        ];
        for (chain, rule) in jumps {
            let mut a = vec!["-t", "nat", "-D", chain];
            a.extend_from_slice(rule);
            let r = run(tool, &a);
            if !r.ok {
                eprintln!("cleanup: {tool} {}: {}", a.join(" "), r.stderr);
            }
        }
        for c in [
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-MASQ",
            "CNI-HOSTPORT-SETMARK",
        ] {
            let _ = run(tool, &["-t", "nat", "-F", c]); // missing chain: nothing to do
            let r = run(tool, &["-t", "nat", "-X", c]);
            if !r.ok {
                eprintln!("cleanup: {tool} -X {c}: {}", r.stderr);
            }
        }
    }
}

/// Everything a world left outside its temp dir, then the dir itself:
/// processes naming the dir (shims) and their children (pods), the
/// bridge, iptables rules naming the network. Errors are printed, not fatal.
pub fn teardown_dir(tmp: &Path) {
    let tag = tmp.display().to_string();
    for pid in pids_naming(&tag) {
        for child in children_of(pid) {
            kill9(child);
        }
        kill9(pid);
    }
    if let Ok(br) = std::fs::read_to_string(tmp.join("bridge")) {
        if run("ip", &["link", "show", &br]).ok {
            let r = run("ip", &["link", "del", &br]);
            if !r.ok {
                eprintln!("cleanup: ip link del {br}: {}", r.stderr);
            }
        }
    }
    if let Ok(net) = std::fs::read_to_string(tmp.join("net")) {
        delete_iptables_rules_of(&net);
    }
    if let Ok(cg) = std::fs::read_to_string(tmp.join("cgroup")) {
        remove_cgroups(cg.trim_start_matches('/'));
    }
    umount_under(tmp);
    if let Err(e) = std::fs::remove_dir_all(tmp) {
        eprintln!("cleanup: remove {}: {e}", tmp.display());
    }
}

/// Temp dirs of earlier runs whose owner process is gone (interrupted runs).
pub fn sweep_stale(prefix: &str) {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        // A dir without `owner` yet may be another test's, just created.
        let Ok(owner) = std::fs::read_to_string(e.path().join("owner")) else {
            continue;
        };
        let alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            eprintln!("cri e2e: sweeping {} (its run was interrupted)", name);
            teardown_dir(&e.path());
        }
    }
}

/// rmdir `<hierarchy>/<parent>/*` and `<hierarchy>/<parent>` in every
/// cgroup hierarchy (v1 controllers and the unified one). A cgroup whose
/// killed processes are not reaped yet is retried for a moment.
fn remove_cgroups(parent: &str) {
    if parent.is_empty() {
        return;
    }
    let mut dirs = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    for h in std::iter::once(root.to_path_buf()).chain(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    ) {
        let p = h.join(parent);
        if p.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                }
            }
            dirs.push(p);
        }
    }
    for d in dirs {
        let mut last = None;
        for _ in 0..20 {
            match std::fs::remove_dir(&d) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(e) = last {
            eprintln!("cleanup: rmdir {}: {e}", d.display());
        }
    }
}

fn kill9(pid: u32) {
    // SAFETY: kill has no memory preconditions; the PID was read just now.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// PIDs whose command line contains `tag` (our unique temp dir path).
fn pids_naming(tag: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(tag) {
            out.push(pid);
        }
    }
    out
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Deletes the rules whose comment names `net` (bridge's masquerade jumps,
/// portmap's) and flushes and deletes the per-container chains they jump to.
fn delete_iptables_rules_of(net: &str) {
    for (save, tool) in [
        ("iptables-save", "iptables"),
        ("ip6tables-save", "ip6tables"),
    ] {
        let Some(_) = which(save) else { continue };
        let r = run(save, &[]);
        let mut table = String::new();
        let mut chains = Vec::new();
        for l in r.stdout.lines() {
            if let Some(t) = l.strip_prefix('*') {
                table = t.to_owned();
            } else if let Some(rule) = l.strip_prefix("-A ") {
                if !l.contains(net) {
                    continue;
                }
                // iptables-save quotes the comment; split respecting quotes.
                let args = shell_words(rule);
                let mut cmd = vec!["-t".to_owned(), table.clone(), "-D".to_owned()];
                cmd.extend(args.iter().cloned());
                let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
                let d = run(tool, &refs);
                if !d.ok {
                    eprintln!("cleanup: {tool} {}: {}", refs.join(" "), d.stderr);
                }
                if let Some(i) = args.iter().position(|a| a == "-j") {
                    let target = &args[i + 1];
                    if target.starts_with("CNI-") && !target.starts_with("CNI-HOSTPORT") {
                        chains.push((table.clone(), target.clone()));
                    }
                }
            }
        }
        for (t, c) in chains {
            let _ = run(tool, &["-t", &t, "-F", &c]); // gone already: fine
            let _ = run(tool, &["-t", &t, "-X", &c]);
        }
    }
}

/// Splits an iptables-save rule into arguments (double quotes, `\"` inside).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_q, mut any) = (false, false);
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' if in_q => {
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            '"' => {
                in_q = !in_q;
                any = true;
            }
            c if c.is_whitespace() && !in_q => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn shell_words_splits_iptables_save_comments() {
    let w = shell_words(
        r#"POSTROUTING -s 10.231.1.2/32 -m comment --comment "name: \"n\" id: \"x\"" -j CNI-ab"#,
    );
    assert_eq!(
        w,
        [
            "POSTROUTING",
            "-s",
            "10.231.1.2/32",
            "-m",
            "comment",
            "--comment",
            "name: \"n\" id: \"x\"",
            "-j",
            "CNI-ab"
        ]
    );
}
