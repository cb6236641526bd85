use std::sync::Arc;

use aerekos_common::ApiResult;
use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{ApiTags, UserAuth, workers::Removed};
use crate::{
    AppState,
    model::{ExecRequest, Sandbox, SandboxExec, SandboxRequest},
};

pub struct SandboxesApi;

#[derive(ApiResponse)]
enum SandboxQueued {
    /// Queued: `creating` until placed and running.
    #[oai(status = 201)]
    Created(Json<Sandbox>),
}

#[derive(ApiResponse)]
enum ExecQueued {
    /// Queued: it runs once the sandbox is ready; read it back for its end.
    #[oai(status = 201)]
    Created(Json<SandboxExec>),
}

#[OpenApi(tag = "ApiTags::Sandboxes")]
impl SandboxesApi {
    /// Make a sandbox (admin only): a container from an image on a worker with the docker
    /// driver, placed when there is room, `ready` once it runs.
    #[oai(
        path = "/api/sandboxes",
        method = "post",
        operation_id = "create_sandbox"
    )]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<SandboxRequest>,
    ) -> ApiResult<SandboxQueued> {
        auth.0.require_admin()?;
        state
            .sandboxes
            .create(&auth.0.username, body.0)
            .await
            .map(|s| SandboxQueued::Created(Json(s)))
    }

    /// Every sandbox, newest first.
    #[oai(
        path = "/api/sandboxes",
        method = "get",
        operation_id = "list_sandboxes"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<Vec<Sandbox>>> {
        state.sandboxes.list().await.map(Json)
    }

    /// One sandbox.
    #[oai(
        path = "/api/sandboxes/:id",
        method = "get",
        operation_id = "get_sandbox"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Sandbox>> {
        state.sandboxes.get(id.0).await.map(Json)
    }

    /// Delete a sandbox (admin only): its history goes, and its worker stops and removes the
    /// container.
    #[oai(
        path = "/api/sandboxes/:id",
        method = "delete",
        operation_id = "delete_sandbox"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state
            .sandboxes
            .delete(id.0)
            .await
            .map(|()| Removed::NoContent)
    }

    /// Run a command in a sandbox (admin only): queued until the sandbox is ready, run once,
    /// killed at its timeout; several run at once. 409 `sandbox_failed` for a failed sandbox.
    #[oai(
        path = "/api/sandboxes/:id/execs",
        method = "post",
        operation_id = "exec_in_sandbox"
    )]
    async fn exec(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<ExecRequest>,
    ) -> ApiResult<ExecQueued> {
        auth.0.require_admin()?;
        state
            .sandboxes
            .exec(id.0, body.0)
            .await
            .map(|e| ExecQueued::Created(Json(e)))
    }

    /// A sandbox's execs, newest first, with their exit codes and output.
    #[oai(
        path = "/api/sandboxes/:id/execs",
        method = "get",
        operation_id = "list_sandbox_execs"
    )]
    async fn execs(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
        /// At most this many (1–1000, default 100).
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Vec<SandboxExec>>> {
        state.sandboxes.execs(id.0, limit.0).await.map(Json)
    }

    /// One exec of a sandbox.
    #[oai(
        path = "/api/sandboxes/:id/execs/:exec_id",
        method = "get",
        operation_id = "get_sandbox_exec"
    )]
    async fn get_exec(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
        exec_id: Path<Uuid>,
    ) -> ApiResult<Json<SandboxExec>> {
        state.sandboxes.get_exec(id.0, exec_id.0).await.map(Json)
    }
}
