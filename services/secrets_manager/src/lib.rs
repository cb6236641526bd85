//! secrets_manager: versioned secrets for apps and services, as a library.
//!
//! [`start`] opens the state, fetches the conductor's token public key (and follows its revocation
//! feed), and serves the API. Values are sealed under data keys from key_manager (through
//! `aerekos-envelope`, so through the SDK) and never stored in the clear. Layers: `api` (thin
//! endpoints) → `domain` (secrets, crypto, rotation, audit) → `store` (sqlx).

mod api;
pub mod config;
mod domain;
pub mod model;
mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aerekos_common::{
    auth::{TokenRenewal, TokenVerifier},
    db::Db,
    edge::Edge,
    metrics::Metrics,
    server::ServerHandle,
};
use aerekos_envelope::Envelope;

pub use config::{ConfigError, SecretsManagerConfig};
use domain::{
    audit::AuditLog,
    rotation::Rotator,
    secrets::{Limits, SecretService},
};

/// How long start waits for the conductor's public key.
const JWKS_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct State {
    db: Db,
    secrets: Arc<SecretService>,
    rotator: Rotator,
    verifier: TokenVerifier,
    metrics: Arc<Metrics>,
    token_renewal: TokenRenewal,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the conductor's token public key: {0}")]
    Jwks(String),
}

pub struct SecretsManagerHandle {
    server: ServerHandle,
    state: Arc<State>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl SecretsManagerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Stops serving (in-flight requests finish, their audit records are written) and closes the database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let result = self.server.shutdown().await;
        for task in &self.background {
            task.abort();
        }
        self.state.db.close().await;
        result
    }
}

pub async fn start(config: SecretsManagerConfig) -> Result<SecretsManagerHandle, StartError> {
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let verifier = aerekos_trust::conductor_verifier(
        &aerekos_sdk::Conductor::new(&config.conductor_url),
        JWKS_WAIT,
    )
    .await
    .map_err(StartError::Jwks)?;
    // Destroyed versions and deleted secrets do not linger in the file's free pages.
    let db = Db::open_secure(&config.database_path, &store::MIGRATIONS).await?;
    if config.service_token.is_none() {
        tracing::warn!(
            "no AEREKOS_SERVICE_TOKEN: no value can be written or read (key_manager makes and opens their data keys)"
        );
    }
    let (audit, audit_writer) = AuditLog::start(db.clone());
    let envelope = Envelope::new(
        "secrets_manager",
        &config.key_manager_url,
        config.service_token.clone(),
    )
    .with_cache(
        config.data_key_cache,
        SecretsManagerConfig::DATA_KEY_CACHE_ENTRIES,
    );
    let limits = Limits {
        default_key: config.default_encryption_key.clone(),
        default_max_versions: config.default_max_versions,
        max_value_bytes: config.max_value_bytes,
        deletion_day: config.deletion_day,
    };
    let secrets = Arc::new(SecretService::new(
        db.clone(),
        envelope,
        audit,
        limits,
        config.key_manager_url.clone(),
    ));
    let rotator = Rotator::new(
        secrets.clone(),
        &config.conductor_url,
        config.service_token.clone(),
    );
    let token_renewal = TokenRenewal::new(
        &verifier,
        config.service_token.as_deref(),
        config.service_token_renew_before,
    );
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(State {
        db,
        secrets,
        rotator,
        verifier,
        metrics: metrics.clone(),
        token_renewal,
    });

    let throttle =
        aerekos_common::throttle::behind_gateway(&config.throttle, &config.conductor_url);
    let edge = Edge::new(metrics, config.max_body_bytes)
        .quiet(&["health", "ready", "metrics"])
        .throttle(&throttle);
    let server = aerekos_common::server::serve_api(
        config.bind,
        api::service(),
        &api::limits(),
        state.clone(),
        edge,
        config.tls.clone(),
    )
    .await?;
    tracing::info!(url = %server.url(), "secrets_manager listening");

    let sweeper = {
        let state = state.clone();
        let interval = config.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                if let Err(e) = state.secrets.purge_due().await {
                    tracing::error!(error = %e.body().message, "deleting secrets past their recovery window failed");
                }
                state.rotator.run_due().await;
            }
        })
    };
    Ok(SecretsManagerHandle {
        server,
        state,
        background: vec![sweeper, audit_writer],
    })
}

/// The spec `cargo xtask openapi` writes to `openapi/secrets_manager.json`.
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(&api::service().spec(), &api::limits())
}
