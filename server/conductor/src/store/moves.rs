use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, FromRow)]
pub struct MoveRow {
    pub id: String,
    pub service: String,
    pub volume: String,
    pub source_worker_id: String,
    pub target_worker_id: String,
    pub state: String,
    pub bytes_copied: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set for a restore: the backup the data comes from.
    pub backup_id: Option<String>,
}

const COLUMNS: &str = "id, service, volume, source_worker_id, target_worker_id, state, bytes_copied, error, created_at, updated_at, backup_id";

pub async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    row: &MoveRow,
) -> DbResult<()> {
    sqlx::query(&format!(
        "INSERT INTO volume_moves ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&row.id)
    .bind(&row.service)
    .bind(&row.volume)
    .bind(&row.source_worker_id)
    .bind(&row.target_worker_id)
    .bind(&row.state)
    .bind(row.bytes_copied)
    .bind(&row.error)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(&row.backup_id)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Writes the move's state, bytes and error.
pub async fn update_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    row: &MoveRow,
) -> DbResult<()> {
    sqlx::query("UPDATE volume_moves SET state = ?, bytes_copied = ?, error = ?, updated_at = ? WHERE id = ?")
        .bind(&row.state)
        .bind(row.bytes_copied)
        .bind(&row.error)
        .bind(row.updated_at)
        .bind(&row.id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

pub async fn under_way(db: &Db) -> DbResult<Vec<MoveRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM volume_moves WHERE state NOT IN ('done', 'failed') ORDER BY created_at"))
        .fetch_all(&db.read)
        .await
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<MoveRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM volume_moves WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

/// The newest moves first.
pub async fn recent(db: &Db, limit: u32) -> DbResult<Vec<MoveRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM volume_moves ORDER BY created_at DESC, id LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(&db.read)
    .await
}

/// The desired state of the service's instances on `worker_id` (`running` or `stopped`).
pub async fn set_desired_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    service: &str,
    worker_id: &str,
    desired: &str,
) -> DbResult<u64> {
    let done = sqlx::query("UPDATE instances SET desired_state = ?, updated_at = ? WHERE service = ? AND worker_id = ?")
        .bind(desired)
        .bind(super::now_ms())
        .bind(service)
        .bind(worker_id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// Removes the service's instances on `worker_id`.
pub async fn delete_instances_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    service: &str,
    worker_id: &str,
) -> DbResult<u64> {
    let done = sqlx::query("DELETE FROM instances WHERE service = ? AND worker_id = ?")
        .bind(service)
        .bind(worker_id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}
