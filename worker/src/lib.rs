//! The aerekos worker agent, as a library.
//!
//! [`start`] loads the worker's identity from its data directory, then runs two loops: the `agent`
//! (join the conductor, heartbeat, fetch assignments) and `reconcile` (make the driver run what is
//! assigned). They share only [`Shared`]: the identity, the last known assignments (also saved to
//! disk, so a worker that restarts while the conductor is down still knows what to run) and the
//! heartbeat interval. Stopping the worker leaves its instances running; the next start adopts them.

mod agent;
mod api;
pub mod backup;
pub mod config;
pub mod driver;
mod identity;
mod logship;
mod reconcile;
mod resources;
mod runs;
mod sandbox;
mod secrets;
mod trust;
mod volumes;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use aerekos_common::{auth::TokenVerifier, edge::Edge, metrics::Metrics, server::ServerHandle};
use aerekos_sdk::conductor::types::{
    Assignments, BackupJob, Instance, UnavailableDriver, VolumeTransfer,
};
use tokio::sync::watch;
use uuid::Uuid;

pub use config::{AdvertiseIp, ConfigError, WorkerConfig};
use driver::{Driver, Runtimes, docker::DockerDriver, process::ProcessDriver};
use identity::Identity;

const ASSIGNMENTS_FILE: &str = "assignments.json";

pub(crate) struct Shared {
    config: WorkerConfig,
    /// The conductor's CA (or the system's roots): see [`trust`].
    trust: aerekos_sdk::Trust,
    /// The certificates from the cluster CA, when the conductor serves TLS: then the worker API
    /// and the instances whose spec says `tls` serve HTTPS.
    certs: Option<trust::Certificates>,
    driver: Arc<dyn Driver>,
    identity: RwLock<Option<Identity>>,
    registered: watch::Sender<Option<Uuid>>,
    /// The last assignments from the conductor; None until the first (or a saved) answer.
    desired: Mutex<Option<Vec<Instance>>>,
    /// The conductor's version of those assignments (0: none known).
    assignments_version: Mutex<u64>,
    /// Whether this process has had assignments from the conductor (not only the saved ones).
    assignments_heard: std::sync::atomic::AtomicBool,
    /// Wakes the reconcile loop when the assignments change.
    reconcile_now: tokio::sync::Notify,
    interval: Mutex<Duration>,
    /// Checks users' tokens on the worker API; fetched from the conductor once it is reached.
    verifier: RwLock<Option<TokenVerifier>>,
    /// The instances as the reconcile loop last saw them, for the worker API.
    view: Mutex<Vec<api::WorkerInstance>>,
    /// The machine's resources as last sampled for a heartbeat (the gauges `/metrics` shows).
    last_resources: Mutex<Option<aerekos_sdk::conductor::types::WorkerResources>>,
    /// Instance restarts this worker made since it started (a counter: the per-instance counts
    /// go with their instances).
    restarts_total: std::sync::atomic::AtomicU64,
    metrics: Arc<Metrics>,
    /// `http://<advertised ip>:<port>` of the worker API, when it serves one.
    api_port: Option<u16>,
    /// Volume work from the assignments: volumes to fetch, to delete, to back up.
    volume_work: Mutex<VolumeWork>,
    volume_work_changed: tokio::sync::Notify,
    /// Volume transfer grants this worker has honoured.
    used_grants: volumes::UsedGrants,
    /// Volumes being exported, each with the flag that calls its export off.
    exports: Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
    /// The secret versions each instance started with (see [`secrets::StartedSecrets`]).
    started_secrets: secrets::StartedSecrets,
    /// Commands to run in sandboxes, from the assignments (see [`sandbox`]); `None` until the
    /// conductor's first answer to this process (so no marker is forgotten before it).
    sandbox_execs: Mutex<Option<Vec<aerekos_sdk::conductor::types::ExecAssignment>>>,
    sandbox_execs_changed: tokio::sync::Notify,
    /// Log shipping's spool and counters; `None` with `LOG_SHIPPING=off`.
    logship: Option<Arc<logship::LogShip>>,
}

impl Shared {
    /// A client of the conductor, believing what this worker trusts; `token` is the worker's
    /// credential where one is needed.
    pub(crate) fn conductor(&self, token: Option<String>) -> aerekos_sdk::Conductor {
        let transport = token.map_or_else(aerekos_sdk::Transport::new, |t| {
            aerekos_sdk::Transport::new().with_token(t)
        });
        aerekos_sdk::Conductor::with_trust(&self.config.conductor_url, transport, &self.trust)
    }

    /// A secrets_manager client through the conductor's gateway, carrying `token`.
    pub(crate) fn secrets_manager(&self, token: String) -> aerekos_sdk::SecretsManager {
        aerekos_sdk::SecretsManager::with_trust(
            &self.config.conductor_url,
            aerekos_sdk::Transport::new().with_token(token),
            &self.trust,
        )
    }

    fn advertise_ip(&self) -> IpAddr {
        let detected = match &self.config.advertise_ip {
            AdvertiseIp::Fixed(ip) => Some(*ip),
            AdvertiseIp::Dynamic(source) => source(),
            // The address on the route to the conductor: what it, and so the other workers, reach.
            AdvertiseIp::Auto => aerekos_common::net::resolve_url_host(&self.config.conductor_url)
                .first()
                .and_then(|a| aerekos_common::net::outward_address(*a)),
        };
        detected.unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    fn api_url(&self) -> Option<String> {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        self.api_port.map(|port| {
            format!(
                "{scheme}://{}",
                std::net::SocketAddr::new(self.advertise_ip(), port)
            )
        })
    }

    /// A client of another worker's API (volume exports, backup stores), believing this worker's CA.
    pub(crate) fn worker_agent(&self, url: &str, grant: String) -> aerekos_sdk::WorkerAgent {
        aerekos_sdk::WorkerAgent::with_trust(
            url,
            aerekos_sdk::Transport::new().with_token(grant),
            &self.trust,
        )
    }

    fn desired(&self) -> Option<Vec<Instance>> {
        self.desired.lock().expect("desired lock").clone()
    }

    /// Takes new assignments, saving them when they changed, and wakes the reconcile loop.
    fn set_desired(&self, version: u64, instances: Vec<Instance>) {
        *self.assignments_version.lock().expect("version lock") = version;
        self.assignments_heard
            .store(true, std::sync::atomic::Ordering::Release);
        let mut desired = self.desired.lock().expect("desired lock");
        let changed = desired.as_ref().is_none_or(|d| {
            serde_json::to_string(d).ok() != serde_json::to_string(&instances).ok()
        });
        if changed {
            // Certificates of instances no longer assigned here go with them.
            if let Some(certs) = &self.certs {
                certs.forget_instances_except(&instances.iter().map(|i| i.id).collect());
            }
            match serde_json::to_vec(&instances) {
                Ok(bytes) => {
                    if let Err(e) = aerekos_common::secrets::write_secret_file(
                        &self.config.data_dir.join(ASSIGNMENTS_FILE),
                        &bytes,
                    ) {
                        tracing::error!(error = %e, "could not save the assignments");
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not encode the assignments"),
            }
        }
        *desired = Some(instances);
        drop(desired);
        if changed {
            self.reconcile_now.notify_one();
        }
    }

    /// Takes an answer of the conductor's: the instances to run and the volume work.
    fn take_assignments(&self, assigned: Assignments) {
        let work = VolumeWork {
            transfers: assigned.volume_transfers,
            releases: assigned.release_volumes,
            backups: assigned.backup_jobs,
        };
        let mut current = self.volume_work.lock().expect("volume work lock");
        if *current != work {
            *current = work;
            self.volume_work_changed.notify_one();
        }
        drop(current);
        let mut execs = self.sandbox_execs.lock().expect("execs lock");
        if execs.as_ref() != Some(&assigned.sandbox_execs) {
            *execs = Some(assigned.sandbox_execs);
            self.sandbox_execs_changed.notify_one();
        }
        drop(execs);
        self.set_desired(assigned.version, assigned.instances);
    }

    fn volume_work(&self) -> VolumeWork {
        self.volume_work.lock().expect("volume work lock").clone()
    }

    fn forget_desired(&self, id: Uuid) {
        if let Some(d) = self.desired.lock().expect("desired lock").as_mut() {
            d.retain(|i| i.id != id);
        }
    }
}

/// What the conductor asks of this worker's volumes.
#[derive(Default, Clone, PartialEq)]
struct VolumeWork {
    transfers: Vec<VolumeTransfer>,
    releases: Vec<String>,
    backups: Vec<BackupJob>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("trusting the conductor: {0}")]
    Trust(String),
}

/// A running worker agent.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    api: Option<ServerHandle>,
}

impl WorkerHandle {
    /// The worker's id once it has joined a conductor.
    pub fn worker_id(&self) -> Option<Uuid> {
        *self.shared.registered.borrow()
    }

    /// Waits until the worker has joined a conductor (again, if `after` is its previous id).
    pub async fn joined(&self) -> Uuid {
        let mut rx = self.shared.registered.subscribe();
        loop {
            if let Some(id) = *rx.borrow_and_update() {
                return id;
            }
            if rx.changed().await.is_err() {
                panic!("the worker stopped before joining");
            }
        }
    }

    /// The worker API's base URL (loopback form), when it serves one.
    pub fn api_url(&self) -> Option<String> {
        self.api.as_ref().map(ServerHandle::url)
    }

    /// The last `max_bytes` of an instance's output.
    pub async fn logs(
        &self,
        instance: Uuid,
        max_bytes: usize,
    ) -> Result<String, driver::DriverError> {
        self.shared.driver.logs(instance, max_bytes).await
    }

    /// Stops the agent; its instances keep running and are adopted by the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(api) = self.api {
            let _ = api.shutdown().await;
        }
    }

    /// Stops the agent and every instance it runs.
    pub async fn shutdown_and_stop_instances(self) {
        let driver = self.shared.driver.clone();
        self.shutdown().await;
        for id in driver.instances().await {
            let _ = driver.stop(id).await;
        }
    }
}

/// Starts a worker: processes always, Docker too when an engine answers (and `config.docker`).
pub async fn start(config: WorkerConfig) -> Result<WorkerHandle, StartError> {
    config.check_plain_http()?;
    if config.serves_plain_http() && config.allow_plain_http {
        tracing::warn!(
            conductor = %config.conductor_url,
            "PLAIN HTTP on addresses other machines can reach (AEREKOS_ALLOW_PLAIN_HTTP=yes): tokens, keys and objects cross the network in the clear"
        );
    }
    aerekos_common::secrets::create_private_dir(&config.data_dir)?;
    let (trust, ca_pem) = trust::resolve(&config).await?;
    let certs = if config.serves_plain_http() {
        None
    } else {
        Some(trust::Certificates::open(&config.data_dir)?)
    };
    let platform = driver::Platform {
        ca_pem,
        conductor_url: config.conductor_url.clone(),
        executable: config.platform_executable.clone(),
        instance_host: config.instance_host(),
        volumes_dir: config.data_dir.join("volumes"),
        secret_files_dir: config.secret_files_dir.clone(),
    };
    // The drivers this worker cannot offer, and why (reported with its resources).
    let mut unavailable: Vec<UnavailableDriver> = vec![];
    let docker = if config.docker {
        match DockerDriver::connect().await {
            Ok(d) => {
                // Services run from an image built here, from the aerekos executable (when it is static).
                match &config.platform_executable {
                    Some(exe) => match d.ensure_service_image(exe).await {
                        Ok(tag) => {
                            tracing::info!(image = %tag, "the aerekos service image is ready")
                        }
                        Err(why) => {
                            tracing::info!(%why, "no aerekos service image: services will not run in containers here")
                        }
                    },
                    None => tracing::info!(
                        "cannot find the aerekos executable to build the service image"
                    ),
                }
                // The data directory names this worker to the engine (stable across restarts).
                let owner = std::path::absolute(&config.data_dir)
                    .unwrap_or_else(|_| config.data_dir.clone())
                    .display()
                    .to_string();
                Some(d.with_platform(platform.clone()).owned_by(owner))
            }
            Err(why) => {
                tracing::info!(%why, "no Docker engine; instances run as processes only");
                unavailable.push(UnavailableDriver {
                    name: "docker".into(),
                    reason: format!("no Docker engine answers: {why}"),
                });
                None
            }
        }
    } else {
        unavailable.push(UnavailableDriver {
            name: "docker".into(),
            reason: "WORKER_DOCKER=off".into(),
        });
        None
    };
    let microvm = match driver::microvm::Setup::detect(
        &config.microvm,
        config.platform_executable.as_deref(),
    ) {
        Ok(setup) => {
            tracing::info!(accel = setup.accel().as_str(), "microVMs can run here");
            Some(driver::microvm::MicrovmDriver::new(
                &config.data_dir,
                setup,
                platform.clone(),
                docker.as_ref().map(DockerDriver::client),
            )?)
        }
        Err(why) => {
            tracing::info!(%why, "no microvm driver on this worker");
            unavailable.push(UnavailableDriver {
                name: "microvm".into(),
                reason: why,
            });
            None
        }
    };
    let driver: Arc<dyn Driver> = Arc::new(Runtimes::new(
        ProcessDriver::new(&config.data_dir, platform)?,
        docker,
        microvm,
        unavailable,
    ));
    let identity = identity::load(&config.data_dir)?;
    if let Some(id) = &identity {
        tracing::info!(worker_id = %id.worker_id, "worker identity loaded");
    }
    // What ran before a restart keeps running even if the conductor is not there to say so.
    let saved: Option<Vec<Instance>> = std::fs::read(config.data_dir.join(ASSIGNMENTS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let (registered, _) = watch::channel(None);
    // The API's listener is bound first, so the worker can tell the conductor where it is.
    let listener = match config.api_bind {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let api_port = listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?
        .map(|a| a.port());
    let metrics = Arc::new(Metrics::new());
    let config_data_dir = config.data_dir.clone();
    let logship = if config.log_shipping {
        Some(logship::LogShip::open(
            &config.data_dir,
            config.log_spool_bytes,
        )?)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        interval: Mutex::new(config.heartbeat_interval),
        config,
        trust,
        certs,
        driver,
        identity: RwLock::new(identity),
        registered,
        desired: Mutex::new(saved),
        assignments_version: Mutex::new(0),
        assignments_heard: std::sync::atomic::AtomicBool::new(false),
        reconcile_now: tokio::sync::Notify::new(),
        verifier: RwLock::new(None),
        view: Mutex::new(Vec::new()),
        last_resources: Mutex::new(None),
        restarts_total: std::sync::atomic::AtomicU64::new(0),
        metrics: metrics.clone(),
        api_port,
        volume_work: Mutex::default(),
        volume_work_changed: tokio::sync::Notify::new(),
        used_grants: volumes::UsedGrants::default(),
        exports: Mutex::default(),
        started_secrets: secrets::StartedSecrets::load(&config_data_dir),
        sandbox_execs: Mutex::default(),
        sandbox_execs_changed: tokio::sync::Notify::new(),
        logship: logship.as_ref().map(|(ship, _)| ship.clone()),
    });
    let api = match listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            drop(listener);
            use poem::EndpointExt as _;
            // Backup contents stream in of any size; the store writes them to disk as they come.
            let edge = Edge::new(metrics, 64 * 1024)
                .quiet(&["health", "metrics"])
                .throttle(&shared.config.throttle)
                .body_limit_exempt(Arc::new(|path: &str| {
                    path.starts_with("/api/worker/backups/")
                }));
            let app =
                aerekos_common::server::api_routes(api::service(), &api::limits(), shared.clone())
                    .with(edge)
                    // The dashboard, served by the conductor (another origin), reads the instances and
                    // their output here with a user's bearer token; other origins are refused.
                    .with(aerekos_common::server::cors_allow_list(
                        shared.config.cors_allowed_origins.clone(),
                    ));
            // Over TLS the API presents the certificate the conductor issues at each join (until
            // the first, handshakes fail: nothing can be served before the worker is known).
            let tls = match &shared.certs {
                Some(certs) => Some(
                    certs
                        .api
                        .server_config()
                        .map_err(|e| StartError::Trust(e.to_string()))?,
                ),
                None => None,
            };
            Some(aerekos_common::server::serve_tls(addr, app, tls).await?)
        }
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(agent::run(shared.clone(), stopped.clone())),
        tokio::spawn(agent::watch_assignments(shared.clone(), stopped.clone())),
        tokio::spawn(volumes::run(shared.clone(), stopped.clone())),
        tokio::spawn(secrets::watch(shared.clone(), stopped.clone())),
        tokio::spawn(sandbox::run(shared.clone(), stopped.clone())),
        tokio::spawn(reconcile::run(shared.clone(), stopped.clone())),
    ];
    if let Some((ship, cursors)) = logship {
        tasks.push(tokio::spawn(logship::run(
            shared.clone(),
            ship,
            cursors,
            stopped,
        )));
    }
    Ok(WorkerHandle {
        shared,
        stop,
        tasks,
        api,
    })
}

/// The worker API's spec (what `cargo xtask openapi` writes to `openapi/worker.json`).
pub fn openapi_spec() -> String {
    aerekos_common::server::finished_spec(&api::service().spec(), &api::limits())
}
