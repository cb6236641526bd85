//! Recent value reads' rows (sealed, never plaintext), so reading a secret again costs no trip to
//! SQLite's connection thread, which profiling showed as the larger part of a read's CPU.
//!
//! Exact, not timed: this process is the database's only writer (secrets_manager runs one
//! instance), and every write goes through [`ReadCache::writing`], whose guard empties the cache
//! once the write is over (committed or not). A read keeps what it found only if no write ended
//! since it began, so a row read before a commit is never kept after it.
//!
//! A write whose request was dropped (its client went away) drops its guard early, while SQLite's
//! thread may still run the statement or `COMMIT` it was sent. So every guard also settles: until
//! a `SELECT 1` on the (one) writer connection has run behind whatever the write sent, the cache
//! takes no new rows, and when it has, the cache empties again.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use aerekos_common::db::Db;

use crate::store::ReadRow;

/// How many rows are kept at most, and how many sealed bytes in all (values are up to
/// `MAX_VALUE_BYTES` each); past either, the cache starts empty again.
const MAX_ROWS: usize = 1024;
const MAX_SEALED_BYTES: usize = 16 * 1024 * 1024;

/// What a read asked for: the secret, and a version or else a label.
type ReadKey = (String, Option<i64>, String);

#[derive(Default, Clone)]
pub struct ReadCache(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Counts writes that ended (each guard ends its write twice: when dropped, and when settled).
    writes_ended: AtomicU64,
    /// Guards dropped whose writes have not settled yet: no row is kept meanwhile.
    unsettled: AtomicU64,
    rows: Mutex<Rows>,
}

#[derive(Default)]
struct Rows {
    by_key: HashMap<ReadKey, ReadRow>,
    sealed_bytes: usize,
}

impl Inner {
    fn end_write(&self) {
        self.writes_ended.fetch_add(1, Ordering::SeqCst);
        let mut rows = self.rows.lock().expect("read cache lock");
        rows.clear();
    }
}

impl Rows {
    fn clear(&mut self) {
        self.by_key.clear();
        self.sealed_bytes = 0;
    }
}

/// Marks a write in progress: when dropped, the write is over and the cache empties.
pub struct Writing<'a> {
    cache: &'a ReadCache,
    db: &'a Db,
}

impl std::ops::Deref for Writing<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let inner = self.cache.0.clone();
        inner.unsettled.fetch_add(1, Ordering::SeqCst);
        inner.end_write();
        let writer = self.db.write.clone();
        tokio::spawn(async move {
            // Runs after anything the write sent on the writer connection (there is one).
            if let Err(e) = sqlx::query("SELECT 1").execute(&writer).await {
                tracing::debug!(error = %e, "settling a write for the read cache");
            }
            inner.end_write();
            inner.unsettled.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Taken before a read looks in the database: whether a write ended since.
pub struct ReadStart(u64);

impl ReadCache {
    /// The database to write to, for one statement or transaction: hold the guard until the
    /// write is over (a temporary in the statement that awaits it does).
    pub fn writing<'a>(&'a self, db: &'a Db) -> Writing<'a> {
        Writing { cache: self, db }
    }

    pub fn get(&self, name: &str, version: Option<i64>, label: &str) -> Option<ReadRow> {
        let rows = self.0.rows.lock().expect("read cache lock");
        rows.by_key
            .get(&(name.to_owned(), version, label.to_owned()))
            .cloned()
    }

    pub fn start_read(&self) -> ReadStart {
        ReadStart(self.0.writes_ended.load(Ordering::SeqCst))
    }

    /// Keeps `row`, read since `start`, unless a write ended meanwhile or one is settling.
    pub fn keep(
        &self,
        start: ReadStart,
        name: &str,
        version: Option<i64>,
        label: &str,
        row: &ReadRow,
    ) {
        let mut rows = self.0.rows.lock().expect("read cache lock");
        // Checked under the lock a write's end empties the cache under: no write ends between.
        if self.0.writes_ended.load(Ordering::SeqCst) != start.0
            || self.0.unsettled.load(Ordering::SeqCst) > 0
        {
            return;
        }
        let size = row.version.sealed.as_ref().map_or(0, Vec::len);
        if rows.by_key.len() >= MAX_ROWS || rows.sealed_bytes + size > MAX_SEALED_BYTES {
            rows.clear();
        }
        rows.sealed_bytes += size;
        if let Some(old) = rows
            .by_key
            .insert((name.to_owned(), version, label.to_owned()), row.clone())
        {
            rows.sealed_bytes -= old.version.sealed.as_ref().map_or(0, Vec::len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OptionalVersionRow;

    fn row(sealed: &[u8]) -> ReadRow {
        let version = OptionalVersionRow {
            kind: Some("bytes".into()),
            sealed: Some(sealed.to_vec()),
            key_ref: Some("k".into()),
            wrapped_key: Some("w".into()),
            created_at: Some(0),
            deleted_at: None,
            destroyed_at: None,
        };
        ReadRow {
            deletion_date: None,
            wanted: Some(1),
            version,
            labels: None,
        }
    }

    #[tokio::test]
    async fn a_write_empties_it_and_rows_read_across_or_during_its_settling_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &crate::store::MIGRATIONS)
            .await
            .unwrap();
        let cache = ReadCache::default();
        let start = cache.start_read();
        cache.keep(start, "a", None, "AWSCURRENT", &row(b"one"));
        assert!(cache.get("a", None, "AWSCURRENT").is_some());
        assert!(
            cache.get("a", Some(1), "AWSCURRENT").is_none(),
            "another question"
        );

        let overlapping = cache.start_read();
        // Held by the writer connection, so the write cannot settle yet (as a write still running
        // on SQLite's thread after its request was dropped).
        let busy = db.write.acquire().await.unwrap();
        drop(cache.writing(&db));
        assert!(
            cache.get("a", None, "AWSCURRENT").is_none(),
            "emptied by the write"
        );
        cache.keep(overlapping, "a", None, "AWSCURRENT", &row(b"old"));
        assert!(
            cache.get("a", None, "AWSCURRENT").is_none(),
            "read before the write ended: not kept"
        );
        let during = cache.start_read();
        cache.keep(during, "a", None, "AWSCURRENT", &row(b"maybe-old"));
        assert!(
            cache.get("a", None, "AWSCURRENT").is_none(),
            "read while the write settles: not kept"
        );

        drop(busy);
        for _ in 0..100 {
            let after = cache.start_read();
            cache.keep(after, "a", None, "AWSCURRENT", &row(b"new"));
            if cache.get("a", None, "AWSCURRENT").is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the write never settled");
    }

    /// Tidy check: every store function that writes (but the audit log's, which no read shows)
    /// is called with `self.writing()`, never with the plain database.
    #[test]
    fn every_write_goes_through_writing() {
        let store = include_str!("../store.rs");
        let domain = [
            include_str!("secrets.rs"),
            include_str!("rotation.rs"),
            include_str!("audit.rs"),
            include_str!("../lib.rs"),
        ]
        .concat();
        let mut writers = vec![];
        for part in store.split("pub async fn ").skip(1) {
            let name = part.split('(').next().unwrap();
            let body = part.split("\npub ").next().unwrap();
            if body.contains("db.write") && name != "insert_audit" {
                writers.push(name);
            }
        }
        assert!(writers.len() >= 10, "found the writers: {writers:?}");
        for name in writers {
            let calls = domain.matches(&format!("store::{name}(")).count();
            let through = domain
                .matches(&format!("store::{name}(&self.writing()"))
                .count();
            assert!(
                calls > 0 && calls == through,
                "store::{name} is called {calls} times, {through} through self.writing()"
            );
        }
    }
}
