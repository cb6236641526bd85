use std::{sync::Arc, time::Duration};

use aerekos_common::{ApiError, ApiResult};
use poem::{Request, web::Data};
use poem_openapi::{
    OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{ApiTags, UserAuth};
use crate::{
    AppState,
    domain::audit,
    model::{
        ApiKey, ChangePasswordRequest, CreateApiKeyRequest, IssuedTokenList, Jwks, LoginRequest,
        LoginResponse, RevocationFeed, ServiceToken, ServiceTokenRequest, User,
    },
};

/// The longest a follower of the revocation feed may wait for news.
pub const MAX_FEED_WAIT_SECS: u64 = 30;

pub struct AuthApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in with a user's credentials and get a signed token. Failed attempts for one username
    /// from one address back off exponentially (429 with `Retry-After`) after three; the answer is
    /// the same whether the user exists or not. A disabled user gets 403 `user_disabled`.
    #[oai(path = "/api/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> ApiResult<Json<LoginResponse>> {
        audit::set_actor(format!(
            "user:{}",
            body.username.chars().take(64).collect::<String>()
        ));
        state
            .auth
            .login(
                &body.username,
                &body.password,
                aerekos_common::net::peer_address(req),
            )
            .await
            .map(Json)
    }

    /// Revoke the token this request carries. Every server refuses it within about a second.
    #[oai(path = "/api/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: Data<&Arc<AppState>>, auth: UserAuth) -> ApiResult<()> {
        state.auth.logout(&auth.0).await
    }

    /// The user the token belongs to.
    #[oai(path = "/api/auth/me", method = "get", operation_id = "get_me")]
    async fn me(&self, state: Data<&Arc<AppState>>, auth: UserAuth) -> ApiResult<Json<User>> {
        state.auth.me(&auth.0).await.map(Json)
    }

    /// Change your own password, giving the current one. All your tokens (this one too) are
    /// revoked; the answer is a new session.
    #[oai(
        path = "/api/auth/password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<ChangePasswordRequest>,
    ) -> ApiResult<Json<LoginResponse>> {
        state
            .auth
            .change_own_password(&auth.0, &body)
            .await
            .map(Json)
    }

    /// Issue a token for a platform service to call other services with (admin only). Services
    /// accept it for the operations they allow services (e.g. key_manager: encrypt, decrypt, data keys).
    #[oai(
        path = "/api/auth/service-tokens",
        method = "post",
        operation_id = "create_service_token"
    )]
    async fn service_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<ServiceTokenRequest>,
    ) -> ApiResult<Json<ServiceToken>> {
        auth.0.require_admin()?;
        state
            .auth
            .service_token(&body.service, body.expires_in_secs)
            .await
            .map(Json)
    }

    /// Create an API key for an app (admin only): a token granting only its scopes (e.g.
    /// `key_manager:encrypt:payments`), for the services' APIs through the gateway. The key is in
    /// this answer only; it is revoked like any token (`DELETE /api/auth/tokens/{id}`).
    #[oai(
        path = "/api/auth/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create_api_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<CreateApiKeyRequest>,
    ) -> ApiResult<Json<ApiKey>> {
        auth.0.require_admin()?;
        state.auth.create_api_key(&auth.0, &body).await.map(Json)
    }

    /// The valid sessions, service tokens and API keys (admin only; `user_id` narrows to one
    /// user's sessions and the API keys they created).
    #[oai(
        path = "/api/auth/tokens",
        method = "get",
        operation_id = "list_tokens"
    )]
    async fn list_tokens(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        user_id: Query<Option<Uuid>>,
    ) -> ApiResult<Json<IssuedTokenList>> {
        auth.0.require_admin()?;
        Ok(Json(IssuedTokenList {
            tokens: state.auth.list_tokens(user_id.0).await?,
        }))
    }

    /// Revoke a session or service token by its id (admin only). Every server refuses it within
    /// about a second.
    #[oai(
        path = "/api/auth/tokens/:id",
        method = "delete",
        operation_id = "revoke_token"
    )]
    async fn revoke_token(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<String>,
    ) -> ApiResult<()> {
        auth.0.require_admin()?;
        if state.auth.revoke_token(&id.0).await? {
            Ok(())
        } else {
            Err(ApiError::not_found(
                "token_not_found",
                format!(
                    "no valid token has id {:?} (unknown, expired or already revoked)",
                    id.0
                ),
            ))
        }
    }

    /// The revocation feed: tokens revoked after `after`, waiting up to `wait_secs` (at most 30)
    /// for one when there is none. Services and workers keep one request open and refuse what it
    /// names. Public, like the JWKS: a token id is not a credential.
    #[oai(
        path = "/api/auth/revocations",
        method = "get",
        operation_id = "get_revocations"
    )]
    async fn revocations(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(default)] after: Query<i64>,
        #[oai(default)] wait_secs: Query<u64>,
    ) -> ApiResult<Json<RevocationFeed>> {
        if after.0 < 0 || wait_secs.0 > MAX_FEED_WAIT_SECS {
            return Err(ApiError::bad_request(
                "invalid_feed_request",
                format!("after must be ≥ 0 and wait_secs at most {MAX_FEED_WAIT_SECS}"),
            ));
        }
        state
            .auth
            .revocation_feed(after.0, Duration::from_secs(wait_secs.0))
            .await
            .map(Json)
    }

    /// The public keys that verify the conductor's tokens (JWKS), for services and workers.
    #[oai(path = "/api/auth/jwks", method = "get", operation_id = "get_jwks")]
    async fn jwks(&self, state: Data<&Arc<AppState>>) -> ApiResult<Json<Jwks>> {
        Ok(Json(state.auth.jwks()))
    }
}
