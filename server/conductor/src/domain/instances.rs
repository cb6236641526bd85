//! Instances: what runs where. An admin (and, later, the scheduler) assigns instances to workers;
//! each worker fetches its assignments, runs them, and reports their state back.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use tokio::sync::{MappedMutexGuard, watch};
use uuid::Uuid;

use super::{
    catalog::CatalogService, from_ms, memory_table::MemoryTable, scheduler, workers::WorkerService,
};
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
    /// Every instance, in the order they were created; SQLite is the durable copy. Health is
    /// worked out at each read, from the worker's liveness then.
    table: MemoryTable<Vec<Arc<Instance>>>,
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
            table: MemoryTable::default(),
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
            self.wake(w);
        }
    }

    /// Says that `worker_id`'s instances changed in a transaction committed elsewhere (a volume
    /// move's, which stops and deletes a service's instances by worker): the table is read again,
    /// and the worker's wait for assignments woken. Frequent writers (the job queue, sandboxes)
    /// use [`InstanceService::begin`] instead, which keeps the table in memory.
    pub fn bump(&self, worker_id: Uuid) {
        self.table.invalidate();
        self.wake(worker_id);
    }

    /// Instances changed elsewhere, on no worker in particular: the table is read again.
    pub fn invalidate(&self) {
        self.table.invalidate();
    }

    /// Wakes `worker_id`'s wait for assignments: they changed.
    fn wake(&self, worker_id: Uuid) {
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
        let instance = self.to_model(row.clone())?;
        let mut changes = self.begin().await?;
        instances::insert_in(&mut changes.tx, &row)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => ApiError::not_found(
                    "worker_not_found",
                    format!("no worker with id {worker_id}"),
                ),
                _ => ApiError::internal(e),
            })?;
        changes.inserted(&row)?;
        changes.commit().await?;
        tracing::info!(instance_id = %instance.id, worker_id = %worker_id, "instance assigned");
        Ok(instance)
    }

    /// Begins a transaction that inserts or deletes instances (see [`InstanceChanges`]). SQLite's
    /// write connection is always taken before the instance table, never the other way round.
    pub async fn begin(&self) -> ApiResult<InstanceChanges<'_>> {
        Ok(InstanceChanges {
            service: self,
            tx: self.db.write.begin().await.map_err(ApiError::internal)?,
            inserted: vec![],
            deleted: HashSet::new(),
            touched: BTreeSet::new(),
        })
    }

    /// The instance table, read from SQLite first if it is not in memory or changed elsewhere.
    async fn table(&self) -> ApiResult<MappedMutexGuard<'_, Vec<Arc<Instance>>>> {
        self.table
            .lock(|| async {
                let rows = instances::all(&self.db).await.map_err(ApiError::internal)?;
                rows.into_iter()
                    .map(|r| self.to_model(r).map(Arc::new))
                    .collect()
            })
            .await
    }

    /// Every instance, shared rather than copied (placement reads them all at each deploy), with
    /// its health as of now.
    pub async fn snapshot(&self) -> ApiResult<Vec<Arc<Instance>>> {
        let live = self.workers.live_ids();
        Ok(self
            .table()
            .await?
            .iter()
            .map(|i| {
                let health = if live.contains(&i.worker_id) {
                    health_of(i.desired_state, i.state)
                } else {
                    InstanceHealth::Lost
                };
                if health == i.health {
                    i.clone()
                } else {
                    Arc::new(self.with_health(Instance::clone(i)))
                }
            })
            .collect())
    }

    /// The instances `keep` selects, with their health as of now.
    async fn select(&self, keep: impl Fn(&Instance) -> bool) -> ApiResult<Vec<Instance>> {
        Ok(self
            .table()
            .await?
            .iter()
            .filter(|i| keep(i))
            .map(|i| self.with_health(Instance::clone(i)))
            .collect())
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Instance> {
        self.select(|i| i.id == id).await?.pop().ok_or_else(|| {
            ApiError::not_found("instance_not_found", format!("no instance with id {id}"))
        })
    }

    pub async fn for_worker(&self, worker_id: Uuid) -> ApiResult<Vec<Instance>> {
        self.select(|i| i.worker_id == worker_id).await
    }

    pub async fn for_service(&self, service: &str) -> ApiResult<Vec<Instance>> {
        self.select(|i| i.service.as_deref() == Some(service)).await
    }

    /// The live workers that have checked in since this conductor started (one in its grace
    /// after the start, not heard from yet, may be gone), as the scheduler sees them, with what
    /// their instances reserve: where the job queue and sandboxes place.
    pub async fn checked_in_candidates(&self) -> ApiResult<Vec<scheduler::Candidate>> {
        let reserved = scheduler::reservations(&self.table().await?);
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
        self.select(|_| true).await
    }

    /// Commits a deployment change in one transaction: services' new deployment state, instances
    /// placed, instances removed. Then the workers concerned are woken.
    /// Volume records (a stateful service's fresh or adopted volume) are written in the same
    /// transaction as the placement that uses them.
    pub async fn apply(
        &self,
        catalog: &CatalogService,
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
        let placed: Vec<Instance> = rows
            .iter()
            .map(|r| self.to_model(r.clone()))
            .collect::<ApiResult<_>>()?;
        let write = async {
            let mut tx = self.db.write.begin().await?;
            services::update_deployments(&mut tx, updates, now).await?;
            for row in &rows {
                instances::insert_in(&mut tx, row).await?;
            }
            for inst in removed {
                instances::delete_in(&mut tx, &inst.id.to_string()).await?;
            }
            for record in volume_records {
                volumes::upsert_in(&mut tx, record).await?;
            }
            Ok::<_, sqlx::Error>(tx)
        };
        let tx = write.await.map_err(ApiError::internal)?;
        // Both tables are held across the commit, so neither can be read between the file and
        // memory (the catalog's lock is always taken after this one).
        let mut table = self.table().await?;
        let mut services_table = catalog.table().await?;
        tx.commit().await.map_err(ApiError::internal)?;
        catalog.updated(&mut services_table, updates, now);
        drop(services_table);
        let gone: HashSet<Uuid> = removed.iter().map(|i| i.id).collect();
        table.retain(|i| !gone.contains(&i.id));
        table.extend(placed.iter().cloned().map(Arc::new));
        in_creation_order(&mut table);
        drop(table);
        let touched: BTreeSet<Uuid> = placed
            .iter()
            .map(|i| i.worker_id)
            .chain(removed.iter().map(|i| i.worker_id))
            .collect();
        for worker in touched {
            self.wake(worker);
        }
        for inst in &placed {
            tracing::info!(instance_id = %inst.id, worker_id = %inst.worker_id, service = ?inst.service, "instance placed");
        }
        for inst in removed {
            tracing::info!(instance_id = %inst.id, worker_id = %inst.worker_id, service = ?inst.service, "instance removed");
        }
        Ok(placed)
    }

    /// Removes the instance; its worker stops it when it next fetches its assignments.
    pub async fn remove(&self, id: Uuid) -> ApiResult<()> {
        let instance = self.get(id).await?;
        let mut changes = self.begin().await?;
        if !instances::delete_in(&mut changes.tx, &id.to_string())
            .await
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::not_found(
                "instance_not_found",
                format!("no instance with id {id}"),
            ));
        }
        changes.deleted(&id.to_string(), &instance.worker_id.to_string())?;
        changes.commit().await?;
        tracing::info!(instance_id = %id, "instance removed");
        Ok(())
    }

    pub async fn report(
        &self,
        worker_id: Uuid,
        instance_id: Uuid,
        report: InstanceStatusReport,
    ) -> ApiResult<()> {
        let at = now_ms();
        let mut tx = self.db.write.begin().await.map_err(ApiError::internal)?;
        let recorded = instances::report(
            &mut tx,
            &instance_id.to_string(),
            &worker_id.to_string(),
            state_name(report.state),
            report.address.as_deref(),
            report.exit_code.map(i64::from),
            report.reason.as_deref(),
            i64::from(report.restarts),
            at,
        )
        .await
        .map_err(ApiError::internal)?;
        let Some(service) = recorded else {
            return Err(ApiError::not_found(
                "instance_not_found",
                format!("instance {instance_id} is not assigned to worker {worker_id}; stop it"),
            ));
        };
        // Held from before the commit until memory matches it, and only for that, so a report
        // never keeps readers waiting for the write connection.
        let mut table = self.table().await?;
        tx.commit().await.map_err(ApiError::internal)?;
        if let Some(inst) = table
            .iter_mut()
            .find(|i| i.id == instance_id && i.worker_id == worker_id)
        {
            let inst = Arc::make_mut(inst);
            inst.state = report.state;
            inst.address = report.address;
            inst.exit_code = report.exit_code;
            inst.reason = report.reason;
            inst.restarts = report.restarts;
            inst.updated_at = from_ms(at);
        }
        drop(table);
        // The deployment loop keeps services; a job's attempt is the job queue's.
        if service.is_some() {
            self.reported.notify_one();
        }
        Ok(())
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
        let health = self.health(worker_id, desired_state, state);
        to_model(row, worker_id, state, desired_state, health)
    }

    /// `instance` with its health as of now (its worker may have been lost since it was read).
    fn with_health(&self, mut instance: Instance) -> Instance {
        instance.health = self.health(instance.worker_id, instance.desired_state, instance.state);
        instance
    }

    fn health(
        &self,
        worker_id: Uuid,
        desired: DesiredState,
        state: InstanceState,
    ) -> InstanceHealth {
        if self.workers.is_live(worker_id) {
            health_of(desired, state)
        } else {
            InstanceHealth::Lost
        }
    }
}

/// A transaction of another domain service's (the job queue's, a sandbox's) that inserts or
/// deletes instance rows, begun with [`InstanceService::begin`]. Its writer records each row it
/// inserts or deletes; [`InstanceChanges::commit`] commits with the instance table held and makes
/// the same changes in memory, so the table is not read again and no reader sees one without the
/// other. Dropped without a commit, it rolls back and memory is untouched.
pub struct InstanceChanges<'a> {
    service: &'a InstanceService,
    pub tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    inserted: Vec<Arc<Instance>>,
    deleted: HashSet<Uuid>,
    /// The workers whose assignments change: woken after the commit.
    touched: BTreeSet<Uuid>,
}

impl InstanceChanges<'_> {
    /// `row` is inserted in this transaction.
    pub fn inserted(&mut self, row: &InstanceRow) -> ApiResult<()> {
        let instance = self.service.to_model(row.clone())?;
        self.touched.insert(instance.worker_id);
        self.inserted.push(Arc::new(instance));
        Ok(())
    }

    /// Instance `id` (on `worker_id`) is deleted in this transaction, if it was there.
    pub fn deleted(&mut self, id: &str, worker_id: &str) -> ApiResult<()> {
        self.deleted
            .insert(Uuid::parse_str(id).map_err(ApiError::internal)?);
        self.touched
            .insert(Uuid::parse_str(worker_id).map_err(ApiError::internal)?);
        Ok(())
    }

    /// Commits, brings the table in memory up to it, and wakes the workers concerned.
    pub async fn commit(self) -> ApiResult<()> {
        let Self {
            service,
            tx,
            inserted,
            deleted,
            touched,
        } = self;
        let mut table = service.table().await?;
        tx.commit().await.map_err(ApiError::internal)?;
        if !deleted.is_empty() {
            table.retain(|i| !deleted.contains(&i.id));
        }
        if !inserted.is_empty() {
            table.extend(inserted);
            in_creation_order(&mut table);
        }
        drop(table);
        for worker in touched {
            service.wake(worker);
        }
        Ok(())
    }
}

/// Sorts the table as SQLite lists it (`ORDER BY created_at, id`), so what the cluster reads does
/// not depend on whether the table was just loaded.
fn in_creation_order(table: &mut [Arc<Instance>]) {
    table.sort_by_key(|i| (i.created_at, i.id));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::workers::{WorkerReport, insert as insert_worker};

    /// An instance service over a fresh database with one worker in it.
    async fn service(dir: &std::path::Path) -> (InstanceService, Uuid) {
        let db = Db::open(&dir.join("c.db"), &crate::store::MIGRATIONS)
            .await
            .unwrap();
        let worker = Uuid::new_v4();
        let report = WorkerReport {
            name: "w1",
            hostname: "h1",
            ip_address: "10.0.0.1",
            labels_json: "{}",
            resources: Default::default(),
            resources_json: r#"{"cpu_cores":2,"cpu_usage_percent":0,"memory_total_bytes":1,"memory_available_bytes":1,"disk_total_bytes":1,"disk_free_bytes":1}"#,
            api_url: None,
        };
        insert_worker(&db, &worker.to_string(), "hash", &report, now_ms())
            .await
            .unwrap();
        let workers =
            WorkerService::start(db.clone(), Duration::from_secs(5), Duration::from_secs(60))
                .await
                .unwrap();
        (InstanceService::new(db, Arc::new(workers)), worker)
    }

    fn status(json: serde_json::Value) -> InstanceStatusReport {
        poem_openapi::types::ParseFromJSON::parse_from_json(Some(json)).unwrap()
    }

    fn job_spec() -> InstanceSpec {
        let json = serde_json::json!({"command": ["true"], "run_once": true});
        poem_openapi::types::ParseFromJSON::parse_from_json(Some(json)).unwrap()
    }

    /// The ids in memory and, read again from the file, in SQLite.
    async fn ids(s: &InstanceService) -> (Vec<Uuid>, Vec<Uuid>) {
        let memory = s.all().await.unwrap().iter().map(|i| i.id).collect();
        s.invalidate();
        let file = s.all().await.unwrap().iter().map(|i| i.id).collect();
        (memory, file)
    }

    #[tokio::test]
    async fn changes_made_elsewhere_reach_memory_at_their_commit_and_not_when_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let (s, worker) = service(dir.path()).await;
        assert_eq!(ids(&s).await, (vec![], vec![]));

        // Inserted and committed: in memory without the table being read again.
        let row = new_row(worker, None, &job_spec(), now_ms()).unwrap();
        let id = Uuid::parse_str(&row.id).unwrap();
        let mut changes = s.begin().await.unwrap();
        instances::insert_in(&mut changes.tx, &row).await.unwrap();
        changes.inserted(&row).unwrap();
        changes.commit().await.unwrap();
        assert_eq!(s.for_worker(worker).await.unwrap()[0].id, id);
        assert_eq!(ids(&s).await, (vec![id], vec![id]));

        // Deleted, then dropped without a commit: neither memory nor the file changes.
        let mut changes = s.begin().await.unwrap();
        assert!(
            instances::delete_in(&mut changes.tx, &row.id)
                .await
                .unwrap()
        );
        changes.deleted(&row.id, &row.worker_id).unwrap();
        drop(changes);
        assert_eq!(s.for_worker(worker).await.unwrap().len(), 1);
        assert_eq!(ids(&s).await, (vec![id], vec![id]));

        // Deleted and committed: gone from both.
        let mut changes = s.begin().await.unwrap();
        instances::delete_in(&mut changes.tx, &row.id)
            .await
            .unwrap();
        changes.deleted(&row.id, &row.worker_id).unwrap();
        changes.commit().await.unwrap();
        assert!(s.for_worker(worker).await.unwrap().is_empty());
        assert_eq!(ids(&s).await, (vec![], vec![]));
    }

    #[tokio::test]
    async fn a_report_changes_memory_and_the_file_alike() {
        let dir = tempfile::tempdir().unwrap();
        let (s, worker) = service(dir.path()).await;
        let created = s
            .create(
                worker,
                CreateInstanceRequest {
                    service: None,
                    spec: job_spec(),
                },
            )
            .await
            .unwrap();
        let report = status(serde_json::json!({"state": "running", "restarts": 2}));
        s.report(worker, created.id, report).await.unwrap();
        let in_memory = s.get(created.id).await.unwrap();
        s.invalidate();
        let from_file = s.get(created.id).await.unwrap();
        for i in [&in_memory, &from_file] {
            assert_eq!((i.state, i.restarts), (InstanceState::Running, 2));
        }
        assert_eq!(in_memory.updated_at, from_file.updated_at);
        // Another worker's report on it is refused and changes nothing.
        let other = status(serde_json::json!({"state": "exited", "restarts": 0}));
        let refused = s
            .report(Uuid::new_v4(), created.id, other)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), poem::http::StatusCode::NOT_FOUND);
        assert_eq!(
            s.get(created.id).await.unwrap().state,
            InstanceState::Running
        );
    }
}
