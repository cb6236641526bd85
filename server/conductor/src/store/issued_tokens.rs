//! The tokens the conductor signed for users (sessions) and services, and the revocation feed.

use sqlx::{FromRow, Sqlite, Transaction};

use super::{Db, DbResult, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct IssuedTokenRow {
    pub jti: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub name: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: i64,
}

const COLUMNS: &str = "jti, kind, user_id, name, scopes, created_at, expires_at";

/// `expires_at` in Unix seconds (the token's `exp`); `scopes` space-separated (API keys).
pub async fn insert(
    db: &Db,
    jti: &str,
    kind: &str,
    user_id: Option<&str>,
    name: &str,
    scopes: &str,
    expires_at: i64,
) -> DbResult<()> {
    sqlx::query("INSERT INTO issued_tokens (jti, kind, user_id, name, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(jti)
        .bind(kind)
        .bind(user_id)
        .bind(name)
        .bind(scopes)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&db.write)
        .await
        .map(|_| ())
}

/// The name a token was issued under, if it was.
pub async fn name_of(db: &Db, jti: &str) -> DbResult<Option<String>> {
    sqlx::query_scalar("SELECT name FROM issued_tokens WHERE jti = ?")
        .bind(jti)
        .fetch_optional(&db.read)
        .await
}

/// The tokens still valid (neither expired nor revoked), newest first, optionally of one user.
pub async fn list_valid(
    db: &Db,
    user_id: Option<&str>,
    now_secs: i64,
) -> DbResult<Vec<IssuedTokenRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM issued_tokens WHERE revoked_at IS NULL AND expires_at > ? AND (? IS NULL OR user_id = ?)
         ORDER BY created_at DESC LIMIT 1000"
    ))
    .bind(now_secs)
    .bind(user_id)
    .bind(user_id)
    .fetch_all(&db.read)
    .await
}

/// Revokes one token: marks it and appends it to the feed. Returns its expiry, or None if it was
/// unknown or already revoked.
pub async fn revoke(db: &Db, jti: &str) -> DbResult<Option<i64>> {
    let mut tx = db.write.begin().await?;
    let expires_at: Option<i64> =
        sqlx::query_scalar("UPDATE issued_tokens SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL RETURNING expires_at")
            .bind(now_ms())
            .bind(jti)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(exp) = expires_at {
        append_to_feed(&mut tx, jti, exp).await?;
    }
    tx.commit().await?;
    Ok(expires_at)
}

/// Revokes every unexpired session of `user_id` inside `tx`; returns their ids and expiries.
pub async fn revoke_user_sessions(
    tx: &mut Transaction<'_, Sqlite>,
    user_id: &str,
) -> DbResult<Vec<(String, i64)>> {
    let now = now_ms();
    let revoked: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE issued_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?
         RETURNING jti, expires_at",
    )
    .bind(now)
    .bind(user_id)
    .bind(now / 1000)
    .fetch_all(&mut **tx)
    .await?;
    for (jti, exp) in &revoked {
        append_to_feed(tx, jti, *exp).await?;
    }
    Ok(revoked)
}

async fn append_to_feed(
    tx: &mut Transaction<'_, Sqlite>,
    jti: &str,
    expires_at: i64,
) -> DbResult<()> {
    sqlx::query("INSERT INTO revocations (jti, expires_at) VALUES (?, ?)")
        .bind(jti)
        .bind(expires_at)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Revocations after `after` that have not expired, oldest first, at most `limit`.
pub async fn revocations_after(
    db: &Db,
    after: i64,
    now_secs: i64,
    limit: i64,
) -> DbResult<Vec<(i64, String, i64)>> {
    sqlx::query_as("SELECT seq, jti, expires_at FROM revocations WHERE seq > ? AND expires_at > ? ORDER BY seq LIMIT ?")
        .bind(after)
        .bind(now_secs)
        .bind(limit)
        .fetch_all(&db.read)
        .await
}

/// The newest revocation's number (0 before the first).
pub async fn last_revocation(db: &Db) -> DbResult<i64> {
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM revocations")
        .fetch_one(&db.read)
        .await
}

/// Forgets tokens and revocations that expired more than `grace_secs` ago (they are refused by
/// their expiry alone). The feed's numbers still never go back: AUTOINCREMENT does not reuse them.
pub async fn prune_expired(db: &Db, now_secs: i64, grace_secs: i64) -> DbResult<()> {
    let before = now_secs - grace_secs;
    sqlx::query("DELETE FROM issued_tokens WHERE expires_at < ?")
        .bind(before)
        .execute(&db.write)
        .await?;
    sqlx::query("DELETE FROM revocations WHERE expires_at < ?")
        .bind(before)
        .execute(&db.write)
        .await?;
    Ok(())
}
