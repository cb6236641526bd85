//! The log store: ingest (each source's repeats skipped, a batch fsynced before it is answered),
//! queries over the segments, live tails, retention.
//!
//! The segments' summaries live in memory (a few KB each); records are read from disk per
//! query, a block of [`MARK_EVERY`](crate::store::MARK_EVERY) records at a time. One ingest
//! appends at a time (a mutex around the active segment); queries read without it, up to the
//! length the segment had when they began.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use tokio::sync::broadcast;

use super::records::{self, Filter, MAX_BATCH, MAX_MESSAGE_CHARS, MAX_NAME_CHARS};
use crate::{
    model::{IngestRequest, IngestResult, LogPage, LogRecord, LogStats, SourceStats},
    store::{self, Active, SegmentMeta, Stored},
};

/// The most records a page holds.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;
/// The bytes one query request reads at most before it answers with what it has and a cursor.
const SCAN_BUDGET: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub segment_age: Duration,
}

pub struct LogStore {
    dir: PathBuf,
    retention: Retention,
    state: Mutex<Segments>,
    live: broadcast::Sender<Arc<Vec<Stored>>>,
    pub ingested: AtomicU64,
    pub duplicates: AtomicU64,
    pub removed_segments: AtomicU64,
}

struct Segments {
    sealed: Vec<SegmentMeta>,
    active: Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Newest,
    Oldest,
}

fn now_t() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl LogStore {
    pub fn open(data_dir: &std::path::Path, retention: Retention) -> std::io::Result<Self> {
        let dir = store::segments_dir(data_dir);
        let (sealed, active) = store::open(&dir, now_t())?;
        tracing::info!(
            segments = sealed.len() + 1,
            next_id = active.meta.end_id,
            "log segments opened"
        );
        let (live, _) = broadcast::channel(1024);
        Ok(Self {
            dir,
            retention,
            state: Mutex::new(Segments { sealed, active }),
            live,
            ingested: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            removed_segments: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a batch's shape (before anything is written).
    pub fn validate(batch: &IngestRequest) -> ApiResult<()> {
        let bad = |code: &str, m: String| Err(ApiError::bad_request(code, m));
        if batch.source.is_empty() || batch.source.chars().count() > MAX_NAME_CHARS {
            return bad(
                "invalid_source",
                format!("source must be 1-{MAX_NAME_CHARS} characters"),
            );
        }
        if batch.records.len() > MAX_BATCH {
            return bad(
                "batch_too_large",
                format!(
                    "a batch holds at most {MAX_BATCH} records; this one has {}",
                    batch.records.len()
                ),
            );
        }
        let mut previous: Option<u64> = None;
        for (i, r) in batch.records.iter().enumerate() {
            if previous.is_some_and(|p| r.seq <= p) {
                return bad(
                    "seq_not_increasing",
                    format!(
                        "records[{i}].seq is {} after {}: seq must increase within a batch",
                        r.seq,
                        previous.unwrap_or_default()
                    ),
                );
            }
            previous = Some(r.seq);
            if r.message.chars().count() > MAX_MESSAGE_CHARS {
                return bad(
                    "message_too_long",
                    format!("records[{i}].message is longer than {MAX_MESSAGE_CHARS} characters"),
                );
            }
            for (field, value) in [
                ("worker", &r.worker),
                ("service", &r.service),
                ("instance", &r.instance),
                ("request_id", &r.request_id),
            ] {
                if value
                    .as_ref()
                    .is_some_and(|v| v.chars().count() > MAX_NAME_CHARS)
                {
                    return bad(
                        "field_too_long",
                        format!("records[{i}].{field} is longer than {MAX_NAME_CHARS} characters"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Stores a batch's new records (those past its source's highest stored `seq`), fsynced,
    /// then hands them to live tails. Blocking: call off the async runtime.
    pub fn ingest(&self, batch: IngestRequest) -> ApiResult<IngestResult> {
        let mut state = self.lock();
        let active = &mut state.active;
        let last = active.meta.sources.get(&batch.source).map(|p| p.seq);
        let total = batch.records.len();
        let mut id = active.meta.end_id;
        let fresh: Vec<Stored> = batch
            .records
            .into_iter()
            .filter(|r| last.is_none_or(|last| r.seq > last))
            .map(|r| {
                let stored = records::to_stored(id, &batch.source, r);
                id += 1;
                stored
            })
            .collect();
        let duplicates = (total - fresh.len()) as u32;
        if !fresh.is_empty() {
            active.append(&fresh).map_err(ApiError::internal)?;
        }
        if let Some(dropped) = batch.dropped_total {
            active.record_dropped(&batch.source, dropped);
        }
        let last_seq = active.meta.sources.get(&batch.source).map(|p| p.seq);
        if active.meta.bytes >= self.retention.segment_bytes
            && let Err(e) = self.seal_locked(&mut state)
        {
            // The batch is stored; the segment is sealed at the next ingest or retention pass.
            tracing::error!(error = %e.body().message, "sealing a log segment failed");
        }
        self.ingested
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(u64::from(duplicates), Ordering::Relaxed);
        let stored = fresh.len() as u32;
        if stored > 0 {
            // Under the lock, so tails see batches in id order (a tail skips ids it has passed).
            let _ = self.live.send(Arc::new(fresh));
        }
        drop(state);
        Ok(IngestResult {
            stored,
            duplicates,
            last_seq,
        })
    }

    fn seal_locked(&self, state: &mut Segments) -> ApiResult<()> {
        let sealed =
            store::seal(&self.dir, &mut state.active, now_t()).map_err(ApiError::internal)?;
        state.sealed.push(sealed);
        Ok(())
    }

    /// Seals the active segment when it is old enough and not empty, then removes sealed
    /// segments past the retention's age or beyond its size (oldest first). Blocking.
    pub fn enforce_retention(&self) -> std::io::Result<u32> {
        let now = now_t();
        let mut doomed = Vec::new();
        {
            let mut state = self.lock();
            let age_ms = self.retention.segment_age.as_millis() as i64;
            if !state.active.meta.is_empty() && now - state.active.meta.created_t >= age_ms {
                self.seal_locked(&mut state)
                    .map_err(|e| std::io::Error::other(e.body().message.clone()))?;
            }
            let oldest_kept = now - self.retention.max_age.as_millis() as i64;
            let mut total: u64 =
                state.sealed.iter().map(|m| m.bytes).sum::<u64>() + state.active.meta.bytes;
            while let Some(first) = state.sealed.first() {
                // Age counts from when the segment stopped taking lines (the next one began),
                // not from its lines' own times, which a source may set anywhere.
                let sealed_at = state
                    .sealed
                    .get(1)
                    .map_or(state.active.meta.created_t, |next| next.created_t);
                if sealed_at < oldest_kept || total > self.retention.max_bytes {
                    total -= first.bytes;
                    doomed.push(state.sealed.remove(0));
                } else {
                    break;
                }
            }
        }
        for meta in &doomed {
            store::remove(&self.dir, meta)?;
            tracing::info!(
                first_id = meta.first_id,
                bytes = meta.bytes,
                newest = %records::millis_to_time(meta.max_t),
                "log segment removed by retention"
            );
        }
        self.removed_segments
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len() as u32)
    }

    fn snapshot(&self) -> Vec<SegmentMeta> {
        let state = self.lock();
        let mut all = state.sealed.clone();
        all.push(state.active.meta.clone());
        all
    }

    pub fn last_id(&self) -> Option<u64> {
        self.lock().active.meta.end_id.checked_sub(1)
    }

    /// A page of the records `filter` matches, from `cursor` (exclusive: an id) on in `order`.
    /// Blocking.
    pub fn query(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        limit: u32,
    ) -> std::io::Result<LogPage> {
        let limit = limit as usize;
        let needle = filter.needle();
        let finder = needle.as_deref().map(memchr::memmem::Finder::new);
        let mut segments = self.snapshot();
        if order == Order::Newest {
            segments.reverse();
        }
        let mut out: Vec<LogRecord> = Vec::new();
        let mut budget = SCAN_BUDGET;
        for meta in segments {
            if meta.is_empty() || !filter.overlaps(meta.min_t, meta.max_t) {
                continue;
            }
            let wanted = |first: u64, end: u64| match (order, cursor) {
                (_, None) => true,
                (Order::Newest, Some(c)) => first < c,
                (Order::Oldest, Some(c)) => end > c.saturating_add(1),
            };
            if !wanted(meta.first_id, meta.end_id) {
                continue;
            }
            let path = store::segment_path(&self.dir, &meta);
            let mut blocks = meta.blocks();
            if order == Order::Newest {
                blocks.reverse();
            }
            for block in blocks {
                if !wanted(block.first_id, block.end_id) {
                    continue;
                }
                let (start, end) = (block.start, block.end);
                // A page reads at least one block, however big, so it always moves on.
                if budget < end - start && budget < SCAN_BUDGET {
                    // Read enough for one request: the next page starts at this block.
                    // The cursor is exclusive: resume so that this unread block comes next.
                    let resume = match order {
                        Order::Newest => block.end_id,
                        Order::Oldest => block.first_id.saturating_sub(1),
                    };
                    return Ok(LogPage {
                        records: out,
                        next_cursor: Some(resume.to_string()),
                    });
                }
                budget = budget.saturating_sub(end - start);
                let bytes = store::read_block(&path, start, end)?;
                let mut lines: Vec<&[u8]> = bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                if order == Order::Newest {
                    lines.reverse();
                }
                for line in lines {
                    if finder.as_ref().is_some_and(|f| f.find(line).is_none()) {
                        continue;
                    }
                    let Ok(record) = serde_json::from_slice::<Stored>(line) else {
                        continue;
                    };
                    let after_cursor = match (order, cursor) {
                        (_, None) => true,
                        (Order::Newest, Some(c)) => record.id < c,
                        (Order::Oldest, Some(c)) => record.id > c,
                    };
                    if !after_cursor || !filter.matches(&record) {
                        continue;
                    }
                    out.push(records::from_stored(record));
                    if out.len() == limit {
                        let next = out.last().map(|r| r.id.to_string());
                        return Ok(LogPage {
                            records: out,
                            next_cursor: next,
                        });
                    }
                }
            }
        }
        Ok(LogPage {
            records: out,
            next_cursor: None,
        })
    }

    /// New records as they are stored.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Stored>>> {
        self.live.subscribe()
    }

    pub fn stats(&self) -> LogStats {
        let segments = self.snapshot();
        let active = segments.last().cloned();
        let non_empty = segments.iter().filter(|m| !m.is_empty());
        let oldest = non_empty.clone().map(|m| m.min_t).min();
        let newest = non_empty.map(|m| m.max_t).max();
        LogStats {
            segments: segments.len() as u32,
            bytes: segments.iter().map(|m| m.bytes).sum(),
            records: segments.iter().map(|m| m.end_id - m.first_id).sum(),
            oldest: oldest.map(records::millis_to_time),
            newest: newest.map(records::millis_to_time),
            segments_removed: self.removed_segments.load(Ordering::Relaxed),
            sources: active
                .map(|m| {
                    m.sources
                        .into_iter()
                        .map(|(source, p)| SourceStats {
                            source,
                            last_seq: p.seq,
                            dropped_total: p.dropped_total,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IngestRecord, LogLevel, LogStream};

    fn retention() -> Retention {
        Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
            segment_bytes: 4096,
            segment_age: Duration::from_secs(3600),
        }
    }

    fn batch(source: &str, seqs: std::ops::Range<u64>, text: &str) -> IngestRequest {
        IngestRequest {
            source: source.into(),
            records: seqs
                .map(|seq| IngestRecord {
                    seq,
                    time: chrono::Utc::now(),
                    worker: Some("w1".into()),
                    service: Some(if seq % 2 == 0 { "even" } else { "odd" }.into()),
                    instance: None,
                    stream: LogStream::Stdout,
                    level: Some(if seq % 10 == 0 {
                        LogLevel::Error
                    } else {
                        LogLevel::Info
                    }),
                    message: format!("{text} line {seq}"),
                    request_id: None,
                })
                .collect(),
            dropped_total: None,
        }
    }

    fn all(store: &LogStore, filter: &Filter, order: Order, limit: u32) -> Vec<LogRecord> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.query(filter, order, cursor, limit).unwrap();
            out.extend(page.records);
            match page.next_cursor {
                Some(c) => cursor = Some(c.parse().unwrap()),
                None => return out,
            }
        }
    }

    #[test]
    fn repeats_are_skipped_across_restarts_and_sealed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), retention()).unwrap();
        let first = store.ingest(batch("a", 0..100, "hello")).unwrap();
        assert_eq!((first.stored, first.duplicates), (100, 0));
        // A resend overlapping what was stored: only the new tail is kept.
        let again = store.ingest(batch("a", 50..150, "hello")).unwrap();
        assert_eq!((again.stored, again.duplicates), (50, 50));
        // Another source counts on its own.
        assert_eq!(store.ingest(batch("b", 0..10, "other")).unwrap().stored, 10);
        assert!(store.snapshot().len() > 2, "4 KiB segments were sealed");
        drop(store);

        let store = LogStore::open(dir.path(), retention()).unwrap();
        let after = store.ingest(batch("a", 0..160, "hello")).unwrap();
        assert_eq!((after.stored, after.duplicates), (10, 150));
        let records = all(&store, &Filter::default(), Order::Oldest, 7);
        assert_eq!(records.len(), 170);
        let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
        assert_eq!(ids, (0..170).collect::<Vec<_>>());
        let newest = all(&store, &Filter::default(), Order::Newest, 13);
        assert_eq!(newest.len(), 170);
        assert_eq!(newest[0].id, 169);
    }

    #[test]
    fn filters_select_by_service_level_text_and_regex() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), retention()).unwrap();
        store
            .ingest(batch("a", 0..200, "alpha \"quoted\""))
            .unwrap();
        let f = Filter {
            service: Some("even".into()),
            min_level: Some(LogLevel::Error),
            ..Default::default()
        };
        assert_eq!(all(&store, &f, Order::Newest, 5).len(), 20);
        let f = Filter {
            contains: Some("\"quoted\" line 19".into()),
            ..Default::default()
        };
        let hits = all(&store, &f, Order::Oldest, 100);
        assert_eq!(
            hits.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
            vec![
                "alpha \"quoted\" line 19",
                "alpha \"quoted\" line 190",
                "alpha \"quoted\" line 191",
                "alpha \"quoted\" line 192",
                "alpha \"quoted\" line 193",
                "alpha \"quoted\" line 194",
                "alpha \"quoted\" line 195",
                "alpha \"quoted\" line 196",
                "alpha \"quoted\" line 197",
                "alpha \"quoted\" line 198",
                "alpha \"quoted\" line 199"
            ]
        );
        let f = Filter {
            regex: Some(regex::Regex::new(r"line 1\d$").unwrap()),
            ..Default::default()
        };
        assert_eq!(all(&store, &f, Order::Newest, 3).len(), 10);
    }

    #[test]
    fn a_torn_tail_is_cut_and_ids_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(
            dir.path(),
            Retention {
                segment_bytes: 1 << 30,
                ..retention()
            },
        )
        .unwrap();
        store.ingest(batch("a", 0..10, "x")).unwrap();
        drop(store);
        let seg = store::segments_dir(dir.path()).join(format!("{:020}.log", 0));
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, b"{\"id\":10,\"t\":1,\"sour").unwrap();
        drop(f);
        let store = LogStore::open(dir.path(), retention()).unwrap();
        let r = store.ingest(batch("a", 10..12, "x")).unwrap();
        assert_eq!(r.stored, 2);
        let ids: Vec<u64> = all(&store, &Filter::default(), Order::Oldest, 100)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn retention_removes_the_oldest_segments_beyond_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(
            dir.path(),
            Retention {
                max_bytes: 20_000,
                ..retention()
            },
        )
        .unwrap();
        for i in 0..20 {
            store
                .ingest(batch("a", i * 50..(i + 1) * 50, "retained"))
                .unwrap();
        }
        let before = store.stats();
        assert!(before.bytes > 20_000);
        let removed = store.enforce_retention().unwrap();
        assert!(removed > 0);
        let after = store.stats();
        assert!(after.bytes <= 20_000 + 4096 * 2, "{after:?}");
        // What is left is the newest, and the source's position outlived its segments.
        let newest = all(&store, &Filter::default(), Order::Newest, 1000);
        assert_eq!(newest[0].message, "retained line 999");
        assert_eq!(
            store
                .ingest(batch("a", 0..1000, "retained"))
                .unwrap()
                .stored,
            0
        );
        drop(store);
        let store = LogStore::open(dir.path(), retention()).unwrap();
        assert_eq!(
            store
                .ingest(batch("a", 0..1000, "retained"))
                .unwrap()
                .stored,
            0
        );
    }

    #[test]
    fn positions_outlive_every_segment_retention_removes() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = Retention {
            max_bytes: 1,
            ..retention()
        };
        let store = LogStore::open(dir.path(), tiny.clone()).unwrap();
        for i in 0..3 {
            store
                .ingest(batch("a", i * 50..(i + 1) * 50, "gone"))
                .unwrap();
        }
        store.enforce_retention().unwrap();
        assert_eq!(store.stats().records, 0, "every sealed segment removed");
        drop(store);
        let store = LogStore::open(dir.path(), tiny).unwrap();
        let again = store.ingest(batch("a", 0..160, "gone")).unwrap();
        assert_eq!((again.stored, again.duplicates), (10, 150));
        // Ids go on after the removed ones: a cursor from before still means what it meant.
        let ids: Vec<u64> = all(&store, &Filter::default(), Order::Oldest, 100)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, (150..160).collect::<Vec<_>>());
    }
}
