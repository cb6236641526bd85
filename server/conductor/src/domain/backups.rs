//! Backups of every stateful volume, on a schedule and on demand.
//!
//! The conductor decides when and where; the worker holding the volume does the work (see the
//! worker's `backup.rs`): it holds the volume (the service defers deleting files), snapshots its
//! SQLite databases online, and sends each file the store does not have yet, encrypted under the
//! cluster's backup key, to the backup store of another worker (the holder itself only when there
//! is no other), then the manifest. Files are content-addressed, so a backup of an unchanged volume
//! sends its manifest and its database snapshots and almost nothing else.
//!
//! The backup key (`<DATA_DIR>/backup.key`, 0600) never leaves the conductor but in the jobs it
//! hands to workers; stores hold only ciphertext. A backup whose holder or store is lost, that
//! stops reporting, or that was running when the conductor restarted, fails; the next one is
//! scheduled as usual.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aerekos_common::{ApiError, ApiResult};
use base64::Engine as _;
use uuid::Uuid;

use super::{auth::AuthService, from_ms, instances::InstanceService, workers::WorkerService};
use crate::{
    model::{
        Backup, BackupJob, BackupReport, BackupSource, BackupState, Service, Worker, WorkerStatus,
    },
    store::{
        Db,
        backups::{self, BackupRow},
        now_ms,
        volumes::VolumeRow,
    },
};

pub const KEY_FILE: &str = "backup.key";
/// A running backup that has not reported for this long has failed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the grants of a backup or a restore are good for.
const GRANT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

fn store_scope(access: &str, store: Uuid, volume: &str) -> String {
    aerekos_common::auth::backup_store_scope(access, &store.to_string(), volume)
}

struct Running {
    row: BackupRow,
    job: BackupJob,
    holder: Uuid,
    since: Instant,
}

pub struct BackupService {
    db: Db,
    auth: Arc<AuthService>,
    workers: Arc<WorkerService>,
    instances: Arc<InstanceService>,
    /// The cluster's backup key, base64.
    key: String,
    default_interval: Duration,
    /// How many backups of a volume a store keeps.
    keep: u32,
    /// Backups under way, by volume.
    running: Mutex<HashMap<String, Running>>,
    step: tokio::sync::Mutex<()>,
}

fn state_of(s: &str) -> BackupState {
    match s {
        "running" => BackupState::Running,
        "done" => BackupState::Done,
        "expired" => BackupState::Expired,
        _ => BackupState::Failed,
    }
}

fn to_model(row: &BackupRow) -> Backup {
    Backup {
        id: Uuid::parse_str(&row.id).unwrap_or_default(),
        volume: row.volume.clone(),
        service: row.service.clone(),
        source_worker_id: Uuid::parse_str(&row.source_worker_id).unwrap_or_default(),
        store_worker_id: Uuid::parse_str(&row.store_worker_id).unwrap_or_default(),
        state: state_of(&row.state),
        files: u64::try_from(row.files).unwrap_or(0),
        bytes: u64::try_from(row.bytes).unwrap_or(0),
        bytes_sent: u64::try_from(row.bytes_sent).unwrap_or(0),
        error: row.error.clone(),
        created_at: from_ms(row.created_at),
        finished_at: row.finished_at.map(from_ms),
    }
}

/// Reads the backup key, making one on first start.
fn load_or_create_key(path: &Path) -> std::io::Result<String> {
    use rand::RngCore as _;
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(text.trim().to_owned());
    }
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    aerekos_common::secrets::write_secret_file(path, text.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the backup key");
    Ok(text)
}

impl BackupService {
    pub async fn start(
        db: Db,
        data_dir: &Path,
        auth: Arc<AuthService>,
        workers: Arc<WorkerService>,
        instances: Arc<InstanceService>,
        default_interval: Duration,
        keep: u32,
    ) -> Result<Self, crate::StartError> {
        let key = load_or_create_key(&data_dir.join(KEY_FILE))?;
        let service = Self {
            db: db.clone(),
            auth,
            workers,
            instances,
            key,
            default_interval,
            keep,
            running: Mutex::default(),
            step: tokio::sync::Mutex::new(()),
        };
        // Their grants and keys went with the old process: they end here, and the schedule
        // starts new ones.
        for mut row in backups::running(&db).await? {
            row.state = "failed".into();
            row.error = Some("the conductor restarted during the backup".into());
            row.finished_at = Some(now_ms());
            backups::finish(&db, &row).await?;
        }
        Ok(service)
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Backup> {
        let row = backups::get(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?;
        Ok(to_model(&row.ok_or_else(|| {
            ApiError::not_found("backup_not_found", format!("no backup with id {id}"))
        })?))
    }

    /// Newest first (at most 200); of one volume when given.
    pub async fn list(&self, volume: Option<&str>) -> ApiResult<Vec<Backup>> {
        let rows = backups::list(&self.db, volume, 200)
            .await
            .map_err(ApiError::internal)?;
        Ok(rows.iter().map(to_model).collect())
    }

    /// The latest successful backup of every volume.
    pub async fn latest(&self) -> ApiResult<Vec<Backup>> {
        let rows = backups::latest_done(&self.db)
            .await
            .map_err(ApiError::internal)?;
        Ok(rows.iter().map(to_model).collect())
    }

    /// Where a restore of `backup` reads from (its store must be live).
    pub async fn source_for_restore(
        &self,
        backup_id: Uuid,
        volume: &str,
    ) -> ApiResult<(BackupSource, Arc<Worker>)> {
        let backup = self.get(backup_id).await?;
        if backup.volume != volume {
            return Err(ApiError::bad_request(
                "backup_of_another_volume",
                format!(
                    "backup {backup_id} is of volume {}, not {volume}",
                    backup.volume
                ),
            ));
        }
        if backup.state != BackupState::Done {
            return Err(ApiError::conflict(
                "backup_not_done",
                format!("backup {backup_id} is {:?}, not done", backup.state),
            ));
        }
        let store = self
            .workers
            .snapshot()
            .into_iter()
            .find(|w| w.id == backup.store_worker_id);
        let store = match store {
            Some(w) if w.status == WorkerStatus::Live => w,
            _ => {
                return Err(ApiError::conflict(
                    "backup_store_lost",
                    format!(
                        "backup {backup_id} is kept on worker {}, which is not live",
                        backup.store_worker_id
                    ),
                ));
            }
        };
        let url = store.api_url.clone().ok_or_else(|| {
            ApiError::conflict(
                "store_has_no_api",
                format!("worker {} serves no worker API", store.name),
            )
        })?;
        let grant = self.auth.volume_grant(
            &format!("restore:{backup_id}"),
            volume,
            store_scope("read", store.id, volume),
            GRANT_LIFETIME,
        )?;
        Ok((
            BackupSource {
                backup_id,
                store_url: url,
                grant,
                key: self.key.clone(),
            },
            store,
        ))
    }

    /// Starts a backup of `volume` (of `service`), held by the live worker `holder`, now.
    pub async fn backup_now(
        &self,
        volume: &str,
        service: &str,
        holder: &Worker,
    ) -> ApiResult<Backup> {
        let _step = self.step.lock().await;
        self.begin(volume, service, holder).await
    }

    async fn begin(&self, volume: &str, service: &str, holder: &Worker) -> ApiResult<Backup> {
        if self
            .running
            .lock()
            .expect("backups lock")
            .contains_key(volume)
        {
            return Err(ApiError::conflict(
                "backup_running",
                format!("a backup of {volume} is under way"),
            ));
        }
        let workers = self.workers.snapshot();
        let earlier = backups::list(&self.db, Some(volume), 200)
            .await
            .map_err(ApiError::internal)?;
        let last_store = earlier
            .iter()
            .find(|b| b.state == "done")
            .and_then(|b| Uuid::parse_str(&b.store_worker_id).ok());
        let store = choose_store(holder.id, last_store, &workers);
        let url = store.api_url.clone().ok_or_else(|| {
            ApiError::conflict(
                "store_has_no_api",
                format!(
                    "worker {} serves no worker API to keep backups in",
                    store.name
                ),
            )
        })?;
        let id = Uuid::new_v4();
        let grant = self.auth.volume_grant(
            &format!("backup:{id}"),
            volume,
            store_scope("write", store.id, volume),
            GRANT_LIFETIME,
        )?;
        let row = BackupRow {
            id: id.to_string(),
            volume: volume.to_owned(),
            service: service.to_owned(),
            source_worker_id: holder.id.to_string(),
            store_worker_id: store.id.to_string(),
            state: "running".into(),
            files: 0,
            bytes: 0,
            bytes_sent: 0,
            error: None,
            created_at: now_ms(),
            finished_at: None,
        };
        backups::insert(&self.db, &row)
            .await
            .map_err(ApiError::internal)?;
        if store.id == holder.id {
            tracing::warn!(
                volume,
                "no other live worker: the backup is kept on the worker holding the volume"
            );
        }
        tracing::info!(backup_id = %id, volume, holder = %holder.id, store = %store.id, "backup begun");
        // This one and the newest done ones in the same store, BACKUP_KEEP in all.
        let keep: Vec<Uuid> = std::iter::once(id)
            .chain(
                earlier
                    .iter()
                    .filter(|b| b.state == "done" && b.store_worker_id == store.id.to_string())
                    .filter_map(|b| Uuid::parse_str(&b.id).ok())
                    .take(self.keep.saturating_sub(1) as usize),
            )
            .collect();
        let job = BackupJob {
            backup_id: id,
            volume: volume.to_owned(),
            store_url: url,
            grant,
            key: self.key.clone(),
            keep,
        };
        let model = to_model(&row);
        self.running.lock().expect("backups lock").insert(
            volume.to_owned(),
            Running {
                row,
                job,
                holder: holder.id,
                since: Instant::now(),
            },
        );
        self.publish_jobs();
        Ok(model)
    }

    /// Starts the backups that are due: each enabled stateful service whose volume's holder is
    /// live and whose last backup is older than its interval.
    pub async fn schedule(
        &self,
        services: &[std::sync::Arc<Service>],
        volumes: &[VolumeRow],
        workers: &[Arc<Worker>],
    ) -> ApiResult<()> {
        let _step = self.step.lock().await;
        for service in services.iter().filter(|s| s.stateful && s.enabled) {
            let interval = service
                .deployment
                .as_ref()
                .and_then(|d| d.backup_interval_secs)
                .map_or(self.default_interval, Duration::from_secs);
            let Some(record) = volumes.iter().find(|v| v.name == service.name) else {
                continue;
            };
            let holder = workers
                .iter()
                .find(|w| w.id.to_string() == record.worker_id && w.status == WorkerStatus::Live);
            let Some(holder) = holder else { continue };
            if interval.is_zero()
                || self
                    .running
                    .lock()
                    .expect("backups lock")
                    .contains_key(&record.name)
            {
                continue;
            }
            // Due from the last attempt of any outcome, so a failing backup is not retried every tick.
            let last = backups::list(&self.db, Some(&record.name), 1)
                .await
                .map_err(ApiError::internal)?;
            let since = last.first().map_or(record.created_at, |b| b.created_at);
            let due = now_ms() - since >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            if due {
                if let Err(e) = self.begin(&record.name, &service.name, holder).await {
                    tracing::warn!(volume = %record.name, reason = %e.body().message, "a scheduled backup could not begin");
                }
            }
        }
        Ok(())
    }

    /// Fails the backups whose holder or store was lost, or that stopped reporting.
    pub async fn advance(&self) -> ApiResult<()> {
        let _step = self.step.lock().await;
        let workers = self.workers.snapshot();
        let live = |id: Uuid| {
            workers
                .iter()
                .any(|w| w.id == id && w.status == WorkerStatus::Live)
        };
        let stalled: Vec<(String, String)> = self
            .running
            .lock()
            .expect("backups lock")
            .values()
            .filter_map(|r| {
                let store = Uuid::parse_str(&r.row.store_worker_id).unwrap_or_default();
                if !live(r.holder) || !live(store) {
                    Some((
                        r.row.volume.clone(),
                        "the worker holding the volume or the one keeping the backup was lost"
                            .to_owned(),
                    ))
                } else if r.since.elapsed() > STALL_TIMEOUT {
                    Some((
                        r.row.volume.clone(),
                        format!("no word from the worker for {} s", STALL_TIMEOUT.as_secs()),
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (volume, why) in stalled {
            self.finish(&volume, BackupState::Failed, None, Some(why))
                .await?;
        }
        Ok(())
    }

    /// The holder's report on a backup job.
    pub async fn report(
        &self,
        worker: Uuid,
        backup_id: Uuid,
        report: BackupReport,
    ) -> ApiResult<()> {
        let _step = self.step.lock().await;
        let volume = {
            let mut running = self.running.lock().expect("backups lock");
            let found = running
                .values_mut()
                .find(|r| r.row.id == backup_id.to_string() && r.holder == worker);
            let Some(r) = found else {
                return Err(ApiError::not_found(
                    "backup_not_running",
                    format!("no backup {backup_id} is under way on worker {worker}; drop it"),
                ));
            };
            r.since = Instant::now();
            r.row.volume.clone()
        };
        match report.state {
            BackupState::Running => Ok(()),
            state => {
                self.finish(&volume, state, Some(&report), report.error.clone())
                    .await
            }
        }
    }

    async fn finish(
        &self,
        volume: &str,
        state: BackupState,
        report: Option<&BackupReport>,
        error: Option<String>,
    ) -> ApiResult<()> {
        let Some(mut row) = self
            .running
            .lock()
            .expect("backups lock")
            .get(volume)
            .map(|r| r.row.clone())
        else {
            return Ok(());
        };
        row.state = if state == BackupState::Done {
            "done"
        } else {
            "failed"
        }
        .into();
        if let Some(r) = report {
            row.files = i64::try_from(r.files).unwrap_or(i64::MAX);
            row.bytes = i64::try_from(r.bytes).unwrap_or(i64::MAX);
            row.bytes_sent = i64::try_from(r.bytes_sent).unwrap_or(i64::MAX);
        }
        row.error = error;
        row.finished_at = Some(now_ms());
        let keep = self
            .running
            .lock()
            .expect("backups lock")
            .get(volume)
            .map(|r| r.job.keep.clone())
            .unwrap_or_default();
        backups::finish(&self.db, &row)
            .await
            .map_err(ApiError::internal)?;
        if state == BackupState::Done {
            // The store deleted its older backups of the volume as it stored this one.
            let keep: Vec<String> = keep.iter().map(Uuid::to_string).collect();
            backups::expire_others(&self.db, volume, &row.store_worker_id, &keep)
                .await
                .map_err(ApiError::internal)?;
        }
        match state {
            BackupState::Done => {
                tracing::info!(backup_id = %row.id, volume, files = row.files, bytes = row.bytes, sent = row.bytes_sent, "backup done")
            }
            _ => tracing::warn!(backup_id = %row.id, volume, reason = ?row.error, "backup failed"),
        }
        self.running.lock().expect("backups lock").remove(volume);
        self.publish_jobs();
        Ok(())
    }

    fn publish_jobs(&self) {
        let mut jobs: HashMap<Uuid, Vec<BackupJob>> = HashMap::new();
        for r in self.running.lock().expect("backups lock").values() {
            jobs.entry(r.holder).or_default().push(r.job.clone());
        }
        self.instances.set_backup_jobs(jobs);
    }
}

/// Where a backup of a volume held by `holder` goes: the store of its last backup while that is
/// live (so unchanged files are not sent again), else the live worker other than the holder with
/// the most free disk, else the holder itself.
fn choose_store(holder: Uuid, last: Option<Uuid>, workers: &[Arc<Worker>]) -> Arc<Worker> {
    let live = |w: &&Arc<Worker>| w.status == WorkerStatus::Live && w.api_url.is_some();
    if let Some(w) = last
        .filter(|l| *l != holder)
        .and_then(|l| workers.iter().filter(live).find(|w| w.id == l))
    {
        return w.clone();
    }
    let others = workers
        .iter()
        .filter(live)
        .filter(|w| w.id != holder)
        .max_by_key(|w| w.resources.disk_free_bytes);
    others
        .or_else(|| workers.iter().find(|w| w.id == holder))
        .cloned()
        .expect("the holder is live")
}
