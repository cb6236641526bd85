//! storage_manager's repositories (SQL only). Object keys are bound as bytes (see the migration).

use std::collections::HashSet;

use aerekos_common::db::{Db, DbResult};
use sqlx::FromRow;

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, FromRow)]
pub struct BucketRow {
    pub name: String,
    pub default_key: Option<String>,
    pub created_at: i64,
    /// `BucketSettings` as JSON.
    pub settings: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct ObjectRow {
    pub bucket: String,
    pub key: Vec<u8>,
    pub blob_id: String,
    pub size: i64,
    pub etag: String,
    pub content_type: String,
    pub metadata: String,
    pub key_ref: Option<String>,
    pub wrapped_key: Option<String>,
    pub created_at: i64,
    /// Cache-Control and the other stored HTTP headers, a JSON object.
    pub headers: String,
    /// The object's tags, a JSON object.
    pub tags: String,
    /// `<ALGORITHM>:<base64>` of the checksum the upload was verified against.
    pub checksum: Option<String>,
    /// None: the "null" version (written while the bucket's versioning was off or suspended).
    pub version_id: Option<String>,
    /// The object's canned ACL; None: private.
    pub acl: Option<String>,
}

/// A version kept in `object_versions`: an earlier version of a key, or a delete marker.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub seq: i64,
    pub bucket: String,
    pub key: Vec<u8>,
    pub version_id: String,
    pub delete_marker: bool,
    pub blob_id: Option<String>,
    pub size: i64,
    pub etag: String,
    pub content_type: String,
    pub metadata: String,
    pub key_ref: Option<String>,
    pub wrapped_key: Option<String>,
    pub created_at: i64,
    pub headers: String,
    pub tags: String,
    pub checksum: Option<String>,
    pub acl: Option<String>,
}

impl VersionRow {
    /// A key's current object as a version (`seq` highest, as `versions_in_range` lists it).
    fn current(row: ObjectRow) -> Self {
        Self {
            seq: i64::MAX,
            bucket: row.bucket,
            key: row.key,
            version_id: row.version_id.unwrap_or_else(|| NULL_VERSION.to_owned()),
            delete_marker: false,
            blob_id: Some(row.blob_id),
            size: row.size,
            etag: row.etag,
            content_type: row.content_type,
            metadata: row.metadata,
            key_ref: row.key_ref,
            wrapped_key: row.wrapped_key,
            created_at: row.created_at,
            headers: row.headers,
            tags: row.tags,
            checksum: row.checksum,
            acl: row.acl,
        }
    }

    /// The version as an object row (None for a delete marker).
    pub fn object(&self) -> Option<ObjectRow> {
        Some(ObjectRow {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            blob_id: self.blob_id.clone()?,
            size: self.size,
            etag: self.etag.clone(),
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            key_ref: self.key_ref.clone(),
            wrapped_key: self.wrapped_key.clone(),
            created_at: self.created_at,
            headers: self.headers.clone(),
            tags: self.tags.clone(),
            checksum: self.checksum.clone(),
            version_id: (self.version_id != NULL_VERSION).then(|| self.version_id.clone()),
            acl: self.acl.clone(),
        })
    }
}

/// How S3 names the version written while versioning was off or suspended.
pub const NULL_VERSION: &str = "null";

/// A bucket's versioning, as writes apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionMode {
    /// Never enabled: a write replaces the key's object.
    Off,
    /// Every write makes a new version; the one it replaces is kept.
    Enabled,
    /// Writes make the null version (replacing the earlier null version); other versions are kept.
    Suspended,
}

#[derive(Debug, Clone, FromRow)]
pub struct UploadRow {
    pub id: String,
    pub bucket: String,
    pub key: Vec<u8>,
    pub content_type: String,
    pub metadata: String,
    pub key_ref: Option<String>,
    pub wrapped_key: Option<String>,
    pub created_at: i64,
    pub headers: String,
    pub tags: String,
    pub acl: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct PartRow {
    pub upload_id: String,
    pub part_number: i64,
    pub blob_id: String,
    pub size: i64,
    pub md5: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct AccessKeyRow {
    pub id: String,
    pub secret: String,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// `KeyScopes` as a JSON list; empty: everything.
    pub scopes: String,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

// ---- buckets

/// false: a bucket of that name exists.
pub async fn insert_bucket(db: &Db, row: &BucketRow) -> DbResult<bool> {
    let result =
        sqlx::query("INSERT INTO buckets (name, default_key, created_at) VALUES (?, ?, ?)")
            .bind(&row.name)
            .bind(&row.default_key)
            .bind(row.created_at)
            .execute(&db.write)
            .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces a bucket's settings document. false: no such bucket.
pub async fn set_bucket_settings(db: &Db, name: &str, settings: &str) -> DbResult<bool> {
    let done = sqlx::query("UPDATE buckets SET settings = ? WHERE name = ?")
        .bind(settings)
        .bind(name)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn list_buckets(db: &Db) -> DbResult<Vec<BucketRow>> {
    sqlx::query_as("SELECT * FROM buckets ORDER BY name")
        .fetch_all(&db.read)
        .await
}

pub enum BucketDeletion {
    Deleted,
    NotFound,
    NotEmpty { objects: i64 },
}

/// Deletes an empty bucket and any unfinished multipart uploads in it, in one transaction (their
/// parts' blobs go to `garbage`).
pub async fn delete_bucket(db: &Db, name: &str) -> DbResult<BucketDeletion> {
    let mut tx = db.write.begin().await?;
    if sqlx::query("SELECT 1 FROM buckets WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .is_none()
    {
        return Ok(BucketDeletion::NotFound);
    }
    // Earlier versions and delete markers count: S3 deletes only a bucket with no version left.
    let objects: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM objects WHERE bucket = ?1) + (SELECT COUNT(*) FROM object_versions WHERE bucket = ?1)",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if objects > 0 {
        return Ok(BucketDeletion::NotEmpty { objects });
    }
    sqlx::query("DELETE FROM uploads WHERE bucket = ?")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM buckets WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(BucketDeletion::Deleted)
}

// ---- objects

pub async fn get_object(db: &Db, bucket: &str, key: &str) -> DbResult<Option<ObjectRow>> {
    sqlx::query_as("SELECT * FROM objects WHERE bucket = ? AND key = ?")
        .bind(bucket)
        .bind(key.as_bytes())
        .fetch_optional(&db.read)
        .await
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

const UPSERT_OBJECT: &str = "INSERT INTO objects (bucket, key, blob_id, size, etag, content_type, metadata, key_ref, wrapped_key, created_at, headers, tags, checksum, version_id, acl) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (bucket, key) DO UPDATE SET blob_id = excluded.blob_id, size = excluded.size, etag = excluded.etag, \
     content_type = excluded.content_type, metadata = excluded.metadata, key_ref = excluded.key_ref, \
     wrapped_key = excluded.wrapped_key, created_at = excluded.created_at, headers = excluded.headers, tags = excluded.tags, \
     checksum = excluded.checksum, version_id = excluded.version_id, acl = excluded.acl";

fn upsert_object(
    row: &ObjectRow,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    sqlx::query(UPSERT_OBJECT)
        .bind(&row.bucket)
        .bind(&row.key)
        .bind(&row.blob_id)
        .bind(row.size)
        .bind(&row.etag)
        .bind(&row.content_type)
        .bind(&row.metadata)
        .bind(&row.key_ref)
        .bind(&row.wrapped_key)
        .bind(row.created_at)
        .bind(&row.headers)
        .bind(&row.tags)
        .bind(&row.checksum)
        .bind(&row.version_id)
        .bind(&row.acl)
}

/// Before a key's current object is replaced or removed under versioning: keeps it as an earlier
/// version (Enabled: always; Suspended: unless it is the null version, which is replaced), and
/// under Suspended drops the earlier null version the new one replaces.
async fn archive_current(
    tx: &mut sqlx::SqliteConnection,
    bucket: &str,
    key: &[u8],
    mode: VersionMode,
) -> DbResult<()> {
    if mode == VersionMode::Off {
        return Ok(());
    }
    if mode == VersionMode::Suspended {
        sqlx::query("DELETE FROM object_versions WHERE bucket = ? AND key = ? AND version_id = ?")
            .bind(bucket)
            .bind(key)
            .bind(NULL_VERSION)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO object_versions (bucket, key, version_id, delete_marker, blob_id, size, etag, content_type, metadata, key_ref, \
         wrapped_key, created_at, headers, tags, checksum, acl, archived_at) \
         SELECT bucket, key, COALESCE(version_id, ?), 0, blob_id, size, etag, content_type, metadata, key_ref, wrapped_key, created_at, \
         headers, tags, checksum, acl, ? FROM objects WHERE bucket = ? AND key = ? AND (? OR version_id IS NOT NULL)",
    )
    .bind(NULL_VERSION)
    .bind(aerekos_common::db::now_ms())
    .bind(bucket)
    .bind(key)
    .bind(mode == VersionMode::Enabled)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// After a key's current version was removed: the newest earlier version becomes current again,
/// unless it is a delete marker (then the key stays deleted).
async fn restore_newest(tx: &mut sqlx::SqliteConnection, bucket: &str, key: &[u8]) -> DbResult<()> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM objects WHERE bucket = ? AND key = ?")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    if current.is_some() {
        return Ok(());
    }
    let newest: Option<VersionRow> = sqlx::query_as(
        "SELECT * FROM object_versions WHERE bucket = ? AND key = ? ORDER BY seq DESC LIMIT 1",
    )
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = newest.as_ref().and_then(VersionRow::object) {
        upsert_object(&row).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM object_versions WHERE seq = ?")
            .bind(newest.map(|n| n.seq))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// What must hold of a key's current object for a write to replace it (S3's conditional writes:
/// `If-None-Match: *` and `If-Match: <etag>`), checked in the write's own transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    /// There is no object at the key.
    Absent,
    /// The object at the key has this ETag (unquoted).
    ETag(String),
}

pub enum PutOutcome {
    Done,
    NoBucket,
    PreconditionFailed,
}

/// Whether the key's current object satisfies `precondition`, read inside the write's transaction.
async fn precondition_holds(
    tx: &mut sqlx::SqliteConnection,
    row: &ObjectRow,
    precondition: &Precondition,
) -> DbResult<bool> {
    if *precondition == Precondition::None {
        return Ok(true);
    }
    let current: Option<String> =
        sqlx::query_scalar("SELECT etag FROM objects WHERE bucket = ? AND key = ?")
            .bind(&row.bucket)
            .bind(&row.key)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(match precondition {
        Precondition::None => true,
        Precondition::Absent => current.is_none(),
        Precondition::ETag(want) => current.as_deref() == Some(want.as_str()),
    })
}

/// Makes `row` the current version of its key if `precondition` holds (the replaced blob goes to
/// `garbage` by trigger).
pub async fn put_object(
    db: &Db,
    row: &ObjectRow,
    precondition: &Precondition,
    mode: VersionMode,
) -> DbResult<PutOutcome> {
    let mut tx = db.write.begin().await?;
    if !precondition_holds(&mut tx, row, precondition).await? {
        return Ok(PutOutcome::PreconditionFailed);
    }
    archive_current(&mut tx, &row.bucket, &row.key, mode).await?;
    match upsert_object(row).execute(&mut *tx).await {
        Ok(_) => {}
        Err(e) if is_foreign_key_violation(&e) => return Ok(PutOutcome::NoBucket),
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    Ok(PutOutcome::Done)
}

/// Replaces an object's tags, leaving its bytes, ETag and modification time. false: no such object.
pub async fn set_object_tags(db: &Db, bucket: &str, key: &str, tags: &str) -> DbResult<bool> {
    let done = sqlx::query("UPDATE objects SET tags = ? WHERE bucket = ? AND key = ?")
        .bind(tags)
        .bind(bucket)
        .bind(key.as_bytes())
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Replaces the canned ACL of a key's current object, or of the version named (the current one or
/// an earlier one; never a delete marker). false: no such object or version.
pub async fn set_object_acl(
    db: &Db,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    acl: Option<&str>,
) -> DbResult<bool> {
    let current = sqlx::query("UPDATE objects SET acl = ?1 WHERE bucket = ?2 AND key = ?3 AND (?4 IS NULL OR COALESCE(version_id, ?5) = ?4)")
        .bind(acl)
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(version)
        .bind(NULL_VERSION)
        .execute(&db.write)
        .await?;
    let Some(version) = version.filter(|_| current.rows_affected() == 0) else {
        return Ok(current.rows_affected() > 0);
    };
    let earlier = sqlx::query("UPDATE object_versions SET acl = ? WHERE bucket = ? AND key = ? AND version_id = ? AND delete_marker = 0")
        .bind(acl)
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(version)
        .execute(&db.write)
        .await?;
    Ok(earlier.rows_affected() > 0)
}

/// Removes a key's current object. Under versioning the object is kept as an earlier version and a
/// delete marker (`marker_version`) becomes the newest (even where there was no object, as in S3).
/// With `only_if` (ETag, time) nothing happens unless that is still the current version. true:
/// there was an object.
pub async fn delete_object(
    db: &Db,
    bucket: &str,
    key: &str,
    mode: VersionMode,
    marker_version: &str,
    only_if: Option<(&str, i64)>,
) -> DbResult<bool> {
    let key = key.as_bytes();
    let mut tx = db.write.begin().await?;
    if let Some((etag, created_at)) = only_if {
        let same: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM objects WHERE bucket = ? AND key = ? AND etag = ? AND created_at = ?",
        )
        .bind(bucket)
        .bind(key)
        .bind(etag)
        .bind(created_at)
        .fetch_optional(&mut *tx)
        .await?;
        if same.is_none() {
            return Ok(false);
        }
    }
    archive_current(&mut tx, bucket, key, mode).await?;
    let deleted = sqlx::query("DELETE FROM objects WHERE bucket = ? AND key = ?")
        .bind(bucket)
        .bind(key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if mode != VersionMode::Off {
        sqlx::query("INSERT INTO object_versions (bucket, key, version_id, delete_marker, created_at, archived_at) VALUES (?, ?, ?, 1, ?, ?)")
            .bind(bucket)
            .bind(key)
            .bind(marker_version)
            .bind(aerekos_common::db::now_ms())
            .bind(aerekos_common::db::now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Removes one version for good (the current one, an earlier one or a delete marker); the newest
/// remaining version becomes current if the current one went. The removed version, if any.
pub async fn delete_version(
    db: &Db,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> DbResult<Option<VersionRow>> {
    let key = key.as_bytes();
    let mut tx = db.write.begin().await?;
    let current: Option<ObjectRow> = sqlx::query_as(
        "SELECT * FROM objects WHERE bucket = ? AND key = ? AND COALESCE(version_id, ?) = ?",
    )
    .bind(bucket)
    .bind(key)
    .bind(NULL_VERSION)
    .bind(version_id)
    .fetch_optional(&mut *tx)
    .await?;
    let removed = match current {
        Some(row) => {
            sqlx::query("DELETE FROM objects WHERE bucket = ? AND key = ?").bind(bucket).bind(key).execute(&mut *tx).await?;
            Some(VersionRow::current(row))
        }
        None => {
            sqlx::query_as("DELETE FROM object_versions WHERE bucket = ? AND key = ? AND version_id = ? RETURNING *")
                .bind(bucket)
                .bind(key)
                .bind(version_id)
                .fetch_optional(&mut *tx)
                .await?
        }
    };
    restore_newest(&mut tx, bucket, key).await?;
    tx.commit().await?;
    Ok(removed)
}

/// One version of a key: the current object, an earlier version or a delete marker.
pub async fn get_version(
    db: &Db,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> DbResult<Option<VersionRow>> {
    if let Some(row) = sqlx::query_as::<_, ObjectRow>(
        "SELECT * FROM objects WHERE bucket = ? AND key = ? AND COALESCE(version_id, ?) = ?",
    )
    .bind(bucket)
    .bind(key.as_bytes())
    .bind(NULL_VERSION)
    .bind(version_id)
    .fetch_optional(&db.read)
    .await?
    {
        return Ok(Some(VersionRow::current(row)));
    }
    sqlx::query_as("SELECT * FROM object_versions WHERE bucket = ? AND key = ? AND version_id = ?")
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(version_id)
        .fetch_optional(&db.read)
        .await
}

/// Earlier versions (not delete markers) under `prefix` that stopped being current before `before`
/// (ms), at most `limit`.
pub async fn noncurrent_versions(
    db: &Db,
    bucket: &str,
    prefix: &[u8],
    to: Option<&[u8]>,
    before: i64,
    limit: u32,
) -> DbResult<Vec<VersionRow>> {
    let to = to.map(<[u8]>::to_vec).unwrap_or_else(|| vec![0xFF; 1025]);
    sqlx::query_as(
        "SELECT * FROM object_versions WHERE bucket = ? AND key >= ? AND key < ? AND delete_marker = 0 AND archived_at < ? \
         ORDER BY seq LIMIT ?",
    )
    .bind(bucket)
    .bind(prefix)
    .bind(to)
    .bind(before)
    .bind(limit)
    .fetch_all(&db.read)
    .await
}

/// Every version of the keys in `from <= key < to` (current ones first per key, then newest
/// first), up to `limit` rows; `seq` is `i64::MAX` for current versions.
pub async fn versions_in_range(
    db: &Db,
    bucket: &str,
    from: &[u8],
    to: Option<&[u8]>,
    limit: u32,
) -> DbResult<Vec<VersionRow>> {
    let to = to.map(<[u8]>::to_vec).unwrap_or_else(|| vec![0xFF; 1025]);
    sqlx::query_as(
        "SELECT * FROM ( \
           SELECT 9223372036854775807 AS seq, bucket, key, COALESCE(version_id, 'null') AS version_id, 0 AS delete_marker, blob_id, size, \
                  etag, content_type, metadata, key_ref, wrapped_key, created_at, headers, tags, checksum, acl \
             FROM objects WHERE bucket = ?1 AND key >= ?2 AND key < ?3 \
           UNION ALL \
           SELECT seq, bucket, key, version_id, delete_marker, blob_id, size, etag, content_type, metadata, key_ref, wrapped_key, \
                  created_at, headers, tags, checksum, acl \
             FROM object_versions WHERE bucket = ?1 AND key >= ?2 AND key < ?3 \
         ) ORDER BY key, seq DESC LIMIT ?4",
    )
    .bind(bucket)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(&db.read)
    .await
}

/// Up to `limit` objects with `from <= key < to`, in key order.
pub async fn objects_in_range(
    db: &Db,
    bucket: &str,
    from: &[u8],
    to: Option<&[u8]>,
    limit: u32,
) -> DbResult<Vec<ObjectRow>> {
    match to {
        Some(to) => sqlx::query_as(
            "SELECT * FROM objects WHERE bucket = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?",
        )
        .bind(bucket)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&db.read)
        .await,
        None => {
            sqlx::query_as(
                "SELECT * FROM objects WHERE bucket = ? AND key >= ? ORDER BY key LIMIT ?",
            )
            .bind(bucket)
            .bind(from)
            .bind(limit)
            .fetch_all(&db.read)
            .await
        }
    }
}

/// Every blob a row refers to (what the start-up sweep keeps).
pub async fn referenced_blobs(db: &Db) -> DbResult<HashSet<String>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT blob_id FROM objects UNION ALL SELECT blob_id FROM parts UNION ALL \
         SELECT blob_id FROM object_versions WHERE blob_id IS NOT NULL",
    )
    .fetch_all(&db.read)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Takes up to `limit` blob ids off the garbage list (their files are removed next; a crash in
/// between leaves files the start-up sweep removes).
pub async fn take_garbage(db: &Db, limit: u32) -> DbResult<Vec<String>> {
    sqlx::query_scalar("DELETE FROM garbage WHERE blob_id IN (SELECT blob_id FROM garbage LIMIT ?) RETURNING blob_id")
        .bind(limit)
        .fetch_all(&db.write)
        .await
}

/// Empties the garbage list (after the start-up sweep, which removed every unreferenced file).
pub async fn clear_garbage(db: &Db) -> DbResult<()> {
    sqlx::query("DELETE FROM garbage")
        .execute(&db.write)
        .await
        .map(|_| ())
}

// ---- multipart uploads

pub async fn insert_upload(db: &Db, row: &UploadRow) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO uploads (id, bucket, key, content_type, metadata, key_ref, wrapped_key, created_at, headers, tags, acl) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&row.id)
    .bind(&row.bucket)
    .bind(&row.key)
    .bind(&row.content_type)
    .bind(&row.metadata)
    .bind(&row.key_ref)
    .bind(&row.wrapped_key)
    .bind(row.created_at)
    .bind(&row.headers)
    .bind(&row.tags)
    .bind(&row.acl)
    .execute(&db.write)
    .await
    .map(|_| ())
}

pub async fn get_upload(db: &Db, id: &str) -> DbResult<Option<UploadRow>> {
    sqlx::query_as("SELECT * FROM uploads WHERE id = ?")
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

pub async fn list_uploads(db: &Db, bucket: &str) -> DbResult<Vec<UploadRow>> {
    sqlx::query_as("SELECT * FROM uploads WHERE bucket = ? ORDER BY key, created_at")
        .bind(bucket)
        .fetch_all(&db.read)
        .await
}

/// Stores a part in one statement (a replaced part's blob goes to `garbage`). false: no such upload.
pub async fn put_part(db: &Db, row: &PartRow) -> DbResult<bool> {
    let result = sqlx::query(
        "INSERT INTO parts (upload_id, part_number, blob_id, size, md5, created_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (upload_id, part_number) DO UPDATE SET blob_id = excluded.blob_id, size = excluded.size, \
         md5 = excluded.md5, created_at = excluded.created_at",
    )
    .bind(&row.upload_id)
    .bind(row.part_number)
    .bind(&row.blob_id)
    .bind(row.size)
    .bind(&row.md5)
    .bind(row.created_at)
    .execute(&db.write)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_foreign_key_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn list_parts(db: &Db, upload_id: &str) -> DbResult<Vec<PartRow>> {
    sqlx::query_as("SELECT * FROM parts WHERE upload_id = ? ORDER BY part_number")
        .bind(upload_id)
        .fetch_all(&db.read)
        .await
}

pub enum UploadFinished {
    Done,
    NoUpload,
    NoBucket,
    PreconditionFailed,
}

/// Completes an upload: if `precondition` holds, its object row replaces the key's current one
/// and the upload and its parts are deleted (their blobs to `garbage`), all in one transaction.
pub async fn complete_upload(
    db: &Db,
    upload_id: &str,
    object: &ObjectRow,
    precondition: &Precondition,
    mode: VersionMode,
) -> DbResult<UploadFinished> {
    let mut tx = db.write.begin().await?;
    if !precondition_holds(&mut tx, object, precondition).await? {
        return Ok(UploadFinished::PreconditionFailed);
    }
    archive_current(&mut tx, &object.bucket, &object.key, mode).await?;
    if sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(upload_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 0
    {
        return Ok(UploadFinished::NoUpload);
    }
    match upsert_object(object).execute(&mut *tx).await {
        Ok(_) => {}
        Err(e) if is_foreign_key_violation(&e) => return Ok(UploadFinished::NoBucket),
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    Ok(UploadFinished::Done)
}

/// Deletes an upload and its parts (their blobs to `garbage`). false: there was no such upload.
pub async fn abort_upload(db: &Db, upload_id: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(upload_id)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() > 0)
}

// ---- access keys

pub async fn insert_access_key(db: &Db, row: &AccessKeyRow) -> DbResult<()> {
    sqlx::query("INSERT INTO access_keys (id, secret, description, created_by, created_at, revoked_at, scopes) VALUES (?, ?, ?, ?, ?, NULL, ?)")
        .bind(&row.id)
        .bind(&row.secret)
        .bind(&row.description)
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(&row.scopes)
        .execute(&db.write)
        .await
        .map(|_| ())
}

pub async fn list_access_keys(db: &Db) -> DbResult<Vec<AccessKeyRow>> {
    sqlx::query_as("SELECT * FROM access_keys ORDER BY created_at, id")
        .fetch_all(&db.read)
        .await
}

pub async fn get_access_key(db: &Db, id: &str) -> DbResult<Option<AccessKeyRow>> {
    sqlx::query_as("SELECT * FROM access_keys WHERE id = ?")
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

/// false: no such key.
pub async fn revoke_access_key(db: &Db, id: &str, now: i64) -> DbResult<bool> {
    let done =
        sqlx::query("UPDATE access_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&db.write)
            .await?;
    Ok(done.rows_affected() > 0)
}
