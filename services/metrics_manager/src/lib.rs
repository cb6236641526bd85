//! metrics_manager: the platform's metrics, as a library.
//!
//! [`start`] opens the store (`domain::tsdb`: WAL-backed head, Gorilla-compressed raw sections,
//! 1-minute rollups), fetches the conductor's token public key, and runs three loops beside the
//! API: scraping every target the registry names (`domain::scrape`), cutting and retention, and
//! alert evaluation (`domain::alerts`). Layers: `api` (thin endpoints) → `domain` → `store` (the
//! file formats).

mod api;
pub mod config;
mod domain;
pub mod model;
mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aerekos_common::{
    auth::{TokenRenewal, TokenVerifier},
    edge::Edge,
    metrics::Metrics,
    server::ServerHandle,
};
use poem::EndpointExt;

pub use config::{ConfigError, MetricsManagerConfig};
use domain::{
    alerts::Alerting,
    scrape::Scraper,
    tsdb::{Tsdb, TsdbConfig},
};

/// How long start waits for the conductor's public key.
const JWKS_WAIT: Duration = Duration::from_secs(30);
/// How often the head is checked for a whole block to cut, and retention applied.
const CUT_CHECK: Duration = Duration::from_secs(5);

pub(crate) struct State {
    db: Arc<Tsdb>,
    scraper: Arc<Scraper>,
    alerting: Arc<Alerting>,
    verifier: TokenVerifier,
    metrics: Arc<Metrics>,
    token_renewal: TokenRenewal,
    raw_retention_ms: i64,
    rollup_retention_ms: i64,
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

pub struct MetricsManagerHandle {
    server: ServerHandle,
    db: Arc<Tsdb>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl MetricsManagerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Stops serving and scraping; the WAL is synced, so everything stored survives.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let result = self.server.shutdown().await;
        for task in &self.background {
            task.abort();
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.sync())
            .await
            .map_err(std::io::Error::other)??;
        result
    }
}

pub async fn start(config: MetricsManagerConfig) -> Result<MetricsManagerHandle, StartError> {
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let verifier = aerekos_trust::conductor_verifier(
        &aerekos_sdk::Conductor::new(&config.conductor_url),
        JWKS_WAIT,
    )
    .await
    .map_err(StartError::Jwks)?;
    let ms = |d: Duration| d.as_millis() as i64;
    let tsdb_config = TsdbConfig {
        block_ms: ms(config.block),
        raw_retention_ms: ms(config.raw_retention),
        rollup_retention_ms: ms(config.rollup_retention),
        max_series: config.max_series,
        max_bytes: config.max_disk_bytes,
        // Two scrape intervals (a scrape's timeout is one): scrapes stamped inside a block land
        // before it is cut.
        cut_grace_ms: ms(config.scrape_interval) * 2 + 1000,
    };
    let data_dir = config.data_dir.clone();
    let db = Arc::new(
        tokio::task::spawn_blocking(move || Tsdb::open(&data_dir, tsdb_config))
            .await
            .map_err(std::io::Error::other)??,
    );
    let scraper = Arc::new(Scraper::new(
        db.clone(),
        &config.conductor_url,
        config.service_token.as_deref(),
        config.scrape_interval,
        config.scrape_concurrency,
        config.targets_refresh,
        config.static_targets.clone(),
    ));
    let alerting = Arc::new(Alerting::open(
        &config.data_dir,
        db.clone(),
        config.alert_webhook_url.clone(),
        ms(config.raw_retention),
    )?);
    let token_renewal = TokenRenewal::new(
        &verifier,
        config.service_token.as_deref(),
        config.service_token_renew_before,
    );
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(State {
        db: db.clone(),
        scraper: scraper.clone(),
        alerting: alerting.clone(),
        verifier,
        metrics: metrics.clone(),
        token_renewal,
        raw_retention_ms: ms(config.raw_retention),
        rollup_retention_ms: ms(config.rollup_retention),
    });

    let throttle =
        aerekos_common::throttle::behind_gateway(&config.throttle, &config.conductor_url);
    let edge = Edge::new(metrics, 16 << 20)
        .quiet(&["health", "ready", "metrics"])
        .throttle(&throttle);
    let routes =
        aerekos_common::server::api_routes(api::service(), &api::limits(), state).with(edge);
    let server = aerekos_common::server::serve_tls(config.bind, routes, config.tls.clone()).await?;
    tracing::info!(url = %server.url(), "metrics_manager listening");

    let scrape_loop = tokio::spawn(scraper.run());
    let cut_loop = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CUT_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let db = db.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let now = chrono::Utc::now().timestamp_millis();
                    db.cut(now)?;
                    db.enforce_retention(now)
                })
                .await;
                match done {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cutting or retention of metrics failed")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cutting or retention of metrics panicked")
                    }
                }
            }
        })
    };
    let alert_loop = {
        let interval = config.alert_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                alerting.evaluate().await;
            }
        })
    };
    Ok(MetricsManagerHandle {
        server,
        db,
        background: vec![scrape_loop, cut_loop, alert_loop],
    })
}

/// The spec `cargo xtask openapi` writes to `openapi/metrics_manager.json`.
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(&api::service().spec(), &api::limits())
}
