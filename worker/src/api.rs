//! The worker's own API (`openapi/worker.json`): health and metrics, the instances it runs, and
//! their recent output. Callers use a user token from the conductor, checked with the conductor's
//! public key — which the worker fetches once it has reached the conductor; until then token-checked
//! operations answer 503 (health and metrics need no token).

use std::sync::Arc;

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    metrics::{write_counter, write_gauge},
};
use poem::{Body, Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::{Path, Query},
    payload::{Binary, Json, PlainText},
};
use uuid::Uuid;

use crate::Shared;

#[derive(Tags)]
enum ApiTags {
    /// What this worker runs.
    Instances,
    /// The volumes this worker holds, as moves copy them between workers.
    Volumes,
    /// Health and metrics.
    System,
}

/// A user's token from the conductor, as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_user")]
struct UserToken(Caller);

async fn check_user(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let shared = req.data::<Arc<Shared>>().expect("Shared is attached");
    let verifier = shared.verifier.read().expect("verifier lock").clone();
    let verifier = verifier.ok_or_else(|| {
        ApiError::unavailable(
            "conductor_not_reached",
            "this worker has not reached its conductor yet, so it cannot check tokens",
        )
    })?;
    match verifier.caller(&bearer.token)? {
        user @ Caller::User { .. } => Ok(user),
        Caller::Service { .. } | Caller::ApiKey { .. } => {
            Err(ApiError::forbidden("forbidden", "the worker API is for users").into())
        }
    }
}

/// A one-time grant from the conductor to fetch one volume from this worker, as
/// `Authorization: Bearer <grant>` (the receiving worker finds it in its assignments).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_grant")]
struct VolumeGrant(aerekos_common::auth::Claims);

async fn check_grant(req: &Request, bearer: Bearer) -> poem::Result<aerekos_common::auth::Claims> {
    let shared = req.data::<Arc<Shared>>().expect("Shared is attached");
    let verifier = shared.verifier.read().expect("verifier lock").clone();
    let verifier = verifier.ok_or_else(|| {
        ApiError::unavailable(
            "conductor_not_reached",
            "this worker has not reached its conductor yet, so it cannot check grants",
        )
    })?;
    let claims = verifier
        .verify(&bearer.token)
        .map_err(|e| ApiError::unauthorized(e.code(), e.to_string()))?;
    if claims.role != aerekos_common::auth::VOLUME_TRANSFER_ROLE {
        return Err(ApiError::forbidden(
            "not_a_grant",
            "volume exports take a volume transfer grant from the conductor",
        )
        .into());
    }
    Ok(claims)
}

/// A volume as a stream.
#[derive(ApiResponse)]
enum VolumeArchive {
    /// A tar archive of the volume whose last entry, `.aerekos-volume-sha256`, is the SHA-256 of
    /// every entry before it (type, path, size and content).
    #[oai(status = 200)]
    Archive(Binary<Body>),
}

/// Chunk names (64 lowercase hex digits each).
#[derive(Object, Debug, Clone)]
pub struct ChunkList {
    pub chunks: Vec<String>,
}

/// Backup ids.
#[derive(Object, Debug, Clone)]
pub struct BackupIds {
    pub keep: Vec<Uuid>,
}

/// What a prune deleted from a backup store.
#[derive(Object, Debug, Clone)]
pub struct Pruned {
    pub backups: u64,
    pub contents: u64,
    pub bytes: u64,
}

/// Stored; nothing to return.
#[derive(ApiResponse)]
enum Stored {
    /// Stored, synced to disk.
    #[oai(status = 204)]
    NoContent,
}

/// A stored backup object (sealed: only the cluster's backup key opens it).
#[derive(ApiResponse)]
enum StoredBytes {
    #[oai(status = 200)]
    Bytes(Binary<Body>),
}

pub struct VolumesApi;

#[OpenApi(prefix_path = "/api/worker", tag = "ApiTags::Volumes")]
impl VolumesApi {
    /// Which of these contents this worker's backup store lacks for the volume (a backup's grant).
    #[oai(
        path = "/backups/:volume/missing",
        method = "post",
        operation_id = "missing_backup_chunks"
    )]
    async fn missing(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        body: Json<ChunkList>,
    ) -> ApiResult<Json<ChunkList>> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "read", &volume.0)?;
        crate::backup::missing(&store, body.0.chunks).map(|chunks| Json(ChunkList { chunks }))
    }

    /// Store one sealed content of a volume's backups (a backup's grant); written whole or not at all.
    #[oai(
        path = "/backups/:volume/chunks/:chunk",
        method = "put",
        operation_id = "put_backup_chunk"
    )]
    async fn put_chunk(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        chunk: Path<String>,
        body: Binary<Body>,
    ) -> ApiResult<Stored> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "write", &volume.0)?;
        let path = crate::backup::chunk_file(&store, &chunk.0)?;
        crate::backup::store_file(path, body.0)
            .await
            .map(|()| Stored::NoContent)
    }

    /// Store a backup's sealed manifest (a backup's grant): the backup exists from then on.
    #[oai(
        path = "/backups/:volume/manifests/:backup_id",
        method = "put",
        operation_id = "put_backup_manifest"
    )]
    async fn put_manifest(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        backup_id: Path<Uuid>,
        body: Binary<Body>,
    ) -> ApiResult<Stored> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "write", &volume.0)?;
        crate::backup::store_file(crate::backup::manifest_file(&store, backup_id.0), body.0)
            .await
            .map(|()| Stored::NoContent)
    }

    /// The contents a backup's manifest names (a backup's grant), so the store can tell which
    /// contents its remaining backups still use without being able to open them.
    #[oai(
        path = "/backups/:volume/manifests/:backup_id/chunks",
        method = "put",
        operation_id = "put_backup_chunk_list"
    )]
    async fn put_chunk_list(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        backup_id: Path<Uuid>,
        body: Json<ChunkList>,
    ) -> ApiResult<Stored> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "write", &volume.0)?;
        crate::backup::store_chunk_list(&store, backup_id.0, body.0.chunks)
            .await
            .map(|()| Stored::NoContent)
    }

    /// Keep only these backups of the volume (a backup's grant): the others are deleted, and so are
    /// the contents none of the kept ones uses.
    #[oai(
        path = "/backups/:volume/prune",
        method = "post",
        operation_id = "prune_backups"
    )]
    async fn prune(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        body: Json<BackupIds>,
    ) -> ApiResult<Json<Pruned>> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "write", &volume.0)?;
        let keep = body.0.keep;
        let (backups, contents, bytes) =
            tokio::task::spawn_blocking(move || crate::backup::prune(&store, &keep))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
        Ok(Json(Pruned {
            backups,
            contents,
            bytes,
        }))
    }

    /// A backup's sealed manifest (a restore's grant).
    #[oai(
        path = "/backups/:volume/manifests/:backup_id",
        method = "get",
        operation_id = "get_backup_manifest"
    )]
    async fn get_manifest(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        backup_id: Path<Uuid>,
    ) -> ApiResult<StoredBytes> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "read", &volume.0)?;
        let body = crate::backup::read_file(
            &crate::backup::manifest_file(&store, backup_id.0),
            &format!("backup {}", backup_id.0),
        )
        .await?;
        Ok(StoredBytes::Bytes(Binary(body)))
    }

    /// One sealed content (a restore's grant).
    #[oai(
        path = "/backups/:volume/chunks/:chunk",
        method = "get",
        operation_id = "get_backup_chunk"
    )]
    async fn get_chunk(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        volume: Path<String>,
        chunk: Path<String>,
    ) -> ApiResult<StoredBytes> {
        let store = crate::backup::check_store_grant(&shared, &grant.0, "read", &volume.0)?;
        let body = crate::backup::read_file(
            &crate::backup::chunk_file(&store, &chunk.0)?,
            &format!("content {}", chunk.0),
        )
        .await?;
        Ok(StoredBytes::Bytes(Binary(body)))
    }

    /// Stream a volume to the worker it is moving to (volume transfer grant, good once). Refused
    /// with 409 `volume_in_use` while an instance here still runs on it.
    #[oai(
        path = "/volumes/:name/export",
        method = "get",
        operation_id = "export_volume"
    )]
    async fn export(
        &self,
        shared: Data<&Arc<Shared>>,
        grant: VolumeGrant,
        name: Path<String>,
    ) -> ApiResult<VolumeArchive> {
        crate::volumes::export(&shared, &grant.0, &name.0)
            .await
            .map(|body| VolumeArchive::Archive(Binary(body)))
    }
}

/// An instance as this worker runs it.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkerInstance {
    pub id: Uuid,
    /// The catalog service, if any.
    pub service: Option<String>,
    /// As reported to the conductor: `pending`, `running`, `exited`, `failed`, `stopped`, …
    pub state: String,
    pub address: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub restarts: u32,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkerHealth {
    /// `ok`.
    pub status: String,
    pub version: String,
    /// Absent until the worker has joined a conductor.
    pub worker_id: Option<Uuid>,
    /// The runtime drivers it has: `process`, and `docker` where an engine answers.
    pub drivers: Vec<String>,
}

pub struct InstancesApi;

#[OpenApi(prefix_path = "/api/worker", tag = "ApiTags::Instances")]
impl InstancesApi {
    /// The instances this worker runs or was assigned, with their state.
    #[oai(path = "/instances", method = "get", operation_id = "list_instances")]
    async fn list(
        &self,
        shared: Data<&Arc<Shared>>,
        _auth: UserToken,
    ) -> ApiResult<Json<Vec<WorkerInstance>>> {
        Ok(Json(shared.view.lock().expect("view lock").clone()))
    }

    /// The end of an instance's output (stdout and stderr together).
    #[oai(
        path = "/instances/:id/logs",
        method = "get",
        operation_id = "get_instance_logs"
    )]
    async fn logs(
        &self,
        shared: Data<&Arc<Shared>>,
        auth: UserToken,
        id: Path<Uuid>,
        /// At most this many bytes from the end (default 64 KiB, at most 1 MiB).
        max_bytes: Query<Option<u32>>,
    ) -> ApiResult<PlainText<String>> {
        tracing::debug!(caller = %auth.0.actor(), instance_id = %id.0, "instance logs read");
        let max = max_bytes.0.unwrap_or(64 * 1024);
        if !(1..=MAX_LOG_BYTES).contains(&max) {
            return Err(ApiError::bad_request(
                "invalid_max_bytes",
                format!("max_bytes must be between 1 and {MAX_LOG_BYTES}"),
            ));
        }
        match shared.driver.logs(id.0, max as usize).await {
            Ok(text) => Ok(PlainText(text)),
            Err(crate::driver::DriverError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::not_found(
                    "instance_not_found",
                    format!("this worker has no output of instance {}", id.0),
                ))
            }
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// One output stream of a `run_once` instance (a job's attempt), from a byte offset: how a
    /// client follows a running job's output, or reads all of it while this worker keeps it.
    #[oai(
        path = "/instances/:id/output",
        method = "get",
        operation_id = "get_instance_output"
    )]
    async fn output(
        &self,
        shared: Data<&Arc<Shared>>,
        auth: UserToken,
        id: Path<Uuid>,
        stream: Query<StreamName>,
        /// From this byte (default: the last `max_bytes`).
        offset: Query<Option<u64>>,
        /// At most this many bytes (default 64 KiB, at most 1 MiB).
        max_bytes: Query<Option<u32>>,
    ) -> ApiResult<Json<InstanceOutput>> {
        tracing::debug!(caller = %auth.0.actor(), instance_id = %id.0, "instance output read");
        let max = max_bytes.0.unwrap_or(64 * 1024);
        if !(1..=MAX_LOG_BYTES).contains(&max) {
            return Err(ApiError::bad_request(
                "invalid_max_bytes",
                format!("max_bytes must be between 1 and {MAX_LOG_BYTES}"),
            ));
        }
        let which = match stream.0 {
            StreamName::Stdout => crate::driver::OutputStream::Stdout,
            StreamName::Stderr => crate::driver::OutputStream::Stderr,
        };
        match shared
            .driver
            .output(id.0, which, offset.0, max as usize)
            .await
        {
            Ok(chunk) => {
                // A character cut by the end of the read is left whole for the next one (unless
                // it is all there is, so a reader always moves on).
                let whole = match std::str::from_utf8(&chunk.bytes) {
                    Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
                    _ => chunk.bytes.len(),
                };
                Ok(Json(InstanceOutput {
                    offset: chunk.offset,
                    next_offset: chunk.offset + whole as u64,
                    total: chunk.total,
                    text: String::from_utf8_lossy(&chunk.bytes[..whole]).into_owned(),
                }))
            }
            Err(crate::driver::DriverError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::not_found(
                    "instance_not_found",
                    format!("this worker has no output of instance {}", id.0),
                ))
            }
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// Part of one output stream of a `run_once` instance (a job's attempt).
#[derive(Object, Debug, Clone)]
pub struct InstanceOutput {
    /// Where `text` starts, in bytes from the stream's beginning.
    pub offset: u64,
    /// Pass as `offset` to read on.
    pub next_offset: u64,
    /// The stream's length so far.
    pub total: u64,
    /// UTF-8, invalid bytes replaced.
    pub text: String,
}

/// `stdout` or `stderr`.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum StreamName {
    Stdout,
    Stderr,
}

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, shared: Data<&Arc<Shared>>) -> ApiResult<Json<WorkerHealth>> {
        Ok(Json(WorkerHealth {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            worker_id: *shared.registered.borrow(),
            drivers: shared.driver.info().into_iter().map(|d| d.name).collect(),
        }))
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, shared: Data<&Arc<Shared>>) -> ApiResult<PlainText<String>> {
        let mut out = String::new();
        shared.metrics.render_http(&mut out);
        let view = shared.view.lock().expect("view lock").clone();
        let mut by_state: std::collections::BTreeMap<String, f64> = Default::default();
        for i in &view {
            *by_state.entry(i.state.clone()).or_default() += 1.0;
        }
        let samples: Vec<_> = by_state
            .into_iter()
            .map(|(s, n)| (format!("state=\"{s}\""), n))
            .collect();
        write_gauge(
            &mut out,
            "aerekos_worker_instances",
            "Instances on this worker by state.",
            &samples,
        );
        write_gauge(
            &mut out,
            "aerekos_worker_instance_restarts",
            "Restarts of this worker's instances, summed.",
            &[(
                String::new(),
                view.iter().map(|i| f64::from(i.restarts)).sum(),
            )],
        );
        write_counter(
            &mut out,
            "aerekos_worker_instance_restarts_total",
            "Instance restarts this worker made since it started.",
            shared
                .restarts_total
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let resources = shared
            .last_resources
            .lock()
            .expect("resources lock")
            .clone();
        if let Some(r) = resources {
            let gauges = [
                (
                    "aerekos_worker_cpu_usage_percent",
                    "CPU use over all cores, 0-100, at the last heartbeat.",
                    r.cpu_usage_percent,
                ),
                (
                    "aerekos_worker_cpu_cores",
                    "CPU cores.",
                    f64::from(r.cpu_cores),
                ),
                (
                    "aerekos_worker_memory_total_bytes",
                    "Memory of the machine.",
                    r.memory_total_bytes as f64,
                ),
                (
                    "aerekos_worker_memory_available_bytes",
                    "Memory available, at the last heartbeat.",
                    r.memory_available_bytes as f64,
                ),
                (
                    "aerekos_worker_disk_total_bytes",
                    "Size of the disk holding the worker's data directory.",
                    r.disk_total_bytes as f64,
                ),
                (
                    "aerekos_worker_disk_free_bytes",
                    "Free space on that disk, at the last heartbeat.",
                    r.disk_free_bytes as f64,
                ),
            ];
            for (name, help, value) in gauges {
                write_gauge(&mut out, name, help, &[(String::new(), value)]);
            }
            if r.disk_total_bytes > 0 {
                let used = r.disk_total_bytes.saturating_sub(r.disk_free_bytes) as f64;
                write_gauge(
                    &mut out,
                    "aerekos_worker_disk_used_percent",
                    "Share of that disk in use, 0-100 (what the disk_almost_full alert watches).",
                    &[(String::new(), 100.0 * used / r.disk_total_bytes as f64)],
                );
            }
        }
        if let Some(ship) = &shared.logship {
            use std::sync::atomic::Ordering::Relaxed;
            let counters = [
                (
                    "aerekos_worker_log_lines_shipped_total",
                    "Log lines logs_manager stored from this worker (since it started).",
                    ship.shipped.load(Relaxed),
                ),
                (
                    "aerekos_worker_log_lines_dropped_total",
                    "Log lines dropped unshipped: the spool was full while logs_manager was away.",
                    ship.dropped.load(Relaxed)
                        + ship.lost.load(Relaxed)
                        + aerekos_common::telemetry::captured_dropped(),
                ),
            ];
            for (name, help, value) in counters {
                write_counter(&mut out, name, help, value);
            }
            write_gauge(
                &mut out,
                "aerekos_worker_log_spool_bytes",
                "Bytes of log lines waiting on disk to be shipped.",
                &[(String::new(), ship.spool_bytes.load(Relaxed) as f64)],
            );
        }
        Ok(PlainText(out))
    }
}

/// The limits the worker API enforces, declared in its spec (see `aerekos_common::limits`).
pub fn limits() -> Vec<aerekos_common::limits::Limit> {
    ["get_instance_logs", "get_instance_output"]
        .into_iter()
        .map(|operation| {
            aerekos_common::limits::Limit::param(
                operation,
                "max_bytes",
                serde_json::json!({"minimum": 1, "maximum": MAX_LOG_BYTES}),
            )
        })
        .collect()
}

/// The most output one `get_instance_logs` answer carries.
const MAX_LOG_BYTES: u32 = 1024 * 1024;

pub fn service() -> OpenApiService<(InstancesApi, VolumesApi, SystemApi), ()> {
    OpenApiService::new(
        (InstancesApi, VolumesApi, SystemApi),
        "aerekos worker",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "A worker's own API: the instances it runs and their output, and volume exports for moves.",
    )
}
