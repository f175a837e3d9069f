//! `ipamctl list`: every network, with capacity and exhaustion per range set.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{load_configs, Ctx, FAILED, FOUND, OK};
use crate::cli::ConfigArg;
use crate::configs::ConfigError;
use crate::inspect::now_secs;
use crate::out;
use crate::render::{colored, percent, Cell, Table, DIM, RED, YELLOW};
use crate::report::NetworkReport;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListReport {
    /// The data directory of networks without a configured dataDir.
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub networks: Vec<NetworkReport>,
    /// Configuration files that could not be used.
    pub config_errors: Vec<ConfigError>,
    #[serde(skip)]
    with_config: bool,
}

impl ListReport {
    pub fn exit_code(&self) -> u8 {
        if self.networks.iter().any(|n| n.error.is_some()) || !self.config_errors.is_empty() {
            FAILED
        } else if self.networks.iter().any(|n| n.exhausted) {
            FOUND
        } else {
            OK
        }
    }
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let cfgs = load_configs(a.config.config.as_deref())?;
    let views = ctx.read_all(&cfgs)?;
    let now = now_secs();
    let report = ListReport {
        data_dir: ctx.base_data_dir(),
        config: cfgs.path.clone(),
        networks: views.iter().map(|v| NetworkReport::new(v, now)).collect(),
        config_errors: cfgs.errors.clone(),
        with_config: a.config.config.is_some(),
    };
    for n in &report.networks {
        if let Some(e) = &n.error {
            out::warn(format_args!("{}: {e}", n.name));
        }
    }
    if a.json {
        out::json("list", &report)?;
    } else {
        out::print(&render(ctx, &report))?;
    }
    Ok(report.exit_code())
}

pub fn usage_cell(u: f64, exhausted: bool) -> Cell {
    let color = if exhausted || u >= 0.9 {
        RED
    } else if u >= 0.75 {
        YELLOW
    } else {
        ""
    };
    colored(percent(u), color)
}

fn render(ctx: &Ctx, report: &ListReport) -> String {
    let with_cfg = report.with_config;
    let mut headers = vec!["NETWORK", "RESERVED>", "LEGACY>", "DAMAGED>", "PROBLEMS>"];
    if with_cfg {
        headers.extend(["SET>", "RANGES", "CAPACITY>", "FREE>", "USAGE>"]);
    }
    headers.push("NOTE");
    let note_col = headers.len() - 1;
    let mut t = Table::new(&headers);
    for n in &report.networks {
        if let Some(e) = &n.error {
            let mut row: Vec<Cell> = vec![n.name.clone().into()];
            row.resize(note_col, "-".into());
            row.push(colored(format!("error: {e}"), RED));
            t.row(row);
            continue;
        }
        let damaged = n.damaged();
        let mut row: Vec<Cell> = vec![
            n.name.clone().into(),
            n.reservations.to_string().into(),
            n.formats["legacy"].to_string().into(),
            if damaged > 0 {
                colored(damaged.to_string(), RED)
            } else {
                "0".into()
            },
            if n.with_problems > 0 {
                colored(n.with_problems.to_string(), YELLOW)
            } else {
                "0".into()
            },
        ];
        let mut notes: Vec<String> = Vec::new();
        if let Some(e) = &n.config_error {
            row.resize(note_col, "-".into());
            let mut cell = format!("config error: {e}");
            if n.exists {
                cell.push_str(&format!(" ({} reserved)", n.reservations));
            }
            row.push(colored(cell, RED));
            t.row(row);
            continue;
        }
        notes.extend(n.etcd_note());
        if !n.exists {
            notes.push("no store yet".into());
        } else if with_cfg && n.config.is_none() {
            notes.push("not in the configuration".into());
        }
        if !n.strays.is_empty() {
            notes.push(format!(
                "{} stray file{} (not counted)",
                n.strays.len(),
                super::plural(n.strays.len())
            ));
        }
        if !n.notes.is_empty() && n.endpoints.is_none() {
            notes.push(format!("dataDir {}", n.data_dir.display()));
        }
        let note = notes.join("; ");
        if !with_cfg || n.range_sets.is_empty() {
            row.resize(note_col, Cell::default());
            row.push(note.into());
            t.row(row);
            continue;
        }
        for (k, s) in n.range_sets.iter().enumerate() {
            let mut r = if k == 0 {
                std::mem::take(&mut row)
            } else {
                vec![Cell::default(); 5]
            };
            r.extend([
                s.index.to_string().into(),
                s.text.clone().into(),
                s.capacity.to_string().into(),
                s.free.to_string().into(),
                usage_cell(s.usage, s.exhausted),
            ]);
            let mut cell_notes = Vec::new();
            if s.exhausted {
                cell_notes.push("EXHAUSTED".to_string());
            }
            if k == 0 && !note.is_empty() {
                cell_notes.push(note.clone());
            }
            r.push(if s.exhausted {
                colored(cell_notes.join("; "), RED)
            } else {
                cell_notes.join("; ").into()
            });
            t.row(r);
        }
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        ctx.style.paint(
            &format!("data directory {}", report.data_dir.display()),
            DIM
        )
    );
    if t.is_empty() {
        o.push_str("no networks\n");
    } else {
        o.push_str(&t.render(ctx.style));
    }
    for e in report.config_errors.iter().filter(|e| e.network.is_none()) {
        let _ = writeln!(
            o,
            "{}",
            ctx.style.paint(
                &format!("config error: {}: {}", e.file.display(), e.error),
                RED
            )
        );
    }
    o
}
