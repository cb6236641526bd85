//! key_manager's repositories (SQL only).

use aerekos_common::db::{Db, DbResult};
use sqlx::FromRow;

use crate::domain::audit::AuditEntry;

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub usage: String,
    pub enabled: bool,
    pub latest_version: i64,
    pub min_decryption_version: i64,
    pub min_encryption_version: i64,
    pub deletion_allowed: bool,
    pub deletion_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub key_id: String,
    pub version: i64,
    pub material: Vec<u8>,
    pub created_at: i64,
}

pub async fn load_keys(db: &Db) -> DbResult<(Vec<KeyRow>, Vec<VersionRow>)> {
    let keys = sqlx::query_as("SELECT * FROM keys ORDER BY created_at, id")
        .fetch_all(&db.read)
        .await?;
    let versions = sqlx::query_as(
        "SELECT key_id, version, material, created_at FROM key_versions ORDER BY key_id, version",
    )
    .fetch_all(&db.read)
    .await?;
    Ok((keys, versions))
}

/// A new key with its first version, in one transaction.
pub async fn insert_key(db: &Db, key: &KeyRow, first: &VersionRow) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query(
        "INSERT INTO keys (id, name, description, usage, enabled, latest_version, min_decryption_version,
            min_encryption_version, deletion_allowed, deletion_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.description)
    .bind(&key.usage)
    .bind(key.enabled)
    .bind(key.latest_version)
    .bind(key.min_decryption_version)
    .bind(key.min_encryption_version)
    .bind(key.deletion_allowed)
    .bind(key.deletion_at)
    .bind(key.created_at)
    .bind(key.updated_at)
    .execute(&mut *tx)
    .await?;
    insert_version_in(&mut tx, first).await?;
    tx.commit().await
}

async fn insert_version_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    v: &VersionRow,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO key_versions (key_id, version, material, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&v.key_id)
    .bind(v.version)
    .bind(&v.material)
    .bind(v.created_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Writes the key's settings (and a new version, for a rotation) in one transaction.
pub async fn update_key(db: &Db, key: &KeyRow, new_version: Option<&VersionRow>) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query(
        "UPDATE keys SET description = ?, enabled = ?, latest_version = ?, min_decryption_version = ?,
            min_encryption_version = ?, deletion_allowed = ?, deletion_at = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(&key.description)
    .bind(key.enabled)
    .bind(key.latest_version)
    .bind(key.min_decryption_version)
    .bind(key.min_encryption_version)
    .bind(key.deletion_allowed)
    .bind(key.deletion_at)
    .bind(key.updated_at)
    .bind(&key.id)
    .execute(&mut *tx)
    .await?;
    if let Some(v) = new_version {
        insert_version_in(&mut tx, v).await?;
    }
    tx.commit().await
}

/// Destroys a key and all its material.
pub async fn delete_key(db: &Db, id: &str) -> DbResult<()> {
    sqlx::query("DELETE FROM keys WHERE id = ?")
        .bind(id)
        .execute(&db.write)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub key_id: Option<String>,
    pub key_version: Option<i64>,
    pub operation: String,
    pub request_id: String,
    pub outcome: String,
    pub detail: Option<String>,
}

impl AuditRow {
    pub fn from_entry(e: &AuditEntry, at: i64) -> Self {
        Self {
            id: 0,
            at,
            actor: e.actor.clone(),
            key_id: e.key_id.clone(),
            key_version: e.key_version.map(i64::from),
            operation: e.operation.to_owned(),
            request_id: e.request_id.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
        }
    }
}

pub async fn insert_audit(db: &Db, rows: &[AuditRow]) -> DbResult<()> {
    let columns = [
        "at",
        "actor",
        "key_id",
        "key_version",
        "operation",
        "request_id",
        "outcome",
        "detail",
    ];
    aerekos_common::db::insert_rows(db, "audit", &columns, rows, |values, r| {
        values
            .push_bind(r.at)
            .push_bind(&r.actor)
            .push_bind(&r.key_id)
            .push_bind(r.key_version)
            .push_bind(&r.operation)
            .push_bind(&r.request_id)
            .push_bind(&r.outcome)
            .push_bind(&r.detail);
    })
    .await
}

/// Newest first; `before_id` pages back.
pub async fn list_audit(
    db: &Db,
    key_id: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<AuditRow>> {
    sqlx::query_as(
        "SELECT * FROM audit WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    )
    .bind(key_id)
    .bind(before_id)
    .bind(limit)
    .fetch_all(&db.read)
    .await
}
