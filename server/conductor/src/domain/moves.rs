//! Moves: a stateful service and its volume, from the worker holding it to another, with the data.
//!
//! The steps (model::MoveState), each committed before the next begins:
//! 1. `stopping`: the instance on the holder is set to stopped (its worker stops it and reports).
//! 2. `copying`: the new worker is given a one-time grant (a conductor-signed token scoped to this
//!    volume on this holder) and fetches the volume straight from the holder's worker API: a tar
//!    stream ending in a SHA-256 of everything in it, never through the conductor. It writes to a
//!    temporary directory, checks the checksum, syncs, renames it into place and reports.
//! 3. `starting`: in one transaction the volume is recorded on the new worker and the old instance
//!    removed; the deployment loop places the instance where the volume now is.
//! 4. `cleaning`: once that instance is healthy the old worker is told to delete its copy (it does
//!    so only while nothing there uses it); `done` when it no longer reports the directory.
//!
//! A restore is a move whose data comes from a backup: the new worker reads it from the backup's
//! store instead of the old worker (which may be gone for good), there is nothing to stop when the
//! old worker is lost, and it ends at `starting` → `done`: the old worker's copy, if it still has
//! one, is left alone, since it may hold newer data than the backup.
//!
//! Any failure or interruption before `cleaning` — either worker lost, the copy stalled or
//! refused, the conductor restarted during steps 1–2, the new instance not healthy in time — ends
//! in `failed` and puts the service back on the old worker, whose copy was never touched. While a
//! move is in steps 1–2 the deployment loop leaves the service alone and the gateway answers 503
//! `service_moving`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{auth::AuthService, from_ms, instances::InstanceService, workers::WorkerService};
use crate::{
    model::{
        BackupSource, InstanceHealth, InstanceState, MoveState, TransferOutcome, TransferReport,
        VolumeMove, VolumeTransfer, Worker, WorkerStatus,
    },
    store::{
        Db,
        moves::{self, MoveRow},
        now_ms, volumes,
    },
};

/// How long the old instance may take to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a copy may go without a progress report from the receiving worker.
pub const COPY_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the instance on the new worker may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a grant may wait to be used (it is used once, at the start of the copy).
const GRANT_LIFETIME: Duration = Duration::from_secs(300);

struct Active {
    row: MoveRow,
    /// The grant of the copying step (kept in memory only: a conductor restart fails the copy).
    grant: Option<String>,
    source_url: String,
    /// A restore's source, and the worker keeping that backup.
    restore: Option<(BackupSource, Uuid)>,
    /// When the current step began, or the copy last reported progress.
    since: Instant,
}

pub struct MoveService {
    db: Db,
    auth: Arc<AuthService>,
    workers: Arc<WorkerService>,
    instances: Arc<InstanceService>,
    /// Moves under way, by volume.
    active: Mutex<HashMap<String, Active>>,
    /// One step of one move at a time (the loop's advance and the workers' reports).
    step: tokio::sync::Mutex<()>,
}

fn state_name(s: MoveState) -> &'static str {
    match s {
        MoveState::Stopping => "stopping",
        MoveState::Copying => "copying",
        MoveState::Starting => "starting",
        MoveState::Cleaning => "cleaning",
        MoveState::Done => "done",
        MoveState::Failed => "failed",
    }
}

fn parse_state(s: &str) -> MoveState {
    match s {
        "stopping" => MoveState::Stopping,
        "copying" => MoveState::Copying,
        "starting" => MoveState::Starting,
        "cleaning" => MoveState::Cleaning,
        "done" => MoveState::Done,
        _ => MoveState::Failed,
    }
}

fn to_model(row: &MoveRow) -> VolumeMove {
    VolumeMove {
        id: Uuid::parse_str(&row.id).unwrap_or_default(),
        service: row.service.clone(),
        volume: row.volume.clone(),
        source_worker_id: Uuid::parse_str(&row.source_worker_id).unwrap_or_default(),
        target_worker_id: Uuid::parse_str(&row.target_worker_id).unwrap_or_default(),
        state: parse_state(&row.state),
        bytes_copied: u64::try_from(row.bytes_copied).unwrap_or(0),
        error: row.error.clone(),
        created_at: from_ms(row.created_at),
        updated_at: from_ms(row.updated_at),
        backup_id: row
            .backup_id
            .as_deref()
            .and_then(|b| Uuid::parse_str(b).ok()),
    }
}

/// The row of a move beginning now.
fn new_row(
    service: &str,
    volume: &str,
    source: Uuid,
    target: Uuid,
    state: MoveState,
    backup_id: Option<Uuid>,
) -> MoveRow {
    let now = now_ms();
    MoveRow {
        id: Uuid::new_v4().to_string(),
        service: service.to_owned(),
        volume: volume.to_owned(),
        source_worker_id: source.to_string(),
        target_worker_id: target.to_string(),
        state: state_name(state).into(),
        bytes_copied: 0,
        error: None,
        created_at: now,
        updated_at: now,
        backup_id: backup_id.map(|b| b.to_string()),
    }
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

impl MoveService {
    /// Loads the moves under way. One interrupted in `stopping` or `copying` (the grant is gone
    /// with the old process) fails now, putting its service back on its old worker; later steps
    /// carry on.
    pub async fn start(
        db: Db,
        auth: Arc<AuthService>,
        workers: Arc<WorkerService>,
        instances: Arc<InstanceService>,
    ) -> Result<Self, sqlx::Error> {
        let service = Self {
            db: db.clone(),
            auth,
            workers,
            instances,
            active: Mutex::default(),
            step: tokio::sync::Mutex::new(()),
        };
        for row in moves::under_way(&db).await? {
            let source_url = String::new();
            let active = Active {
                row,
                grant: None,
                source_url,
                restore: None,
                since: Instant::now(),
            };
            let interrupted = matches!(
                parse_state(&active.row.state),
                MoveState::Stopping | MoveState::Copying
            );
            let volume = active.row.volume.clone();
            service
                .active
                .lock()
                .expect("moves lock")
                .insert(volume.clone(), active);
            if interrupted {
                if let Err(e) = service
                    .fail(&volume, "the conductor restarted during the move".into())
                    .await
                {
                    tracing::error!(volume, error = %e.body().message, "could not end an interrupted move");
                }
            }
        }
        service.publish_work();
        Ok(service)
    }

    /// The state and target of `service`'s move under way, if any.
    pub fn under_way(&self, service: &str) -> Option<(MoveState, Uuid)> {
        let active = self.active.lock().expect("moves lock");
        active
            .values()
            .find(|a| a.row.service == service)
            .map(|a| (parse_state(&a.row.state), uuid(&a.row.target_worker_id)))
    }

    /// Whether the deployment loop must leave `service` alone (its move is stopping or copying it).
    pub fn holds(&self, service: &str) -> bool {
        matches!(
            self.under_way(service),
            Some((MoveState::Stopping | MoveState::Copying, _))
        )
    }

    /// Begins moving `service` (whose volume `volume` is on `source`) to `target`. The caller has
    /// checked that the service may go there; this records the move and stops the old instance.
    pub async fn begin(
        &self,
        service: &str,
        volume: &str,
        source: &Worker,
        target: &Worker,
    ) -> ApiResult<VolumeMove> {
        let source_url = source.api_url.clone().ok_or_else(|| {
            ApiError::conflict(
                "source_has_no_api",
                format!("worker {} serves no worker API (WORKER_API_PORT=off), so its volume cannot be fetched from it", source.name),
            )
        })?;
        let row = new_row(
            service,
            volume,
            source.id,
            target.id,
            MoveState::Stopping,
            None,
        );
        tracing::info!(move_id = %row.id, service, from = %source.id, to = %target.id, "volume move begun: stopping the instance");
        self.record(Active {
            row,
            grant: None,
            source_url,
            restore: None,
            since: Instant::now(),
        })
        .await
    }

    /// Begins restoring `service`'s volume from a backup onto `target`. `holder` is the worker
    /// holding the volume now (the record's), which may be lost or gone; when it is live its
    /// instance is stopped first, and its copy is left in place.
    pub async fn begin_restore(
        &self,
        service: &str,
        volume: &str,
        holder: Uuid,
        holder_live: bool,
        target: &Worker,
        source: BackupSource,
        store: Uuid,
    ) -> ApiResult<VolumeMove> {
        let state = if holder_live {
            MoveState::Stopping
        } else {
            MoveState::Copying
        };
        let row = new_row(
            service,
            volume,
            holder,
            target.id,
            state,
            Some(source.backup_id),
        );
        tracing::info!(move_id = %row.id, service, backup_id = %source.backup_id, to = %target.id, "restore begun");
        let grant = Some(source.grant.clone());
        self.record(Active {
            row,
            grant,
            source_url: source.store_url.clone(),
            restore: Some((source, store)),
            since: Instant::now(),
        })
        .await
    }

    /// Records a move that begins now and stops its service's old instance, in one transaction,
    /// unless the service is being moved already.
    async fn record(&self, active: Active) -> ApiResult<VolumeMove> {
        let _step = self.step.lock().await;
        let service = active.row.service.clone();
        if let Some((state, _)) = self.under_way(&service) {
            return Err(ApiError::conflict(
                "move_under_way",
                format!(
                    "{service} is already being moved (step {})",
                    state_name(state)
                ),
            ));
        }
        let row = &active.row;
        let commit = async {
            let mut tx = self.db.write.begin().await?;
            moves::insert_in(&mut tx, row).await?;
            moves::set_desired_in(&mut tx, &service, &row.source_worker_id, "stopped").await?;
            tx.commit().await
        };
        commit.await.map_err(ApiError::internal)?;
        self.instances.bump(uuid(&row.source_worker_id));
        let model = to_model(row);
        self.active
            .lock()
            .expect("moves lock")
            .insert(row.volume.clone(), active);
        self.publish_work();
        Ok(model)
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<VolumeMove> {
        let row = moves::get(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?;
        let row = row.ok_or_else(|| {
            ApiError::not_found("move_not_found", format!("no move with id {id}"))
        })?;
        let mut model = to_model(&row);
        // Progress is kept in memory while copying.
        if let Some(a) = self
            .active
            .lock()
            .expect("moves lock")
            .values()
            .find(|a| a.row.id == row.id)
        {
            model.bytes_copied = u64::try_from(a.row.bytes_copied).unwrap_or(0);
        }
        Ok(model)
    }

    /// The newest moves (at most 100), under way or ended.
    pub async fn list(&self) -> ApiResult<Vec<VolumeMove>> {
        let rows = moves::recent(&self.db, 100)
            .await
            .map_err(ApiError::internal)?;
        Ok(rows.iter().map(to_model).collect())
    }

    /// A receiving worker's report on its copy.
    pub async fn report(
        &self,
        worker: Uuid,
        move_id: Uuid,
        report: TransferReport,
    ) -> ApiResult<()> {
        let _step = self.step.lock().await;
        let volume = {
            let mut active = self.active.lock().expect("moves lock");
            let Some(a) = active
                .values_mut()
                .find(|a| a.row.id == move_id.to_string())
            else {
                return Err(ApiError::not_found(
                    "move_not_found",
                    format!("no move {move_id} is under way; drop its copy"),
                ));
            };
            let state = parse_state(&a.row.state);
            let to_this_worker = a.row.target_worker_id == worker.to_string();
            // A repeated "copied" (the answer to the first was lost) is answered as the first was:
            // the worker must keep the copy that is now the volume.
            if to_this_worker
                && report.outcome == TransferOutcome::Copied
                && matches!(state, MoveState::Starting | MoveState::Cleaning)
            {
                return Ok(());
            }
            if !to_this_worker || state != MoveState::Copying {
                return Err(ApiError::conflict(
                    "move_not_copying",
                    format!("move {move_id} is not copying to worker {worker}; drop its copy"),
                ));
            }
            a.row.bytes_copied = i64::try_from(report.bytes).unwrap_or(i64::MAX);
            a.since = Instant::now();
            a.row.volume.clone()
        };
        match report.outcome {
            TransferOutcome::Copying => Ok(()),
            TransferOutcome::Failed => {
                let why = report
                    .error
                    .unwrap_or_else(|| "the receiving worker gave up".into());
                self.fail(&volume, format!("the copy failed: {why}")).await
            }
            TransferOutcome::Copied => self.copied(&volume).await,
        }
    }

    /// The copy is whole on the new worker: the volume is recorded there and the old instance goes,
    /// in one transaction; the deployment loop starts the service on the new worker.
    async fn copied(&self, volume: &str) -> ApiResult<()> {
        let mut row = self
            .active
            .lock()
            .expect("moves lock")
            .get(volume)
            .map(|a| a.row.clone())
            .expect("under way");
        row.state = state_name(MoveState::Starting).into();
        row.updated_at = now_ms();
        let commit = async {
            let mut tx = self.db.write.begin().await?;
            volumes::set_holder_in(&mut tx, volume, &row.target_worker_id, row.updated_at).await?;
            moves::delete_instances_in(&mut tx, &row.service, &row.source_worker_id).await?;
            moves::update_in(&mut tx, &row).await?;
            tx.commit().await
        };
        commit.await.map_err(ApiError::internal)?;
        tracing::info!(move_id = %row.id, volume, bytes = row.bytes_copied, "volume copied; starting the service on its new worker");
        let (source, target) = (uuid(&row.source_worker_id), uuid(&row.target_worker_id));
        if let Some(a) = self.active.lock().expect("moves lock").get_mut(volume) {
            a.row = row;
            a.grant = None;
            a.since = Instant::now();
        }
        self.instances.bump(source);
        self.instances.bump(target);
        self.publish_work();
        Ok(())
    }

    /// Ends the move as failed and puts the service back on its old worker with its own copy.
    async fn fail(&self, volume: &str, why: String) -> ApiResult<()> {
        let Some(mut row) = self
            .active
            .lock()
            .expect("moves lock")
            .get(volume)
            .map(|a| a.row.clone())
        else {
            return Ok(());
        };
        let was = parse_state(&row.state);
        row.state = state_name(MoveState::Failed).into();
        row.error = Some(why.clone());
        row.updated_at = now_ms();
        let commit = async {
            let mut tx = self.db.write.begin().await?;
            if was == MoveState::Starting {
                // The volume goes back to the old worker, whose copy was never touched; what
                // started on the new worker is removed (its copy stays there, unused).
                volumes::set_holder_in(&mut tx, volume, &row.source_worker_id, row.updated_at)
                    .await?;
                moves::delete_instances_in(&mut tx, &row.service, &row.target_worker_id).await?;
            } else {
                moves::set_desired_in(&mut tx, &row.service, &row.source_worker_id, "running")
                    .await?;
            }
            moves::update_in(&mut tx, &row).await?;
            tx.commit().await
        };
        commit.await.map_err(ApiError::internal)?;
        tracing::warn!(move_id = %row.id, volume, reason = %why, "volume move failed; the service stays on its old worker");
        self.active.lock().expect("moves lock").remove(volume);
        self.instances.bump(uuid(&row.source_worker_id));
        self.instances.bump(uuid(&row.target_worker_id));
        self.publish_work();
        Ok(())
    }

    /// Writes a step change of an active move.
    async fn set_state(
        &self,
        volume: &str,
        state: MoveState,
        grant: Option<String>,
    ) -> ApiResult<()> {
        let Some(mut row) = self
            .active
            .lock()
            .expect("moves lock")
            .get(volume)
            .map(|a| a.row.clone())
        else {
            return Ok(());
        };
        row.state = state_name(state).into();
        row.updated_at = now_ms();
        let commit = async {
            let mut tx = self.db.write.begin().await?;
            moves::update_in(&mut tx, &row).await?;
            tx.commit().await
        };
        commit.await.map_err(ApiError::internal)?;
        tracing::info!(move_id = %row.id, volume, step = state_name(state), "volume move step");
        let mut active = self.active.lock().expect("moves lock");
        if matches!(state, MoveState::Done) {
            active.remove(volume);
        } else if let Some(a) = active.get_mut(volume) {
            a.row = row;
            a.grant = grant;
            a.since = Instant::now();
        }
        drop(active);
        self.publish_work();
        Ok(())
    }

    /// Takes each move under way a step further when its condition holds, or fails it when a
    /// worker is lost or a step overran. Called by every pass of the deployment loop.
    pub async fn advance(&self) -> ApiResult<()> {
        let _step = self.step.lock().await;
        // (volume, step, old worker, new worker, service, time in step, the backup store of a restore)
        type Step = (
            String,
            MoveState,
            Uuid,
            Uuid,
            String,
            Duration,
            Option<Uuid>,
        );
        let snapshot: Vec<Step> = self
            .active
            .lock()
            .expect("moves lock")
            .values()
            .map(|a| {
                let (source, target) =
                    (uuid(&a.row.source_worker_id), uuid(&a.row.target_worker_id));
                let store = a.restore.as_ref().map(|(_, store)| *store);
                (
                    a.row.volume.clone(),
                    parse_state(&a.row.state),
                    source,
                    target,
                    a.row.service.clone(),
                    a.since.elapsed(),
                    store,
                )
            })
            .collect();
        if snapshot.is_empty() {
            return Ok(());
        }
        let workers = self.workers.snapshot();
        let worker = |id: Uuid| workers.iter().find(|w| w.id == id);
        let live = |id: Uuid| worker(id).is_some_and(|w| w.status == WorkerStatus::Live);
        let name = |id: Uuid| worker(id).map_or_else(|| id.to_string(), |w| w.name.clone());
        for (volume, state, source, target, service, elapsed, store) in snapshot {
            // A move needs both workers; a restore needs the new one and the backup's store (the
            // old worker only while its instance is being stopped).
            let needed = match (store, state) {
                (None, _) => vec![source, target],
                (Some(store), MoveState::Stopping) => vec![source, target, store],
                (Some(store), _) => vec![target, store],
            };
            let lost = needed.into_iter().find(|w| !live(*w));
            match state {
                MoveState::Stopping | MoveState::Copying if lost.is_some() => {
                    let w = lost.expect("some");
                    self.fail(
                        &volume,
                        format!(
                            "worker {} was lost during the {} step",
                            name(w),
                            state_name(state)
                        ),
                    )
                    .await?;
                }
                MoveState::Stopping => {
                    let instances = self.instances.for_service(&service).await?;
                    let old: Vec<_> = instances.iter().filter(|i| i.worker_id == source).collect();
                    if old.iter().all(|i| i.state == InstanceState::Stopped) {
                        let grant = match store {
                            // A restore's grant (to read the backup) came with it.
                            Some(_) => self
                                .active
                                .lock()
                                .expect("moves lock")
                                .get(&volume)
                                .and_then(|a| a.grant.clone()),
                            None => {
                                let move_id = self
                                    .active
                                    .lock()
                                    .expect("moves lock")
                                    .get(&volume)
                                    .map(|a| uuid(&a.row.id))
                                    .unwrap_or_default();
                                Some(self.auth.volume_transfer_grant(
                                    move_id,
                                    &volume,
                                    source,
                                    GRANT_LIFETIME,
                                )?)
                            }
                        };
                        self.set_state(&volume, MoveState::Copying, grant).await?;
                    } else if elapsed > STOP_TIMEOUT {
                        self.fail(
                            &volume,
                            format!(
                                "the instance on {} did not stop within {} s",
                                name(source),
                                STOP_TIMEOUT.as_secs()
                            ),
                        )
                        .await?;
                    }
                }
                MoveState::Copying if elapsed > COPY_STALL_TIMEOUT => {
                    self.fail(
                        &volume,
                        format!(
                            "the copy made no progress for {} s",
                            COPY_STALL_TIMEOUT.as_secs()
                        ),
                    )
                    .await?;
                }
                MoveState::Copying => {}
                MoveState::Starting => {
                    let instances = self.instances.for_service(&service).await?;
                    if instances
                        .iter()
                        .any(|i| i.worker_id == target && i.health == InstanceHealth::Healthy)
                    {
                        // A restore leaves the old copy alone: it may be newer than the backup.
                        let next = if store.is_some() {
                            MoveState::Done
                        } else {
                            MoveState::Cleaning
                        };
                        self.set_state(&volume, next, None).await?;
                    } else if !live(target) {
                        self.fail(
                            &volume,
                            format!(
                                "worker {} was lost before the service started there",
                                name(target)
                            ),
                        )
                        .await?;
                    } else if elapsed > START_TIMEOUT {
                        self.fail(
                            &volume,
                            format!(
                                "the service was not healthy on {} within {} s",
                                name(target),
                                START_TIMEOUT.as_secs()
                            ),
                        )
                        .await?;
                    }
                }
                MoveState::Cleaning => {
                    let released = worker(source).is_some_and(|w| {
                        w.status == WorkerStatus::Live
                            && !w.resources.volumes.iter().any(|v| v.name == volume)
                    });
                    if released {
                        self.set_state(&volume, MoveState::Done, None).await?;
                    }
                }
                MoveState::Done | MoveState::Failed => {}
            }
        }
        Ok(())
    }

    /// Tells each worker its part: the new worker fetches while copying, the old one deletes its
    /// copy while cleaning.
    fn publish_work(&self) {
        let mut transfers: HashMap<Uuid, Vec<VolumeTransfer>> = HashMap::new();
        let mut releases: HashMap<Uuid, Vec<String>> = HashMap::new();
        for a in self.active.lock().expect("moves lock").values() {
            match (parse_state(&a.row.state), &a.grant) {
                (MoveState::Copying, Some(grant)) => transfers
                    .entry(uuid(&a.row.target_worker_id))
                    .or_default()
                    .push(VolumeTransfer {
                        move_id: uuid(&a.row.id),
                        volume: a.row.volume.clone(),
                        source_url: a.source_url.clone(),
                        grant: grant.clone(),
                        backup: a.restore.as_ref().map(|(source, _)| source.clone()),
                    }),
                (MoveState::Cleaning, _) => releases
                    .entry(uuid(&a.row.source_worker_id))
                    .or_default()
                    .push(a.row.volume.clone()),
                _ => {}
            }
        }
        self.instances.set_volume_work(transfers, releases);
    }
}
