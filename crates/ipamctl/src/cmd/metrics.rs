//! Prometheus text exposition format, for stdout or a node_exporter
//! textfile-collector file (written atomically).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use std::collections::BTreeMap;

use host_local::store::etcd::Alarm;

use super::{load_configs, Ctx, FAILED, OK};
use crate::cli::ConfigArg;
use crate::configs::ConfigError;
use crate::inspect::{now_secs, NetworkView, ProblemKind};
use crate::out;
use crate::report::{NetworkReport, RangeSetReport};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write to this file atomically instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub output: Option<std::path::PathBuf>,
}

pub fn run(ctx: &Ctx, a: &Args) -> Result<u8> {
    let cfgs = load_configs(a.config.config.as_deref())?;
    let views = ctx.read_all(&cfgs)?;
    let now = now_secs();
    let reports: Vec<NetworkReport> = views.iter().map(|v| NetworkReport::new(v, now)).collect();
    let alarms = etcd_alarms(ctx, &views);
    let text = render_with(&reports, &cfgs.errors, &alarms, now);
    match &a.output {
        Some(p) => write_atomic(p, &text)?,
        None => out::print(&text)?,
    }
    let mut code = if cfgs.errors.is_empty() { OK } else { FAILED };
    for n in &reports {
        if let Some(e) = &n.error {
            out::warn(format_args!("{}: {e}", n.name));
            code = FAILED;
        }
        if let Some(raised) = alarms.get(&n.name).filter(|a| !a.is_empty()) {
            out::warn(format_args!(
                "{}: etcd raised {}: {}",
                n.name,
                raised
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                Alarm::advice(raised)
            ));
            code = FAILED;
        }
    }
    Ok(code)
}

/// The raised alarms of each network kept in etcd that could be read:
/// etcd's alarm list (NOSPACE: the backend reached its quota and every
/// write fails; CORRUPT), else the answering member's status (the alarm
/// list needs etcd's root role under authentication). A network whose
/// alarms cannot be read either way is warned about and left out.
fn etcd_alarms(ctx: &Ctx, views: &[NetworkView]) -> BTreeMap<String, Vec<Alarm>> {
    let mut out = BTreeMap::new();
    for v in views.iter().filter(|v| v.error.is_none()) {
        let Some(cfg) = v.config.as_ref().and_then(|c| c.etcd_store()) else {
            continue;
        };
        let mut store = crate::etcd::open(cfg, &v.name, ctx.lock_timeout);
        let listed = store.etcd_session().and_then(|mut s| {
            s.alarms().or_else(|first| match s.health() {
                Ok(h) => Ok(h.alarms),
                Err(_) => Err(first),
            })
        });
        match listed {
            Ok(a) => {
                out.insert(v.name.clone(), a);
            }
            Err(e) => out::warn(format_args!(
                "warning: {}: etcd alarms not read: {e}",
                v.name
            )),
        }
    }
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

fn family(f: &mut String, name: &str, help: &str) {
    let _ = writeln!(f, "# HELP {name} {help}");
    let _ = writeln!(f, "# TYPE {name} gauge");
}

/// The exposition text for every network and unusable configuration file.
pub fn render(views: &[NetworkReport], config_errors: &[ConfigError], now: i64) -> String {
    render_with(views, config_errors, &BTreeMap::new(), now)
}

/// [`render`] with the raised etcd alarms of networks kept in etcd (by
/// network name): each an `ipamctl_etcd_alarm` sample, and the network not up.
pub fn render_with(
    views: &[NetworkReport],
    config_errors: &[ConfigError],
    alarms: &BTreeMap<String, Vec<Alarm>>,
    now: i64,
) -> String {
    let raised = |v: &NetworkReport| alarms.get(&v.name).is_some_and(|a| !a.is_empty());
    let mut o = String::new();
    family(
        &mut o,
        "ipamctl_config_error",
        "1 for each configuration file that could not be used (not JSON, no name, an invalid host-local ipam section): every ADD on its network fails.",
    );
    for e in config_errors {
        let _ = writeln!(
            o,
            "ipamctl_config_error{{file=\"{}\",network=\"{}\"}} 1",
            esc(&e.file.to_string_lossy()),
            esc(e.network.as_deref().unwrap_or(""))
        );
    }
    family(
        &mut o,
        "ipamctl_network_up",
        "1 when the network's store could be read (under its lock, or from etcd) and, in etcd, no alarm is raised; else 0.",
    );
    for v in views {
        let _ = writeln!(
            o,
            "ipamctl_network_up{{network=\"{}\"}} {}",
            esc(&v.name),
            u8::from(v.error.is_none() && !raised(v))
        );
    }
    family(
        &mut o,
        "ipamctl_etcd_alarm",
        "1 for each alarm raised in the etcd cluster of a network kept in etcd (NOSPACE: the backend reached its quota and every write fails; CORRUPT: a member's data is inconsistent).",
    );
    for (network, list) in alarms {
        for a in list {
            let _ = writeln!(
                o,
                "ipamctl_etcd_alarm{{network=\"{}\",alarm=\"{}\",member=\"{}\"}} 1",
                esc(network),
                esc(a.kind.name()),
                esc(&a.member)
            );
        }
    }
    family(
        &mut o,
        "ipamctl_reservations",
        "Reservations in the network's store directory or etcd (damaged ones included).",
    );
    for v in views.iter().filter(|v| v.error.is_none()) {
        let _ = writeln!(
            o,
            "ipamctl_reservations{{network=\"{}\"}} {}",
            esc(&v.name),
            v.reservations
        );
    }
    family(
        &mut o,
        "ipamctl_oldest_reservation_age_seconds",
        "Age of the oldest reservation file (absent when the network has none, or keeps it in etcd).",
    );
    for v in views.iter().filter(|v| v.error.is_none()) {
        if let Some(a) = v.oldest_age_seconds {
            let _ = writeln!(
                o,
                "ipamctl_oldest_reservation_age_seconds{{network=\"{}\"}} {a}",
                esc(&v.name)
            );
        }
    }
    family(
        &mut o,
        "ipamctl_stray_files",
        "Files in the network's directory that are no reservation, lock or cursor (temporaries, non-canonical address names); not counted as reservations.",
    );
    for v in views
        .iter()
        .filter(|v| v.error.is_none() && v.endpoints.is_none())
    {
        let _ = writeln!(
            o,
            "ipamctl_stray_files{{network=\"{}\"}} {}",
            esc(&v.name),
            v.strays.len()
        );
    }
    family(
        &mut o,
        "ipamctl_network_exhausted",
        "1 when a range set of the network has no free address (every ADD fails), else 0 (needs a configuration).",
    );
    for v in views
        .iter()
        .filter(|v| v.error.is_none() && v.config.is_some())
    {
        let _ = writeln!(
            o,
            "ipamctl_network_exhausted{{network=\"{}\"}} {}",
            esc(&v.name),
            u8::from(v.exhausted)
        );
    }
    family(
        &mut o,
        "ipamctl_problems",
        "Reservations with a problem, by kind (damaged, outside-ranges, excluded, gateway, duplicate).",
    );
    for v in views.iter().filter(|v| v.error.is_none()) {
        let counts = &v.problems;
        for k in ProblemKind::ALL {
            // Range-dependent kinds are only known with a configuration.
            if v.config.is_none() && k != ProblemKind::Damaged {
                continue;
            }
            let _ = writeln!(
                o,
                "ipamctl_problems{{network=\"{}\",kind=\"{}\"}} {}",
                esc(&v.name),
                k.as_str(),
                counts.get(&k).copied().unwrap_or(0)
            );
        }
    }
    let sets: Vec<_> = views
        .iter()
        .filter(|v| v.error.is_none())
        .flat_map(|v| v.range_sets.iter().map(move |s| (v, s)))
        .collect();
    for (name, help, get) in [
        (
            "ipamctl_range_set_capacity",
            "Addresses a range set can hand out (gateway and exclusions left out).",
            (|s: &RangeSetReport| s.capacity.0 as f64) as fn(&_) -> f64,
        ),
        (
            "ipamctl_range_set_reserved",
            "Reserved addresses a range set hands out.",
            |s| s.reserved.0 as f64,
        ),
        (
            "ipamctl_range_set_free",
            "Addresses a range set can still hand out.",
            |s| s.free.0 as f64,
        ),
        (
            "ipamctl_range_set_usage_ratio",
            "Reserved over capacity (0 to 1).",
            |s| s.usage,
        ),
        (
            "ipamctl_range_set_exhausted",
            "1 when the range set has no free address (every ADD on the network fails), else 0.",
            |s| f64::from(u8::from(s.exhausted)),
        ),
    ] {
        family(&mut o, name, help);
        for (v, s) in &sets {
            let _ = writeln!(
                o,
                "{name}{{network=\"{}\",range_set=\"{}\",ranges=\"{}\"}} {}",
                esc(&v.name),
                s.index,
                esc(&s.text),
                get(s)
            );
        }
    }
    family(
        &mut o,
        "ipamctl_last_run_timestamp_seconds",
        "When ipamctl produced these metrics.",
    );
    let _ = writeln!(o, "ipamctl_last_run_timestamp_seconds {now}");
    o
}

/// Writes `text` to `path` atomically: a temporary file in the same
/// directory (named so the textfile collector ignores it), fsynced, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let base = path
        .file_name()
        .ok_or_else(|| anyhow!("output {}: not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{base}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("output {}", path.display()));
    }
    Ok(())
}
