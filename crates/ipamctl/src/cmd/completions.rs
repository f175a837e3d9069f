//! `ipamctl completions SHELL`: a shell completion script from the clap definition.

use anyhow::Result;
use clap::CommandFactory;

use super::{Ctx, OK};
use crate::cli::Cli;
use crate::out;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub shell: clap_complete::Shell,
}

pub fn run(_ctx: &Ctx, a: &Args) -> Result<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "ipamctl", &mut buf);
    out::print(&String::from_utf8_lossy(&buf))?;
    Ok(OK)
}
