//! ipamctl: see, explain and repair host-local IPAM allocations.
//!
//! Works on any data directory in the reference layout (including one only
//! the Go plugin ever wrote), takes the plugin's flock for every read, and
//! changes nothing unless asked (`release`, `gc`, confirmed).

mod attach;
mod cluster;
mod configs;
mod inspect;
mod json;
mod metrics;
mod render;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use host_local::store::disk::DiskStore;
use host_local::store::{Entry, Owner, Store};
use serde_json::{json, Value};

use crate::configs::Configs;
use crate::inspect::{now_secs, NetworkView, Reservation};
use crate::render::{age, colored, percent, Cell, Style, Table, DIM, RED, YELLOW};

const DEFAULT_DATA_DIR: &str = host_local::config::DEFAULT_DATA_DIR;
const DEFAULT_RESULTS_DIR: &str = "/var/lib/cni/results";

/// Exit codes.
const OK: u8 = 0;
const FOUND: u8 = 1;
const FAILED: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "ipamctl",
    version,
    about = "See, explain and repair host-local IPAM allocations",
    long_about = "See, explain and repair host-local IPAM allocations.\n\n\
        Works on any data directory in the reference host-local layout (also one written only by \
        the Go plugin). Every read takes the same flock as the plugin and creates nothing; \
        nothing is changed unless `release` or `gc` is confirmed.",
    after_help = "Exit status: 0 fine, 1 problems or leaks found (show, leaks) or a planned removal \
        was skipped (release, gc), 2 usage or I/O error.\n\n\
        Examples:\n  ipamctl list --config /etc/cni/net.d\n  ipamctl show mynet --config /etc/cni/net.d --map\n  \
        ipamctl leaks mynet --valid attachments.txt\n  ipamctl gc mynet --valid attachments.txt --dry-run\n  \
        ipamctl metrics --config /etc/cni/net.d --output /var/lib/node_exporter/ipam.prom"
)]
struct Cli {
    /// The host-local data directory (default: the configuration's dataDir, else /var/lib/cni/networks).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone, Default)]
struct ConfigArg {
    /// A network configuration (.conf, .conflist) or a directory of them (like /etc/cni/net.d);
    /// host-local ipam sections are matched to stores by network name.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Every network of the data directory: reservation counts, and with --config capacity,
    /// free addresses and usage per range set.
    #[command(
        after_help = "Examples:\n  ipamctl list\n  ipamctl list --config /etc/cni/net.d\n  \
        ipamctl --data-dir /srv/cni/networks list --json | jq '.networks[].name'"
    )]
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON output (schema in SCHEMA.md).
        #[arg(long)]
        json: bool,
    },
    /// Every reservation of a network: address, container, ifname, age and problems.
    #[command(
        after_help = "Problems: damaged (empty or unparseable file), and with --config: \
        outside-ranges, excluded, gateway, duplicate (one attachment holding several addresses of \
        a range set). Exit status 1 when any reservation has a problem.\n\n\
        Examples:\n  ipamctl show mynet\n  ipamctl show mynet --config /etc/cni/net.d/10-mynet.conflist --map\n  \
        ipamctl show mynet --json | jq '.reservations[] | select(.problems != [])'"
    )]
    Show {
        /// The network name (a directory of the data directory).
        network: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Draw each range as a grid, one character per address, 64 per row (needs --config).
        #[arg(long)]
        map: bool,
        /// At most this many map rows per range; larger ranges show only rows holding something.
        #[arg(long, value_name = "N", default_value_t = 32)]
        map_rows: usize,
        /// JSON output (schema in SCHEMA.md).
        #[arg(long)]
        json: bool,
    },
    /// Reservations whose attachment the runtime no longer knows.
    #[command(
        after_help = "Sources: --valid lists the attachments the runtime still has \
        (authoritative). Without it, libcni's result cache (--results-dir) is used as a heuristic: \
        a reservation without a cached result is only suspected, because not every runtime keeps \
        that cache. Damaged files are always reported: they name no attachment.\n\
        Exit status 1 when anything is found.\n\n\
        --valid formats: lines `containerID ifname` (a line with the ID alone keeps every \
        attachment of that container); a JSON list [{\"containerID\",\"ifname\"}]; or a whole GC \
        network configuration carrying cni.dev/valid-attachments.\n\n\
        Examples:\n  crictl pods -q | sed 's/$/ eth0/' > valid.txt   # adapt to your runtime\n  \
        ipamctl leaks mynet --valid valid.txt\n  ipamctl leaks mynet            # heuristic: /var/lib/cni/results\n  \
        ipamctl leaks mynet --valid - --json < valid.json"
    )]
    Leaks {
        /// The network name (a directory of the data directory).
        network: String,
        #[command(flatten)]
        valid: ValidArg,
        /// libcni's result cache directory (files <network>-<containerID>-<ifname>).
        #[arg(long, value_name = "DIR")]
        results_dir: Option<PathBuf>,
        /// JSON output (schema in SCHEMA.md).
        #[arg(long)]
        json: bool,
    },
    /// Releases the reservations of one attachment or address.
    #[command(
        group(clap::ArgGroup::new("what").required(true).args(["container", "ip"])),
        after_help = "Removal goes through the plugin's own store code under its lock, and only \
        if the file still names the same owner as when listed. Without --yes a terminal is asked \
        y/N; without a terminal nothing changes.\n\n\
        Examples:\n  ipamctl release mynet --container 3f2a9c --dry-run\n  \
        ipamctl release mynet --container 3f2a9c --ifname eth1 --yes\n  ipamctl release mynet --ip 10.22.0.17"
    )]
    Release {
        /// The network name (a directory of the data directory).
        network: String,
        /// Every reservation of this container (legacy ID-only files included).
        #[arg(long, value_name = "ID")]
        container: Option<String>,
        /// Only this interface's reservations (and legacy ID-only files of the container).
        #[arg(long, value_name = "IF", requires = "container")]
        ifname: Option<String>,
        /// The reservation of this address, whoever holds it (damaged files too).
        #[arg(long, value_name = "ADDR", conflicts_with = "container")]
        ip: Option<IpAddr>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Removes every reservation whose attachment is not valid (and every damaged file).
    #[command(
        after_help = "The plugin's CNI GC rules: an attachment must be listed exactly; a \
        legacy ID-only file stays when its container is listed; damaged files always go. An empty \
        list would remove everything and is refused without --allow-empty.\n\n\
        Examples:\n  ipamctl gc mynet --valid valid.txt --dry-run\n  ipamctl gc mynet --valid valid.txt --yes\n  \
        ipamctl gc mynet --valid gc-config.json --json --yes"
    )]
    Gc {
        /// The network name (a directory of the data directory).
        network: String,
        #[command(flatten)]
        valid: ValidRequired,
        /// Accept an empty list of valid attachments (removes every reservation).
        #[arg(long)]
        allow_empty: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Prometheus metrics: reservations, capacity, free and usage per range set, problems per kind.
    #[command(
        after_help = "Examples:\n  ipamctl metrics --config /etc/cni/net.d\n  \
        ipamctl metrics --config /etc/cni/net.d --output /var/lib/node_exporter/textfile/ipam.prom\n\n\
        With --output the file is replaced atomically (temporary file in the same directory, then \
        rename). Exit status 2 if a network could not be read (its ipamctl_network_up is 0)."
    )]
    Metrics {
        #[command(flatten)]
        config: ConfigArg,
        /// Write to this file atomically instead of stdout.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Reservations per node of a network kept in etcd, and nodes not in a list of live ones.
    #[command(after_help = cluster::AFTER_HELP)]
    Cluster(cluster::ClusterArgs),
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  ipamctl completions bash > /etc/bash_completion.d/ipamctl\n  \
        ipamctl completions zsh > \"${fpath[1]}/_ipamctl\""
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Debug)]
struct ValidArg {
    /// Valid attachments: a file, or - for stdin.
    #[arg(long, value_name = "FILE")]
    valid: Option<String>,
}

#[derive(Args, Debug)]
struct ValidRequired {
    /// Valid attachments: a file, or - for stdin.
    #[arg(long, value_name = "FILE", required = true)]
    valid: String,
}

#[derive(Args, Debug)]
struct ChangeArgs {
    /// Show what would be removed and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do it without asking (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("ipamctl: {e:#}");
            ExitCode::from(FAILED)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let style = Style::detect();
    let data_dir = cli.data_dir.clone();
    match cli.cmd {
        Cmd::List { config, json } => cmd_list(data_dir, &config, json, style),
        Cmd::Show {
            network,
            config,
            map,
            map_rows,
            json,
        } => cmd_show(data_dir, &network, &config, map, map_rows, json, style),
        Cmd::Leaks {
            network,
            valid,
            results_dir,
            json,
        } => cmd_leaks(
            data_dir,
            &network,
            valid.valid.as_deref(),
            results_dir,
            json,
            style,
        ),
        Cmd::Release {
            network,
            container,
            ifname,
            ip,
            change,
        } => {
            let sel = match (container, ip) {
                (Some(id), None) => Selector::Container { id, ifname },
                (None, Some(ip)) => Selector::Ip(ip),
                _ => bail!("give --container ID [--ifname IF] or --ip ADDR"),
            };
            cmd_release(data_dir, &network, sel, &change, style)
        }
        Cmd::Gc {
            network,
            valid,
            allow_empty,
            change,
        } => cmd_gc(
            data_dir,
            &network,
            &valid.valid,
            allow_empty,
            &change,
            style,
        ),
        Cmd::Metrics { config, output } => cmd_metrics(data_dir, &config, output),
        Cmd::Cluster(a) => cluster::run(&a),
        Cmd::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "ipamctl", &mut std::io::stdout());
            Ok(OK)
        }
    }
}

fn load_configs(arg: &ConfigArg) -> Result<Configs> {
    let Some(p) = &arg.config else {
        return Ok(Configs::default());
    };
    let c = configs::load(p)?;
    for w in &c.warnings {
        eprintln!("ipamctl: warning: config {w}");
    }
    Ok(c)
}

/// --data-dir, else the configuration's dataDir, else the default.
fn resolve_data_dir(given: Option<PathBuf>, cfgs: &Configs, network: Option<&str>) -> PathBuf {
    if let Some(d) = given {
        return d;
    }
    if let Some(c) = network.and_then(|n| cfgs.get(n)) {
        return c.ipam.data_dir.clone();
    }
    cfgs.single_data_dir()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

fn check_network_name(network: &str) -> Result<()> {
    cni_proto::NetworkName::new(network)
        .map(|_| ())
        .map_err(|e| anyhow!("network {network:?}: {e}"))
}

/// Reads every network of the data directory, plus configured networks
/// without a directory. Unreadable ones carry their error.
fn read_all(data_dir: &Path, cfgs: &Configs) -> Result<Vec<NetworkView>> {
    let (mut names, skipped) = inspect::network_names(data_dir)?;
    for s in skipped {
        eprintln!(
            "ipamctl: warning: {}: not a valid network name; skipped",
            data_dir.join(s).display()
        );
    }
    for n in cfgs.networks.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    let mut views = Vec::new();
    for n in names {
        let cfg = cfgs.get(&n);
        match inspect::read_network(data_dir, &n, cfg, cfg.is_some()) {
            Ok(v) => views.push(v),
            Err(e) => views.push(NetworkView {
                name: n.clone(),
                path: data_dir.join(&n),
                exists: true,
                reservations: Vec::new(),
                config: cfg.cloned(),
                sets: Vec::new(),
                error: Some(format!("{e:#}")),
            }),
        }
    }
    Ok(views)
}

fn set_ranges_text(u: &inspect::SetUsage) -> String {
    u.set.to_string()
}

fn cmd_list(
    given: Option<PathBuf>,
    cfg_arg: &ConfigArg,
    as_json: bool,
    style: Style,
) -> Result<u8> {
    let cfgs = load_configs(cfg_arg)?;
    let data_dir = resolve_data_dir(given, &cfgs, None);
    let views = read_all(&data_dir, &cfgs)?;
    let failed = views.iter().any(|v| v.error.is_some());
    for v in views.iter().filter(|v| v.error.is_some()) {
        eprintln!(
            "ipamctl: {}: {}",
            v.name,
            v.error.as_deref().unwrap_or_default()
        );
    }
    if as_json {
        let mut m = json::envelope("list");
        m.insert("dataDir".into(), json!(data_dir.display().to_string()));
        m.insert(
            "config".into(),
            json!(cfgs.path.as_ref().map(|p| p.display().to_string())),
        );
        m.insert(
            "networks".into(),
            Value::Array(views.iter().map(json::network).collect()),
        );
        json::print(&Value::Object(m));
        return Ok(if failed { FAILED } else { OK });
    }
    let with_cfg = cfg_arg.config.is_some();
    let mut headers = vec!["NETWORK", "RESERVED>", "LEGACY>", "DAMAGED>", "PROBLEMS>"];
    if with_cfg {
        headers.extend(["SET>", "RANGES", "CAPACITY>", "FREE>", "USAGE>"]);
    }
    headers.push("NOTE");
    let mut t = Table::new(&headers);
    for v in &views {
        let note_col = headers.len() - 1;
        if let Some(e) = &v.error {
            let mut row: Vec<Cell> = vec![v.name.clone().into()];
            row.resize(note_col, "-".into());
            row.push(colored(format!("error: {e}"), RED));
            t.row(row);
            continue;
        }
        let f = v.format_counts();
        let probs = v.problem_total();
        let mut row: Vec<Cell> = vec![
            v.name.clone().into(),
            v.reservations.len().to_string().into(),
            f["legacy"].to_string().into(),
            if f["damaged"] > 0 {
                colored(f["damaged"].to_string(), RED)
            } else {
                "0".into()
            },
            if probs > 0 {
                colored(probs.to_string(), YELLOW)
            } else {
                "0".into()
            },
        ];
        let note = if !v.exists {
            "no store yet"
        } else if with_cfg && v.config.is_none() {
            "not in the configuration"
        } else {
            ""
        };
        if with_cfg {
            let mut first = true;
            for s in &v.sets {
                let mut r = if first {
                    std::mem::take(&mut row)
                } else {
                    vec![Cell::default(); 5]
                };
                r.extend([
                    s.index.to_string().into(),
                    set_ranges_text(s).into(),
                    s.capacity.to_string().into(),
                    s.free().to_string().into(),
                    usage_cell(s.usage()),
                ]);
                r.push(if first { note.into() } else { Cell::default() });
                t.row(r);
                first = false;
            }
            if first {
                row.resize(note_col, Cell::default());
                row.push(note.into());
                t.row(row);
            }
        } else {
            row.push(note.into());
            t.row(row);
        }
    }
    println!(
        "{}",
        style.paint(&format!("data directory {}", data_dir.display()), DIM)
    );
    if t.is_empty() {
        println!("no networks");
    } else {
        print!("{}", t.render(style));
    }
    Ok(if failed { FAILED } else { OK })
}

fn usage_cell(u: f64) -> Cell {
    let color = if u >= 0.9 {
        RED
    } else if u >= 0.75 {
        YELLOW
    } else {
        ""
    };
    colored(percent(u), color)
}

fn owner_cells(r: &Reservation) -> (Cell, Cell) {
    match &r.owner {
        Owner::Attachment { id, ifname } => (id.clone().into(), ifname.clone().into()),
        Owner::Legacy { id } => (id.clone().into(), colored("(legacy)", DIM)),
        Owner::Damaged { .. } => (colored("-", DIM), colored("-", DIM)),
    }
}

fn age_cell(r: &Reservation, now: i64) -> Cell {
    r.mtime.map_or_else(|| "?".into(), |m| age(now - m).into())
}

fn sets_table(view: &NetworkView, style: Style) -> String {
    let mut t = Table::new(&[
        "SET>",
        "RANGES",
        "GATEWAY",
        "CAPACITY>",
        "RESERVED>",
        "FREE>",
        "USAGE>",
        "LAST RESERVED",
    ]);
    for s in &view.sets {
        let gws: Vec<String> = s.set.0.iter().map(|r| r.gateway.to_string()).collect();
        t.row(vec![
            s.index.to_string().into(),
            set_ranges_text(s).into(),
            gws.join(",").into(),
            s.capacity.to_string().into(),
            s.reserved.to_string().into(),
            s.free().to_string().into(),
            usage_cell(s.usage()),
            s.last_reserved
                .map_or_else(|| "-".to_string(), |ip| ip.to_string())
                .into(),
        ]);
    }
    t.render(style)
}

/// Marks for the map: '#' reserved, '!' reserved with a problem.
fn map_marks(view: &NetworkView) -> BTreeMap<u128, char> {
    view.reservations
        .iter()
        .map(|r| {
            (
                host_local::addr::to_u128(r.ip),
                if r.problems.is_empty() { '#' } else { '!' },
            )
        })
        .collect()
}

fn cmd_show(
    given: Option<PathBuf>,
    network: &str,
    cfg_arg: &ConfigArg,
    map: bool,
    map_rows: usize,
    as_json: bool,
    style: Style,
) -> Result<u8> {
    check_network_name(network)?;
    let cfgs = load_configs(cfg_arg)?;
    let cfg = cfgs.get(network);
    if cfg_arg.config.is_some() && cfg.is_none() {
        eprintln!(
            "ipamctl: warning: no host-local configuration for network {network} in {}",
            cfg_arg.config.as_deref().unwrap_or(Path::new("")).display()
        );
    }
    if map && cfg.is_none() {
        bail!("--map needs --config with the ranges of network {network}");
    }
    if map && map_rows == 0 {
        bail!("--map-rows must be at least 1");
    }
    let data_dir = resolve_data_dir(given, &cfgs, Some(network));
    let view = inspect::read_network(&data_dir, network, cfg, false)?;
    let now = now_secs();
    let problems = view.problem_total();
    let marks = map_marks(&view);
    let maps: Vec<(usize, usize, &host_local::config::Range, render::RangeMap)> = if map {
        view.sets
            .iter()
            .flat_map(|s| {
                s.set
                    .0
                    .iter()
                    .enumerate()
                    .map(move |(j, r)| (s.index, j, r))
            })
            .map(|(i, j, r)| (i, j, r, render::map_range(r, &marks, map_rows)))
            .collect()
    } else {
        Vec::new()
    };
    if as_json {
        let mut m = json::envelope("show");
        m.insert("dataDir".into(), json!(data_dir.display().to_string()));
        m.insert("network".into(), json::network(&view));
        m.insert(
            "reservations".into(),
            Value::Array(
                view.reservations
                    .iter()
                    .map(|r| json::reservation(r, now))
                    .collect(),
            ),
        );
        if map {
            m.insert(
                "map".into(),
                Value::Array(
                    maps.iter()
                        .map(|(i, j, r, rm)| {
                            json!({
                                "rangeSet": i,
                                "range": j,
                                "rangeStart": r.start.to_string(),
                                "rangeEnd": r.end.to_string(),
                                "rows": rm.lines.iter().map(|l| match l {
                                    render::MapLine::Row { start, cells } => json!({
                                        "start": start.to_string(),
                                        "cells": cells,
                                    }),
                                    render::MapLine::Gap { rows, from, to, what } => json!({
                                        "gap": json::big(*rows),
                                        "from": from.to_string(),
                                        "to": to.to_string(),
                                        "state": what,
                                    }),
                                }).collect::<Vec<_>>(),
                                "rowsNotShown": json::big(rm.rows_not_shown),
                            })
                        })
                        .collect(),
                ),
            );
        }
        json::print(&Value::Object(m));
        return Ok(if problems > 0 { FOUND } else { OK });
    }
    println!(
        "{} {}  {}",
        style.paint("network", render::BOLD),
        network,
        style.paint(&format!("({})", view.path.display()), DIM)
    );
    match &view.config {
        Some(c) => {
            println!("config  {}", c.source.display());
            print!("{}", sets_table(&view, style));
        }
        None => println!(
            "{}",
            style.paint(
                "no config: range problems (outside, excluded, gateway) not checked; use --config",
                DIM
            )
        ),
    }
    println!();
    if view.reservations.is_empty() {
        println!("no reservations");
    } else {
        let mut t = Table::new(&["ADDRESS", "CONTAINER", "IFNAME", "AGE>", "PROBLEMS"]);
        for r in &view.reservations {
            let (c, i) = owner_cells(r);
            let probs = r
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.kind.as_str(), p.detail))
                .collect::<Vec<_>>()
                .join("; ");
            t.row(vec![
                r.ip.to_string().into(),
                c,
                i,
                age_cell(r, now),
                colored(probs, RED),
            ]);
        }
        print!("{}", t.render(style));
        println!(
            "{} reservation{}, {} with problems",
            view.reservations.len(),
            if view.reservations.len() == 1 {
                ""
            } else {
                "s"
            },
            problems
        );
    }
    for (i, j, r, rm) in &maps {
        println!();
        println!(
            "range set {i}, range {j}: {}-{} (subnet {}, gateway {})",
            r.start, r.end, r.subnet, r.gateway
        );
        print!("{}", render::render_map(rm, style));
    }
    if !maps.is_empty() {
        println!("{}", style.paint(render::MAP_LEGEND, DIM));
    }
    Ok(if problems > 0 { FOUND } else { OK })
}

/// A reservation judged leaked.
struct Leak<'a> {
    r: &'a Reservation,
    reason: &'static str,
    heuristic: bool,
    cached: Option<bool>,
}

fn cmd_leaks(
    given: Option<PathBuf>,
    network: &str,
    valid_arg: Option<&str>,
    results_dir: Option<PathBuf>,
    as_json: bool,
    style: Style,
) -> Result<u8> {
    check_network_name(network)?;
    let valid = valid_arg.map(attach::load_valid).transpose()?;
    // The cache: explicit (must exist), or the default when it exists.
    let cache = match &results_dir {
        Some(d) => Some(attach::ResultsCache::load(d, network)?),
        None if Path::new(DEFAULT_RESULTS_DIR).is_dir() => Some(attach::ResultsCache::load(
            Path::new(DEFAULT_RESULTS_DIR),
            network,
        )?),
        None => None,
    };
    // An empty cache for this network says the runtime does not keep one:
    // every reservation would look leaked.
    let cache = match cache {
        Some(c) if c.entries == 0 && results_dir.is_none() => None,
        Some(c) if c.entries == 0 && valid.is_none() => bail!(
            "results cache {}: no entries for network {network}; the runtime does not seem to keep \
             libcni's cache, so it cannot tell leaks (give --valid FILE)",
            c.dir.display()
        ),
        other => other,
    };
    if valid.is_none() && cache.is_none() {
        bail!(
            "no source of valid attachments: give --valid FILE, or --results-dir (libcni's cache; \
             {DEFAULT_RESULTS_DIR} does not exist or has no entry for network {network})"
        );
    }
    let data_dir = given.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let view = inspect::read_network(&data_dir, network, None, false)?;
    let now = now_secs();
    let mut leaks = Vec::new();
    for r in &view.reservations {
        let cached = cache.as_ref().map(|c| c.knows(network, &r.owner));
        if matches!(r.owner, Owner::Damaged { .. }) {
            leaks.push(Leak {
                r,
                reason: "damaged",
                heuristic: false,
                cached,
            });
        } else if let Some(v) = &valid {
            if !v.keeps(&r.owner) {
                leaks.push(Leak {
                    r,
                    reason: "not-valid",
                    heuristic: false,
                    cached,
                });
            }
        } else if cached == Some(false) {
            leaks.push(Leak {
                r,
                reason: "no-cached-result",
                heuristic: true,
                cached,
            });
        }
    }
    let code = if leaks.is_empty() { OK } else { FOUND };
    if as_json {
        let mut m = json::envelope("leaks");
        m.insert("dataDir".into(), json!(data_dir.display().to_string()));
        m.insert("network".into(), json!(network));
        m.insert(
            "sources".into(),
            json!({
                "valid": valid.as_ref().map(|v| json!({"path": v.source, "attachments": v.count})),
                "resultsCache": cache.as_ref().map(|c| json!({
                    "path": c.dir.display().to_string(),
                    "entries": c.entries,
                    "heuristic": true,
                })),
                "authoritative": valid.is_some(),
            }),
        );
        m.insert("reservations".into(), json!(view.reservations.len()));
        m.insert(
            "leaks".into(),
            Value::Array(
                leaks
                    .iter()
                    .map(|l| {
                        let mut o = json::reservation(l.r, now);
                        if let Value::Object(o) = &mut o {
                            o.insert("reason".into(), json!(l.reason));
                            o.insert("heuristic".into(), json!(l.heuristic));
                            o.insert("cachedResult".into(), json!(l.cached));
                        }
                        o
                    })
                    .collect(),
            ),
        );
        json::print(&Value::Object(m));
        return Ok(code);
    }
    println!(
        "{} {}  {}",
        style.paint("network", render::BOLD),
        network,
        style.paint(&format!("({})", view.path.display()), DIM)
    );
    if let Some(v) = &valid {
        println!(
            "source: valid attachments from {} ({} listed; authoritative)",
            v.source, v.count
        );
    }
    if let Some(c) = &cache {
        let role = if valid.is_some() {
            "shown for reference"
        } else {
            "HEURISTIC: a missing cache entry only suggests a leak"
        };
        println!(
            "source: libcni result cache {} ({} entries for this network; {role})",
            c.dir.display(),
            c.entries
        );
    }
    println!();
    if leaks.is_empty() {
        println!(
            "no leaks among {} reservation{}",
            view.reservations.len(),
            if view.reservations.len() == 1 {
                ""
            } else {
                "s"
            }
        );
        return Ok(code);
    }
    let mut headers = vec!["ADDRESS", "CONTAINER", "IFNAME", "AGE>", "WHY"];
    if cache.is_some() && valid.is_some() {
        headers.push("CACHED");
    }
    let mut t = Table::new(&headers);
    for l in &leaks {
        let (c, i) = owner_cells(l.r);
        let why = match l.reason {
            "damaged" => colored(
                match &l.r.owner {
                    Owner::Damaged { reason } => format!("damaged file ({reason})"),
                    _ => "damaged file".into(),
                },
                RED,
            ),
            "not-valid" => colored("not a valid attachment", RED),
            _ => colored("no cached result (heuristic)", YELLOW),
        };
        let mut row = vec![l.r.ip.to_string().into(), c, i, age_cell(l.r, now), why];
        if headers.len() == 6 {
            row.push(match l.cached {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            });
        }
        t.row(row);
    }
    print!("{}", t.render(style));
    let heur = leaks.iter().filter(|l| l.heuristic).count();
    println!(
        "{} of {} reservations leaked{}",
        leaks.len(),
        view.reservations.len(),
        if heur > 0 {
            format!(" ({heur} only suspected: heuristic, verify before releasing)")
        } else {
            String::new()
        }
    );
    Ok(code)
}

enum Selector {
    Container { id: String, ifname: Option<String> },
    Ip(IpAddr),
}

impl Selector {
    fn matches(&self, r: &Reservation) -> bool {
        match self {
            Selector::Ip(ip) => host_local::addr::canonical(*ip) == r.ip,
            Selector::Container { id, ifname } => match ifname {
                Some(want) => r.owner.belongs_to(id, want),
                None => r.owner.container_id() == Some(id.as_str()),
            },
        }
    }
}

fn cmd_release(
    given: Option<PathBuf>,
    network: &str,
    sel: Selector,
    change: &ChangeArgs,
    style: Style,
) -> Result<u8> {
    check_network_name(network)?;
    if let Selector::Container { id, ifname } = &sel {
        cni_proto::ContainerId::new(id).map_err(|e| anyhow!("--container: {e}"))?;
        if let Some(f) = ifname {
            cni_proto::IfName::new(f).map_err(|e| anyhow!("--ifname: {e}"))?;
        }
    }
    let data_dir = given.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let view = inspect::read_network(&data_dir, network, None, false)?;
    let planned: Vec<(&Reservation, String)> = view
        .reservations
        .iter()
        .filter(|r| sel.matches(r))
        .map(|r| (r, "selected".to_string()))
        .collect();
    apply("release", &data_dir, &view, planned, change, style)
}

fn cmd_gc(
    given: Option<PathBuf>,
    network: &str,
    valid_arg: &str,
    allow_empty: bool,
    change: &ChangeArgs,
    style: Style,
) -> Result<u8> {
    check_network_name(network)?;
    let valid = attach::load_valid(valid_arg)?;
    if valid.is_empty() && !allow_empty {
        bail!(
            "valid attachments {}: empty; this would remove every reservation (use --allow-empty if that is meant)",
            valid.source
        );
    }
    let data_dir = given.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let view = inspect::read_network(&data_dir, network, None, false)?;
    let planned: Vec<(&Reservation, String)> = view
        .reservations
        .iter()
        .filter(|r| !valid.keeps(&r.owner))
        .map(|r| {
            let why = match &r.owner {
                Owner::Damaged { reason } => format!("damaged file ({reason})"),
                _ => "not a valid attachment".into(),
            };
            (r, why)
        })
        .collect();
    apply("gc", &data_dir, &view, planned, change, style)
}

/// Asks on the terminal; without one, only --yes allows changes.
fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to change anything without --yes (stdin is not a terminal); use --dry-run to see what would change");
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn apply(
    command: &str,
    data_dir: &Path,
    view: &NetworkView,
    planned: Vec<(&Reservation, String)>,
    change: &ChangeArgs,
    style: Style,
) -> Result<u8> {
    let now = now_secs();
    let show_plan = |title: &str| {
        println!("{title}");
        let mut t = Table::new(&["ADDRESS", "CONTAINER", "IFNAME", "AGE>", "WHY"]);
        for (r, why) in &planned {
            let (c, i) = owner_cells(r);
            t.row(vec![
                r.ip.to_string().into(),
                c,
                i,
                age_cell(r, now),
                why.clone().into(),
            ]);
        }
        print!("{}", t.render(style));
    };
    let plan_json = || -> Vec<Value> {
        planned
            .iter()
            .map(|(r, why)| {
                let mut o = json::reservation(r, now);
                if let Value::Object(o) = &mut o {
                    o.insert("why".into(), json!(why));
                }
                o
            })
            .collect()
    };
    let report = |removed: &[IpAddr], skipped: &[(IpAddr, String)], dry: bool| {
        let mut m = json::envelope(command);
        m.insert("dataDir".into(), json!(data_dir.display().to_string()));
        m.insert("network".into(), json!(view.name));
        m.insert("dryRun".into(), json!(dry));
        m.insert("planned".into(), Value::Array(plan_json()));
        m.insert(
            "removed".into(),
            json!(removed.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
        );
        m.insert(
            "skipped".into(),
            json!(skipped
                .iter()
                .map(|(ip, why)| json!({"address": ip.to_string(), "reason": why}))
                .collect::<Vec<_>>()),
        );
        json::print(&Value::Object(m));
    };
    let n = planned.len();
    let plural = if n == 1 { "" } else { "s" };
    if n == 0 {
        if change.json {
            report(&[], &[], change.dry_run);
        } else {
            println!("nothing to remove in network {}", view.name);
        }
        return Ok(OK);
    }
    if change.dry_run {
        if change.json {
            report(&[], &[], true);
        } else {
            show_plan(&format!(
                "would remove {n} reservation{plural} of network {} (dry run: nothing changed)",
                view.name
            ));
        }
        return Ok(OK);
    }
    if !change.json {
        show_plan(&format!(
            "{n} reservation{plural} of network {} to remove:",
            view.name
        ));
    }
    if !confirm(
        &format!("remove {n} reservation{plural} of network {}?", view.name),
        change.yes,
    )? {
        eprintln!("ipamctl: declined; nothing changed");
        return Ok(FOUND);
    }
    // The plugin's own session: its lock, its index kept right. Each removal
    // happens only if the file still names the owner listed above.
    let mut store = DiskStore::new(data_dir, &view.name);
    let mut session = store.session().map_err(|e| anyhow!("{e}"))?;
    let mut removed = Vec::new();
    let mut skipped = Vec::new();
    for (r, _) in &planned {
        let entry = Entry {
            ip: r.ip,
            owner: r.owner.clone(),
        };
        match session.release(&entry) {
            Ok(true) => removed.push(r.ip),
            Ok(false) => skipped.push((
                r.ip,
                "changed since it was listed (gone or another owner); left alone".to_string(),
            )),
            Err(e) => skipped.push((r.ip, format!("error: {e}"))),
        }
    }
    drop(session);
    if change.json {
        report(&removed, &skipped, false);
    } else {
        for ip in &removed {
            println!("removed {ip}");
        }
        for (ip, why) in &skipped {
            println!("{} {ip}: {why}", style.paint("skipped", YELLOW));
        }
        println!(
            "{} of {n} reservation{plural} removed from network {}",
            removed.len(),
            view.name
        );
    }
    if skipped.iter().any(|(_, w)| w.starts_with("error")) {
        return Ok(FAILED);
    }
    Ok(if skipped.is_empty() { OK } else { FOUND })
}

fn cmd_metrics(given: Option<PathBuf>, cfg_arg: &ConfigArg, output: Option<PathBuf>) -> Result<u8> {
    let cfgs = load_configs(cfg_arg)?;
    let data_dir = resolve_data_dir(given, &cfgs, None);
    let views = read_all(&data_dir, &cfgs)?;
    let text = metrics::render(&views, now_secs());
    match output {
        Some(p) => metrics::write_atomic(&p, &text)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
        }
    }
    let mut code = OK;
    for v in &views {
        if let Some(e) = &v.error {
            eprintln!("ipamctl: {}: {e}", v.name);
            code = FAILED;
        }
    }
    Ok(code)
}
