use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct VolumeRow {
    pub name: String,
    pub service: String,
    pub worker_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_backup_at: Option<i64>,
}

const COLUMNS: &str = "name, service, worker_id, created_at, updated_at, last_backup_at";

pub async fn all(db: &Db) -> DbResult<Vec<VolumeRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM volumes ORDER BY name"))
        .fetch_all(&db.read)
        .await
}

/// Records `row` as the volume's holder (a new volume, or one now held elsewhere); a new holder
/// keeps no backup time, since backups of the old copy are not of this one.
pub async fn upsert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    row: &VolumeRow,
) -> DbResult<()> {
    sqlx::query(&format!(
        "INSERT INTO volumes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET service = excluded.service, worker_id = excluded.worker_id,
             created_at = excluded.created_at, updated_at = excluded.updated_at, last_backup_at = excluded.last_backup_at"
    ))
    .bind(&row.name)
    .bind(&row.service)
    .bind(&row.worker_id)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.last_backup_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Records `worker_id` as the holder of `name` (a move's new worker, or its old one again). A
/// changed holder has no backup yet.
pub async fn set_holder_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    name: &str,
    worker_id: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query("UPDATE volumes SET worker_id = ?, updated_at = ?, last_backup_at = CASE WHEN worker_id = ? THEN last_backup_at END WHERE name = ?")
        .bind(worker_id)
        .bind(now)
        .bind(worker_id)
        .bind(name)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}
