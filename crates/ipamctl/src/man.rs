//! `ipamctl man`: the roff man page ipamctl(1), generated from the same clap
//! definition as `--help` (and the metric list from the metrics code), so
//! they never disagree. The Debian package installs it; `ipamctl man | man
//! -l -` shows it from a tarball install. `ipamctl schema`: SCHEMA.md, the
//! JSON output's documentation, carried in the binary.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cmd::{Ctx, OK};

/// SCHEMA.md, as built in.
pub const SCHEMA_MD: &str = include_str!("../SCHEMA.md");

/// `ipamctl schema`: prints SCHEMA.md.
pub fn schema(_ctx: &Ctx) -> Result<u8> {
    crate::out::print(SCHEMA_MD)?;
    Ok(OK)
}

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `.TP` entries: a bold term, then its text.
fn entries(items: &[(&str, &str)]) -> String {
    items
        .iter()
        .map(|(term, text)| format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)))
        .collect()
}

/// FILES, ENVIRONMENT and METRICS, after the main page's sections.
fn extra_sections() -> String {
    let mut o = String::from(".SH FILES\n");
    o.push_str(&entries(&[
        ("/etc/cni/net.d", "Network configurations, given with --config (a directory, a .conf or a .conflist)."),
        ("/var/lib/cni/networks/NETWORK/", "A network's store (the plugin's default dataDir): one file per reserved address, last_reserved_ip.N cursors, and lock, which every read and change flocks."),
        ("/var/lib/cni/networks/.host-local-rs/", "The plugin's index (a cache); reads never touch it, removals keep it right through the plugin's own store code."),
        ("/var/lib/cni/results/", "libcni's result cache (--results-dir): pod names, the heuristic of leaks, what check compares."),
        ("/proc/locks", "Read to name the holder of a lock that stays held past --lock-timeout."),
        ("/var/lib/ipamctl/reconcile.json", "The state of the shipped reconcile service: when each leak was first seen (with its .lock)."),
        ("/usr/lib/systemd/system/ipamctl-reconcile.service, ipamctl-reconcile.timer", "ipamctl reconcile every 15 minutes, shipped disabled; its arguments in IPAMCTL_RECONCILE_ARGS, overridden in /etc/default/ipamctl-reconcile."),
        ("/usr/share/doc/host-local-rs/SCHEMA.md", "The --json output, documented (also printed by ipamctl schema)."),
        ("/usr/share/doc/host-local-rs/README.md", "The plugin and ipamctl; docs/operator.md in the source tree walks through finding and reclaiming leaks."),
    ]));
    o.push_str(".SH ENVIRONMENT\n");
    o.push_str(&entries(&[
        (
            "NO_COLOR",
            "When set and not empty, no colour, even on a terminal.",
        ),
        ("TERM", "dumb: no colour."),
    ]));
    o.push_str(".SH METRICS\nipamctl metrics prints these gauges (Prometheus text format):\n");
    let text = crate::cmd::metrics::render(&[], &[], 0);
    let families: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP ")?.split_once(' '))
        .collect();
    o.push_str(&entries(&families));
    o
}

/// SEE ALSO, last.
const SEE_ALSO: &str = ".SH \"SEE ALSO\"\n\\fBcrictl\\fR(1), \\fBpodman\\fR(1), \\fBflock\\fR(1); \
    the CNI specification (https://www.cni.dev/docs/spec/); \
    /usr/share/doc/host-local-rs/README.md and SCHEMA.md\n";

/// `ipamctl man`: prints the page.
pub fn run(_ctx: &Ctx) -> Result<u8> {
    let mut buf = Vec::new();
    write_man(crate::cli::Cli::command(), &mut buf)?;
    crate::out::print(&String::from_utf8_lossy(&buf))?;
    Ok(OK)
}

/// Writes ipamctl(1) to `out`: the main page (options, subcommand list, exit
/// status, examples), then one section per subcommand with its synopsis,
/// options and examples (their sections demoted to subsections). One page:
/// the subcommand list points into it rather than at ipamctl-<cmd>(1) pages.
pub fn write_man(cmd: clap::Command, out: &mut impl Write) -> Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut main = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut main)
        .context("rendering the man page")?;
    let mut page = String::from_utf8_lossy(&main)
        .replace("\n.SH EXTRA\n", "\n.SH \"EXIT STATUS AND EXAMPLES\"\n");
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        page = page.replace(
            &format!("\nipamctl\\-{name}(1)\n"),
            &format!("\n\\fBipamctl {name}\\fR (below)\n"),
        );
    }
    page.push_str(&extra_sections());
    // Each subcommand, then its own (`cluster reclaim`), each a section.
    let mut subs: Vec<(String, clap::Command)> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subs.push((sub.get_name().to_string(), sub.clone()));
        for nested in sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            subs.push((
                format!("{} {}", sub.get_name(), nested.get_name()),
                nested.clone(),
            ));
        }
    }
    for (name, sub) in &subs {
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)
            .and_then(|()| man.render_description_section(&mut part))
            .and_then(|()| man.render_options_section(&mut part))
            .and_then(|()| man.render_extra_section(&mut part))
            .with_context(|| format!("rendering the man page section of {name}"))?;
        page.push_str(&format!(".SH \"IPAMCTL {}\"\n", name.to_uppercase()));
        for line in String::from_utf8_lossy(&part).lines() {
            // Each render repeats the preamble defining \*(Aq; the page has it once.
            if line.starts_with(".ie ") || line.starts_with(".el ") {
                continue;
            }
            let line = match line.strip_prefix(".SH ") {
                Some("EXTRA") => ".SS NOTES".to_owned(),
                Some(title) => format!(".SS {title}"),
                None => line.to_owned(),
            };
            page.push_str(&line);
            page.push('\n');
        }
    }
    page.push_str(SEE_ALSO);
    out.write_all(page.as_bytes())
        .context("writing the man page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_documents_every_subcommand_and_its_options() {
        let mut out = Vec::new();
        super::write_man(crate::cli::Cli::command(), &mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains("\n.TH ipamctl 1 "), "{}", &page[..120]);
        assert_eq!(page.matches(".el .ds Aq").count(), 1, "one preamble");
        assert!(
            !page.contains("ipamctl\\-list(1)"),
            "points at a page that does not exist"
        );
        assert!(page.contains("\n.SH \"EXIT STATUS AND EXAMPLES\"\n"));
        for sub in [
            "LIST",
            "SHOW",
            "LEAKS",
            "RELEASE",
            "GC",
            "METRICS",
            "COMPLETIONS",
            "MAN",
            "CLUSTER",
            "CLUSTER RECLAIM",
        ] {
            assert!(
                page.contains(&format!(".SH \"IPAMCTL {sub}\"")),
                "no section for {sub}"
            );
        }
        assert!(page.contains("map\\-rows"), "show's --map-rows is missing");
        assert!(!page.contains("\n.SH SYNOPSIS\n.SH"), "an empty section");
    }
}
