//! The `aerekos` command. Thin: it parses arguments and configuration and calls the libraries.
//!
//! - `aerekos up`: the all-in-one platform on this machine: the conductor, key_manager and a local
//!   worker in one process, with state in `./data`.
//! - `aerekos worker`: the worker agent for this machine, configured from the environment.
//! - `aerekos conductor`: the control plane alone, configured from the environment.
//! - `aerekos service key-manager`: one service alone (its own environment; `CONDUCTOR_URL` names
//!   the conductor whose tokens it accepts).
//! - `aerekos hash-password`: reads a password on stdin, prints its argon2id hash for `AEREKOS_USERS_FILE`.

use std::io::Read as _;

use aerekos_conductor::{ADMIN_PASSWORD_FILE, ConductorConfig};
use aerekos_key_manager::KeyManagerConfig;
use aerekos_worker::WorkerConfig;
use anyhow::Context as _;

const USAGE: &str = "usage: aerekos <command>

commands:
  up              run the platform on this machine (state in ./data; see .env_example)
  conductor       run the conductor alone, configured from the environment
  worker          run this machine's worker agent (CONDUCTOR_URL, CONDUCTOR_TOKEN; see worker/.env_example)
  service key-manager
                  run key_manager alone (CONDUCTOR_URL names the conductor whose tokens it trusts)
  hash-password   read a password on stdin, print its argon2id hash
  version         print the version";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => run(true),
        Some("conductor") => run(false),
        Some("worker") => run_worker(),
        Some("service") => match args.get(1).map(String::as_str) {
            Some("key-manager" | "key_manager") => run_key_manager(),
            other => {
                eprintln!("aerekos: unknown service {other:?}; services: key-manager\n\n{USAGE}");
                std::process::exit(2);
            }
        },
        Some("hash-password") => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "no password on stdin");
            println!("{}", aerekos_conductor::hash_password(password));
            Ok(())
        }
        Some("version" | "--version" | "-V") => {
            println!("aerekos {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprintln!("aerekos: unknown command {other:?}\n\n{USAGE}");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn run(all_in_one: bool) -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = ConductorConfig::from_env()?;
    let password_file = config.data_dir.join(ADMIN_PASSWORD_FILE);
    let conductor = aerekos_conductor::start(config.clone()).await.context("starting the conductor")?;
    let url = conductor.url();
    // Scripts and tests read this line to find the port (CONDUCTOR_PORT=0 picks a free one).
    println!("aerekos conductor listening on {url}");
    let key_manager = if all_in_one {
        // One process, one environment: DATA_DIR and DATABASE_PATH are the conductor's, so each
        // service keeps its state in a folder of its own inside the conductor's data directory.
        let mut km = KeyManagerConfig::from_env()?;
        km.data_dir = config.data_dir.join("key_manager");
        km.database_path = km.data_dir.join("key_manager.db");
        km.conductor_url = url.clone();
        let handle = aerekos_key_manager::start(km).await.context("starting key_manager")?;
        println!("key_manager listening on {}", handle.url());
        Some(handle)
    } else {
        None
    };
    let worker = if all_in_one {
        let mut wc = WorkerConfig::new(url.clone(), conductor.registration_token().await?, config.data_dir.join("worker"));
        wc.advertise_ip = aerekos_worker::AdvertiseIp::Fixed([127, 0, 0, 1].into());
        wc.name = Some("local".into());
        // WORKER_API_HOST/PORT apply to the local worker too (WORKER_API_PORT=off serves none).
        wc.api_bind = WorkerConfig::from_env()?.api_bind;
        let handle = aerekos_worker::start(wc).await.context("starting the local worker")?;
        println!("local worker started, state in {}", config.data_dir.join("worker").display());
        Some(handle)
    } else {
        None
    };
    if all_in_one {
        println!("  Swagger UI:     {url}/docs");
        println!("  OpenAPI spec:   {url}/openapi.json");
        if config.admin_password.is_some() {
            println!("  admin login:    {} (password from AEREKOS_ADMIN_PASSWORD)", config.admin_username);
        } else if password_file.exists() {
            println!("  admin login:    {} (password in {})", config.admin_username, password_file.display());
        }
        println!("  Ctrl-C stops; state stays in {}", config.data_dir.display());
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(worker) = worker {
        // Its instances keep running and are adopted at the next `aerekos up`.
        worker.shutdown().await;
    }
    if let Some(km) = key_manager {
        km.shutdown().await?;
    }
    conductor.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn run_worker() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = WorkerConfig::from_env()?;
    anyhow::ensure!(
        !config.registration_token.is_empty() || config.data_dir.join("identity.json").exists(),
        "CONDUCTOR_TOKEN is not set: an admin shows it with GET /api/token (or `aerekos token show`)"
    );
    let handle = aerekos_worker::start(config).await.context("starting the worker")?;
    println!("aerekos worker started; joining the conductor");
    if let Some(url) = handle.api_url() {
        // Scripts and tests read this line to find the API (WORKER_API_PORT=0 picks a free port).
        println!("aerekos worker API listening on {url}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down; instances keep running");
    handle.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn run_key_manager() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = KeyManagerConfig::from_env()?;
    let handle = aerekos_key_manager::start(config).await.context("starting key_manager")?;
    println!("key_manager listening on {}", handle.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
