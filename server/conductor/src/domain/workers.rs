//! The worker registry: registration (and recognising a worker that comes back), heartbeats,
//! listing, and the cluster's resources. Live or lost is derived from the last heartbeat at read
//! time, so there is no state to keep in step.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use aerekos_common::{ApiError, ApiResult};
use sha2::Digest as _;
use uuid::Uuid;

use super::{from_ms, random_secret, registration::RegistrationTokens};
use crate::{
    model::{
        ClusterResources, HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest, RegisterWorkerResponse, Worker,
        WorkerPage, WorkerResources, WorkerStatus,
    },
    store::{
        Db, now_ms,
        workers::{self, ResourceFigures, WorkerReport, WorkerRow},
    },
};

pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 500;
const MAX_LABELS: usize = 64;

pub struct WorkerService {
    db: Db,
    heartbeat_interval: Duration,
    ttl: Duration,
}

fn credential_hash(credential: &str) -> String {
    // Credentials are 256 random bits, so a fast hash is enough (unlike passwords) and keeps
    // heartbeats cheap.
    sha2::Sha256::digest(credential.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl WorkerService {
    pub fn new(db: Db, heartbeat_interval: Duration, ttl: Duration) -> Self {
        Self { db, heartbeat_interval, ttl }
    }

    fn live_since(&self) -> i64 {
        now_ms() - self.ttl.as_millis() as i64
    }

    pub async fn register(&self, tokens: &RegistrationTokens, req: RegisterWorkerRequest) -> ApiResult<RegisterWorkerResponse> {
        tokens.check(&req.registration_token).await?;
        if req.hostname.trim().is_empty() || req.hostname.len() > 253 {
            return Err(ApiError::bad_request("invalid_hostname", "hostname must be 1–253 bytes"));
        }
        if req.name.as_ref().is_some_and(|n| n.trim().is_empty() || n.len() > 128) {
            return Err(ApiError::bad_request("invalid_name", "name must be 1–128 bytes, or left out to use the hostname"));
        }
        let ip = validate_ip(&req.ip_address)?;
        validate_labels(&req.labels)?;
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
        };
        let now = now_ms();
        let interval = self.heartbeat_interval.as_secs();

        if let Some(id) = req.worker_id {
            let id_text = id.to_string();
            match workers::credential_hash(&self.db, &id_text).await.map_err(ApiError::internal)? {
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
                    workers::update_registration(&self.db, &id_text, &report, now).await.map_err(ApiError::internal)?;
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
                    workers::insert(&self.db, &id_text, &credential_hash(&credential), &report, now)
                        .await
                        .map_err(ApiError::internal)?;
                    tracing::info!(worker_id = %id, ip = %ip, "known worker id registered anew");
                    return Ok(RegisterWorkerResponse { worker_id: id, worker_credential: credential, heartbeat_interval_secs: interval, created: true });
                }
            }
        }
        let id = Uuid::new_v4();
        let credential = random_secret("aerekos_wkr_", 32);
        workers::insert(&self.db, &id.to_string(), &credential_hash(&credential), &report, now)
            .await
            .map_err(ApiError::internal)?;
        tracing::info!(worker_id = %id, hostname = %req.hostname, ip = %ip, "worker registered");
        Ok(RegisterWorkerResponse { worker_id: id, worker_credential: credential, heartbeat_interval_secs: interval, created: true })
    }

    pub async fn heartbeat(&self, id: Uuid, credential: &str, req: HeartbeatRequest) -> ApiResult<HeartbeatResponse> {
        validate_resources(&req.resources)?;
        let ip = req.ip_address.as_deref().map(validate_ip).transpose()?;
        let resources_json = serde_json::to_string(&req.resources).map_err(ApiError::internal)?;
        let id_text = id.to_string();
        let recorded = workers::record_heartbeat(
            &self.db,
            &id_text,
            &credential_hash(credential),
            ip.as_deref(),
            figures(&req.resources),
            &resources_json,
            now_ms(),
        )
        .await
        .map_err(ApiError::internal)?;
        if !recorded {
            let known = workers::credential_hash(&self.db, &id_text).await.map_err(ApiError::internal)?.is_some();
            return Err(if known {
                ApiError::unauthorized("invalid_worker_credential", format!("the credential is not worker {id}'s"))
            } else {
                ApiError::not_found(
                    "worker_not_found",
                    format!("worker {id} is not registered with this conductor; register again"),
                )
            });
        }
        Ok(HeartbeatResponse { heartbeat_interval_secs: self.heartbeat_interval.as_secs(), server_time: chrono::Utc::now() })
    }

    pub async fn list(&self, status: Option<WorkerStatus>, limit: Option<u32>, cursor: Option<String>) -> ApiResult<WorkerPage> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {MAX_PAGE}")));
        }
        if let Some(c) = &cursor {
            Uuid::parse_str(c).map_err(|_| ApiError::bad_request("invalid_cursor", "cursor must be a next_cursor from a previous page"))?;
        }
        let since = self.live_since();
        let (live_since, lost_before) = match status {
            None => (None, None),
            Some(WorkerStatus::Live) => (Some(since), None),
            Some(WorkerStatus::Lost) => (None, Some(since)),
        };
        // One extra row tells whether another page follows.
        let mut rows = workers::list(&self.db, cursor.as_deref(), live_since, lost_before, i64::from(limit) + 1)
            .await
            .map_err(ApiError::internal)?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        let workers = rows.iter().map(|r| self.to_model(r, since)).collect::<ApiResult<_>>()?;
        Ok(WorkerPage { workers, next_cursor })
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Worker> {
        let row = workers::find(&self.db, &id.to_string()).await.map_err(ApiError::internal)?;
        let row = row.ok_or_else(|| ApiError::not_found("worker_not_found", format!("no worker with id {id}")))?;
        self.to_model(&row, self.live_since())
    }

    pub async fn remove(&self, id: Uuid) -> ApiResult<()> {
        if workers::delete(&self.db, &id.to_string()).await.map_err(ApiError::internal)? {
            tracing::info!(worker_id = %id, "worker removed");
            Ok(())
        } else {
            Err(ApiError::not_found("worker_not_found", format!("no worker with id {id}")))
        }
    }

    pub async fn resources(&self) -> ApiResult<ClusterResources> {
        let totals = workers::totals(&self.db, self.live_since()).await.map_err(ApiError::internal)?;
        let all = workers::count(&self.db).await.map_err(ApiError::internal)?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(ClusterResources {
            live_workers: u(totals.workers),
            lost_workers: u(all - totals.workers),
            cpu_cores: u(totals.cpu_cores),
            cpu_usage_percent: totals.cpu_usage_percent,
            memory_total_bytes: u(totals.memory_total_bytes),
            memory_available_bytes: u(totals.memory_available_bytes),
            disk_total_bytes: u(totals.disk_total_bytes),
            disk_free_bytes: u(totals.disk_free_bytes),
        })
    }

    fn to_model(&self, row: &WorkerRow, live_since: i64) -> ApiResult<Worker> {
        Ok(Worker {
            id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
            name: row.name.clone(),
            hostname: row.hostname.clone(),
            ip_address: row.ip_address.clone(),
            labels: serde_json::from_str(&row.labels).map_err(ApiError::internal)?,
            status: if row.last_heartbeat_at >= live_since { WorkerStatus::Live } else { WorkerStatus::Lost },
            resources: serde_json::from_str(&row.resources).map_err(ApiError::internal)?,
            registered_at: from_ms(row.registered_at),
            last_heartbeat_at: from_ms(row.last_heartbeat_at),
        })
    }
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
        .map_err(|_| ApiError::bad_request("invalid_ip_address", format!("ip_address {ip:?} is not an IPv4 or IPv6 address")))
}

fn validate_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request("invalid_labels", format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        let key_ok = (1..=63).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !key_ok {
            return Err(ApiError::bad_request(
                "invalid_labels",
                format!("label key {k:?} must be 1–63 characters of letters, digits, '.', '_', '-' or '/'"),
            ));
        }
        if v.len() > 256 {
            return Err(ApiError::bad_request("invalid_labels", format!("label {k:?}: values are at most 256 bytes")));
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
