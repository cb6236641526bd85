//! The S3 protocol face of the same buckets and objects, through the `s3s` crate: it parses S3
//! requests, checks SigV4 (headers and presigned URLs) against the access keys in `AccessKeys`,
//! and calls this `S3` implementation, which maps each operation onto `Storage`. Path style only
//! (`/<bucket>/<key>`), on the service's one port beside its own API.
//!
//! What S3 does that this service does not (versioning, bucket policies, lifecycle, CORS
//! configuration, ...) answers as a bucket with nothing configured where S3 has such an answer,
//! and `NotImplemented` where it has none.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use aerekos_common::ApiError;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use poem::{Endpoint, IntoResponse as _, Request, Response};
use s3s::{
    S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result,
    auth::{S3Auth, SecretKey},
    dto::{self, ETag, ETagCondition, StreamingBlob, Timestamp, TimestampFormat},
    service::{S3Service, S3ServiceBuilder},
};

use crate::{
    domain::{
        access_keys::AccessKeys,
        bucket_settings::{self, BucketSettings, CorsRule, LifecycleRule, PublicAccessBlock, check_cors, check_lifecycle},
        policy::{self, Principal},
        names::check_tags,
        objects::{BodyCheck, ByteRange, CopySource, NewObject, Precondition, ReadConditions, Storage, WriteChecks, refuse_upload},
    },
    model::{ObjectInfo, ObjectList},
};

const SSE_KMS: &str = "aws:kms";
/// S3's limit on the keys one DeleteObjects request names.
const MAX_DELETE_KEYS: usize = 1000;

/// Builds the S3 service over `storage`, signed requests checked against `access_keys`; buckets
/// are also virtual hosts under `domains`.
pub fn service(storage: Arc<Storage>, access_keys: Arc<AccessKeys>, domains: &[String]) -> Result<S3Service, String> {
    let mut builder = S3ServiceBuilder::new(S3Front { storage: storage.clone(), access_keys: access_keys.clone() });
    if !domains.is_empty() {
        if let Some(bad) = domains.iter().find(|d| d.contains(':') || d.split('.').any(|label| label.is_empty())) {
            return Err(format!("S3_DOMAIN {bad:?} is not a domain name (give names such as s3.example.com, without ports)"));
        }
        builder.set_host(VirtualHostDomains(domains.to_vec()));
    }
    builder.set_auth(AccessKeyAuth { access_keys: access_keys.clone() });
    builder.set_access(PolicyAccess { storage, access_keys });
    Ok(builder.build())
}

/// `S3_DOMAIN`: a host `<bucket>.<domain>` (any port) names the bucket; every other host is path
/// style. (s3s's own parsers compare the host with its port, and take any other host name for a
/// bucket.)
struct VirtualHostDomains(Vec<String>);

impl s3s::host::S3Host for VirtualHostDomains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        Ok(match bucket_in_host(&self.0, host) {
            Some((domain, bucket)) => s3s::host::VirtualHost::new(domain).with_bucket(bucket),
            None => s3s::host::VirtualHost::new(host_name(host)),
        })
    }
}

/// A Host header's name, without its port.
fn host_name(host: &str) -> &str {
    host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(name, _)| name)
}

/// The domain and bucket a Host header names (`<bucket>.<domain>[:port]`), if it names one.
fn bucket_in_host<'d, 'h>(domains: &'d [String], host: &'h str) -> Option<(&'d str, &'h str)> {
    let name = host_name(host);
    domains.iter().find_map(|d| Some((d.as_str(), name.strip_suffix(d.as_str())?.strip_suffix('.')?)))
}

/// Who signed a request (nobody: unsigned), as bucket policies name principals.
fn principal_of(access_keys: &AccessKeys, credentials: Option<&s3s::auth::Credentials>) -> Principal {
    match credentials {
        Some(c) => access_keys.principal(&c.access_key).unwrap_or_else(|| Principal { access_key: Some(c.access_key.clone()), ..Default::default() }),
        None => Principal::anonymous(),
    }
}

/// The bucket's policy decision on `action` over the bucket or one of its objects. A bucket that
/// does not exist is left to the operation (NoSuchBucket) for signed requests.
fn allowed(storage: &Storage, principal: &Principal, action: &str, bucket: &str, key: Option<&str>) -> bool {
    let resource = match key {
        Some(key) => policy::object_arn(bucket, key),
        None => policy::bucket_arn(bucket),
    };
    match storage.known_bucket(bucket) {
        Ok(known) => known.access.decide(principal, &policy::Request { action, resource }),
        // No such bucket (yet): a signed request within its key's scopes goes on to the operation.
        Err(_) => {
            principal.access_key.is_some() && principal.scopes.as_ref().is_none_or(|s| s.allows(policy::Access::of(action), bucket))
        }
    }
}

fn access_denied() -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, "Access Denied")
}

/// Every S3 request's authorization, after s3s checked its signature (if it has one): the
/// bucket's policy, canned ACL and public access block decide ([`policy::BucketAccess`]).
struct PolicyAccess {
    storage: Arc<Storage>,
    access_keys: Arc<AccessKeys>,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for PolicyAccess {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let principal = principal_of(&self.access_keys, cx.credentials());
        let operation = cx.s3_op().name();
        let action = policy::action_of(operation);
        let ok = match cx.s3_path() {
            s3s::path::S3Path::Root => principal.access_key.is_some(),
            // Decided key by key in the operation itself.
            s3s::path::S3Path::Bucket { .. } if operation == "DeleteObjects" => true,
            s3s::path::S3Path::Bucket { bucket } => allowed(&self.storage, &principal, &action, bucket, None),
            s3s::path::S3Path::Object { bucket, key } => allowed(&self.storage, &principal, &action, bucket, Some(key)),
        };
        if ok { Ok(()) } else { Err(access_denied()) }
    }
}

/// Serves S3 requests inside the poem app: converts the request, runs s3s, converts the answer.
/// Bodies stream through in both directions.
pub struct S3Endpoint {
    pub service: S3Service,
    pub spool: Spool,
    /// For the buckets' CORS rules, which s3s knows nothing of.
    pub storage: Arc<Storage>,
    /// `S3_DOMAIN`: a request's bucket may be named in its host.
    pub domains: Vec<String>,
}

/// Where a body sent without a length (`Transfer-Encoding: chunked`, not aws-chunked) is measured:
/// s3s, like S3, needs the length before it checks a payload's signature, so such a body is
/// written to an unlinked file in `dir` (the data directory's `tmp/`), at most `max_bytes`, and
/// read back from there with its length. aws-chunked bodies carry their decoded length already.
pub struct Spool {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
}

impl Spool {
    fn needed(req: &Request) -> bool {
        let header = |name: http::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
        header(http::header::CONTENT_LENGTH).is_none()
            && header(http::header::TRANSFER_ENCODING).is_some_and(|te| te.contains("chunked"))
            && !header(http::HeaderName::from_static("x-amz-content-sha256")).is_some_and(|sha| sha.starts_with("streaming-"))
    }

    /// The body's length and a stream of it read back from disk.
    async fn measure(&self, body: poem::Body) -> Result<(u64, poem::Body), S3Error> {
        use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
        let path = self.dir.join(format!("spool-{}", uuid::Uuid::new_v4().simple()));
        let failed = |e: std::io::Error| S3Error::with_message(S3ErrorCode::InternalError, format!("spooling the upload: {e}"));
        let mut file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await.map_err(failed)?;
        // Unlinked at once: the open file is all there is, and it goes when the request does.
        let _ = tokio::fs::remove_file(&path).await;
        let mut body = std::pin::pin!(body.into_bytes_stream());
        let mut length = 0u64;
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            let chunk = chunk.map_err(|e| S3Error::with_message(S3ErrorCode::IncompleteBody, format!("the upload broke off: {e}")))?;
            length += chunk.len() as u64;
            if length > self.max_bytes {
                return Err(S3Error::with_message(
                    S3ErrorCode::EntityTooLarge,
                    format!("objects may be at most {} bytes", self.max_bytes),
                ));
            }
            file.write_all(&chunk).await.map_err(failed)?;
        }
        file.rewind().await.map_err(failed)?;
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
            let n = tokio::io::AsyncReadExt::read_buf(&mut file, &mut buf).await?;
            Ok::<_, std::io::Error>((n > 0).then(|| (buf.freeze(), file)))
        });
        Ok((length, poem::Body::from_bytes_stream(stream)))
    }
}

impl S3Endpoint {
    async fn s3_request(&self, mut req: Request) -> Result<http::Request<s3s::Body>, S3Error> {
        if Spool::needed(&req) {
            let (length, body) = self.spool.measure(req.take_body()).await?;
            req.headers_mut().remove(http::header::TRANSFER_ENCODING);
            req.headers_mut().insert(http::header::CONTENT_LENGTH, length.into());
            req.set_body(body);
        }
        let req: http::Request<_> = req.into();
        Ok(req.map(s3s::Body::http_body))
    }
}

/// A bucket's CORS rules applied to browser requests: preflights (`OPTIONS`) are answered here,
/// and answers to requests with an `Origin` a rule allows get the CORS headers.
impl S3Endpoint {
    /// The bucket a request is for: the host's first label under an `S3_DOMAIN`, else the first
    /// path segment.
    fn bucket_of<'a>(&self, req: &'a Request) -> Option<&'a str> {
        let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let virtual_host = bucket_in_host(&self.domains, host).map(|(_, bucket)| bucket);
        virtual_host.or_else(|| req.uri().path().trim_start_matches('/').split('/').next()).filter(|b| !b.is_empty())
    }

    fn cors_rules(&self, req: &Request) -> Option<Vec<CorsRule>> {
        self.storage.known_bucket(self.bucket_of(req)?).ok()?.settings.cors.clone()
    }

    fn preflight(&self, req: &Request) -> Response {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let refuse = |status: http::StatusCode, code: &str, message: &str| {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
            );
            Response::builder().status(status).content_type("application/xml").body(body)
        };
        let (Some(origin), Some(method)) = (header("origin"), header("access-control-request-method")) else {
            return refuse(
                http::StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin and Access-Control-Request-Method request headers are needed.",
            );
        };
        let Some(rules) = self.cors_rules(req) else {
            return refuse(http::StatusCode::FORBIDDEN, "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.");
        };
        let requested: Vec<String> = header("access-control-request-headers")
            .map(|h| h.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let Some(rule) = bucket_settings::cors_rule_for(&rules, &origin, &method, &requested) else {
            return refuse(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed: the bucket's CORS rules do not allow this origin, method or these headers.",
            );
        };
        let mut resp = Response::builder().status(http::StatusCode::OK).finish();
        cors_headers(&mut resp, rule, &origin);
        let set = |resp: &mut Response, name: &'static str, value: String| {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        };
        if !requested.is_empty() {
            set(&mut resp, "access-control-allow-headers", requested.join(", "));
        }
        if let Some(age) = rule.max_age_seconds {
            set(&mut resp, "access-control-max-age", age.to_string());
        }
        set(&mut resp, "vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into());
        resp
    }
}

/// A form upload whose fields break its signed policy: s3s answers 400 InvalidPolicyDocument, S3
/// answers 403 AccessDenied "Invalid according to Policy" (what browser-upload code checks for).
fn post_policy_refusal(status: http::StatusCode, body: &[u8]) -> Option<String> {
    if status != http::StatusCode::BAD_REQUEST {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let message = text.split_once("<Code>InvalidPolicyDocument</Code><Message>Policy condition")?.1;
    let message = message.split_once("</Message>")?.0;
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy condition{message}</Message></Error>"
    ))
}

/// The CORS headers a matching rule puts on an answer to `origin`.
fn cors_headers(resp: &mut Response, rule: &CorsRule, origin: &str) {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    };
    set("access-control-allow-origin", if any { "*".into() } else { origin.to_owned() });
    if !any {
        set("access-control-allow-credentials", "true".into());
    }
    set("access-control-allow-methods", rule.allowed_methods.join(", "));
    if !rule.expose_headers.is_empty() {
        set("access-control-expose-headers", rule.expose_headers.join(", "));
    }
    set("vary", "Origin".into());
}

impl Endpoint for S3Endpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() == http::Method::OPTIONS {
            return Ok(self.preflight(&req));
        }
        let cors = req.headers().get("origin").and_then(|v| v.to_str().ok()).and_then(|origin| {
            let rules = self.cors_rules(&req)?;
            let rule = bucket_settings::cors_rule_for(&rules, origin, req.method().as_str(), &[])?.clone();
            Some((rule, origin.to_owned()))
        });
        // An operation this service does not offer, on a bucket that does not exist, is S3's
        // NoSuchBucket (clients probe settings that way), not NotImplemented.
        let missing_bucket = self.bucket_of(&req).filter(|b| self.storage.known_bucket(b).is_err()).map(str::to_owned);
        let answer = match self.s3_request(req).await {
            Ok(req) => self.service.call(req).await.map_err(|e| format!("{e:?}")),
            Err(refusal) => refusal.to_http_response().map_err(|e| format!("{e:?}")),
        };
        let answer = match (answer, missing_bucket) {
            (Ok(resp), Some(bucket)) if resp.status() == http::StatusCode::NOT_IMPLEMENTED => {
                S3Error::with_message(S3ErrorCode::NoSuchBucket, format!("no bucket named {bucket:?}")).to_http_response().map_err(|e| format!("{e:?}"))
            }
            (answer, _) => answer,
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = ?e, "the S3 layer failed");
                return Ok(http::StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
        };
        let (parts, body) = resp.into_parts();
        let mut status = parts.status;
        // (`take_bytes` would empty a streaming body too: look first.)
        let body = match body.bytes() {
            // A 304 has no body (s3s writes its error document into every error).
            _ if status == http::StatusCode::NOT_MODIFIED => poem::Body::empty(),
            Some(bytes) => match post_policy_refusal(status, &bytes) {
                Some(refusal) => {
                    status = http::StatusCode::FORBIDDEN;
                    poem::Body::from(refusal)
                }
                None => poem::Body::from(bytes),
            },
            None => poem::Body::from_bytes_stream(body.map_err(std::io::Error::other)),
        };
        let mut out = Response::builder().status(status).body(body);
        out.headers_mut().extend(parts.headers);
        if let Some((rule, origin)) = cors {
            cors_headers(&mut out, &rule, &origin);
        }
        // The access log and metrics label S3 requests as one operation.
        out.set_data(poem_openapi::OperationId("s3"));
        Ok(out)
    }
}

struct AccessKeyAuth {
    access_keys: Arc<AccessKeys>,
}

#[async_trait::async_trait]
impl S3Auth for AccessKeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.access_keys.active_secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(S3Error::with_message(S3ErrorCode::InvalidAccessKeyId, "the access key does not exist or was revoked")),
        }
    }
}

struct S3Front {
    storage: Arc<Storage>,
    access_keys: Arc<AccessKeys>,
}

impl S3Front {
    /// The owner S3 names in listings and ACLs: whoever created the access key that signed.
    fn owner<T>(&self, req: &S3Request<T>) -> dto::Owner {
        let name = req.credentials.as_ref().and_then(|c| self.access_keys.owner(&c.access_key)).unwrap_or_default();
        dto::Owner { display_name: Some(name.clone()), id: Some(name) }
    }

    /// A copy reads its source: the source bucket's policy must allow that too.
    fn may_read_source<T>(&self, req: &S3Request<T>, source: &dto::CopySource) -> S3Result<()> {
        let dto::CopySource::Bucket { bucket, key, .. } = source else { return Ok(()) };
        let principal = principal_of(&self.access_keys, req.credentials.as_ref());
        if allowed(&self.storage, &principal, "s3:GetObject", bucket, Some(key)) { Ok(()) } else { Err(access_denied()) }
    }

    /// Refuses an operation on a bucket that does not exist, as S3 does before anything else.
    fn bucket_exists(&self, bucket: &str) -> S3Result<()> {
        self.storage.bucket(bucket).map(|_| ()).map_err(to_s3)
    }

    /// One listing page for ListObjects and ListObjectsV2 (`max_keys` 0 only checks the bucket).
    #[allow(clippy::too_many_arguments)]
    async fn page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        continuation_token: Option<&str>,
        max_keys: i32,
    ) -> S3Result<ObjectList> {
        if max_keys == 0 {
            self.bucket_exists(bucket)?;
            return Ok(ObjectList {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                delimiter: delimiter.map(str::to_owned),
                objects: vec![],
                common_prefixes: vec![],
                next_continuation_token: None,
            });
        }
        self.storage
            .list_objects(bucket, prefix, delimiter, start_after, continuation_token, max_keys as u32)
            .await
            .map_err(to_s3)
    }
}

/// `EncodingType=url` in a listing: keys, prefixes, delimiters and markers in the answer are
/// percent-encoded (boto3 asks for it by default and decodes them, `+` included).
#[derive(Clone, Copy)]
struct ListEncoding {
    url: bool,
}

/// What S3 leaves unencoded in a url-encoded listing: RFC 3986's unreserved characters and `/`.
const LISTING_UNENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

impl ListEncoding {
    fn of(encoding_type: Option<&dto::EncodingType>) -> S3Result<Self> {
        match encoding_type.map(|e| e.as_str()) {
            None => Ok(Self { url: false }),
            Some(e) if e.eq_ignore_ascii_case("url") => Ok(Self { url: true }),
            Some(other) => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("EncodingType {other:?} is not offered: the one encoding is \"url\""),
            )),
        }
    }

    fn apply(self, text: String) -> String {
        if self.url { percent_encoding::utf8_percent_encode(&text, LISTING_UNENCODED).to_string() } else { text }
    }

    fn apply_opt(self, text: Option<String>) -> Option<String> {
        text.map(|t| self.apply(t))
    }

    fn echo(self) -> Option<dto::EncodingType> {
        self.url.then(|| dto::EncodingType::from_static(dto::EncodingType::URL))
    }
}

fn list_entry(info: &ObjectInfo, owner: Option<&dto::Owner>, encoding: ListEncoding) -> dto::Object {
    dto::Object {
        key: Some(encoding.apply(info.key.clone())),
        size: Some(info.size as i64),
        e_tag: Some(etag(info)),
        last_modified: Some(timestamp(&info.last_modified)),
        storage_class: Some(dto::ObjectStorageClass::from_static(dto::ObjectStorageClass::STANDARD)),
        owner: owner.cloned(),
        ..Default::default()
    }
}

fn common_prefix_entries(page: &ObjectList, encoding: ListEncoding) -> Option<Vec<dto::CommonPrefix>> {
    let prefixes: Vec<_> =
        page.common_prefixes.iter().map(|p| dto::CommonPrefix { prefix: Some(encoding.apply(p.clone())) }).collect();
    (!prefixes.is_empty()).then_some(prefixes)
}

/// S3's conditional read headers as the domain evaluates them.
fn read_conditions(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
    if_modified_since: Option<Timestamp>,
    if_unmodified_since: Option<Timestamp>,
) -> ReadConditions {
    ReadConditions {
        if_match: if_match.map(|c| condition_text(&c)),
        if_none_match: if_none_match.map(|c| condition_text(&c)),
        if_modified_since: if_modified_since.map(chrono_time),
        if_unmodified_since: if_unmodified_since.map(chrono_time),
    }
}

fn condition_text(condition: &ETagCondition) -> String {
    match condition {
        ETagCondition::Any => "*".to_owned(),
        ETagCondition::ETag(tag) => tag.value().to_owned(),
    }
}

fn chrono_time(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    let t = time::OffsetDateTime::from(t);
    chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

/// What a PUT (or a multipart completion) with `If-Match`/`If-None-Match` requires of the key.
fn write_precondition(if_match: Option<ETagCondition>, if_none_match: Option<ETagCondition>) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::Absent),
        (Some(ETagCondition::ETag(tag)), None) => Ok(Precondition::ETag(tag.value().to_owned())),
        (Some(ETagCondition::Any), None) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-Match on a write takes an ETag; to write only where nothing is, use If-None-Match: *",
        )),
        (None, Some(ETagCondition::ETag(_))) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-None-Match on a write takes only *, which writes only where there is no object yet",
        )),
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "give If-Match or If-None-Match on a write, not both",
        )),
    }
}

/// The HTTP headers an upload asks the object to keep (S3 drops the `aws-chunked` transfer
/// coding from Content-Encoding).
fn stored_headers(
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
) -> BTreeMap<String, String> {
    let content_encoding = content_encoding
        .map(|e| e.split(',').map(str::trim).filter(|c| !c.eq_ignore_ascii_case("aws-chunked")).collect::<Vec<_>>().join(", "))
        .filter(|e| !e.is_empty());
    let expires = expires.and_then(|t| {
        let mut text = Vec::new();
        t.format(TimestampFormat::HttpDate, &mut text).ok()?;
        String::from_utf8(text).ok()
    });
    [
        ("cache-control", cache_control),
        ("content-disposition", content_disposition),
        ("content-encoding", content_encoding),
        ("content-language", content_language),
        ("expires", expires),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?)))
    .collect()
}

fn header_of(info: &ObjectInfo, name: &str) -> Option<String> {
    info.headers.get(name).cloned()
}

fn expires_of(info: &ObjectInfo) -> Option<Timestamp> {
    info.headers.get("expires").and_then(|t| Timestamp::parse(TimestampFormat::HttpDate, t).ok())
}

/// The `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
fn tagging_header(header: Option<&str>) -> BTreeMap<String, String> {
    header.map(|h| form_urlencoded::parse(h.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn tag_set(tags: BTreeMap<String, String>) -> Vec<dto::Tag> {
    tags.into_iter().map(|(key, value)| dto::Tag { key: Some(key), value: Some(value) }).collect()
}

/// A TagSet as a map; a key given twice is S3's InvalidTag.
fn tag_map(tag_set: Vec<dto::Tag>) -> S3Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for tag in tag_set {
        let key = tag.key.unwrap_or_default();
        if tags.insert(key.clone(), tag.value.unwrap_or_default()).is_some() {
            return Err(S3Error::with_message(S3ErrorCode::InvalidTag, format!("tag key {key:?} is given twice")));
        }
    }
    Ok(tags)
}

/// A canned bucket ACL kept as a setting; `private` is the absence of one.
fn set_canned_acl(settings: &mut BucketSettings, bucket: &str, acl: &str) -> Result<(), ApiError> {
    check_canned_acl(bucket, acl)?;
    settings.canned_acl = (acl != "private").then(|| acl.to_owned());
    settings.check_against_block(bucket)
}

fn check_canned_acl(bucket: &str, acl: &str) -> Result<(), ApiError> {
    crate::domain::policy::canned_acl_grants(bucket, acl).map(|_| ())
}

/// An S3 lifecycle rule as the lifecycle task applies it (expiration and aborting uploads; the
/// transitions and noncurrent-version actions of versioned, tiered storage are refused).
fn lifecycle_rule(rule: dto::LifecycleRule) -> S3Result<LifecycleRule> {
    let unsupported = |what: &str| {
        Err(S3Error::with_message(S3ErrorCode::NotImplemented, format!("lifecycle {what} is not offered: only Expiration and AbortIncompleteMultipartUpload")))
    };
    if rule.transitions.as_ref().is_some_and(|t| !t.is_empty()) {
        return unsupported("transitions");
    }
    if rule.noncurrent_version_expiration.is_some() || rule.noncurrent_version_transitions.as_ref().is_some_and(|t| !t.is_empty()) {
        return unsupported("noncurrent-version actions");
    }
    let (mut prefix, mut tags) = (rule.prefix.unwrap_or_default(), BTreeMap::new());
    if let Some(filter) = rule.filter {
        if filter.object_size_greater_than.is_some() || filter.object_size_less_than.is_some() {
            return unsupported("size filters");
        }
        if let Some(p) = filter.prefix {
            prefix = p;
        }
        if let Some(tag) = filter.tag {
            tags.insert(tag.key.unwrap_or_default(), tag.value.unwrap_or_default());
        }
        if let Some(and) = filter.and {
            if and.object_size_greater_than.is_some() || and.object_size_less_than.is_some() {
                return unsupported("size filters");
            }
            prefix = and.prefix.unwrap_or(prefix);
            tags.extend(tag_map(and.tags.unwrap_or_default())?);
        }
    }
    let days = |d: Option<i32>| -> S3Result<Option<u32>> {
        d.map(|d| u32::try_from(d).map_err(|_| S3Error::with_message(S3ErrorCode::InvalidArgument, "Days must be a positive number")))
            .transpose()
    };
    let expiration = rule.expiration.unwrap_or_default();
    if expiration.expired_object_delete_marker.is_some() {
        return unsupported("ExpiredObjectDeleteMarker (there is no versioning)");
    }
    Ok(LifecycleRule {
        id: rule.id,
        enabled: rule.status.as_str() == dto::ExpirationStatus::ENABLED,
        prefix,
        tags,
        expiration_days: days(expiration.days)?,
        expiration_date: expiration.date.map(|d| chrono_time(d).timestamp()),
        abort_incomplete_days: days(rule.abort_incomplete_multipart_upload.and_then(|a| a.days_after_initiation))?,
    })
}

fn lifecycle_rule_dto(rule: &LifecycleRule) -> dto::LifecycleRule {
    let tags = tag_set(rule.tags.clone());
    let filter = match tags.len() {
        0 => dto::LifecycleRuleFilter { prefix: Some(rule.prefix.clone()), ..Default::default() },
        1 if rule.prefix.is_empty() => dto::LifecycleRuleFilter { tag: tags.into_iter().next(), ..Default::default() },
        _ => dto::LifecycleRuleFilter {
            and: Some(dto::LifecycleRuleAndOperator { prefix: Some(rule.prefix.clone()), tags: Some(tags), ..Default::default() }),
            ..Default::default()
        },
    };
    let expiration = (rule.expiration_days.is_some() || rule.expiration_date.is_some()).then(|| dto::LifecycleExpiration {
        days: rule.expiration_days.map(|d| d as i32),
        date: rule.expiration_date.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| timestamp(&t)),
        ..Default::default()
    });
    dto::LifecycleRule {
        id: rule.id.clone(),
        status: dto::ExpirationStatus::from_static(if rule.enabled { dto::ExpirationStatus::ENABLED } else { dto::ExpirationStatus::DISABLED }),
        filter: Some(filter),
        expiration,
        abort_incomplete_multipart_upload: rule
            .abort_incomplete_days
            .map(|d| dto::AbortIncompleteMultipartUpload { days_after_initiation: Some(d as i32) }),
        noncurrent_version_expiration: None,
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    }
}

fn tag_count(info: &ObjectInfo) -> Option<i32> {
    (!info.tags.is_empty()).then_some(info.tags.len() as i32)
}

/// Canned ACLs this service can honour: `private` (what every bucket and object is).
fn only_private_acl(acl: Option<&str>) -> S3Result<()> {
    match acl {
        None | Some("private") => Ok(()),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!("canned ACL {other:?} is not offered: buckets and objects are private to the platform's access keys"),
        )),
    }
}

fn owner_full_control(owner: dto::Owner) -> (Option<Vec<dto::Grant>>, Option<dto::Owner>) {
    let grant = dto::Grant {
        grantee: Some(dto::Grantee {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(dto::Permission::from_static(dto::Permission::FULL_CONTROL)),
    };
    (Some(vec![grant]), Some(owner))
}

/// Our API's errors in S3's terms (codes S3 SDKs know and act on).
fn to_s3(e: ApiError) -> S3Error {
    let body = e.body();
    let code = match body.code.as_str() {
        "bucket_not_found" => S3ErrorCode::NoSuchBucket,
        "object_not_found" => S3ErrorCode::NoSuchKey,
        "upload_not_found" => S3ErrorCode::NoSuchUpload,
        "bucket_exists" => S3ErrorCode::BucketAlreadyOwnedByYou,
        "bucket_not_empty" => S3ErrorCode::BucketNotEmpty,
        "invalid_bucket_name" => S3ErrorCode::InvalidBucketName,
        "invalid_part" | "invalid_part_list" => S3ErrorCode::InvalidPart,
        "invalid_part_order" => S3ErrorCode::InvalidPartOrder,
        "range_not_satisfiable" => S3ErrorCode::InvalidRange,
        "object_too_large" => S3ErrorCode::EntityTooLarge,
        "upload_incomplete" => S3ErrorCode::IncompleteBody,
        "precondition_failed" => S3ErrorCode::PreconditionFailed,
        "not_modified" => S3ErrorCode::NotModified,
        "bad_digest" => S3ErrorCode::BadDigest,
        "invalid_digest" => S3ErrorCode::InvalidDigest,
        "part_too_small" => S3ErrorCode::EntityTooSmall,
        "copy_onto_itself" => S3ErrorCode::InvalidRequest,
        "invalid_tag" => S3ErrorCode::InvalidTag,
        "invalid_continuation_token" => S3ErrorCode::InvalidArgument,
        "invalid_request" => S3ErrorCode::InvalidRequest,
        "version_not_found" => S3ErrorCode::NoSuchVersion,
        "delete_marker" => S3ErrorCode::MethodNotAllowed,
        "malformed_policy" => S3ErrorCode::MalformedPolicy,
        "public_access_blocked" => S3ErrorCode::AccessDenied,
        "malformed_cors" | "malformed_lifecycle" => S3ErrorCode::MalformedXML,
        "invalid_acl" => S3ErrorCode::InvalidArgument,
        "encryption_key_not_found" => S3ErrorCode::Custom("KMS.NotFoundException".into()),
        "encryption_key_unusable" => S3ErrorCode::Custom("KMS.DisabledException".into()),
        _ => match e.status().as_u16() {
            400 => S3ErrorCode::InvalidArgument,
            403 => S3ErrorCode::AccessDenied,
            404 => S3ErrorCode::NoSuchKey,
            409 => S3ErrorCode::InvalidRequest,
            503 => S3ErrorCode::ServiceUnavailable,
            _ => S3ErrorCode::InternalError,
        },
    };
    let mut err = S3Error::with_message(code, body.message.clone());
    if body.code.starts_with("encryption_key") {
        err.set_status_code(http::StatusCode::BAD_REQUEST);
    }
    err
}

/// S3's additional checksums (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`,
/// `-sha256`): the one an upload sends, in a header or (aws-chunked uploads) in a trailer after the
/// body, is computed over the bytes as they are stored and compared before the object is visible.
struct S3Checksum {
    algorithm: &'static str,
    hasher: s3s::checksum::ChecksumHasher,
    expected: ExpectedChecksum,
}

enum ExpectedChecksum {
    Header(String),
    Trailer(s3s::TrailingHeaders),
}

const CHECKSUM_ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

impl S3Checksum {
    /// The check an S3 upload asks for, from its headers: a value in `x-amz-checksum-<algorithm>`,
    /// or one promised in `x-amz-trailer`.
    fn of<T>(req: &S3Request<T>) -> S3Result<Option<Box<dyn BodyCheck>>> {
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut given = CHECKSUM_ALGORITHMS.iter().filter_map(|a| Some((*a, header(&format!("x-amz-checksum-{a}"))?)));
        let first = given.next();
        if given.next().is_some() {
            return Err(S3Error::with_message(S3ErrorCode::InvalidRequest, "send one x-amz-checksum-* header, not several"));
        }
        let (algorithm, expected) = match (first, header("x-amz-trailer")) {
            (Some((algorithm, value)), _) => (algorithm, ExpectedChecksum::Header(value)),
            (None, Some(trailer)) => {
                let trailer = trailer.trim().to_ascii_lowercase();
                let Some(algorithm) = CHECKSUM_ALGORITHMS.iter().find(|a| trailer == format!("x-amz-checksum-{a}")) else {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        format!("x-amz-trailer {trailer:?} is not an x-amz-checksum-* header"),
                    ));
                };
                let Some(trailers) = req.trailing_headers.clone() else {
                    return Err(S3Error::with_message(S3ErrorCode::InvalidRequest, "x-amz-trailer needs an aws-chunked body"));
                };
                (*algorithm, ExpectedChecksum::Trailer(trailers))
            }
            (None, None) => return Ok(None),
        };
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        use s3s::crypto::Checksum as _;
        match algorithm {
            "crc32" => hasher.crc32 = Some(s3s::crypto::Crc32::new()),
            "crc32c" => hasher.crc32c = Some(s3s::crypto::Crc32c::new()),
            "crc64nvme" => hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            "sha1" => hasher.sha1 = Some(s3s::crypto::Sha1::new()),
            _ => hasher.sha256 = Some(s3s::crypto::Sha256::new()),
        }
        Ok(Some(Box::new(Self { algorithm, hasher, expected })))
    }
}

impl BodyCheck for S3Checksum {
    fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    fn verdict(self: Box<Self>) -> Result<Option<String>, ApiError> {
        let name = format!("x-amz-checksum-{}", self.algorithm);
        let sums = self.hasher.finalize();
        let computed = [sums.checksum_crc32, sums.checksum_crc32c, sums.checksum_crc64nvme, sums.checksum_sha1, sums.checksum_sha256]
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
        let expected = match self.expected {
            ExpectedChecksum::Header(value) => Some(value),
            ExpectedChecksum::Trailer(trailers) => trailers.read(|h| h.get(&name).and_then(|v| v.to_str().ok()).map(str::to_owned)).flatten(),
        };
        match expected {
            Some(expected) if expected.trim() == computed => Ok(Some(format!("{}:{computed}", self.algorithm.to_ascii_uppercase()))),
            Some(expected) => Err(ApiError::bad_request(
                "bad_digest",
                format!("{name} is {expected} but the bytes received have {computed}; nothing was stored"),
            )),
            None => Err(ApiError::bad_request("invalid_request", format!("the trailer promised {name} and did not send it; nothing was stored"))),
        }
    }
}

/// The stored checksum in the fields S3 answers carry.
fn checksum_fields(info: &ObjectInfo) -> dto::Checksum {
    let mut out = dto::Checksum::default();
    if let Some((algorithm, value)) = info.checksum.as_deref().and_then(|c| c.split_once(':')) {
        let value = Some(value.to_owned());
        match algorithm {
            "CRC32" => out.checksum_crc32 = value,
            "CRC32C" => out.checksum_crc32c = value,
            "CRC64NVME" => out.checksum_crc64nvme = value,
            "SHA1" => out.checksum_sha1 = value,
            "SHA256" => out.checksum_sha256 = value,
            _ => {}
        }
    }
    out
}

/// An upload refused because its body stream failed: where s3s's check of the signed bytes failed
/// (a chunk signature, the payload's SHA-256), the error S3 gives for that. s3s's stream errors
/// are private types, so their text is what tells them apart.
fn body_refusal(e: ApiError) -> S3Error {
    let message = e.body().message.clone();
    if e.body().code == "upload_incomplete" {
        if message.contains("SignatureMismatch") {
            return S3Error::with_message(S3ErrorCode::SignatureDoesNotMatch, "a chunk's signature does not match its bytes; nothing was stored");
        }
        if message.contains("Sha256Mismatch") {
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "the body's SHA-256 is not the x-amz-content-sha256 it was signed with; nothing was stored",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            return err;
        }
    }
    to_s3(e)
}

fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from(SystemTime::from(*t))
}

fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

fn user_metadata(metadata: Option<dto::Metadata>) -> BTreeMap<String, String> {
    metadata.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
}

/// The key_manager key an S3 request asks for with SSE-KMS headers (None: the bucket's default).
fn requested_key(sse: Option<&dto::ServerSideEncryption>, key_id: Option<String>) -> S3Result<Option<String>> {
    match sse.map(|s| s.as_str()) {
        None => Ok(key_id),
        Some(SSE_KMS) => Ok(key_id),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("server-side encryption {other:?} is not offered: use aws:kms with a key_manager key name"),
        )),
    }
}

fn sse_of(info: &ObjectInfo) -> (Option<dto::ServerSideEncryption>, Option<String>) {
    match &info.encryption_key {
        Some(key) => (Some(dto::ServerSideEncryption::from(SSE_KMS.to_owned())), Some(key.clone())),
        None => (None, None),
    }
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(&self, req: S3Request<dto::ListBucketsInput>) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let owner = self.owner(&req);
        // A key limited by scopes sees the buckets its scopes name.
        let principal = principal_of(&self.access_keys, req.credentials.as_ref());
        let buckets = self.storage.list_buckets();
        let buckets = buckets
            .into_iter()
            .filter(|b| principal.scopes.as_ref().is_none_or(|s| s.touches(&b.name)))
            .map(|b| dto::Bucket { name: Some(b.name), creation_date: Some(timestamp(&b.created_at)), bucket_region: None })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput { buckets: Some(buckets), owner: Some(owner), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<dto::CreateBucketInput>) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let acl = req.input.acl.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_else(|| "private".into());
        check_canned_acl(&req.input.bucket, &acl).map_err(to_s3)?;
        let bucket = self.storage.create_bucket(&req.input.bucket, None).await.map_err(to_s3)?;
        if acl != "private" {
            self.storage.update_bucket_settings(&bucket.name, |s| set_canned_acl(s, &bucket.name, &acl)).await.map_err(to_s3)?;
        }
        Ok(S3Response::new(dto::CreateBucketOutput { location: Some(format!("/{}", bucket.name)), ..Default::default() }))
    }

    async fn head_bucket(&self, req: S3Request<dto::HeadBucketInput>) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(&self, req: S3Request<dto::DeleteBucketInput>) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.storage.delete_bucket(&req.input.bucket).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    // ---- bucket settings (policy, ACL, public access block, CORS, lifecycle, tags)

    async fn get_bucket_acl(&self, req: S3Request<dto::GetBucketAclInput>) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        let (mut grants, owner) = owner_full_control(self.owner(&req));
        let public = |permission: &'static str| dto::Grant {
            grantee: Some(dto::Grantee {
                type_: dto::Type::from_static(dto::Type::GROUP),
                uri: Some("http://acs.amazonaws.com/groups/global/AllUsers".into()),
                display_name: None,
                email_address: None,
                id: None,
            }),
            permission: Some(dto::Permission::from_static(permission)),
        };
        let list = grants.get_or_insert_with(Vec::new);
        match bucket.settings.canned_acl.as_deref() {
            Some("public-read") => list.push(public(dto::Permission::READ)),
            Some("public-read-write") => list.extend([public(dto::Permission::READ), public(dto::Permission::WRITE)]),
            _ => {}
        }
        Ok(S3Response::new(dto::GetBucketAclOutput { grants, owner }))
    }

    async fn put_bucket_acl(&self, req: S3Request<dto::PutBucketAclInput>) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
        let input = req.input;
        if input.access_control_policy.is_some() || input.grant_read.is_some() || input.grant_write.is_some() || input.grant_full_control.is_some() {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "ACL grants are not offered: use a canned ACL or a bucket policy"));
        }
        let acl = input.acl.map(|a| a.as_str().to_owned()).unwrap_or_else(|| "private".into());
        self.storage.update_bucket_settings(&input.bucket, |s| set_canned_acl(s, &input.bucket, &acl)).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketAclOutput {}))
    }

    async fn put_bucket_policy(&self, req: S3Request<dto::PutBucketPolicyInput>) -> S3Result<S3Response<dto::PutBucketPolicyOutput>> {
        let input = req.input;
        self.storage
            .update_bucket_settings(&input.bucket, |s| {
                s.policy = Some(input.policy.clone());
                s.check_against_block(&input.bucket)
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketPolicyOutput {}))
    }

    async fn get_bucket_policy(&self, req: S3Request<dto::GetBucketPolicyInput>) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        match &bucket.settings.policy {
            Some(policy) => Ok(S3Response::new(dto::GetBucketPolicyOutput { policy: Some(policy.clone()) })),
            None => Err(S3Error::with_message(S3ErrorCode::NoSuchBucketPolicy, "the bucket has no policy")),
        }
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<dto::GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        let Some(policy) = &bucket.access.policy else {
            return Err(S3Error::with_message(S3ErrorCode::NoSuchBucketPolicy, "the bucket has no policy"));
        };
        let is_public = policy.is_public() && !bucket.access.restrict_public;
        Ok(S3Response::new(dto::GetBucketPolicyStatusOutput { policy_status: Some(dto::PolicyStatus { is_public: Some(is_public) }) }))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<dto::DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketPolicyOutput>> {
        self.storage.update_bucket_settings(&req.input.bucket, |s| Ok(s.policy = None)).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketPolicyOutput {}))
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<dto::PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::PutPublicAccessBlockOutput>> {
        let c = req.input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        // A block does not refuse what is already there (S3 neither): it governs later changes
        // and, through IgnorePublicAcls and RestrictPublicBuckets, what the settings grant.
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| {
                s.public_access_block = Some(block);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutPublicAccessBlockOutput {}))
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<dto::GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::GetPublicAccessBlockOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        let Some(block) = bucket.settings.public_access_block else {
            let mut none = S3Error::with_message(
                S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
                "the bucket has no public access block configuration",
            );
            none.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(none);
        };
        Ok(S3Response::new(dto::GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(dto::PublicAccessBlockConfiguration {
                block_public_acls: Some(block.block_public_acls),
                ignore_public_acls: Some(block.ignore_public_acls),
                block_public_policy: Some(block.block_public_policy),
                restrict_public_buckets: Some(block.restrict_public_buckets),
            }),
        }))
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<dto::DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::DeletePublicAccessBlockOutput>> {
        self.storage.update_bucket_settings(&req.input.bucket, |s| Ok(s.public_access_block = None)).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeletePublicAccessBlockOutput {}))
    }

    async fn put_bucket_cors(&self, req: S3Request<dto::PutBucketCorsInput>) -> S3Result<S3Response<dto::PutBucketCorsOutput>> {
        let rules: Vec<CorsRule> = req
            .input
            .cors_configuration
            .cors_rules
            .into_iter()
            .map(|r| CorsRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| {
                check_cors(&rules)?;
                s.cors = Some(rules);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(&self, req: S3Request<dto::GetBucketCorsInput>) -> S3Result<S3Response<dto::GetBucketCorsOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        let Some(rules) = &bucket.settings.cors else {
            return Err(S3Error::with_message(S3ErrorCode::NoSuchCORSConfiguration, "the bucket has no CORS configuration"));
        };
        let rules = rules
            .iter()
            .map(|r| dto::CORSRule {
                id: r.id.clone(),
                allowed_origins: r.allowed_origins.clone(),
                allowed_methods: r.allowed_methods.clone(),
                allowed_headers: (!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()),
                expose_headers: (!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        Ok(S3Response::new(dto::GetBucketCorsOutput { cors_rules: Some(rules) }))
    }

    async fn delete_bucket_cors(&self, req: S3Request<dto::DeleteBucketCorsInput>) -> S3Result<S3Response<dto::DeleteBucketCorsOutput>> {
        self.storage.update_bucket_settings(&req.input.bucket, |s| Ok(s.cors = None)).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketCorsOutput {}))
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let rules = input.lifecycle_configuration.map(|c| c.rules).unwrap_or_default();
        let rules = rules.into_iter().map(lifecycle_rule).collect::<S3Result<Vec<_>>>()?;
        self.storage
            .update_bucket_settings(&input.bucket, |s| {
                check_lifecycle(&rules)?;
                s.lifecycle = Some(rules);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketLifecycleConfigurationOutput::default()))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLifecycleConfigurationOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        let Some(rules) = &bucket.settings.lifecycle else {
            return Err(S3Error::with_message(S3ErrorCode::NoSuchLifecycleConfiguration, "the bucket has no lifecycle configuration"));
        };
        let rules = rules.iter().map(lifecycle_rule_dto).collect();
        Ok(S3Response::new(dto::GetBucketLifecycleConfigurationOutput { rules: Some(rules), ..Default::default() }))
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<dto::DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketLifecycleOutput>> {
        self.storage.update_bucket_settings(&req.input.bucket, |s| Ok(s.lifecycle = None)).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketLifecycleOutput {}))
    }

    async fn put_bucket_tagging(&self, req: S3Request<dto::PutBucketTaggingInput>) -> S3Result<S3Response<dto::PutBucketTaggingOutput>> {
        let tags = tag_map(req.input.tagging.tag_set)?;
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| {
                check_tags(&tags)?;
                s.tags = Some(tags);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketTaggingOutput {}))
    }

    async fn get_bucket_tagging(&self, req: S3Request<dto::GetBucketTaggingInput>) -> S3Result<S3Response<dto::GetBucketTaggingOutput>> {
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        match &bucket.settings.tags {
            Some(tags) => Ok(S3Response::new(dto::GetBucketTaggingOutput { tag_set: tag_set(tags.clone()) })),
            None => Err(S3Error::with_message(S3ErrorCode::NoSuchTagSet, "the bucket has no tags")),
        }
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<dto::DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketTaggingOutput>> {
        self.storage.update_bucket_settings(&req.input.bucket, |s| Ok(s.tags = None)).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketTaggingOutput {}))
    }

    // ---- bucket settings this service does not offer: S3's answers for a bucket without them

    async fn get_bucket_website(&self, req: S3Request<dto::GetBucketWebsiteInput>) -> S3Result<S3Response<dto::GetBucketWebsiteOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Err(S3Error::with_message(S3ErrorCode::NoSuchWebsiteConfiguration, "the bucket has no website configuration"))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        // Never enabled: S3 answers with no status.
        let bucket = self.storage.known_bucket(&req.input.bucket).map_err(to_s3)?;
        let status = bucket.settings.versioning.clone().map(dto::BucketVersioningStatus::from);
        Ok(S3Response::new(dto::GetBucketVersioningOutput { status, mfa_delete: None }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<dto::PutBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::PutBucketVersioningOutput>> {
        let input = req.input;
        let config = input.versioning_configuration;
        if config.mfa_delete.as_ref().is_some_and(|m| m.as_str() == dto::MFADelete::ENABLED) {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "MFA delete is not offered"));
        }
        let status = match config.status.as_ref().map(|s| s.as_str()) {
            Some(s @ ("Enabled" | "Suspended")) => s.to_owned(),
            other => {
                return Err(S3Error::with_message(
                    S3ErrorCode::MalformedXML,
                    format!("versioning Status {other:?} is not Enabled or Suspended"),
                ));
            }
        };
        self.storage
            .update_bucket_settings(&input.bucket, |s| {
                // Once enabled, a bucket is versioned or suspended, never unversioned again (as in S3).
                if s.versioning.is_none() && status == "Suspended" {
                    return Ok(());
                }
                s.versioning = Some(status);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketVersioningOutput {}))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        let owner = self.owner(&req);
        let input = req.input;
        if input.delimiter.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "a delimiter in ListObjectVersions is not offered"));
        }
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(1, 1000);
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = self
            .storage
            .list_versions(&input.bucket, &prefix, input.key_marker.as_deref(), input.version_id_marker.as_deref(), max_keys as u32)
            .await
            .map_err(to_s3)?;
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for entry in page.entries {
            if entry.delete_marker {
                markers.push(dto::DeleteMarkerEntry {
                    key: Some(encoding.apply(entry.key)),
                    version_id: Some(entry.version_id),
                    is_latest: Some(entry.is_latest),
                    last_modified: Some(timestamp(&entry.last_modified)),
                    owner: Some(owner.clone()),
                });
            } else {
                versions.push(dto::ObjectVersion {
                    key: Some(encoding.apply(entry.key)),
                    version_id: Some(entry.version_id),
                    is_latest: Some(entry.is_latest),
                    last_modified: Some(timestamp(&entry.last_modified)),
                    e_tag: Some(ETag::Strong(entry.etag)),
                    size: Some(entry.size as i64),
                    storage_class: Some(dto::ObjectVersionStorageClass::from_static(dto::ObjectVersionStorageClass::STANDARD)),
                    owner: Some(owner.clone()),
                    ..Default::default()
                });
            }
        }
        let (next_key, next_version) = page.next.map_or((None, None), |(k, v)| (Some(encoding.apply(k)), Some(v)));
        Ok(S3Response::new(dto::ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            key_marker: input.key_marker.map(|k| encoding.apply(k)),
            version_id_marker: input.version_id_marker,
            max_keys: Some(max_keys),
            is_truncated: Some(next_key.is_some()),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            encoding_type: encoding.echo(),
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            ..Default::default()
        }))
    }

    async fn get_object_acl(&self, req: S3Request<dto::GetObjectAclInput>) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
        self.storage.head_object(&req.input.bucket, &req.input.key).await.map_err(to_s3)?;
        let (grants, owner) = owner_full_control(self.owner(&req));
        Ok(S3Response::new(dto::GetObjectAclOutput { grants, owner, ..Default::default() }))
    }

    async fn put_object_acl(&self, req: S3Request<dto::PutObjectAclInput>) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
        self.storage.head_object(&req.input.bucket, &req.input.key).await.map_err(to_s3)?;
        only_private_acl(req.input.acl.as_ref().map(|a| a.as_str()))?;
        if req.input.access_control_policy.is_some() {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "ACL grants are not offered: only the canned ACL private"));
        }
        Ok(S3Response::new(dto::PutObjectAclOutput::default()))
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<dto::GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetObjectLockConfigurationOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Err(S3Error::with_message(S3ErrorCode::ObjectLockConfigurationNotFoundError, "object lock is not configured on the bucket"))
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<dto::GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<dto::GetBucketEncryptionOutput>> {
        let bucket = self.storage.bucket(&req.input.bucket).map_err(to_s3)?;
        let Some(key) = bucket.default_encryption_key else {
            return Err(S3Error::with_message(
                S3ErrorCode::ServerSideEncryptionConfigurationNotFoundError,
                "the bucket has no default encryption key",
            ));
        };
        let rule = dto::ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(dto::ServerSideEncryptionByDefault {
                sse_algorithm: dto::ServerSideEncryption::from(SSE_KMS.to_owned()),
                kms_master_key_id: Some(key),
            }),
            bucket_key_enabled: None,
        };
        Ok(S3Response::new(dto::GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(dto::ServerSideEncryptionConfiguration { rules: vec![rule] }),
        }))
    }

    // ---- objects

    async fn put_object(&self, req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let body_check = S3Checksum::of(&req);
        let input = req.input;
        let body = input.body.unwrap_or_else(|| StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>()));
        let checked = (|| {
            only_private_acl(input.acl.as_ref().map(|a| a.as_str()))?;
            let encryption_key = requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
            let precondition = write_precondition(input.if_match, input.if_none_match)?;
            Ok((encryption_key, precondition, body_check?))
        })();
        let (encryption_key, precondition, body_check) = match checked {
            Ok(checked) => checked,
            Err(e) => return Err(refuse_upload(e, body).await),
        };
        let new = NewObject {
            content_type: input.content_type,
            metadata: user_metadata(input.metadata),
            headers: stored_headers(
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.expires,
            ),
            tags: tagging_header(input.tagging.as_deref()),
            encryption_key,
        };
        let checks = WriteChecks { content_md5: input.content_md5, precondition, body_check };
        let info = self.storage.put_object(&input.bucket, &input.key, new, checks, body).await.map_err(body_refusal)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        let sums = checksum_fields(&info);
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(etag(&info)),
            version_id: info.version_id.clone(),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let input = req.input;
        let range = input.range.map(|r| match r {
            dto::Range::Int { first, last } => ByteRange::From { first, last },
            dto::Range::Suffix { length } => ByteRange::Suffix { length },
        });
        let conditions = read_conditions(input.if_match, input.if_none_match, input.if_modified_since, input.if_unmodified_since);
        let version = input.version_id.as_deref();
        let download = self.storage.get_object_if(&input.bucket, &input.key, version, range, &conditions).await.map_err(to_s3)?;
        let info = download.info;
        let content_range = download
            .partial
            .then(|| format!("bytes {}-{}/{}", download.range.start, download.range.end - 1, info.size));
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        // The whole object's checksum, when asked for and the whole object is served.
        let sums = if checksum_mode_enabled(input.checksum_mode.as_ref()) && !download.partial {
            checksum_fields(&info)
        } else {
            dto::Checksum::default()
        };
        // `response-*` query parameters (presigned download links use them) override what is stored.
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(StreamingBlob::wrap(download.body)),
            content_length: Some((download.range.end - download.range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: Some(input.response_content_type.unwrap_or_else(|| info.content_type.clone())),
            cache_control: input.response_cache_control.or_else(|| header_of(&info, "cache-control")),
            content_disposition: input.response_content_disposition.or_else(|| header_of(&info, "content-disposition")),
            content_encoding: input.response_content_encoding.or_else(|| header_of(&info, "content-encoding")),
            content_language: input.response_content_language.or_else(|| header_of(&info, "content-language")),
            expires: input.response_expires.or_else(|| expires_of(&info)),
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(&info.last_modified)),
            metadata: Some(info.metadata.clone().into_iter().collect()),
            tag_count: tag_count(&info),
            version_id: info.version_id.clone(),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let input = req.input;
        let conditions = read_conditions(input.if_match, input.if_none_match, input.if_modified_since, input.if_unmodified_since);
        let info = self.storage.head_object_if(&input.bucket, &input.key, input.version_id.as_deref(), &conditions).await.map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        let sums = if checksum_mode_enabled(input.checksum_mode.as_ref()) { checksum_fields(&info) } else { dto::Checksum::default() };
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some(info.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: Some(input.response_content_type.unwrap_or_else(|| info.content_type.clone())),
            cache_control: input.response_cache_control.or_else(|| header_of(&info, "cache-control")),
            content_disposition: input.response_content_disposition.or_else(|| header_of(&info, "content-disposition")),
            content_encoding: input.response_content_encoding.or_else(|| header_of(&info, "content-encoding")),
            content_language: input.response_content_language.or_else(|| header_of(&info, "content-language")),
            expires: input.response_expires.or_else(|| expires_of(&info)),
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(&info.last_modified)),
            metadata: Some(info.metadata.clone().into_iter().collect()),
            version_id: info.version_id.clone(),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<dto::GetObjectAttributesInput>,
    ) -> S3Result<S3Response<dto::GetObjectAttributesOutput>> {
        let input = req.input;
        let info = self.storage.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
        // One header may list them all, comma-separated.
        let wants = |name: &str| {
            input.object_attributes.iter().flat_map(|a| a.as_str().split(',')).any(|a| a.trim().eq_ignore_ascii_case(name))
        };
        let sums = checksum_fields(&info);
        // A multipart object's ETag ends in "-<parts>"; the parts themselves are not kept apart.
        let parts = info.etag.rsplit_once('-').and_then(|(_, n)| n.parse::<i32>().ok());
        Ok(S3Response::new(dto::GetObjectAttributesOutput {
            e_tag: wants(dto::ObjectAttributes::ETAG).then(|| etag(&info)),
            object_size: wants(dto::ObjectAttributes::OBJECT_SIZE).then_some(info.size as i64),
            storage_class: wants(dto::ObjectAttributes::STORAGE_CLASS)
                .then(|| dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
            checksum: (wants(dto::ObjectAttributes::CHECKSUM) && info.checksum.is_some()).then_some(sums),
            object_parts: (wants(dto::ObjectAttributes::OBJECT_PARTS) && parts.is_some())
                .then(|| dto::GetObjectAttributesParts { total_parts_count: parts, ..Default::default() }),
            last_modified: Some(timestamp(&info.last_modified)),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<dto::DeleteObjectInput>) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        // S3 answers 204 whether or not the key (or version) existed.
        let input = req.input;
        let output = match &input.version_id {
            Some(version) => {
                let removed = self.storage.delete_version(&input.bucket, &input.key, version).await.map_err(to_s3)?;
                dto::DeleteObjectOutput {
                    version_id: Some(version.clone()),
                    delete_marker: removed.is_some_and(|r| r.delete_marker).then_some(true),
                    ..Default::default()
                }
            }
            None => {
                let deleted = self.storage.delete_object(&input.bucket, &input.key).await.map_err(to_s3)?;
                let marker = deleted.delete_marker;
                dto::DeleteObjectOutput { delete_marker: marker.is_some().then_some(true), version_id: marker, ..Default::default() }
            }
        };
        Ok(S3Response::new(output))
    }

    async fn delete_objects(&self, req: S3Request<dto::DeleteObjectsInput>) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let principal = principal_of(&self.access_keys, req.credentials.as_ref());
        let input = req.input;
        self.bucket_exists(&input.bucket)?;
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                format!("{} keys named; one DeleteObjects request takes at most {MAX_DELETE_KEYS}", input.delete.objects.len()),
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            if !allowed(&self.storage, &principal, "s3:DeleteObject", &input.bucket, Some(&object.key)) {
                errors.push(dto::Error {
                    key: Some(object.key),
                    code: Some("AccessDenied".into()),
                    message: Some("Access Denied".into()),
                    ..Default::default()
                });
                continue;
            }
            let done = match &object.version_id {
                Some(version) => self.storage.delete_version(&input.bucket, &object.key, version).await.map(|removed| dto::DeletedObject {
                    version_id: Some(version.clone()),
                    delete_marker: removed.is_some_and(|r| r.delete_marker).then_some(true),
                    ..Default::default()
                }),
                None => self.storage.delete_object(&input.bucket, &object.key).await.map(|d| dto::DeletedObject {
                    delete_marker: d.delete_marker.is_some().then_some(true),
                    delete_marker_version_id: d.delete_marker,
                    ..Default::default()
                }),
            };
            match done {
                Ok(entry) => {
                    if !quiet {
                        deleted.push(dto::DeletedObject { key: Some(object.key), ..entry });
                    }
                }
                Err(e) => {
                    let s3 = to_s3(e);
                    errors.push(dto::Error {
                        key: Some(object.key),
                        code: Some(s3.code().as_str().to_owned()),
                        message: s3.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    /// ListObjects (v1): pages by `Marker`, the last key (or common prefix) seen.
    async fn list_objects(&self, req: S3Request<dto::ListObjectsInput>) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let owner = self.owner(&req);
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let delimiter = input.delimiter.filter(|d| !d.is_empty());
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.filter(|m| !m.is_empty());
        let page = self.page(&input.bucket, &prefix, delimiter.as_deref(), marker.as_deref(), None, max_keys).await?;
        let truncated = page.next_continuation_token.is_some();
        // S3 gives NextMarker only with a delimiter; without one clients use the last key.
        let last_key = page.objects.last().map(|o| o.key.clone());
        let last_prefix = page.common_prefixes.last().cloned();
        let next_marker = (truncated && delimiter.is_some()).then(|| last_key.max(last_prefix)).flatten();
        let contents: Vec<_> = page.objects.iter().map(|o| list_entry(o, Some(&owner), encoding)).collect();
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: encoding.apply_opt(delimiter),
            marker: Some(encoding.apply(marker.unwrap_or_default())),
            next_marker: encoding.apply_opt(next_marker),
            max_keys: Some(max_keys),
            is_truncated: Some(truncated),
            encoding_type: encoding.echo(),
            common_prefixes: common_prefix_entries(&page, encoding),
            contents: (!contents.is_empty()).then_some(contents),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<dto::ListObjectsV2Input>) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let owner = req.input.fetch_owner.unwrap_or(false).then(|| self.owner(&req));
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let delimiter = input.delimiter.filter(|d| !d.is_empty());
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = self
            .page(
                &input.bucket,
                &prefix,
                delimiter.as_deref(),
                input.start_after.as_deref(),
                input.continuation_token.as_deref(),
                max_keys,
            )
            .await?;
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let contents: Vec<_> = page.objects.iter().map(|o| list_entry(o, owner.as_ref(), encoding)).collect();
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: encoding.apply_opt(delimiter),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next_continuation_token.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_continuation_token.clone(),
            start_after: encoding.apply_opt(input.start_after),
            encoding_type: encoding.echo(),
            common_prefixes: common_prefix_entries(&page, encoding),
            contents: (!contents.is_empty()).then_some(contents),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.may_read_source(&req, &req.input.copy_source)?;
        let input = req.input;
        only_private_acl(input.acl.as_ref().map(|a| a.as_str()))?;
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
        let replace_tags = input.tagging_directive.as_ref().is_some_and(|d| d.as_str() == dto::TaggingDirective::REPLACE);
        let encryption_key = requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
        let source = copy_source(
            &input.copy_source,
            read_conditions(
                input.copy_source_if_match,
                input.copy_source_if_none_match,
                input.copy_source_if_modified_since,
                input.copy_source_if_unmodified_since,
            ),
        )?;
        let source = CopySource {
            replace_metadata: replace.then(|| NewObject {
                content_type: input.content_type,
                metadata: user_metadata(input.metadata),
                headers: stored_headers(
                    input.cache_control,
                    input.content_disposition,
                    input.content_encoding,
                    input.content_language,
                    input.expires,
                ),
                ..Default::default()
            }),
            replace_tags: replace_tags.then(|| tagging_header(input.tagging.as_deref())),
            encryption_key,
            ..source
        };
        let copy_source_version = source.version.clone();
        let info = self.storage.copy_object(source, &input.bucket, &input.key).await.map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(&info)),
                last_modified: Some(timestamp(&info.last_modified)),
                ..Default::default()
            }),
            version_id: info.version_id.clone(),
            copy_source_version_id: copy_source_version,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    // ---- tags

    async fn get_object_tagging(&self, req: S3Request<dto::GetObjectTaggingInput>) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let tags = self.storage.object_tags(&req.input.bucket, &req.input.key).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::GetObjectTaggingOutput { tag_set: tag_set(tags), version_id: None }))
    }

    async fn put_object_tagging(&self, req: S3Request<dto::PutObjectTaggingInput>) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = tag_map(input.tagging.tag_set)?;
        self.storage.set_object_tags(&input.bucket, &input.key, tags).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.storage.set_object_tags(&req.input.bucket, &req.input.key, BTreeMap::new()).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }

    // ---- multipart uploads

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let input = req.input;
        only_private_acl(input.acl.as_ref().map(|a| a.as_str()))?;
        let encryption_key = requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
        let new = NewObject {
            content_type: input.content_type,
            metadata: user_metadata(input.metadata),
            headers: stored_headers(
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.expires,
            ),
            tags: tagging_header(input.tagging.as_deref()),
            encryption_key,
        };
        let upload = self.storage.create_upload(&input.bucket, &input.key, new).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(upload.bucket),
            key: Some(upload.key),
            upload_id: Some(upload.upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        // A part's checksum is verified; it is not kept (objects made of parts carry no checksum).
        let body_check = S3Checksum::of(&req);
        let input = req.input;
        let body = input.body.unwrap_or_else(|| StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>()));
        let (part_number, body_check) = match part_number(input.part_number).and_then(|n| Ok((n, body_check?))) {
            Ok(checked) => checked,
            Err(e) => return Err(refuse_upload(e, body).await),
        };
        let md5 = self
            .storage
            .upload_part(&input.bucket, &input.key, &input.upload_id, part_number, body_check, body)
            .await
            .map_err(body_refusal)?;
        Ok(S3Response::new(dto::UploadPartOutput { e_tag: Some(ETag::Strong(md5)), ..Default::default() }))
    }

    async fn upload_part_copy(&self, req: S3Request<dto::UploadPartCopyInput>) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.may_read_source(&req, &req.input.copy_source)?;
        let input = req.input;
        let part_number = part_number(input.part_number)?;
        let source = copy_source(
            &input.copy_source,
            read_conditions(
                input.copy_source_if_match,
                input.copy_source_if_none_match,
                input.copy_source_if_modified_since,
                input.copy_source_if_unmodified_since,
            ),
        )?;
        let range = match input.copy_source_range.as_deref() {
            None => None,
            // Only `bytes=first-last` here (S3's rule for UploadPartCopy).
            Some(text) => match ByteRange::parse(text) {
                Ok(range @ ByteRange::From { last: Some(_), .. }) => Some(range),
                _ => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        format!("x-amz-copy-source-range {text:?} must be bytes=<first>-<last>"),
                    ));
                }
            },
        };
        let part = self
            .storage
            .upload_part_copy(&input.bucket, &input.key, &input.upload_id, part_number, &source, range)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(ETag::Strong(part.etag)),
                last_modified: Some(timestamp(&part.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_parts(&self, req: S3Request<dto::ListPartsInput>) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let input = req.input;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(1, 1000);
        let marker = input.part_number_marker.unwrap_or(0);
        let parts = self.storage.list_parts(&input.bucket, &input.key, &input.upload_id).await.map_err(to_s3)?;
        let mut page: Vec<_> = parts.into_iter().filter(|p| p.part_number as i32 > marker).collect();
        let truncated = page.len() > max_parts as usize;
        page.truncate(max_parts as usize);
        let next_marker = page.last().map(|p| p.part_number as i32);
        let parts = page
            .into_iter()
            .map(|p| dto::Part {
                part_number: Some(p.part_number as i32),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(timestamp(&p.last_modified)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            parts: Some(parts),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: truncated.then_some(next_marker).flatten(),
            is_truncated: Some(truncated),
            ..Default::default()
        }))
    }

    /// Uploads in key order (then by when they began), paged by key and upload id markers, with
    /// `prefix` and `delimiter` as in listings.
    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_uploads = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let all = self.storage.list_uploads(&input.bucket).await.map_err(to_s3)?;
        // Past the markers: keys after the key marker, or the marker's key after the upload id marker.
        let after_markers = match &input.upload_id_marker {
            Some(id) if !key_marker.is_empty() => {
                let at = all.iter().position(|u| u.key == key_marker && &u.upload_id == id);
                all.iter().enumerate().filter(|(i, u)| u.key > key_marker || (u.key == key_marker && at.is_some_and(|at| *i > at))).map(|(_, u)| u).collect::<Vec<_>>()
            }
            _ => all.iter().filter(|u| u.key > key_marker).collect(),
        };
        let (mut uploads, mut common_prefixes, mut truncated) = (Vec::new(), Vec::<String>::new(), false);
        let mut last = None;
        for upload in after_markers.into_iter().filter(|u| u.key.starts_with(&prefix)) {
            let rolled = delimiter.as_deref().and_then(|d| upload.key[prefix.len()..].find(d).map(|at| upload.key[..prefix.len() + at + d.len()].to_owned()));
            if let Some(common) = &rolled
                && common_prefixes.last() == Some(common)
            {
                continue;
            }
            if uploads.len() + common_prefixes.len() == max_uploads {
                truncated = true;
                break;
            }
            last = Some((upload.key.clone(), upload.upload_id.clone()));
            match rolled {
                Some(common) => common_prefixes.push(common),
                None => uploads.push(dto::MultipartUpload {
                    key: Some(encoding.apply(upload.key.clone())),
                    upload_id: Some(upload.upload_id.clone()),
                    initiated: Some(timestamp(&upload.created_at)),
                    ..Default::default()
                }),
            }
        }
        let (next_key, next_id) = match (truncated, last) {
            (true, Some((key, id))) => (Some(encoding.apply(key)), Some(id)),
            _ => (None, None),
        };
        let common_prefixes: Vec<_> = common_prefixes.into_iter().map(|p| dto::CommonPrefix { prefix: Some(encoding.apply(p)) }).collect();
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: encoding.apply_opt(delimiter),
            key_marker: input.key_marker.map(|k| encoding.apply(k)),
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: Some(max_uploads as i32),
            encoding_type: encoding.echo(),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let precondition = write_precondition(input.if_match, input.if_none_match)?;
        let parts: Vec<(u32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p.part_number.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                let etag = match p.e_tag {
                    Some(ETag::Strong(s) | ETag::Weak(s)) => s,
                    None => String::new(),
                };
                (number, etag)
            })
            .collect();
        let info = self
            .storage
            .complete_upload(&input.bucket, &input.key, &input.upload_id, &parts, &precondition)
            .await
            .map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            version_id: info.version_id.clone(),
            bucket: Some(info.bucket.clone()),
            key: Some(info.key.clone()),
            e_tag: Some(etag(&info)),
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let input = req.input;
        self.storage.abort_upload(&input.bucket, &input.key, &input.upload_id).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }
}

fn checksum_mode_enabled(mode: Option<&dto::ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(dto::ChecksumMode::ENABLED))
}

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n).map_err(|_| S3Error::with_message(S3ErrorCode::InvalidArgument, "part numbers are 1 to 10000"))
}

/// The object a copy reads, with the conditions it must meet; what the copy writes is filled in by
/// the caller.
fn copy_source(source: &dto::CopySource, conditions: ReadConditions) -> S3Result<CopySource> {
    let dto::CopySource::Bucket { bucket, key, version_id } = source else {
        return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "copy from access points is not offered"));
    };
    Ok(CopySource {
        bucket: bucket.to_string(),
        key: key.to_string(),
        replace_metadata: None,
        replace_tags: None,
        encryption_key: None,
        conditions,
        version: version_id.as_ref().map(|v| v.to_string()),
    })
}
