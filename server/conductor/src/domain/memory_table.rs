//! A table kept in memory with SQLite as its durable copy: the catalog and the instances, which
//! placement reads whole at every deploy. Reading and parsing them from SQLite again at each deploy
//! was most of a deploy's time (docs/benchmarks.md, "Orchestration").
//!
//! Invariants:
//! - A write begins its SQLite transaction first, then takes the table's lock, commits and changes
//!   memory before letting go: a reader never sees memory and the file apart, a load cannot
//!   overwrite a newer change, and the lock is never held while waiting for the write connection.
//! - Bulk writes made elsewhere (a volume move's, a catalog removal) commit in their own
//!   transactions and then call [`MemoryTable::invalidate`]: the next reader loads the table
//!   again. A load is tagged with the invalidation count read before it, so a load that raced such
//!   a write is never taken as current.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub struct MemoryTable<T> {
    invalidations: AtomicU64,
    /// The table and the invalidation count it was loaded at; `None` until first read.
    state: Mutex<Option<(u64, T)>>,
}

impl<T> Default for MemoryTable<T> {
    fn default() -> Self {
        Self {
            invalidations: AtomicU64::new(0),
            state: Mutex::new(None),
        }
    }
}

impl<T> MemoryTable<T> {
    /// A write to the table's rows committed outside its owner: the next read loads them again.
    pub fn invalidate(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }

    /// The table, held until the guard drops, loaded by `load` first if it is not in memory or
    /// was invalidated since. A writer takes it after its transaction's statements, commits while
    /// holding it, then changes the guarded table.
    pub async fn lock<E, Fut>(
        &self,
        load: impl FnOnce() -> Fut,
    ) -> Result<MappedMutexGuard<'_, T>, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut state = self.state.lock().await;
        let current = self.invalidations.load(Ordering::SeqCst);
        if !matches!(&*state, Some((at, _)) if *at == current) {
            *state = Some((current, load().await?));
        }
        Ok(MutexGuard::map(state, |s| {
            &mut s.as_mut().expect("loaded just above").1
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(table: &MemoryTable<Vec<u32>>, file: &[u32]) -> Vec<u32> {
        let loaded = file.to_vec();
        table
            .lock(|| async { Ok::<_, ()>(loaded) })
            .await
            .unwrap()
            .clone()
    }

    #[tokio::test]
    async fn loads_once_then_again_only_after_an_invalidation() {
        let table = MemoryTable::default();
        assert_eq!(read(&table, &[1]).await, [1]);
        // The file changes under it without a word: memory is what it was.
        assert_eq!(read(&table, &[1, 2]).await, [1]);
        table.invalidate();
        assert_eq!(read(&table, &[1, 2]).await, [1, 2]);
    }

    #[tokio::test]
    async fn a_load_that_raced_an_invalidation_is_not_current() {
        let table = MemoryTable::default();
        // The load reads the file, and a write elsewhere commits and invalidates before it is
        // installed: the next read loads again.
        let stale = table
            .lock(|| async {
                table.invalidate();
                Ok::<_, ()>(vec![1])
            })
            .await
            .unwrap()
            .clone();
        assert_eq!(stale, [1]);
        assert_eq!(read(&table, &[1, 2]).await, [1, 2]);
    }

    #[tokio::test]
    async fn the_owners_writes_go_into_memory() {
        let table = MemoryTable::default();
        table
            .lock(|| async { Ok::<_, ()>(vec![1]) })
            .await
            .unwrap()
            .push(2);
        assert_eq!(read(&table, &[1]).await, [1, 2]);
    }
}
