use sqlx::FromRow;

use super::{Db, DbResult, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, username, password_hash, role, disabled, created_at, updated_at";

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

pub async fn insert(
    db: &Db,
    id: &str,
    username: &str,
    password_hash: &str,
    role: &str,
) -> DbResult<()> {
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

/// A seed's new password and role, with the user's sessions revoked in the same transaction
/// (returned, see [`super::issued_tokens::revoke_user_sessions`]).
pub async fn update_credentials(
    db: &Db,
    id: &str,
    password_hash: &str,
    role: &str,
) -> DbResult<Vec<(String, i64)>> {
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE users SET password_hash = ?, role = ?, updated_at = ? WHERE id = ?")
        .bind(password_hash)
        .bind(role)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let revoked = super::issued_tokens::revoke_user_sessions(&mut tx, id).await?;
    tx.commit().await?;
    Ok(revoked)
}

pub async fn list(db: &Db) -> DbResult<Vec<UserRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
        .fetch_all(&db.read)
        .await
}

/// The admins who can still log in, apart from `except` (the user about to lose that).
pub async fn count_other_enabled_admins(db: &Db, except: &str) -> DbResult<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id <> ?",
    )
    .bind(except)
    .fetch_one(&db.read)
    .await
}

/// Sets role and disabled together; with `revoke_sessions`, the user's sessions are revoked in
/// the same transaction (see [`super::issued_tokens::revoke_user_sessions`]).
pub async fn update_access(
    db: &Db,
    id: &str,
    role: &str,
    disabled: bool,
    revoke_sessions: bool,
) -> DbResult<Vec<(String, i64)>> {
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE users SET role = ?, disabled = ?, updated_at = ? WHERE id = ?")
        .bind(role)
        .bind(disabled)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let revoked = if revoke_sessions {
        super::issued_tokens::revoke_user_sessions(&mut tx, id).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok(revoked)
}

/// A new password hash, and every session of the user revoked, in one transaction.
pub async fn set_password(db: &Db, id: &str, password_hash: &str) -> DbResult<Vec<(String, i64)>> {
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
        .bind(password_hash)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let revoked = super::issued_tokens::revoke_user_sessions(&mut tx, id).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Deletes the user and revokes its sessions in one transaction; false if there was no such user.
pub async fn delete(db: &Db, id: &str) -> DbResult<Option<Vec<(String, i64)>>> {
    let mut tx = db.write.begin().await?;
    let revoked = super::issued_tokens::revoke_user_sessions(&mut tx, id).await?;
    let deleted = sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(revoked))
}
