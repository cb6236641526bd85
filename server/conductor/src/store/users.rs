use sqlx::FromRow;

use super::{Db, DbResult, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, username, password_hash, role, created_at";

pub async fn find_by_username(db: &Db, username: &str) -> DbResult<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE username = ?"))
        .bind(username)
        .fetch_optional(&db.read)
        .await
}

pub async fn find_by_id(db: &Db, id: &str) -> DbResult<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = ?"))
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

pub async fn insert(db: &Db, id: &str, username: &str, password_hash: &str, role: &str) -> DbResult<()> {
    let now = now_ms();
    sqlx::query("INSERT INTO users (id, username, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now)
        .bind(now)
        .execute(&db.write)
        .await
        .map(|_| ())
}

pub async fn update_credentials(db: &Db, id: &str, password_hash: &str, role: &str) -> DbResult<()> {
    sqlx::query("UPDATE users SET password_hash = ?, role = ?, updated_at = ? WHERE id = ?")
        .bind(password_hash)
        .bind(role)
        .bind(now_ms())
        .bind(id)
        .execute(&db.write)
        .await
        .map(|_| ())
}
