//! The worker's own API (`openapi/worker.json`): health and metrics, the instances it runs, and
//! their recent output. Callers use a user token from the conductor, checked with the conductor's
//! public key — which the worker fetches once it has reached the conductor; until then token-checked
//! operations answer 503 (health and metrics need no token).

use std::sync::Arc;

use aerekos_common::{ApiError, ApiResult, auth::Caller, metrics::write_gauge};
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
        ApiError::unavailable("conductor_not_reached", "this worker has not reached its conductor yet, so it cannot check tokens")
    })?;
    match verifier.caller(&bearer.token)? {
        user @ Caller::User { .. } => Ok(user),
        Caller::Service { .. } => Err(ApiError::forbidden("forbidden", "the worker API is for users").into()),
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
        ApiError::unavailable("conductor_not_reached", "this worker has not reached its conductor yet, so it cannot check grants")
    })?;
    let claims = verifier.verify(&bearer.token).map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
    if claims.role != aerekos_common::auth::VOLUME_TRANSFER_ROLE {
        return Err(ApiError::forbidden("not_a_grant", "volume exports take a volume transfer grant from the conductor").into());
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

pub struct VolumesApi;

#[OpenApi(prefix_path = "/api/worker", tag = "ApiTags::Volumes")]
impl VolumesApi {
    /// Stream a volume to the worker it is moving to (volume transfer grant, good once). Refused
    /// with 409 `volume_in_use` while an instance here still runs on it.
    #[oai(path = "/volumes/:name/export", method = "get", operation_id = "export_volume")]
    async fn export(&self, shared: Data<&Arc<Shared>>, grant: VolumeGrant, name: Path<String>) -> ApiResult<VolumeArchive> {
        crate::volumes::export(&shared, &grant.0, &name.0).await.map(|body| VolumeArchive::Archive(Binary(body)))
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
    async fn list(&self, shared: Data<&Arc<Shared>>, _auth: UserToken) -> ApiResult<Json<Vec<WorkerInstance>>> {
        Ok(Json(shared.view.lock().expect("view lock").clone()))
    }

    /// The end of an instance's output (stdout and stderr together).
    #[oai(path = "/instances/:id/logs", method = "get", operation_id = "get_instance_logs")]
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
        if !(1..=1024 * 1024).contains(&max) {
            return Err(ApiError::bad_request("invalid_max_bytes", "max_bytes must be between 1 and 1048576"));
        }
        match shared.driver.logs(id.0, max as usize).await {
            Ok(text) => Ok(PlainText(text)),
            Err(crate::driver::DriverError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::not_found("instance_not_found", format!("this worker has no output of instance {}", id.0)))
            }
            Err(e) => Err(ApiError::internal(e)),
        }
    }
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
        let samples: Vec<_> = by_state.into_iter().map(|(s, n)| (format!("state=\"{s}\""), n)).collect();
        write_gauge(&mut out, "aerekos_worker_instances", "Instances on this worker by state.", &samples);
        write_gauge(
            &mut out,
            "aerekos_worker_instance_restarts",
            "Restarts of this worker's instances, summed.",
            &[(String::new(), view.iter().map(|i| f64::from(i.restarts)).sum())],
        );
        Ok(PlainText(out))
    }
}

pub fn service() -> OpenApiService<(InstancesApi, VolumesApi, SystemApi), ()> {
    OpenApiService::new((InstancesApi, VolumesApi, SystemApi), "aerekos worker", env!("CARGO_PKG_VERSION"))
        .description("A worker's own API: the instances it runs and their output, and volume exports for moves.")
}
