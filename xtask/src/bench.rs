//! `cargo xtask bench`: runs the benchmarks (release build) that write docs/benchmarks.md.

use std::process::Command;

use anyhow::bail;

use crate::repo_root;

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["bench", "-p", "aerekos-tests", "--bench", "conductor"])
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        bail!("the conductor benchmark failed");
    }
    Ok(())
}
