use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, FromRow)]
pub struct BackupRow {
    pub id: String,
    pub volume: String,
    pub service: String,
    pub source_worker_id: String,
    pub store_worker_id: String,
    pub state: String,
    pub files: i64,
    pub bytes: i64,
    pub bytes_sent: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, volume, service, source_worker_id, store_worker_id, state, files, bytes, bytes_sent, error, created_at, finished_at";

pub async fn insert(db: &Db, row: &BackupRow) -> DbResult<()> {
    sqlx::query(&format!(
        "INSERT INTO backups ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&row.id)
    .bind(&row.volume)
    .bind(&row.service)
    .bind(&row.source_worker_id)
    .bind(&row.store_worker_id)
    .bind(&row.state)
    .bind(row.files)
    .bind(row.bytes)
    .bind(row.bytes_sent)
    .bind(&row.error)
    .bind(row.created_at)
    .bind(row.finished_at)
    .execute(&db.write)
    .await
    .map(|_| ())
}

/// Ends a backup: its state, figures and error; a successful one also becomes its volume's last
/// backup, in the same transaction.
pub async fn finish(db: &Db, row: &BackupRow) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE backups SET state = ?, files = ?, bytes = ?, bytes_sent = ?, error = ?, finished_at = ? WHERE id = ?")
        .bind(&row.state)
        .bind(row.files)
        .bind(row.bytes)
        .bind(row.bytes_sent)
        .bind(&row.error)
        .bind(row.finished_at)
        .bind(&row.id)
        .execute(&mut *tx)
        .await?;
    if row.state == "done" {
        sqlx::query("UPDATE volumes SET last_backup_at = ? WHERE name = ? AND worker_id = ?")
            .bind(row.finished_at)
            .bind(&row.volume)
            .bind(&row.source_worker_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Marks the done backups of `volume` in `store` that are not in `keep` as expired (their store
/// deleted them).
pub async fn expire_others(db: &Db, volume: &str, store: &str, keep: &[String]) -> DbResult<u64> {
    let keep = serde_json::to_string(keep).expect("a list of strings");
    let done = sqlx::query(
        "UPDATE backups SET state = 'expired' WHERE volume = ? AND store_worker_id = ? AND state = 'done' \
         AND id NOT IN (SELECT value FROM json_each(?))",
    )
    .bind(volume)
    .bind(store)
    .bind(keep)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected())
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<BackupRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM backups WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

/// Newest first; of one volume when given.
pub async fn list(db: &Db, volume: Option<&str>, limit: u32) -> DbResult<Vec<BackupRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM backups WHERE (?1 IS NULL OR volume = ?1) ORDER BY created_at DESC, id LIMIT ?2"))
        .bind(volume)
        .bind(limit)
        .fetch_all(&db.read)
        .await
}

pub async fn running(db: &Db) -> DbResult<Vec<BackupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backups WHERE state = 'running'"
    ))
    .fetch_all(&db.read)
    .await
}

/// The latest successful backup of each volume.
pub async fn latest_done(db: &Db) -> DbResult<Vec<BackupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backups b WHERE state = 'done' AND created_at = \
         (SELECT MAX(created_at) FROM backups WHERE volume = b.volume AND state = 'done')"
    ))
    .fetch_all(&db.read)
    .await
}
