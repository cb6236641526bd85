use std::sync::Arc;

use aerekos_common::{ApiError, ApiResult};
use poem::web::Data;
use poem_openapi::{
    OpenApi,
    param::{Path, Query},
    payload::{Binary, Json},
};

use super::{ApiTags, CallerAuth, UserAuth, workers::Removed};
use crate::{
    AppState,
    model::{
        Backup, DeployRequest, Deployment, Endpoint, MoveRequest, RestoreRequest, Service,
        ServiceDefinition, ServiceEndpoints, Volume, VolumeMove,
    },
};

pub struct ServicesApi;

#[OpenApi(tag = "ApiTags::Services")]
impl ServicesApi {
    /// The service catalog with each service's state.
    #[oai(path = "/api/services", method = "get", operation_id = "list_services")]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<Vec<Service>>> {
        state.catalog.list().await.map(Json)
    }

    /// Add a service of your own to the catalog (admin only). It is disabled until deployed.
    #[oai(
        path = "/api/services",
        method = "post",
        operation_id = "define_service"
    )]
    async fn define(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<ServiceDefinition>,
    ) -> ApiResult<Json<Service>> {
        auth.0.require_admin()?;
        state.catalog.define(body.0).await.map(Json)
    }

    /// One service of the catalog.
    #[oai(
        path = "/api/services/:name",
        method = "get",
        operation_id = "get_service"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Service>> {
        state.catalog.get(&name.0).await.map(Json)
    }

    /// Remove a service you defined (admin only); it must be disabled, and nothing may depend on it.
    #[oai(
        path = "/api/services/:name",
        method = "delete",
        operation_id = "remove_service"
    )]
    async fn remove(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state.catalog.remove(&name.0).await?;
        // The service's instances went with it, in the catalog's transaction.
        state.instances.invalidate();
        Ok(Removed::NoContent)
    }

    /// Deploy a service (admin only): place instances on live workers with room for them, its
    /// dependencies first. Nothing fits → 409 naming what is short on which worker.
    #[oai(
        path = "/api/services/:name/deploy",
        method = "post",
        operation_id = "deploy_service"
    )]
    async fn deploy(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
        body: Json<DeployRequest>,
    ) -> ApiResult<Json<Deployment>> {
        auth.0.require_admin()?;
        state.deployments.deploy(&name.0, body.0).await.map(Json)
    }

    /// Enable a service (admin only): deploy it with its last deployment or the catalog's
    /// defaults, with the services it depends on.
    #[oai(
        path = "/api/services/:name/enable",
        method = "post",
        operation_id = "enable_service"
    )]
    async fn enable(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Deployment>> {
        auth.0.require_admin()?;
        state.deployments.enable(&name.0).await.map(Json)
    }

    /// Disable a service (admin only): every instance stops. Refused while an enabled service
    /// depends on it.
    #[oai(
        path = "/api/services/:name/disable",
        method = "post",
        operation_id = "disable_service"
    )]
    async fn disable(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Deployment>> {
        auth.0.require_admin()?;
        state.deployments.disable(&name.0).await.map(Json)
    }

    /// The service's deployment: what it asks for, and each instance with its worker, address,
    /// state, health and restarts.
    #[oai(
        path = "/api/services/:name/deployments",
        method = "get",
        operation_id = "get_deployment"
    )]
    async fn deployment(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Deployment>> {
        state.deployments.deployment(&name.0).await.map(Json)
    }

    /// Every volume: each stateful service's data directory, the worker holding it, its size, and
    /// other workers holding old copies. A stateful service runs only where its volume is.
    #[oai(path = "/api/volumes", method = "get", operation_id = "list_volumes")]
    async fn volumes(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<Vec<Volume>>> {
        state.volumes.list().await.map(Json)
    }

    /// Move a stateful service, with its data, to another worker (admin only): its instance
    /// stops, the new worker copies the volume straight from the old one (streamed, checksummed),
    /// the service starts there, and the old copy is deleted once it is healthy. Follow it with
    /// `GET /api/moves/{id}`; the gateway answers 503 `service_moving` meanwhile. If anything
    /// fails on the way, the service is back on its old worker with its data.
    #[oai(
        path = "/api/services/:name/move",
        method = "post",
        operation_id = "move_service"
    )]
    async fn move_service(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
        body: Json<MoveRequest>,
    ) -> ApiResult<Json<VolumeMove>> {
        auth.0.require_admin()?;
        state
            .deployments
            .move_service(&name.0, body.0)
            .await
            .map(Json)
    }

    /// Restore a stateful service from one of its backups onto a worker (admin only): what to do
    /// when the worker holding its volume is gone for good. Like a move, followed with
    /// `GET /api/moves/{id}`; the service's current copy, if its worker is live, is kept there
    /// unused.
    #[oai(
        path = "/api/services/:name/restore",
        method = "post",
        operation_id = "restore_service"
    )]
    async fn restore(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
        body: Json<RestoreRequest>,
    ) -> ApiResult<Json<VolumeMove>> {
        auth.0.require_admin()?;
        state
            .deployments
            .restore_service(&name.0, body.0)
            .await
            .map(Json)
    }

    /// Back up a volume now (admin only); it is also backed up on its service's schedule.
    #[oai(
        path = "/api/volumes/:name/backups",
        method = "post",
        operation_id = "backup_volume"
    )]
    async fn backup(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Backup>> {
        auth.0.require_admin()?;
        state.deployments.backup_volume(&name.0).await.map(Json)
    }

    /// Backups, newest first (at most 200), of one volume when `volume` is given.
    #[oai(path = "/api/backups", method = "get", operation_id = "list_backups")]
    async fn backups(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        volume: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<Backup>>> {
        state.backups.list(volume.0.as_deref()).await.map(Json)
    }

    /// One backup.
    #[oai(path = "/api/backups/:id", method = "get", operation_id = "get_backup")]
    async fn get_backup(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<uuid::Uuid>,
    ) -> ApiResult<Json<Backup>> {
        state.backups.get(id.0).await.map(Json)
    }

    /// The conductor's part of a whole-platform backup (admin only; what `aerekos backup` starts
    /// from): a tar of `conductor.db` (an online copy), the token-signing key, the backup key and
    /// `platform.json` (each volume's latest backup, where it is kept and a grant to read it). It
    /// holds the cluster's keys: keep it as secret as the data directory.
    #[oai(
        path = "/api/platform/export",
        method = "post",
        operation_id = "export_platform"
    )]
    async fn export_platform(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
    ) -> ApiResult<Binary<Vec<u8>>> {
        auth.0.require_admin()?;
        let volumes: Vec<(String, String)> = state
            .volumes
            .list()
            .await?
            .into_iter()
            .map(|v| (v.name, v.service))
            .collect();
        crate::domain::platform::export(&state.db, &state.data_dir, &state.backups, &volumes)
            .await
            .map(Binary)
    }

    /// The newest moves (at most 100), under way or ended.
    #[oai(path = "/api/moves", method = "get", operation_id = "list_moves")]
    async fn moves(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<Vec<VolumeMove>>> {
        state.moves.list().await.map(Json)
    }

    /// One move, with its step and the bytes copied so far.
    #[oai(path = "/api/moves/:id", method = "get", operation_id = "get_move")]
    async fn get_move(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<uuid::Uuid>,
    ) -> ApiResult<Json<VolumeMove>> {
        state.moves.get(id.0).await.map(Json)
    }

    /// One volume.
    #[oai(
        path = "/api/volumes/:name",
        method = "get",
        operation_id = "get_volume"
    )]
    async fn volume(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Volume>> {
        state.volumes.get(&name.0).await.map(Json)
    }

    /// The healthy endpoints of a service (user or service token): how services find each other.
    #[oai(
        path = "/api/registry/:service",
        method = "get",
        operation_id = "get_registry"
    )]
    async fn registry(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: CallerAuth,
        service: Path<String>,
    ) -> ApiResult<Json<ServiceEndpoints>> {
        let table = state.routes.snapshot();
        let route = table.services.get(&service.0).ok_or_else(|| {
            ApiError::not_found(
                "service_not_found",
                format!("no service {:?} in the catalog", service.0),
            )
        })?;
        Ok(Json(ServiceEndpoints {
            service: service.0.clone(),
            load_balancing: route.load_balancing,
            endpoints: route
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    instance_id: e.instance_id,
                    worker_id: e.worker_id,
                    address: e.address.clone(),
                    url: format!("{}://{}", if e.tls { "https" } else { "http" }, e.address),
                })
                .collect(),
        }))
    }
}
