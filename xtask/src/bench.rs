//! `cargo xtask bench`: installs what the benchmarks compare against (moto's KMS server, from PyPI;
//! Garage, the S3 server, with `cargo install garage` into `target/tools`), builds the release binary, and runs every benchmark (release builds); each writes its section of
//! docs/benchmarks.md. The worker benchmark needs a Docker engine (`cargo xtask test` starts one),
//! the microvm benchmark QEMU and a kernel (`cargo xtask test` installs them) and the static guest
//! agent (built here).

use std::process::Command;

use anyhow::bail;

use crate::repo_root;

const BENCHES: &[&str] = &[
    "conductor",
    "key_manager",
    "worker",
    "orchestration",
    "memory",
    "storage_manager",
    "volumes",
    "secrets_manager",
    "logs_manager",
    "metrics_manager",
    "jobs",
    "microvm",
];

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let have_moto = Command::new("moto_server")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_moto {
        println!("==> installing moto[server] (PyPI) for the key_manager comparison");
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "moto[server]"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("moto could not be installed; the key_manager benchmark will say so");
        }
    }
    let garage = garage()?;
    // The worker benchmark measures the memory of the real binary.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "aerekos"])
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        bail!("building the release aerekos binary failed");
    }
    // The microvm benchmark boots guests with the static guest agent.
    let guest = crate::test::build_static(&["aerekos-guest"])?.remove(0);
    for bench in BENCHES {
        let status = Command::new(env!("CARGO"))
            .args(["bench", "-p", "aerekos-tests", "--bench", bench])
            .env("AEREKOS_GUEST_AGENT", &guest)
            .env("AEREKOS_BIN", repo_root().join("target/release/aerekos"))
            .env("GARAGE_BIN", &garage)
            .current_dir(repo_root())
            .status()?;
        if !status.success() {
            bail!("the {bench} benchmark failed");
        }
    }
    Ok(())
}

/// The Garage release the storage_manager benchmark compares against (docs/benchmarks.md names it).
const GARAGE_VERSION: &str = "2.5.0";

/// Garage for the storage_manager comparison: `GARAGE_BIN`, else `target/tools/bin/garage`, built
/// from crates.io the first time (several minutes).
fn garage() -> anyhow::Result<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("GARAGE_BIN") {
        return Ok(bin.into());
    }
    let root = repo_root().join("target/tools");
    let bin = root.join("bin/garage");
    if !bin.exists() {
        println!("==> installing Garage (cargo install garage) for the storage_manager comparison");
        // Pinned, with Garage's own lock file, so every run compares against the same server.
        let status = Command::new(env!("CARGO"))
            .args([
                "install",
                "garage",
                "--version",
                GARAGE_VERSION,
                "--locked",
                "--root",
            ])
            .arg(&root)
            .status()?;
        if !status.success() {
            bail!("cargo install garage failed");
        }
    }
    Ok(bin)
}
