//! The HTTP surface: thin poem-openapi endpoints that check the caller, call the domain layer and
//! return its answer. The spec in `openapi/conductor.json` is generated from these.

mod audit;
mod auth;
mod jobs;
mod sandboxes;
mod schedules;
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
    /// Jobs: run-to-completion work, queued by priority, with retries and timeouts.
    Jobs,
    /// Schedules: jobs submitted, or platform endpoints called, on a clock.
    Schedules,
    /// Sandboxes: long-lived containers that run commands, with their history.
    Sandboxes,
    /// Health, readiness, metrics.
    System,
}

/// A user's token from `POST /api/auth/login`, as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_user")]
pub struct UserAuth(AuthedUser);

async fn check_user(req: &Request, bearer: Bearer) -> poem::Result<AuthedUser> {
    let state = req
        .data::<Arc<AppState>>()
        .expect("AppState is attached to every route");
    state.auth.authenticate(&bearer.token).map_err(Into::into)
}

/// A user's token, or a service token from `POST /api/auth/service-tokens`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
pub struct CallerAuth(#[allow(dead_code)] aerekos_common::auth::Claims);

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<aerekos_common::auth::Claims> {
    let state = req
        .data::<Arc<AppState>>()
        .expect("AppState is attached to every route");
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
    jobs::JobsApi,
    schedules::SchedulesApi,
    sandboxes::SandboxesApi,
    audit::AuditApi,
    system::SystemApi,
);

/// The limits the conductor's domain enforces, declared in its spec (see `aerekos_common::limits`).
/// Left undeclared, and named in tests/api/schemathesis.toml with the reason: what JSON Schema
/// cannot say without making the SDK's types unions (a service definition's "a command or an
/// image", an instance spec's likewise, a worker's address being IPv4 or IPv6).
pub fn limits() -> Vec<aerekos_common::limits::Limit> {
    use crate::domain::{
        audit, auth as domain_auth, deployments, jobs, sandboxes, schedules, workers,
    };
    // Job queues and schedules are named alike.
    const JOB_QUEUE_PATTERN: &str = "^[a-z0-9_-]{1,64}$";
    use aerekos_common::limits::Limit;
    use serde_json::json;
    vec![
        Limit::param(
            "list_audit_events",
            "limit",
            json!({"minimum": 1, "maximum": audit::MAX_PAGE}),
        ),
        Limit::param(
            "list_workers",
            "limit",
            json!({"minimum": 1, "maximum": workers::MAX_PAGE}),
        ),
        // A cursor is a worker's id (the last of the previous page); empty is the first page.
        Limit::param(
            "list_workers",
            "cursor",
            json!({"pattern": format!("^$|{}", aerekos_common::limits::UUID_PATTERN)}),
        ),
        Limit::param("get_revocations", "after", json!({"minimum": 0})),
        Limit::param(
            "list_jobs",
            "limit",
            json!({"minimum": 1, "maximum": jobs::MAX_PAGE}),
        ),
        Limit::param("list_jobs", "queue", json!({"pattern": JOB_QUEUE_PATTERN})),
        // A cursor is a `next_cursor`: `<submitted_at ms>_<job id>`; empty is the first page.
        Limit::param(
            "list_jobs",
            "cursor",
            json!({"pattern": format!("^$|^[0-9]{{1,18}}_{}", aerekos_common::limits::UUID_PATTERN.trim_start_matches('^'))}),
        ),
        Limit::param(
            "set_job_queue",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "delete_job_queue",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "get_schedule",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "replace_schedule",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "delete_schedule",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "pause_schedule",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "resume_schedule",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::param(
            "list_schedule_fires",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::property(
            "JobQueueSettings",
            "concurrency_limit",
            json!({"minimum": 1, "maximum": 10_000}),
        ),
        Limit::property(
            "JobRequest",
            "priority",
            json!({"minimum": 0, "maximum": jobs::MAX_PRIORITY}),
        ),
        Limit::property(
            "JobRequest",
            "timeout_secs",
            json!({"minimum": 1, "maximum": jobs::MAX_TIMEOUT_SECS}),
        ),
        Limit::property("JobRequest", "queue", json!({"pattern": JOB_QUEUE_PATTERN})),
        Limit::property(
            "JobRequest",
            "name",
            json!({"minLength": 1, "maxLength": 128}),
        ),
        Limit::property(
            "JobRequest",
            "idempotency_key",
            json!({"minLength": 1, "maxLength": 128}),
        ),
        Limit::property(
            "JobRequest",
            "env",
            json!({"maxProperties": deployments::MAX_ENV_VARS, "additionalProperties": {"maxLength": deployments::MAX_ENV_VALUE_CHARS}}),
        ),
        Limit::param(
            "list_schedule_fires",
            "limit",
            json!({"minimum": 1, "maximum": schedules::MAX_FIRES_PAGE}),
        ),
        Limit::param(
            "list_sandbox_execs",
            "limit",
            json!({"minimum": 1, "maximum": sandboxes::MAX_EXECS_PAGE}),
        ),
        Limit::property(
            "SandboxRequest",
            "ready_timeout_secs",
            json!({"minimum": 1, "maximum": sandboxes::MAX_READY_TIMEOUT_SECS}),
        ),
        Limit::property(
            "SandboxRequest",
            "name",
            json!({"minLength": 1, "maxLength": 128}),
        ),
        Limit::property(
            "SandboxRequest",
            "env",
            json!({"maxProperties": deployments::MAX_ENV_VARS, "additionalProperties": {"maxLength": deployments::MAX_ENV_VALUE_CHARS}}),
        ),
        Limit::property(
            "ExecRequest",
            "timeout_secs",
            json!({"minimum": 1, "maximum": sandboxes::MAX_EXEC_TIMEOUT_SECS}),
        ),
        Limit::property(
            "ExecRequest",
            "command",
            json!({"minItems": 1, "maxItems": 1000}),
        ),
        Limit::property(
            "ExecRequest",
            "env",
            json!({"maxProperties": deployments::MAX_ENV_VARS, "additionalProperties": {"maxLength": deployments::MAX_ENV_VALUE_CHARS}}),
        ),
        Limit::property(
            "ScheduleRequest",
            "name",
            json!({"pattern": JOB_QUEUE_PATTERN}),
        ),
        Limit::property(
            "ScheduleRequest",
            "every_secs",
            json!({"minimum": 1, "maximum": schedules::MAX_EVERY_SECS}),
        ),
        Limit::property(
            "ServiceCall",
            "service",
            json!({"pattern": "^[a-z0-9_]{1,64}$"}),
        ),
        Limit::property(
            "ServiceCall",
            "method",
            json!({"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]}),
        ),
        Limit::property("ServiceCall", "path", json!({"pattern": "^/"})),
        Limit::property(
            "RetryPolicy",
            "max_retries",
            json!({"minimum": 0, "maximum": jobs::MAX_RETRIES}),
        ),
        Limit::property("RetryPolicy", "initial_backoff_ms", json!({"minimum": 10})),
        Limit::property(
            "RetryPolicy",
            "retry_on_exit_codes",
            json!({"maxItems": 64}),
        ),
        Limit::param(
            "get_revocations",
            "wait_secs",
            json!({"maximum": auth::MAX_FEED_WAIT_SECS}),
        ),
        Limit::property(
            "LoginRequest",
            "username",
            json!({"minLength": 1, "maxLength": domain_auth::MAX_USERNAME_CHARS}),
        ),
        Limit::property(
            "LoginRequest",
            "password",
            json!({"minLength": 1, "maxLength": domain_auth::MAX_PASSWORD_CHARS}),
        ),
        Limit::property(
            "ServiceTokenRequest",
            "service",
            json!({"pattern": "^[a-z0-9_]{1,64}$"}),
        ),
        Limit::property(
            "ServiceTokenRequest",
            "expires_in_secs",
            json!({"minimum": domain_auth::MIN_TOKEN_SECS, "maximum": domain_auth::SERVICE_TOKEN_MAX_SECS}),
        ),
        // Variable names ([A-Za-z_][A-Za-z0-9_]*, none the worker sets) have no OpenAPI 3.0 keyword.
        Limit::property(
            "DeployRequest",
            "env",
            json!({"maxProperties": deployments::MAX_ENV_VARS, "additionalProperties": {"maxLength": deployments::MAX_ENV_VALUE_CHARS}}),
        ),
        Limit::property(
            "CreateApiKeyRequest",
            "name",
            json!({"pattern": "^[A-Za-z0-9._-]{1,64}$"}),
        ),
        Limit::property(
            "CreateApiKeyRequest",
            "scopes",
            json!({"minItems": 1, "maxItems": domain_auth::MAX_API_KEY_SCOPES, "items": {"pattern": aerekos_common::auth::scope_pattern()}}),
        ),
        Limit::property(
            "CreateApiKeyRequest",
            "expires_in_secs",
            json!({"minimum": domain_auth::MIN_TOKEN_SECS, "maximum": domain_auth::API_KEY_MAX_SECS}),
        ),
    ]
}

/// The conductor's OpenAPI service. Building it needs no state, so the spec can be written without
/// starting a server.
pub fn service() -> OpenApiService<ConductorApi, ()> {
    OpenApiService::new(
        (auth::AuthApi, users::UsersApi, token::TokenApi, workers::WorkersApi, services::ServicesApi, jobs::JobsApi, schedules::SchedulesApi, sandboxes::SandboxesApi, audit::AuditApi, system::SystemApi),
        "aerekos conductor",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "The control plane of aerekos-cloud: users and tokens, the worker registry, the service catalog. \
         Every error response is an ErrorBody; every response carries an X-Request-Id header.",
    )
}
