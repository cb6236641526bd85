use sqlx::FromRow;

use super::{Db, DbResult};

#[derive(Debug, Clone, FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub ip_address: String,
    pub labels: String,
    pub resources: String,
    pub registered_at: i64,
    pub last_heartbeat_at: i64,
}

/// What a worker reports about itself, flattened for the columns.
pub struct WorkerReport<'a> {
    pub name: &'a str,
    pub hostname: &'a str,
    pub ip_address: &'a str,
    pub labels_json: &'a str,
    pub resources: ResourceFigures,
    pub resources_json: &'a str,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceFigures {
    pub cpu_cores: i64,
    pub cpu_usage_percent: f64,
    pub memory_total_bytes: i64,
    pub memory_available_bytes: i64,
    pub disk_total_bytes: i64,
    pub disk_free_bytes: i64,
}

const COLUMNS: &str = "id, name, hostname, ip_address, labels, resources, registered_at, last_heartbeat_at";

pub async fn find(db: &Db, id: &str) -> DbResult<Option<WorkerRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM workers WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

pub async fn credential_hash(db: &Db, id: &str) -> DbResult<Option<String>> {
    sqlx::query_scalar("SELECT credential_hash FROM workers WHERE id = ?")
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

/// Workers ordered by id, after `after_id`; `live_since` keeps those heard from since then,
/// `lost_before` those silent since then.
pub async fn list(
    db: &Db,
    after_id: Option<&str>,
    live_since: Option<i64>,
    lost_before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<WorkerRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM workers
         WHERE (?1 IS NULL OR id > ?1)
           AND (?2 IS NULL OR last_heartbeat_at >= ?2)
           AND (?3 IS NULL OR last_heartbeat_at < ?3)
         ORDER BY id LIMIT ?4"
    ))
    .bind(after_id)
    .bind(live_since)
    .bind(lost_before)
    .bind(limit)
    .fetch_all(&db.read)
    .await
}

pub async fn insert(db: &Db, id: &str, credential_hash: &str, report: &WorkerReport<'_>, now: i64) -> DbResult<()> {
    let r = report.resources;
    sqlx::query(
        "INSERT INTO workers (id, name, hostname, ip_address, labels, credential_hash,
            cpu_cores, cpu_usage_percent, memory_total_bytes, memory_available_bytes,
            disk_total_bytes, disk_free_bytes, resources, registered_at, last_heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(report.name)
    .bind(report.hostname)
    .bind(report.ip_address)
    .bind(report.labels_json)
    .bind(credential_hash)
    .bind(r.cpu_cores)
    .bind(r.cpu_usage_percent)
    .bind(r.memory_total_bytes)
    .bind(r.memory_available_bytes)
    .bind(r.disk_total_bytes)
    .bind(r.disk_free_bytes)
    .bind(report.resources_json)
    .bind(now)
    .bind(now)
    .execute(&db.write)
    .await
    .map(|_| ())
}

/// Re-registration of a known worker: everything it reports is taken as the new truth.
pub async fn update_registration(db: &Db, id: &str, report: &WorkerReport<'_>, now: i64) -> DbResult<()> {
    let r = report.resources;
    sqlx::query(
        "UPDATE workers SET name = ?, hostname = ?, ip_address = ?, labels = ?,
            cpu_cores = ?, cpu_usage_percent = ?, memory_total_bytes = ?, memory_available_bytes = ?,
            disk_total_bytes = ?, disk_free_bytes = ?, resources = ?, last_heartbeat_at = ?
         WHERE id = ?",
    )
    .bind(report.name)
    .bind(report.hostname)
    .bind(report.ip_address)
    .bind(report.labels_json)
    .bind(r.cpu_cores)
    .bind(r.cpu_usage_percent)
    .bind(r.memory_total_bytes)
    .bind(r.memory_available_bytes)
    .bind(r.disk_total_bytes)
    .bind(r.disk_free_bytes)
    .bind(report.resources_json)
    .bind(now)
    .bind(id)
    .execute(&db.write)
    .await
    .map(|_| ())
}

/// The heartbeat hot path: one statement that both checks the credential and records the report.
/// Returns false when no worker has this id and credential.
pub async fn record_heartbeat(
    db: &Db,
    id: &str,
    credential_hash: &str,
    ip_address: Option<&str>,
    resources: ResourceFigures,
    resources_json: &str,
    now: i64,
) -> DbResult<bool> {
    let r = resources;
    let done = sqlx::query(
        "UPDATE workers SET ip_address = COALESCE(?, ip_address),
            cpu_cores = ?, cpu_usage_percent = ?, memory_total_bytes = ?, memory_available_bytes = ?,
            disk_total_bytes = ?, disk_free_bytes = ?, resources = ?, last_heartbeat_at = ?
         WHERE id = ? AND credential_hash = ?",
    )
    .bind(ip_address)
    .bind(r.cpu_cores)
    .bind(r.cpu_usage_percent)
    .bind(r.memory_total_bytes)
    .bind(r.memory_available_bytes)
    .bind(r.disk_total_bytes)
    .bind(r.disk_free_bytes)
    .bind(resources_json)
    .bind(now)
    .bind(id)
    .bind(credential_hash)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(db: &Db, id: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM workers WHERE id = ?").bind(id).execute(&db.write).await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct Totals {
    pub workers: i64,
    pub cpu_cores: i64,
    /// Average usage weighted by cores.
    pub cpu_usage_percent: f64,
    pub memory_total_bytes: i64,
    pub memory_available_bytes: i64,
    pub disk_total_bytes: i64,
    pub disk_free_bytes: i64,
}

/// Sums over workers heard from since `live_since`.
pub async fn totals(db: &Db, live_since: i64) -> DbResult<Totals> {
    sqlx::query_as(
        "SELECT COUNT(*) AS workers,
                COALESCE(SUM(cpu_cores), 0) AS cpu_cores,
                COALESCE(SUM(cpu_usage_percent * cpu_cores) / NULLIF(SUM(cpu_cores), 0), 0.0) AS cpu_usage_percent,
                COALESCE(SUM(memory_total_bytes), 0) AS memory_total_bytes,
                COALESCE(SUM(memory_available_bytes), 0) AS memory_available_bytes,
                COALESCE(SUM(disk_total_bytes), 0) AS disk_total_bytes,
                COALESCE(SUM(disk_free_bytes), 0) AS disk_free_bytes
         FROM workers WHERE last_heartbeat_at >= ?",
    )
    .bind(live_since)
    .fetch_one(&db.read)
    .await
}

pub async fn count(db: &Db) -> DbResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM workers").fetch_one(&db.read).await
}
