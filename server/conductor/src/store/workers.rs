use super::{Db, DbResult};

/// A worker as stored (read by `load_all`, which also returns its credential hash).
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub ip_address: String,
    pub labels: String,
    pub resources: String,
    pub api_url: Option<String>,
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
    pub api_url: Option<&'a str>,
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

/// Every worker with its credential hash, to load the in-memory registry at start.
pub async fn load_all(db: &Db) -> DbResult<Vec<(WorkerRow, String)>> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, String, String, String, String, String, Option<String>, i64, i64, String)> = sqlx::query_as(
        "SELECT id, name, hostname, ip_address, labels, resources, api_url, registered_at, last_heartbeat_at, credential_hash
         FROM workers ORDER BY id",
    )
    .fetch_all(&db.read)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                name,
                hostname,
                ip_address,
                labels,
                resources,
                api_url,
                registered_at,
                last_heartbeat_at,
                hash,
            )| {
                (
                    WorkerRow {
                        id,
                        name,
                        hostname,
                        ip_address,
                        labels,
                        resources,
                        api_url,
                        registered_at,
                        last_heartbeat_at,
                    },
                    hash,
                )
            },
        )
        .collect())
}

pub async fn insert(
    db: &Db,
    id: &str,
    credential_hash: &str,
    report: &WorkerReport<'_>,
    now: i64,
) -> DbResult<()> {
    let r = report.resources;
    sqlx::query(
        "INSERT INTO workers (id, name, hostname, ip_address, labels, credential_hash,
            cpu_cores, cpu_usage_percent, memory_total_bytes, memory_available_bytes,
            disk_total_bytes, disk_free_bytes, resources, api_url, registered_at, last_heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(report.api_url)
    .bind(now)
    .bind(now)
    .execute(&db.write)
    .await
    .map(|_| ())
}

/// Re-registration of a known worker: everything it reports is taken as the new truth.
pub async fn update_registration(
    db: &Db,
    id: &str,
    report: &WorkerReport<'_>,
    now: i64,
) -> DbResult<()> {
    let r = report.resources;
    sqlx::query(
        "UPDATE workers SET name = ?, hostname = ?, ip_address = ?, labels = ?,
            cpu_cores = ?, cpu_usage_percent = ?, memory_total_bytes = ?, memory_available_bytes = ?,
            disk_total_bytes = ?, disk_free_bytes = ?, resources = ?, api_url = ?, last_heartbeat_at = ?
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
    .bind(report.api_url)
    .bind(now)
    .bind(id)
    .execute(&db.write)
    .await
    .map(|_| ())
}

/// The latest heartbeat of one worker, as the write-behind flush stores it.
pub struct HeartbeatRecord {
    pub id: String,
    pub ip_address: String,
    pub resources: ResourceFigures,
    pub resources_json: String,
    pub at: i64,
}

/// Stores a batch of heartbeats in one transaction (one fsync-free WAL commit for all of them).
/// A worker deleted in the meantime is simply not updated.
pub async fn record_heartbeats(db: &Db, batch: &[HeartbeatRecord]) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    for h in batch {
        let r = h.resources;
        sqlx::query(
            "UPDATE workers SET ip_address = ?,
                cpu_cores = ?, cpu_usage_percent = ?, memory_total_bytes = ?, memory_available_bytes = ?,
                disk_total_bytes = ?, disk_free_bytes = ?, resources = ?, last_heartbeat_at = ?
             WHERE id = ? AND last_heartbeat_at <= ?",
        )
        .bind(&h.ip_address)
        .bind(r.cpu_cores)
        .bind(r.cpu_usage_percent)
        .bind(r.memory_total_bytes)
        .bind(r.memory_available_bytes)
        .bind(r.disk_total_bytes)
        .bind(r.disk_free_bytes)
        .bind(&h.resources_json)
        .bind(h.at)
        .bind(&h.id)
        .bind(h.at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub async fn delete(db: &Db, id: &str) -> DbResult<bool> {
    let done = sqlx::query("DELETE FROM workers WHERE id = ?")
        .bind(id)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}
