//! The HTTP surface: thin poem-openapi endpoints that check the caller, call the domain layer and
//! return its answer. The spec in `openapi/conductor.json` is generated from these.

mod audit;
mod auth;
mod services;
mod system;
mod token;
mod users;
pub(crate) mod workers;

use std::sync::Arc;

use poem::Request;
use poem_openapi::{OpenApiService, SecurityScheme, Tags, auth::Bearer};

use crate::{AppState, domain::auth::AuthedUser};

#[derive(Tags)]
pub enum ApiTags {
    /// Logging in and the token-signing keys.
    Auth,
    /// The worker registration token.
    Token,
    /// Users: who may log in, with which role.
    Users,
    /// The audit trail of changes.
    Audit,
    /// Workers: registration, heartbeats, the registry, cluster resources.
    Workers,
    /// The service catalog and its deployments.
    Services,
    /// Health, readiness, metrics.
    System,
}

/// A user's token from `POST /api/auth/login`, as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_user")]
pub struct UserAuth(AuthedUser);

async fn check_user(req: &Request, bearer: Bearer) -> poem::Result<AuthedUser> {
    let state = req.data::<Arc<AppState>>().expect("AppState is attached to every route");
    state.auth.authenticate(&bearer.token).map_err(Into::into)
}

/// A user's token, or a service token from `POST /api/auth/service-tokens`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
pub struct CallerAuth(#[allow(dead_code)] aerekos_common::auth::Claims);

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<aerekos_common::auth::Claims> {
    let state = req.data::<Arc<AppState>>().expect("AppState is attached to every route");
    state.auth.verify(&bearer.token).map_err(Into::into)
}

/// A worker's credential from `POST /api/workers/register`, as `Authorization: Bearer <credential>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct WorkerAuth(Bearer);

pub type ConductorApi = (
    auth::AuthApi,
    users::UsersApi,
    token::TokenApi,
    workers::WorkersApi,
    services::ServicesApi,
    audit::AuditApi,
    system::SystemApi,
);

/// The conductor's OpenAPI service. Building it needs no state, so the spec can be written without
/// starting a server.
pub fn service() -> OpenApiService<ConductorApi, ()> {
    OpenApiService::new(
        (auth::AuthApi, users::UsersApi, token::TokenApi, workers::WorkersApi, services::ServicesApi, audit::AuditApi, system::SystemApi),
        "aerekos conductor",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "The control plane of aerekos-cloud: users and tokens, the worker registry, the service catalog. \
         Every error response is an ErrorBody; every response carries an X-Request-Id header.",
    )
}
