//! storage_manager: aerekos object storage, as a library.
//!
//! [`start`] opens the state, removes what unfinished uploads left behind, fetches the conductor's
//! token public key, and serves two faces of the same buckets on one port: the service's own API
//! under `/api/storage_manager/…` (conductor tokens; what the SDKs and the gateway use) and the S3
//! protocol on every other path (SigV4 with access keys from that API). Layers: `api` and `s3`
//! (thin) → `domain` (objects, blobs, envelope encryption through key_manager, access keys) →
//! `store` (sqlx).

mod api;
pub mod config;
mod domain;
pub mod model;
mod s3;
mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aerekos_common::{
    auth::{TokenRenewal, TokenVerifier},
    db::Db,
    edge::Edge,
    metrics::Metrics,
    server::ServerHandle,
};
use poem::{Endpoint, EndpointExt as _, Request, Response};

use aerekos_envelope::Envelope;
pub use config::{ConfigError, StorageManagerConfig};
use domain::{access_keys::AccessKeys, blobs::BlobStore, objects::Storage};

/// How long start waits for the conductor's public key.
const JWKS_WAIT: Duration = Duration::from_secs(30);
/// Where this service's own API lives; every other path is the S3 protocol.
const API_PREFIX: &str = "/api/storage_manager/";
/// Root paths of the service's own (health, spec, docs); S3 bucket names equal to them are refused.
const SYSTEM_PATHS: [&str; 4] = ["/health", "/ready", "/metrics", "/openapi.json"];

pub(crate) struct State {
    db: Db,
    storage: Arc<Storage>,
    access_keys: Arc<AccessKeys>,
    verifier: TokenVerifier,
    metrics: Arc<Metrics>,
    /// When `/health` starts failing so the worker restarts this instance with a fresh service token.
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
    #[error("cleaning up unfinished uploads: {0}")]
    Sweep(String),
}

pub struct StorageManagerHandle {
    server: ServerHandle,
    state: Arc<State>,
    collector: tokio::task::JoinHandle<()>,
    lifecycle: tokio::task::JoinHandle<()>,
}

impl StorageManagerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Stops serving (in-flight requests finish) and closes the database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let result = self.server.shutdown().await;
        self.collector.abort();
        self.lifecycle.abort();
        self.state.db.close().await;
        result
    }
}

pub async fn start(config: StorageManagerConfig) -> Result<StorageManagerHandle, StartError> {
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let verifier = aerekos_trust::conductor_verifier(
        &aerekos_sdk::Conductor::new(&config.conductor_url),
        JWKS_WAIT,
    )
    .await
    .map_err(StartError::Jwks)?;
    let db = Db::open(&config.database_path, &store::MIGRATIONS).await?;
    let blobs = BlobStore::open(&config.data_dir)?;
    if config.service_token.is_none() {
        tracing::warn!("no AEREKOS_SERVICE_TOKEN: encrypted buckets and uploads will be refused");
    }
    let envelope = Envelope::new(
        "storage_manager",
        &config.key_manager_url,
        config.service_token.clone(),
    );
    let storage =
        Arc::new(Storage::load(db.clone(), blobs, envelope, config.max_object_bytes).await?);
    storage
        .sweep()
        .await
        .map_err(|e| StartError::Sweep(e.body().message.clone()))?;
    let collector = storage.spawn_collector();
    let lifecycle = domain::lifecycle::spawn(
        storage.clone(),
        config.lifecycle_interval,
        config.lifecycle_day,
    );
    let access_keys = Arc::new(AccessKeys::load(db.clone()).await?);
    let metrics = Arc::new(Metrics::new());
    let token_renewal = TokenRenewal::new(
        &verifier,
        config.service_token.as_deref(),
        config.service_token_renew_before,
    );
    let state = Arc::new(State {
        db,
        storage: storage.clone(),
        access_keys: access_keys.clone(),
        verifier,
        metrics: metrics.clone(),
        token_renewal,
    });

    let own =
        aerekos_common::server::api_routes(api::service(), &api::limits(), state.clone()).boxed();
    let spool = s3::Spool {
        dir: config.data_dir.join("tmp"),
        max_bytes: config.max_object_bytes,
    };
    let service = s3::service(storage.clone(), access_keys, &config.s3_domains)
        .map_err(|e| StartError::Config(ConfigError(e)))?;
    let s3 = s3::S3Endpoint {
        service,
        spool,
        storage,
        domains: config.s3_domains.clone(),
    }
    .boxed();
    // Object bodies stream past the JSON body limit: uploads through the API and everything S3.
    let edge = Edge::new(metrics, config.max_body_bytes)
        .quiet(&["health", "ready", "metrics"])
        .throttle(&aerekos_common::throttle::behind_gateway(
            &config.throttle,
            &config.conductor_url,
        ))
        .body_limit_exempt(Arc::new(|path: &str| {
            !is_own_path(path) || is_upload_path(path)
        }));
    let app = FrontDoor { own, s3 }.with(edge);
    let server = aerekos_common::server::serve_tls(config.bind, app, config.tls.clone()).await?;
    tracing::info!(url = %server.url(), "storage_manager listening (own API and S3)");
    Ok(StorageManagerHandle {
        server,
        state,
        collector,
        lifecycle,
    })
}

/// Sends each request to the service's own API or to the S3 protocol, by path.
struct FrontDoor {
    own: poem::endpoint::BoxEndpoint<'static, Response>,
    s3: poem::endpoint::BoxEndpoint<'static, Response>,
}

impl Endpoint for FrontDoor {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if is_own_path(req.uri().path()) {
            self.own.call(req).await
        } else {
            self.s3.call(req).await
        }
    }
}

fn is_own_path(path: &str) -> bool {
    path.starts_with(API_PREFIX)
        || SYSTEM_PATHS.contains(&path)
        || path == "/docs"
        || path.starts_with("/docs/")
}

fn is_upload_path(path: &str) -> bool {
    path.strip_prefix(API_PREFIX)
        .and_then(|rest| rest.strip_prefix("buckets/"))
        .is_some_and(|rest| rest.ends_with("/objects"))
}

/// The spec `cargo xtask openapi` writes to `openapi/storage_manager.json`.
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(&api::service().spec(), &api::limits())
}
