use std::sync::Arc;

use aerekos_common::ApiResult;
use poem::web::Data;
use poem_openapi::{OpenApi, payload::Json};

use super::{ApiTags, UserAuth};
use crate::{
    AppState,
    model::{Jwks, LoginRequest, LoginResponse, ServiceToken, ServiceTokenRequest, User},
};

pub struct AuthApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in with a seeded user's credentials and get a signed token.
    #[oai(path = "/api/auth/login", method = "post", operation_id = "login")]
    async fn login(&self, state: Data<&Arc<AppState>>, body: Json<LoginRequest>) -> ApiResult<Json<LoginResponse>> {
        state.auth.login(&body.username, &body.password).await.map(Json)
    }

    /// The user the token belongs to.
    #[oai(path = "/api/auth/me", method = "get", operation_id = "get_me")]
    async fn me(&self, state: Data<&Arc<AppState>>, auth: UserAuth) -> ApiResult<Json<User>> {
        state.auth.me(&auth.0).await.map(Json)
    }

    /// Issue a token for a platform service to call other services with (admin only). Services
    /// accept it for the operations they allow services (e.g. key_manager: encrypt, decrypt, data keys).
    #[oai(path = "/api/auth/service-tokens", method = "post", operation_id = "create_service_token")]
    async fn service_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<ServiceTokenRequest>,
    ) -> ApiResult<Json<ServiceToken>> {
        auth.0.require_admin()?;
        state.auth.service_token(&body.service, body.expires_in_secs).map(Json)
    }

    /// The public keys that verify the conductor's tokens (JWKS), for services and workers.
    #[oai(path = "/api/auth/jwks", method = "get", operation_id = "get_jwks")]
    async fn jwks(&self, state: Data<&Arc<AppState>>) -> ApiResult<Json<Jwks>> {
        Ok(Json(state.auth.jwks()))
    }
}
