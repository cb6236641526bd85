//! secrets_manager's HTTP surface, under `/api/secrets_manager/…` so one SDK client works against
//! the service directly or through the conductor's gateway. Thin: check the token, call the domain.
//! A secret's name is one path parameter: its `/`s travel percent-encoded (`apps%2Fshop%2Fdb`),
//! as the SDKs send them.

use std::sync::Arc;

use aerekos_common::{ApiResult, auth::Caller, metrics::write_gauge};
use poem::{Request, web::Data};
use poem_openapi::{
    OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::{Path, Query},
    payload::{Json, PlainText},
};

use crate::{
    State,
    domain::{names, rotation, secrets},
    model::{
        AuditPage, CreateSecretRequest, Health, MoveLabelRequest, PutValueRequest, Secret,
        SecretList, SecretValueResponse, SecretVersion, SetRotationRequest, UpdateSecretRequest,
    },
};

#[derive(Tags)]
enum ApiTags {
    /// Secrets: their metadata, versions and labels.
    Secrets,
    /// Secret values: writing and reading versions.
    Values,
    /// Rotation schedules.
    Rotation,
    /// The record of every read and change.
    Audit,
    /// Health, readiness, metrics.
    System,
}

/// A token from the conductor, as `Authorization: Bearer <token>`: an admin's (everything), a
/// viewer's (names and metadata only), or an API key's (`secrets_manager:read|write:<name or
/// prefix*>`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
struct CallerAuth((Caller, String));

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<(Caller, String)> {
    let state = req.data::<Arc<State>>().expect("State is attached");
    let caller = state.verifier.caller(&bearer.token)?;
    Ok((caller, bearer.token))
}

pub struct SecretsApi;

#[OpenApi(prefix_path = "/api/secrets_manager", tag = "ApiTags::Secrets")]
impl SecretsApi {
    /// Create a secret, with its first value if one is given (admin, or an API key with
    /// `secrets_manager:write` on the name). Without `encryption_key` it uses the service's
    /// default key_manager key, which an admin's first such secret makes.
    #[oai(path = "/secrets", method = "post", operation_id = "create_secret")]
    async fn create(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<CreateSecretRequest>,
    ) -> ApiResult<Json<Secret>> {
        let (caller, token) = &auth.0;
        state.secrets.create(caller, token, body.0).await.map(Json)
    }

    /// Secrets by name, metadata only (an API key sees those its scopes name).
    #[oai(path = "/secrets", method = "get", operation_id = "list_secrets")]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        /// Only names starting with this (`apps/shop/`).
        prefix: Query<Option<String>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size, default 100.
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<SecretList>> {
        let cursor = cursor.0.filter(|c| !c.is_empty());
        state
            .secrets
            .list(&auth.0.0, prefix.0.as_deref(), cursor.as_deref(), limit.0)
            .await
            .map(Json)
    }

    /// A secret's metadata, versions and labels; never its value (viewers too).
    #[oai(path = "/secrets/:name", method = "get", operation_id = "get_secret")]
    async fn get(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Secret>> {
        state.secrets.describe(&auth.0.0, &name.0).await.map(Json)
    }

    /// Change a secret's description, encryption key (for versions written from now on), tags or
    /// max_versions (admin).
    #[oai(
        path = "/secrets/:name",
        method = "patch",
        operation_id = "update_secret"
    )]
    async fn update(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        body: Json<UpdateSecretRequest>,
    ) -> ApiResult<Json<Secret>> {
        let (caller, token) = &auth.0;
        state
            .secrets
            .update(caller, token, &name.0, body.0)
            .await
            .map(Json)
    }

    /// Schedule the whole secret's deletion after a recovery window (admin); until then it can be
    /// restored and nothing reads or writes it.
    #[oai(
        path = "/secrets/:name",
        method = "delete",
        operation_id = "delete_secret"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        /// Days until it is deleted for good (7–30, default 30).
        recovery_days: Query<Option<u32>>,
    ) -> ApiResult<Json<Secret>> {
        state
            .secrets
            .delete(&auth.0.0, &name.0, recovery_days.0)
            .await
            .map(Json)
    }

    /// Cancel a scheduled deletion (admin).
    #[oai(
        path = "/secrets/:name/restore",
        method = "post",
        operation_id = "restore_secret"
    )]
    async fn restore(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Secret>> {
        state.secrets.restore(&auth.0.0, &name.0).await.map(Json)
    }

    /// Soft-delete a version: it is not served until undeleted (admin).
    #[oai(
        path = "/secrets/:name/versions/:version",
        method = "delete",
        operation_id = "delete_secret_version"
    )]
    async fn delete_version(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        version: Path<u64>,
    ) -> ApiResult<Json<SecretVersion>> {
        state
            .secrets
            .set_version_deleted(&auth.0.0, &name.0, version.0, true)
            .await
            .map(Json)
    }

    /// Undelete a soft-deleted version (admin).
    #[oai(
        path = "/secrets/:name/versions/:version/undelete",
        method = "post",
        operation_id = "undelete_secret_version"
    )]
    async fn undelete_version(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        version: Path<u64>,
    ) -> ApiResult<Json<SecretVersion>> {
        state
            .secrets
            .set_version_deleted(&auth.0.0, &name.0, version.0, false)
            .await
            .map(Json)
    }

    /// Destroy a version's value for good; its record stays, marked destroyed (admin).
    #[oai(
        path = "/secrets/:name/versions/:version/destroy",
        method = "post",
        operation_id = "destroy_secret_version"
    )]
    async fn destroy_version(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        version: Path<u64>,
    ) -> ApiResult<Json<SecretVersion>> {
        state
            .secrets
            .destroy_version(&auth.0.0, &name.0, version.0)
            .await
            .map(Json)
    }

    /// Move a staging label onto a version (admin). Moving `AWSCURRENT` moves `AWSPREVIOUS` to
    /// the version it left.
    #[oai(
        path = "/secrets/:name/labels/:label",
        method = "put",
        operation_id = "move_secret_label"
    )]
    async fn move_label(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        label: Path<String>,
        body: Json<MoveLabelRequest>,
    ) -> ApiResult<Json<Secret>> {
        state
            .secrets
            .move_label(&auth.0.0, &name.0, &label.0, body.0.version)
            .await
            .map(Json)
    }

    /// Remove a custom staging label (admin; `AWSCURRENT` only moves).
    #[oai(
        path = "/secrets/:name/labels/:label",
        method = "delete",
        operation_id = "remove_secret_label"
    )]
    async fn remove_label(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        label: Path<String>,
    ) -> ApiResult<Json<Secret>> {
        state
            .secrets
            .remove_label(&auth.0.0, &name.0, &label.0)
            .await
            .map(Json)
    }
}

pub struct ValuesApi;

#[OpenApi(prefix_path = "/api/secrets_manager", tag = "ApiTags::Values")]
impl ValuesApi {
    /// Write a new version (admin, or an API key with `secrets_manager:write` on it): it becomes
    /// `AWSCURRENT` and the version before it `AWSPREVIOUS`; with `cas`, only if the latest version
    /// is still that one (409 `cas_mismatch` otherwise).
    #[oai(
        path = "/secrets/:name/value",
        method = "put",
        operation_id = "put_secret_value"
    )]
    async fn put(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        body: Json<PutValueRequest>,
    ) -> ApiResult<Json<SecretVersion>> {
        state
            .secrets
            .put_value(&auth.0.0, &name.0, body.0)
            .await
            .map(Json)
    }

    /// Read a value: `AWSCURRENT`'s, or the version or staging label asked for (admin, or an API
    /// key with `secrets_manager:read` on it; viewers never read values). Every read is audited.
    #[oai(
        path = "/secrets/:name/value",
        method = "get",
        operation_id = "get_secret_value"
    )]
    async fn get(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        version: Query<Option<u64>>,
        label: Query<Option<String>>,
    ) -> ApiResult<Json<SecretValueResponse>> {
        state
            .secrets
            .read_value(&auth.0.0, &name.0, version.0, label.0.as_deref())
            .await
            .map(Json)
    }
}

pub struct RotationApi;

#[OpenApi(prefix_path = "/api/secrets_manager", tag = "ApiTags::Rotation")]
impl RotationApi {
    /// Rotate the secret every `interval_secs` (admin): the endpoint `POST /api/<service><path>`
    /// (through the conductor's gateway, with secrets_manager's token) is sent
    /// `{"secret", "current_version"}` and answers `{"value": {"bytes"|"json": …}}`, which becomes
    /// `AWSCURRENT`. A failed call changes nothing and is kept as `last_error`.
    #[oai(
        path = "/secrets/:name/rotation",
        method = "put",
        operation_id = "set_secret_rotation"
    )]
    async fn set(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        body: Json<SetRotationRequest>,
    ) -> ApiResult<Json<Secret>> {
        state
            .rotator
            .set(&auth.0.0, &name.0, body.0)
            .await
            .map(Json)
    }

    /// Stop rotating the secret (admin).
    #[oai(
        path = "/secrets/:name/rotation",
        method = "delete",
        operation_id = "remove_secret_rotation"
    )]
    async fn remove(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Secret>> {
        state.rotator.remove(&auth.0.0, &name.0).await.map(Json)
    }

    /// Rotate now (admin); 503 `rotation_failed`, naming the endpoint's answer, when it fails (the value stays).
    #[oai(
        path = "/secrets/:name/rotate",
        method = "post",
        operation_id = "rotate_secret"
    )]
    async fn rotate(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Secret>> {
        state.rotator.rotate_now(&auth.0.0, &name.0).await.map(Json)
    }
}

pub struct AuditApi;

#[OpenApi(prefix_path = "/api/secrets_manager", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Audit records, newest first (admin): who read or changed which secret and version, and
    /// what came of it. Never a value.
    #[oai(
        path = "/audit",
        method = "get",
        operation_id = "list_secret_audit_records"
    )]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        /// Only this secret's records.
        secret: Query<Option<String>>,
        /// `next_before_id` of the previous page.
        before_id: Query<Option<i64>>,
        /// Page size, default 100.
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<AuditPage>> {
        state
            .secrets
            .audit(&auth.0.0, secret.0.as_deref(), before_id.0, limit.0)
            .await
            .map(Json)
    }
}

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness. 503 from `SERVICE_TOKEN_RENEW_BEFORE` ahead of the service token's expiry, so the
    /// worker restarts the instance with a fresh token while the old one still works.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&Arc<State>>) -> ApiResult<Json<Health>> {
        state.token_renewal.check()?;
        Ok(Json(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Readiness: the database answers.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&Arc<State>>) -> ApiResult<Json<Health>> {
        state.db.ping().await.map_err(|e| {
            aerekos_common::ApiError::unavailable("database_unavailable", e.to_string())
        })?;
        Ok(Json(Health {
            status: "ready".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&Arc<State>>) -> ApiResult<PlainText<String>> {
        let mut out = String::new();
        state.metrics.render_http(&mut out);
        write_gauge(
            &mut out,
            "aerekos_secrets",
            "Secrets kept (scheduled deletions included).",
            &[(String::new(), state.secrets.count().await as f64)],
        );
        Ok(PlainText(out))
    }
}

pub type SecretsManagerApi = (SecretsApi, ValuesApi, RotationApi, AuditApi, SystemApi);

/// The limits secrets_manager's domain enforces, declared in its spec (see
/// `aerekos_common::limits`); `max_value_bytes` is the configured `MAX_VALUE_BYTES` (a value's
/// size after base64 or JSON decoding has no schema keyword, so the domain says it). Left
/// undeclared, and named in tests/api/schemathesis.toml: a value is exactly one of `bytes` and `json`.
pub fn limits() -> Vec<aerekos_common::limits::Limit> {
    use aerekos_common::limits::Limit;
    use serde_json::json;
    let name = json!({"pattern": names::NAME_PATTERN, "maxLength": names::MAX_NAME_CHARS});
    let label = json!({"pattern": names::LABEL_PATTERN});
    let description = json!({"maxLength": names::MAX_DESCRIPTION_CHARS});
    let max_versions = json!({"minimum": 1, "maximum": names::MAX_VERSIONS_LIMIT});
    let tags = json!({"maxProperties": names::MAX_TAGS, "additionalProperties": {"maxLength": names::MAX_TAG_CHARS}});
    let page = json!({"minimum": 1, "maximum": secrets::MAX_PAGE});
    let mut limits = vec![
        Limit::property("CreateSecretRequest", "name", name.clone()),
        Limit::property("CreateSecretRequest", "description", description.clone()),
        Limit::property("CreateSecretRequest", "max_versions", max_versions.clone()),
        Limit::property("CreateSecretRequest", "tags", tags.clone()),
        Limit::property("UpdateSecretRequest", "description", description),
        Limit::property("UpdateSecretRequest", "max_versions", max_versions),
        Limit::property("UpdateSecretRequest", "tags", tags),
        // An empty value is refused; a value's own size limit is after decoding (see above).
        Limit::property("SecretValue", "bytes", json!({"minLength": 1})),
        Limit::property(
            "PutValueRequest",
            "labels",
            json!({"maxItems": names::MAX_LABELS, "items": label.clone()}),
        ),
        Limit::property(
            "SetRotationRequest",
            "service",
            json!({"pattern": rotation::SERVICE_PATTERN}),
        ),
        Limit::property(
            "SetRotationRequest",
            "path",
            json!({"pattern": rotation::PATH_PATTERN}),
        ),
        Limit::property(
            "SetRotationRequest",
            "interval_secs",
            json!({"minimum": rotation::MIN_INTERVAL_SECS, "maximum": rotation::MAX_INTERVAL_SECS}),
        ),
        Limit::param("list_secrets", "limit", page.clone()),
        Limit::param("list_secret_audit_records", "limit", page),
        Limit::param(
            "delete_secret",
            "recovery_days",
            json!({"minimum": secrets::MIN_RECOVERY_DAYS, "maximum": secrets::MAX_RECOVERY_DAYS}),
        ),
        Limit::param("get_secret_value", "label", label.clone()),
    ];
    for operation in [
        "get_secret",
        "update_secret",
        "delete_secret",
        "restore_secret",
        "delete_secret_version",
        "undelete_secret_version",
        "destroy_secret_version",
        "move_secret_label",
        "remove_secret_label",
        "put_secret_value",
        "get_secret_value",
        "set_secret_rotation",
        "remove_secret_rotation",
        "rotate_secret",
    ] {
        limits.push(Limit::param(operation, "name", name.clone()));
    }
    for operation in ["move_secret_label", "remove_secret_label"] {
        limits.push(Limit::param(operation, "label", label.clone()));
    }
    limits
}

pub fn service() -> OpenApiService<SecretsManagerApi, ()> {
    OpenApiService::new((SecretsApi, ValuesApi, RotationApi, AuditApi, SystemApi), "aerekos secrets_manager", env!("CARGO_PKG_VERSION")).description(
        "Versioned secrets for apps and services: values sealed (AES-256-GCM) under data keys from key_manager, \
         staging labels (AWSCURRENT, AWSPREVIOUS), check-and-set writes, soft deletion and destruction of versions, \
         deletion with a recovery window, rotation through an endpoint, and an audit record of every read and change. \
         A value never appears anywhere but in the body of its own read or write.",
    )
}
