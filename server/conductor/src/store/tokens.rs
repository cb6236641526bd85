use super::{Db, DbResult, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegistrationTokenRow {
    pub token: String,
    pub created_at: i64,
}

pub async fn get(db: &Db) -> DbResult<Option<RegistrationTokenRow>> {
    sqlx::query_as("SELECT token, created_at FROM registration_token WHERE id = 1")
        .fetch_optional(&db.read)
        .await
}

/// Sets the token, replacing any previous one (which stops working at once).
pub async fn put(db: &Db, token: &str) -> DbResult<RegistrationTokenRow> {
    let created_at = now_ms();
    sqlx::query(
        "INSERT INTO registration_token (id, token, created_at) VALUES (1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET token = excluded.token, created_at = excluded.created_at",
    )
    .bind(token)
    .bind(created_at)
    .execute(&db.write)
    .await?;
    Ok(RegistrationTokenRow {
        token: token.to_owned(),
        created_at,
    })
}

/// Creates the token only if there is none (first start).
pub async fn insert_if_missing(db: &Db, token: &str) -> DbResult<()> {
    sqlx::query("INSERT OR IGNORE INTO registration_token (id, token, created_at) VALUES (1, ?, ?)")
        .bind(token)
        .bind(now_ms())
        .execute(&db.write)
        .await
        .map(|_| ())
}
