use std::sync::Arc;

use aerekos_common::ApiResult;
use poem::web::Data;
use poem_openapi::{OpenApi, param::Path, payload::Json};

use super::{ApiTags, UserAuth};
use crate::{
    AppState,
    model::{Instance, Service},
};

pub struct ServicesApi;

#[OpenApi(tag = "ApiTags::Services")]
impl ServicesApi {
    /// The service catalog with each service's state.
    #[oai(path = "/api/services", method = "get", operation_id = "list_services")]
    async fn list(&self, state: Data<&Arc<AppState>>, _auth: UserAuth) -> ApiResult<Json<Vec<Service>>> {
        state.catalog.list().await.map(Json)
    }

    /// One service of the catalog.
    #[oai(path = "/api/services/:name", method = "get", operation_id = "get_service")]
    async fn get(&self, state: Data<&Arc<AppState>>, _auth: UserAuth, name: Path<String>) -> ApiResult<Json<Service>> {
        state.catalog.get(&name.0).await.map(Json)
    }

    /// Enable a service and the services it depends on (admin only).
    #[oai(path = "/api/services/:name/enable", method = "post", operation_id = "enable_service")]
    async fn enable(&self, state: Data<&Arc<AppState>>, auth: UserAuth, name: Path<String>) -> ApiResult<Json<Service>> {
        auth.0.require_admin()?;
        state.catalog.enable(&name.0).await.map(Json)
    }

    /// Disable a service (admin only); refused while an enabled service depends on it.
    #[oai(path = "/api/services/:name/disable", method = "post", operation_id = "disable_service")]
    async fn disable(&self, state: Data<&Arc<AppState>>, auth: UserAuth, name: Path<String>) -> ApiResult<Json<Service>> {
        auth.0.require_admin()?;
        state.catalog.disable(&name.0).await.map(Json)
    }

    /// The service's instances: worker, address, state, restarts.
    #[oai(path = "/api/services/:name/deployments", method = "get", operation_id = "list_deployments")]
    async fn deployments(&self, state: Data<&Arc<AppState>>, _auth: UserAuth, name: Path<String>) -> ApiResult<Json<Vec<Instance>>> {
        state.instances.for_service(&name.0).await.map(Json)
    }
}
