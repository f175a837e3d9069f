//! `ipamctl cluster import`: a node's disk store (a network directory in
//! the reference layout) imported into the network's etcd store as that
//! node's reservations, so the node can switch to cluster mode without its
//! pods losing their addresses.
//!
//! A thin command: the disk store is read through its own read session
//! (under its lock, creating nothing; damaged files come back as damaged
//! entries), the etcd work is `EtcdStore::import` in the library. The disk
//! files are never changed.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use host_local::store::disk::DiskStore;
use host_local::store::etcd::{EtcdStore, ImportError, ImportRequest, Imported, Progress, Refusal};
use host_local::store::{Entry, Session};
use serde::Serialize;

use crate::cmd::{check_network_name, plural, suggest, Ctx, FOUND, OK};
use crate::render::{colored, Table, DIM, RED};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The network name (as in the configuration).
    network: String,
    /// A network configuration (.conf, .conflist) or a directory of them whose host-local
    /// section for NETWORK has a `store` of type etcd: the configuration the node switches to.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// The node the reservations become: recorded in each, and the node whose blocks and
    /// activity they go under (the node's `ipam.store.node`, by default its host name).
    #[arg(long, value_name = "NODE")]
    node: String,
    /// The node's network directory in the disk store (`<dataDir>/<network>`, e.g.
    /// /var/lib/cni/networks/mynet). Read under its lock; never changed.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    json: bool,
}

/// The after_help text of the subcommand.
pub const AFTER_HELP: &str = "Imports every reservation of DIR (files `containerID\\r\\nifname`, and \
    legacy ones holding the container ID alone) into the etcd store of NETWORK as NODE's: the \
    address keys with their indexes, claims of the unclaimed blocks holding them, NODE's \
    activity with the disk's cursors (last_reserved_ip.N), and the layout key when absent.\n\n\
    All or nothing: an address etcd holds for another container or another node, an address \
    outside the network's ranges, or a damaged file refuses the whole import (exit status 1, \
    each one listed, nothing written). A write that fails part way takes back what the run \
    wrote and reports every failure (exit status 2). Running it again imports nothing new and \
    says so (exit status 0). The files in DIR are never changed.\n\n\
    Examples:\n  \
    ipamctl cluster import mynet --config /etc/cni/net.d.cluster --node worker-3 \\\n      \
    --from /var/lib/cni/networks/mynet\n  \
    ipamctl cluster import mynet --config new.conflist --node worker-3 --from /var/lib/cni/networks/mynet --json";

/// One address that stopped the import.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefusedReport {
    #[serde(rename = "address")]
    ip: IpAddr,
    /// `held`, `outside-ranges` or `damaged`.
    problem: &'static str,
    container_id: Option<String>,
    ifname: Option<String>,
    node: Option<String>,
    detail: Option<String>,
}

/// The `--json` document (SCHEMA.md, `cluster import`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportReport<'a> {
    network: &'a str,
    node: &'a str,
    from: String,
    endpoints: &'a [String],
    prefix: String,
    /// `imported`, `nothing-new` or `refused`.
    outcome: &'static str,
    /// Reservations in DIR.
    reservations: usize,
    imported: usize,
    already_present: usize,
    blocks_claimed: usize,
    borrowed: usize,
    layout_written: bool,
    cursors: BTreeMap<String, IpAddr>,
    transactions: usize,
    refused: Vec<RefusedReport>,
}

/// The disk store at `dir`: its reservations and cursors (of `sets` range
/// sets), read under its lock by a session that creates nothing.
fn read_disk(ctx: &Ctx, dir: &Path, sets: usize) -> Result<(Vec<Entry>, BTreeMap<usize, IpAddr>)> {
    let dir = match dir.file_name() {
        Some(_) => dir.to_path_buf(),
        None => std::fs::canonicalize(dir).with_context(|| format!("--from {}", dir.display()))?,
    };
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
    else {
        return Err(anyhow!("--from {}: not a network directory", dir.display()));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let store = DiskStore::new(parent, name).with_lock_timeout(ctx.lock_timeout);
    let mut s = store.read_session().map_err(|e| anyhow!("--from: {e}"))?;
    let entries = s.list().map_err(|e| anyhow!("--from: {e}"))?;
    // A cursor that cannot be read is only a lost round-robin position.
    let cursors = (0..sets)
        .filter_map(|i| Some((i, s.cursor(i).ok().flatten()?)))
        .collect();
    Ok((entries, cursors))
}

fn refused_rows(r: &Refusal) -> Vec<RefusedReport> {
    let mut rows: Vec<RefusedReport> = r
        .held
        .iter()
        .map(|h| RefusedReport {
            ip: h.ip,
            problem: "held",
            container_id: h.owner.container_id().map(str::to_string),
            ifname: h.owner.ifname().map(str::to_string),
            node: h.node.clone(),
            detail: h.damage.clone(),
        })
        .collect();
    rows.extend(r.outside.iter().map(|ip| RefusedReport {
        ip: *ip,
        problem: "outside-ranges",
        container_id: None,
        ifname: None,
        node: None,
        detail: Some("outside every range of the network".into()),
    }));
    rows.extend(r.damaged.iter().map(|(ip, why)| RefusedReport {
        ip: *ip,
        problem: "damaged",
        container_id: None,
        ifname: None,
        node: None,
        detail: Some(format!("damaged on disk: {why}")),
    }));
    rows.sort_by_key(|r| (r.ip.is_ipv6(), host_local::addr::to_u128(r.ip)));
    rows
}

fn render_refusal(ctx: &Ctx, a: &Args, rows: &[RefusedReport]) -> String {
    let mut t = Table::new(&[
        "ADDRESS",
        "PROBLEM",
        "CONTAINER",
        "IFNAME",
        "NODE",
        "DETAIL",
    ]);
    let dash = || colored("-", DIM);
    for r in rows {
        let id = r.container_id.as_deref().map(|id| ctx.id_text(id));
        t.row(vec![
            r.ip.to_string().into(),
            colored(r.problem, RED),
            id.map_or_else(dash, Into::into),
            match (&r.container_id, &r.ifname) {
                (Some(_), None) => colored("(legacy)", DIM),
                (_, Some(i)) => i.clone().into(),
                (None, None) => dash(),
            },
            r.node.clone().map_or_else(dash, Into::into),
            r.detail.clone().unwrap_or_default().into(),
        ]);
    }
    let mut o = format!(
        "refused: {} address{} of {} cannot be imported into network {} as node {}'s; \
         nothing was written\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "es" },
        a.from.display(),
        a.network,
        a.node
    );
    o.push_str(&t.render(ctx.style));
    let has = |p: &str| rows.iter().any(|r| r.problem == p);
    if has("held") {
        o.push_str(
            "held: etcd reserves these for another container or node; the node's pod and that \
             one would share the address. Find out which is right (ipamctl show NETWORK --config \
             CONF --ip ADDR), release the wrong one, then import again.\n",
        );
    }
    if has("outside-ranges") {
        o.push_str(
            "outside-ranges: the configuration's ranges do not hold these; fix the ranges, or \
             release them on disk (ipamctl release NETWORK --ip ADDR) once their pods are gone.\n",
        );
    }
    if has("damaged") {
        o.push_str(
            "damaged: these files name no container; release them on disk (ipamctl release \
             NETWORK --ip ADDR, or gc) once you know no pod uses the address.\n",
        );
    }
    o
}

fn render_done(a: &Args, total: usize, d: &Imported, endpoints: &str, prefix: &str) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if total == 0 {
        let _ = writeln!(
            o,
            "nothing to import: {} holds no reservations",
            a.from.display()
        );
        return o;
    }
    if d.imported == 0 {
        let _ = writeln!(
            o,
            "nothing new to import: all {} reservation{} of {} are in etcd already as node {}'s \
             (network {}, etcd {endpoints})",
            d.already_present,
            plural(d.already_present),
            a.from.display(),
            a.node,
            a.network
        );
        return o;
    }
    let _ = writeln!(
        o,
        "imported {} reservation{} of {} into network {} as node {}'s (etcd {endpoints}, keys {prefix})",
        d.imported,
        plural(d.imported),
        a.from.display(),
        a.network,
        a.node
    );
    let cursors = if d.cursors.is_empty() {
        "-".to_string()
    } else {
        d.cursors
            .iter()
            .map(|(set, ip)| format!("set {set}: {ip}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        ("imported", d.imported.to_string()),
        ("already present", d.already_present.to_string()),
        ("blocks claimed", d.blocks_claimed.len().to_string()),
        (
            "borrowed",
            format!("{} (in blocks other nodes claimed)", d.borrowed),
        ),
        (
            "layout written",
            if d.layout_written {
                "yes"
            } else {
                "no (present)"
            }
            .to_string(),
        ),
        ("cursors", cursors),
        ("transactions", d.transactions.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "  {k:<16} {v}");
    }
    let _ = writeln!(
        o,
        "the files in {} are unchanged; switch the node's configuration to the etcd store next",
        a.from.display()
    );
    o
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    check_network_name(&a.network)?;
    let cfgs = crate::configs::load(&a.config)?;
    let net = cfgs.get(&a.network).ok_or_else(|| {
        let known: Vec<String> = cfgs.networks.keys().cloned().collect();
        anyhow!(
            "network {} not found in {}{}",
            a.network,
            a.config.display(),
            suggest(&a.network, &known)
        )
    })?;
    let cfg = net.etcd_store().cloned().ok_or_else(|| {
        anyhow!(
            "network {} ({}) does not use the etcd store: give --config the configuration the \
             node switches to, with \"store\": {{\"type\": \"etcd\", ...}} in its ipam section",
            net.network,
            net.source.display()
        )
    })?;
    let sets = &net.ipam.ranges;
    let (entries, cursors) = read_disk(ctx, &a.from, sets.len())?;
    let endpoints = cfg.endpoints.clone();
    let mut store = EtcdStore::new(cfg, &a.network);
    let prefix = store.keys().base().to_string();
    let req = ImportRequest {
        node: &a.node,
        entries: &entries,
        cursors: &cursors,
        sets,
    };
    let show_progress = !a.json && std::io::stderr().is_terminal();
    let mut shown = false;
    let mut progress = |p: &Progress| {
        if show_progress && p.batches > 1 {
            shown = true;
            let _ = write!(
                std::io::stderr().lock(),
                "\rimporting: {} of {} reservations written",
                p.written,
                p.total
            );
        }
    };
    let result = store.import(&req, &mut progress);
    if shown {
        let _ = writeln!(std::io::stderr().lock());
    }
    let report = |outcome, d: &Imported, refused| ImportReport {
        network: &a.network,
        node: &a.node,
        from: a.from.display().to_string(),
        endpoints: &endpoints,
        prefix: prefix.clone(),
        outcome,
        reservations: entries.len(),
        imported: d.imported,
        already_present: d.already_present,
        blocks_claimed: d.blocks_claimed.len(),
        borrowed: d.borrowed,
        layout_written: d.layout_written,
        cursors: d.cursors.clone(),
        transactions: d.transactions,
        refused,
    };
    match result {
        Ok(d) => {
            if a.json {
                let outcome = if d.imported == 0 {
                    "nothing-new"
                } else {
                    "imported"
                };
                crate::out::json("cluster import", &report(outcome, &d, Vec::new()))?;
            } else {
                let text = render_done(a, entries.len(), &d, &endpoints.join(","), &prefix);
                crate::out::print(&text)?;
            }
            Ok(OK)
        }
        Err(ImportError::Refused(r)) => {
            let rows = refused_rows(&r);
            if a.json {
                crate::out::json(
                    "cluster import",
                    &report("refused", &Imported::default(), rows),
                )?;
            } else {
                crate::out::print(&render_refusal(ctx, a, &rows))?;
            }
            Ok(FOUND)
        }
        Err(e) => Err(anyhow!(
            "importing {} into network {} (etcd {}): {e}",
            a.from.display(),
            a.network,
            endpoints.join(",")
        )),
    }
}
