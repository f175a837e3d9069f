//! `ipamctl show NETWORK`: every reservation, its pod, age and problems;
//! exhaustion; filters; the map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use super::{age_cell, load_configs, plural, pod_cell, results_cache, Ctx, FOUND, OK};
use crate::attach::ResultsCache;
use crate::cli::ConfigArg;
use crate::cmd::list::usage_cell;
use crate::duration::parse_duration;
use crate::inspect::{explain_unreserved, now_secs, Explanation, NetworkView, StoreKind};
use crate::out;
use crate::render::{self, colored, MapLine, Table, BOLD, DIM, RED, YELLOW};
use crate::report::{Count, NetworkReport, Pod, ReservationReport};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (a directory of the data directory). Optional with --ip: then every
    /// network is searched.
    #[arg(required_unless_present = "ip")]
    pub network: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only the reservations of this pod (NAMESPACE/NAME). Pods are named from libcni's result
    /// cache only: a runtime that keeps none names no pods.
    #[arg(long, value_name = "NS/NAME")]
    pub pod: Option<String>,
    /// Only the reservation of this address; without NETWORK, searched in every network.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<IpAddr>,
    /// Only reservations with a problem.
    #[arg(long)]
    pub problems: bool,
    /// Only reservations older than this (e.g. 30m, 2h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Draw each range as a grid, one character per address, 64 per row (needs --config).
    #[arg(long)]
    pub map: bool,
    /// At most this many map rows per range; larger ranges show only rows holding something.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub map_rows: usize,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

/// The filters applied to `reservations` (null: not used).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub pod: Option<Pod>,
    pub ip: Option<IpAddr>,
    pub problems: bool,
    pub older_than_seconds: Option<u64>,
}

impl Filter {
    fn active(&self) -> bool {
        self.pod.is_some()
            || self.ip.is_some()
            || self.problems
            || self.older_than_seconds.is_some()
    }

    fn keeps(&self, r: &ReservationReport) -> bool {
        self.pod.as_ref().is_none_or(|p| r.pod.as_ref() == Some(p))
            && self.ip.is_none_or(|ip| ip == r.address)
            && (!self.problems || !r.problems.is_empty())
            && self
                .older_than_seconds
                .is_none_or(|s| r.age_seconds.is_some_and(|a| a >= s as i64))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapReport {
    pub range_set: usize,
    pub range: usize,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub rows: Vec<MapRow>,
    pub rows_not_shown: Count,
    #[serde(skip)]
    subnet: String,
    #[serde(skip)]
    gateway: IpAddr,
    #[serde(skip)]
    lines: render::RangeMap,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum MapRow {
    Row {
        start: IpAddr,
        cells: String,
    },
    Gap {
        gap: Count,
        from: IpAddr,
        to: IpAddr,
        state: &'static str,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShowReport {
    pub data_dir: PathBuf,
    pub network: NetworkReport,
    /// The libcni result cache pods were named from (null: none).
    pub results_cache: Option<PathBuf>,
    pub filter: Filter,
    /// The reservations the filter kept, IPv4 then IPv6, in address order.
    pub reservations: Vec<ReservationReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<Vec<MapReport>>,
    /// Why nothing matched --ip or --pod (null when something did, or neither was given).
    pub no_match: Option<String>,
    /// With --ip and no match: what the address is to the network. (Not
    /// `address`: that key marks reservation objects.)
    pub lookup: Option<Explanation>,
}

impl ShowReport {
    pub fn exit_code(&self) -> u8 {
        let looked_up = self.filter.pod.is_some() || self.filter.ip.is_some();
        if self.network.exhausted
            || self.network.config_error.is_some()
            || !self.network.strays.is_empty()
            || self.reservations.iter().any(|r| !r.problems.is_empty())
            || (looked_up && self.reservations.is_empty())
        {
            FOUND
        } else {
            OK
        }
    }
}

fn parse_pod(s: &str) -> Result<Pod> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(Pod {
            namespace: ns.to_string(),
            name: name.to_string(),
        }),
        _ => bail!("--pod {s:?}: expected NAMESPACE/NAME"),
    }
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let Some(network) = a.network.as_deref() else {
        // clap requires NETWORK without --ip.
        let ip = a.ip.ok_or_else(|| anyhow!("give NETWORK or --ip ADDR"))?;
        return super::lookup::run(ctx, a, host_local::addr::canonical(ip));
    };
    let filter = Filter {
        pod: a.pod.as_deref().map(parse_pod).transpose()?,
        ip: a.ip.map(host_local::addr::canonical),
        problems: a.problems,
        older_than_seconds: a.older_than.map(|d| d.as_secs()),
    };
    let cfgs = load_configs(a.config.config.as_deref())?;
    let cfg = cfgs.get(network);
    if let (Some(p), None, None) = (&a.config.config, cfg, cfgs.broken(network)) {
        let names: Vec<String> = cfgs.networks.keys().cloned().collect();
        out::warn(format_args!(
            "warning: no host-local configuration for network {} in {}{}",
            network,
            p.display(),
            super::suggest(network, &names)
        ));
    }
    if a.map && cfg.is_none() {
        bail!(
            "--map needs --config with the ranges of network {}",
            network
        );
    }
    if a.map && a.map_rows == 0 {
        bail!("--map-rows must be at least 1");
    }
    let cache = results_cache(ctx.results_dir.as_deref(), network)?;
    if filter.pod.is_some() && cache.as_ref().is_none_or(|c| c.attachments.is_empty()) {
        return Err(anyhow!(
            "--pod needs libcni's result cache with entries for network {} (give --results-dir)",
            network
        ));
    }
    let view = ctx.read_one(network, &cfgs)?;
    if filter.older_than_seconds.is_some() && view.store != StoreKind::Disk {
        bail!(
            "--older-than: network {} is kept in etcd, which records no reservation times",
            network
        );
    }
    let now = now_secs();
    let all: Vec<ReservationReport> = view
        .reservations
        .iter()
        .map(|r| ReservationReport::new(r, now, cache.as_ref().and_then(|c| c.pod(&r.owner))))
        .collect();
    let map = a.map.then(|| {
        let marks: BTreeMap<u128, char> = view
            .reservations
            .iter()
            .map(|r| {
                let c = if r.problems.is_empty() { '#' } else { '!' };
                (host_local::addr::to_u128(r.ip), c)
            })
            .collect();
        view.sets
            .iter()
            .flat_map(|s| {
                s.set
                    .0
                    .iter()
                    .enumerate()
                    .map(move |(j, r)| (s.index, j, r))
            })
            .map(|(i, j, r)| map_report(i, j, r, render::map_range(r, &marks, a.map_rows)))
            .collect()
    });
    let kept: Vec<ReservationReport> = all.into_iter().filter(|r| filter.keeps(r)).collect();
    let (no_match, lookup) = if kept.is_empty() {
        explain_no_match(&filter, &view, cache.as_ref())
    } else {
        (None, None)
    };
    let report = ShowReport {
        data_dir: view.data_dir.clone(),
        network: NetworkReport::new(&view, now),
        results_cache: cache.as_ref().map(|c| c.dir.clone()),
        reservations: kept,
        filter,
        map,
        no_match,
        lookup,
    };
    if a.json {
        out::json("show", &report)?;
    } else {
        out::print(&render_text(ctx, &report))?;
    }
    Ok(report.exit_code())
}

/// Why --ip or --pod matched nothing: what the address is to the network,
/// or what libcni's cache (where pod names come from) knows of the pod.
fn explain_no_match(
    filter: &Filter,
    view: &NetworkView,
    cache: Option<&ResultsCache>,
) -> (Option<String>, Option<Explanation>) {
    let mut why = Vec::new();
    let mut address = None;
    if let Some(ip) = filter.ip {
        match view.reservations.iter().find(|r| r.ip == ip) {
            // Reserved, but left out by another filter.
            Some(_) => why.push(format!(
                "{ip} is reserved, but not by what the other filters ask for"
            )),
            None => {
                let e = explain_unreserved(view, ip);
                why.push(format!("{ip} is not reserved: {}", e.detail));
                address = Some(e);
            }
        }
    }
    if let Some(pod) = &filter.pod {
        let dir = cache.map_or_else(String::new, |c| c.dir.display().to_string());
        let cached: Vec<&crate::attach::Cached> = cache
            .map(|c| {
                c.attachments
                    .values()
                    .filter(|x| x.pod.as_ref() == Some(pod))
                    .collect()
            })
            .unwrap_or_default();
        why.push(match cached.as_slice() {
            [] => format!(
                "pod {pod} has no entry for network {} in libcni's result cache {dir} (pod names \
                 come from that cache only)",
                view.name
            ),
            some => format!(
                "pod {pod} is in libcni's result cache ({}) but holds no reservation: its \
                 addresses may be handed out again (see `ipamctl check`)",
                some.iter()
                    .map(|x| x.file.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if why.is_empty() {
        (None, None)
    } else {
        (Some(why.join("; ")), address)
    }
}

fn map_report(i: usize, j: usize, r: &host_local::config::Range, m: render::RangeMap) -> MapReport {
    MapReport {
        range_set: i,
        range: j,
        range_start: r.start,
        range_end: r.end,
        rows: m
            .lines
            .iter()
            .map(|l| match l {
                MapLine::Row { start, cells } => MapRow::Row {
                    start: *start,
                    cells: cells.clone(),
                },
                MapLine::Gap {
                    rows,
                    from,
                    to,
                    what,
                } => MapRow::Gap {
                    gap: Count(*rows),
                    from: *from,
                    to: *to,
                    state: what,
                },
            })
            .collect(),
        rows_not_shown: Count(m.rows_not_shown),
        subnet: r.subnet.to_string(),
        gateway: r.gateway,
        lines: m,
    }
}

fn sets_table(ctx: &Ctx, n: &NetworkReport) -> String {
    let exhausted = n.exhausted;
    let mut headers = vec![
        "SET>",
        "RANGES",
        "GATEWAY",
        "CAPACITY>",
        "RESERVED>",
        "FREE>",
        "USAGE>",
        "LAST RESERVED",
    ];
    if exhausted {
        headers.push("NOTE");
    }
    let mut t = Table::new(&headers);
    for s in &n.range_sets {
        let gws: Vec<String> = s.ranges.iter().map(|r| r.gateway.to_string()).collect();
        let mut row = vec![
            s.index.to_string().into(),
            s.text.clone().into(),
            gws.join(",").into(),
            s.capacity.to_string().into(),
            s.reserved.to_string().into(),
            s.free.to_string().into(),
            usage_cell(s.usage, s.exhausted),
            s.last_reserved
                .map_or_else(|| "-".to_string(), |ip| ip.to_string())
                .into(),
        ];
        if s.exhausted {
            row.push(colored("EXHAUSTED", RED));
        }
        t.row(row);
    }
    t.render(ctx.style)
}

fn render_text(ctx: &Ctx, r: &ShowReport) -> String {
    let style = ctx.style;
    let n = &r.network;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {}  {}",
        style.paint("network", BOLD),
        n.name,
        style.paint(
            &match n.etcd_note() {
                Some(e) => format!("({e}, keys {})", n.path.display()),
                None => format!("({})", n.path.display()),
            },
            DIM
        )
    );
    for note in &n.notes {
        let _ = writeln!(o, "note    {note}");
    }
    if let Some(e) = &n.config_error {
        let _ = writeln!(
            o,
            "{}",
            style.paint(
                &format!("config error: {e}; every ADD on this network fails"),
                RED
            )
        );
    }
    if !n.exists {
        let _ = writeln!(
            o,
            "no store yet: {} does not exist (no ADD on this network so far)",
            n.path.display()
        );
    }
    match &n.config {
        Some(c) => {
            let _ = writeln!(o, "config  {}", c.source.display());
            o.push_str(&sets_table(ctx, n));
        }
        None if n.config_error.is_some() => {}
        None => {
            let _ = writeln!(
                o,
                "{}",
                style.paint(
                    "no config: range problems (outside, excluded, gateway) and exhaustion not checked; use --config",
                    DIM
                )
            );
        }
    }
    for s in n.range_sets.iter().filter(|s| s.exhausted) {
        let _ = writeln!(
            o,
            "{}",
            style.paint(
                &format!(
                    "EXHAUSTED: range set {} ({}) has no free address; every ADD on this network fails",
                    s.index, s.text
                ),
                RED
            )
        );
    }
    o.push('\n');
    let with_pods = r.reservations.iter().any(|x| x.pod.is_some());
    if r.reservations.is_empty() {
        match (&r.no_match, r.filter.active()) {
            (Some(why), _) => {
                let _ = writeln!(o, "no reservation matches: {why}");
            }
            (None, true) => o.push_str("no reservation matches\n"),
            (None, false) => o.push_str("no reservations\n"),
        }
    } else {
        let etcd = n.endpoints.is_some();
        let mut headers = vec!["ADDRESS", "CONTAINER", "IFNAME"];
        if etcd {
            headers.push("NODE");
        }
        if with_pods {
            headers.push("POD");
        }
        headers.extend(["AGE>", "PROBLEMS"]);
        let mut t = Table::new(&headers);
        for x in &r.reservations {
            let (c, i) = ctx.owner_cells(x);
            let probs = x
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.kind.as_str(), p.detail))
                .collect::<Vec<_>>()
                .join("; ");
            let mut row = vec![x.address.to_string().into(), c, i];
            if etcd {
                row.push(
                    x.node
                        .as_ref()
                        .map_or_else(|| colored("-", DIM), |s| s.clone().into()),
                );
            }
            if with_pods {
                row.push(pod_cell(x));
            }
            row.extend([age_cell(x), colored(probs, RED)]);
            t.row(row);
        }
        o.push_str(&t.render(style));
    }
    let problems = r
        .reservations
        .iter()
        .filter(|x| !x.problems.is_empty())
        .count();
    if r.filter.active() {
        let _ = writeln!(
            o,
            "{} of {} reservation{} shown, {} with problems",
            r.reservations.len(),
            n.reservations,
            plural(n.reservations),
            problems
        );
    } else {
        let _ = writeln!(
            o,
            "{} reservation{}, {} with problems",
            n.reservations,
            plural(n.reservations),
            problems
        );
    }
    if !n.strays.is_empty() {
        let _ = writeln!(
            o,
            "\n{} stray file{} in {} (no reservation, lock or cursor; not counted):",
            n.strays.len(),
            plural(n.strays.len()),
            n.path.display()
        );
        let mut t = Table::new(&["FILE", "WHY"]);
        for s in &n.strays {
            t.row(vec![
                s.name.clone().into(),
                colored(s.reason.clone(), YELLOW),
            ]);
        }
        o.push_str(&t.render(style));
    }
    if let Some(maps) = &r.map {
        for m in maps {
            let _ = writeln!(
                o,
                "\nrange set {}, range {}: {}-{} (subnet {}, gateway {})",
                m.range_set, m.range, m.range_start, m.range_end, m.subnet, m.gateway
            );
            o.push_str(&render::render_map(&m.lines, style));
        }
        if !maps.is_empty() {
            let _ = writeln!(o, "{}", style.paint(render::MAP_LEGEND, DIM));
        }
    }
    o
}
