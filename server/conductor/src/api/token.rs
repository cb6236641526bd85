use std::sync::Arc;

use aerekos_common::ApiResult;
use poem::web::Data;
use poem_openapi::{OpenApi, payload::Json};

use super::{ApiTags, UserAuth};
use crate::{AppState, model::RegistrationToken};

pub struct TokenApi;

#[OpenApi(tag = "ApiTags::Token")]
impl TokenApi {
    /// The current worker registration token (admin only).
    #[oai(
        path = "/api/token",
        method = "get",
        operation_id = "get_registration_token"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
    ) -> ApiResult<Json<RegistrationToken>> {
        auth.0.require_admin()?;
        state.tokens.current().await.map(Json)
    }

    /// Replace the registration token; the old one is refused from now on (admin only).
    /// Registered workers keep working: they use their own credentials.
    #[oai(
        path = "/api/token/regenerate",
        method = "post",
        operation_id = "regenerate_registration_token"
    )]
    async fn regenerate(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
    ) -> ApiResult<Json<RegistrationToken>> {
        auth.0.require_admin()?;
        state.tokens.regenerate().await.map(Json)
    }
}
