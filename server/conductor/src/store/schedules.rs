//! Schedules and the history of their fires (see `domain::schedules`).

use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, FromRow)]
pub struct ScheduleRow {
    pub id: String,
    pub name: String,
    pub request: String,
    pub paused: bool,
    pub anchor_at: i64,
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    pub last_job_id: Option<String>,
    pub waiting_fire_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, name, request, paused, anchor_at, next_fire_at, last_fire_at, last_job_id, waiting_fire_at, created_by, created_at, updated_at";

#[derive(Debug, Clone, FromRow)]
pub struct FireRow {
    pub seq: i64,
    pub schedule_id: String,
    pub scheduled_for: i64,
    pub fired_at: i64,
    pub outcome: String,
    pub job_id: Option<String>,
    pub http_status: Option<i64>,
    pub missed: i64,
    pub detail: Option<String>,
}

/// How many fires of each schedule are kept.
pub const FIRES_KEPT: i64 = 1000;

/// Inserts a schedule; false when the name is taken.
pub async fn insert(db: &Db, row: &ScheduleRow) -> DbResult<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO schedules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO NOTHING"
    ))
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.request)
    .bind(row.paused)
    .bind(row.anchor_at)
    .bind(row.next_fire_at)
    .bind(row.last_fire_at)
    .bind(&row.last_job_id)
    .bind(row.waiting_fire_at)
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces what the schedule asks for, its pause and its clock.
pub async fn update(db: &Db, row: &ScheduleRow) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE schedules SET request = ?, paused = ?, anchor_at = ?, next_fire_at = ?,
             waiting_fire_at = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&row.request)
    .bind(row.paused)
    .bind(row.anchor_at)
    .bind(row.next_fire_at)
    .bind(row.waiting_fire_at)
    .bind(row.updated_at)
    .bind(&row.id)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn by_name(db: &Db, name: &str) -> DbResult<Option<ScheduleRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM schedules WHERE name = ?"))
        .bind(name)
        .fetch_optional(&db.read)
        .await
}

pub async fn all(db: &Db) -> DbResult<Vec<ScheduleRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM schedules ORDER BY name"))
        .fetch_all(&db.read)
        .await
}

/// Schedules due at `now`, or with a fire waiting for its previous job.
pub async fn due(db: &Db, now: i64) -> DbResult<Vec<ScheduleRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM schedules
         WHERE paused = 0 AND (next_fire_at <= ? OR waiting_fire_at IS NOT NULL)
         ORDER BY next_fire_at"
    ))
    .bind(now)
    .fetch_all(&db.write)
    .await
}

pub async fn delete(db: &Db, name: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM schedules WHERE name = ?")
        .bind(name)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// What one pass decided for a schedule: its clock moves on, and fires are recorded, together.
pub struct Advance<'a> {
    pub id: &'a str,
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    pub last_job_id: Option<&'a str>,
    pub waiting_fire_at: Option<i64>,
    pub fires: Vec<FireRow>,
}

pub async fn advance(db: &Db, a: &Advance<'_>) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query(
        "UPDATE schedules SET next_fire_at = ?, last_fire_at = COALESCE(?, last_fire_at),
             last_job_id = COALESCE(?, last_job_id), waiting_fire_at = ? WHERE id = ?",
    )
    .bind(a.next_fire_at)
    .bind(a.last_fire_at)
    .bind(a.last_job_id)
    .bind(a.waiting_fire_at)
    .bind(a.id)
    .execute(&mut *tx)
    .await?;
    for f in &a.fires {
        sqlx::query(
            "INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, outcome, job_id,
                 http_status, missed, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&f.schedule_id)
        .bind(f.scheduled_for)
        .bind(f.fired_at)
        .bind(&f.outcome)
        .bind(&f.job_id)
        .bind(f.http_status)
        .bind(f.missed)
        .bind(&f.detail)
        .execute(&mut *tx)
        .await?;
    }
    if !a.fires.is_empty() {
        sqlx::query(
            "DELETE FROM schedule_fires WHERE schedule_id = ?1 AND seq <=
                 (SELECT seq FROM schedule_fires WHERE schedule_id = ?1
                  ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )
        .bind(a.id)
        .bind(FIRES_KEPT)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// A schedule's fires, newest first.
pub async fn fires(db: &Db, schedule_id: &str, limit: u32) -> DbResult<Vec<FireRow>> {
    sqlx::query_as(
        "SELECT seq, schedule_id, scheduled_for, fired_at, outcome, job_id, http_status, missed, detail
         FROM schedule_fires WHERE schedule_id = ? ORDER BY seq DESC LIMIT ?",
    )
    .bind(schedule_id)
    .bind(i64::from(limit))
    .fetch_all(&db.read)
    .await
}
