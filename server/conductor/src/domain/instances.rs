//! Instances: what runs where. An admin (and, later, the scheduler) assigns instances to workers;
//! each worker fetches its assignments, runs them, and reports their state back.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use tokio::sync::watch;
use uuid::Uuid;

use super::{from_ms, scheduler, workers::WorkerService};
use crate::{
    model::{
        Assignments, BackupJob, CreateInstanceRequest, DesiredState, ExecAssignment, Instance,
        InstanceHealth, InstanceSpec, InstanceState, InstanceStatusReport, VolumeTransfer,
    },
    store::{
        Db,
        instances::{self, InstanceRow},
        now_ms,
        services::{self, DeploymentUpdate},
        volumes::{self, VolumeRow},
    },
};

/// The driver that runs an instance: the one its spec names, else docker for an image and
/// process for a command.
pub fn driver_of(spec: &crate::model::InstanceSpec) -> crate::model::DriverKind {
    use crate::model::DriverKind;
    spec.driver.unwrap_or(if spec.image.is_some() {
        DriverKind::Docker
    } else {
        DriverKind::Process
    })
}

pub struct InstanceService {
    db: Db,
    workers: Arc<WorkerService>,
    /// Per-worker assignment versions, so a worker can wait for a change instead of polling.
    /// They start from the conductor's start time, so versions from before a restart never match.
    versions: Mutex<HashMap<Uuid, u64>>,
    base_version: u64,
    /// Ticks on every change of any worker's assignments; waiters re-check their own version.
    changed: watch::Sender<u64>,
    /// Set at shutdown: waits end at once, so a graceful shutdown is not held up by them.
    closing: std::sync::atomic::AtomicBool,
    /// Woken by every status report on a service's instance, so the deployment loop reacts at once.
    pub reported: tokio::sync::Notify,
    /// Per worker, the volume work of moves under way (set by the move service).
    volume_work: Mutex<HashMap<Uuid, VolumeWork>>,
}

/// What a worker is told to do beside running its instances: fetch volumes, delete others, back
/// some up, run commands in sandboxes.
#[derive(Default, Clone, PartialEq, Eq)]
struct VolumeWork {
    transfers: Vec<VolumeTransfer>,
    releases: Vec<String>,
    backup_jobs: Vec<BackupJob>,
    sandbox_execs: Vec<ExecAssignment>,
}

/// The longest a worker's wait for new assignments is held open.
pub const MAX_ASSIGNMENT_WAIT: Duration = Duration::from_secs(60);

fn state_name(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Pending => "pending",
        InstanceState::Starting => "starting",
        InstanceState::Running => "running",
        InstanceState::Unhealthy => "unhealthy",
        InstanceState::Exited => "exited",
        InstanceState::Failed => "failed",
        InstanceState::Stopped => "stopped",
    }
}

fn parse_state(s: &str) -> InstanceState {
    match s {
        "starting" => InstanceState::Starting,
        "running" => InstanceState::Running,
        "unhealthy" => InstanceState::Unhealthy,
        "exited" => InstanceState::Exited,
        "failed" => InstanceState::Failed,
        "stopped" => InstanceState::Stopped,
        _ => InstanceState::Pending,
    }
}

pub fn validate_spec(spec: &InstanceSpec) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_spec", m));
    match (&spec.image, &spec.command) {
        (None, None) => {
            return bad("give an image (docker driver) or a command (process driver)".into());
        }
        (_, Some(cmd)) if cmd[0].trim().is_empty() => {
            return bad("command must name a program".into());
        }
        (Some(image), _) if image.trim().is_empty() => return bad("image must not be empty".into()),
        _ => {}
    }
    if spec.ports.len() > 32 || spec.ports.contains(&0) {
        return bad("ports: at most 32, each 1–65535".into());
    }
    for key in spec.env.keys() {
        let ok = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return bad(format!(
                "environment variable name {key:?} must be letters, digits and '_', not starting with a digit"
            ));
        }
    }
    if spec
        .health_path
        .as_ref()
        .is_some_and(|p| !p.starts_with('/'))
    {
        return bad("health_path must start with '/'".into());
    }
    if spec.health_path.is_some() && spec.ports.is_empty() {
        return bad("a health_path needs a port to probe".into());
    }
    if spec.volume.as_ref().is_some_and(|v| {
        v.is_empty()
            || v.len() > 64
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    }) {
        return bad("volume must be 1–64 of letters, digits, '_' and '-'".into());
    }
    Ok(())
}

impl InstanceService {
    pub fn new(db: Db, workers: Arc<WorkerService>) -> Self {
        let base_version = u64::try_from(now_ms()).unwrap_or(1);
        Self {
            db,
            workers,
            versions: Mutex::new(HashMap::new()),
            base_version,
            changed: watch::channel(0).0,
            closing: std::sync::atomic::AtomicBool::new(false),
            reported: tokio::sync::Notify::new(),
            volume_work: Mutex::default(),
        }
    }

    /// Ends every wait for assignments (the conductor is shutting down).
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
    }

    fn version(&self, worker_id: Uuid) -> u64 {
        *self
            .versions
            .lock()
            .expect("versions lock")
            .get(&worker_id)
            .unwrap_or(&self.base_version)
    }

    /// Replaces every worker's moves work (transfers and releases); workers whose work changed
    /// are woken.
    pub fn set_volume_work(
        &self,
        mut transfers: HashMap<Uuid, Vec<VolumeTransfer>>,
        mut releases: HashMap<Uuid, Vec<String>>,
    ) {
        let workers: Vec<Uuid> = transfers.keys().chain(releases.keys()).copied().collect();
        self.change_work_for(&workers, |worker, work| {
            work.transfers = transfers.remove(&worker).unwrap_or_default();
            work.releases = releases.remove(&worker).unwrap_or_default();
        });
    }

    /// Replaces every worker's backup jobs; workers whose jobs changed are woken.
    pub fn set_backup_jobs(&self, mut jobs: HashMap<Uuid, Vec<BackupJob>>) {
        let workers: Vec<Uuid> = jobs.keys().copied().collect();
        self.change_work_for(&workers, |worker, work| {
            work.backup_jobs = jobs.remove(&worker).unwrap_or_default()
        });
    }

    /// Replaces every worker's sandbox execs; workers whose execs changed are woken.
    pub fn set_sandbox_execs(&self, mut execs: HashMap<Uuid, Vec<ExecAssignment>>) {
        let workers: Vec<Uuid> = execs.keys().copied().collect();
        self.change_work_for(&workers, |worker, work| {
            work.sandbox_execs = execs.remove(&worker).unwrap_or_default()
        });
    }

    /// Applies `set` to the work of every worker that has some, and of `also`.
    fn change_work_for(&self, also: &[Uuid], mut set: impl FnMut(Uuid, &mut VolumeWork)) {
        let mut work = self.volume_work.lock().expect("volume work lock");
        let workers: BTreeSet<Uuid> = work.keys().chain(also).copied().collect();
        let mut changed = vec![];
        for w in workers {
            let entry = work.entry(w).or_default();
            let before = entry.clone();
            set(w, entry);
            if *entry != before {
                changed.push(w);
            }
        }
        work.retain(|_, v| *v != VolumeWork::default());
        drop(work);
        for w in changed {
            self.bump(w);
        }
    }

    /// Wakes `worker_id`'s wait for assignments: they changed.
    pub fn bump(&self, worker_id: Uuid) {
        let mut versions = self.versions.lock().expect("versions lock");
        let v = versions.entry(worker_id).or_insert(self.base_version);
        *v += 1;
        drop(versions);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The worker's assignments; when `after_version` is its current version, first waits up to
    /// `wait` for a change (a long poll).
    pub async fn assignments(
        &self,
        worker_id: Uuid,
        after_version: Option<u64>,
        wait: Duration,
    ) -> ApiResult<Assignments> {
        if wait > MAX_ASSIGNMENT_WAIT {
            return Err(ApiError::bad_request(
                "invalid_wait",
                format!("wait_secs is at most {}", MAX_ASSIGNMENT_WAIT.as_secs()),
            ));
        }
        if let Some(known) = after_version {
            let mut changes = self.changed.subscribe();
            let deadline = tokio::time::Instant::now() + wait;
            while self.version(worker_id) == known
                && !self.closing.load(std::sync::atomic::Ordering::SeqCst)
            {
                if tokio::time::timeout_at(deadline, changes.changed())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        let version = self.version(worker_id);
        let work = self
            .volume_work
            .lock()
            .expect("volume work lock")
            .get(&worker_id)
            .cloned()
            .unwrap_or_default();
        Ok(Assignments {
            version,
            instances: self.for_worker(worker_id).await?,
            volume_transfers: work.transfers,
            release_volumes: work.releases,
            backup_jobs: work.backup_jobs,
            sandbox_execs: work.sandbox_execs,
        })
    }

    /// Assigns a new instance to `worker_id` (which the caller has checked exists).
    pub async fn create(
        &self,
        worker_id: Uuid,
        mut req: CreateInstanceRequest,
    ) -> ApiResult<Instance> {
        // An empty command is no command (clients may send `[]` for "use the image's").
        req.spec.command = req.spec.command.filter(|c| !c.is_empty());
        validate_spec(&req.spec)?;
        if let Some(service) = &req.service {
            if services::get(&self.db, service)
                .await
                .map_err(ApiError::internal)?
                .is_none()
            {
                return Err(ApiError::not_found(
                    "service_not_found",
                    format!("no service {service:?} in the catalog"),
                ));
            }
        }
        let row = new_row(worker_id, req.service, &req.spec, now_ms())?;
        instances::insert(&self.db, &row)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => ApiError::not_found(
                    "worker_not_found",
                    format!("no worker with id {worker_id}"),
                ),
                _ => ApiError::internal(e),
            })?;
        self.bump(worker_id);
        tracing::info!(instance_id = %row.id, worker_id = %worker_id, "instance assigned");
        self.to_model(row)
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Instance> {
        let row = instances::get(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?;
        self.to_model(row.ok_or_else(|| {
            ApiError::not_found("instance_not_found", format!("no instance with id {id}"))
        })?)
    }

    pub async fn for_worker(&self, worker_id: Uuid) -> ApiResult<Vec<Instance>> {
        let rows = instances::for_worker(&self.db, &worker_id.to_string())
            .await
            .map_err(ApiError::internal)?;
        rows.into_iter().map(|r| self.to_model(r)).collect()
    }

    pub async fn for_service(&self, service: &str) -> ApiResult<Vec<Instance>> {
        let rows = instances::for_service(&self.db, service)
            .await
            .map_err(ApiError::internal)?;
        rows.into_iter().map(|r| self.to_model(r)).collect()
    }

    /// The live workers that have checked in since this conductor started (one in its grace
    /// after the start, not heard from yet, may be gone), as the scheduler sees them, with what
    /// their instances reserve (summed in SQLite, not read back instance by instance): where the
    /// job queue and sandboxes place.
    pub async fn checked_in_candidates(&self) -> ApiResult<Vec<scheduler::Candidate>> {
        let reserved: HashMap<Uuid, scheduler::Amounts> = instances::reservations(&self.db)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .filter_map(|(worker, cpu, memory, disk)| {
                let amounts = scheduler::Amounts {
                    cpu: cpu.max(0) as u64,
                    memory: memory.max(0) as u64,
                    disk: disk.max(0) as u64,
                };
                Some((Uuid::parse_str(&worker).ok()?, amounts))
            })
            .collect();
        Ok(self
            .workers
            .snapshot()
            .iter()
            .filter(|w| w.status == crate::model::WorkerStatus::Live && self.workers.checked_in(w))
            .map(|w| scheduler::candidate(w, reserved.get(&w.id).copied().unwrap_or_default(), 0))
            .collect())
    }

    /// Every instance of the cluster.
    pub async fn all(&self) -> ApiResult<Vec<Instance>> {
        let rows = instances::all(&self.db).await.map_err(ApiError::internal)?;
        rows.into_iter().map(|r| self.to_model(r)).collect()
    }

    /// Commits a deployment change in one transaction: services' new deployment state, instances
    /// placed, instances removed. Then the workers concerned are woken.
    /// Volume records (a stateful service's fresh or adopted volume) are written in the same
    /// transaction as the placement that uses them.
    pub async fn apply(
        &self,
        updates: &[DeploymentUpdate<'_>],
        placed: Vec<(Uuid, Option<String>, InstanceSpec)>,
        removed: &[Instance],
        volume_records: &[VolumeRow],
    ) -> ApiResult<Vec<Instance>> {
        let now = now_ms();
        let mut rows = Vec::with_capacity(placed.len());
        for (worker_id, service, spec) in placed {
            validate_spec(&spec)?;
            rows.push(new_row(worker_id, service, &spec, now)?);
        }
        let commit = async {
            let mut tx = self.db.write.begin().await?;
            services::update_deployments(&mut tx, updates).await?;
            for row in &rows {
                instances::insert_in(&mut tx, row).await?;
            }
            for inst in removed {
                instances::delete_in(&mut tx, &inst.id.to_string()).await?;
            }
            for record in volume_records {
                volumes::upsert_in(&mut tx, record).await?;
            }
            tx.commit().await
        };
        commit.await.map_err(ApiError::internal)?;
        let touched: BTreeSet<Uuid> = rows
            .iter()
            .filter_map(|r| Uuid::parse_str(&r.worker_id).ok())
            .chain(removed.iter().map(|i| i.worker_id))
            .collect();
        for worker in touched {
            self.bump(worker);
        }
        for row in &rows {
            tracing::info!(instance_id = %row.id, worker_id = %row.worker_id, service = ?row.service, "instance placed");
        }
        for inst in removed {
            tracing::info!(instance_id = %inst.id, worker_id = %inst.worker_id, service = ?inst.service, "instance removed");
        }
        rows.into_iter().map(|r| self.to_model(r)).collect()
    }

    /// Removes the instance; its worker stops it when it next fetches its assignments.
    pub async fn remove(&self, id: Uuid) -> ApiResult<()> {
        let worker = instances::get(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?
            .map(|r| r.worker_id);
        if instances::delete(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?
        {
            if let Some(worker) = worker.and_then(|w| Uuid::parse_str(&w).ok()) {
                self.bump(worker);
            }
            tracing::info!(instance_id = %id, "instance removed");
            Ok(())
        } else {
            Err(ApiError::not_found(
                "instance_not_found",
                format!("no instance with id {id}"),
            ))
        }
    }

    pub async fn report(
        &self,
        worker_id: Uuid,
        instance_id: Uuid,
        report: InstanceStatusReport,
    ) -> ApiResult<()> {
        let recorded = instances::report(
            &self.db,
            &instance_id.to_string(),
            &worker_id.to_string(),
            state_name(report.state),
            report.address.as_deref(),
            report.exit_code.map(i64::from),
            report.reason.as_deref(),
            i64::from(report.restarts),
        )
        .await
        .map_err(ApiError::internal)?;
        if let Some(service) = recorded {
            // The deployment loop keeps services; a job's attempt is the job queue's.
            if service.is_some() {
                self.reported.notify_one();
            }
            Ok(())
        } else {
            Err(ApiError::not_found(
                "instance_not_found",
                format!("instance {instance_id} is not assigned to worker {worker_id}; stop it"),
            ))
        }
    }
}

impl InstanceService {
    fn to_model(&self, row: InstanceRow) -> ApiResult<Instance> {
        let worker_id = Uuid::parse_str(&row.worker_id).map_err(ApiError::internal)?;
        let state = parse_state(&row.state);
        let desired_state = if row.desired_state == "stopped" {
            DesiredState::Stopped
        } else {
            DesiredState::Running
        };
        let health = if !self.workers.is_live(worker_id) {
            InstanceHealth::Lost
        } else {
            health_of(desired_state, state)
        };
        to_model(row, worker_id, state, desired_state, health)
    }
}

/// A freshly assigned instance: to run, not picked up yet.
pub(crate) fn new_row(
    worker_id: Uuid,
    service: Option<String>,
    spec: &InstanceSpec,
    now: i64,
) -> ApiResult<InstanceRow> {
    Ok(InstanceRow {
        id: Uuid::new_v4().to_string(),
        worker_id: worker_id.to_string(),
        service,
        spec: serde_json::to_string(spec).map_err(ApiError::internal)?,
        desired_state: "running".into(),
        state: "pending".into(),
        address: None,
        exit_code: None,
        reason: None,
        restarts: 0,
        created_at: now,
        updated_at: now,
    })
}

fn health_of(desired: DesiredState, state: InstanceState) -> InstanceHealth {
    match (desired, state) {
        (DesiredState::Stopped, _) | (_, InstanceState::Stopped) => InstanceHealth::Stopped,
        (_, InstanceState::Running) => InstanceHealth::Healthy,
        (_, InstanceState::Pending | InstanceState::Starting) => InstanceHealth::Starting,
        (_, InstanceState::Unhealthy | InstanceState::Exited | InstanceState::Failed) => {
            InstanceHealth::Unhealthy
        }
    }
}

fn to_model(
    row: InstanceRow,
    worker_id: Uuid,
    state: InstanceState,
    desired_state: DesiredState,
    health: InstanceHealth,
) -> ApiResult<Instance> {
    Ok(Instance {
        id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
        worker_id,
        service: row.service,
        spec: serde_json::from_str(&row.spec).map_err(ApiError::internal)?,
        desired_state,
        state,
        health,
        address: row.address,
        exit_code: row.exit_code.map(|c| c as i32),
        reason: row.reason,
        restarts: u32::try_from(row.restarts).unwrap_or(u32::MAX),
        created_at: from_ms(row.created_at),
        updated_at: from_ms(row.updated_at),
    })
}
