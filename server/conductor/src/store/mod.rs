//! Repositories: SQL in, rows out, no business rules. Every write that belongs with another is one
//! transaction.
//!
//! SQLite allows one writer at a time, so writes go through a one-connection pool (they queue in
//! process instead of spinning on SQLITE_BUSY) and reads through a pool of their own (WAL lets them
//! run beside the writer).

pub mod services;
pub mod tokens;
pub mod users;
pub mod workers;

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub type DbResult<T> = Result<T, sqlx::Error>;

#[derive(Clone)]
pub struct Db {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) the database file and applies the embedded migrations.
    pub async fn open(path: &Path) -> DbResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // WAL + synchronous=NORMAL: a committed transaction survives a process crash; a power cut
        // can lose the last moments of commits but never corrupts the file (SQLite's documented
        // trade, and what lets heartbeats reach thousands per second).
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations").run(&write).await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        Ok(Self { read, write })
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Now, as the Unix milliseconds every timestamp column holds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
