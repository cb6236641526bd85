//! logs_manager: the platform's log records, as a library.
//!
//! Workers ship every instance's stdout and stderr and their own lines (`aerekos-worker`'s
//! `logship`); [`start`] opens the segments, fetches the conductor's token public key (and
//! follows its revocation feed), and serves the API: ingest, queries, live tails, statistics.
//! Layers: `api` (thin endpoints) → `domain` (the store's rules: repeats, pages, tails,
//! retention) → `store` (the segment files).

mod api;
pub mod config;
mod domain;
pub mod model;
mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aerekos_common::{
    auth::{TokenRenewal, TokenVerifier},
    edge::Edge,
    gzip::GunzipRequests,
    metrics::Metrics,
    server::ServerHandle,
};
use poem::EndpointExt;

pub use config::{ConfigError, LogsManagerConfig};
use domain::log::{LogStore, Retention};

/// How long start waits for the conductor's public key.
const JWKS_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct State {
    logs: Arc<LogStore>,
    verifier: TokenVerifier,
    metrics: Arc<Metrics>,
    token_renewal: TokenRenewal,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the conductor's token public key: {0}")]
    Jwks(String),
}

pub struct LogsManagerHandle {
    server: ServerHandle,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl LogsManagerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Stops serving (in-flight ingests finish: what they stored is on disk).
    pub async fn shutdown(self) -> std::io::Result<()> {
        let result = self.server.shutdown().await;
        for task in &self.background {
            task.abort();
        }
        result
    }
}

pub async fn start(config: LogsManagerConfig) -> Result<LogsManagerHandle, StartError> {
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let verifier = aerekos_trust::conductor_verifier(
        &aerekos_sdk::Conductor::new(&config.conductor_url),
        JWKS_WAIT,
    )
    .await
    .map_err(StartError::Jwks)?;
    let retention = Retention {
        max_age: config.retention_age,
        max_bytes: config.retention_bytes,
        segment_bytes: config.segment_bytes,
        segment_age: config.segment_age,
    };
    let data_dir = config.data_dir.clone();
    let logs = Arc::new(
        tokio::task::spawn_blocking(move || LogStore::open(&data_dir, retention))
            .await
            .map_err(std::io::Error::other)??,
    );
    let token_renewal = TokenRenewal::new(
        &verifier,
        config.service_token.as_deref(),
        config.service_token_renew_before,
    );
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(State {
        logs: logs.clone(),
        verifier,
        metrics: metrics.clone(),
        token_renewal,
    });

    let throttle =
        aerekos_common::throttle::behind_gateway(&config.throttle, &config.conductor_url);
    // Ingests are quiet: each one logged would be a line to ship, and so another ingest.
    let edge = Edge::new(metrics, config.max_body_bytes)
        .quiet(&["health", "ready", "metrics", "ingest_logs"])
        .throttle(&throttle);
    let routes = aerekos_common::server::api_routes(api::service(), &api::limits(), state)
        .with(GunzipRequests {
            max_bytes: config.max_body_bytes,
        })
        .with(edge);
    let server = aerekos_common::server::serve_tls(config.bind, routes, config.tls.clone()).await?;
    tracing::info!(url = %server.url(), "logs_manager listening");

    let retention_loop = {
        let interval = config.retention_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let logs = logs.clone();
                match tokio::task::spawn_blocking(move || logs.enforce_retention()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "log retention failed"),
                    Err(e) => tracing::error!(error = %e, "log retention panicked"),
                }
            }
        })
    };
    Ok(LogsManagerHandle {
        server,
        background: vec![retention_loop],
    })
}

/// The spec `cargo xtask openapi` writes to `openapi/logs_manager.json`.
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(&api::service().spec(), &api::limits())
}
