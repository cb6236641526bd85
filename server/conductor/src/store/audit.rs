//! The audit trail: one row per change asked of the conductor, whatever its result.

use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: i64,
    pub request_id: String,
    pub client_ip: Option<String>,
}

/// Appends `rows` in one transaction (the audit log writes in batches).
pub async fn insert_many(db: &Db, rows: &[AuditRow]) -> DbResult<()> {
    let columns = [
        "at",
        "actor",
        "action",
        "target",
        "status",
        "request_id",
        "client_ip",
    ];
    aerekos_common::db::insert_rows(db, "audit_events", &columns, rows, |values, r| {
        values
            .push_bind(r.at)
            .push_bind(&r.actor)
            .push_bind(&r.action)
            .push_bind(&r.target)
            .push_bind(r.status)
            .push_bind(&r.request_id)
            .push_bind(&r.client_ip);
    })
    .await
}

/// What a listing is narrowed to; `before` pages backwards from an id.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_prefix: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub failed_only: bool,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(db: &Db, f: &AuditFilter) -> DbResult<Vec<AuditRow>> {
    sqlx::query_as(
        "SELECT id, at, actor, action, target, status, request_id, client_ip FROM audit_events
         WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2)
           AND (?3 IS NULL OR substr(target, 1, length(?3)) = ?3)
           AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
           AND (?6 = 0 OR status >= 400) AND (?7 IS NULL OR id < ?7)
         ORDER BY id DESC LIMIT ?8",
    )
    .bind(&f.actor)
    .bind(&f.action)
    .bind(&f.target_prefix)
    .bind(f.since_ms)
    .bind(f.until_ms)
    .bind(f.failed_only)
    .bind(f.before)
    .bind(f.limit)
    .fetch_all(&db.read)
    .await
}

pub async fn delete_before(db: &Db, before_ms: i64) -> DbResult<()> {
    sqlx::query("DELETE FROM audit_events WHERE at < ?")
        .bind(before_ms)
        .execute(&db.write)
        .await
        .map(|_| ())
}
