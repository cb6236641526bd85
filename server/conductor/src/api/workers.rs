use std::sync::Arc;

use aerekos_common::ApiResult;
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
        ClusterResources, HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest, RegisterWorkerResponse, Worker,
        WorkerPage, WorkerStatus,
    },
};

pub struct WorkersApi;

/// Done; nothing to return.
#[derive(ApiResponse)]
pub enum Removed {
    /// Removed.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(tag = "ApiTags::Workers")]
impl WorkersApi {
    /// Register a worker with the cluster's registration token. A worker that sends the id and
    /// credential it was given before is recognised and updated, never duplicated.
    #[oai(path = "/api/workers/register", method = "post", operation_id = "register_worker")]
    async fn register(&self, state: Data<&Arc<AppState>>, body: Json<RegisterWorkerRequest>) -> ApiResult<Json<RegisterWorkerResponse>> {
        state.workers.register(&state.tokens, body.0).await.map(Json)
    }

    /// A worker's periodic report of its resources (worker credential). 404 means the conductor no
    /// longer knows the worker: register again.
    #[oai(path = "/api/workers/:id/heartbeat", method = "post", operation_id = "worker_heartbeat")]
    async fn heartbeat(
        &self,
        state: Data<&Arc<AppState>>,
        auth: WorkerAuth,
        id: Path<Uuid>,
        body: Json<HeartbeatRequest>,
    ) -> ApiResult<Json<HeartbeatResponse>> {
        state.workers.heartbeat(id.0, &auth.0.token, body.0).await.map(Json)
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
    ) -> ApiResult<Json<WorkerPage>> {
        state.workers.list(status.0, limit.0, cursor.0).await.map(Json)
    }

    /// One worker.
    #[oai(path = "/api/workers/:id", method = "get", operation_id = "get_worker")]
    async fn get(&self, state: Data<&Arc<AppState>>, _auth: UserAuth, id: Path<Uuid>) -> ApiResult<Json<Worker>> {
        state.workers.get(id.0).await.map(Json)
    }

    /// Remove a worker from the registry (admin only). If it is still running it will register
    /// again under the same id at its next heartbeat.
    #[oai(path = "/api/workers/:id", method = "delete", operation_id = "delete_worker")]
    async fn delete(&self, state: Data<&Arc<AppState>>, auth: UserAuth, id: Path<Uuid>) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state.workers.remove(id.0).await.map(|_| Removed::NoContent)
    }

    /// CPU, memory and disk summed over live workers.
    #[oai(path = "/api/resources", method = "get", operation_id = "get_resources")]
    async fn resources(&self, state: Data<&Arc<AppState>>, _auth: UserAuth) -> ApiResult<Json<ClusterResources>> {
        state.workers.resources().await.map(Json)
    }
}
