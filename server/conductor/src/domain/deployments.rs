//! Deployments: keeping each enabled service at the number of healthy instances it asks for.
//!
//! A deploy (or enable) records what the service wants and places what is missing at once, all in
//! one transaction with the service's new state; nothing fits → 409 naming the short resource on
//! each worker, and nothing is written. Then [`DeploymentService::tick`] (every second, and at
//! once after any instance report) keeps it so:
//! - an instance whose worker is lost is replaced on a live worker; the lost one is removed only
//!   once the service has all its replicas healthy again, so a worker coming back in between
//!   leaves no duplicates: extras are removed, unhealthy and newest first;
//! - a service's instances are placed only once every service it depends on has a healthy one;
//! - a stateful service runs only on the worker holding its volume, and waits while that worker is
//!   lost; its lost instance there is kept, to be used again (see [`super::volumes`]);
//!
//! Restarting crashed or unhealthy instances is their worker's job (with backoff); the conductor
//! records their health from the workers' reports. Each tick also rebuilds the gateway's routes.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::RangeInclusive,
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{
    backups::BackupService,
    catalog::{self, CatalogService},
    instances::{self, InstanceService},
    moves::MoveService,
    routes::{RouteSpec, Routes, Unavailable},
    scheduler::{self, Amounts, Candidate, PlacementLock},
    volumes::{self, Site, VolumeService},
    workers::WorkerService,
};
use crate::{
    model::{
        DeployRequest, Deployment, DeploymentSpec, DriverKind, Instance, InstanceHealth,
        InstanceSpec, MoveRequest, SecretRef, Service, VolumeMove, Worker, WorkerStatus,
    },
    store::{now_ms, services::DeploymentUpdate, volumes::VolumeRow},
};

/// How often the loop runs when nothing wakes it.
pub const TICK: Duration = Duration::from_secs(1);
/// At most this many replicas per service.
pub const MAX_REPLICAS: u32 = 100;

pub struct DeploymentService {
    catalog: Arc<CatalogService>,
    workers: Arc<WorkerService>,
    instances: Arc<InstanceService>,
    volumes: Arc<VolumeService>,
    moves: Arc<MoveService>,
    backups: Arc<BackupService>,
    routes: Arc<Routes>,
    ports: RangeInclusive<u16>,
    /// Whether the conductor serves TLS: then the built-in services' new instances serve HTTPS.
    tls: bool,
    /// One placement at a time, shared with the job queue: reservations are read and written
    /// together.
    placement: PlacementLock,
    /// Per service, why the last tick could not place what was missing.
    problems: Mutex<HashMap<String, String>>,
}

/// What one service needs changed.
#[derive(Default)]
struct Outcome {
    place: Vec<(Uuid, InstanceSpec)>,
    remove: Vec<Instance>,
    waiting_for: Vec<String>,
    /// Volume records to write with the placements (a fresh or adopted volume).
    volumes: Vec<VolumeRow>,
    /// Why a stateful service waits for its volume's worker (nothing was placed).
    volume_wait: Option<String>,
}

/// The cluster as a plan sees it: reservations and ports taken, updated as instances are placed.
struct Cluster {
    services: Vec<Arc<Service>>,
    instances: Vec<Arc<Instance>>,
    workers: Vec<Arc<Worker>>,
    volumes: Vec<VolumeRow>,
    reserved: HashMap<Uuid, Amounts>,
    ports_by_ip: HashMap<String, HashSet<u16>>,
}

impl Cluster {
    fn new(
        services: Vec<Arc<Service>>,
        instances: Vec<Arc<Instance>>,
        workers: Vec<Arc<Worker>>,
        volumes: Vec<VolumeRow>,
    ) -> Self {
        let ip_of: HashMap<Uuid, &str> = workers
            .iter()
            .map(|w| (w.id, w.ip_address.as_str()))
            .collect();
        let reserved = scheduler::reservations(&instances);
        let mut ports_by_ip: HashMap<String, HashSet<u16>> = HashMap::new();
        for inst in instances.iter().filter(|i| !i.spec.ports.is_empty()) {
            if let Some(ip) = ip_of.get(&inst.worker_id) {
                ports_by_ip
                    .entry((*ip).to_owned())
                    .or_default()
                    .extend(inst.spec.ports.iter().copied());
            }
        }
        Self {
            services,
            instances,
            workers,
            volumes,
            reserved,
            ports_by_ip,
        }
    }

    fn volume(&self, name: &str) -> Option<&VolumeRow> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// Where the stateful `service` may run (its volume is named after it).
    fn site(&self, service: &Service, only: &[Uuid], start_empty: bool) -> Site {
        volumes::site(
            &service.name,
            self.volume(&service.name),
            &self.workers,
            only,
            start_empty,
        )
    }

    fn healthy(&self, service: &str) -> usize {
        self.instances
            .iter()
            .filter(|i| {
                i.service.as_deref() == Some(service) && i.health == InstanceHealth::Healthy
            })
            .count()
    }

    fn candidates(&self, service: &str) -> Vec<Candidate> {
        // Instances of `service` per worker, counted once rather than once per worker.
        let mut same_service: HashMap<Uuid, u32> = HashMap::new();
        for i in &self.instances {
            if i.service.as_deref() == Some(service) && i.health != InstanceHealth::Lost {
                *same_service.entry(i.worker_id).or_default() += 1;
            }
        }
        self.workers
            .iter()
            .filter(|w| w.status == WorkerStatus::Live)
            .map(|w| {
                scheduler::candidate(
                    w,
                    self.reserved.get(&w.id).copied().unwrap_or_default(),
                    same_service.get(&w.id).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    /// A free port on the worker's address (workers sharing an address share its ports).
    fn allocate_port(&mut self, worker_id: Uuid, range: &RangeInclusive<u16>) -> ApiResult<u16> {
        let ip = self
            .workers
            .iter()
            .find(|w| w.id == worker_id)
            .map(|w| w.ip_address.clone())
            .unwrap_or_default();
        let taken = self.ports_by_ip.entry(ip.clone()).or_default();
        let span = u32::from(*range.end() - *range.start()) + 1;
        let start = rand::random::<u32>() % span;
        for k in 0..span {
            let port = *range.start() + ((start + k) % span) as u16;
            if taken.insert(port) {
                return Ok(port);
            }
        }
        Err(ApiError::conflict(
            "no_free_port",
            format!("every instance port ({range:?}) on {ip} is taken"),
        ))
    }
}

/// The drivers `service` can run with, preferred first, limited to `only` when given.
fn usable_drivers(service: &Service, only: Option<DriverKind>) -> Vec<DriverKind> {
    let mut drivers = vec![];
    if service.image.is_some() {
        drivers.push(DriverKind::Docker);
    }
    if service.command.is_some() {
        drivers.push(DriverKind::Process);
    }
    // Only when asked for: a guest runs the command (with the image, if any, as its root
    // filesystem).
    if only == Some(DriverKind::Microvm) && service.command.is_some() {
        drivers.push(DriverKind::Microvm);
    }
    drivers.retain(|d| only.is_none_or(|o| o == *d));
    drivers
}

fn instance_spec(
    service: &Service,
    spec: &DeploymentSpec,
    driver: DriverKind,
    port: u16,
    tls: bool,
) -> InstanceSpec {
    let (image, command) = match driver {
        DriverKind::Docker => (service.image.clone(), service.image_command.clone()),
        DriverKind::Process => (None, service.command.clone()),
        // A built-in service's image is only the aerekos executable, which a guest is given
        // anyway: its root filesystem is the worker's default.
        DriverKind::Microvm if service.builtin => (None, service.command.clone()),
        DriverKind::Microvm => (service.image.clone(), service.command.clone()),
    };
    InstanceSpec {
        image,
        command,
        env: instance_env(service, spec),
        secret_env: instance_secret_env(service, spec),
        generation: spec.generation,
        ports: vec![port],
        resources: Some(spec.resources),
        health_path: Some(service.health_path.clone()),
        volume: service.stateful.then(|| service.name.clone()),
        tls,
        run_once: false,
        timeout_secs: None,
        // Named only for a guest (the others follow from the image, as they always have).
        driver: (driver == DriverKind::Microvm).then_some(driver),
    }
}

/// `base` with `over` laid over it: how a deployment's variables override its service's.
fn layered<V: Clone>(
    base: &BTreeMap<String, V>,
    over: &BTreeMap<String, V>,
) -> BTreeMap<String, V> {
    base.iter()
        .chain(over)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An instance's environment: the service's, with the deployment's over it.
fn instance_env(service: &Service, spec: &DeploymentSpec) -> BTreeMap<String, String> {
    layered(&service.env, &spec.env)
}

/// An instance's secret references: the service's, with the deployment's over them.
fn instance_secret_env(service: &Service, spec: &DeploymentSpec) -> BTreeMap<String, SecretRef> {
    layered(&service.secret_env, &spec.secret_env)
}

/// Whether `inst` no longer matches the deployment `spec` asks for of `service`.
fn is_outdated(inst: &Instance, service: &Service, spec: &DeploymentSpec) -> bool {
    let driver = instances::driver_of(&inst.spec);
    inst.spec.resources != Some(spec.resources)
        || (!spec.worker_ids.is_empty() && !spec.worker_ids.contains(&inst.worker_id))
        || spec.driver.is_some_and(|d| d != driver)
        || inst.spec.env != instance_env(service, spec)
        || inst.spec.secret_env != instance_secret_env(service, spec)
        || inst.spec.generation != spec.generation
}

/// The most variables a deployment's env holds, and the longest value (in characters).
pub const MAX_ENV_VARS: usize = 100;
pub const MAX_ENV_VALUE_CHARS: usize = 32 * 1024;

/// Names the worker gives every instance itself (`worker::driver`): a deployment may not change
/// where its instance listens, keeps its data or finds its conductor.
const PLATFORM_ENV: &[&str] = &[
    "PORT",
    "DATA_DIR",
    "CONDUCTOR_URL",
    "TLS_CERT_PEM",
    "TLS_KEY_PEM",
];

fn check_env_name(field: &str, name: &str) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_env", m));
    let mut chars = name.chars();
    let well_formed = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return bad(format!(
            "{field}: {name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    if PLATFORM_ENV.contains(&name) || name.starts_with("AEREKOS_") {
        return bad(format!(
            "{field}: {name} is set by the worker for every instance; a deployment cannot change it"
        ));
    }
    Ok(())
}

pub(crate) fn check_env(env: &BTreeMap<String, String>) -> ApiResult<()> {
    if env.len() > MAX_ENV_VARS {
        return Err(ApiError::bad_request(
            "invalid_env",
            format!("env has {} variables; at most {MAX_ENV_VARS}", env.len()),
        ));
    }
    for (name, value) in env {
        check_env_name("env", name)?;
        if value.chars().count() > MAX_ENV_VALUE_CHARS || value.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_env",
                format!(
                    "env: {name}'s value must be at most {MAX_ENV_VALUE_CHARS} characters, without NUL"
                ),
            ));
        }
    }
    Ok(())
}

/// Secret references: variable names as for `env` and none set in `env` too, secret names in
/// secrets_manager's grammar, a version or a label (not both); `restart_on_change` only where a
/// change can come (no pinned version) and a rolling restart can follow (not `stateful`).
pub(crate) fn check_secret_env(
    secret_env: &BTreeMap<String, SecretRef>,
    env: &BTreeMap<String, String>,
    stateful: bool,
) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_env", m));
    if secret_env.len() > MAX_ENV_VARS {
        return bad(format!(
            "secret_env has {} variables; at most {MAX_ENV_VARS}",
            secret_env.len()
        ));
    }
    for (name, reference) in secret_env {
        check_env_name("secret_env", name)?;
        if env.contains_key(name) {
            return bad(format!(
                "{name} is in both env and secret_env; give it once"
            ));
        }
        if !aerekos_common::names::is_secret_name(&reference.secret) {
            return bad(format!(
                "secret_env: {name} names {:?}, which is not a secret name (segments of letters, digits, '.', '_', '-' joined by '/')",
                reference.secret
            ));
        }
        if reference.version.is_some() && reference.label.is_some() {
            return bad(format!(
                "secret_env: {name} gives a version and a label; give one"
            ));
        }
        if reference.restart_on_change && reference.version.is_some() {
            return bad(format!(
                "secret_env: {name} pins version {}, which never changes; drop restart_on_change or the version",
                reference.version.unwrap_or_default()
            ));
        }
        if reference.restart_on_change && stateful {
            return bad(format!(
                "secret_env: {name} asks for restart_on_change, but the service keeps its state on one worker and \
                 restarts only while disabled; redeploy it with restart after disabling it instead"
            ));
        }
    }
    Ok(())
}

/// Services in an order where each comes after what it depends on.
fn dependency_order(services: &[Arc<Service>]) -> Vec<&Service> {
    let mut out: Vec<&Service> = Vec::with_capacity(services.len());
    while out.len() < services.len() {
        let before = out.len();
        for s in services.iter().map(|s| &**s) {
            let done = out.iter().any(|o| o.name == s.name);
            if !done
                && s.depends_on.iter().all(|d| {
                    out.iter().any(|o| &o.name == d) || !services.iter().any(|x| &x.name == d)
                })
            {
                out.push(s);
            }
        }
        if out.len() == before {
            // A cycle cannot be defined (dependencies must exist first); keep the rest as they are.
            let rest: Vec<&Service> = services
                .iter()
                .map(|s| &**s)
                .filter(|s| !out.iter().any(|o| o.name == s.name))
                .collect();
            out.extend(rest);
        }
    }
    out
}

impl DeploymentService {
    pub fn new(
        catalog: Arc<CatalogService>,
        workers: Arc<WorkerService>,
        instances: Arc<InstanceService>,
        volumes: Arc<VolumeService>,
        moves: Arc<MoveService>,
        backups: Arc<BackupService>,
        routes: Arc<Routes>,
        ports: RangeInclusive<u16>,
        tls: bool,
        placement: PlacementLock,
    ) -> Self {
        Self {
            catalog,
            workers,
            instances,
            volumes,
            moves,
            backups,
            routes,
            ports,
            tls,
            placement,
            problems: Mutex::default(),
        }
    }

    async fn cluster(&self) -> ApiResult<Cluster> {
        let services = self.catalog.snapshot().await?;
        let instances = self.instances.snapshot().await?;
        let volumes = self.volumes.records().await?;
        Ok(Cluster::new(
            services,
            instances,
            self.workers.snapshot(),
            volumes,
        ))
    }

    /// What `service` needs changed to match `spec`; placements are reserved in `cluster`.
    /// `start_empty` is an admin's explicit word to start a stateful service with no data.
    fn reconcile(
        &self,
        cluster: &mut Cluster,
        service: &Service,
        spec: &DeploymentSpec,
        start_empty: bool,
    ) -> Result<Outcome, String> {
        let mut out = Outcome::default();
        if self.moves.holds(&service.name) {
            // Its move is stopping or copying it: the move decides what runs.
            return Ok(out);
        }
        let site = service.stateful.then(|| {
            // With no record yet (a cluster from before volumes were recorded), the copy an
            // instance is using now is the one to adopt.
            let in_use = cluster
                .instances
                .iter()
                .find(|i| {
                    i.service.as_deref() == Some(&service.name) && i.health != InstanceHealth::Lost
                })
                .map(|i| i.worker_id);
            match in_use {
                Some(worker_id) if cluster.volume(&service.name).is_none() && !start_empty => {
                    Site::On {
                        worker_id,
                        record: true,
                    }
                }
                _ => cluster.site(service, &spec.worker_ids, start_empty),
            }
        });
        if let Some(Site::On {
            worker_id,
            record: true,
        }) = &site
        {
            let running_there = cluster
                .instances
                .iter()
                .any(|i| i.service.as_deref() == Some(&service.name) && i.worker_id == *worker_id);
            if running_there {
                out.volumes.push(volumes::new_record(
                    &service.name,
                    &service.name,
                    *worker_id,
                    now_ms(),
                ));
            }
        }
        let holder = match &site {
            Some(Site::On { worker_id, .. }) => Some(*worker_id),
            Some(Site::Wait(wait)) => Some(wait.worker_id),
            _ => None,
        };
        let mut mine: Vec<Instance> = cluster
            .instances
            .iter()
            .filter(|i| i.service.as_deref() == Some(&service.name))
            .map(|i| Instance::clone(i))
            .collect();
        if service.stateful && start_empty {
            // The old instance works on the volume being left behind: it stops now.
            out.remove.append(&mut mine);
        }
        let (lost, live): (Vec<Instance>, Vec<Instance>) = mine
            .into_iter()
            .partition(|i| i.health == InstanceHealth::Lost);
        // A stateful service's lost instance on the worker holding its volume is still its
        // instance: it serves again, with its data, when that worker returns.
        let (kept, lost): (Vec<Instance>, Vec<Instance>) =
            lost.into_iter().partition(|i| holder == Some(i.worker_id));
        // Instances placed under an earlier deployment (other resources, workers or driver) are
        // replaced like lost ones: removed once the new ones are healthy.
        let (outdated, mut live): (Vec<Instance>, Vec<Instance>) = live
            .into_iter()
            .partition(|i| is_outdated(i, service, spec));
        let wanted = spec.replicas as usize;
        if live.len() > wanted {
            // Keep the healthy and the oldest; remove the rest.
            live.sort_by_key(|i| (i.health != InstanceHealth::Healthy, i.created_at));
            out.remove.extend(live.drain(wanted..));
        }
        let healthy = live
            .iter()
            .filter(|i| i.health == InstanceHealth::Healthy)
            .count();
        if healthy >= wanted {
            out.remove.extend(lost);
            out.remove.extend(outdated);
        }
        out.waiting_for = service
            .depends_on
            .iter()
            .filter(|d| cluster.healthy(d) == 0)
            .cloned()
            .collect();
        let missing = wanted.saturating_sub(live.len() + kept.len()) as u32;
        if missing > 0 {
            let drivers = usable_drivers(service, spec.driver);
            let mut candidates = cluster.candidates(&service.name);
            // Where the volume lets it go: the holder only, or (a fresh volume) no worker with a copy.
            let mut why_here = String::new();
            match &site {
                None => {}
                Some(Site::On { worker_id, .. }) => {
                    candidates.retain(|c| c.id == *worker_id);
                    why_here =
                        format!(" (its volume is on worker {worker_id}, so it runs there only)");
                }
                Some(Site::Fresh { exclude }) => {
                    candidates.retain(|c| !exclude.contains(&c.id));
                    if !exclude.is_empty() {
                        why_here =
                            " (workers holding an old copy of its volume are left out)".into();
                    }
                }
                Some(Site::Wait(wait)) => {
                    out.volume_wait = Some(wait.message.clone());
                    return Ok(out);
                }
                Some(Site::Choose(why)) => return Err(format!("{}: {why}", service.name)),
            }
            let request = scheduler::Request {
                count: missing,
                resources: spec.resources,
                worker_ids: &spec.worker_ids,
                labels: &spec.labels,
                strategy: spec.strategy,
                drivers: &drivers,
            };
            let placements = scheduler::place(&mut candidates, &request)
                .map_err(|s| format!("{}{why_here}: {}", service.name, s.message))?;
            // Waiting for a dependency: the check above says it would fit; nothing is placed yet.
            if out.waiting_for.is_empty() {
                for p in placements {
                    let port = cluster
                        .allocate_port(p.worker_id, &self.ports)
                        .map_err(|e| e.to_string())?;
                    cluster
                        .reserved
                        .entry(p.worker_id)
                        .or_default()
                        .add(Amounts::of(&spec.resources));
                    let spec =
                        instance_spec(service, spec, p.driver, port, self.tls && service.builtin);
                    if let (
                        Some(volume),
                        Some(Site::Fresh { .. } | Site::On { record: true, .. }),
                    ) = (&spec.volume, &site)
                    {
                        let row = volumes::new_record(volume, &service.name, p.worker_id, now_ms());
                        tracing::info!(volume = %volume, worker_id = %p.worker_id, fresh = matches!(site, Some(Site::Fresh { .. })), "volume recorded");
                        cluster.volumes.retain(|v| v.name != row.name);
                        cluster.volumes.push(row.clone());
                        out.volumes.push(row);
                    }
                    out.place.push((p.worker_id, spec));
                }
            }
        }
        Ok(out)
    }

    /// The deployment `req` asks of `service`, over its current one or the catalog's defaults.
    fn merged_spec(
        &self,
        service: &Service,
        req: &DeployRequest,
        cluster: &Cluster,
    ) -> ApiResult<DeploymentSpec> {
        let base = service
            .deployment
            .clone()
            .unwrap_or_else(|| DeploymentSpec {
                replicas: service.default_replicas,
                resources: service.default_resources,
                worker_ids: vec![],
                labels: BTreeMap::new(),
                strategy: Default::default(),
                driver: None,
                backup_interval_secs: None,
                env: BTreeMap::new(),
                secret_env: BTreeMap::new(),
                generation: 0,
            });
        let spec = DeploymentSpec {
            replicas: req.replicas.unwrap_or(base.replicas),
            // A guest is given at least the memory its kernel needs; it is reserved so.
            resources: super::jobs::reservation(
                req.resources.unwrap_or(base.resources),
                req.driver.or(base.driver),
            ),
            worker_ids: req.worker_ids.clone().unwrap_or(base.worker_ids),
            labels: req.labels.clone().unwrap_or(base.labels),
            strategy: req.strategy.unwrap_or(base.strategy),
            driver: req.driver.or(base.driver),
            backup_interval_secs: req.backup_interval_secs.or(base.backup_interval_secs),
            env: req.env.clone().unwrap_or(base.env),
            secret_env: req.secret_env.clone().unwrap_or(base.secret_env),
            generation: base.generation + u64::from(req.restart == Some(true)),
        };
        let bad = |m: String| Err(ApiError::bad_request("invalid_deployment", m));
        if spec.replicas > MAX_REPLICAS {
            return bad(format!("replicas: at most {MAX_REPLICAS}"));
        }
        if service.stateful && spec.replicas > 1 {
            return bad(format!(
                "{} keeps its state on one worker and runs one replica (asked for {})",
                service.name, spec.replicas
            ));
        }
        catalog::validate_resources(&spec.resources)?;
        check_env(&spec.env)?;
        check_secret_env(
            &spec.secret_env,
            &instance_env(service, &spec),
            service.stateful,
        )?;
        let unknown: Vec<String> = spec
            .worker_ids
            .iter()
            .filter(|id| !cluster.workers.iter().any(|w| w.id == **id))
            .map(Uuid::to_string)
            .collect();
        if !unknown.is_empty() {
            return bad(format!("worker_ids: no worker {}", unknown.join(", ")));
        }
        let start_empty = req.start_empty == Some(true);
        if start_empty && !service.stateful {
            return bad(format!(
                "start_empty applies to stateful services only, and {} keeps no state",
                service.name
            ));
        }
        // A stateful service's data lives on its worker: moving it elsewhere would leave it behind.
        let holder = cluster
            .volume(&service.name)
            .and_then(|v| Uuid::parse_str(&v.worker_id).ok());
        if let Some(holder) = holder.filter(|h| {
            service.stateful
                && !start_empty
                && !spec.worker_ids.is_empty()
                && !spec.worker_ids.contains(h)
        }) {
            return Err(ApiError::conflict(
                "volume_elsewhere",
                format!(
                    "the data of {name} (volume {name}) is on worker {holder}, which worker_ids leaves out; include that \
                     worker, or deploy with start_empty: true to start {name} with no data elsewhere (the old copy is \
                     left where it is)",
                    name = service.name
                ),
            ));
        }
        let moves_running = cluster
            .instances
            .iter()
            .any(|i| i.service.as_deref() == Some(&service.name) && is_outdated(i, service, &spec));
        if service.stateful && moves_running && !start_empty {
            return Err(ApiError::conflict(
                "stateful_service_running",
                format!(
                    "{} keeps its state on its worker, so its resources, workers, driver, env and secret_env cannot change, nor can it restart by a deploy, while it runs; \
                     disable it and deploy again (it starts again on the worker holding its volume)",
                    service.name
                ),
            ));
        }
        if usable_drivers(service, spec.driver).is_empty() {
            let what = if spec.driver == Some(DriverKind::Docker) {
                "an image"
            } else {
                "a command"
            };
            return bad(format!(
                "{} cannot run with the {} driver: it has no {what}",
                service.name,
                spec.driver.map_or("", DriverKind::as_str)
            ));
        }
        Ok(spec)
    }

    /// Deploys `name` (and, with their defaults, whatever it depends on that is not deployed yet).
    pub async fn deploy(&self, name: &str, req: DeployRequest) -> ApiResult<Deployment> {
        let one_at_a_time = self.placement.lock().await;
        self.deploy_placing(name, req, one_at_a_time).await
    }

    /// A worker's report that secrets `instance` started with changed, for references that say
    /// `restart_on_change`: its service restarts, rolling (as `deploy` with `restart`), unless the
    /// deployment is past the instance's generation already (another instance's report, or a
    /// deploy, came first) or the service is disabled.
    pub async fn restart_for_changed_secrets(
        &self,
        worker_id: Uuid,
        instance_id: Uuid,
        variables: &[String],
    ) -> ApiResult<()> {
        let instance = self.instances.get(instance_id).await?;
        let Some(name) = instance
            .service
            .clone()
            .filter(|_| instance.worker_id == worker_id)
        else {
            return Err(ApiError::not_found(
                "instance_not_found",
                format!(
                    "instance {instance_id} is not a service instance assigned to worker {worker_id}"
                ),
            ));
        };
        let watched = |v: &String| {
            instance
                .spec
                .secret_env
                .get(v)
                .is_some_and(|r| r.restart_on_change)
        };
        if variables.is_empty() || !variables.iter().all(watched) {
            return Err(ApiError::bad_request(
                "invalid_report",
                format!(
                    "give 1 or more of the instance's secret_env variables that say restart_on_change (got {variables:?})"
                ),
            ));
        }
        let one_at_a_time = self.placement.lock().await;
        let service = self.catalog.get(&name).await?;
        // Past this instance already (another report, or a deploy that replaces it anyway).
        let outdated = service.deployment.as_ref().is_none_or(|spec| {
            spec.generation != instance.spec.generation || is_outdated(&instance, &service, spec)
        });
        if !service.enabled || outdated {
            return Ok(());
        }
        tracing::info!(service = %name, ?variables, %instance_id, "secrets changed; restarting the service's instances");
        self.deploy_placing(
            &name,
            DeployRequest {
                restart: Some(true),
                ..Default::default()
            },
            one_at_a_time,
        )
        .await
        .map(|_| ())
    }

    /// [`Self::deploy`], holding the placement turn.
    async fn deploy_placing(
        &self,
        name: &str,
        req: DeployRequest,
        _one_at_a_time: tokio::sync::MutexGuard<'_, ()>,
    ) -> ApiResult<Deployment> {
        let service = self.catalog.get(name).await?;
        self.refuse_while_moving(name)?;
        let mut cluster = self.cluster().await?;
        let spec = self.merged_spec(&service, &req, &cluster)?;

        // Dependencies first, each with its own deployment (or the catalog's defaults).
        let mut chain = vec![];
        collect_dependencies(&cluster.services, &service, &mut chain);
        let mut targets: Vec<(Service, DeploymentSpec)> = vec![];
        for dep in chain.into_iter().filter(|d| d.name != service.name) {
            let dep_spec = match (&dep.deployment, dep.enabled) {
                (Some(s), true) => s.clone(),
                _ => self.merged_spec(
                    &dep,
                    &DeployRequest {
                        driver: req.driver,
                        ..Default::default()
                    },
                    &cluster,
                )?,
            };
            targets.push((dep, dep_spec));
        }
        targets.push((service.clone(), spec));

        let mut placed = vec![];
        let mut removed = vec![];
        let mut problems = vec![];
        let mut waits = vec![];
        let mut serialized = vec![];
        let mut volume_rows = vec![];
        for (s, spec) in &targets {
            let start_empty = s.name == service.name && req.start_empty == Some(true);
            match self.reconcile(&mut cluster, s, spec, start_empty) {
                Ok(outcome) => {
                    placed.extend(
                        outcome
                            .place
                            .into_iter()
                            .map(|(w, i)| (w, Some(s.name.clone()), i)),
                    );
                    removed.extend(outcome.remove);
                    volume_rows.extend(outcome.volumes);
                    waits.extend(outcome.volume_wait.map(|w| (s.name.clone(), w)));
                }
                Err(why) => problems.push((s.name.clone(), why)),
            }
            serialized.push(serde_json::to_string(spec).map_err(ApiError::internal)?);
        }
        // With no live worker at all the deployment is recorded and placed when one joins (as
        // `aerekos up` does before its local worker has registered); with workers that lack room
        // it is refused, and nothing is written.
        let any_live = cluster
            .workers
            .iter()
            .any(|w| w.status == WorkerStatus::Live);
        if !problems.is_empty() && any_live {
            let text: Vec<&str> = problems.iter().map(|(_, why)| why.as_str()).collect();
            return Err(ApiError::conflict(
                "insufficient_resources",
                text.join("; "),
            ));
        }
        let lb = req.load_balancing.unwrap_or(service.load_balancing);
        let updates: Vec<DeploymentUpdate<'_>> = targets
            .iter()
            .zip(&serialized)
            .map(|((s, _), json)| DeploymentUpdate {
                name: &s.name,
                enabled: true,
                deployment: Some(json),
                load_balancing: catalog::lb_name(if s.name == service.name {
                    lb
                } else {
                    s.load_balancing
                }),
            })
            .collect();
        self.instances
            .apply(&self.catalog, &updates, placed, &removed, &volume_rows)
            .await?;
        // The routes follow at once: the new load balancing, removed instances gone (new ones
        // join when healthy).
        if let Some(s) = cluster.services.iter_mut().find(|s| s.name == service.name) {
            Arc::make_mut(s).load_balancing = lb;
        }
        let changed: Vec<&str> = targets.iter().map(|(s, _)| s.name.as_str()).collect();
        self.publish_routes_of(&cluster, &removed.iter().map(|i| i.id).collect(), &changed);
        {
            let mut known = self.problems.lock().expect("problems lock");
            for (s, _) in &targets {
                known.remove(&s.name);
            }
            known.extend(problems);
            known.extend(waits);
        }
        tracing::info!(service = name, "service deployed");
        drop(_one_at_a_time);
        self.deployment(name).await
    }

    /// Deploys with the service's current deployment, or the catalog's defaults.
    pub async fn enable(&self, name: &str) -> ApiResult<Deployment> {
        self.deploy(name, DeployRequest::default()).await
    }

    /// Stops every instance of `name`; refused while an enabled service depends on it.
    pub async fn disable(&self, name: &str) -> ApiResult<Deployment> {
        let service = self.catalog.get(name).await?;
        let _one_at_a_time = self.placement.lock().await;
        self.refuse_while_moving(name)?;
        let cluster = self.cluster().await?;
        let dependents: Vec<&str> = cluster
            .services
            .iter()
            .filter(|s| s.enabled && s.depends_on.iter().any(|d| d == name))
            .map(|s| s.name.as_str())
            .collect();
        if !dependents.is_empty() {
            return Err(ApiError::conflict(
                "service_has_dependents",
                format!(
                    "{name} is needed by {}; disable {} first",
                    dependents.join(", "),
                    dependents.join(" and ")
                ),
            ));
        }
        let removed: Vec<Instance> = cluster
            .instances
            .iter()
            .filter(|i| i.service.as_deref() == Some(name))
            .map(|i| Instance::clone(i))
            .collect();
        let json = service
            .deployment
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(ApiError::internal)?;
        let update = DeploymentUpdate {
            name,
            enabled: false,
            deployment: json.as_deref(),
            load_balancing: catalog::lb_name(service.load_balancing),
        };
        self.instances
            .apply(&self.catalog, &[update], vec![], &removed, &[])
            .await?;
        self.publish_routes_of(&cluster, &removed.iter().map(|i| i.id).collect(), &[name]);
        tracing::info!(service = name, stopped = removed.len(), "service disabled");
        drop(_one_at_a_time);
        self.deployment(name).await
    }

    fn refuse_while_moving(&self, name: &str) -> ApiResult<()> {
        match self.moves.under_way(name) {
            Some((state, target)) if state != crate::model::MoveState::Cleaning => {
                Err(ApiError::conflict(
                    "service_moving",
                    format!(
                        "{name} is being moved to worker {target}; wait until the move is done or failed (GET /api/moves)"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Moves stateful service `name`, with its volume, to worker `req.worker_id` (see
    /// [`super::moves`]). Refused unless the service runs healthy on the live worker holding its
    /// volume and fits on the target.
    pub async fn move_service(&self, name: &str, req: MoveRequest) -> ApiResult<VolumeMove> {
        let service = self.catalog.get(name).await?;
        let _one_at_a_time = self.placement.lock().await;
        let cluster = self.cluster().await?;
        let refuse = |code: &str, m: String| Err(ApiError::conflict(code, m));
        let Some(spec) = service
            .deployment
            .as_ref()
            .filter(|_| service.enabled && service.stateful)
        else {
            return Err(ApiError::bad_request(
                "not_movable",
                format!(
                    "{name} is not an enabled stateful service: only a running service with a volume is moved with its data"
                ),
            ));
        };
        let target = cluster
            .workers
            .iter()
            .find(|w| w.id == req.worker_id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "worker_not_found",
                    format!("worker_id: no worker {}", req.worker_id),
                )
            })?;
        let Some(holder) = cluster
            .volume(name)
            .and_then(|v| Uuid::parse_str(&v.worker_id).ok())
        else {
            return refuse(
                "volume_not_found",
                format!("{name} has no volume yet: deploy it first"),
            );
        };
        let Some(source) = cluster.workers.iter().find(|w| w.id == holder) else {
            return refuse(
                "holder_lost",
                format!(
                    "worker {holder} holding {name}'s volume was removed: restore a backup instead"
                ),
            );
        };
        if source.status != WorkerStatus::Live {
            return refuse(
                "holder_lost",
                format!(
                    "worker {} holding {name}'s volume is lost: a move needs it live",
                    source.name
                ),
            );
        }
        if target.id == source.id {
            return refuse(
                "already_there",
                format!("{name}'s volume is already on worker {}", target.name),
            );
        }
        if target.status != WorkerStatus::Live {
            return refuse("target_lost", format!("worker {} is lost", target.name));
        }
        if !spec.worker_ids.is_empty() && !spec.worker_ids.contains(&target.id) {
            return refuse(
                "move_outside_deployment",
                format!(
                    "{name}'s deployment allows only workers {:?}; move it to one of those",
                    spec.worker_ids
                ),
            );
        }
        let healthy_on_source = cluster.instances.iter().any(|i| {
            i.service.as_deref() == Some(name)
                && i.worker_id == holder
                && i.health == InstanceHealth::Healthy
        });
        if !healthy_on_source {
            return refuse(
                "not_healthy",
                format!(
                    "{name} is not healthy on worker {}; a move starts from a healthy service",
                    source.name
                ),
            );
        }
        fits_on(&cluster, &service, spec, target)?;
        let begun = self.moves.begin(name, name, source, target).await?;
        // The gateway stops sending requests to the instance now, before its worker stops it.
        let cluster = self.cluster().await?;
        self.publish_routes(&cluster, &HashSet::new());
        Ok(begun)
    }

    /// Backs up volume `name` now (admin's on-demand backup).
    pub async fn backup_volume(&self, name: &str) -> ApiResult<crate::model::Backup> {
        let cluster = self.cluster().await?;
        let record = cluster.volume(name).ok_or_else(|| {
            ApiError::not_found("volume_not_found", format!("no volume {name:?}"))
        })?;
        let holder = cluster
            .workers
            .iter()
            .find(|w| w.id.to_string() == record.worker_id && w.status == WorkerStatus::Live);
        let holder = holder.ok_or_else(|| {
            ApiError::conflict(
                "holder_lost",
                format!(
                    "the worker holding volume {name} is not live; a backup is made from its copy"
                ),
            )
        })?;
        self.backups.backup_now(name, &record.service, holder).await
    }

    /// Restores stateful service `name` from one of its backups onto a worker (see
    /// [`super::moves`]): the admin's path when the worker holding its volume is gone.
    pub async fn restore_service(
        &self,
        name: &str,
        req: crate::model::RestoreRequest,
    ) -> ApiResult<VolumeMove> {
        let service = self.catalog.get(name).await?;
        let _one_at_a_time = self.placement.lock().await;
        let cluster = self.cluster().await?;
        let refuse = |code: &str, m: String| Err(ApiError::conflict(code, m));
        let Some(spec) = service
            .deployment
            .as_ref()
            .filter(|_| service.enabled && service.stateful)
        else {
            return Err(ApiError::bad_request(
                "not_restorable",
                format!("{name} is not an enabled stateful service"),
            ));
        };
        let target = cluster
            .workers
            .iter()
            .find(|w| w.id == req.worker_id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "worker_not_found",
                    format!("worker_id: no worker {}", req.worker_id),
                )
            })?;
        if target.status != WorkerStatus::Live {
            return refuse("target_lost", format!("worker {} is lost", target.name));
        }
        let Some(holder) = cluster
            .volume(name)
            .and_then(|v| Uuid::parse_str(&v.worker_id).ok())
        else {
            return refuse(
                "volume_not_found",
                format!("{name} has no volume record; deploy it first"),
            );
        };
        let holder_live = cluster
            .workers
            .iter()
            .any(|w| w.id == holder && w.status == WorkerStatus::Live);
        if holder_live && target.id == holder {
            return refuse(
                "restore_over_current_copy",
                format!(
                    "worker {} holds {name}'s current data; restore onto another worker (the current copy is kept)",
                    target.name
                ),
            );
        }
        if !spec.worker_ids.is_empty() && !spec.worker_ids.contains(&target.id) {
            return refuse(
                "move_outside_deployment",
                format!(
                    "{name}'s deployment allows only workers {:?}",
                    spec.worker_ids
                ),
            );
        }
        fits_on(&cluster, &service, spec, target)?;
        let (source, store) = self.backups.source_for_restore(req.backup_id, name).await?;
        let begun = self
            .moves
            .begin_restore(name, name, holder, holder_live, target, source, store.id)
            .await?;
        let cluster = self.cluster().await?;
        self.publish_routes(&cluster, &HashSet::new());
        Ok(begun)
    }

    /// The service's deployment and instances.
    pub async fn deployment(&self, name: &str) -> ApiResult<Deployment> {
        let service = self.catalog.get(name).await?;
        let instances = self.instances.for_service(name).await?;
        let waiting_for_volume = if service.stateful && service.enabled {
            let records = self.volumes.records().await?;
            let only = service
                .deployment
                .as_ref()
                .map_or(&[][..], |d| &d.worker_ids[..]);
            match volumes::site(
                name,
                records.iter().find(|v| v.name == name),
                &self.workers.snapshot(),
                only,
                false,
            ) {
                Site::Wait(wait) => Some(*wait),
                _ => None,
            }
        } else {
            None
        };
        let mut waiting_for = vec![];
        if service.enabled {
            for dep in &service.depends_on {
                if !self
                    .instances
                    .for_service(dep)
                    .await?
                    .iter()
                    .any(|i| i.health == InstanceHealth::Healthy)
                {
                    waiting_for.push(dep.clone());
                }
            }
        }
        Ok(Deployment {
            service: service.name.clone(),
            enabled: service.enabled,
            spec: service.deployment,
            load_balancing: service.load_balancing,
            healthy: instances
                .iter()
                .filter(|i| i.health == InstanceHealth::Healthy)
                .count() as u32,
            waiting_for,
            problem: self
                .problems
                .lock()
                .expect("problems lock")
                .get(name)
                .cloned(),
            waiting_for_volume,
            instances,
        })
    }

    /// One pass of the loop: replace, trim, place what waited, stop what is disabled; then rebuild
    /// the routes.
    pub async fn tick(&self) -> ApiResult<()> {
        let guard = self.placement.lock().await;
        self.moves.advance().await?;
        self.backups.advance().await?;
        let mut cluster = self.cluster().await?;
        self.backups
            .schedule(&cluster.services, &cluster.volumes, &cluster.workers)
            .await?;
        let services = cluster.services.clone();
        let mut placed = vec![];
        let mut removed = vec![];
        let mut volume_rows = vec![];
        let mut problems = HashMap::new();
        // (A disabled service's instances went in the same transaction that disabled it.)
        for service in dependency_order(&services) {
            let Some(spec) = service.deployment.as_ref().filter(|_| service.enabled) else {
                continue;
            };
            match self.reconcile(&mut cluster, service, spec, false) {
                Ok(outcome) => {
                    placed.extend(
                        outcome
                            .place
                            .into_iter()
                            .map(|(w, i)| (w, Some(service.name.clone()), i)),
                    );
                    removed.extend(outcome.remove);
                    volume_rows.extend(outcome.volumes);
                    if let Some(wait) = outcome.volume_wait {
                        problems.insert(service.name.clone(), wait);
                    }
                }
                Err(why) => {
                    problems.insert(service.name.clone(), why);
                }
            }
        }
        {
            let mut known = self.problems.lock().expect("problems lock");
            for (name, why) in &problems {
                if known.get(name) != Some(why) {
                    tracing::warn!(service = %name, problem = %why, "cannot place the instances a service is missing");
                }
            }
            *known = problems;
        }
        if !placed.is_empty() || !removed.is_empty() || !volume_rows.is_empty() {
            self.instances
                .apply(&self.catalog, &[], placed, &removed, &volume_rows)
                .await?;
        }
        drop(guard);
        let gone: HashSet<Uuid> = removed.iter().map(|i| i.id).collect();
        self.publish_routes(&cluster, &gone);
        Ok(())
    }

    /// Rebuilds every service's route.
    fn publish_routes(&self, cluster: &Cluster, gone: &HashSet<Uuid>) {
        let specs = self.route_specs(cluster, gone, |_| true);
        self.routes.replace(specs);
    }

    /// Rebuilds the routes of the services in `changed` only (what a deploy touched).
    fn publish_routes_of(&self, cluster: &Cluster, gone: &HashSet<Uuid>, changed: &[&str]) {
        let specs = self.route_specs(cluster, gone, |s| changed.contains(&s));
        self.routes.update(specs);
    }

    fn route_specs(
        &self,
        cluster: &Cluster,
        gone: &HashSet<Uuid>,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<RouteSpec> {
        // Grouped once: matching every service against every instance was most of a deploy's
        // CPU with a thousand of each.
        let mut healthy: HashMap<&str, Vec<&Instance>> = HashMap::new();
        for i in &cluster.instances {
            if let Some(service) = i.service.as_deref()
                && wanted(service)
                && i.health == InstanceHealth::Healthy
                && !gone.contains(&i.id)
            {
                healthy.entry(service).or_default().push(i);
            }
        }
        cluster
            .services
            .iter()
            .filter(|s| wanted(&s.name))
            .map(|s| RouteSpec {
                service: s.name.clone(),
                load_balancing: s.load_balancing,
                // Why a stateful service has no endpoint: it is being moved, or its volume's
                // worker is away.
                unavailable: match (self.moves.under_way(&s.name), s.stateful.then(|| cluster.site(s, &[], false))) {
                    (Some((_, target)), _) => Some(Unavailable {
                        code: "service_moving",
                        message: format!("it is being moved, with its data, to worker {target}; it answers again once the move is done"),
                    }),
                    (None, Some(Site::Wait(wait))) => Some(Unavailable { code: "volume_unavailable", message: wait.message }),
                    _ => None,
                },
                endpoints: healthy
                    .get(s.name.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| Some((i.id, i.worker_id, i.address.clone()?, i.spec.tls)))
                    .collect(),
            })
            .collect()
    }
}

/// Whether one instance of `service` fits on `target`, as the scheduler would place it there (a
/// move's or a restore's destination); 409 naming what is short otherwise.
fn fits_on(
    cluster: &Cluster,
    service: &Service,
    spec: &DeploymentSpec,
    target: &Worker,
) -> ApiResult<()> {
    let mut candidates = cluster.candidates(&service.name);
    candidates.retain(|c| c.id == target.id);
    let drivers = usable_drivers(service, spec.driver);
    let request = scheduler::Request {
        count: 1,
        resources: spec.resources,
        worker_ids: &[],
        labels: &spec.labels,
        strategy: spec.strategy,
        drivers: &drivers,
    };
    scheduler::place(&mut candidates, &request)
        .map(|_| ())
        .map_err(|short| {
            ApiError::conflict(
                "insufficient_resources",
                format!(
                    "{} does not fit on worker {}: {}",
                    service.name, target.name, short.message
                ),
            )
        })
}

/// `service` and, depth first, everything it depends on (dependencies before dependents).
fn collect_dependencies(all: &[Arc<Service>], service: &Service, out: &mut Vec<Service>) {
    if out.iter().any(|s| s.name == service.name) {
        return;
    }
    for dep in &service.depends_on {
        if let Some(d) = all.iter().find(|s| &s.name == dep) {
            collect_dependencies(all, d, out);
        }
    }
    out.push(service.clone());
}
