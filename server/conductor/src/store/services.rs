use sqlx::FromRow;

use super::{Db, DbResult, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct ServiceStateRow {
    pub name: String,
    pub enabled: bool,
    pub updated_at: i64,
}

/// Adds a row for each catalog service that has none yet (disabled); existing state is kept.
pub async fn ensure(db: &Db, names: &[&str]) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    let now = now_ms();
    for name in names {
        sqlx::query("INSERT OR IGNORE INTO services (name, enabled, updated_at) VALUES (?, 0, ?)")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

pub async fn all(db: &Db) -> DbResult<Vec<ServiceStateRow>> {
    sqlx::query_as("SELECT name, enabled, updated_at FROM services").fetch_all(&db.read).await
}

pub async fn get(db: &Db, name: &str) -> DbResult<Option<ServiceStateRow>> {
    sqlx::query_as("SELECT name, enabled, updated_at FROM services WHERE name = ?")
        .bind(name)
        .fetch_optional(&db.read)
        .await
}

/// Sets `enabled` on all of `names` in one transaction.
pub async fn set_enabled(db: &Db, names: &[&str], enabled: bool) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    let now = now_ms();
    for name in names {
        sqlx::query("UPDATE services SET enabled = ?, updated_at = ? WHERE name = ? AND enabled != ?")
            .bind(enabled)
            .bind(now)
            .bind(name)
            .bind(enabled)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
