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

pub async fn by_id(db: &Db, id: &str) -> DbResult<Option<ScheduleRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM schedules WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.write)
        .await
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
    /// The schedule's `updated_at` when the pass read it.
    pub seen_updated_at: i64,
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    pub last_job_id: Option<&'a str>,
    pub waiting_fire_at: Option<i64>,
    pub fires: Vec<FireRow>,
}

pub async fn advance(db: &Db, a: &Advance<'_>) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query(
        "UPDATE schedules SET last_fire_at = COALESCE(?, last_fire_at),
             last_job_id = COALESCE(?, last_job_id) WHERE id = ?",
    )
    .bind(a.last_fire_at)
    .bind(a.last_job_id)
    .bind(a.id)
    .execute(&mut *tx)
    .await?;
    // The clock moves on only if nobody replaced, paused or resumed the schedule while it fired:
    // such a change set the clock itself, from what the schedule now asks.
    sqlx::query(
        "UPDATE schedules SET next_fire_at = ?, waiting_fire_at = ? WHERE id = ? AND updated_at = ?",
    )
    .bind(a.next_fire_at)
    .bind(a.waiting_fire_at)
    .bind(a.id)
    .bind(a.seen_updated_at)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(schedule_id: &str, at: i64) -> FireRow {
        FireRow {
            seq: 0,
            schedule_id: schedule_id.into(),
            scheduled_for: at,
            fired_at: at,
            outcome: "submitted".into(),
            job_id: None,
            http_status: None,
            missed: 0,
            detail: None,
        }
    }

    /// A fire that took a while (a slow service call) must not undo an edit made meanwhile: the
    /// fire is recorded, but the clock the edit set stays.
    #[tokio::test]
    async fn a_fire_does_not_move_the_clock_of_a_schedule_edited_while_it_ran() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("c.db"), &super::super::MIGRATIONS)
            .await
            .unwrap();
        let mut row = ScheduleRow {
            id: "s1".into(),
            name: "nightly".into(),
            request: "{}".into(),
            paused: false,
            anchor_at: 0,
            next_fire_at: Some(1_000),
            last_fire_at: None,
            last_job_id: None,
            waiting_fire_at: None,
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 10,
        };
        assert!(insert(&db, &row).await.unwrap());
        // Edited (a new clock) after the pass read it at updated_at 10.
        row.next_fire_at = Some(50_000);
        row.updated_at = 11;
        assert!(update(&db, &row).await.unwrap());
        let stale = Advance {
            id: "s1",
            seen_updated_at: 10,
            next_fire_at: Some(2_000),
            last_fire_at: Some(1_000),
            last_job_id: None,
            waiting_fire_at: None,
            fires: vec![fire("s1", 1_000)],
        };
        advance(&db, &stale).await.unwrap();
        let now = by_name(&db, "nightly").await.unwrap().unwrap();
        assert_eq!(now.next_fire_at, Some(50_000), "the edit's clock stays");
        assert_eq!(now.last_fire_at, Some(1_000), "the fire is still recorded");
        assert_eq!(fires(&db, "s1", 10).await.unwrap().len(), 1);
        // A pass that saw the current row moves the clock on.
        let current = Advance {
            seen_updated_at: 11,
            fires: vec![fire("s1", 50_000)],
            next_fire_at: Some(60_000),
            ..stale
        };
        advance(&db, &current).await.unwrap();
        let now = by_name(&db, "nightly").await.unwrap().unwrap();
        assert_eq!(now.next_fire_at, Some(60_000));
    }
}
