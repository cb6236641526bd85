//! `init snapshot-sqlite <database> <copy>`: copies a SQLite database online (`VACUUM INTO`, one
//! read transaction; the service keeps writing), run by the worker inside the guest when it backs
//! up the guest's volume (see the worker's `backup.rs`, which copies databases on other drivers'
//! volumes the same way).
//!
//! Why inside: the volume reaches the guest over 9p, and QEMU's 9p server does not pass a
//! guest's file locks on to the host, nor does the guest's shared memory (a WAL database's
//! `-shm`) reach the host's. The worker's own SQLite would read the database without the
//! service's locks; the guest's is the only one that sees them.

use std::time::Duration;

use sqlx::{ConnectOptions as _, sqlite::SqliteConnectOptions};

/// How long the copy waits for a writer's lock (as the worker's own copy does).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(database: &str, copy: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(async {
            let mut conn = SqliteConnectOptions::new()
                .filename(database)
                .create_if_missing(false)
                .busy_timeout(BUSY_TIMEOUT)
                .connect()
                .await?;
            sqlx::query("VACUUM INTO ?")
                .bind(copy)
                .execute(&mut conn)
                .await?;
            sqlx::Connection::close(conn).await
        })
        .map_err(|e| format!("{database}: {e}"))
}
