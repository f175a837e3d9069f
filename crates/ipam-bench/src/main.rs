//! `ipam-bench`: times our `host-local` against the Go reference plugin, process invocation
//! by process invocation, the two alternating in one run, each in its own data directory.
//!
//! One command from the workspace root (builds the release `host-local` first):
//!
//! ```text
//! cargo run --release -p ipam-bench -- [--quick] [--markdown] [--ours PATH] [--reference PATH]
//! ```
//!
//! Without `--ours` the bench runs `cargo build --release -p host-local` into its own target
//! directory and measures `<target dir>/release/host-local`.
// wait4 (a child's rusage) and syncfs through libc; each block carries its
// SAFETY comment (clippy denies others).
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use serde_json::Value;

mod backends;
mod fleet;
mod plugin;
mod report;
use plugin::{
    expect_ok, finish, first_address, invoke, netconf, new_datadir, new_plugin, rss_via_time,
    spawn, Plugin,
};
use report::{
    file_size, fmt_ms, median_i64, ms, ratio, read_trim, spread, stats, thousands, Table,
};

const NETWORK: &str = "bench";
const SUBNET: &str = "10.128.0.0/16";
/// First address given to a pre-filled reservation: 10.128.0.2 (10.128.0.1 is the gateway).
const FILL_BASE: u32 = u32::from_be_bytes([10, 128, 0, 2]);
const CONCURRENT: usize = 32;

#[derive(Parser)]
#[command(about = "Benchmark our host-local against the reference plugin")]
struct Args {
    /// Reduced run for CI smoke use (under a minute; stores of up to 1,000 reservations).
    #[arg(long)]
    quick: bool,
    /// Our plugin [default: <target dir>/release/host-local, built first with cargo].
    #[arg(long)]
    ours: Option<PathBuf>,
    /// The reference plugin [default: /usr/lib/cni/host-local.go, where the package
    /// host-local-rs diverts the Go binary, if it exists, else /usr/lib/cni/host-local].
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Print the tables as Markdown.
    #[arg(long)]
    markdown: bool,
    /// Only the cluster-mode fleet rows (bursts of 64 nodes, the /14 pool).
    #[arg(long)]
    fleet_only: bool,
    /// Parent of the data directories (should be a disk, not tmpfs).
    #[arg(long, default_value = "/var/tmp")]
    data_root: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Check,
    Del,
    Status,
}

impl Op {
    const ALL: [Op; 4] = [Op::Add, Op::Check, Op::Del, Op::Status];
    fn name(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Check => "CHECK",
            Op::Del => "DEL",
            Op::Status => "STATUS",
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ours = match &args.ours {
        Some(p) => p.clone(),
        None => build_ours()?,
    };
    let root = &args.data_root;
    if args.fleet_only {
        print_fleet(&ours, root, &args)?;
        return Ok(());
    }
    let reference = match &args.reference {
        Some(p) => p.clone(),
        None => default_reference(),
    };
    let mut plugins = [new_plugin(&ours, root)?, new_plugin(&reference, root)?];
    // The Go reference v1.1.1 does not list 1.1.0; a default that does is ours
    // (package host-local-rs installed), and ours against ours measures nothing.
    ensure!(
        args.reference.is_some() || !plugins[1].supports_status,
        "the reference {} answers VERSION like our plugin (lists 1.1.0): is the package \
         host-local-rs installed without its diversion? Pass --reference PATH",
        reference.display()
    );
    let load = read_trim("/proc/loadavg");
    let fsync_start = fsync_probe(root)?;

    // (store size, ADD/CHECK/DEL/STATUS cycles), concurrency rounds, store size for memory.
    let (plan, rounds, mem_size): (&[(usize, usize)], usize, usize) = if args.quick {
        (&[(0, 40), (100, 30), (1_000, 20)], 3, 1_000)
    } else {
        (
            &[
                (0, 200),
                (100, 200),
                (1_000, 200),
                (10_000, 40),
                (60_000, 30),
            ],
            7,
            10_000,
        )
    };

    let mut latency = Table::new(&[
        "store",
        "op",
        "n",
        "ours median",
        "ours p10–p90",
        "ref median",
        "ref p10–p90",
        "ours/ref",
    ]);
    let mut rss_rows = Vec::new();
    let mut rss_fallback = false;
    for &(size, iters) in plan {
        eprintln!("store of {size} reservations: filling, then {iters} cycles");
        let r = measure_store(&mut plugins, root, size, iters)?;
        let store = if size == 0 {
            "empty".to_string()
        } else {
            thousands(size)
        };
        let w = r.warm.map(ms);
        latency.row(vec![
            store.clone(),
            "first ADD after fill".into(),
            "1".into(),
            fmt_ms(w[0]),
            "–".into(),
            fmt_ms(w[1]),
            "–".into(),
            ratio(w[0], w[1]),
        ]);
        for (i, op) in Op::ALL.iter().enumerate() {
            let s = [stats(&r.samples[0][i]), stats(&r.samples[1][i])];
            let cell = |k: usize| {
                let err = *op == Op::Status && !plugins[k].supports_status;
                (
                    format!("{}{}", fmt_ms(s[k].0), if err { " (err)" } else { "" }),
                    err,
                )
            };
            let (c0, e0) = cell(0);
            let (c1, e1) = cell(1);
            latency.row(vec![
                store.clone(),
                op.name().into(),
                iters.to_string(),
                c0,
                spread(s[0]),
                c1,
                spread(s[1]),
                if e0 || e1 {
                    "n/a".into()
                } else {
                    ratio(s[0].0, s[1].0)
                },
            ]);
        }
        if size == 0 || size == mem_size {
            let via_time = (
                rss_via_time(&mut plugins[0], size)?,
                rss_via_time(&mut plugins[1], size)?,
            );
            let m = match via_time {
                (Some(a), Some(b)) => [median_i64(a), median_i64(b)],
                _ => {
                    rss_fallback = true;
                    r.add_rss.map(median_i64)
                }
            };
            rss_rows.push((size, m));
        }
    }

    eprintln!("{CONCURRENT} concurrent ADDs: {rounds} rounds");
    let mut conc: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in order(round) {
            conc[k].push(ms(concurrent_round(&mut plugins[k], root, round)?));
        }
    }

    let backends = backends::measure(&ours, root, if args.quick { 20 } else { 100 })?;

    let mut summary = Table::new(&["measure", "ours", "reference", "ours/ref"]);
    let c = [stats(&conc[0]), stats(&conc[1])];
    summary.row(vec![
        format!("{CONCURRENT} concurrent ADDs, wall (median of {rounds}; p10–p90)"),
        format!("{} ({})", fmt_ms(c[0].0), spread(c[0])),
        format!("{} ({})", fmt_ms(c[1].0), spread(c[1])),
        ratio(c[0].0, c[1].0),
    ]);
    summary.row(vec![
        format!("{CONCURRENT} concurrent ADDs: distinct addresses, {CONCURRENT} files"),
        "ok".into(),
        "ok".into(),
        "–".into(),
    ]);
    for (size, m) in rss_rows {
        let store = if size == 0 {
            "empty store".into()
        } else {
            format!("{} reservations", thousands(size))
        };
        summary.row(vec![
            format!("peak RSS of one ADD, {store} (median)"),
            format!("{} KiB", m[0]),
            format!("{} KiB", m[1]),
            ratio(m[0] as f64, m[1] as f64),
        ]);
    }
    let sizes = [file_size(&plugins[0].path)?, file_size(&plugins[1].path)?];
    summary.row(vec![
        "binary size".into(),
        format!("{} bytes", thousands(sizes[0] as usize)),
        format!("{} bytes", thousands(sizes[1] as usize)),
        ratio(sizes[0] as f64, sizes[1] as f64),
    ]);

    print!(
        "{}",
        report::render(
            &args,
            &load,
            [fsync_start, fsync_probe(root)?],
            &plugins,
            &latency,
            &summary,
            rss_fallback,
        )?
    );
    match backends {
        Ok(t) => print!(
            "\nours by store backend (ADD then DEL of one new container per cycle, the \
             backends alternating):\n\n{}",
            t.render(args.markdown)
        ),
        Err(why) => println!("\nnote: {why}"),
    }
    print_fleet(&ours, root, &args)
}

/// The fleet rows (`fleet`), printed.
fn print_fleet(ours: &Path, root: &Path, args: &Args) -> Result<()> {
    match fleet::measure(ours, &fleet::ipamctl_beside(ours), root, args.quick)? {
        Ok(t) => print!(
            "\ncluster mode at fleet scale (three etcd members on loopback sharing the {} cores \
             with the plugins; the disk store beside it, one data directory per node):\n\n{}",
            report::cores(),
            t.render(args.markdown)
        ),
        Err(why) => println!("\nnote: {why}"),
    }
    Ok(())
}

/// Builds the release `host-local` into this binary's target directory, the way
/// `scripts/build-release.sh` does (statically linked on glibc Linux), and
/// returns its path.
fn build_ours() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("bench binary is not in <target>/<profile>/")?;
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .unwrap_or_default();
    let static_gnu = host.contains("-linux-gnu");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    if manifest.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--release", "-p", "host-local", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target);
        if static_gnu {
            // As scripts/build-release.sh: crt-static needs an explicit target
            // so proc macros (built for the host) stay dynamic.
            let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            flags.push_str(" -C target-feature=+crt-static");
            cmd.args(["--target", &host]).env("RUSTFLAGS", flags.trim());
            eprintln!(
                "building ours: cargo build --release -p host-local --target {host} (crt-static)"
            );
        } else {
            eprintln!("building ours: cargo build --release -p host-local");
        }
        let st = cmd.status().context("running cargo")?;
        ensure!(
            st.success(),
            "cargo build --release -p host-local failed ({st}); or pass --ours PATH"
        );
    }
    let ours = if static_gnu {
        target.join(&host).join("release").join("host-local")
    } else {
        target.join("release").join("host-local")
    };
    ensure!(
        ours.exists(),
        "{} not found; build it or pass --ours PATH",
        ours.display()
    );
    Ok(ours)
}

/// The Go reference: where the package host-local-rs diverts it while installed,
/// else where containernetworking-plugins installs it.
fn default_reference() -> PathBuf {
    let diverted = PathBuf::from("/usr/lib/cni/host-local.go");
    if diverted.exists() {
        diverted
    } else {
        PathBuf::from("/usr/lib/cni/host-local")
    }
}

/// Median time to create a small file, write it and fsync it and its directory: the floor
/// under any plugin that makes its writes durable.
fn fsync_probe(root: &Path) -> Result<f64> {
    let dir = new_datadir(root)?;
    let d = File::open(dir.path())?;
    let mut v = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let mut f = File::create(dir.path().join(i.to_string()))?;
        f.write_all(&[b'x'; 40])?;
        f.sync_all()?;
        d.sync_all()?;
        v.push(ms(t.elapsed()));
    }
    Ok(stats(&v).0)
}

/// syncfs() on the data dirs' filesystem, so that writeback of the fill (or of removing the
/// last store) does not land in the fsyncs of the calls that are timed next.
fn settle(root: &Path) -> Result<()> {
    let d = File::open(root)?;
    // SAFETY: syncfs only reads the descriptor, which `d` keeps open.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(std::io::Error::last_os_error()).context("syncfs");
    }
    Ok(())
}

/// Writes `n` reservations in the reference layout: contiguous from 10.128.0.2, even ones as
/// "<id>\r\n<ifname>", odd ones in the old one-line format, the cursor on the last one, `lock`.
fn fill_store(net_dir: &Path, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    fs::create_dir_all(net_dir)?;
    let write = |name: &str, body: &str, mode: u32| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(net_dir.join(name))
            .with_context(|| format!("creating {name}"))?;
        Ok(f.write_all(body.as_bytes())?)
    };
    let mut last = Ipv4Addr::from(FILL_BASE);
    for i in 0..n {
        last = Ipv4Addr::from(FILL_BASE + i as u32);
        let id = format!("filled{i:06}abcdef0123456789");
        let body = if i.is_multiple_of(2) {
            format!("{id}\r\neth0")
        } else {
            id
        };
        write(&last.to_string(), &body, 0o600)?;
    }
    write("last_reserved_ip.0", &last.to_string(), 0o600)?;
    write("lock", "", 0o750)
}

struct StoreResult {
    warm: [Duration; 2],
    /// samples[plugin][op] in milliseconds.
    samples: [[Vec<f64>; 4]; 2],
    add_rss: [Vec<i64>; 2],
}

fn order(i: usize) -> [usize; 2] {
    if i.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// Fresh data dirs filled with `size` reservations, one warm-up cycle, then `iters` cycles of
/// ADD, CHECK, DEL, STATUS for new containers, the two plugins alternating on every call.
fn measure_store(
    plugins: &mut [Plugin; 2],
    root: &Path,
    size: usize,
    iters: usize,
) -> Result<StoreResult> {
    for p in plugins.iter_mut() {
        p.data = new_datadir(root)?;
        fill_store(&p.data.path().join(NETWORK), size)?;
    }
    settle(root)?;
    let mut r = StoreResult {
        warm: [Duration::ZERO; 2],
        samples: Default::default(),
        add_rss: Default::default(),
    };
    for i in 0..=iters {
        let id = format!("bench-{size}-{i}");
        let mut prev: [Option<Value>; 2] = [None, None];
        for (o, op) in Op::ALL.into_iter().enumerate() {
            for k in order(i) {
                let p = &mut plugins[k];
                let dir = p.data.path().to_path_buf();
                let conf = match op {
                    Op::Add => netconf("1.0.0", &dir, None),
                    Op::Check | Op::Del => netconf("1.0.0", &dir, prev[k].as_ref()),
                    Op::Status => netconf("1.1.0", &dir, None),
                };
                let id = if op == Op::Status { "" } else { id.as_str() };
                let run = invoke(p, op.name(), id, &conf)?;
                if op == Op::Status && !p.supports_status {
                    if run.status.success() {
                        bail!(
                            "{} STATUS succeeded without 1.1.0 support",
                            p.path.display()
                        );
                    }
                    p.status_note.get_or_insert_with(|| {
                        let out = serde_json::from_slice::<Value>(&run.stdout).map_or_else(
                            |_| String::from_utf8_lossy(&run.stdout).into(),
                            |v| v.to_string(),
                        );
                        format!("{}, {}", run.status, out.trim())
                    });
                } else {
                    expect_ok(
                        p,
                        &run,
                        &format!("{} of {id} at {size} reservations", op.name()),
                    )?;
                }
                if op == Op::Add {
                    prev[k] = Some(first_address(&run.stdout)?.0);
                }
                if i == 0 {
                    // The first cycle is the warm-up; only its ADD time is reported.
                    if op == Op::Add {
                        r.warm[k] = run.wall;
                    }
                    continue;
                }
                r.samples[k][o].push(ms(run.wall));
                if op == Op::Add {
                    r.add_rss[k].push(run.maxrss_kib);
                }
            }
        }
    }
    Ok(r)
}

/// 32 ADDs for distinct containers started at once on an empty store; returns the wall time
/// from the first spawn to the last exit, after checking that no address went out twice.
fn concurrent_round(p: &mut Plugin, root: &Path, round: usize) -> Result<Duration> {
    p.data = new_datadir(root)?;
    settle(root)?;
    let dir = p.data.path().to_path_buf();
    let conf = netconf("1.0.0", &dir, None);
    let ids: Vec<String> = (0..CONCURRENT)
        .map(|k| format!("conc-{round}-{k}"))
        .collect();
    let errs = (0..CONCURRENT)
        .map(|_| tempfile::tempfile_in(root))
        .collect::<std::io::Result<Vec<_>>>()?;
    let t = Instant::now();
    let children = ids
        .iter()
        .zip(&errs)
        .map(|(id, e)| spawn(&p.path, "ADD", id, &conf, e))
        .collect::<Result<Vec<_>>>()?;
    let outs = children
        .into_iter()
        .map(finish)
        .collect::<Result<Vec<_>>>()?;
    let wall = t.elapsed();

    let mut seen = HashSet::new();
    for ((id, (status, stdout, _)), mut err) in ids.iter().zip(outs).zip(errs) {
        if !status.success() {
            let mut e = String::new();
            err.seek(SeekFrom::Start(0))?;
            err.read_to_string(&mut e)?;
            bail!(
                "{} concurrent ADD of {id} failed ({status})\nstdout: {}\nstderr: {e}",
                p.path.display(),
                String::from_utf8_lossy(&stdout)
            );
        }
        let (_, addr) = first_address(&stdout)?;
        ensure!(
            seen.insert(addr.clone()),
            "{}: {addr} handed out twice",
            p.path.display()
        );
        let body = fs::read_to_string(dir.join(NETWORK).join(&addr))
            .with_context(|| format!("reservation file of {addr}"))?;
        ensure!(
            body.lines().next() == Some(id),
            "{addr} is reserved for {body:?}, not {id}"
        );
    }
    let files = fs::read_dir(dir.join(NETWORK))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<IpAddr>().is_ok())
        })
        .count();
    ensure!(
        files == CONCURRENT,
        "{}: {files} reservation files, expected {CONCURRENT}",
        p.path.display()
    );
    Ok(wall)
}
