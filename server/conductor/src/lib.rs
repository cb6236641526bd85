//! The aerekos conductor: the control plane, as a library.
//!
//! [`start`] opens the state, seeds users and keys, binds the HTTP server and returns a
//! [`ConductorHandle`] with the bound address; the `aerekos` binary only parses configuration and
//! calls it. Layers: `api` (thin poem-openapi endpoints) → `domain` (logic) → `store` (sqlx).

mod api;
pub mod config;
mod dashboard;
mod domain;
mod gateway;
pub mod model;
mod s3_edge;
mod store;

use std::{net::SocketAddr, sync::Arc};

use aerekos_common::{edge::Edge, metrics::Metrics, server::ServerHandle};
use poem::EndpointExt as _;

pub use config::{ConductorConfig, ConfigError};
pub use domain::auth::ADMIN_PASSWORD_FILE;
use domain::{
    auth::AuthService, backups::BackupService, catalog::CatalogService,
    deployments::DeploymentService, instances::InstanceService, jobs::JobService,
    moves::MoveService, registration::RegistrationTokens, routes::Routes,
    sandboxes::SandboxService, schedules::ScheduleService, volumes::VolumeService,
    workers::WorkerService,
};
use store::Db;

/// Everything the endpoints need, built once at start.
pub(crate) struct AppState {
    db: Db,
    data_dir: std::path::PathBuf,
    auth: Arc<AuthService>,
    tokens: RegistrationTokens,
    workers: Arc<WorkerService>,
    catalog: Arc<CatalogService>,
    instances: Arc<InstanceService>,
    volumes: Arc<VolumeService>,
    moves: Arc<MoveService>,
    backups: Arc<BackupService>,
    deployments: DeploymentService,
    jobs: Arc<JobService>,
    schedules: Arc<ScheduleService>,
    sandboxes: SandboxService,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    /// The conductor's TLS, when it serves TLS.
    tls: Option<Arc<domain::tls::ConductorTls>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("token-signing key: {0}")]
    Key(String),
    #[error("seeding users: {0}")]
    Seed(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running conductor.
pub struct ConductorHandle {
    server: ServerHandle,
    /// The S3 edge's listener (see [`s3_edge`]), when configured and bound.
    s3_edge: Option<ServerHandle>,
    state: Arc<AppState>,
    flusher: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    deployment_loop: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    job_loop: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    schedule_loop: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    housekeeping: tokio::task::JoinHandle<()>,
}

impl ConductorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The S3 edge's URL (S3 clients' endpoint), when it listens.
    pub fn s3_url(&self) -> Option<String> {
        self.s3_edge.as_ref().map(ServerHandle::url)
    }

    /// The fingerprint workers pin (`CONDUCTOR_CA_PIN`) and the CA bundle, when serving TLS.
    pub fn tls_ca(&self) -> Option<(String, String)> {
        self.state
            .tls
            .as_ref()
            .map(|t| (t.fingerprint.clone(), t.bundle_pem.clone()))
    }

    /// The current worker registration token (for embedding a local worker).
    pub async fn registration_token(&self) -> Result<String, aerekos_common::ApiError> {
        self.state.tokens.current().await.map(|t| t.token)
    }

    /// Deploys built-in service `name` with `driver` unless it has been deployed before (then the
    /// admin's choices stand): how `aerekos up` turns the platform's services on at first start.
    pub async fn deploy_if_never_deployed(
        &self,
        name: &str,
        driver: model::DriverKind,
    ) -> Result<bool, aerekos_common::ApiError> {
        if self.state.catalog.get(name).await?.deployment.is_some() {
            return Ok(false);
        }
        let req = model::DeployRequest {
            driver: Some(driver),
            ..Default::default()
        };
        self.state.deployments.deploy(name, req).await.map(|_| true)
    }

    /// Stops serving (in-flight requests finish) and closes the database cleanly.
    pub async fn shutdown(self) -> std::io::Result<()> {
        // Workers waiting on their assignments are answered now, not at the end of their wait.
        self.state.instances.close();
        self.housekeeping.abort();
        for (stop, task) in [self.schedule_loop, self.deployment_loop, self.job_loop] {
            let _ = stop.send(());
            let _ = task.await;
        }
        if let Some(edge) = self.s3_edge {
            let _ = edge.shutdown().await;
        }
        let result = self.server.shutdown().await;
        let (stop, task) = self.flusher;
        let _ = stop.send(());
        let _ = task.await;
        // Whatever heartbeats arrived last are stored before the database closes.
        if let Err(e) = self.state.workers.flush().await {
            tracing::error!(error = %e, "storing the last heartbeats failed");
        }
        self.state.db.close().await;
        result
    }
}

/// Starts the conductor described by `config`.
pub async fn start(config: ConductorConfig) -> Result<ConductorHandle, StartError> {
    config.validate()?;
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let tls = match config.tls.enabled_for(config.bind.ip())? {
        true => Some(Arc::new(domain::tls::ConductorTls::start(
            &config.data_dir,
            &config.tls,
            config.bind.ip(),
        )?)),
        false if !config.bind.ip().is_loopback() => {
            tracing::warn!(
                bind = %config.bind,
                "PLAIN HTTP on an address other machines can reach (AEREKOS_ALLOW_PLAIN_HTTP=yes): passwords and tokens cross the network in the clear unless a TLS proxy is in front"
            );
            None
        }
        false => None,
    };
    let db = Db::open(&config.database_path, &store::MIGRATIONS).await?;
    let auth = Arc::new(AuthService::start(db.clone(), &config).await?);
    let tokens =
        RegistrationTokens::start(db.clone(), config.registration_token.as_deref()).await?;
    let catalog = Arc::new(CatalogService::start(db.clone()).await?);
    let workers = Arc::new(
        WorkerService::start(db.clone(), config.heartbeat_interval, config.worker_ttl).await?,
    );
    let instances = Arc::new(InstanceService::new(db.clone(), workers.clone()));
    let volumes = Arc::new(VolumeService::new(db.clone(), workers.clone()));
    let moves = Arc::new(
        MoveService::start(db.clone(), auth.clone(), workers.clone(), instances.clone()).await?,
    );
    let backups = Arc::new(
        BackupService::start(
            db.clone(),
            &config.data_dir,
            auth.clone(),
            workers.clone(),
            instances.clone(),
            config.backup_interval,
            config.backup_keep,
        )
        .await?,
    );
    let routes = Arc::new(Routes::default());
    let placement = domain::scheduler::PlacementLock::default();
    let jobs = Arc::new(JobService::new(
        db.clone(),
        workers.clone(),
        instances.clone(),
        placement.clone(),
        config.jobs.clone(),
    ));
    let schedules = Arc::new(ScheduleService::new(db.clone(), jobs.clone(), auth.clone()));
    let sandboxes = SandboxService::new(
        db.clone(),
        workers.clone(),
        instances.clone(),
        placement.clone(),
    );
    let deployments = DeploymentService::new(
        catalog.clone(),
        workers.clone(),
        instances.clone(),
        volumes.clone(),
        moves.clone(),
        backups.clone(),
        routes.clone(),
        config.instance_ports.clone(),
        tls.is_some(),
        placement,
    );
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState {
        db,
        data_dir: config.data_dir.clone(),
        auth,
        tokens,
        workers,
        catalog,
        instances,
        volumes,
        moves,
        backups,
        deployments,
        jobs,
        schedules,
        sandboxes,
        routes: routes.clone(),
        metrics: metrics.clone(),
        tls: tls.clone(),
    });
    // The routes exist before the first request, so the gateway never mistakes a service for an
    // unknown path.
    if let Err(e) = state.deployments.tick().await {
        tracing::error!(error = %e.body().message, "the first deployment pass failed; the loop tries again");
    }

    let edge = Edge::new(metrics, config.max_body_bytes)
        .quiet(&[
            "worker_heartbeat",
            "get_assignments",
            gateway::LOG_INGEST_OPERATION,
            "health",
            "ready",
            "metrics",
        ])
        .throttle(&config.throttle)
        .body_limit_exempt(Arc::new(move |path: &str| {
            gateway::service_of(path).is_some_and(|s| routes.snapshot().services.contains_key(s))
        }));
    let app = aerekos_common::server::api_routes(api::service(), &api::limits(), state.clone());
    let app = domain::audit::Audited::new(app, state.clone());
    let forwarder = Arc::new(gateway::Forwarder::new(&state));
    let forwarder_for_calls = forwarder.clone();
    let app = gateway::Gateway::new(app, state.clone(), forwarder.clone());
    // The web dashboard at `/` (and its client routes); `/api/…` passes through untouched.
    let workers_for_csp = state.workers.clone();
    let worker_origins: dashboard::ConnectSources = Arc::new(move || {
        let mut origins: Vec<String> = workers_for_csp
            .snapshot()
            .iter()
            .filter_map(|w| w.api_url.as_deref())
            .flat_map(aerekos_common::server::origins_of)
            .collect();
        origins.sort();
        origins.dedup();
        origins
    });
    let app = dashboard::Dashboard::new(app, worker_origins, tls.is_some())
        // Without an allow-list there is no CORS at all: browsers keep other origins out.
        .with_if(
            !config.cors_allowed_origins.is_empty(),
            aerekos_common::server::cors_allow_list(config.cors_allowed_origins.clone()),
        )
        .with(edge);
    let server =
        aerekos_common::server::serve_tls(config.bind, app, tls.as_ref().map(|t| t.server.clone()))
            .await?;
    match &tls {
        Some(t) => {
            tracing::info!(url = %server.url(), database = %config.database_path.display(), ca_pin = %t.fingerprint, "conductor listening (TLS)")
        }
        None => {
            tracing::info!(url = %server.url(), database = %config.database_path.display(), "conductor listening")
        }
    }
    let s3_edge = start_s3_edge(
        &config,
        &state,
        forwarder,
        tls.as_ref().map(|t| t.server.clone()),
    )
    .await?;
    let flusher = spawn_heartbeat_flusher(state.clone());
    let deployment_loop = spawn_deployment_loop(state.clone());
    let job_loop = spawn_job_loop(state.clone());
    let schedule_loop = spawn_schedule_loop(
        state.clone(),
        Arc::new(gateway::ServiceCalls::new(
            state.clone(),
            forwarder_for_calls,
        )),
    );
    let housekeeping = spawn_housekeeping(state.clone());
    Ok(ConductorHandle {
        server,
        s3_edge,
        state,
        flusher,
        deployment_loop,
        job_loop,
        schedule_loop,
        housekeeping,
    })
}

/// The S3 edge's listener, when configured. The default port being taken is a warning (a laptop
/// may run another S3 server there); a port the admin chose must be had.
async fn start_s3_edge(
    config: &ConductorConfig,
    state: &Arc<AppState>,
    forwarder: Arc<gateway::Forwarder>,
    tls: Option<Arc<aerekos_common::tls::ServerConfig>>,
) -> Result<Option<ServerHandle>, StartError> {
    let Some(edge_config) = &config.s3_edge else {
        return Ok(None);
    };
    let edge = Edge::new(state.metrics.clone(), config.max_body_bytes)
        .throttle(&config.throttle)
        // Object bodies stream on; storage_manager holds them to its own limits.
        .body_limit_exempt(Arc::new(|_: &str| true));
    let app = s3_edge::S3Edge::new(state.clone(), forwarder).with(edge);
    match aerekos_common::server::serve_tls(edge_config.bind, app, tls).await {
        Ok(server) => {
            tracing::info!(url = %server.url(), "S3 edge listening (storage_manager's S3 protocol)");
            Ok(Some(server))
        }
        Err(e) if !edge_config.required => {
            tracing::warn!(address = %edge_config.bind, error = %e, "the S3 edge could not listen on its default port; set CONDUCTOR_S3_PORT to another (or off)");
            Ok(None)
        }
        Err(e) => Err(ConfigError(format!(
            "the S3 edge cannot listen on {} (CONDUCTOR_S3_PORT): {e}",
            edge_config.bind
        ))
        .into()),
    }
}

/// Runs [`DeploymentService::tick`] every [`domain::deployments::TICK`], and at once after an
/// instance report, until told to stop.
fn spawn_deployment_loop(
    state: Arc<AppState>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(domain::deployments::TICK) => {}
                _ = state.instances.reported.notified() => {}
            }
            if let Err(e) = state.deployments.tick().await {
                tracing::error!(error = %e.body().message, "deployment pass failed; retrying next tick");
            }
        }
    });
    (stop, task)
}

/// Runs [`JobService::tick`] and the sandboxes' pass every [`domain::jobs::TICK`], and at once
/// when a job is submitted, an attempt ends, a job is cancelled, or a sandbox or exec is queued or
/// reported, until told to stop.
fn spawn_job_loop(
    state: Arc<AppState>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(domain::jobs::TICK) => {}
                _ = state.jobs.wake.notified() => {}
                _ = state.sandboxes.wake.notified() => {}
            }
            if let Err(e) = state.jobs.tick().await {
                tracing::error!(error = %e.body().message, "job queue pass failed; retrying next tick");
            }
            if let Err(e) = state.sandboxes.tick().await {
                tracing::error!(error = %e.body().message, "sandbox pass failed; retrying next tick");
            }
            // Wakes that come meanwhile are kept (one permit): a burst of submits or ends makes
            // one pass, not one each.
            tokio::time::sleep(domain::jobs::MIN_PASS_GAP).await;
        }
    });
    (stop, task)
}

/// Runs [`ScheduleService::tick`] every [`domain::schedules::TICK`], and at once after a schedule
/// changes, until told to stop; calls go through the gateway's forwarder.
fn spawn_schedule_loop(
    state: Arc<AppState>,
    calls: Arc<dyn domain::schedules::ServiceCaller>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(domain::schedules::TICK) => {}
                _ = state.schedules.wake.notified() => {}
            }
            if let Err(e) = state.schedules.tick(&calls).await {
                tracing::error!(error = %e.body().message, "schedule pass failed; retrying next tick");
            }
        }
    });
    (stop, task)
}

/// Every hour: forgets expired tokens and revocations, and audit records past their retention.
fn spawn_housekeeping(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = state.auth.prune_expired().await {
                tracing::warn!(error = %e, "pruning expired tokens failed; trying again in an hour");
            }
            if let Err(e) = domain::audit::prune(&state.db).await {
                tracing::warn!(error = %e, "pruning old audit records failed; trying again in an hour");
            }
        }
    })
}

/// Writes heartbeats behind to SQLite every [`domain::workers::FLUSH_INTERVAL`] until told to stop.
fn spawn_heartbeat_flusher(
    state: Arc<AppState>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(domain::workers::FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tick.tick() => {
                    if let Err(e) = state.workers.flush().await {
                        // The heartbeats stay in memory and the next ones are tried again.
                        tracing::error!(error = %e, "writing heartbeats to the database failed");
                    }
                }
            }
        }
    });
    (stop, task)
}

/// The conductor's OpenAPI document (what `cargo xtask openapi` writes to `openapi/conductor.json`).
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(&api::service().spec(), &api::limits())
}

/// Prepares the database restored from a platform backup at `path` for a cluster of new machines
/// (see `store::platform::forget_machines`); applies any newer migrations first.
pub async fn forget_machines(path: &std::path::Path) -> Result<(), sqlx::Error> {
    let db = Db::open(path, &store::MIGRATIONS).await?;
    store::platform::forget_machines(&db).await?;
    db.close().await;
    Ok(())
}

pub use domain::platform::{PlatformManifest, VolumeInExport};

/// An argon2id PHC hash of `password`, for `AEREKOS_USERS_FILE` entries.
pub fn hash_password(password: &str) -> String {
    domain::passwords::hash_blocking(password)
}
