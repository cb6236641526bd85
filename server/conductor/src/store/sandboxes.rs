//! Sandboxes and their execs (see `domain::sandboxes`).

use sqlx::{FromRow, Sqlite, Transaction};

use super::{Db, DbResult, instances::InstanceRow};

#[derive(Debug, Clone, FromRow)]
pub struct SandboxRow {
    pub id: String,
    pub request: String,
    pub state: String,
    pub instance_id: Option<String>,
    pub worker_id: Option<String>,
    pub reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub ready_at: Option<i64>,
    pub create_attempts: i64,
    pub placed_at: Option<i64>,
    pub not_before: Option<i64>,
}

const COLUMNS: &str = "id, request, state, instance_id, worker_id, reason, created_by, created_at,
     ready_at, create_attempts, placed_at, not_before";

#[derive(Debug, Clone, FromRow)]
pub struct ExecRow {
    pub id: String,
    pub sandbox_id: String,
    pub request: String,
    pub state: String,
    pub exit_code: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub reason: Option<String>,
    pub submitted_at: i64,
    pub ended_at: Option<i64>,
    pub attempt: i64,
    pub dispatched_at: Option<i64>,
    pub not_before: Option<i64>,
    /// The ended attempts (JSON list of `ExecAttempt`).
    pub attempts: String,
}

const EXEC_COLUMNS: &str = "id, sandbox_id, request, state, exit_code, stdout, stderr, reason,
     submitted_at, ended_at, attempt, dispatched_at, not_before, attempts";

pub async fn insert(db: &Db, row: &SandboxRow) -> DbResult<()> {
    sqlx::query(&format!(
        "INSERT INTO sandboxes ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&row.id)
    .bind(&row.request)
    .bind(&row.state)
    .bind(&row.instance_id)
    .bind(&row.worker_id)
    .bind(&row.reason)
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.ready_at)
    .bind(row.create_attempts)
    .bind(row.placed_at)
    .bind(row.not_before)
    .execute(&db.write)
    .await
    .map(|_| ())
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<SandboxRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.write)
        .await
}

pub async fn all(db: &Db) -> DbResult<Vec<SandboxRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sandboxes ORDER BY created_at DESC, id"
    ))
    .fetch_all(&db.write)
    .await
}

/// A sandbox placed: its instance and the sandbox's worker, together, counted as an attempt.
pub async fn place(
    tx: &mut Transaction<'_, Sqlite>,
    id: &str,
    instance: &InstanceRow,
    at: i64,
) -> DbResult<()> {
    super::instances::insert_in(tx, instance).await?;
    sqlx::query(
        "UPDATE sandboxes SET instance_id = ?, worker_id = ?, placed_at = ?, not_before = NULL,
             create_attempts = create_attempts + 1
         WHERE id = ?",
    )
    .bind(&instance.id)
    .bind(&instance.worker_id)
    .bind(at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A placement that failed undone, to be tried again from `not_before`: its instance removed with
/// it, and why in `reason`. `worker_id` stays, naming the worker last tried.
pub async fn unplace(
    tx: &mut Transaction<'_, Sqlite>,
    row: &SandboxRow,
    reason: &str,
    not_before: i64,
) -> DbResult<()> {
    if let Some(instance) = &row.instance_id {
        super::instances::delete_in(tx, instance).await?;
    }
    sqlx::query(
        "UPDATE sandboxes SET instance_id = NULL, placed_at = NULL,
             not_before = ?, reason = ?
         WHERE id = ?",
    )
    .bind(not_before)
    .bind(reason)
    .bind(&row.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets a sandbox's state; a failed one's instance is removed with it.
pub async fn set_state(
    tx: &mut Transaction<'_, Sqlite>,
    row: &SandboxRow,
    state: &str,
    reason: Option<&str>,
    ready_at: Option<i64>,
) -> DbResult<()> {
    sqlx::query(
        "UPDATE sandboxes SET state = ?, reason = ?, ready_at = COALESCE(?, ready_at) WHERE id = ?",
    )
    .bind(state)
    .bind(reason)
    .bind(ready_at)
    .bind(&row.id)
    .execute(&mut **tx)
    .await?;
    if state == "failed" {
        if let Some(instance) = &row.instance_id {
            super::instances::delete_in(tx, instance).await?;
        }
        sqlx::query(
            "UPDATE sandbox_execs SET state = 'failed', reason = 'its sandbox failed', ended_at = ?
             WHERE sandbox_id = ? AND state = 'queued'",
        )
        .bind(super::now_ms())
        .bind(&row.id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub async fn set_reason(db: &Db, id: &str, reason: &str) -> DbResult<()> {
    sqlx::query("UPDATE sandboxes SET reason = ? WHERE id = ?")
        .bind(reason)
        .bind(id)
        .execute(&db.write)
        .await
        .map(|_| ())
}

/// Deletes the sandbox, its execs and its instance, together; false when there was none.
pub async fn delete(tx: &mut Transaction<'_, Sqlite>, row: &SandboxRow) -> DbResult<bool> {
    if let Some(instance) = &row.instance_id {
        super::instances::delete_in(tx, instance).await?;
    }
    let done = sqlx::query("DELETE FROM sandboxes WHERE id = ?")
        .bind(&row.id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_exec(db: &Db, row: &ExecRow) -> DbResult<()> {
    sqlx::query(&format!(
        "INSERT INTO sandbox_execs ({EXEC_COLUMNS})
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&row.id)
    .bind(&row.sandbox_id)
    .bind(&row.request)
    .bind(&row.state)
    .bind(row.exit_code)
    .bind(&row.stdout)
    .bind(&row.stderr)
    .bind(&row.reason)
    .bind(row.submitted_at)
    .bind(row.ended_at)
    .bind(row.attempt)
    .bind(row.dispatched_at)
    .bind(row.not_before)
    .bind(&row.attempts)
    .execute(&db.write)
    .await
    .map(|_| ())
}

pub async fn exec(db: &Db, id: &str) -> DbResult<Option<ExecRow>> {
    sqlx::query_as(&format!(
        "SELECT {EXEC_COLUMNS} FROM sandbox_execs WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&db.write)
    .await
}

/// A sandbox's execs, newest first.
pub async fn execs(db: &Db, sandbox_id: &str, limit: u32) -> DbResult<Vec<ExecRow>> {
    sqlx::query_as(&format!(
        "SELECT {EXEC_COLUMNS} FROM sandbox_execs WHERE sandbox_id = ?
         ORDER BY submitted_at DESC, id DESC LIMIT ?"
    ))
    .bind(sandbox_id)
    .bind(i64::from(limit))
    .fetch_all(&db.read)
    .await
}

/// The queued execs of every sandbox, oldest first.
pub async fn queued_execs(db: &Db) -> DbResult<Vec<ExecRow>> {
    sqlx::query_as(&format!(
        "SELECT {EXEC_COLUMNS} FROM sandbox_execs WHERE state = 'queued' ORDER BY submitted_at, id"
    ))
    .fetch_all(&db.write)
    .await
}

/// Records that the current attempts of these execs were handed to their workers now (the
/// first time; their report is awaited from then).
pub async fn dispatched(db: &Db, ids: &[String], at: i64) -> DbResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = db.write.begin().await?;
    for id in ids {
        sqlx::query(
            "UPDATE sandbox_execs SET dispatched_at = ?
             WHERE id = ? AND state = 'queued' AND dispatched_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Records the end of a queued exec's current attempt (`row.attempt`, with `row.attempts`
/// already holding it): the exec ends in `row.state`, or, when `retry_at` is given, waits for
/// its next attempt from then. False when that attempt had ended already.
pub async fn end_attempt(db: &Db, row: &ExecRow, retry_at: Option<i64>) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE sandbox_execs SET state = ?, exit_code = ?, stdout = ?, stderr = ?, reason = ?,
             ended_at = ?, attempts = ?, attempt = attempt + ?, not_before = ?,
             dispatched_at = NULL
         WHERE id = ? AND state = 'queued' AND attempt = ?",
    )
    .bind(if retry_at.is_some() {
        "queued"
    } else {
        row.state.as_str()
    })
    .bind(row.exit_code)
    .bind(&row.stdout)
    .bind(&row.stderr)
    .bind(&row.reason)
    .bind(if retry_at.is_some() {
        None
    } else {
        row.ended_at
    })
    .bind(&row.attempts)
    .bind(i64::from(retry_at.is_some()))
    .bind(retry_at)
    .bind(&row.id)
    .bind(row.attempt)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}
