//! storage_manager's own HTTP API, under `/api/storage_manager/…` so one SDK client works against
//! the service directly or through the conductor's gateway. Thin: check the caller, call `Storage`.
//! Object bodies stream both ways (`application/octet-stream`); nothing here holds a whole object.

use std::{collections::BTreeMap, sync::Arc};

use aerekos_common::{ApiError, ApiResult, auth::Caller, metrics::write_gauge};
use poem::{Body, Request, web::Data};
use poem_openapi::{
    ApiResponse, OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::{Header, Path, Query},
    payload::{Binary, Json, PlainText, Response},
};

use crate::{
    State,
    domain::objects::{ByteRange, Download, NewObject, WriteChecks},
    model::{
        AccessKey, Bucket, CreateAccessKeyRequest, CreateBucketRequest, Health, ObjectInfo,
        ObjectList,
    },
};

#[derive(Tags)]
enum ApiTags {
    /// Buckets: create, list, delete.
    Buckets,
    /// Objects: upload, download (with ranges), metadata, delete, list.
    Objects,
    /// S3 access key pairs for the S3 protocol endpoint.
    AccessKeys,
    /// Health, readiness, metrics.
    System,
}

/// A token from the conductor, as `Authorization: Bearer <token>`: a user's (admins change
/// things, viewers read) or a service's (services read and write objects).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
struct CallerAuth(Caller);

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req.data::<Arc<State>>().expect("State is attached");
    state.verifier.caller(&bearer.token).map_err(Into::into)
}

/// Changing buckets and objects: admins, services, and API keys with `storage_manager:write` on
/// the bucket.
fn may_write(caller: &Caller, bucket: &str) -> ApiResult<()> {
    match caller {
        Caller::User { admin: false, .. } => Err(ApiError::forbidden(
            "forbidden",
            "viewers may read buckets and objects, not change them",
        )),
        _ => caller.require_scope("storage_manager", "write", &[bucket]),
    }
}

/// Reading buckets and objects: every user and service, and API keys with `storage_manager:read`
/// on the bucket.
fn may_read(caller: &Caller, bucket: &str) -> ApiResult<()> {
    caller.require_scope("storage_manager", "read", &[bucket])
}

fn admin_only(caller: &Caller) -> ApiResult<()> {
    match caller {
        Caller::User { admin: true, .. } => Ok(()),
        _ => Err(ApiError::forbidden(
            "forbidden",
            "only admins manage S3 access keys",
        )),
    }
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
enum ObjectBytes {
    /// The whole object.
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "ETag")] String,
        #[oai(header = "Last-Modified")] String,
        #[oai(header = "Accept-Ranges")] String,
    ),
    /// The requested range of the object.
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "ETag")] String,
        #[oai(header = "Last-Modified")] String,
        #[oai(header = "Accept-Ranges")] String,
        /// `bytes <first>-<last>/<size>`.
        #[oai(header = "Content-Range")]
        String,
    ),
}

#[derive(ApiResponse)]
enum ObjectHead {
    /// The object exists; its metadata is in the headers.
    #[oai(status = 200)]
    Found(
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "ETag")] String,
        #[oai(header = "Last-Modified")] String,
        /// The object's content type (the response has no body).
        #[oai(header = "X-Object-Content-Type")]
        String,
        /// The user metadata as a JSON object (non-ASCII escaped).
        #[oai(header = "X-Object-Metadata")]
        String,
        /// The key_manager key the object is encrypted with, if any.
        #[oai(header = "X-Object-Encryption-Key")]
        Option<String>,
    ),
}

pub struct BucketsApi;

#[OpenApi(prefix_path = "/api/storage_manager", tag = "ApiTags::Buckets")]
impl BucketsApi {
    /// Create a bucket (admins and services), optionally encrypting new objects with a key_manager key.
    #[oai(path = "/buckets", method = "post", operation_id = "create_bucket")]
    async fn create(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<CreateBucketRequest>,
    ) -> ApiResult<Json<Bucket>> {
        may_write(&auth.0, &body.0.name)?;
        state
            .storage
            .create_bucket(&body.0.name, body.0.default_encryption_key)
            .await
            .map(Json)
    }

    /// Every bucket, by name.
    #[oai(path = "/buckets", method = "get", operation_id = "list_buckets")]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
    ) -> ApiResult<Json<Vec<Bucket>>> {
        let mut buckets = state.storage.list_buckets();
        buckets.retain(|b| may_read(&auth.0, &b.name).is_ok());
        Ok(Json(buckets))
    }

    /// One bucket.
    #[oai(path = "/buckets/:bucket", method = "get", operation_id = "get_bucket")]
    async fn get(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
    ) -> ApiResult<Json<Bucket>> {
        may_read(&auth.0, &bucket.0)?;
        state.storage.bucket(&bucket.0).map(Json)
    }

    /// Delete an empty bucket (admins and services); a bucket with objects is refused (409).
    #[oai(
        path = "/buckets/:bucket",
        method = "delete",
        operation_id = "delete_bucket"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
    ) -> ApiResult<Deleted> {
        may_write(&auth.0, &bucket.0)?;
        state
            .storage
            .delete_bucket(&bucket.0)
            .await
            .map(|()| Deleted::NoContent)
    }
}

pub struct ObjectsApi;

#[OpenApi(prefix_path = "/api/storage_manager", tag = "ApiTags::Objects")]
impl ObjectsApi {
    /// Upload an object (admins and services). The body is the object's bytes, streamed; the
    /// key's previous version stays readable until this one is complete and durable, and an upload
    /// that breaks off leaves nothing behind.
    #[oai(
        path = "/buckets/:bucket/objects",
        method = "post",
        operation_id = "put_object"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        req: &Request,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
        /// The object key: any UTF-8 up to 1024 bytes, `/` included.
        key: Query<String>,
        /// Stored and served back as the object's `Content-Type`. Default: the request's own
        /// `Content-Type`, unless that is `application/octet-stream` or a form encoding (what
        /// generic clients send), else `application/octet-stream`.
        content_type: Query<Option<String>>,
        /// User metadata as a JSON object of strings, e.g. `{"owner":"ci"}`.
        metadata: Query<Option<String>>,
        /// A key_manager key to encrypt this object with (default: the bucket's).
        encryption_key: Query<Option<String>>,
        body: Binary<Body>,
    ) -> ApiResult<Json<ObjectInfo>> {
        may_write(&auth.0, &bucket.0)?;
        let metadata: BTreeMap<String, String> = match metadata.0.as_deref() {
            None | Some("") => BTreeMap::new(),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                ApiError::bad_request(
                    "invalid_metadata",
                    format!("metadata must be a JSON object of strings: {e}"),
                )
            })?,
        };
        let generic = |ct: &&str| {
            ct.starts_with("application/octet-stream")
                || ct.starts_with("application/x-www-form-urlencoded")
        };
        let content_type = content_type.0.or_else(|| {
            req.content_type()
                .filter(|ct| !generic(ct))
                .map(str::to_owned)
        });
        let new = NewObject {
            content_type,
            metadata,
            encryption_key: encryption_key.0,
            ..Default::default()
        };
        let checks = WriteChecks::default();
        state
            .storage
            .put_object(&bucket.0, &key.0, new, checks, body.0.into_bytes_stream())
            .await
            .map(Json)
    }

    /// One page of the bucket's objects, in key order: those starting with `prefix`; with a
    /// `delimiter`, keys having it after the prefix are rolled up into `common_prefixes` ("folders").
    #[oai(
        path = "/buckets/:bucket/objects",
        method = "get",
        operation_id = "list_objects"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
        prefix: Query<Option<String>>,
        delimiter: Query<Option<String>>,
        /// 1–1000, default 1000 (objects and common prefixes together).
        page_size: Query<Option<u32>>,
        /// `next_continuation_token` of the previous page.
        continuation_token: Query<Option<String>>,
        /// Begin after this key.
        start_after: Query<Option<String>>,
    ) -> ApiResult<Json<ObjectList>> {
        may_read(&auth.0, &bucket.0)?;
        let page_size = page_size.0.unwrap_or(crate::domain::objects::MAX_PAGE);
        if !(1..=crate::domain::objects::MAX_PAGE).contains(&page_size) {
            return Err(ApiError::bad_request(
                "invalid_page_size",
                format!(
                    "page_size must be between 1 and {}",
                    crate::domain::objects::MAX_PAGE
                ),
            ));
        }
        state
            .storage
            .list_objects(
                &bucket.0,
                prefix.0.as_deref().unwrap_or(""),
                delimiter.0.as_deref(),
                start_after.0.as_deref(),
                continuation_token.0.as_deref(),
                page_size,
            )
            .await
            .map(Json)
    }

    /// Download an object, streamed; `Range: bytes=…` gives 206 with that part. The key is one
    /// path segment: percent-encode `/` in it (the SDKs do).
    #[oai(
        path = "/buckets/:bucket/objects/:key",
        method = "get",
        operation_id = "get_object"
    )]
    async fn get(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
        key: Path<String>,
        /// One range: `bytes=<first>-<last>`, `bytes=<first>-` or `bytes=-<length>`.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> ApiResult<Response<ObjectBytes>> {
        may_read(&auth.0, &bucket.0)?;
        let range = range.0.as_deref().map(ByteRange::parse).transpose()?;
        let Download {
            info,
            range,
            partial,
            body,
        } = state.storage.get_object(&bucket.0, &key.0, range).await?;
        let len = range.end - range.start;
        let body = Binary(Body::from_bytes_stream(body));
        let (etag, modified) = (quoted(&info.etag), http_date(&info.last_modified));
        let bytes = if partial {
            let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, info.size);
            ObjectBytes::Partial(body, len, etag, modified, "bytes".into(), content_range)
        } else {
            ObjectBytes::Full(body, len, etag, modified, "bytes".into())
        };
        Ok(Response::new(bytes).header(http::header::CONTENT_TYPE, info.content_type))
    }

    /// An object's metadata, in headers.
    #[oai(
        path = "/buckets/:bucket/objects/:key",
        method = "head",
        operation_id = "head_object"
    )]
    async fn head(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
        key: Path<String>,
    ) -> ApiResult<ObjectHead> {
        may_read(&auth.0, &bucket.0)?;
        let info = state.storage.head_object(&bucket.0, &key.0).await?;
        let metadata =
            ascii_json(&serde_json::to_string(&info.metadata).map_err(ApiError::internal)?);
        Ok(ObjectHead::Found(
            info.size,
            quoted(&info.etag),
            http_date(&info.last_modified),
            info.content_type,
            metadata,
            info.encryption_key,
        ))
    }

    /// Delete an object (admins and services).
    #[oai(
        path = "/buckets/:bucket/objects/:key",
        method = "delete",
        operation_id = "delete_object"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        bucket: Path<String>,
        key: Path<String>,
    ) -> ApiResult<Deleted> {
        may_write(&auth.0, &bucket.0)?;
        if state
            .storage
            .delete_object(&bucket.0, &key.0)
            .await?
            .existed
        {
            Ok(Deleted::NoContent)
        } else {
            Err(ApiError::not_found(
                "object_not_found",
                format!("no object {:?} in bucket {:?}", key.0, bucket.0),
            ))
        }
    }
}

pub struct AccessKeysApi;

#[OpenApi(prefix_path = "/api/storage_manager", tag = "ApiTags::AccessKeys")]
impl AccessKeysApi {
    /// Create an S3 access key pair (admin). The secret is in this answer only.
    #[oai(
        path = "/access-keys",
        method = "post",
        operation_id = "create_access_key"
    )]
    async fn create(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<CreateAccessKeyRequest>,
    ) -> ApiResult<Json<AccessKey>> {
        admin_only(&auth.0)?;
        state
            .access_keys
            .create(
                &auth.0,
                &body.0.description,
                body.0.scopes.as_deref().unwrap_or_default(),
            )
            .await
            .map(Json)
    }

    /// Every access key, revoked ones included, without secrets (admin).
    #[oai(
        path = "/access-keys",
        method = "get",
        operation_id = "list_access_keys"
    )]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
    ) -> ApiResult<Json<Vec<AccessKey>>> {
        admin_only(&auth.0)?;
        state.access_keys.list().await.map(Json)
    }

    /// Revoke an access key (admin): requests signed with it are refused from now on.
    #[oai(
        path = "/access-keys/:id",
        method = "delete",
        operation_id = "revoke_access_key"
    )]
    async fn revoke(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<AccessKey>> {
        admin_only(&auth.0)?;
        state.access_keys.revoke(&id.0).await.map(Json)
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
        let buckets = state.storage.list_buckets().len();
        write_gauge(
            &mut out,
            "aerekos_storage_buckets",
            "Buckets.",
            &[(String::new(), buckets as f64)],
        );
        Ok(PlainText(out))
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn http_date(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// JSON with every non-ASCII character escaped, so it fits in a header.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

pub type StorageManagerApi = (BucketsApi, ObjectsApi, AccessKeysApi, SystemApi);

/// The limits storage_manager's domain enforces, declared in its spec (see
/// `aerekos_common::limits`). Left undeclared, and named in tests/api/schemathesis.toml: S3's
/// bucket naming rules (no `..`, not an IP address, …) and a `Range`'s last byte not before its
/// first, which a JSON Schema pattern cannot say exactly. An object key is at most 1024 bytes of
/// UTF-8, which `maxLength` (characters) cannot say either: its description does.
pub fn limits() -> Vec<aerekos_common::limits::Limit> {
    use crate::domain::{access_keys, objects, policy};
    use aerekos_common::limits::Limit;
    use serde_json::json;
    vec![
        Limit::param(
            "list_objects",
            "page_size",
            json!({"minimum": 1, "maximum": objects::MAX_PAGE}),
        ),
        Limit::param("put_object", "key", json!({"minLength": 1})),
        Limit::property(
            "CreateAccessKeyRequest",
            "description",
            json!({"minLength": 1, "maxLength": access_keys::MAX_DESCRIPTION_CHARS, "pattern": "\\S"}),
        ),
        Limit::property(
            "CreateAccessKeyRequest",
            "scopes",
            json!({"maxItems": policy::MAX_KEY_SCOPES, "items": {"pattern": "^(read|write|admin):(\\*|[a-z0-9.-]+\\*?)$"}}),
        ),
    ]
}

pub fn service() -> OpenApiService<StorageManagerApi, ()> {
    OpenApiService::new((BucketsApi, ObjectsApi, AccessKeysApi, SystemApi), "aerekos storage_manager", env!("CARGO_PKG_VERSION"))
        .description(
            "aerekos object storage: buckets and objects with streamed uploads and ranged downloads, durable \
             writes, envelope encryption through key_manager, and the same buckets over the S3 protocol \
             (SigV4, path style) on the same port with access keys managed here.",
        )
}
