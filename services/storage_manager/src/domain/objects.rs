//! Buckets and objects: the one place where uploads become visible, reads are served, listings are
//! paged and multipart uploads are assembled. Both faces of the service (its own API and the S3
//! protocol) call this; neither touches the database or the files directly.

use std::{collections::BTreeMap, io, ops::Range, sync::Arc, time::Duration};

use aerekos_common::{
    ApiError, ApiResult,
    db::{Db, from_ms as ts, now_ms},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use md5::{Digest as _, Md5};

use aerekos_envelope::Envelope;

use super::{
    blobs::{BlobStore, BlobWriter, ByteStream, Seal, WrittenBlob, hex},
    bucket_settings::BucketSettings,
    crypto::DataKey,
    names::{check_bucket_name, check_headers, check_key, check_metadata, check_tags},
    policy::{self, BucketAccess},
};
pub use crate::store::Precondition;
use crate::{
    model::{Bucket, ObjectInfo, ObjectList},
    store::{
        self, BucketDeletion, BucketRow, ObjectRow, PartRow, PutOutcome, UploadFinished, UploadRow,
        VersionMode, VersionRow,
    },
};

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// The most entries one listing page holds (S3's limit too).
pub const MAX_PAGE: u32 = 1000;
/// S3's part numbers.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// S3's smallest part, for every part of a completed upload but the last.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// The nonce domain of a finished object's chunks; parts use their part number.
const OBJECT_DOMAIN: u32 = 0;

/// Blob ids taken off the garbage list per collector round.
const GARBAGE_BATCH: u32 = 500;

pub struct Storage {
    db: Db,
    blobs: BlobStore,
    envelope: Envelope,
    max_object_bytes: u64,
    /// Woken after every change that may have left blobs on the garbage list.
    garbage: Arc<tokio::sync::Notify>,
    /// Every bucket, by name: each upload and listing needs its bucket, and buckets change rarely.
    /// This service is the only writer of its database; the map changes after the database does.
    buckets: std::sync::RwLock<BTreeMap<String, Arc<KnownBucket>>>,
    /// Creating and deleting buckets one at a time keeps the map in the database's order.
    bucket_changes: tokio::sync::Mutex<()>,
}

/// What a delete did.
pub struct Deleted {
    pub existed: bool,
    /// Under versioning: the delete marker's version id.
    pub delete_marker: Option<String>,
}

/// One version in a listing of versions.
pub struct VersionEntry {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub etag: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

pub struct VersionPage {
    pub entries: Vec<VersionEntry>,
    /// With a delimiter: the key prefixes up to and including it, each once.
    pub common_prefixes: Vec<String>,
    /// The key (and version) to continue after, when there is more.
    pub next: Option<(String, Option<String>)>,
}

enum VersionItem {
    Version(VersionEntry),
    Prefix(String),
}

fn version_entry(row: &VersionRow, is_latest: bool) -> ApiResult<VersionEntry> {
    Ok(VersionEntry {
        key: String::from_utf8(row.key.clone()).map_err(ApiError::internal)?,
        version_id: row.version_id.clone(),
        is_latest,
        delete_marker: row.delete_marker,
        size: row.size as u64,
        etag: row.etag.clone(),
        last_modified: ts(row.created_at),
    })
}

/// A new version's id under `mode` (None: the null version).
fn new_version_id(mode: VersionMode) -> Option<String> {
    (mode == VersionMode::Enabled).then(|| uuid::Uuid::new_v4().simple().to_string())
}

/// A bucket as held in memory: its row, its settings and the access decisions they make.
pub struct KnownBucket {
    pub row: BucketRow,
    pub settings: BucketSettings,
    pub access: BucketAccess,
}

impl KnownBucket {
    fn new(row: BucketRow) -> Self {
        let settings = BucketSettings::from_json(&row.settings);
        let access = settings.access(&row.name).unwrap_or_else(|e| {
            tracing::error!(bucket = %row.name, error = %e.body().message, "a stored bucket policy does not parse; it grants nothing");
            BucketAccess::default()
        });
        Self {
            row,
            settings,
            access,
        }
    }
}

/// What an upload says about the object besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// HTTP headers served back on reads: lowercase names from [`super::names::STORED_HEADERS`].
    pub headers: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// A key_manager key for this object; else the bucket's default, else none.
    pub encryption_key: Option<String>,
    /// The object's canned ACL (one of [`policy::OBJECT_CANNED_ACLS`]); None: private.
    pub acl: Option<String>,
}

/// What a write must satisfy before it replaces anything: the bytes' integrity and the key's
/// current state. A write that fails either stores nothing.
#[derive(Default)]
pub struct WriteChecks {
    /// `Content-MD5`: the base64 MD5 the bytes must have.
    pub content_md5: Option<String>,
    pub precondition: Precondition,
    /// A check of the bytes that only a protocol knows how to make (S3's `x-amz-checksum-*`).
    pub body_check: Option<Box<dyn BodyCheck>>,
}

/// A check fed every chunk of an upload as it is stored and asked for its verdict before the
/// object becomes visible.
pub trait BodyCheck: Send + Sync {
    fn update(&mut self, chunk: &[u8]);
    /// The value to keep with the object (`<ALGORITHM>:<base64>`), or the refusal.
    fn verdict(self: Box<Self>) -> ApiResult<Option<String>>;
}

impl WriteChecks {
    /// The MD5 the bytes must have, or a refusal of a malformed header (before any byte is read).
    fn expected_md5(&self) -> ApiResult<Option<String>> {
        let Some(given) = &self.content_md5 else {
            return Ok(None);
        };
        match base64::engine::general_purpose::STANDARD.decode(given.trim()) {
            Ok(digest) if digest.len() == 16 => Ok(Some(hex(&digest))),
            _ => Err(ApiError::bad_request(
                "invalid_digest",
                format!("Content-MD5 {given:?} is not the base64 of a 16-byte MD5 digest"),
            )),
        }
    }
}

/// HTTP's conditional read headers (RFC 9110 section 13), as S3 evaluates them on GET and HEAD.
#[derive(Debug, Clone, Default)]
pub struct ReadConditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<chrono::DateTime<chrono::Utc>>,
    pub if_unmodified_since: Option<chrono::DateTime<chrono::Utc>>,
}

impl ReadConditions {
    /// 412 when If-Match (or, without it, If-Unmodified-Since) fails; 304 when If-None-Match
    /// matches (or, without it, the object is unmodified since If-Modified-Since). Times compare
    /// in whole seconds, as HTTP dates carry them.
    pub fn check(&self, info: &ObjectInfo) -> ApiResult<()> {
        let matches = |condition: &str| {
            condition.split(',').map(str::trim).any(|tag| {
                tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == info.etag
            })
        };
        let modified = info.last_modified.timestamp();
        let failed = match &self.if_match {
            Some(condition) => !matches(condition),
            None => self
                .if_unmodified_since
                .is_some_and(|since| modified > since.timestamp()),
        };
        if failed {
            return Err(ApiError::new(
                http::StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!(
                    "the object's ETag is \"{}\" and it was last modified at {}: the request's condition does not hold",
                    info.etag, info.last_modified
                ),
            ));
        }
        let not_modified = match &self.if_none_match {
            Some(condition) => matches(condition),
            None => self
                .if_modified_since
                .is_some_and(|since| modified <= since.timestamp()),
        };
        if not_modified {
            return Err(ApiError::new(
                http::StatusCode::NOT_MODIFIED,
                "not_modified",
                "the object has not changed",
            ));
        }
        Ok(())
    }
}

/// A `Range` request, as HTTP and S3 express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-` or `bytes=first-last` (inclusive).
    From { first: u64, last: Option<u64> },
    /// `bytes=-length`: the last `length` bytes.
    Suffix { length: u64 },
}

impl ByteRange {
    /// Parses a `Range` header value (one range; S3 does not serve several either).
    pub fn parse(header: &str) -> ApiResult<Self> {
        let bad = || {
            ApiError::bad_request(
                "invalid_range",
                format!(
                    "Range {header:?} is not one of bytes=<first>-<last>, bytes=<first>- or bytes=-<length>"
                ),
            )
        };
        let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => Ok(Self::Suffix { length: num(b)? }),
            (false, true) => Ok(Self::From {
                first: num(a)?,
                last: None,
            }),
            (false, false) => {
                let (first, last) = (num(a)?, num(b)?);
                if last < first {
                    return Err(bad());
                }
                Ok(Self::From {
                    first,
                    last: Some(last),
                })
            }
            (true, true) => Err(bad()),
        }
    }

    /// The bytes this range selects from an object of `size` bytes.
    pub fn resolve(self, size: u64) -> ApiResult<Range<u64>> {
        let range = match self {
            Self::From { first, last } => {
                first..last.map_or(size, |l| l.saturating_add(1).min(size))
            }
            Self::Suffix { length } => size.saturating_sub(length)..size,
        };
        if range.start >= range.end {
            return Err(ApiError::bad_request(
                "range_not_satisfiable",
                format!("the range asks for bytes the object does not have (it is {size} bytes)"),
            ));
        }
        Ok(range)
    }
}

/// An object being read: its metadata, the bytes served, and the stream of them.
pub struct Download {
    pub info: ObjectInfo,
    pub range: Range<u64>,
    /// Whether a `Range` was asked for (206 rather than 200).
    pub partial: bool,
    pub body: ByteStream,
}

pub struct UploadInfo {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub struct PartInfo {
    pub part_number: u32,
    pub size: u64,
    pub etag: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// Where to copy from and what the copy's metadata is.
pub struct CopySource {
    pub bucket: String,
    pub key: String,
    /// None: keep the source's content type, metadata and headers (S3's `COPY` directive).
    pub replace_metadata: Option<NewObject>,
    /// None: keep the source's tags.
    pub replace_tags: Option<BTreeMap<String, String>>,
    /// The copy's canned ACL (as in S3, never the source's); None: private.
    pub acl: Option<String>,
    pub encryption_key: Option<String>,
    /// What must hold of the source (`x-amz-copy-source-if-*`); a failure is 412.
    pub conditions: ReadConditions,
    /// A version of the source other than its current one.
    pub version: Option<String>,
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::internal(format!("database: {e}"))
}

fn io_err(e: io::Error) -> ApiError {
    ApiError::internal(format!("object storage: {e}"))
}

fn no_bucket(name: &str) -> ApiError {
    ApiError::not_found("bucket_not_found", format!("no bucket named {name:?}"))
}

fn no_object(bucket: &str, key: &str) -> ApiError {
    ApiError::not_found(
        "object_not_found",
        format!("no object {key:?} in bucket {bucket:?}"),
    )
}

fn precondition_failed(bucket: &str, key: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!(
            "the write's condition (If-Match or If-None-Match) does not hold for {key:?} in bucket {bucket:?}; nothing was stored"
        ),
    )
}

/// A copy's conditions name its source; S3 answers 412 whichever way they fail (no 304).
fn source_condition_failed(e: ApiError, source: &CopySource) -> ApiError {
    if e.body().code == "not_modified" {
        precondition_failed(&source.bucket, &source.key)
    } else {
        e
    }
}

fn no_upload(id: &str) -> ApiError {
    ApiError::not_found(
        "upload_not_found",
        format!("no multipart upload {id:?} in progress (completed, aborted or never begun)"),
    )
}

impl Storage {
    pub async fn load(
        db: Db,
        blobs: BlobStore,
        envelope: Envelope,
        max_object_bytes: u64,
    ) -> Result<Self, sqlx::Error> {
        let buckets = store::list_buckets(&db)
            .await?
            .into_iter()
            .map(|b| (b.name.clone(), Arc::new(KnownBucket::new(b))))
            .collect();
        Ok(Self {
            db,
            blobs,
            envelope,
            max_object_bytes,
            garbage: Arc::default(),
            buckets: std::sync::RwLock::new(buckets),
            bucket_changes: Default::default(),
        })
    }

    /// Removes the files of replaced and deleted objects and parts, in batches, after the changes
    /// that listed them have committed (so readers that opened a file first keep reading it).
    pub fn spawn_collector(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let storage = self.clone();
        tokio::spawn(async move {
            loop {
                storage.garbage.notified().await;
                loop {
                    // While a backup holds the volume the garbage stays listed (in the database),
                    // so nothing its snapshot names is deleted before it is copied.
                    while storage.blobs.held() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    match store::take_garbage(&storage.db, GARBAGE_BATCH).await {
                        Ok(ids) => {
                            for id in &ids {
                                storage.blobs.remove(id).await;
                            }
                            if ids.len() < GARBAGE_BATCH as usize {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the garbage list failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        })
    }

    /// Removes what a crash or a dropped upload left behind; run at start, before serving.
    pub async fn sweep(&self) -> ApiResult<()> {
        let referenced = store::referenced_blobs(&self.db).await.map_err(db_err)?;
        let (temporary, orphans) = self.blobs.sweep(referenced).await.map_err(io_err)?;
        store::clear_garbage(&self.db).await.map_err(db_err)?;
        if temporary + orphans > 0 {
            tracing::info!(
                temporary,
                orphans,
                "removed the files of uploads that did not finish"
            );
        }
        Ok(())
    }

    // ---- buckets

    pub async fn create_bucket(
        &self,
        name: &str,
        default_key: Option<String>,
    ) -> ApiResult<Bucket> {
        check_bucket_name(name)?;
        if name == "api" {
            return Err(ApiError::bad_request(
                "invalid_bucket_name",
                "bucket name \"api\" is reserved: S3 paths under it would collide with this service's own API",
            ));
        }
        let default_key = default_key.filter(|k| !k.trim().is_empty());
        if let Some(key) = &default_key {
            self.envelope.check_key(key).await?;
        }
        let row = BucketRow {
            name: name.to_owned(),
            default_key,
            created_at: now_ms(),
            settings: "{}".to_owned(),
        };
        let _one_at_a_time = self.bucket_changes.lock().await;
        if !store::insert_bucket(&self.db, &row).await.map_err(db_err)? {
            return Err(ApiError::conflict(
                "bucket_exists",
                format!("a bucket named {name:?} exists already"),
            ));
        }
        self.buckets
            .write()
            .expect("buckets lock")
            .insert(row.name.clone(), Arc::new(KnownBucket::new(row.clone())));
        Ok(bucket_model(row))
    }

    pub fn list_buckets(&self) -> Vec<Bucket> {
        self.buckets
            .read()
            .expect("buckets lock")
            .values()
            .map(|b| bucket_model(b.row.clone()))
            .collect()
    }

    pub fn bucket(&self, name: &str) -> ApiResult<Bucket> {
        self.bucket_row(name).map(bucket_model)
    }

    fn bucket_row(&self, name: &str) -> ApiResult<BucketRow> {
        self.known_bucket(name).map(|b| b.row.clone())
    }

    /// Every bucket with its settings.
    pub fn known_buckets(&self) -> Vec<Arc<KnownBucket>> {
        self.buckets
            .read()
            .expect("buckets lock")
            .values()
            .cloned()
            .collect()
    }

    /// Deletes an object if it is still the version `seen` (a lifecycle rule decided on that one;
    /// a newer upload under the key is left alone). true: deleted.
    pub async fn expire_object(&self, seen: &ObjectInfo) -> ApiResult<bool> {
        // Under versioning an expiration is a delete: the version stays behind a delete marker.
        let mode = self.version_mode(&seen.bucket)?;
        let marker = new_version_id(mode).unwrap_or_else(|| store::NULL_VERSION.to_owned());
        let only_if = Some((seen.etag.as_str(), seen.last_modified.timestamp_millis()));
        let deleted =
            store::delete_object(&self.db, &seen.bucket, &seen.key, mode, &marker, only_if)
                .await
                .map_err(db_err)?;
        if deleted {
            self.garbage.notify_one();
        }
        Ok(deleted)
    }

    /// A bucket with its settings and access decisions.
    pub fn known_bucket(&self, name: &str) -> ApiResult<Arc<KnownBucket>> {
        self.buckets
            .read()
            .expect("buckets lock")
            .get(name)
            .cloned()
            .ok_or_else(|| no_bucket(name))
    }

    /// Changes a bucket's settings: `change` edits a copy, which is checked as a whole (a policy
    /// parses and names the bucket), stored, then served.
    pub async fn update_bucket_settings(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketSettings) -> ApiResult<()>,
    ) -> ApiResult<()> {
        let _one_at_a_time = self.bucket_changes.lock().await;
        let current = self.known_bucket(name)?;
        let mut settings = current.settings.clone();
        change(&mut settings)?;
        settings.access(name)?;
        let json = settings.to_json();
        if !store::set_bucket_settings(&self.db, name, &json)
            .await
            .map_err(db_err)?
        {
            return Err(no_bucket(name));
        }
        let row = BucketRow {
            settings: json,
            ..current.row.clone()
        };
        self.buckets
            .write()
            .expect("buckets lock")
            .insert(name.to_owned(), Arc::new(KnownBucket::new(row)));
        Ok(())
    }

    pub async fn delete_bucket(&self, name: &str) -> ApiResult<()> {
        let _one_at_a_time = self.bucket_changes.lock().await;
        match store::delete_bucket(&self.db, name).await.map_err(db_err)? {
            BucketDeletion::NotFound => Err(no_bucket(name)),
            BucketDeletion::NotEmpty { objects } => Err(ApiError::conflict(
                "bucket_not_empty",
                format!("bucket {name:?} still holds {objects} object(s); delete them first"),
            )),
            BucketDeletion::Deleted => {
                self.buckets.write().expect("buckets lock").remove(name);
                self.garbage.notify_one();
                Ok(())
            }
        }
    }

    // ---- objects

    /// Stores `body` as `bucket/key`. The previous version stays readable until the new one is
    /// complete and durable; an upload that fails or is cut off changes nothing.
    pub async fn put_object<S, E>(
        &self,
        bucket: &str,
        key: &str,
        new: NewObject,
        mut checks: WriteChecks,
        body: S,
    ) -> ApiResult<ObjectInfo>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let checked = async {
            check_key(key)?;
            check_new_object(&new)?;
            let expected_md5 = checks.expected_md5()?;
            let bucket_row = self.bucket_row(bucket)?;
            self.check_acl_allowed(bucket, new.acl.as_deref())?;
            let key_ref = new
                .encryption_key
                .clone()
                .filter(|k| !k.trim().is_empty())
                .or(bucket_row.default_key);
            let (seal, wrapped) = self.new_seal(key_ref.as_deref(), OBJECT_DOMAIN).await?;
            Ok((key_ref, seal, wrapped, expected_md5))
        };
        let (key_ref, seal, wrapped, expected_md5) = match checked.await {
            Ok(checked) => checked,
            Err(e) => return Err(refuse_upload(e, body).await),
        };
        let mut writer = self.blobs.create(seal).await.map_err(io_err)?;
        self.copy_body(&mut writer, body, checks.body_check.as_deref_mut())
            .await?;
        let blob = writer.finish().await.map_err(io_err)?;
        let checksum = match checks.body_check.take().map(BodyCheck::verdict).transpose() {
            Ok(checksum) => checksum.flatten(),
            Err(refusal) => {
                self.blobs.remove(&blob.id).await;
                return Err(refusal);
            }
        };
        if let Some(expected) = expected_md5
            && expected != blob.md5_hex
        {
            self.blobs.remove(&blob.id).await;
            return Err(ApiError::bad_request(
                "bad_digest",
                format!(
                    "the bytes received have MD5 {} but Content-MD5 says {expected}; nothing was stored",
                    blob.md5_hex
                ),
            ));
        }
        let mode = match self.version_mode(bucket) {
            Ok(mode) => mode,
            Err(e) => {
                self.blobs.remove(&blob.id).await;
                return Err(e);
            }
        };
        let mut row = object_row(
            bucket,
            key,
            &blob,
            blob.md5_hex.clone(),
            &new,
            key_ref,
            wrapped,
        )?;
        row.checksum = checksum;
        row.version_id = new_version_id(mode);
        self.commit_object(row, &checks.precondition, mode).await
    }

    async fn commit_object(
        &self,
        row: ObjectRow,
        precondition: &Precondition,
        mode: VersionMode,
    ) -> ApiResult<ObjectInfo> {
        let outcome = store::put_object(&self.db, &row, precondition, mode).await;
        if !matches!(outcome, Ok(PutOutcome::Done)) {
            self.blobs.remove(&row.blob_id).await;
        }
        match outcome.map_err(db_err)? {
            PutOutcome::Done => {
                self.garbage.notify_one();
                object_model(row)
            }
            PutOutcome::NoBucket => Err(no_bucket(&row.bucket)),
            PutOutcome::PreconditionFailed => Err(precondition_failed(
                &row.bucket,
                &String::from_utf8_lossy(&row.key),
            )),
        }
    }

    /// A new data key for an object under key_manager key `key_ref`, and its wrapped copy.
    async fn new_data_key(&self, key_ref: &str) -> ApiResult<(Arc<DataKey>, String)> {
        let (bytes, wrapped) = self
            .envelope
            .new_data_key(key_ref, &Default::default())
            .await?;
        Ok((
            Arc::new(
                DataKey::new(&bytes)
                    .ok_or_else(|| ApiError::internal("a data key is not 32 bytes"))?,
            ),
            wrapped,
        ))
    }

    async fn open_data_key(&self, key_ref: &str, wrapped: &str) -> ApiResult<Arc<DataKey>> {
        let bytes = self
            .envelope
            .open_data_key(key_ref, wrapped, &Default::default())
            .await?;
        Ok(Arc::new(DataKey::new(&bytes).ok_or_else(|| {
            ApiError::internal("a data key is not 32 bytes")
        })?))
    }

    async fn new_seal(
        &self,
        key_ref: Option<&str>,
        domain: u32,
    ) -> ApiResult<(Option<Seal>, Option<String>)> {
        match key_ref {
            None => Ok((None, None)),
            Some(key_ref) => {
                let (key, wrapped) = self.new_data_key(key_ref).await?;
                Ok((Some(Seal { key, domain }), Some(wrapped)))
            }
        }
    }

    async fn copy_body<S, E>(
        &self,
        writer: &mut BlobWriter,
        body: S,
        mut check: Option<&mut (dyn BodyCheck + 'static)>,
    ) -> ApiResult<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(
                    "upload_incomplete",
                    format!("the upload broke off before its end: {e}; nothing was stored"),
                )
            })?;
            if writer.size() + chunk.len() as u64 > self.max_object_bytes {
                return Err(ApiError::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "object_too_large",
                    format!("objects may be at most {} bytes", self.max_object_bytes),
                ));
            }
            if let Some(check) = check.as_deref_mut() {
                check.update(&chunk);
            }
            writer.write(&chunk).await.map_err(io_err)?;
        }
        Ok(())
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> ApiResult<ObjectInfo> {
        object_model(self.object_row(bucket, key, None).await?)
    }

    /// The key's current object, or the version asked for.
    async fn object_row(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> ApiResult<ObjectRow> {
        let found = match version {
            None => store::get_object(&self.db, bucket, key)
                .await
                .map_err(db_err)?,
            Some(version) => match store::get_version(&self.db, bucket, key, version)
                .await
                .map_err(db_err)?
            {
                Some(v) if v.delete_marker => {
                    return Err(ApiError::bad_request(
                        "delete_marker",
                        format!("version {version:?} of {key:?} is a delete marker"),
                    ));
                }
                Some(v) => v.object(),
                None => {
                    self.bucket_row(bucket)?;
                    return Err(ApiError::not_found(
                        "version_not_found",
                        format!("{key:?} has no version {version:?}"),
                    ));
                }
            },
        };
        match found {
            Some(row) => Ok(row),
            None => {
                self.bucket_row(bucket)?;
                Err(no_object(bucket, key))
            }
        }
    }

    /// An object's metadata (the current version or the one asked for), if `conditions` hold for it.
    pub async fn head_object_if(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        conditions: &ReadConditions,
    ) -> ApiResult<ObjectInfo> {
        let info = object_model(self.object_row(bucket, key, version).await?)?;
        conditions.check(&info)?;
        Ok(info)
    }

    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> ApiResult<Download> {
        self.get_object_if(bucket, key, None, range, &ReadConditions::default())
            .await
    }

    /// An object's bytes (or a range of them) — the current version or the one asked for — if
    /// `conditions` hold for the version served.
    pub async fn get_object_if(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
        conditions: &ReadConditions,
    ) -> ApiResult<Download> {
        // The row can be replaced between reading it and opening its file (an overwrite removes the
        // old file); then the new row is read once more.
        for attempt in 0..2 {
            let row = self.object_row(bucket, key, version).await?;
            conditions.check(&object_model(row.clone())?)?;
            let size = row.size as u64;
            let byte_range = match range {
                Some(r) => r.resolve(size)?,
                None => 0..size,
            };
            let seal = self
                .seal_of(&row.key_ref, &row.wrapped_key, OBJECT_DOMAIN)
                .await?;
            match self
                .blobs
                .read(&row.blob_id, size, byte_range.clone(), seal)
                .await
            {
                Ok(body) => {
                    return Ok(Download {
                        info: object_model(row)?,
                        range: byte_range,
                        partial: range.is_some(),
                        body,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt == 0 => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
        unreachable!("the loop returns")
    }

    async fn seal_of(
        &self,
        key_ref: &Option<String>,
        wrapped: &Option<String>,
        domain: u32,
    ) -> ApiResult<Option<Seal>> {
        match (key_ref, wrapped) {
            (Some(key_ref), Some(wrapped)) => Ok(Some(Seal {
                key: self.open_data_key(key_ref, wrapped).await?,
                domain,
            })),
            _ => Ok(None),
        }
    }

    /// Deletes a key's object: under versioning it is kept as an earlier version behind a new
    /// delete marker. `existed` false: there was none (S3 treats that as success, the API as 404).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> ApiResult<Deleted> {
        let mode = self.version_mode(bucket)?;
        let marker = new_version_id(mode).unwrap_or_else(|| store::NULL_VERSION.to_owned());
        let existed = store::delete_object(&self.db, bucket, key, mode, &marker, None)
            .await
            .map_err(db_err)?;
        if existed {
            self.garbage.notify_one();
        }
        Ok(Deleted {
            existed,
            delete_marker: (mode != VersionMode::Off).then_some(marker),
        })
    }

    /// Removes one version for good; the newest remaining one becomes current. None: there was no
    /// such version.
    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
    ) -> ApiResult<Option<VersionEntry>> {
        self.bucket_row(bucket)?;
        let removed = store::delete_version(&self.db, bucket, key, version)
            .await
            .map_err(db_err)?;
        self.garbage.notify_one();
        removed.map(|v| version_entry(&v, false)).transpose()
    }

    /// How the bucket's writes treat versions.
    fn version_mode(&self, bucket: &str) -> ApiResult<VersionMode> {
        Ok(
            match self.known_bucket(bucket)?.settings.versioning.as_deref() {
                Some("Enabled") => VersionMode::Enabled,
                Some("Suspended") => VersionMode::Suspended,
                _ => VersionMode::Off,
            },
        )
    }

    /// Deletes earlier versions under `prefix` (and carrying `tags`) that stopped being current
    /// before `before`; how many.
    pub async fn expire_noncurrent(
        &self,
        bucket: &str,
        prefix: &str,
        tags: &BTreeMap<String, String>,
        before: chrono::DateTime<chrono::Utc>,
    ) -> ApiResult<usize> {
        let upper = prefix_upper_bound(prefix.as_bytes());
        let mut expired = 0;
        loop {
            let rows = store::noncurrent_versions(
                &self.db,
                bucket,
                prefix.as_bytes(),
                upper.as_deref(),
                before.timestamp_millis(),
                GARBAGE_BATCH,
            )
            .await
            .map_err(db_err)?;
            let mut removed_any = false;
            for row in &rows {
                let row_tags: BTreeMap<String, String> =
                    serde_json::from_str(&row.tags).unwrap_or_default();
                if !tags.iter().all(|(k, v)| row_tags.get(k) == Some(v)) {
                    continue;
                }
                let key = String::from_utf8(row.key.clone()).map_err(ApiError::internal)?;
                if store::delete_version(&self.db, bucket, &key, &row.version_id)
                    .await
                    .map_err(db_err)?
                    .is_some()
                {
                    expired += 1;
                    removed_any = true;
                }
            }
            if rows.len() < GARBAGE_BATCH as usize || !removed_any {
                break;
            }
        }
        if expired > 0 {
            self.garbage.notify_one();
        }
        Ok(expired)
    }

    /// A page of every version of `bucket`'s keys under `prefix`, keys in order and each key's
    /// newest first, after (`key_marker`, `version_marker`). With a delimiter, keys that have it
    /// after the prefix are rolled up into one common prefix each (as in listings).
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
        page_size: u32,
    ) -> ApiResult<VersionPage> {
        self.bucket_row(bucket)?;
        let page_size = page_size.clamp(1, MAX_PAGE) as usize;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let key_marker = key_marker.filter(|m| !m.is_empty());
        let upper = prefix_upper_bound(prefix.as_bytes());
        let mut items: Vec<VersionItem> = Vec::new();
        let mut from = prefix.as_bytes().to_vec();
        if let Some(marker) = key_marker {
            if let Some(version) = version_marker.filter(|v| !v.is_empty()) {
                // The rest of the marker's key, after its marker version.
                let key_end = successor_of_key(marker.as_bytes());
                let rows = store::versions_in_range(
                    &self.db,
                    bucket,
                    marker.as_bytes(),
                    Some(&key_end),
                    u32::MAX,
                )
                .await
                .map_err(db_err)?;
                let after = rows
                    .iter()
                    .position(|r| r.version_id == version)
                    .map_or(rows.len(), |at| at + 1);
                for (i, row) in rows.iter().enumerate().skip(after) {
                    if row.key.starts_with(prefix.as_bytes()) {
                        items.push(VersionItem::Version(version_entry(row, i == 0)?));
                    }
                }
            }
            from = from.max(successor_of_key(marker.as_bytes()));
        }
        // Rows come key by key; a roll-up jumps past its prefix and reads on from there.
        'pages: while items.len() <= page_size {
            let left = page_size + 1 - items.len();
            let rows =
                store::versions_in_range(&self.db, bucket, &from, upper.as_deref(), left as u32)
                    .await
                    .map_err(db_err)?;
            let mut previous_key: Option<Vec<u8>> = None;
            for row in &rows {
                let key = String::from_utf8(row.key.clone()).map_err(ApiError::internal)?;
                if let Some(d) = delimiter
                    && let Some(at) = key[prefix.len()..].find(d)
                {
                    let common = key[..prefix.len() + at + d.len()].to_owned();
                    let next = prefix_upper_bound(common.as_bytes());
                    // A marker naming the common prefix itself was a page's end: not again.
                    if key_marker.is_none_or(|m| common.as_str() > m) {
                        items.push(VersionItem::Prefix(common));
                    }
                    match next {
                        Some(next) => from = next,
                        None => break 'pages,
                    }
                    continue 'pages;
                }
                let newest = previous_key.as_deref() != Some(&row.key[..]);
                previous_key = Some(row.key.clone());
                items.push(VersionItem::Version(version_entry(row, newest)?));
            }
            break;
        }
        let truncated = items.len() > page_size;
        items.truncate(page_size);
        let next = truncated
            .then(|| match items.last() {
                Some(VersionItem::Version(e)) => Some((e.key.clone(), Some(e.version_id.clone()))),
                Some(VersionItem::Prefix(p)) => Some((p.clone(), None)),
                None => None,
            })
            .flatten();
        let (mut entries, mut common_prefixes) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                VersionItem::Version(e) => entries.push(e),
                VersionItem::Prefix(p) => common_prefixes.push(p),
            }
        }
        Ok(VersionPage {
            entries,
            common_prefixes,
            next,
        })
    }

    /// A page of `bucket`'s keys starting with `prefix`, in byte order. With a delimiter, keys that
    /// have it after the prefix are rolled up into one common prefix each. `start_after` (S3's) and
    /// `continuation_token` (from the previous page) say where to begin.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        continuation_token: Option<&str>,
        page_size: u32,
    ) -> ApiResult<ObjectList> {
        self.bucket_row(bucket)?;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let page_size = page_size.clamp(1, MAX_PAGE);
        // `from` is the smallest key still to consider; `upper` bounds the prefix's range.
        let mut from: Vec<u8> = prefix.as_bytes().to_vec();
        if let Some(after) = start_after {
            from = from.max(successor_of_key(after.as_bytes()));
        }
        if let Some(token) = continuation_token {
            let decoded = URL_SAFE_NO_PAD.decode(token).map_err(|_| {
                ApiError::bad_request(
                    "invalid_continuation_token",
                    "the continuation token is not one this service gave out",
                )
            })?;
            from = from.max(decoded);
        }
        let upper = prefix_upper_bound(prefix.as_bytes());

        let mut objects = Vec::new();
        let mut common_prefixes: Vec<String> = Vec::new();
        let mut more = false;
        'pages: loop {
            let left = page_size as usize - objects.len() - common_prefixes.len();
            let rows =
                store::objects_in_range(&self.db, bucket, &from, upper.as_deref(), left as u32 + 1)
                    .await
                    .map_err(db_err)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                if objects.len() + common_prefixes.len() == page_size as usize {
                    more = true;
                    break 'pages;
                }
                let key = String::from_utf8(row.key.clone()).map_err(ApiError::internal)?;
                if let Some(d) = delimiter {
                    if let Some(at) = key[prefix.len()..].find(d) {
                        let common = &key[..prefix.len() + at + d.len()];
                        // A marker may name a common prefix itself (ListObjects' NextMarker does):
                        // what rolls up into it was listed on an earlier page.
                        if start_after.is_none_or(|after| common > after) {
                            common_prefixes.push(common.to_owned());
                        }
                        match prefix_upper_bound(common.as_bytes()) {
                            Some(next) => from = next,
                            None => break 'pages,
                        }
                        continue 'pages;
                    }
                }
                from = successor_of_key(&row.key);
                objects.push(object_model(row)?);
            }
        }
        Ok(ObjectList {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            delimiter: delimiter.map(str::to_owned),
            objects,
            common_prefixes,
            next_continuation_token: more.then(|| URL_SAFE_NO_PAD.encode(&from)),
        })
    }

    /// Copies an object (re-encrypting under the destination's key when it has one).
    pub async fn copy_object(
        &self,
        source: CopySource,
        bucket: &str,
        key: &str,
    ) -> ApiResult<ObjectInfo> {
        check_key(key)?;
        let download = self
            .get_object_if(
                &source.bucket,
                &source.key,
                source.version.as_deref(),
                None,
                &source.conditions,
            )
            .await
            .map_err(|e| source_condition_failed(e, &source))?;
        let onto_itself = source.bucket == bucket && source.key == key && source.version.is_none();
        if onto_itself
            && source.replace_metadata.is_none()
            && source.replace_tags.is_none()
            && source.encryption_key.is_none()
        {
            return Err(ApiError::bad_request(
                "copy_onto_itself",
                "copying an object onto itself must change something: replace its metadata (MetadataDirective REPLACE), its tags or its encryption key",
            ));
        }
        let info = &download.info;
        let mut new = match source.replace_metadata {
            Some(new) => new,
            None => NewObject {
                content_type: Some(info.content_type.clone()),
                metadata: info.metadata.clone(),
                headers: info.headers.clone(),
                ..Default::default()
            },
        };
        new.tags = source.replace_tags.unwrap_or_else(|| info.tags.clone());
        new.acl = source.acl;
        // As in S3: unless the copy names a key, the destination bucket's default applies.
        new.encryption_key = source.encryption_key;
        self.put_object(bucket, key, new, WriteChecks::default(), download.body)
            .await
    }

    // ---- tags

    pub async fn object_tags(
        &self,
        bucket: &str,
        key: &str,
    ) -> ApiResult<BTreeMap<String, String>> {
        Ok(self.head_object(bucket, key).await?.tags)
    }

    /// Replaces an object's tags (an empty set deletes them).
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        check_tags(&tags)?;
        let json = serde_json::to_string(&tags).map_err(ApiError::internal)?;
        if !store::set_object_tags(&self.db, bucket, key, &json)
            .await
            .map_err(db_err)?
        {
            self.bucket_row(bucket)?;
            return Err(no_object(bucket, key));
        }
        Ok(())
    }

    // ---- object ACLs

    /// The canned ACL of the key's current object or of the version asked for (None: private).
    pub async fn object_acl(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> ApiResult<Option<String>> {
        Ok(self.object_row(bucket, key, version).await?.acl)
    }

    /// Replaces the canned ACL of the key's current object or of a version ("private": None).
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        acl: &str,
    ) -> ApiResult<()> {
        policy::check_object_acl(acl)?;
        self.check_acl_allowed(bucket, Some(acl))?;
        let acl = (acl != "private").then_some(acl);
        if !store::set_object_acl(&self.db, bucket, key, version, acl)
            .await
            .map_err(db_err)?
        {
            // The precise refusal: no bucket, no object, no such version or a delete marker.
            self.object_row(bucket, key, version).await?;
            return Err(no_object(bucket, key));
        }
        Ok(())
    }

    /// A bucket whose public access block has BlockPublicAcls refuses public ACLs on its objects.
    fn check_acl_allowed(&self, bucket: &str, acl: Option<&str>) -> ApiResult<()> {
        let blocked = self
            .known_bucket(bucket)?
            .settings
            .public_access_block
            .is_some_and(|b| b.block_public_acls);
        if blocked && acl.is_some_and(policy::is_public_acl) {
            return Err(ApiError::forbidden(
                "public_access_blocked",
                "the bucket's public access block refuses a public ACL; change the block first",
            ));
        }
        Ok(())
    }

    // ---- multipart uploads

    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        new: NewObject,
    ) -> ApiResult<UploadInfo> {
        check_key(key)?;
        check_new_object(&new)?;
        let bucket_row = self.bucket_row(bucket)?;
        self.check_acl_allowed(bucket, new.acl.as_deref())?;
        let key_ref = new
            .encryption_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .or(bucket_row.default_key);
        let wrapped = match &key_ref {
            Some(k) => Some(self.new_data_key(k).await?.1),
            None => None,
        };
        let row = UploadRow {
            id: uuid::Uuid::new_v4().simple().to_string(),
            bucket: bucket.to_owned(),
            key: key.as_bytes().to_vec(),
            content_type: new
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            metadata: serde_json::to_string(&new.metadata).map_err(ApiError::internal)?,
            key_ref,
            wrapped_key: wrapped,
            created_at: now_ms(),
            headers: serde_json::to_string(&new.headers).map_err(ApiError::internal)?,
            tags: serde_json::to_string(&new.tags).map_err(ApiError::internal)?,
            acl: new.acl,
        };
        store::insert_upload(&self.db, &row).await.map_err(db_err)?;
        Ok(UploadInfo {
            upload_id: row.id,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            created_at: ts(row.created_at),
        })
    }

    async fn upload_row(&self, bucket: &str, key: &str, upload_id: &str) -> ApiResult<UploadRow> {
        match store::get_upload(&self.db, upload_id)
            .await
            .map_err(db_err)?
        {
            Some(row) if row.bucket == bucket && row.key == key.as_bytes() => Ok(row),
            _ => Err(no_upload(upload_id)),
        }
    }

    /// Stores one part, if `check` (when given) accepts its bytes; returns its ETag (the MD5 of its bytes).
    pub async fn upload_part<S, E>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        mut check: Option<Box<dyn BodyCheck>>,
        body: S,
    ) -> ApiResult<String>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let checked = async {
            if !(1..=MAX_PART_NUMBER).contains(&part_number) {
                return Err(ApiError::bad_request(
                    "invalid_part_number",
                    format!("part numbers are 1 to {MAX_PART_NUMBER}"),
                ));
            }
            let upload = self.upload_row(bucket, key, upload_id).await?;
            self.seal_of(&upload.key_ref, &upload.wrapped_key, part_number)
                .await
        };
        let seal = match checked.await {
            Ok(seal) => seal,
            Err(e) => return Err(refuse_upload(e, body).await),
        };
        let mut writer = self.blobs.create(seal).await.map_err(io_err)?;
        self.copy_body(&mut writer, body, check.as_deref_mut())
            .await?;
        let blob = writer.finish().await.map_err(io_err)?;
        if let Some(Err(refusal)) = check.map(BodyCheck::verdict) {
            self.blobs.remove(&blob.id).await;
            return Err(refusal);
        }
        let row = PartRow {
            upload_id: upload_id.to_owned(),
            part_number: part_number.into(),
            blob_id: blob.id.clone(),
            size: blob.size as i64,
            md5: blob.md5_hex.clone(),
            created_at: now_ms(),
        };
        match store::put_part(&self.db, &row).await {
            Ok(true) => {
                self.garbage.notify_one();
                Ok(blob.md5_hex)
            }
            Ok(false) => {
                self.blobs.remove(&blob.id).await;
                Err(no_upload(upload_id))
            }
            Err(e) => {
                self.blobs.remove(&blob.id).await;
                Err(db_err(e))
            }
        }
    }

    /// Stores one part copied from (a range of) an existing object (S3's UploadPartCopy).
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source: &CopySource,
        range: Option<ByteRange>,
    ) -> ApiResult<PartInfo> {
        self.upload_row(bucket, key, upload_id).await?;
        let download = self
            .get_object_if(
                &source.bucket,
                &source.key,
                source.version.as_deref(),
                range,
                &source.conditions,
            )
            .await
            .map_err(|e| source_condition_failed(e, source))?;
        let size = download.range.end - download.range.start;
        let etag = self
            .upload_part(bucket, key, upload_id, part_number, None, download.body)
            .await?;
        Ok(PartInfo {
            part_number,
            size,
            etag,
            last_modified: chrono::Utc::now(),
        })
    }

    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ApiResult<Vec<PartInfo>> {
        self.upload_row(bucket, key, upload_id).await?;
        let parts = store::list_parts(&self.db, upload_id)
            .await
            .map_err(db_err)?;
        Ok(parts
            .into_iter()
            .map(|p| PartInfo {
                part_number: p.part_number as u32,
                size: p.size as u64,
                etag: p.md5,
                last_modified: ts(p.created_at),
            })
            .collect())
    }

    pub async fn list_uploads(&self, bucket: &str) -> ApiResult<Vec<UploadInfo>> {
        self.bucket_row(bucket)?;
        let rows = store::list_uploads(&self.db, bucket)
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                let key = String::from_utf8(r.key).map_err(ApiError::internal)?;
                Ok(UploadInfo {
                    upload_id: r.id,
                    bucket: r.bucket,
                    key,
                    created_at: ts(r.created_at),
                })
            })
            .collect()
    }

    /// Joins the named parts, in order, into the object; the key's previous version stays until
    /// the joined object is durable.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        precondition: &Precondition,
    ) -> ApiResult<ObjectInfo> {
        let upload = self.upload_row(bucket, key, upload_id).await?;
        if parts.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_part_list",
                "name at least one part to complete an upload",
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ApiError::bad_request(
                "invalid_part_order",
                "list the parts in ascending part-number order, each once",
            ));
        }
        let stored: BTreeMap<u32, PartRow> = store::list_parts(&self.db, upload_id)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|p| (p.part_number as u32, p))
            .collect();
        let mut chosen = Vec::with_capacity(parts.len());
        for (number, etag) in parts {
            let part = stored.get(number).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_part",
                    format!("part {number} was not uploaded (or was replaced)"),
                )
            })?;
            if etag.trim_matches('"') != part.md5 {
                return Err(ApiError::bad_request(
                    "invalid_part",
                    format!(
                        "part {number}'s ETag is {:?}, not {etag:?}: upload it again or name its current ETag",
                        part.md5
                    ),
                ));
            }
            chosen.push(part.clone());
        }
        let all_but_last = &chosen[..chosen.len() - 1];
        if let Some(small) = all_but_last
            .iter()
            .find(|p| (p.size as u64) < MIN_PART_BYTES)
        {
            return Err(ApiError::bad_request(
                "part_too_small",
                format!(
                    "part {} is {} bytes: every part but the last must be at least {MIN_PART_BYTES} bytes (5 MiB)",
                    small.part_number, small.size
                ),
            ));
        }

        let data_key = match (&upload.key_ref, &upload.wrapped_key) {
            (Some(k), Some(w)) => Some(self.open_data_key(k, w).await?),
            _ => None,
        };
        let seal_for = |domain| data_key.clone().map(|key| Seal { key, domain });
        let mut writer = self
            .blobs
            .create(seal_for(OBJECT_DOMAIN))
            .await
            .map_err(io_err)?;
        let mut md5s = Md5::new();
        for part in &chosen {
            let size = part.size as u64;
            let body = self
                .blobs
                .read(
                    &part.blob_id,
                    size,
                    0..size,
                    seal_for(part.part_number as u32),
                )
                .await
                .map_err(io_err)?;
            self.copy_body(&mut writer, body, None).await?;
            md5s.update(decode_hex(&part.md5)?);
        }
        let blob = writer.finish().await.map_err(io_err)?;
        let etag = format!("{}-{}", hex(&md5s.finalize()), chosen.len());
        let new = NewObject {
            content_type: Some(upload.content_type.clone()),
            metadata: serde_json::from_str(&upload.metadata).map_err(ApiError::internal)?,
            headers: serde_json::from_str(&upload.headers).map_err(ApiError::internal)?,
            tags: serde_json::from_str(&upload.tags).map_err(ApiError::internal)?,
            encryption_key: None,
            acl: upload.acl.clone(),
        };
        let mode = self.version_mode(bucket)?;
        let mut row = object_row(
            bucket,
            key,
            &blob,
            etag,
            &new,
            upload.key_ref.clone(),
            upload.wrapped_key.clone(),
        )?;
        row.version_id = new_version_id(mode);
        match store::complete_upload(&self.db, upload_id, &row, precondition, mode).await {
            Ok(UploadFinished::Done) => {
                self.garbage.notify_one();
                object_model(row)
            }
            Ok(UploadFinished::NoUpload) => {
                self.blobs.remove(&blob.id).await;
                Err(no_upload(upload_id))
            }
            Ok(UploadFinished::NoBucket) => {
                self.blobs.remove(&blob.id).await;
                Err(no_bucket(bucket))
            }
            Ok(UploadFinished::PreconditionFailed) => {
                self.blobs.remove(&blob.id).await;
                Err(precondition_failed(bucket, key))
            }
            Err(e) => {
                self.blobs.remove(&blob.id).await;
                Err(db_err(e))
            }
        }
    }

    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> ApiResult<()> {
        self.upload_row(bucket, key, upload_id).await?;
        if !store::abort_upload(&self.db, upload_id)
            .await
            .map_err(db_err)?
        {
            return Err(no_upload(upload_id));
        }
        self.garbage.notify_one();
        Ok(())
    }
}

/// The most of a refused upload's body read (and dropped) before answering.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads a refused upload's body (up to [`DRAIN_LIMIT`]) before the refusal is sent. A server
/// that answers and closes with request bytes still unread makes the kernel reset the connection,
/// and the client can lose the answer with it (seen: boto3 got a bare 400 with no S3 error code).
/// Past the limit the connection is closed anyway: no point reading gigabytes to say no.
pub async fn refuse_upload<T, S, E>(refusal: T, body: S) -> T
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut body = std::pin::pin!(body);
    let mut read = 0;
    while read <= DRAIN_LIMIT {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
    refusal
}

fn decode_hex(s: &str) -> ApiResult<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16).map_err(ApiError::internal)
        })
        .collect()
}

/// The smallest byte string greater than `key` (the next possible key).
fn successor_of_key(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// The smallest byte string greater than every string beginning with `prefix`; None: there is none
/// (empty prefix, or all 0xFF, which UTF-8 never has).
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < 0xFF {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

fn object_row(
    bucket: &str,
    key: &str,
    blob: &WrittenBlob,
    etag: String,
    new: &NewObject,
    key_ref: Option<String>,
    wrapped_key: Option<String>,
) -> ApiResult<ObjectRow> {
    Ok(ObjectRow {
        bucket: bucket.to_owned(),
        key: key.as_bytes().to_vec(),
        blob_id: blob.id.clone(),
        size: blob.size as i64,
        etag,
        content_type: new
            .content_type
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        metadata: serde_json::to_string(&new.metadata).map_err(ApiError::internal)?,
        key_ref,
        wrapped_key,
        created_at: now_ms(),
        headers: serde_json::to_string(&new.headers).map_err(ApiError::internal)?,
        tags: serde_json::to_string(&new.tags).map_err(ApiError::internal)?,
        checksum: None,
        version_id: None,
        acl: new.acl.clone(),
    })
}

fn check_new_object(new: &NewObject) -> ApiResult<()> {
    check_metadata(&new.metadata)?;
    check_headers(&new.headers)?;
    check_tags(&new.tags)?;
    new.acl.as_deref().map_or(Ok(()), policy::check_object_acl)
}

fn bucket_model(row: BucketRow) -> Bucket {
    Bucket {
        name: row.name,
        default_encryption_key: row.default_key,
        created_at: ts(row.created_at),
    }
}

fn object_model(row: ObjectRow) -> ApiResult<ObjectInfo> {
    Ok(ObjectInfo {
        key: String::from_utf8(row.key).map_err(ApiError::internal)?,
        bucket: row.bucket,
        size: row.size as u64,
        etag: row.etag,
        content_type: row.content_type,
        metadata: serde_json::from_str(&row.metadata).map_err(ApiError::internal)?,
        encryption_key: row.key_ref,
        last_modified: ts(row.created_at),
        headers: serde_json::from_str(&row.headers).map_err(ApiError::internal)?,
        tags: serde_json::from_str(&row.tags).map_err(ApiError::internal)?,
        checksum: row.checksum,
        version_id: row.version_id,
        acl: row.acl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            ByteRange::parse("bytes=0-9").unwrap().resolve(100).unwrap(),
            0..10
        );
        assert_eq!(
            ByteRange::parse("bytes=90-").unwrap().resolve(100).unwrap(),
            90..100
        );
        assert_eq!(
            ByteRange::parse("bytes=-10").unwrap().resolve(100).unwrap(),
            90..100
        );
        assert_eq!(
            ByteRange::parse("bytes=-1000")
                .unwrap()
                .resolve(100)
                .unwrap(),
            0..100
        );
        assert_eq!(
            ByteRange::parse("bytes=95-1000")
                .unwrap()
                .resolve(100)
                .unwrap(),
            95..100
        );
        assert!(
            ByteRange::parse("bytes=100-")
                .unwrap()
                .resolve(100)
                .is_err()
        );
        assert!(ByteRange::parse("bytes=0-0").unwrap().resolve(0).is_err());
        for bad in ["0-9", "bytes=9-0", "bytes=-", "bytes=a-b", "items=0-1"] {
            assert!(ByteRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_bounds() {
        assert_eq!(prefix_upper_bound(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_upper_bound(b""), None);
        assert_eq!(prefix_upper_bound(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(successor_of_key(b"a"), b"a\0".to_vec());
    }
}
