//! `ipamctl man`: the roff man page ipamctl(1), generated from the same clap
//! definition as `--help`, so the two never disagree. The Debian package
//! installs it; `ipamctl man | man -l -` shows it from a tarball install.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cmd::{Ctx, OK};

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
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
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
