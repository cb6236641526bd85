//! key_manager: the aerekos KMS, as a library.
//!
//! [`start`] opens the state, loads the key ring under the master key, fetches the conductor's token
//! public key (JWKS, through `aerekos-sdk`), and serves the API. Layers: `api` (thin endpoints) →
//! `domain` (key ring, crypto, audit) → `store` (sqlx).

mod api;
pub mod config;
mod domain;
pub mod model;
mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aerekos_common::{
    auth::TokenVerifier, db::Db, edge::Edge, metrics::Metrics, secrets::write_secret_file,
    server::ServerHandle,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use zeroize::Zeroizing;

pub use config::{ConfigError, KeyManagerConfig};
use domain::{
    audit::AuditLog,
    crypto::{MasterKey, Material},
    keys::{KeyService, Limits},
};

const MASTER_KEY_FILE: &str = "master.key";
/// How often keys past their deletion date are destroyed.
const PURGE_INTERVAL: Duration = Duration::from_secs(5);
/// How long start waits for the conductor's public key.
const JWKS_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct State {
    db: Db,
    keys: KeyService,
    verifier: TokenVerifier,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("key ring: {0}")]
    KeyRing(String),
    #[error("the conductor's token public key: {0}")]
    Jwks(String),
}

pub struct KeyManagerHandle {
    server: ServerHandle,
    state: Arc<State>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl KeyManagerHandle {
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

pub async fn start(config: KeyManagerConfig) -> Result<KeyManagerHandle, StartError> {
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let master = load_master_key(&config)?;
    let verifier = aerekos_trust::conductor_verifier(
        &aerekos_sdk::Conductor::new(&config.conductor_url),
        JWKS_WAIT,
    )
    .await
    .map_err(StartError::Jwks)?;
    let db = Db::open(&config.database_path, &store::MIGRATIONS).await?;
    let (audit, audit_writer) = AuditLog::start(db.clone());
    let limits = Limits {
        max_plaintext_bytes: config.max_plaintext_bytes,
        max_batch_items: config.max_batch_items,
        deletion_waiting_period: config.deletion_waiting_period,
    };
    let keys = KeyService::start(db.clone(), MasterKey::new(&master), audit, limits)
        .await
        .map_err(StartError::KeyRing)?;
    drop(master);
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(State {
        db,
        keys,
        verifier,
        metrics: metrics.clone(),
    });

    let throttle =
        aerekos_common::throttle::behind_gateway(&config.throttle, &config.conductor_url);
    let edge = Edge::new(metrics, config.max_body_bytes)
        .quiet(&["health", "ready", "metrics"])
        .throttle(&throttle);
    let server = aerekos_common::server::serve_api(
        config.bind,
        api::service(),
        &api::limits(config.max_batch_items, config.deletion_waiting_period),
        state.clone(),
        edge,
        config.tls.clone(),
    )
    .await?;
    tracing::info!(url = %server.url(), "key_manager listening");

    let purger = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = state.keys.purge_due().await {
                    tracing::error!(error = %e, "destroying keys past their deletion date failed");
                }
            }
        })
    };
    Ok(KeyManagerHandle {
        server,
        state,
        background: vec![purger, audit_writer],
    })
}

/// The spec `cargo xtask openapi` writes to `openapi/key_manager.json`.
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(
        &api::service().spec(),
        &api::limits(
            KeyManagerConfig::DEFAULT_MAX_BATCH_ITEMS,
            KeyManagerConfig::DEFAULT_DELETION_WAITING_PERIOD,
        ),
    )
}

/// From `KEY_MANAGER_MASTER_KEY`, else `<data dir>/master.key`, generated (0600) on first start.
fn load_master_key(config: &KeyManagerConfig) -> Result<Material, StartError> {
    let decode = |text: &str, from: &str| -> Result<Material, StartError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| StartError::MasterKey(format!("{from} is not base64")))?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StartError::MasterKey(format!("{from} must decode to 32 bytes")))?;
        Ok(Zeroizing::new(array))
    };
    if let Some(text) = &config.master_key {
        return decode(text, "KEY_MANAGER_MASTER_KEY");
    }
    let path = config.data_dir.join(MASTER_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&Zeroizing::new(text), &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let material = domain::crypto::random_material();
            write_secret_file(
                &path,
                Zeroizing::new(STANDARD.encode(material.as_ref()) + "\n").as_bytes(),
            )?;
            tracing::info!(path = %path.display(), "generated the master key (keep a copy: without it no key can be read)");
            Ok(material)
        }
        Err(e) => Err(e.into()),
    }
}
