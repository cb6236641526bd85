//! The worker registry: registration (and recognising a worker that comes back), heartbeats,
//! listing, and the cluster's resources. Live or lost is derived from the last heartbeat at read
//! time, so there is no state to keep in step.
//!
//! The registry is held in memory and SQLite is its durable copy: reads never touch the database.
//! Registrations and removals are committed to SQLite before they are applied in memory and
//! answered (one at a time, so the two never disagree). Heartbeats are applied in memory at once and
//! written behind: a flush stores the latest heartbeat of every worker heard from in one transaction
//! every [`FLUSH_INTERVAL`], and once more at shutdown. A crash loses at most that much last-seen
//! and resource data, which the next heartbeats restore.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{from_ms, random_secret, registration::RegistrationTokens};
use crate::{
    model::{
        ClusterResources, HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest,
        RegisterWorkerResponse, Worker, WorkerPage, WorkerResources, WorkerStatus,
    },
    store::{
        Db, now_ms,
        workers::{self, HeartbeatRecord, ResourceFigures, WorkerReport, WorkerRow},
    },
};

/// How often heartbeats are written behind to SQLite.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One worker as the registry holds it.
struct Entry {
    /// Shared with the snapshots placement takes (a heartbeat copies it only while one is held).
    worker: Arc<Worker>,
    credential_hash: String,
    last_heartbeat_ms: i64,
}

#[derive(Default)]
struct Registry {
    workers: RwLock<BTreeMap<Uuid, Entry>>,
    /// Heartbeats applied in memory and not yet flushed, latest per worker.
    pending: Mutex<HashMap<Uuid, HeartbeatRecord>>,
}

pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 500;
const MAX_LABELS: usize = 64;

pub struct WorkerService {
    db: Db,
    heartbeat_interval: Duration,
    ttl: Duration,
    registry: Arc<Registry>,
    /// Registrations and removals go one at a time: database first, then memory.
    mutation: tokio::sync::Mutex<()>,
    /// When this conductor process started (Unix ms).
    started_at: i64,
}

fn credential_hash(credential: &str) -> String {
    // Credentials are 256 random bits, so a fast hash is enough (unlike passwords) and keeps
    // heartbeats cheap.
    super::sha256_hex(credential.as_bytes())
}

impl WorkerService {
    /// Loads the registry from the database.
    pub async fn start(
        db: Db,
        heartbeat_interval: Duration,
        ttl: Duration,
    ) -> Result<Self, sqlx::Error> {
        let registry = Arc::new(Registry::default());
        {
            let rows = workers::load_all(&db).await?;
            let mut map = registry.workers.write().expect("registry lock");
            for (row, credential_hash) in rows {
                match entry_from_row(&row, credential_hash) {
                    Ok(entry) => {
                        map.insert(entry.worker.id, entry);
                    }
                    Err(e) => {
                        tracing::error!(worker_id = %row.id, error = %e, "skipping an unreadable worker row")
                    }
                }
            }
            // The conductor's own downtime is not the workers' silence: each worker that was live
            // when it last heard from any gets one TTL from this start to check in before it is
            // judged lost (its instances replaced, its jobs' attempts retried elsewhere).
            let last_heard = map.values().map(|e| e.last_heartbeat_ms).max();
            if let Some(last_heard) = last_heard {
                let live_then = last_heard - ttl.as_millis() as i64;
                let now = now_ms();
                for entry in map.values_mut() {
                    if entry.last_heartbeat_ms >= live_then {
                        entry.last_heartbeat_ms = entry.last_heartbeat_ms.max(now);
                    }
                }
            }
        }
        Ok(Self {
            db,
            heartbeat_interval,
            ttl,
            registry,
            mutation: tokio::sync::Mutex::new(()),
            started_at: now_ms(),
        })
    }

    /// When this conductor process started (Unix ms).
    pub fn started_at(&self) -> i64 {
        self.started_at
    }

    /// Whether `worker` has heartbeated to this conductor process (not only been given the grace
    /// after its start): work placed on it is picked up.
    pub fn checked_in(&self, worker: &crate::model::Worker) -> bool {
        worker.last_heartbeat_at.timestamp_millis() >= self.started_at
    }

    /// Writes the pending heartbeats to SQLite. Called every [`FLUSH_INTERVAL`] and at shutdown.
    pub async fn flush(&self) -> Result<(), sqlx::Error> {
        let batch: Vec<HeartbeatRecord> = {
            let mut pending = self.registry.pending.lock().expect("pending lock");
            pending.drain().map(|(_, record)| record).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        workers::record_heartbeats(&self.db, &batch).await
    }

    fn live_since(&self) -> i64 {
        now_ms() - self.ttl.as_millis() as i64
    }

    pub async fn register(
        &self,
        tokens: &RegistrationTokens,
        req: RegisterWorkerRequest,
    ) -> ApiResult<RegisterWorkerResponse> {
        tokens.check(&req.registration_token).await?;
        if req.hostname.trim().is_empty() || req.hostname.len() > 253 {
            return Err(ApiError::bad_request(
                "invalid_hostname",
                "hostname must be 1–253 bytes",
            ));
        }
        if req
            .name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > 128)
        {
            return Err(ApiError::bad_request(
                "invalid_name",
                "name must be 1–128 bytes, or left out to use the hostname",
            ));
        }
        let ip = validate_ip(&req.ip_address)?;
        validate_labels(&req.labels)?;
        if req.api_url.as_ref().is_some_and(|u| {
            !(u.starts_with("http://") || u.starts_with("https://")) || u.len() > 256
        }) {
            return Err(ApiError::bad_request(
                "invalid_api_url",
                "api_url must be an http(s) URL of at most 256 bytes",
            ));
        }
        validate_resources(&req.resources)?;
        let labels_json = serde_json::to_string(&req.labels).map_err(ApiError::internal)?;
        let resources_json = serde_json::to_string(&req.resources).map_err(ApiError::internal)?;
        let name = req.name.clone().unwrap_or_else(|| req.hostname.clone());
        let report = WorkerReport {
            name: &name,
            hostname: &req.hostname,
            ip_address: &ip,
            labels_json: &labels_json,
            resources: figures(&req.resources),
            resources_json: &resources_json,
            api_url: req.api_url.as_deref(),
        };
        let now = now_ms();
        let interval = self.heartbeat_interval.as_secs();
        let _one_at_a_time = self.mutation.lock().await;

        if let Some(id) = req.worker_id {
            let id_text = id.to_string();
            let stored = self
                .registry
                .workers
                .read()
                .expect("registry lock")
                .get(&id)
                .map(|e| e.credential_hash.clone());
            match stored {
                Some(stored) => {
                    let presented = req.worker_credential.as_deref().map(credential_hash);
                    if presented.as_deref() != Some(stored.as_str()) {
                        return Err(ApiError::conflict(
                            "worker_identity_conflict",
                            format!(
                                "worker {id} is registered with another credential; register without worker_id to join as a new worker, or remove {id} first (DELETE /api/workers/{id})"
                            ),
                        ));
                    }
                    workers::update_registration(&self.db, &id_text, &report, now)
                        .await
                        .map_err(ApiError::internal)?;
                    self.put(id, stored, &name, &req, &ip, now, None);
                    tracing::info!(worker_id = %id, ip = %ip, "worker re-registered");
                    return Ok(RegisterWorkerResponse {
                        worker_id: id,
                        worker_credential: req.worker_credential.unwrap_or_default(),
                        heartbeat_interval_secs: interval,
                        created: false,
                    });
                }
                None => {
                    // The conductor forgot this worker (database reset, or it was removed): it joins
                    // again under the id it already has, so its identity stays stable.
                    let credential = random_secret("aerekos_wkr_", 32);
                    let hash = credential_hash(&credential);
                    workers::insert(&self.db, &id_text, &hash, &report, now)
                        .await
                        .map_err(ApiError::internal)?;
                    self.put(id, hash, &name, &req, &ip, now, Some(now));
                    tracing::info!(worker_id = %id, ip = %ip, "known worker id registered anew");
                    return Ok(RegisterWorkerResponse {
                        worker_id: id,
                        worker_credential: credential,
                        heartbeat_interval_secs: interval,
                        created: true,
                    });
                }
            }
        }
        let id = Uuid::new_v4();
        let credential = random_secret("aerekos_wkr_", 32);
        let hash = credential_hash(&credential);
        workers::insert(&self.db, &id.to_string(), &hash, &report, now)
            .await
            .map_err(ApiError::internal)?;
        self.put(id, hash, &name, &req, &ip, now, Some(now));
        tracing::info!(worker_id = %id, hostname = %req.hostname, ip = %ip, "worker registered");
        Ok(RegisterWorkerResponse {
            worker_id: id,
            worker_credential: credential,
            heartbeat_interval_secs: interval,
            created: true,
        })
    }

    /// 401 unless `credential` is worker `id`'s; 404 if the conductor does not know the worker.
    pub fn authenticate(&self, id: Uuid, credential: &str) -> ApiResult<()> {
        let presented = credential_hash(credential);
        let map = self.registry.workers.read().expect("registry lock");
        let entry = map.get(&id).ok_or_else(|| Self::unknown(id))?;
        Self::check_credential(entry, id, &presented)
    }

    fn unknown(id: Uuid) -> ApiError {
        ApiError::not_found(
            "worker_not_found",
            format!("worker {id} is not registered with this conductor; register again"),
        )
    }

    fn check_credential(entry: &Entry, id: Uuid, presented_hash: &str) -> ApiResult<()> {
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            entry.credential_hash.as_bytes(),
            presented_hash.as_bytes(),
        )) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "invalid_worker_credential",
                format!("the credential is not worker {id}'s"),
            ))
        }
    }

    /// 404 unless worker `id` is registered.
    pub fn ensure_exists(&self, id: Uuid) -> ApiResult<()> {
        if self
            .registry
            .workers
            .read()
            .expect("registry lock")
            .contains_key(&id)
        {
            Ok(())
        } else {
            Err(ApiError::not_found(
                "worker_not_found",
                format!("no worker with id {id}"),
            ))
        }
    }

    /// Applies `req` to `id` in memory after checking its credential; the database follows within
    /// [`FLUSH_INTERVAL`].
    pub async fn heartbeat(
        &self,
        id: Uuid,
        credential: &str,
        req: HeartbeatRequest,
    ) -> ApiResult<HeartbeatResponse> {
        validate_resources(&req.resources)?;
        let ip = req.ip_address.as_deref().map(validate_ip).transpose()?;
        let resources_json = serde_json::to_string(&req.resources).map_err(ApiError::internal)?;
        let presented = credential_hash(credential);
        let now = now_ms();
        let ip_address = {
            let mut map = self.registry.workers.write().expect("registry lock");
            let Some(entry) = map.get_mut(&id) else {
                return Err(Self::unknown(id));
            };
            Self::check_credential(entry, id, &presented)?;
            let worker = Arc::make_mut(&mut entry.worker);
            if let Some(ip) = ip {
                worker.ip_address = ip;
            }
            worker.resources = req.resources.clone();
            worker.last_heartbeat_at = from_ms(now);
            let ip_address = worker.ip_address.clone();
            entry.last_heartbeat_ms = now;
            ip_address
        };
        let record = HeartbeatRecord {
            id: id.to_string(),
            ip_address,
            resources: figures(&req.resources),
            resources_json,
            at: now,
        };
        self.registry
            .pending
            .lock()
            .expect("pending lock")
            .insert(id, record);
        Ok(HeartbeatResponse {
            heartbeat_interval_secs: self.heartbeat_interval.as_secs(),
            server_time: chrono::Utc::now(),
        })
    }

    pub async fn list(
        &self,
        status: Option<WorkerStatus>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> ApiResult<WorkerPage> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        // An empty cursor (`?cursor=`) is the first page, as no cursor is.
        let after = cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "cursor must be a next_cursor from a previous page",
                )
            })?;
        let since = self.live_since();
        let map = self.registry.workers.read().expect("registry lock");
        let range = match after {
            Some(after) => {
                map.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => map.range(..),
        };
        let mut workers = Vec::with_capacity(limit.min(64) as usize);
        let mut next_cursor = None;
        for (_, entry) in range {
            let state = status_of(entry, since);
            if status.is_some_and(|wanted| wanted != state) {
                continue;
            }
            if workers.len() == limit as usize {
                // Another match follows: the page is full and there is a next one.
                next_cursor = workers.last().map(|w: &Worker| w.id.to_string());
                break;
            }
            workers.push(Worker::clone(&with_status(entry, state)));
        }
        Ok(WorkerPage {
            workers,
            next_cursor,
        })
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Worker> {
        let map = self.registry.workers.read().expect("registry lock");
        let entry = map.get(&id).ok_or_else(|| {
            ApiError::not_found("worker_not_found", format!("no worker with id {id}"))
        })?;
        Ok(Worker::clone(&with_status(
            entry,
            status_of(entry, self.live_since()),
        )))
    }

    /// Whether worker `id` is registered and heard from within the TTL.
    pub fn is_live(&self, id: Uuid) -> bool {
        let since = self.live_since();
        self.registry
            .workers
            .read()
            .expect("registry lock")
            .get(&id)
            .is_some_and(|e| status_of(e, since) == WorkerStatus::Live)
    }

    /// The workers live now: for judging many instances at one moment with one clock read and
    /// one look at the registry (placement's snapshot judges every instance).
    pub fn live_ids(&self) -> std::collections::HashSet<Uuid> {
        let since = self.live_since();
        self.registry
            .workers
            .read()
            .expect("registry lock")
            .iter()
            .filter(|(_, e)| status_of(e, since) == WorkerStatus::Live)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every registered worker with its current status (what the scheduler places on), shared
    /// rather than copied: placement takes one at every deploy.
    pub fn snapshot(&self) -> Vec<Arc<Worker>> {
        let since = self.live_since();
        self.registry
            .workers
            .read()
            .expect("registry lock")
            .values()
            .map(|e| with_status(e, status_of(e, since)))
            .collect()
    }

    pub async fn remove(&self, id: Uuid) -> ApiResult<()> {
        let _one_at_a_time = self.mutation.lock().await;
        if !workers::delete(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::not_found(
                "worker_not_found",
                format!("no worker with id {id}"),
            ));
        }
        self.registry
            .workers
            .write()
            .expect("registry lock")
            .remove(&id);
        self.registry
            .pending
            .lock()
            .expect("pending lock")
            .remove(&id);
        tracing::info!(worker_id = %id, "worker removed");
        Ok(())
    }

    pub async fn resources(&self) -> ApiResult<ClusterResources> {
        let since = self.live_since();
        let map = self.registry.workers.read().expect("registry lock");
        let mut out = ClusterResources {
            live_workers: 0,
            lost_workers: 0,
            cpu_cores: 0,
            cpu_usage_percent: 0.0,
            memory_total_bytes: 0,
            memory_available_bytes: 0,
            disk_total_bytes: 0,
            disk_free_bytes: 0,
        };
        let mut weighted_usage = 0.0;
        for entry in map.values() {
            if status_of(entry, since) == WorkerStatus::Lost {
                out.lost_workers += 1;
                continue;
            }
            let r = &entry.worker.resources;
            out.live_workers += 1;
            out.cpu_cores += u64::from(r.cpu_cores);
            weighted_usage += r.cpu_usage_percent * f64::from(r.cpu_cores);
            out.memory_total_bytes += r.memory_total_bytes;
            out.memory_available_bytes += r.memory_available_bytes;
            out.disk_total_bytes += r.disk_total_bytes;
            out.disk_free_bytes += r.disk_free_bytes;
        }
        if out.cpu_cores > 0 {
            out.cpu_usage_percent = weighted_usage / out.cpu_cores as f64;
        }
        Ok(out)
    }

    /// Applies a committed registration in memory.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        id: Uuid,
        credential_hash: String,
        name: &str,
        req: &RegisterWorkerRequest,
        ip: &str,
        now: i64,
        registered_at: Option<i64>,
    ) {
        let mut map = self.registry.workers.write().expect("registry lock");
        let registered_at = registered_at
            .or_else(|| {
                map.get(&id)
                    .map(|e| e.worker.registered_at.timestamp_millis())
            })
            .unwrap_or(now);
        let worker = Worker {
            id,
            name: name.to_owned(),
            hostname: req.hostname.clone(),
            ip_address: ip.to_owned(),
            labels: req.labels.clone(),
            status: WorkerStatus::Live,
            resources: req.resources.clone(),
            api_url: req.api_url.clone(),
            registered_at: from_ms(registered_at),
            last_heartbeat_at: from_ms(now),
        };
        map.insert(
            id,
            Entry {
                worker: Arc::new(worker),
                credential_hash,
                last_heartbeat_ms: now,
            },
        );
        // A registration carries the newest report; an older pending heartbeat must not overwrite it.
        self.registry
            .pending
            .lock()
            .expect("pending lock")
            .remove(&id);
    }
}

fn status_of(entry: &Entry, live_since: i64) -> WorkerStatus {
    if entry.last_heartbeat_ms >= live_since {
        WorkerStatus::Live
    } else {
        WorkerStatus::Lost
    }
}

/// The worker with `status`: the registry's own copy when that is its status already.
fn with_status(entry: &Entry, status: WorkerStatus) -> Arc<Worker> {
    if entry.worker.status == status {
        entry.worker.clone()
    } else {
        let mut worker = Worker::clone(&entry.worker);
        worker.status = status;
        Arc::new(worker)
    }
}

fn entry_from_row(row: &WorkerRow, credential_hash: String) -> Result<Entry, String> {
    Ok(Entry {
        worker: Arc::new(Worker {
            id: Uuid::parse_str(&row.id).map_err(|e| e.to_string())?,
            name: row.name.clone(),
            hostname: row.hostname.clone(),
            ip_address: row.ip_address.clone(),
            labels: serde_json::from_str(&row.labels).map_err(|e| e.to_string())?,
            status: WorkerStatus::Live,
            resources: serde_json::from_str(&row.resources).map_err(|e| e.to_string())?,
            api_url: row.api_url.clone(),
            registered_at: from_ms(row.registered_at),
            last_heartbeat_at: from_ms(row.last_heartbeat_at),
        }),
        credential_hash,
        last_heartbeat_ms: row.last_heartbeat_at,
    })
}

fn figures(r: &WorkerResources) -> ResourceFigures {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ResourceFigures {
        cpu_cores: i64::from(r.cpu_cores),
        cpu_usage_percent: r.cpu_usage_percent,
        memory_total_bytes: i(r.memory_total_bytes),
        memory_available_bytes: i(r.memory_available_bytes),
        disk_total_bytes: i(r.disk_total_bytes),
        disk_free_bytes: i(r.disk_free_bytes),
    }
}

/// The address in canonical form, or 400.
fn validate_ip(ip: &str) -> ApiResult<String> {
    ip.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_ip_address",
                format!("ip_address {ip:?} is not an IPv4 or IPv6 address"),
            )
        })
}

fn validate_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(
            "invalid_labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in labels {
        let key_ok = (1..=63).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !key_ok {
            return Err(ApiError::bad_request(
                "invalid_labels",
                format!(
                    "label key {k:?} must be 1–63 characters of letters, digits, '.', '_', '-' or '/'"
                ),
            ));
        }
        if v.len() > 256 {
            return Err(ApiError::bad_request(
                "invalid_labels",
                format!("label {k:?}: values are at most 256 bytes"),
            ));
        }
    }
    Ok(())
}

fn validate_resources(r: &WorkerResources) -> ApiResult<()> {
    let bad = |m: &str| Err(ApiError::bad_request("invalid_resources", m.to_owned()));
    if !r.cpu_usage_percent.is_finite() {
        return bad("cpu_usage_percent must be a number between 0 and 100");
    }
    if r.memory_available_bytes > r.memory_total_bytes {
        return bad("memory_available_bytes is larger than memory_total_bytes");
    }
    if r.disk_free_bytes > r.disk_total_bytes {
        return bad("disk_free_bytes is larger than disk_total_bytes");
    }
    if r.network.len() > 256 || r.drivers.len() > 16 {
        return bad("too many network interfaces (max 256) or drivers (max 16)");
    }
    Ok(())
}
