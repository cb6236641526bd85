//! Jobs, their attempts and queues (see `domain::jobs`).

use sqlx::{FromRow, Sqlite, Transaction};

use super::{Db, DbResult, instances::InstanceRow};

#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: String,
    pub name: Option<String>,
    pub request: String,
    pub request_hash: String,
    pub priority: i64,
    pub queue: String,
    pub idempotency_key: Option<String>,
    pub state: String,
    pub queue_key: i64,
    pub attempts: i64,
    pub not_before: Option<i64>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub submitted_by: String,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const JOB_COLUMNS: &str = "id, name, request, request_hash, priority, queue, idempotency_key, state, queue_key, attempts, not_before, exit_code, reason, submitted_by, submitted_at, started_at, finished_at";

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub job_id: String,
    pub number: i64,
    pub instance_id: String,
    pub worker_id: String,
    pub driver: String,
    pub outcome: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub reason: Option<String>,
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
    pub stdout_bytes: Option<i64>,
    pub stderr_bytes: Option<i64>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

const ATTEMPT_COLUMNS: &str = "job_id, number, instance_id, worker_id, driver, outcome, exit_code, signal, reason, stdout_tail, stderr_tail, stdout_bytes, stderr_bytes, started_at, ended_at";

/// Inserts the job, unless its idempotency key is taken: then the job holding it, unchanged.
pub async fn insert_or_existing(db: &Db, row: &JobRow) -> DbResult<(JobRow, bool)> {
    let mut tx = db.write.begin().await?;
    let done = sqlx::query(&format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (idempotency_key) DO NOTHING"
    ))
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.request)
    .bind(&row.request_hash)
    .bind(row.priority)
    .bind(&row.queue)
    .bind(&row.idempotency_key)
    .bind(&row.state)
    .bind(row.queue_key)
    .bind(row.attempts)
    .bind(row.not_before)
    .bind(row.exit_code)
    .bind(&row.reason)
    .bind(&row.submitted_by)
    .bind(row.submitted_at)
    .bind(row.started_at)
    .bind(row.finished_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        tx.commit().await?;
        return Ok((row.clone(), true));
    }
    let existing: JobRow = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?"
    ))
    .bind(&row.idempotency_key)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((existing, false))
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<JobRow>> {
    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

/// What a listing asks for; every field narrows it.
#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    pub state: Option<&'a str>,
    pub queue: Option<&'a str>,
    pub submitted_after: Option<i64>,
    pub submitted_before: Option<i64>,
    /// The (submitted_at, id) of the last job of the previous page.
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// Jobs, newest first.
pub async fn list(db: &Db, f: &ListFilter<'_>) -> DbResult<Vec<JobRow>> {
    let (before_at, before_id) = f.before.clone().unwrap_or((i64::MAX, String::new()));
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2)
           AND (?3 IS NULL OR submitted_at >= ?3) AND (?4 IS NULL OR submitted_at < ?4)
           AND (submitted_at < ?5 OR (submitted_at = ?5 AND (?6 = '' OR id < ?6)))
         ORDER BY submitted_at DESC, id DESC LIMIT ?7"
    ))
    .bind(f.state)
    .bind(f.queue)
    .bind(f.submitted_after)
    .bind(f.submitted_before)
    .bind(before_at)
    .bind(before_id)
    .bind(i64::from(f.limit))
    .fetch_all(&db.read)
    .await
}

/// Queued jobs whose backoff (if any) is over at `now`, in queue order, leaving out the `full`
/// queues (at their concurrency limit), so they never fill a pass.
pub async fn queued_due(db: &Db, now: i64, full: &[String], limit: u32) -> DbResult<Vec<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE state = 'queued' AND (not_before IS NULL OR not_before <= ?)
           AND queue NOT IN (SELECT value FROM json_each(?))
         ORDER BY queue_key, id LIMIT ?"
    ))
    .bind(now)
    .bind(serde_json::to_string(full).unwrap_or_else(|_| "[]".into()))
    .bind(i64::from(limit))
    .fetch_all(&db.write)
    .await
}

/// The running attempts with their jobs, in one query.
pub async fn running(db: &Db) -> DbResult<Vec<(AttemptRow, JobRow)>> {
    let attempts: Vec<AttemptRow> = sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM job_attempts WHERE outcome = 'running' ORDER BY job_id"
    ))
    .fetch_all(&db.write)
    .await?;
    let jobs: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN
             (SELECT job_id FROM job_attempts WHERE outcome = 'running') ORDER BY id"
    ))
    .fetch_all(&db.write)
    .await?;
    let by_id: std::collections::HashMap<&str, &JobRow> =
        jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    Ok(attempts
        .into_iter()
        .filter_map(|a| {
            let job = (*by_id.get(a.job_id.as_str())?).clone();
            Some((a, job))
        })
        .collect())
}

/// The state and last report time of each running attempt's instance, by instance id (an
/// attempt whose instance is missing had it removed from under it).
pub async fn running_instances(
    db: &Db,
) -> DbResult<std::collections::HashMap<String, (String, i64)>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, state, updated_at FROM instances WHERE id IN
             (SELECT instance_id FROM job_attempts WHERE outcome = 'running')",
    )
    .fetch_all(&db.write)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, state, at)| (id, (state, at)))
        .collect())
}

/// Undoes the placement of an attempt its worker never started (the worker was lost first): the
/// attempt and its instance go, and the job is queued again without the attempt counted.
pub async fn unplace(
    tx: &mut Transaction<'_, Sqlite>,
    a: &AttemptRow,
    reason: &str,
) -> DbResult<bool> {
    let done = sqlx::query(
        "DELETE FROM job_attempts WHERE job_id = ? AND number = ? AND outcome = 'running'",
    )
    .bind(&a.job_id)
    .bind(a.number)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    super::instances::delete_in(tx, &a.instance_id).await?;
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = attempts - 1, reason = ?
         WHERE id = ? AND state = 'running'",
    )
    .bind(reason)
    .bind(&a.job_id)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// How many attempts of each queue run now.
pub async fn running_per_queue(db: &Db) -> DbResult<Vec<(String, i64)>> {
    sqlx::query_as("SELECT queue, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY queue")
        .fetch_all(&db.write)
        .await
}

/// The attempt that runs as instance `instance_id`, with its job.
pub async fn attempt_of_instance(
    db: &Db,
    instance_id: &str,
) -> DbResult<Option<(AttemptRow, JobRow)>> {
    let Some(a): Option<AttemptRow> = sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM job_attempts WHERE instance_id = ?"
    ))
    .bind(instance_id)
    .fetch_optional(&db.write)
    .await?
    else {
        return Ok(None);
    };
    let job = sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
        .bind(&a.job_id)
        .fetch_one(&db.write)
        .await?;
    Ok(Some((a, job)))
}

pub async fn attempts(db: &Db, job_id: &str) -> DbResult<Vec<AttemptRow>> {
    sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM job_attempts WHERE job_id = ? ORDER BY number"
    ))
    .bind(job_id)
    .fetch_all(&db.read)
    .await
}

pub async fn last_attempt(db: &Db, job_id: &str) -> DbResult<Option<AttemptRow>> {
    sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM job_attempts WHERE job_id = ? ORDER BY number DESC LIMIT 1"
    ))
    .bind(job_id)
    .fetch_optional(&db.read)
    .await
}

/// Starts attempts: the instance that runs each, the attempt, and its job now running, together.
pub async fn start_attempts(
    tx: &mut Transaction<'_, Sqlite>,
    started: &[(AttemptRow, InstanceRow)],
) -> DbResult<()> {
    for (attempt, instance) in started {
        super::instances::insert_in(tx, instance).await?;
        sqlx::query(&format!(
            "INSERT INTO job_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&attempt.job_id)
        .bind(attempt.number)
        .bind(&attempt.instance_id)
        .bind(&attempt.worker_id)
        .bind(&attempt.driver)
        .bind(&attempt.outcome)
        .bind(attempt.exit_code)
        .bind(attempt.signal)
        .bind(&attempt.reason)
        .bind(&attempt.stdout_tail)
        .bind(&attempt.stderr_tail)
        .bind(attempt.stdout_bytes)
        .bind(attempt.stderr_bytes)
        .bind(attempt.started_at)
        .bind(attempt.ended_at)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = ?, not_before = NULL, reason = NULL,
                 started_at = COALESCE(started_at, ?)
             WHERE id = ? AND state = 'queued'",
        )
        .bind(attempt.number)
        .bind(attempt.started_at)
        .bind(&attempt.job_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Ends a running attempt (and deletes its instance); false when it had ended already.
pub async fn end_attempt(tx: &mut Transaction<'_, Sqlite>, a: &AttemptRow) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE job_attempts SET outcome = ?, exit_code = ?, signal = ?, reason = ?,
             stdout_tail = ?, stderr_tail = ?, stdout_bytes = ?, stderr_bytes = ?, ended_at = ?
         WHERE job_id = ? AND number = ? AND outcome = 'running'",
    )
    .bind(&a.outcome)
    .bind(a.exit_code)
    .bind(a.signal)
    .bind(&a.reason)
    .bind(&a.stdout_tail)
    .bind(&a.stderr_tail)
    .bind(a.stdout_bytes)
    .bind(a.stderr_bytes)
    .bind(a.ended_at)
    .bind(&a.job_id)
    .bind(a.number)
    .execute(&mut **tx)
    .await?;
    super::instances::delete_in(tx, &a.instance_id).await?;
    Ok(done.rows_affected() == 1)
}

/// A job's new state after an attempt ended or a cancel (only from a state that is not final).
#[derive(Debug)]
pub struct JobUpdate<'a> {
    pub id: &'a str,
    pub state: &'a str,
    pub not_before: Option<i64>,
    pub exit_code: Option<i64>,
    pub reason: Option<&'a str>,
    pub finished_at: Option<i64>,
}

pub async fn update_job(tx: &mut Transaction<'_, Sqlite>, u: &JobUpdate<'_>) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET state = ?, not_before = ?, exit_code = ?, reason = ?, finished_at = ?
         WHERE id = ? AND state IN ('queued', 'running')",
    )
    .bind(u.state)
    .bind(u.not_before)
    .bind(u.exit_code)
    .bind(u.reason)
    .bind(u.finished_at)
    .bind(u.id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Per queue: (running, queued) jobs.
pub async fn queue_counts(db: &Db) -> DbResult<Vec<(String, i64, i64)>> {
    sqlx::query_as(
        "SELECT queue, SUM(state = 'running'), SUM(state = 'queued') FROM jobs
         WHERE state IN ('queued', 'running') GROUP BY queue",
    )
    .fetch_all(&db.write)
    .await
}

pub async fn queue_limits(db: &Db) -> DbResult<Vec<(String, Option<i64>)>> {
    sqlx::query_as("SELECT name, concurrency_limit FROM job_queues ORDER BY name")
        .fetch_all(&db.write)
        .await
}

pub async fn set_queue(db: &Db, name: &str, limit: Option<i64>, now: i64) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO job_queues (name, concurrency_limit, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit,
             updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(limit)
    .bind(now)
    .execute(&db.write)
    .await
    .map(|_| ())
}

pub async fn delete_queue(db: &Db, name: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM job_queues WHERE name = ?")
        .bind(name)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets finished jobs (with their attempts) that finished before `before`, and beyond the
/// newest `keep` finished ones. Returns how many.
pub async fn prune(db: &Db, before: i64, keep: u32) -> DbResult<u64> {
    let old = sqlx::query("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?")
        .bind(before)
        .execute(&db.write)
        .await?
        .rows_affected();
    let extra = sqlx::query(
        "DELETE FROM jobs WHERE finished_at IS NOT NULL AND id NOT IN
             (SELECT id FROM jobs WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?)",
    )
    .bind(i64::from(keep))
    .execute(&db.write)
    .await?
    .rows_affected();
    Ok(old + extra)
}
