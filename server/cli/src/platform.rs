//! The platform's own processes: `aerekos up` (everything in one process), the conductor alone,
//! a worker, a service. Each is a library's `start` plus configuration and a clean stop on Ctrl-C.

use std::io::Read as _;

use aerekos_conductor::{ADMIN_PASSWORD_FILE, ConductorConfig, model::DriverKind};
use aerekos_key_manager::KeyManagerConfig;
use aerekos_logs_manager::LogsManagerConfig;
use aerekos_metrics_manager::MetricsManagerConfig;
use aerekos_secrets_manager::SecretsManagerConfig;
use aerekos_storage_manager::StorageManagerConfig;
use aerekos_worker::WorkerConfig;
use anyhow::Context as _;

/// The built-in services `aerekos up` turns on at first start.
const PLATFORM_SERVICES: &[&str] = &[
    "key_manager",
    "storage_manager",
    "secrets_manager",
    "logs_manager",
    "metrics_manager",
];

#[tokio::main]
pub async fn up(driver: &str) -> anyhow::Result<()> {
    // The process's own lines (the conductor's and the local worker's) are shipped by the worker.
    aerekos_common::telemetry::init_capturing("conductor");
    let driver = if driver == "docker" {
        DriverKind::Docker
    } else {
        DriverKind::Process
    };
    // The laptop case: loopback and plain HTTP unless CONDUCTOR_HOST says otherwise (another
    // address turns TLS on; see CONDUCTOR_TLS).
    let config = ConductorConfig::from_lookup(|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "CONDUCTOR_HOST").then(|| "127.0.0.1".to_owned()))
    })?;
    let password_file = config.data_dir.join(ADMIN_PASSWORD_FILE);
    let conductor = aerekos_conductor::start(config.clone())
        .await
        .context("starting the conductor")?;
    let url = conductor.url();
    // Scripts and tests read this line to find the port (CONDUCTOR_PORT=0 picks a free one).
    println!("aerekos conductor listening on {url}");

    let mut wc = WorkerConfig::new(
        url.clone(),
        conductor.registration_token().await?,
        config.data_dir.join("worker"),
    );
    wc.advertise_ip = aerekos_worker::AdvertiseIp::Fixed([127, 0, 0, 1].into());
    wc.name = Some("local".into());
    wc.conductor_ca_pem = conductor.tls_ca().map(|(_, pem)| pem);
    wc.docker = driver == DriverKind::Docker;
    // WORKER_API_HOST/PORT and AEREKOS_ALLOW_PLAIN_HTTP apply to the local worker too
    // (WORKER_API_PORT=off serves none); on a plain-HTTP laptop its API and instances stay on loopback.
    wc.listen_from(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))?;
    wc.log_shipping_from(&|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))?;
    let worker = aerekos_worker::start(wc)
        .await
        .context("starting the local worker")?;
    println!(
        "local worker started ({} driver), state in {}",
        driver.as_str(),
        config.data_dir.join("worker").display()
    );

    // First start: the platform's services are deployed onto the local worker. Later starts find
    // them as they were left (an admin may have disabled or redeployed them).
    for service in PLATFORM_SERVICES {
        match conductor.deploy_if_never_deployed(service, driver).await {
            Ok(true) => {
                println!("{service} enabled; it answers at {url}/api/{service}/ once healthy")
            }
            Ok(false) => println!("{service}: kept as deployed before ({url}/api/{service}/)"),
            Err(e) => eprintln!("{service} could not be deployed: {}", e.body().message),
        }
    }
    println!("  dashboard:      {url}/");
    println!("  Swagger UI:     {url}/docs");
    println!("  OpenAPI spec:   {url}/openapi.json");
    if let Some(s3) = conductor.s3_url() {
        println!(
            "  S3 endpoint:    {s3} (path style; access keys: POST {url}/api/storage_manager/access-keys)"
        );
    }
    if config.admin_password.is_some() {
        println!(
            "  admin login:    {} (password from AEREKOS_ADMIN_PASSWORD)",
            config.admin_username
        );
    } else if password_file.exists() {
        println!(
            "  admin login:    {} (password in {})",
            config.admin_username,
            password_file.display()
        );
    }
    match conductor.tls_ca() {
        Some((pin, _)) => {
            println!("  CLI:            aerekos login --url {url} --ca-pin {pin}");
            println!(
                "  CA pin:         {pin} (workers: CONDUCTOR_CA_PIN; `aerekos token show` prints the join command)"
            );
        }
        None => println!("  CLI:            aerekos login --url {url}"),
    }
    println!(
        "  Ctrl-C stops everything; state stays in {}",
        config.data_dir.display()
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    // The services stop with the platform; the next `aerekos up` starts them from the saved
    // assignments, with their data kept in the worker's volumes.
    worker.shutdown_and_stop_instances().await;
    conductor.shutdown().await?;
    Ok(())
}

#[tokio::main]
pub async fn conductor() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = ConductorConfig::from_env()?;
    let conductor = aerekos_conductor::start(config)
        .await
        .context("starting the conductor")?;
    println!("aerekos conductor listening on {}", conductor.url());
    if let Some(s3) = conductor.s3_url() {
        println!("S3 edge listening on {s3}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    conductor.shutdown().await?;
    Ok(())
}

#[tokio::main]
pub async fn worker() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_capturing("worker");
    let config = WorkerConfig::from_env()?;
    anyhow::ensure!(
        !config.registration_token.is_empty() || config.data_dir.join("identity.json").exists(),
        "CONDUCTOR_TOKEN is not set: an admin shows it with `aerekos token show` (GET /api/token)"
    );
    let handle = aerekos_worker::start(config)
        .await
        .context("starting the worker")?;
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
pub async fn key_manager() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = KeyManagerConfig::from_env()?;
    let handle = aerekos_key_manager::start(config)
        .await
        .context("starting key_manager")?;
    println!("key_manager listening on {}", handle.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    Ok(())
}

#[tokio::main]
pub async fn storage_manager() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = StorageManagerConfig::from_env()?;
    let handle = aerekos_storage_manager::start(config)
        .await
        .context("starting storage_manager")?;
    println!(
        "storage_manager listening on {} (own API under /api/storage_manager, S3 on every other path)",
        handle.url()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    Ok(())
}

#[tokio::main]
pub async fn secrets_manager() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = SecretsManagerConfig::from_env()?;
    let handle = aerekos_secrets_manager::start(config)
        .await
        .context("starting secrets_manager")?;
    println!("secrets_manager listening on {}", handle.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    Ok(())
}

#[tokio::main]
pub async fn logs_manager() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = LogsManagerConfig::from_env()?;
    let handle = aerekos_logs_manager::start(config)
        .await
        .context("starting logs_manager")?;
    println!("logs_manager listening on {}", handle.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    Ok(())
}

#[tokio::main]
pub async fn metrics_manager() -> anyhow::Result<()> {
    aerekos_common::telemetry::init_from_env();
    let config = MetricsManagerConfig::from_env()?;
    let handle = aerekos_metrics_manager::start(config)
        .await
        .context("starting metrics_manager")?;
    println!("metrics_manager listening on {}", handle.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    Ok(())
}

pub fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    println!("{}", aerekos_conductor::hash_password(password));
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
