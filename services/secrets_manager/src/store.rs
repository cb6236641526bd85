//! secrets_manager's repositories (SQL only). Every change that belongs together — a version and
//! the labels it moves, a prune — is one transaction on the one writer connection, so check-and-set
//! and version numbering cannot race.

use aerekos_common::db::{Db, DbResult};
use sqlx::FromRow;

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The label a read without version or label serves, and the one the version before it keeps.
pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug, Clone, FromRow)]
pub struct SecretRow {
    pub name: String,
    pub description: String,
    pub key_ref: String,
    pub max_versions: i64,
    pub tags: String,
    pub latest_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deletion_date: Option<i64>,
    pub rotation: Option<String>,
}

/// A version's metadata (its sealed value is read only by [`read_target`]).
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub deleted_at: Option<i64>,
    pub destroyed_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct LabelRow {
    pub label: String,
    pub version: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub secret: Option<String>,
    pub version: Option<i64>,
    pub request_id: String,
    pub outcome: String,
}

/// A new version, sealed.
pub struct NewVersion<'a> {
    /// The version number it was sealed for: written only if it is still the next one.
    pub version: i64,
    pub kind: &'a str,
    pub sealed: &'a [u8],
    pub key_ref: &'a str,
    pub wrapped_key: &'a str,
    pub created_by: &'a str,
    /// Custom labels to move onto it besides `AWSCURRENT`.
    pub labels: &'a [String],
}

pub enum PutOutcome {
    Written(i64),
    NoSecret,
    ScheduledForDeletion,
    /// The latest version was this one, not the one check-and-set named.
    CasMismatch(i64),
    /// Another version was written since this one was sealed for its number.
    Raced,
}

/// Creates a secret, with its first version (labelled `AWSCURRENT`) when one is given, in one
/// transaction. false: the name is taken (nothing was written).
pub async fn insert_secret(
    db: &Db,
    row: &SecretRow,
    first: Option<&NewVersion<'_>>,
) -> DbResult<bool> {
    let mut tx = db.write.begin().await?;
    let done = sqlx::query(
        "INSERT INTO secrets (name, description, key_ref, max_versions, tags, latest_version, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.key_ref)
    .bind(row.max_versions)
    .bind(&row.tags)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(first) = first {
        insert_version(&mut tx, &row.name, first, row.created_at).await?;
        sqlx::query("UPDATE secrets SET latest_version = ? WHERE name = ?")
            .bind(first.version)
            .bind(&row.name)
            .execute(&mut *tx)
            .await?;
        set_label(&mut tx, &row.name, CURRENT, first.version).await?;
        for label in first.labels {
            set_label(&mut tx, &row.name, label, first.version).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

async fn insert_version(
    tx: &mut sqlx::SqliteConnection,
    name: &str,
    new: &NewVersion<'_>,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO versions (secret, version, kind, sealed, key_ref, wrapped_key, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(new.version)
    .bind(new.kind)
    .bind(new.sealed)
    .bind(new.key_ref)
    .bind(new.wrapped_key)
    .bind(now)
    .bind(new.created_by)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

pub async fn get_secret(db: &Db, name: &str) -> DbResult<Option<SecretRow>> {
    sqlx::query_as("SELECT * FROM secrets WHERE name = ?")
        .bind(name)
        .fetch_optional(&db.read)
        .await
}

/// A secret in a listing, with the version `AWSCURRENT` names.
#[derive(Debug, Clone, FromRow)]
pub struct ListedSecret {
    #[sqlx(flatten)]
    pub row: SecretRow,
    pub current_version: Option<i64>,
}

/// Secrets whose name starts with `prefix`, after `after` (by name), at most `limit`.
pub async fn list_secrets(
    db: &Db,
    prefix: &str,
    after: &str,
    limit: u32,
) -> DbResult<Vec<ListedSecret>> {
    sqlx::query_as(
        "SELECT s.*, l.version AS current_version FROM secrets s LEFT JOIN labels l ON l.secret = s.name AND l.label = 'AWSCURRENT' \
         WHERE s.name > ?1 AND substr(s.name, 1, length(?2)) = ?2 ORDER BY s.name LIMIT ?3",
    )
        .bind(after)
        .bind(prefix)
        .bind(limit)
        .fetch_all(&db.read)
        .await
}

pub async fn count_secrets(db: &Db) -> DbResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM secrets")
        .fetch_one(&db.read)
        .await
}

pub async fn versions_of(db: &Db, name: &str) -> DbResult<Vec<VersionRow>> {
    sqlx::query_as("SELECT version, created_at, created_by, deleted_at, destroyed_at FROM versions WHERE secret = ? ORDER BY version DESC").bind(name).fetch_all(&db.read).await
}

pub async fn labels_of(db: &Db, name: &str) -> DbResult<Vec<LabelRow>> {
    sqlx::query_as("SELECT label, version FROM labels WHERE secret = ? ORDER BY label")
        .bind(name)
        .fetch_all(&db.read)
        .await
}

/// The labels naming one version.
pub async fn labels_of_version(db: &Db, name: &str, version: i64) -> DbResult<Vec<String>> {
    sqlx::query_scalar("SELECT label FROM labels WHERE secret = ? AND version = ? ORDER BY label")
        .bind(name)
        .bind(version)
        .fetch_all(&db.read)
        .await
}

pub async fn get_version(db: &Db, name: &str, version: i64) -> DbResult<Option<VersionRow>> {
    sqlx::query_as("SELECT version, created_at, created_by, deleted_at, destroyed_at FROM versions WHERE secret = ? AND version = ?").bind(name).bind(version).fetch_optional(&db.read).await
}

/// What a value read needs, in one query (each query is a round trip to SQLite's thread, the
/// larger part of a read's CPU when profiled): whether the secret exists and is scheduled for
/// deletion, the version `version` names or else the one `label` names, and that version's labels.
#[derive(Debug, Clone, FromRow)]
pub struct ReadRow {
    pub deletion_date: Option<i64>,
    /// The version asked for (given, or found under the label); NULL: the label names none.
    pub wanted: Option<i64>,
    #[sqlx(flatten)]
    pub version: OptionalVersionRow,
    /// The version's labels, sorted, joined by spaces (labels hold none).
    pub labels: Option<String>,
}

/// A [`VersionRow`] from an outer join: every column NULL when there is no such version.
#[derive(Debug, Clone, FromRow)]
pub struct OptionalVersionRow {
    pub kind: Option<String>,
    pub sealed: Option<Vec<u8>>,
    pub key_ref: Option<String>,
    pub wrapped_key: Option<String>,
    pub created_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub destroyed_at: Option<i64>,
}

/// See [`ReadRow`]; None: no secret `name`.
pub async fn read_target(
    db: &Db,
    name: &str,
    version: Option<i64>,
    label: &str,
) -> DbResult<Option<ReadRow>> {
    sqlx::query_as(
        "SELECT s.deletion_date, COALESCE(?2, l.version) AS wanted,
                v.kind, v.sealed, v.key_ref, v.wrapped_key, v.created_at, v.deleted_at, v.destroyed_at,
                (SELECT group_concat(label, ' ') FROM
                    (SELECT label FROM labels WHERE secret = s.name AND version = v.version ORDER BY label)) AS labels
         FROM secrets s
         LEFT JOIN labels l ON ?2 IS NULL AND l.secret = s.name AND l.label = ?3
         LEFT JOIN versions v ON v.secret = s.name AND v.version = COALESCE(?2, l.version)
         WHERE s.name = ?1",
    )
    .bind(name)
    .bind(version)
    .bind(label)
    .fetch_optional(&db.read)
    .await
}

pub async fn version_of_label(db: &Db, name: &str, label: &str) -> DbResult<Option<i64>> {
    sqlx::query_scalar("SELECT version FROM labels WHERE secret = ? AND label = ?")
        .bind(name)
        .bind(label)
        .fetch_optional(&db.read)
        .await
}

/// Writes the next version if check-and-set allows: `AWSCURRENT` and `labels` move to it,
/// `AWSPREVIOUS` to the version that was current; then versions past `max_versions` are pruned.
pub async fn put_version(
    db: &Db,
    name: &str,
    cas: Option<i64>,
    new: &NewVersion<'_>,
    now: i64,
) -> DbResult<PutOutcome> {
    let mut tx = db.write.begin().await?;
    let secret: Option<SecretRow> = sqlx::query_as("SELECT * FROM secrets WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(secret) = secret else {
        return Ok(PutOutcome::NoSecret);
    };
    if secret.deletion_date.is_some() {
        return Ok(PutOutcome::ScheduledForDeletion);
    }
    if let Some(expected) = cas
        && expected != secret.latest_version
    {
        return Ok(PutOutcome::CasMismatch(secret.latest_version));
    }
    let version = secret.latest_version + 1;
    if version != new.version {
        return Ok(PutOutcome::Raced);
    }
    insert_version(&mut tx, name, new, now).await?;
    sqlx::query("UPDATE secrets SET latest_version = ?, updated_at = ? WHERE name = ?")
        .bind(version)
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM labels WHERE secret = ? AND label = ?")
            .bind(name)
            .bind(CURRENT)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(previous) = current {
        set_label(&mut tx, name, PREVIOUS, previous).await?;
    }
    set_label(&mut tx, name, CURRENT, version).await?;
    for label in new.labels {
        set_label(&mut tx, name, label, version).await?;
    }
    prune(&mut tx, name, secret.max_versions).await?;
    tx.commit().await?;
    Ok(PutOutcome::Written(version))
}

async fn set_label(
    tx: &mut sqlx::SqliteConnection,
    name: &str,
    label: &str,
    version: i64,
) -> DbResult<()> {
    sqlx::query("INSERT INTO labels (secret, label, version) VALUES (?, ?, ?) ON CONFLICT (secret, label) DO UPDATE SET version = excluded.version")
        .bind(name)
        .bind(label)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// Removes the oldest versions that no label names until at most `max_versions` are left.
async fn prune(tx: &mut sqlx::SqliteConnection, name: &str, max_versions: i64) -> DbResult<()> {
    sqlx::query(
        "DELETE FROM versions WHERE secret = ?1 AND version IN ( \
           SELECT version FROM versions v WHERE secret = ?1 \
             AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.secret = ?1 AND l.version = v.version) \
           ORDER BY version ASC \
           LIMIT max(0, (SELECT COUNT(*) FROM versions WHERE secret = ?1) - ?2))",
    )
    .bind(name)
    .bind(max_versions)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// Moves `label` to `version` (which must exist); `AWSCURRENT` moving takes `AWSPREVIOUS` to the
/// version it left. false: no such version.
pub async fn move_label(
    db: &Db,
    name: &str,
    label: &str,
    version: i64,
    now: i64,
) -> DbResult<bool> {
    let mut tx = db.write.begin().await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM versions WHERE secret = ? AND version = ?")
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Ok(false);
    }
    if label == CURRENT {
        let was: Option<i64> =
            sqlx::query_scalar("SELECT version FROM labels WHERE secret = ? AND label = ?")
                .bind(name)
                .bind(CURRENT)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(was) = was.filter(|was| *was != version) {
            set_label(&mut tx, name, PREVIOUS, was).await?;
        }
    }
    set_label(&mut tx, name, label, version).await?;
    sqlx::query("UPDATE secrets SET updated_at = ? WHERE name = ?")
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Removes a label. false: the secret had no such label.
pub async fn remove_label(db: &Db, name: &str, label: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM labels WHERE secret = ? AND label = ?")
        .bind(name)
        .bind(label)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Soft-deletes (`deleted` true) or undeletes a version that is not destroyed. false: no such
/// live version.
pub async fn set_version_deleted(
    db: &Db,
    name: &str,
    version: i64,
    deleted: Option<i64>,
) -> DbResult<bool> {
    let done = sqlx::query("UPDATE versions SET deleted_at = ? WHERE secret = ? AND version = ? AND destroyed_at IS NULL")
        .bind(deleted)
        .bind(name)
        .bind(version)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Destroys a version's value: the sealed bytes and the wrapped data key are overwritten (the
/// database deletes securely), the row stays as its record. false: no such version.
pub async fn destroy_version(db: &Db, name: &str, version: i64, now: i64) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE versions SET sealed = NULL, wrapped_key = NULL, destroyed_at = COALESCE(destroyed_at, ?) WHERE secret = ? AND version = ?",
    )
    .bind(now)
    .bind(name)
    .bind(version)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The metadata fields an update may change (None: unchanged); prunes when `max_versions` shrinks.
pub struct MetadataChange<'a> {
    pub description: Option<&'a str>,
    pub key_ref: Option<&'a str>,
    pub max_versions: Option<i64>,
    pub tags: Option<&'a str>,
}

pub async fn update_secret(
    db: &Db,
    name: &str,
    change: &MetadataChange<'_>,
    now: i64,
) -> DbResult<bool> {
    let mut tx = db.write.begin().await?;
    let done = sqlx::query(
        "UPDATE secrets SET description = COALESCE(?, description), key_ref = COALESCE(?, key_ref), \
         max_versions = COALESCE(?, max_versions), tags = COALESCE(?, tags), updated_at = ? WHERE name = ?",
    )
    .bind(change.description)
    .bind(change.key_ref)
    .bind(change.max_versions)
    .bind(change.tags)
    .bind(now)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(max_versions) = change.max_versions {
        prune(&mut tx, name, max_versions).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Schedules (Some) or cancels (None) the deletion of a whole secret. false: no such secret.
pub async fn set_deletion_date(db: &Db, name: &str, date: Option<i64>, now: i64) -> DbResult<bool> {
    let done = sqlx::query("UPDATE secrets SET deletion_date = ?, updated_at = ? WHERE name = ?")
        .bind(date)
        .bind(now)
        .bind(name)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes secrets whose deletion date has passed (their versions and labels with them), and
/// records each removal in the audit log as `actor`, in the same transaction: a crash never leaves a
/// secret gone without its `purge` record, and no reader sees one before the other. Returns their
/// names.
pub async fn purge_due(db: &Db, now: i64, actor: &str, request_id: &str) -> DbResult<Vec<String>> {
    let mut tx = db.write.begin().await?;
    let gone: Vec<String> = sqlx::query_scalar(
        "DELETE FROM secrets WHERE deletion_date IS NOT NULL AND deletion_date <= ? RETURNING name",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for name in &gone {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, secret, version, request_id, outcome) \
             VALUES (?, ?, 'purge', ?, NULL, ?, 'ok')",
        )
        .bind(now)
        .bind(actor)
        .bind(name)
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(gone)
}

pub async fn set_rotation(db: &Db, name: &str, rotation: Option<&str>) -> DbResult<bool> {
    let done = sqlx::query("UPDATE secrets SET rotation = ? WHERE name = ?")
        .bind(rotation)
        .bind(name)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Secrets with a rotation schedule that are not scheduled for deletion.
pub async fn rotating(db: &Db) -> DbResult<Vec<SecretRow>> {
    sqlx::query_as("SELECT * FROM secrets WHERE rotation IS NOT NULL AND deletion_date IS NULL")
        .fetch_all(&db.read)
        .await
}

pub async fn insert_audit(db: &Db, rows: &[AuditRow]) -> DbResult<()> {
    let columns = [
        "at",
        "actor",
        "action",
        "secret",
        "version",
        "request_id",
        "outcome",
    ];
    aerekos_common::db::insert_rows(db, "audit", &columns, rows, |values, r| {
        values
            .push_bind(r.at)
            .push_bind(&r.actor)
            .push_bind(&r.action)
            .push_bind(&r.secret)
            .push_bind(r.version)
            .push_bind(&r.request_id)
            .push_bind(&r.outcome);
    })
    .await
}

/// Newest first; `before_id` pages back.
pub async fn list_audit(
    db: &Db,
    secret: Option<&str>,
    before_id: Option<i64>,
    limit: u32,
) -> DbResult<Vec<AuditRow>> {
    sqlx::query_as("SELECT * FROM audit WHERE (?1 IS NULL OR secret = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3")
        .bind(secret)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&db.read)
        .await
}
