use sqlx::FromRow;

use super::{Db, DbResult, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct ServiceRow {
    pub name: String,
    pub enabled: bool,
    /// JSON; `None` for built-in services.
    pub definition: Option<String>,
    /// JSON `DeploymentSpec`.
    pub deployment: Option<String>,
    pub load_balancing: String,
    pub updated_at: i64,
}

const COLUMNS: &str = "name, enabled, definition, deployment, load_balancing, updated_at";

/// Adds a row for each built-in service that has none yet (disabled); existing state is kept.
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

pub async fn all(db: &Db) -> DbResult<Vec<ServiceRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM services ORDER BY name"))
        .fetch_all(&db.read)
        .await
}

pub async fn get(db: &Db, name: &str) -> DbResult<Option<ServiceRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM services WHERE name = ?"))
        .bind(name)
        .fetch_optional(&db.read)
        .await
}

/// Inserts a service an admin defined; false if the name is taken.
pub async fn insert_defined(
    db: &Db,
    name: &str,
    definition: &str,
    load_balancing: &str,
) -> DbResult<bool> {
    let done = sqlx::query(
        "INSERT OR IGNORE INTO services (name, enabled, definition, load_balancing, updated_at) VALUES (?, 0, ?, ?, ?)",
    )
    .bind(name)
    .bind(definition)
    .bind(load_balancing)
    .bind(now_ms())
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a service an admin defined, with its instances, in one transaction.
pub async fn delete_defined(db: &Db, name: &str) -> DbResult<bool> {
    let mut tx = db.write.begin().await?;
    sqlx::query("DELETE FROM instances WHERE service = ?")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM services WHERE name = ? AND definition IS NOT NULL")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// One service's new deployment state, written together with the instances placed for it.
pub struct DeploymentUpdate<'a> {
    pub name: &'a str,
    pub enabled: bool,
    pub deployment: Option<&'a str>,
    pub load_balancing: &'a str,
}

pub async fn update_deployments(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    updates: &[DeploymentUpdate<'_>],
    now: i64,
) -> DbResult<()> {
    for u in updates {
        sqlx::query("UPDATE services SET enabled = ?, deployment = ?, load_balancing = ?, updated_at = ? WHERE name = ?")
            .bind(u.enabled)
            .bind(u.deployment)
            .bind(u.load_balancing)
            .bind(now)
            .bind(u.name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
