//! Cluster mode at fleet scale, side by side with the disk store in one
//! run, against a three-member etcd on loopback ports (started here, on the
//! same cores as the plugins):
//!
//! - bursts: 64 nodes × K concurrent ADDs (K = 1, 4, 8) on one fresh /16
//!   pool: failures, duplicates, wall time, etcd calls per ADD (each
//!   invocation reports its own through `HOST_LOCAL_ETCD_CALLS`), requests
//!   the members served and their CPU per ADD (their /metrics); the disk
//!   store does the same bursts, one data directory per node;
//! - a /14 pool empty and holding 200,000 reservations imported
//!   (`ipamctl cluster import`, contiguous from the range start, so a fresh
//!   node with no cursor starts in front of a taken run of 200,000): ADD+DEL
//!   cycles of a fresh node, etcd CPU per cycle, STATUS, and the bytes
//!   etcd sends for a GC of a node holding 10 reservations.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::report::{fmt_ms, ms, ratio, spread, stats, thousands, Table};
use test_support::etcd::Cluster;

const NODES: usize = 64;
const BURST_SUBNET: &str = "10.130.0.0/16";
const BIG_SUBNET: &str = "10.64.0.0/14";
/// 10.64.0.2: the first address the /14 hands out (.1 is the gateway).
const BIG_FIRST: u32 = u32::from_be_bytes([10, 64, 0, 2]);

/// What one invocation reported of its etcd calls.
#[derive(Deserialize)]
struct Calls {
    reads: u64,
    txns: u64,
}

/// Sums of the members' counters.
#[derive(Clone, Copy, Debug, Default)]
struct Served {
    ranges: f64,
    txns: f64,
    cpu: f64,
    sent: f64,
}

/// One member's /metrics over plain HTTP.
fn metrics(endpoint: &str) -> Result<String> {
    let hostport = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).with_context(|| format!("connect {hostport}"))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {hostport}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn served(c: &Cluster) -> Result<Served> {
    let mut t = Served::default();
    for e in c.endpoints() {
        for line in metrics(&e)?.lines() {
            let Some((name, v)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = v.parse().unwrap_or(0.0);
            if name.starts_with("grpc_server_handled_total") {
                if name.contains("grpc_method=\"Range\"") {
                    t.ranges += v;
                } else if name.contains("grpc_method=\"Txn\"") {
                    t.txns += v;
                }
            } else if name == "process_cpu_seconds_total" {
                t.cpu += v;
            } else if name == "etcd_network_client_grpc_sent_bytes_total" {
                t.sent += v;
            }
        }
    }
    Ok(t)
}

impl std::ops::Sub for Served {
    type Output = Served;
    fn sub(self, o: Served) -> Served {
        Served {
            ranges: self.ranges - o.ranges,
            txns: self.txns - o.txns,
            cpu: self.cpu - o.cpu,
            sent: self.sent - o.sent,
        }
    }
}

fn conf(network: &str, subnet: &str, data: &Path, store: Option<Value>) -> Vec<u8> {
    let mut ipam = json!({"type": "host-local", "subnet": subnet, "dataDir": data});
    if let Some(s) = store {
        ipam["store"] = s;
    }
    let c = json!({"cniVersion": "1.1.0", "name": network, "type": "bridge", "ipam": ipam});
    serde_json::to_vec(&c).expect("config serializes")
}

fn etcd_store(c: &Cluster, node: &str) -> Value {
    json!({"type": "etcd", "endpoints": c.endpoints(), "prefix": "/ipam-fleet", "node": node})
}

/// One invocation started (stdin written), its calls appended to `calls`.
fn start(plugin: &Path, cmd: &str, id: &str, stdin: &[u8], calls: &Path) -> Result<Child> {
    let calls = calls.to_string_lossy();
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_PATH", "/usr/lib/cni"),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", "/var/run/netns/bench"),
        ("CNI_IFNAME", "eth0"),
        ("HOST_LOCAL_ETCD_CALLS", &calls),
    ];
    let mut child = test_support::plugin_command(plugin, &env)
        .spawn()
        .with_context(|| format!("spawning {}", plugin.display()))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)?;
    Ok(child)
}

/// The address an ADD's output names, or its error text.
fn outcome(child: Child) -> Result<std::result::Result<String, String>> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Ok(Err(text));
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("ADD output {text}"))?;
    Ok(Ok(v["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()))
}

fn run_ok(plugin: &Path, cmd: &str, id: &str, stdin: &[u8], calls: &Path) -> Result<f64> {
    let t = Instant::now();
    let out = start(plugin, cmd, id, stdin, calls)?.wait_with_output()?;
    let wall = ms(t.elapsed());
    if !out.status.success() {
        bail!(
            "{cmd} {id} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(wall)
}

/// The calls recorded in `path` (one line per invocation).
fn read_calls(path: &Path) -> Result<Vec<Calls>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("calls line {l}")))
        .collect()
}

/// `median (p90)` of `v`, or `n/a` when no invocation reported.
fn median_p90(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let (m, _, p90) = stats(v);
    format!("{m} ({p90})")
}

/// One burst: `NODES` × `k` ADDs started at once; (failures, duplicates,
/// wall ms, first failure). Duplicates: an address handed out twice in one
/// pool (`shared`: one pool for all nodes; else one per node).
fn burst(
    plugin: &Path,
    confs: &[Vec<u8>],
    k: usize,
    calls: &Path,
    shared: bool,
) -> Result<(usize, usize, f64, Option<String>)> {
    let t = Instant::now();
    let mut children = Vec::with_capacity(confs.len() * k);
    for j in 0..k {
        for (n, c) in confs.iter().enumerate() {
            children.push(start(plugin, "ADD", &format!("burst-{n}-{j}"), c, calls)?);
        }
    }
    let (mut failed, mut first, mut seen, mut dup) = (0, None, HashSet::new(), 0);
    for (i, ch) in children.into_iter().enumerate() {
        let pool = if shared { 0 } else { i % confs.len() };
        match outcome(ch)? {
            Ok(a) => {
                if !seen.insert((pool, a)) {
                    dup += 1;
                }
            }
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    Ok((failed, dup, ms(t.elapsed()), first))
}

/// The fleet tables, or why they could not be made.
pub fn measure(
    plugin: &Path,
    ipamctl: &Path,
    root: &Path,
    quick: bool,
) -> Result<std::result::Result<Table, String>> {
    if !test_support::etcd::etcd_installed() {
        return Ok(Err(
            "fleet rows left out: etcd not installed (Debian etcd-server, etcd-client)".into(),
        ));
    }
    let data = tempfile::Builder::new()
        .prefix("ipam-bench-fleet-")
        .tempdir_in(root)
        .with_context(|| format!("tempdir in {}", root.display()))?;
    let c = Cluster::start_in(3, root);
    let mut t = Table::new(&["measure", "disk", "etcd, 3 members", "note"]);

    for k in [1usize, 4, 8] {
        eprintln!("fleet: {NODES} nodes x {k} concurrent ADDs, disk then etcd");
        let net = format!("burst{k}");
        let disk: Vec<Vec<u8>> = (0..NODES)
            .map(|n| {
                conf(
                    &net,
                    BURST_SUBNET,
                    &data.path().join(format!("disk-node{n}")),
                    None,
                )
            })
            .collect();
        let etcd: Vec<Vec<u8>> = (0..NODES)
            .map(|n| {
                conf(
                    &net,
                    BURST_SUBNET,
                    data.path(),
                    Some(etcd_store(&c, &format!("node-{n}"))),
                )
            })
            .collect();
        let dcalls = data.path().join(format!("disk-calls-{k}"));
        let d = burst(plugin, &disk, k, &dcalls, false)?;
        let ecalls = data.path().join(format!("etcd-calls-{k}"));
        let before = served(&c)?;
        let e = burst(plugin, &etcd, k, &ecalls, true)?;
        let s = served(&c)? - before;
        let calls = read_calls(&ecalls)?;
        let adds = (NODES * k) as f64;
        let txns: Vec<f64> = calls.iter().map(|x| x.txns as f64).collect();
        let reads: Vec<f64> = calls.iter().map(|x| x.reads as f64).collect();
        let racers = NODES * k;
        t.row(vec![
            format!("{NODES} nodes × {k} ADDs at once ({racers} racers): failed, duplicates, wall"),
            format!("{} failed, {} dup, {}", d.0, d.1, fmt_ms(d.2)),
            format!("{} failed, {} dup, {}", e.0, e.1, fmt_ms(e.2)),
            e.3.map(|m| m.chars().take(120).collect())
                .unwrap_or_default(),
        ]);
        t.row(vec![
            format!(
                "  etcd calls per ADD ({racers} racers): txns median (p90), reads median (p90)"
            ),
            String::new(),
            format!("{} txns, {} reads", median_p90(&txns), median_p90(&reads)),
            format!(
                "served: {:.2} Txn, {:.2} Range per ADD",
                s.txns / adds,
                s.ranges / adds
            ),
        ]);
        t.row(vec![
            format!("  etcd CPU per ADD ({racers} racers, 3 members)"),
            String::new(),
            fmt_ms(s.cpu * 1000.0 / adds),
            String::new(),
        ]);
    }

    // The /14: empty, then 200,000 imported contiguous from the range start.
    let big = if quick { 20_000 } else { 200_000 };
    let cycles = if quick { 10 } else { 40 };
    eprintln!("fleet: /14 empty, then {big} imported: {cycles} ADD+DEL cycles of a fresh node");
    let disk_root = data.path().join("disk-big");
    let net_dir = disk_root.join("big");
    std::fs::create_dir_all(&net_dir)?;
    std::fs::write(net_dir.join("lock"), "")?;
    for i in 0..big {
        let a = Ipv4Addr::from(BIG_FIRST + i as u32);
        std::fs::write(net_dir.join(a.to_string()), format!("imported-{i}\r\neth0"))?;
    }
    let empty_conf = conf(
        "empty",
        BIG_SUBNET,
        data.path(),
        Some(etcd_store(&c, "fresh")),
    );
    let big_conf = conf(
        "big",
        BIG_SUBNET,
        data.path(),
        Some(etcd_store(&c, "fresh")),
    );
    let disk_conf = conf("big", BIG_SUBNET, &disk_root, None);
    let conf_file = data.path().join("big.conf");
    std::fs::write(
        &conf_file,
        conf(
            "big",
            BIG_SUBNET,
            data.path(),
            Some(etcd_store(&c, "imported")),
        ),
    )?;
    let ti = Instant::now();
    let out = Command::new(ipamctl)
        .args(["cluster", "import", "big", "--config"])
        .arg(&conf_file)
        .args(["--node", "imported", "--from"])
        .arg(&net_dir)
        .output()
        .with_context(|| format!("running {}", ipamctl.display()))?;
    let import_ms = ms(ti.elapsed());
    if !out.status.success() {
        let why = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        t.row(vec![
            "/14 pool rows left out: ipamctl cluster import failed".into(),
            String::new(),
            String::new(),
            why.chars().take(160).collect(),
        ]);
        return Ok(Ok(t));
    }
    t.row(vec![
        format!("ipamctl cluster import of {} reservations", thousands(big)),
        String::new(),
        fmt_ms(import_ms),
        String::new(),
    ]);
    let cycle = |cf: &[u8], tag: &str, calls: &Path| -> Result<(Vec<f64>, Served)> {
        let before = served(&c)?;
        let mut walls = Vec::new();
        for i in 0..cycles {
            let id = format!("{tag}-{i}");
            let a = run_ok(plugin, "ADD", &id, cf, calls)?;
            let d = run_ok(plugin, "DEL", &id, cf, calls)?;
            walls.push(a + d);
        }
        Ok((walls, served(&c)? - before))
    };
    let (de, _) = cycle(
        &conf("empty", BIG_SUBNET, &data.path().join("disk-empty"), None),
        "de",
        &data.path().join("x"),
    )?;
    let (dw, _) = cycle(&disk_conf, "dw", &data.path().join("x"))?;
    let (ew, es) = cycle(&empty_conf, "ee", &data.path().join("calls-empty"))?;
    let (fw, fs) = cycle(&big_conf, "ef", &data.path().join("calls-big"))?;
    let n = cycles as f64;
    let (se, sf, sde, sdw) = (stats(&ew), stats(&fw), stats(&de), stats(&dw));
    t.row(vec![
        "ADD+DEL of a fresh node, /14 empty: median (p10–p90)".into(),
        format!("{} ({})", fmt_ms(sde.0), spread(sde)),
        format!("{} ({})", fmt_ms(se.0), spread(se)),
        format!(
            "etcd CPU {} per cycle; {:.1} Txn, {:.1} Range served",
            fmt_ms(es.cpu * 1000.0 / n),
            es.txns / n,
            es.ranges / n
        ),
    ]);
    t.row(vec![
        format!(
            "ADD+DEL of a fresh node, /14 holding {} from its start, no cursor",
            thousands(big)
        ),
        format!("{} ({})", fmt_ms(sdw.0), spread(sdw)),
        format!("{} ({})", fmt_ms(sf.0), spread(sf)),
        format!(
            "etcd CPU {} per cycle; {:.1} Txn, {:.1} Range served",
            fmt_ms(fs.cpu * 1000.0 / n),
            fs.txns / n,
            fs.ranges / n
        ),
    ]);
    t.row(vec![
        format!("  holding {} vs empty", thousands(big)),
        ratio(sdw.0, sde.0),
        ratio(sf.0, se.0),
        format!("etcd CPU per cycle {}", ratio(fs.cpu, es.cpu)),
    ]);
    // STATUS at the full pool, and GC of a node holding 10 reservations.
    let gc_conf = conf(
        "big",
        BIG_SUBNET,
        data.path(),
        Some(etcd_store(&c, "gc-node")),
    );
    let none = data.path().join("x");
    for i in 0..10 {
        run_ok(plugin, "ADD", &format!("gc-{i}"), &gc_conf, &none)?;
    }
    let before = served(&c)?;
    let mut st = Vec::new();
    for _ in 0..cycles {
        st.push(run_ok(plugin, "STATUS", "status", &big_conf, &none)?);
    }
    let ss = served(&c)? - before;
    let s = stats(&st);
    t.row(vec![
        format!("STATUS, /14 holding {}", thousands(big)),
        String::new(),
        format!("{} ({})", fmt_ms(s.0), spread(s)),
        format!("etcd CPU {} per call", fmt_ms(ss.cpu * 1000.0 / n)),
    ]);
    let mut gc: Value = serde_json::from_slice(&gc_conf)?;
    gc["cni.dev/valid-attachments"] = (0..10)
        .map(|i| json!({"containerID": format!("gc-{i}"), "ifname": "eth0"}))
        .collect();
    let gc = serde_json::to_vec(&gc)?;
    let before = served(&c)?;
    run_ok(plugin, "GC", "gc", &gc, &none)?;
    let g = served(&c)? - before;
    t.row(vec![
        format!(
            "GC of a node holding 10, /14 holding {}: bytes etcd sent",
            thousands(big)
        ),
        String::new(),
        format!("{:.1} KiB", g.sent / 1024.0),
        format!("{} Range, {} Txn served", g.ranges, g.txns),
    ]);
    drop(c);
    Ok(Ok(t))
}

/// `ipamctl` beside our plugin (the release build puts both in one directory).
pub fn ipamctl_beside(plugin: &Path) -> PathBuf {
    plugin.with_file_name("ipamctl")
}
