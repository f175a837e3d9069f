//! `ipamctl show --ip ADDR` without a network: who holds the address in
//! any network, and where nobody does, what the address is to each network
//! (free, gateway, excluded, outside its ranges).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use super::show::Args;
use super::{age_cell, load_configs, plural, pod_cell, Ctx, FAILED, FOUND, OK};
use crate::inspect::{explain_unreserved, now_secs, AddressState};
use crate::out;
use crate::render::{colored, Table, DIM, RED};
use crate::report::ReservationReport;

/// A reservation of the address, in the network holding it.
#[derive(Serialize)]
pub struct Found {
    pub network: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub reservation: ReservationReport,
}

/// A network holding no reservation of the address, and what the address is to it.
#[derive(Serialize)]
pub struct NotFound {
    pub network: String,
    pub state: AddressState,
    pub detail: String,
}

/// A network that could not be searched.
#[derive(Serialize)]
pub struct Unreadable {
    pub network: String,
    pub error: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupReport {
    pub ip: IpAddr,
    /// The base data directory (networks without a configured dataDir).
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// How many networks were searched.
    pub networks: usize,
    pub found: Vec<Found>,
    pub not_found: Vec<NotFound>,
    pub errors: Vec<Unreadable>,
}

pub fn run(ctx: &Ctx, a: &Args, ip: IpAddr) -> Result<u8> {
    if a.pod.is_some() || a.problems || a.older_than.is_some() || a.map {
        bail!("--pod, --problems, --older-than and --map need NETWORK; only --ip searches every network");
    }
    let cfgs = load_configs(a.config.config.as_deref())?;
    let views = ctx.read_all(&cfgs)?;
    let now = now_secs();
    let mut report = LookupReport {
        ip,
        data_dir: ctx.base_data_dir(),
        config: cfgs.path.clone(),
        networks: views.len(),
        found: Vec::new(),
        not_found: Vec::new(),
        errors: Vec::new(),
    };
    for v in &views {
        if let Some(e) = &v.error {
            report.errors.push(Unreadable {
                network: v.name.clone(),
                error: e.clone(),
            });
            continue;
        }
        match v.reservations.iter().find(|r| r.ip == ip) {
            Some(r) => {
                let pods = super::change::pod_names(ctx.results_dir.as_deref(), &v.name)?;
                report.found.push(Found {
                    network: v.name.clone(),
                    path: v.path.clone(),
                    reservation: ReservationReport::new(
                        r,
                        now,
                        pods.as_ref().and_then(|c| c.pod(&r.owner)),
                    ),
                });
            }
            None => {
                let e = explain_unreserved(v, ip);
                report.not_found.push(NotFound {
                    network: v.name.clone(),
                    state: e.state,
                    detail: e.detail,
                });
            }
        }
    }
    for e in &report.errors {
        out::warn(format_args!("{}: {}", e.network, e.error));
    }
    if a.json {
        out::json("show", &report)?;
    } else {
        out::print(&render(ctx, &report))?;
    }
    Ok(if !report.errors.is_empty() {
        FAILED
    } else if report.found.is_empty()
        || report
            .found
            .iter()
            .any(|f| !f.reservation.problems.is_empty())
    {
        FOUND
    } else {
        OK
    })
}

fn render(ctx: &Ctx, r: &LookupReport) -> String {
    let style = ctx.style;
    let mut o = String::new();
    let n = r.networks;
    if r.found.is_empty() {
        let _ = writeln!(
            o,
            "{} is not reserved in any of the {n} network{} searched",
            r.ip,
            plural(n)
        );
    } else {
        let mut t = Table::new(&[
            "ADDRESS",
            "NETWORK",
            "CONTAINER",
            "IFNAME",
            "POD",
            "AGE>",
            "PROBLEMS",
        ]);
        for f in &r.found {
            let x = &f.reservation;
            let (c, i) = ctx.owner_cells(x);
            let probs = x
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.kind.as_str(), p.detail))
                .collect::<Vec<_>>()
                .join("; ");
            t.row(vec![
                x.address.to_string().into(),
                f.network.clone().into(),
                c,
                i,
                pod_cell(x),
                age_cell(x),
                colored(probs, RED),
            ]);
        }
        o.push_str(&t.render(style));
        let _ = writeln!(
            o,
            "reserved in {} of the {n} network{} searched",
            r.found.len(),
            plural(n)
        );
    }
    // Where nobody holds it, what it is: known answers first, networks it is
    // simply outside of last.
    let mut rest: Vec<&NotFound> = r.not_found.iter().collect();
    rest.sort_by_key(|x| match x.state {
        AddressState::Unknown => 1,
        AddressState::OutsideRanges => 2,
        _ => 0,
    });
    if !rest.is_empty() {
        o.push('\n');
        let mut t = Table::new(&["NETWORK", "ADDRESS IS", "DETAIL"]);
        for x in rest {
            let color = if x.state == AddressState::OutsideRanges {
                DIM
            } else {
                ""
            };
            t.row(vec![
                x.network.clone().into(),
                colored(x.state.as_str(), color),
                colored(x.detail.clone(), color),
            ]);
        }
        o.push_str(&t.render(style));
    }
    for e in &r.errors {
        let _ = writeln!(
            o,
            "{}",
            style.paint(&format!("{}: not searched: {}", e.network, e.error), RED)
        );
    }
    o
}
