//! key_manager's HTTP surface, under `/api/key_manager/…` so one SDK client works against the
//! service directly or through the conductor's gateway. Thin: check the caller, call the key ring.

use std::sync::Arc;

use aerekos_common::{ApiError, ApiResult, auth::Caller, metrics::write_gauge};
use poem::{Request, web::Data};
use poem_openapi::{
    OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::{Path, Query},
    payload::{Json, PlainText},
};

use crate::{
    State,
    domain::keys::require_key_scope,
    model::{
        AuditPage, AuditRecord, BatchDecryptRequest, BatchDecryptResponse, BatchEncryptRequest,
        BatchEncryptResponse, CreateKeyRequest, DataKeyRequest, DataKeyResponse, DecryptRequest,
        DecryptResponse, EncryptRequest, EncryptResponse, Health, Key, RandomRequest,
        RandomResponse, ScheduleDeletionRequest, UpdateKeyRequest,
    },
};

#[derive(Tags)]
enum ApiTags {
    /// Creating and managing keys.
    Keys,
    /// Using keys: encrypt, decrypt, rewrap, data keys, random bytes.
    Crypto,
    /// The record of every use of a key.
    Audit,
    /// Health, readiness, metrics.
    System,
}

/// A token from the conductor, as `Authorization: Bearer <token>`: a user's (admins manage and
/// use keys; viewers may list them) or a service's (services may use keys).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
struct CallerAuth(Caller);

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req.data::<Arc<State>>().expect("State is attached");
    state.verifier.caller(&bearer.token).map_err(Into::into)
}

/// Listing and reading keys: every authenticated caller.
fn may_read(_caller: &Caller) -> ApiResult<()> {
    Ok(())
}

pub struct KeysApi;

#[OpenApi(prefix_path = "/api/key_manager", tag = "ApiTags::Keys")]
impl KeysApi {
    /// Create a key (admin). Its first version is generated inside the service and never leaves it.
    #[oai(path = "/keys", method = "post", operation_id = "create_key")]
    async fn create(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<CreateKeyRequest>,
    ) -> ApiResult<Json<Key>> {
        state.keys.create(&auth.0, body.0).await.map(Json)
    }

    /// Every key, by name (for an API key: those its `key_manager:read` scopes name).
    #[oai(path = "/keys", method = "get", operation_id = "list_keys")]
    async fn list(&self, state: Data<&Arc<State>>, auth: CallerAuth) -> ApiResult<Json<Vec<Key>>> {
        may_read(&auth.0)?;
        let mut keys = state.keys.list();
        keys.retain(|k| require_key_scope(&auth.0, "read", k).is_ok());
        Ok(Json(keys))
    }

    /// One key, by id or name (an API key needs `key_manager:read` on it).
    #[oai(path = "/keys/:key", method = "get", operation_id = "get_key")]
    async fn get(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
    ) -> ApiResult<Json<Key>> {
        may_read(&auth.0)?;
        let key = state.keys.get(&key.0)?;
        require_key_scope(&auth.0, "read", &key)?;
        Ok(Json(key))
    }

    /// Change a key's description, version floors, or whether it may be deleted (admin).
    #[oai(path = "/keys/:key", method = "patch", operation_id = "update_key")]
    async fn update(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<UpdateKeyRequest>,
    ) -> ApiResult<Json<Key>> {
        state.keys.update(&auth.0, &key.0, body.0).await.map(Json)
    }

    /// Add a new version; new encryptions use it, older ciphertexts still decrypt (admin).
    #[oai(
        path = "/keys/:key/rotate",
        method = "post",
        operation_id = "rotate_key"
    )]
    async fn rotate(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
    ) -> ApiResult<Json<Key>> {
        state.keys.rotate(&auth.0, &key.0).await.map(Json)
    }

    /// Allow the key to be used again (admin).
    #[oai(
        path = "/keys/:key/enable",
        method = "post",
        operation_id = "enable_key"
    )]
    async fn enable(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
    ) -> ApiResult<Json<Key>> {
        state
            .keys
            .set_enabled(&auth.0, &key.0, true)
            .await
            .map(Json)
    }

    /// Refuse every encrypt and decrypt with the key until it is enabled (admin).
    #[oai(
        path = "/keys/:key/disable",
        method = "post",
        operation_id = "disable_key"
    )]
    async fn disable(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
    ) -> ApiResult<Json<Key>> {
        state
            .keys
            .set_enabled(&auth.0, &key.0, false)
            .await
            .map(Json)
    }

    /// Schedule the key's destruction after the waiting period (admin; the key must allow
    /// deletion). Until then it refuses every use and the deletion can be cancelled.
    #[oai(
        path = "/keys/:key/schedule-deletion",
        method = "post",
        operation_id = "schedule_key_deletion"
    )]
    async fn schedule_deletion(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<ScheduleDeletionRequest>,
    ) -> ApiResult<Json<Key>> {
        let waiting = body
            .0
            .waiting_period_secs
            .map(std::time::Duration::from_secs);
        state
            .keys
            .schedule_deletion(&auth.0, &key.0, waiting)
            .await
            .map(Json)
    }

    /// Cancel a scheduled deletion; the key comes back disabled (admin).
    #[oai(
        path = "/keys/:key/cancel-deletion",
        method = "post",
        operation_id = "cancel_key_deletion"
    )]
    async fn cancel_deletion(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
    ) -> ApiResult<Json<Key>> {
        state.keys.cancel_deletion(&auth.0, &key.0).await.map(Json)
    }
}

pub struct CryptoApi;

#[OpenApi(prefix_path = "/api/key_manager", tag = "ApiTags::Crypto")]
impl CryptoApi {
    /// Encrypt up to the plaintext limit (64 KiB by default) with the key's latest version.
    #[oai(path = "/keys/:key/encrypt", method = "post", operation_id = "encrypt")]
    async fn encrypt(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<EncryptRequest>,
    ) -> ApiResult<Json<EncryptResponse>> {
        state.keys.encrypt(&auth.0, &key.0, body.0).await.map(Json)
    }

    /// Decrypt a ciphertext of this key (any version from `min_decryption_version` up).
    #[oai(path = "/keys/:key/decrypt", method = "post", operation_id = "decrypt")]
    async fn decrypt(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<DecryptRequest>,
    ) -> ApiResult<Json<DecryptResponse>> {
        state.keys.decrypt(&auth.0, &key.0, body.0).await.map(Json)
    }

    /// Re-encrypt a ciphertext under the latest version without revealing the plaintext.
    #[oai(path = "/keys/:key/rewrap", method = "post", operation_id = "rewrap")]
    async fn rewrap(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<DecryptRequest>,
    ) -> ApiResult<Json<EncryptResponse>> {
        state.keys.rewrap(&auth.0, &key.0, body.0).await.map(Json)
    }

    /// A fresh data key for envelope encryption, wrapped by this key (and in plaintext unless
    /// `include_plaintext` is false).
    #[oai(
        path = "/keys/:key/datakey",
        method = "post",
        operation_id = "generate_data_key"
    )]
    async fn data_key(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<DataKeyRequest>,
    ) -> ApiResult<Json<DataKeyResponse>> {
        state.keys.data_key(&auth.0, &key.0, body.0).await.map(Json)
    }

    /// Encrypt many items; each result is a ciphertext or that item's error.
    #[oai(
        path = "/keys/:key/encrypt/batch",
        method = "post",
        operation_id = "encrypt_batch"
    )]
    async fn encrypt_batch(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<BatchEncryptRequest>,
    ) -> ApiResult<Json<BatchEncryptResponse>> {
        state
            .keys
            .encrypt_batch(&auth.0, &key.0, body.0.items)
            .await
            .map(Json)
    }

    /// Decrypt many items; each result is a plaintext or that item's error.
    #[oai(
        path = "/keys/:key/decrypt/batch",
        method = "post",
        operation_id = "decrypt_batch"
    )]
    async fn decrypt_batch(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        key: Path<String>,
        body: Json<BatchDecryptRequest>,
    ) -> ApiResult<Json<BatchDecryptResponse>> {
        state
            .keys
            .decrypt_batch(&auth.0, &key.0, body.0.items)
            .await
            .map(Json)
    }

    /// Random bytes from the operating system's CSPRNG.
    #[oai(path = "/random", method = "post", operation_id = "generate_random")]
    async fn random(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<RandomRequest>,
    ) -> ApiResult<Json<RandomResponse>> {
        may_read(&auth.0)?;
        state.keys.random(body.bytes).map(Json)
    }
}

pub struct AuditApi;

#[OpenApi(prefix_path = "/api/key_manager", tag = "ApiTags::Audit")]
impl AuditApi {
    /// The audit log, newest first (admin).
    #[oai(path = "/audit", method = "get", operation_id = "list_audit_records")]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        /// Only records of this key id.
        key_id: Query<Option<String>>,
        /// `next_before_id` of the previous page.
        before_id: Query<Option<i64>>,
        /// 1–1000, default 100.
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<AuditPage>> {
        if !auth.0.is_admin() {
            return Err(ApiError::forbidden(
                "forbidden",
                "the audit log is for admins",
            ));
        }
        let limit = limit.0.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_AUDIT_PAGE}"),
            ));
        }
        let rows = crate::store::list_audit(
            &state.db,
            key_id.0.as_deref(),
            before_id.0,
            i64::from(limit),
        )
        .await
        .map_err(ApiError::internal)?;
        let next_before_id = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let records = rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                at: aerekos_common::db::from_ms(r.at),
                actor: r.actor,
                key_id: r.key_id,
                key_version: r.key_version.map(|v| v as u32),
                operation: r.operation,
                request_id: r.request_id,
                outcome: r.outcome,
                detail: r.detail,
            })
            .collect();
        Ok(Json(AuditPage {
            records,
            next_before_id,
        }))
    }
}

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> ApiResult<Json<Health>> {
        Ok(Json(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Readiness: the database answers.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&Arc<State>>) -> ApiResult<Json<Health>> {
        state
            .db
            .ping()
            .await
            .map_err(|e| ApiError::unavailable("database_unavailable", e.to_string()))?;
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
            "aerekos_kms_keys",
            "Keys in the key ring.",
            &[(String::new(), state.keys.list().len() as f64)],
        );
        Ok(PlainText(out))
    }
}

pub type KeyManagerApi = (KeysApi, CryptoApi, AuditApi, SystemApi);

/// The limits key_manager's domain enforces, declared in its spec (see `aerekos_common::limits`);
/// `max_batch_items` and `deletion_waiting_period` are the configured ones (`MAX_BATCH_ITEMS`,
/// `KEY_DELETION_WAITING_PERIOD`). Left undeclared, and named in
/// tests/api/schemathesis.toml: what depends on the key rather than the request's shape (a
/// ciphertext's validity, the versions a key encrypts or decrypts with).
pub fn limits(
    max_batch_items: usize,
    deletion_waiting_period: std::time::Duration,
) -> Vec<aerekos_common::limits::Limit> {
    use aerekos_common::limits::Limit;
    use serde_json::json;
    let batch = json!({"minItems": 1, "maxItems": max_batch_items});
    vec![
        Limit::param(
            "list_audit_records",
            "limit",
            json!({"minimum": 1, "maximum": MAX_AUDIT_PAGE}),
        ),
        // Not a UUID either (a name must not be taken for an id): said in the field's description.
        Limit::property(
            "CreateKeyRequest",
            "name",
            json!({"pattern": "^[A-Za-z0-9._/-]{1,128}$"}),
        ),
        Limit::property(
            "CreateKeyRequest",
            "description",
            json!({"maxLength": crate::domain::keys::MAX_DESCRIPTION_CHARS}),
        ),
        Limit::property(
            "UpdateKeyRequest",
            "description",
            json!({"maxLength": crate::domain::keys::MAX_DESCRIPTION_CHARS}),
        ),
        Limit::property(
            "DataKeyRequest",
            "bits",
            json!({"enum": crate::domain::keys::DATA_KEY_BITS}),
        ),
        Limit::property(
            "RandomRequest",
            "bytes",
            json!({"minimum": 1, "maximum": crate::domain::keys::MAX_RANDOM_BYTES}),
        ),
        Limit::property(
            "ScheduleDeletionRequest",
            "waiting_period_secs",
            json!({"minimum": deletion_waiting_period.as_secs(), "maximum": crate::domain::keys::MAX_DELETION_WAITING_PERIOD.as_secs()}),
        ),
        Limit::property("BatchEncryptRequest", "items", batch.clone()),
        Limit::property("BatchDecryptRequest", "items", batch),
    ]
}

/// The most records one page of the audit log holds.
const MAX_AUDIT_PAGE: u32 = 1000;

pub fn service() -> OpenApiService<KeyManagerApi, ()> {
    OpenApiService::new((KeysApi, CryptoApi, AuditApi, SystemApi), "aerekos key_manager", env!("CARGO_PKG_VERSION")).description(
        "The aerekos KMS: keys with versions and rotation, authenticated encryption (AES-256-GCM), data keys \
         for envelope encryption, and an audit record of every use. Key material never leaves the service.",
    )
}
