//! Statistics, table rendering, the description of the machine and the whole report for
//! `ipam-bench`.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::plugin::{Plugin, RSS_RUNS};

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, p10, p90), nearest rank.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (q(0.5), q(0.1), q(0.9))
}

pub fn median_i64(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

pub fn fmt_ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.3} ms")
    } else {
        format!("{x:.1} ms")
    }
}

pub fn spread(s: (f64, f64, f64)) -> String {
    let p = |x: f64| {
        if x < 10.0 {
            format!("{x:.3}")
        } else {
            format!("{x:.1}")
        }
    };
    format!("{}–{}", p(s.1), p(s.2))
}

pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}

pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Self {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, r: Vec<String>) {
        self.rows.push(r);
    }
    pub fn render(&self, markdown: bool) -> String {
        let all = std::iter::once(&self.head).chain(&self.rows);
        let mut out = String::new();
        if markdown {
            for (i, r) in all.enumerate() {
                out.push_str(&format!("| {} |\n", r.join(" | ")));
                if i == 0 {
                    out.push_str(&format!("|{}\n", "---|".repeat(r.len())));
                }
            }
            return out;
        }
        let mut w = vec![0; self.head.len()];
        for r in all.clone() {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        for (n, r) in all.enumerate() {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = w[i]))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if n == 0 {
                let rule: Vec<String> = w.iter().map(|&x| "-".repeat(x)).collect();
                out.push_str(&rule.join("  "));
                out.push('\n');
            }
        }
        out
    }
}

// ---- machine description ----

pub fn file_size(p: &Path) -> Result<u64> {
    Ok(fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .len())
}

pub fn read_trim(p: &str) -> String {
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// (fstype, source) of the mount holding `p`, from /proc/self/mountinfo.
pub fn filesystem_of(p: &Path) -> Result<(String, String)> {
    let p = fs::canonicalize(p)?;
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let mut best: Option<(usize, String, String)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(mnt), Some(fstype), Some(src)) = (f.get(4), f.get(sep + 1), f.get(sep + 2))
        else {
            continue;
        };
        let mnt = mnt.replace("\\040", " ");
        if p.starts_with(&mnt) && best.as_ref().is_none_or(|b| mnt.len() >= b.0) {
            best = Some((mnt.len(), fstype.to_string(), src.to_string()));
        }
    }
    let (_, t, s) = best.context("no mount found for the data root")?;
    Ok((t, s))
}

pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The machine description, both tables and the notes, as text or Markdown.
pub fn render(
    args: &crate::Args,
    load: &str,
    fsync: [f64; 2],
    plugins: &[Plugin; 2],
    latency: &Table,
    summary: &Table,
    rss_fallback: bool,
) -> Result<String> {
    let root = &args.data_root;
    let (fstype, source) = filesystem_of(root)?;
    let kind = if matches!(fstype.as_str(), "tmpfs" | "ramfs") {
        "memory"
    } else {
        "disk"
    };
    let info = [
        format!("date: {}", utc_now()),
        format!("mode: {}", if args.quick { "--quick" } else { "full" }),
        format!("cpu: {} ({} cores available)", cpu_model(), cores()),
        format!("kernel: {}", read_trim("/proc/sys/kernel/osrelease")),
        format!("load average at start: {load}"),
        format!(
            "fsync on the data dirs' disk (create, write 40 bytes, fsync file and dir; median of 20): \
             {} at start, {} at end",
            fmt_ms(fsync[0]),
            fmt_ms(fsync[1])
        ),
        format!(
            "data dirs: tempdirs under {} on {fstype} ({source}, {kind}); page cache warm",
            root.display()
        ),
        format!("ours: {}", plugins[0].path.display()),
        format!("reference: {}", plugins[1].path.display()),
        "times: wall time of one process invocation (spawn, config on stdin, exit), \
         invocations of the two plugins alternating"
            .into(),
        "reserved store: contiguous from 10.128.0.2 in 10.128.0.0/16, half the files in the \
         old one-line format, cursor on the last one; each cycle adds one new container"
            .into(),
    ];
    let mut notes: Vec<String> = plugins
        .iter()
        .zip(["ours", "reference"])
        .filter_map(|(p, name)| {
            p.status_note.as_ref().map(|n| {
                format!("{name} does not list cniVersion 1.1.0 (VERSION); its STATUS row times the error exit ({n})")
            })
        })
        .collect();
    notes.push(
        "CHECK and DEL carry the ADD result as prevResult; STATUS sends a cniVersion 1.1.0 config \
         with only CNI_COMMAND and CNI_PATH set"
            .into(),
    );
    notes.push(
        "first ADD after fill: the first call on a freshly filled store (ours may build its index)"
            .into(),
    );
    notes.push(if rss_fallback {
        "peak RSS: wait4() of the spawned child; /usr/bin/time (GNU time) is missing, so the \
         figures include this process's own RSS (a vfork'ed child inherits it until exec)"
            .into()
    } else {
        format!(
            "peak RSS: {RSS_RUNS} ADDs per plugin run under /usr/bin/time -f %M (GNU time): a \
             child's peak RSS includes its launcher's until exec, and GNU time's (about 0.5 \
             MiB) is below either plugin's"
        )
    });

    let mut out = String::new();
    if args.markdown {
        out.push_str("### host-local benchmark: ours vs reference\n\n");
        for l in &info {
            out.push_str(&format!("- {l}\n"));
        }
        out.push('\n');
    } else {
        out.push_str("host-local benchmark: ours vs reference\n");
        for l in &info {
            out.push_str(&format!("  {l}\n"));
        }
        out.push('\n');
    }
    out.push_str(&latency.render(args.markdown));
    out.push('\n');
    out.push_str(&summary.render(args.markdown));
    out.push('\n');
    for n in &notes {
        out.push_str(&format!(
            "{}{n}\n",
            if args.markdown { "- " } else { "note: " }
        ));
    }
    Ok(out)
}
