//! SQLite state for every aerekos server: one file, WAL, embedded migrations.
//!
//! SQLite allows one writer at a time, so writes go through a one-connection pool (they queue in
//! process instead of spinning on SQLITE_BUSY) and reads through a pool of their own (WAL lets them
//! run beside the writer).

use std::{path::Path, str::FromStr, time::Duration};

use chrono::{DateTime, TimeZone as _, Utc};
use sqlx::{
    migrate::Migrator,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

pub type DbResult<T> = Result<T, sqlx::Error>;

#[derive(Clone)]
pub struct Db {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) the database file and applies `migrations`.
    pub async fn open(path: &Path, migrations: &Migrator) -> DbResult<Self> {
        Self::open_with(path, migrations, false).await
    }

    /// [`Db::open`] for a database whose removed rows must not linger in its free pages (secret
    /// values): SQLite's `secure_delete` overwrites what a delete or update frees.
    pub async fn open_secure(path: &Path, migrations: &Migrator) -> DbResult<Self> {
        Self::open_with(path, migrations, true).await
    }

    async fn open_with(path: &Path, migrations: &Migrator, secure_delete: bool) -> DbResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // WAL + synchronous=NORMAL: a committed transaction survives a process crash; a power cut
        // can lose the last moments of commits but never corrupts the file (SQLite's documented
        // trade).
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let options = if secure_delete {
            options.pragma("secure_delete", "ON")
        } else {
            options
        };
        // No ping before each use of a pooled connection (sqlx's default): a connection to a local
        // file does not go stale, and the ping is one more round trip to the connection's thread
        // per query, which profiling showed as a large part of a read's CPU.
        let pool = || SqlitePoolOptions::new().test_before_acquire(false);
        let write = pool()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        migrations.run(&write).await?;
        let read = pool()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { read, write })
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Rows per `INSERT` statement in [`insert_rows`]: well under SQLite's limit of 32,766 bound
/// parameters for the widest table that uses it.
const ROWS_PER_INSERT: usize = 256;

/// Appends `rows` to `table` (`columns`, bound for each row by `bind`) in one transaction, as
/// multi-row `INSERT`s: one statement per [`ROWS_PER_INSERT`] rows rather than one per row, since
/// each statement is a round trip to SQLite's connection thread (the larger part of an audited
/// request's CPU when profiled). The audit logs write their batches with it.
pub async fn insert_rows<'r, T>(
    db: &Db,
    table: &str,
    columns: &[&str],
    rows: &'r [T],
    bind: impl Fn(&mut sqlx::query_builder::Separated<'_, 'r, sqlx::Sqlite, &'static str>, &'r T),
) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert =
            sqlx::QueryBuilder::new(format!("INSERT INTO {table} ({}) ", columns.join(", ")));
        insert.push_values(chunk, |mut values, row| bind(&mut values, row));
        // Not cached: a batch's statement text differs with its size, and would crowd out the
        // connection's prepared statements that are used again.
        insert.build().persistent(false).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Now, as the Unix milliseconds every timestamp column holds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A timestamp column (Unix milliseconds) as a UTC time.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
