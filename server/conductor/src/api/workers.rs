use std::sync::Arc;

use aerekos_common::{ApiResult, direct_json::DirectJson};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{ApiTags, UserAuth, WorkerAuth};
use crate::{
    AppState,
    model::{
        Assignments, BackupReport, ClusterResources, CreateInstanceRequest, HeartbeatRequest,
        HeartbeatResponse, Instance, InstanceSecretsToken, InstanceStatusReport, IssuedCertificate,
        RegisterWorkerRequest, RegisterWorkerResponse, SecretsChangedReport, ServiceToken,
        TransferReport, Worker, WorkerPage, WorkerStatus,
    },
};

pub struct WorkersApi;

/// Done; nothing to return.
#[derive(ApiResponse)]
pub enum Removed {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(tag = "ApiTags::Workers")]
impl WorkersApi {
    /// Register a worker with the cluster's registration token. A worker that sends the id and
    /// credential it was given before is recognised and updated, never duplicated.
    #[oai(
        path = "/api/workers/register",
        method = "post",
        operation_id = "register_worker"
    )]
    async fn register(
        &self,
        state: Data<&Arc<AppState>>,
        body: Json<RegisterWorkerRequest>,
    ) -> ApiResult<Json<RegisterWorkerResponse>> {
        state
            .workers
            .register(&state.tokens, body.0)
            .await
            .map(Json)
    }

    /// A worker's periodic report of its resources (worker credential). 404 means the conductor no
    /// longer knows the worker: register again.
    #[oai(
        path = "/api/workers/:id/heartbeat",
        method = "post",
        operation_id = "worker_heartbeat"
    )]
    async fn heartbeat(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        body: Json<HeartbeatRequest>,
    ) -> ApiResult<Json<HeartbeatResponse>> {
        state
            .workers
            .heartbeat(id.0, &auth.0.token, body.0)
            .await
            .map(Json)
    }

    /// Workers, ordered by id, a page at a time.
    #[oai(path = "/api/workers", method = "get", operation_id = "list_workers")]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        /// Only workers in this state.
        status: Query<Option<WorkerStatus>>,
        /// Page size, 1–1000 (default 500).
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<DirectJson<WorkerPage>> {
        state
            .workers
            .list(status.0, limit.0, cursor.0)
            .await
            .map(DirectJson)
    }

    /// One worker.
    #[oai(path = "/api/workers/:id", method = "get", operation_id = "get_worker")]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<DirectJson<Worker>> {
        state.workers.get(id.0).await.map(DirectJson)
    }

    /// Remove a worker from the registry (admin only). If it is still running it will register
    /// again under the same id at its next heartbeat.
    #[oai(
        path = "/api/workers/:id",
        method = "delete",
        operation_id = "delete_worker"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state.workers.remove(id.0).await.map(|_| Removed::NoContent)
    }

    /// CPU, memory and disk summed over live workers.
    #[oai(
        path = "/api/resources",
        method = "get",
        operation_id = "get_resources"
    )]
    async fn resources(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<ClusterResources>> {
        state.workers.resources().await.map(Json)
    }

    /// Assign an instance (an image or a command) to a worker (admin only). Its worker starts it
    /// at its next reconcile and reports its state.
    #[oai(
        path = "/api/workers/:id/instances",
        method = "post",
        operation_id = "create_instance"
    )]
    async fn create_instance(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<CreateInstanceRequest>,
    ) -> ApiResult<Json<Instance>> {
        auth.0.require_admin()?;
        state.workers.ensure_exists(id.0)?;
        state.instances.create(id.0, body.0).await.map(Json)
    }

    /// The instances assigned to a worker, with their reported state.
    #[oai(
        path = "/api/workers/:id/instances",
        method = "get",
        operation_id = "list_worker_instances"
    )]
    async fn list_instances(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Vec<Instance>>> {
        state.workers.ensure_exists(id.0)?;
        state.instances.for_worker(id.0).await.map(Json)
    }

    /// What the worker should run (worker credential): every instance assigned to it. An instance
    /// it runs that is not listed must be stopped. With `after_version` (the version it has) the
    /// answer waits up to `wait_secs` for a change, so workers learn of new work at once without
    /// polling.
    #[oai(
        path = "/api/workers/:id/assignments",
        method = "get",
        operation_id = "get_assignments"
    )]
    async fn assignments(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        /// The version the worker already has.
        after_version: Query<Option<u64>>,
        /// How long to wait for a change past `after_version` (0–60, default 0).
        wait_secs: Query<Option<u64>>,
    ) -> ApiResult<Json<Assignments>> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        let wait = std::time::Duration::from_secs(wait_secs.0.unwrap_or(0));
        state
            .instances
            .assignments(id.0, after_version.0, wait)
            .await
            .map(Json)
    }

    /// A worker's report on one of its instances (worker credential). 404 means the instance is not
    /// assigned to it (any more): stop it.
    #[oai(
        path = "/api/workers/:id/instances/:instance_id/status",
        method = "post",
        operation_id = "report_instance_status"
    )]
    async fn report_status(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        instance_id: Path<Uuid>,
        body: Json<InstanceStatusReport>,
    ) -> ApiResult<Removed> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        // The end of a job's attempt is the job's to record; anything else is the instance's.
        if state.jobs.report(id.0, instance_id.0, &body.0).await? {
            return Ok(Removed::NoContent);
        }
        state
            .instances
            .report(id.0, instance_id.0, body.0)
            .await
            .map(|_| Removed::NoContent)
    }

    /// A worker's report of how a sandbox exec it was given ended (worker credential). 404: it is
    /// not waiting for this worker's report (ended already, or its sandbox was deleted): forget it.
    #[oai(
        path = "/api/workers/:id/sandbox-execs/:exec_id",
        method = "post",
        operation_id = "report_sandbox_exec"
    )]
    async fn report_sandbox_exec(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        exec_id: Path<Uuid>,
        body: Json<crate::model::ExecReport>,
    ) -> ApiResult<Removed> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        state
            .sandboxes
            .report(id.0, exec_id.0, body.0)
            .await
            .map(|()| Removed::NoContent)
    }

    /// A worker's report that secrets an instance started with changed (worker credential), for
    /// `secret_env` references with `restart_on_change`: the service's instances are replaced, as
    /// a rolling restart, unless a newer generation is placed already. 400: a variable that does
    /// not say `restart_on_change`; 404: not an instance of a service assigned to this worker.
    #[oai(
        path = "/api/workers/:id/instances/:instance_id/secrets-changed",
        method = "post",
        operation_id = "report_instance_secrets_changed"
    )]
    async fn report_secrets_changed(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        instance_id: Path<Uuid>,
        body: Json<SecretsChangedReport>,
    ) -> ApiResult<Removed> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        state
            .deployments
            .restart_for_changed_secrets(id.0, instance_id.0, &body.0.variables)
            .await
            .map(|()| Removed::NoContent)
    }

    /// A receiving worker's report on a volume transfer (worker credential): progress, done
    /// (checked and in place), or failed. 404 or 409: the move is over; drop the copy.
    #[oai(
        path = "/api/workers/:id/moves/:move_id/report",
        method = "post",
        operation_id = "report_transfer"
    )]
    async fn report_transfer(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        move_id: Path<Uuid>,
        body: Json<TransferReport>,
    ) -> ApiResult<Removed> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        state
            .moves
            .report(id.0, move_id.0, body.0)
            .await
            .map(|()| Removed::NoContent)
    }

    /// The holding worker's report on a backup job (worker credential). 404: the backup is over
    /// (failed meanwhile); drop it.
    #[oai(
        path = "/api/workers/:id/backups/:backup_id/report",
        method = "post",
        operation_id = "report_backup"
    )]
    async fn report_backup(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        backup_id: Path<Uuid>,
        body: Json<BackupReport>,
    ) -> ApiResult<Removed> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        state
            .backups
            .report(id.0, backup_id.0, body.0)
            .await
            .map(|()| Removed::NoContent)
    }

    /// A service token for one of the worker's instances of a built-in service (worker
    /// credential), which the worker passes to it as `AEREKOS_SERVICE_TOKEN` when it starts it: how
    /// platform services call each other (storage_manager → key_manager). Each start gets a fresh one.
    #[oai(
        path = "/api/workers/:id/instances/:instance_id/service-token",
        method = "post",
        operation_id = "issue_instance_service_token"
    )]
    async fn instance_service_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        instance_id: Path<Uuid>,
    ) -> ApiResult<Json<ServiceToken>> {
        let instance = assigned_instance(&state, id.0, &auth.0.token, instance_id.0).await?;
        let service = match &instance.service {
            Some(name) if state.catalog.get(name).await.is_ok_and(|s| s.builtin) => name.clone(),
            _ => {
                return Err(aerekos_common::ApiError::forbidden(
                    "service_token_not_allowed",
                    "only instances of the platform's built-in services get service tokens",
                ));
            }
        };
        state
            .auth
            .service_token(
                &service,
                Some(crate::domain::auth::INSTANCE_SERVICE_TOKEN_SECS),
            )
            .await
            .map(Json)
    }

    /// The token the worker ships its instances' output and its own lines to logs_manager with
    /// (worker credential): an API key scoped to `logs_manager:write:worker/<id>/*`, living a
    /// day. The worker asks again before it expires.
    #[oai(
        path = "/api/workers/:id/logs-token",
        method = "post",
        operation_id = "issue_worker_logs_token"
    )]
    async fn logs_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<crate::model::LogShippingToken>> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        state.auth.log_shipping_token(id.0).await.map(Json)
    }

    /// The token the start of one of the worker's instances reads its secrets with (worker
    /// credential): an API key scoped to reading exactly the secrets its spec's `secret_env`
    /// names, living two minutes. The worker revokes it once they are read. 409 `no_secrets`
    /// when the instance names none.
    #[oai(
        path = "/api/workers/:id/instances/:instance_id/secrets-token",
        method = "post",
        operation_id = "issue_instance_secrets_token"
    )]
    async fn instance_secrets_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        instance_id: Path<Uuid>,
    ) -> ApiResult<Json<InstanceSecretsToken>> {
        let instance = assigned_instance(&state, id.0, &auth.0.token, instance_id.0).await?;
        let mut secrets: Vec<String> = instance
            .spec
            .secret_env
            .values()
            .map(|r| r.secret.clone())
            .collect();
        secrets.sort();
        secrets.dedup();
        if secrets.is_empty() {
            return Err(aerekos_common::ApiError::conflict(
                "no_secrets",
                "the instance's spec names no secrets",
            ));
        }
        state
            .auth
            .instance_secrets_token(instance.id, &secrets)
            .await
            .map(Json)
    }

    /// Revokes a secrets token issued for one of the worker's instances
    /// (worker credential), once the instance's secrets are read.
    #[oai(
        path = "/api/workers/:id/instances/:instance_id/secrets-token/:token_id",
        method = "delete",
        operation_id = "revoke_instance_secrets_token"
    )]
    async fn revoke_instance_secrets_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        instance_id: Path<Uuid>,
        token_id: Path<String>,
    ) -> ApiResult<Removed> {
        let instance = assigned_instance(&state, id.0, &auth.0.token, instance_id.0).await?;
        let theirs = state
            .auth
            .token_named(&token_id.0)
            .await?
            .is_some_and(|name| name == format!("instance-{}", instance.id));
        if !theirs {
            return Err(aerekos_common::ApiError::not_found(
                "token_not_found",
                format!(
                    "no secrets token {} of instance {}",
                    token_id.0, instance.id
                ),
            ));
        }
        state.auth.revoke_token(&token_id.0).await?;
        Ok(Removed::NoContent)
    }

    /// A server certificate from the cluster CA for the worker's own API (worker credential): for
    /// its address, hostname and loopback. Asked at each join, so a new address gets a new one.
    /// 409 `tls_off` when the conductor does not serve TLS.
    #[oai(
        path = "/api/workers/:id/certificate",
        method = "post",
        operation_id = "issue_worker_certificate"
    )]
    async fn worker_certificate(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<IssuedCertificate>> {
        state.workers.authenticate(id.0, &auth.0.token)?;
        let worker = state.workers.get(id.0).await?;
        tls_of(&state)?
            .issue_for_worker(&worker, "worker API")
            .map(Json)
    }

    /// A server certificate from the cluster CA for one of the worker's instances whose spec says
    /// `tls` (worker credential), which the worker passes to it as `TLS_CERT_PEM`/`TLS_KEY_PEM`.
    #[oai(
        path = "/api/workers/:id/instances/:instance_id/certificate",
        method = "post",
        operation_id = "issue_instance_certificate"
    )]
    async fn instance_certificate(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        instance_id: Path<Uuid>,
    ) -> ApiResult<Json<IssuedCertificate>> {
        assigned_instance(&state, id.0, &auth.0.token, instance_id.0).await?;
        let worker = state.workers.get(id.0).await?;
        tls_of(&state)?
            .issue_for_worker(&worker, &format!("instance {}", instance_id.0))
            .map(Json)
    }

    /// One instance.
    #[oai(
        path = "/api/instances/:instance_id",
        method = "get",
        operation_id = "get_instance"
    )]
    async fn get_instance(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        instance_id: Path<Uuid>,
    ) -> ApiResult<Json<Instance>> {
        state.instances.get(instance_id.0).await.map(Json)
    }

    /// Remove an instance (admin only); its worker stops it.
    #[oai(
        path = "/api/instances/:instance_id",
        method = "delete",
        operation_id = "delete_instance"
    )]
    async fn delete_instance(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        instance_id: Path<Uuid>,
    ) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state
            .instances
            .remove(instance_id.0)
            .await
            .map(|_| Removed::NoContent)
    }
}

fn tls_of(state: &AppState) -> ApiResult<&crate::domain::tls::ConductorTls> {
    state.tls.as_deref().ok_or_else(|| {
        aerekos_common::ApiError::conflict(
            "tls_off",
            "the conductor does not serve TLS, so it issues no certificates",
        )
    })
}

/// Instance `instance_id`, once the worker's credential is checked and the instance is its own.
async fn assigned_instance(
    state: &AppState,
    worker_id: Uuid,
    credential: &str,
    instance_id: Uuid,
) -> ApiResult<Instance> {
    state.workers.authenticate(worker_id, credential)?;
    let instance = state.instances.get(instance_id).await?;
    if instance.worker_id != worker_id {
        return Err(aerekos_common::ApiError::not_found(
            "instance_not_found",
            format!("instance {instance_id} is not assigned to this worker"),
        ));
    }
    Ok(instance)
}
