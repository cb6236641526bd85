use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, FromRow)]
pub struct InstanceRow {
    pub id: String,
    pub worker_id: String,
    pub service: Option<String>,
    pub spec: String,
    pub desired_state: String,
    pub state: String,
    pub address: Option<String>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub restarts: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, worker_id, service, spec, desired_state, state, address, exit_code, reason, restarts, created_at, updated_at";

pub async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    row: &InstanceRow,
) -> DbResult<()> {
    sqlx::query(&format!(
        "INSERT INTO instances ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&row.id)
    .bind(&row.worker_id)
    .bind(&row.service)
    .bind(&row.spec)
    .bind(&row.desired_state)
    .bind(&row.state)
    .bind(&row.address)
    .bind(row.exit_code)
    .bind(&row.reason)
    .bind(row.restarts)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

pub async fn all(db: &Db) -> DbResult<Vec<InstanceRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM instances ORDER BY created_at, id"
    ))
    .fetch_all(&db.read)
    .await
}

pub async fn delete_in(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, id: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM instances WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[allow(clippy::too_many_arguments)]
/// Records a worker's report: None when the instance is not (or no longer) that worker's, else
/// the service it is an instance of (None within: a job's attempt or an admin's own instance).
pub async fn report(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    worker_id: &str,
    state: &str,
    address: Option<&str>,
    exit_code: Option<i64>,
    reason: Option<&str>,
    restarts: i64,
    at: i64,
) -> DbResult<Option<Option<String>>> {
    sqlx::query_scalar(
        "UPDATE instances SET state = ?, address = ?, exit_code = ?, reason = ?, restarts = ?, updated_at = ?
         WHERE id = ? AND worker_id = ? RETURNING service",
    )
    .bind(state)
    .bind(address)
    .bind(exit_code)
    .bind(reason)
    .bind(restarts)
    .bind(at)
    .bind(id)
    .bind(worker_id)
    .fetch_optional(&mut **tx)
    .await
}
