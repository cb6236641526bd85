//! The time-series store: a head of recent samples in memory (each written to the WAL before it is
//! accepted), cut every `block` into an immutable raw section, and each raw section rolled up into
//! 1-minute aggregates. Raw sections go after `raw_retention`, rollups after `rollup_retention`,
//! the oldest first past `max_bytes`.
//!
//! Invariants:
//! - A series' samples are strictly increasing in time (a sample not newer than the series' last
//!   is refused), so replaying the WAL twice, or a cut's checkpoint next to its old segment,
//!   stores nothing twice.
//! - Every sample is in exactly one of: the head, one raw section (per series, sections do not
//!   overlap in time), or, once its raw section is gone, a rollup.
//! - A section is known by the last WAL segment it holds (`wal_upto`, strictly increasing from
//!   cut to cut, and its file's name), so a second cut in one block (late samples, a backfill)
//!   is a section of its own. A raw section is removed only once it is rolled up
//!   (`wal_upto <= rolled_upto`, recorded in `rolled_upto` after every day's frame is written;
//!   a frame written twice by a crash in between is read once).

use std::{
    collections::{HashMap, HashSet},
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

pub use crate::model::Resolution;

use super::series::{self, Labels, Matcher};
use crate::store::{self, Section, SectionMeta, SeriesChunk, Wal, WalRecord, WalSample, gorilla};

pub const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct TsdbConfig {
    /// How much time a raw section holds (a multiple of a minute).
    pub block_ms: i64,
    pub raw_retention_ms: i64,
    pub rollup_retention_ms: i64,
    /// New series past this many in the head are refused (counted).
    pub max_series: usize,
    /// How long after a block ends it is cut (late scrapes land first).
    pub cut_grace_ms: i64,
    /// Files past this many bytes: the oldest sections go.
    pub max_bytes: u64,
}

/// An aggregate over some samples: one sample (raw), or a minute's (rollup).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The sample's time, or the minute's start (ms).
    pub t: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: f64,
    pub last: f64,
}

impl Bucket {
    fn sample(t: i64, v: f64) -> Bucket {
        Bucket {
            t,
            min: v,
            max: v,
            sum: v,
            count: 1.0,
            last: v,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct AppendOutcome {
    pub stored: u64,
    pub out_of_order: u64,
    pub series_refused: u64,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub samples_stored: AtomicU64,
    pub out_of_order: AtomicU64,
    pub series_refused: AtomicU64,
    pub cuts: AtomicU64,
    pub sections_removed: AtomicU64,
}

pub struct Stats {
    pub head_series: u64,
    pub head_samples: u64,
    pub raw_sections: u64,
    /// Samples in the raw sections, and those sections' bytes (what a sample costs on disk).
    pub raw_samples: u64,
    pub raw_bytes: u64,
    pub rollup_sections: u64,
    pub disk_bytes: u64,
    pub oldest_raw_ms: Option<i64>,
    pub oldest_rollup_ms: Option<i64>,
}

struct HeadSeries {
    key: Arc<str>,
    samples: Vec<(i64, f64)>,
    /// The newest sample, kept across cuts (the order check, federation).
    last_t: i64,
    last_v: f64,
    /// Cuts since its last sample: idle series leave the head.
    idle_cuts: u32,
}

struct Inner {
    refs: HashMap<Arc<str>, u32>,
    head: HashMap<u32, HeadSeries>,
    next_ref: u32,
    wal: Wal,
    raw: Vec<Arc<Section>>,
    rollup: Vec<Arc<Section>>,
    /// The newest raw section (by `wal_upto`) whose rollup frames are all written.
    rolled_upto: u64,
    /// Every key the store knows, with its labels (shared by the sections' directories).
    keys: HashMap<Arc<str>, Arc<Labels>>,
}

impl Inner {
    fn intern(&mut self, key: &str) -> Arc<str> {
        intern_key(&mut self.keys, key)
    }
}

pub struct Tsdb {
    dir: PathBuf,
    config: TsdbConfig,
    inner: Mutex<Inner>,
    pub counters: Counters,
}

fn rollup_day_path(dir: &Path, day: i64) -> PathBuf {
    dir.join("rollup").join(format!("{day}.sec"))
}

impl Tsdb {
    /// Opens the store: reads the sections' directories, replays the WAL into the head, and rolls
    /// up any raw section a crash left without its rollup.
    pub fn open(dir: &Path, config: TsdbConfig) -> io::Result<Tsdb> {
        let mut keys: HashMap<Arc<str>, Arc<Labels>> = HashMap::new();
        let mut intern = |k: &str| intern_key(&mut keys, k);
        let raw: Vec<Arc<Section>> = store::read_sections(&dir.join("raw"), false, &mut intern)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let rollup: Vec<Arc<Section>> =
            store::read_sections(&dir.join("rollup"), true, &mut intern)?
                .into_iter()
                .map(Arc::new)
                .collect();
        let covered = raw.iter().map(|s| s.meta.wal_upto).max().unwrap_or(0);
        let rolled_upto = read_rolled_upto(dir)?;
        let (wal, records) = Wal::open(&dir.join("wal"), covered)?;
        // Each series' newest time in the sections: the head continues after it.
        let mut section_last: HashMap<Arc<str>, i64> = HashMap::new();
        for s in &raw {
            for e in &s.series {
                let t = section_last.entry(e.key.clone()).or_insert(i64::MIN);
                *t = (*t).max(e.max_t);
            }
        }
        let db = Tsdb {
            dir: dir.to_owned(),
            config,
            inner: Mutex::new(Inner {
                refs: HashMap::new(),
                head: HashMap::new(),
                next_ref: 0,
                wal,
                raw,
                rollup,
                rolled_upto,
                keys,
            }),
            counters: Counters::default(),
        };
        {
            let mut inner = db.inner.lock().expect("tsdb lock");
            let mut wal_keys: HashMap<u32, Arc<str>> = HashMap::new();
            let mut replayed = Vec::new();
            for record in records {
                match record {
                    WalRecord::Series(n, key) => {
                        let key = inner.intern(&key);
                        wal_keys.insert(n, key);
                    }
                    WalRecord::Samples(samples) => {
                        for (n, t, v) in samples {
                            if let Some(key) = wal_keys.get(&n) {
                                replayed.push((key.clone(), t, v));
                            }
                        }
                    }
                }
            }
            let n = replayed.len();
            for (key, t, v) in replayed {
                let floor = section_last.get(&key).copied().unwrap_or(i64::MIN);
                let r = db.head_series(&mut inner, &key, floor);
                if let Some(r) = r {
                    let s = inner.head.get_mut(&r).expect("head series");
                    if t > s.last_t {
                        s.samples.push((t, v));
                        s.last_t = t;
                        s.last_v = v;
                    }
                }
            }
            // The replayed samples go into the new segment too, so the old ones can go at the
            // next cut whatever happens.
            let all: Vec<WalSample> = inner
                .head
                .iter()
                .flat_map(|(r, s)| s.samples.iter().map(|&(t, v)| (*r, t, v)))
                .collect();
            if !all.is_empty() {
                let Inner { wal, head, .. } = &mut *inner;
                wal.append(&all, |r| &head[&r].key)?;
                wal.sync()?;
            }
            tracing::info!(
                replayed = n,
                series = inner.head.len(),
                "metrics WAL replayed"
            );
            db.roll_up_pending(&mut inner)?;
        }
        Ok(db)
    }

    /// The head's number for a series, created if new (`None` past `max_series`). `floor` is the
    /// newest time already stored for it elsewhere.
    fn head_series(&self, inner: &mut Inner, key: &Arc<str>, floor: i64) -> Option<u32> {
        if let Some(r) = inner.refs.get(key) {
            return Some(*r);
        }
        if inner.head.len() >= self.config.max_series {
            return None;
        }
        let r = inner.next_ref;
        inner.next_ref += 1;
        inner.refs.insert(key.clone(), r);
        inner.head.insert(
            r,
            HeadSeries {
                key: key.clone(),
                samples: Vec::new(),
                last_t: floor,
                last_v: f64::NAN,
                idle_cuts: 0,
            },
        );
        Some(r)
    }

    /// Stores samples (each series' must come in time order); written to the WAL before they are
    /// accepted. `sync` waits for the disk (pushes do; scrapes leave it to [`Tsdb::sync`]).
    pub fn append(
        &self,
        samples: impl IntoIterator<Item = (String, i64, f64)>,
        sync: bool,
    ) -> io::Result<AppendOutcome> {
        let mut inner = self.inner.lock().expect("tsdb lock");
        let mut outcome = AppendOutcome::default();
        let mut accepted: Vec<WalSample> = Vec::new();
        // The order check sees this batch's earlier samples too.
        let mut batch_last: HashMap<u32, i64> = HashMap::new();
        for (key, t, v) in samples {
            let r = match inner.refs.get(key.as_str()) {
                Some(r) => Some(*r),
                // Refused before its key is kept: a refused series costs nothing.
                None if inner.head.len() >= self.config.max_series => None,
                None => {
                    let key = inner.intern(&key);
                    let floor = self.newest_in_sections(&inner, &key);
                    self.head_series(&mut inner, &key, floor)
                }
            };
            let Some(r) = r else {
                outcome.series_refused += 1;
                continue;
            };
            let last = batch_last
                .get(&r)
                .copied()
                .unwrap_or_else(|| inner.head[&r].last_t);
            if t <= last {
                outcome.out_of_order += 1;
                continue;
            }
            batch_last.insert(r, t);
            accepted.push((r, t, v));
        }
        if !accepted.is_empty() {
            let Inner { wal, head, .. } = &mut *inner;
            wal.append(&accepted, |r| &head[&r].key)?;
            if sync {
                wal.sync()?;
            }
            for &(r, t, v) in &accepted {
                let s = head.get_mut(&r).expect("head series");
                s.samples.push((t, v));
                s.last_t = t;
                s.last_v = v;
                s.idle_cuts = 0;
            }
        }
        outcome.stored = accepted.len() as u64;
        let c = &self.counters;
        c.samples_stored
            .fetch_add(outcome.stored, Ordering::Relaxed);
        c.out_of_order
            .fetch_add(outcome.out_of_order, Ordering::Relaxed);
        c.series_refused
            .fetch_add(outcome.series_refused, Ordering::Relaxed);
        Ok(outcome)
    }

    /// A series not in the head may still have samples in the newest sections (it left the head
    /// idle): its next sample must be newer than those.
    fn newest_in_sections(&self, inner: &Inner, key: &Arc<str>) -> i64 {
        inner
            .raw
            .iter()
            .rev()
            .take(4)
            .flat_map(|s| s.series.iter().filter(|e| Arc::ptr_eq(&e.key, key)))
            .map(|e| e.max_t)
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Flushes the WAL to disk.
    pub fn sync(&self) -> io::Result<()> {
        self.inner.lock().expect("tsdb lock").wal.sync()
    }

    /// Cuts the head's samples older than the last whole block before `now_ms` into a raw section,
    /// and rolls it up. Returns whether there was anything to cut.
    pub fn cut(&self, now_ms: i64) -> io::Result<bool> {
        // A block is cut once it ended `cut_grace_ms` ago, so scrapes stamped inside it have
        // landed; later ones (and backfills) make a section of their own at the next check.
        let window_end = (now_ms - self.config.cut_grace_ms).div_euclid(self.config.block_ms)
            * self.config.block_ms;
        let mut inner = self.inner.lock().expect("tsdb lock");
        let mut chunks = Vec::new();
        let mut keep: Vec<WalSample> = Vec::new();
        for (r, s) in &inner.head {
            let split = s.samples.partition_point(|&(t, _)| t < window_end);
            if split > 0 {
                let old = &s.samples[..split];
                chunks.push(SeriesChunk {
                    key: s.key.clone(),
                    count: old.len() as u32,
                    min_t: old[0].0,
                    max_t: old[split - 1].0,
                    chunk: gorilla::encode(old),
                });
            }
            keep.extend(s.samples[split..].iter().map(|&(t, v)| (*r, t, v)));
        }
        if chunks.is_empty() {
            return Ok(false);
        }
        chunks.sort_by(|a, b| a.key.cmp(&b.key));
        // The new segment starts with what stays in the head; the old one goes once the section
        // is written (a crash in between replays both, and the order check drops the repeats).
        let old_segment = {
            let Inner { wal, head, .. } = &mut *inner;
            let old = wal.rotate()?;
            if !keep.is_empty() {
                wal.append(&keep, |r| &head[&r].key)?;
            }
            wal.sync()?;
            old
        };
        let meta = SectionMeta {
            window_end,
            wal_upto: old_segment,
        };
        let section = {
            let inner = &mut *inner;
            let mut intern = |k: &str| intern_key(&mut inner.keys, k);
            store::write_raw_section(&self.dir.join("raw"), meta, &chunks, &mut intern)?
        };
        inner.raw.push(Arc::new(section));
        inner.wal.remove_upto(old_segment)?;
        let mut idle = Vec::new();
        for (r, s) in inner.head.iter_mut() {
            let split = s.samples.partition_point(|&(t, _)| t < window_end);
            if split == 0 && s.samples.is_empty() {
                s.idle_cuts += 1;
                if s.idle_cuts >= 2 {
                    idle.push(*r);
                }
            }
            s.samples.drain(..split);
            s.samples.shrink_to(s.samples.len() * 2);
        }
        for r in idle {
            if let Some(s) = inner.head.remove(&r) {
                inner.refs.remove(&s.key);
            }
        }
        self.counters.cuts.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.roll_up_pending(&mut inner) {
            // The raw section stays until its rollup is written: the next cut tries again.
            tracing::error!(error = %e, "rolling up a metrics section failed");
        }
        Ok(true)
    }

    /// Rolls up every raw section after `rolled_upto`, in order; each one's frames (one per day
    /// its minutes fall in) are all written before `rolled_upto` moves past it.
    fn roll_up_pending(&self, inner: &mut Inner) -> io::Result<()> {
        let pending: Vec<Arc<Section>> = inner
            .raw
            .iter()
            .filter(|s| s.meta.wal_upto > inner.rolled_upto)
            .cloned()
            .collect();
        for section in pending {
            let mut by_day: HashMap<i64, Vec<SeriesChunk>> = HashMap::new();
            // The whole file at once (it is one section), not a read per series.
            let file = std::fs::read(&section.path)?;
            for entry in &section.series {
                let chunk = file
                    .get(entry.data.start as usize..entry.data.end as usize)
                    .ok_or_else(|| damaged(&section))?;
                let samples = gorilla::decode(chunk, entry.count as usize)
                    .ok_or_else(|| damaged(&section))?;
                let minutes = roll_up(samples.iter().map(|&(t, v)| Bucket::sample(t, v)));
                let mut start = 0;
                while start < minutes.len() {
                    let day = minutes[start].t.div_euclid(DAY_MS);
                    let len = minutes[start..].partition_point(|b| b.t.div_euclid(DAY_MS) == day);
                    let part = &minutes[start..start + len];
                    by_day.entry(day).or_default().push(SeriesChunk {
                        key: entry.key.clone(),
                        count: part.len() as u32,
                        min_t: part[0].t,
                        max_t: part[len - 1].t,
                        chunk: encode_buckets(part),
                    });
                    start += len;
                }
            }
            let mut days: Vec<_> = by_day.into_iter().collect();
            days.sort_by_key(|(d, _)| *d);
            for (day, chunks) in days {
                let path = rollup_day_path(&self.dir, day);
                let mut intern = |k: &str| intern_key(&mut inner.keys, k);
                let rolled =
                    store::append_rollup_section(&path, section.meta, &chunks, &mut intern)?;
                inner.rollup.push(Arc::new(rolled));
            }
            write_rolled_upto(&self.dir, section.meta.wal_upto)?;
            inner.rolled_upto = section.meta.wal_upto;
        }
        Ok(())
    }

    /// Removes what is past retention, then the oldest sections past `max_bytes`. Returns how many
    /// sections went.
    pub fn enforce_retention(&self, now_ms: i64) -> io::Result<u64> {
        let mut inner = self.inner.lock().expect("tsdb lock");
        let raw_horizon = now_ms - self.config.raw_retention_ms;
        let rollup_horizon = now_ms - self.config.rollup_retention_ms;
        let rolled_upto = inner.rolled_upto;
        let mut removed = 0u64;
        let mut doomed: HashSet<PathBuf> = HashSet::new();
        for s in &inner.raw {
            if s.max_t < raw_horizon && s.meta.wal_upto <= rolled_upto {
                doomed.insert(s.path.clone());
            }
        }
        // Rollup day files go whole, once the day is past the horizon.
        for s in &inner.rollup {
            if let Some(day) = day_of(&s.path)
                && (day + 1) * DAY_MS <= rollup_horizon
            {
                doomed.insert(s.path.clone());
            }
        }
        // Past the byte bound: rolled-up raw sections first, oldest first, then rollup days.
        let mut files: Vec<(PathBuf, u64, i64, bool)> = Vec::new();
        let mut seen = HashSet::new();
        for (s, raw) in inner
            .raw
            .iter()
            .map(|s| (s, true))
            .chain(inner.rollup.iter().map(|s| (s, false)))
        {
            if seen.insert(s.path.clone()) {
                files.push((s.path.clone(), store::file_bytes(&s.path), s.min_t, raw));
            }
        }
        let mut total: u64 = files
            .iter()
            .filter(|f| !doomed.contains(&f.0))
            .map(|f| f.1)
            .sum();
        files.sort_by_key(|(_, _, min_t, raw)| (!raw, *min_t));
        for (path, bytes, _, raw) in &files {
            if total <= self.config.max_bytes {
                break;
            }
            if doomed.contains(path) {
                continue;
            }
            let rolled = !raw
                || inner
                    .raw
                    .iter()
                    .any(|s| &s.path == path && s.meta.wal_upto <= rolled_upto);
            if rolled {
                doomed.insert(path.clone());
                total -= bytes;
            }
        }
        for path in &doomed {
            store::remove_file(path)?;
            removed += 1;
        }
        if removed > 0 {
            inner.raw.retain(|s| !doomed.contains(&s.path));
            inner.rollup.retain(|s| !doomed.contains(&s.path));
            // Forget keys no section or head series names any more.
            let mut live: HashSet<Arc<str>> = inner.refs.keys().cloned().collect();
            for s in inner.raw.iter().chain(inner.rollup.iter()) {
                live.extend(s.series.iter().map(|e| e.key.clone()));
            }
            inner.keys.retain(|k, _| live.contains(k));
            self.counters
                .sections_removed
                .fetch_add(removed, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// The series matching every matcher, with their buckets in `[start, end]`, at `resolution`.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        resolution: Resolution,
    ) -> io::Result<Vec<(Arc<Labels>, Vec<Bucket>)>> {
        // What to read is decided under the lock; the files are read after it.
        let (wanted, head, sections) = {
            let inner = self.inner.lock().expect("tsdb lock");
            let wanted: HashMap<Arc<str>, Arc<Labels>> = inner
                .keys
                .iter()
                .filter(|(_, labels)| matchers.iter().all(|m| m.matches(labels)))
                .map(|(k, l)| (k.clone(), l.clone()))
                .collect();
            let head: Vec<(Arc<str>, Vec<(i64, f64)>)> = inner
                .head
                .values()
                .filter(|s| wanted.contains_key(&s.key))
                .map(|s| {
                    let from = s.samples.partition_point(|&(t, _)| t < start);
                    let to = s.samples.partition_point(|&(t, _)| t <= end);
                    (s.key.clone(), s.samples[from..to].to_vec())
                })
                .filter(|(_, samples)| !samples.is_empty())
                .collect();
            let overlaps = |s: &&Arc<Section>| s.max_t >= start && s.min_t <= end;
            let sections: Vec<(Arc<Section>, bool)> = match resolution {
                Resolution::Raw => inner
                    .raw
                    .iter()
                    .filter(overlaps)
                    .map(|s| (s.clone(), false))
                    .collect(),
                Resolution::Minute => {
                    // A frame written twice (a crash before `rolled_upto` moved) is read once.
                    let mut seen = HashSet::new();
                    inner
                        .rollup
                        .iter()
                        .filter(overlaps)
                        .filter(|s| seen.insert((s.path.clone(), s.meta.wal_upto)))
                        .map(|s| (s.clone(), true))
                        .chain(
                            inner
                                .raw
                                .iter()
                                .filter(|s| s.meta.wal_upto > inner.rolled_upto)
                                .filter(overlaps)
                                .map(|s| (s.clone(), false)),
                        )
                        .collect()
                }
            };
            (wanted, head, sections)
        };
        // Per series: buckets read from rollups, and raw samples.
        let mut out: HashMap<Arc<str>, (Vec<Bucket>, Vec<Bucket>)> = HashMap::new();
        for (section, rolled) in &sections {
            for entry in section
                .series
                .iter()
                .filter(|e| e.max_t >= start && e.min_t <= end && wanted.contains_key(&e.key))
            {
                let read = if *rolled {
                    read_rollup_entry(section, entry)
                } else {
                    read_entry(section, entry)
                        .map(|s| s.into_iter().map(|(t, v)| Bucket::sample(t, v)).collect())
                };
                let buckets = match read {
                    Ok(b) => b,
                    // Removed by retention since: it was past the horizon anyway.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let (rollups, raw) = out.entry(entry.key.clone()).or_default();
                if *rolled { rollups } else { raw }.extend(buckets);
            }
        }
        for (key, samples) in head {
            out.entry(key)
                .or_default()
                .1
                .extend(samples.into_iter().map(|(t, v)| Bucket::sample(t, v)));
        }
        let mut result = Vec::with_capacity(out.len());
        for (key, (mut rollups, mut raw)) in out {
            raw.sort_by_key(|b| b.t);
            raw.dedup_by_key(|b| b.t);
            let buckets = match resolution {
                Resolution::Raw => raw,
                Resolution::Minute => {
                    // Every sample is in one place, so a minute's parts (rolled up from two
                    // sections, or rolled and still raw) merge; `last` is the newest part's.
                    rollups.extend(roll_up(raw));
                    rollups.sort_by_key(|b| b.t);
                    let mut minutes: Vec<Bucket> = Vec::with_capacity(rollups.len());
                    for b in rollups {
                        match minutes.last_mut() {
                            Some(m) if m.t == b.t => merge_into(m, &b),
                            _ => minutes.push(b),
                        }
                    }
                    minutes.retain(|b| b.t >= start.div_euclid(MINUTE_MS) * MINUTE_MS);
                    minutes
                }
            };
            let buckets: Vec<Bucket> = buckets
                .into_iter()
                .filter(|b| b.t <= end && (resolution == Resolution::Minute || b.t >= start))
                .collect();
            if !buckets.is_empty() {
                result.push((wanted[&key].clone(), buckets));
            }
        }
        result.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(result)
    }

    /// How many series the matchers select (checked before a query reads any chunk).
    pub fn matching(&self, matchers: &[Matcher]) -> usize {
        let inner = self.inner.lock().expect("tsdb lock");
        inner
            .keys
            .values()
            .filter(|labels| matchers.iter().all(|m| m.matches(labels)))
            .count()
    }

    /// The newest sample of every series matching, not older than `since`.
    pub fn latest(&self, matchers: &[Matcher], since: i64) -> Vec<(Arc<Labels>, i64, f64)> {
        let inner = self.inner.lock().expect("tsdb lock");
        let mut out: Vec<_> = inner
            .head
            .values()
            .filter_map(|s| {
                // The newest sample, whether or not a cut has taken it from the head since.
                let (t, v) = (s.last_t, s.last_v);
                let labels = inner.keys.get(&s.key)?;
                (t >= since && !v.is_nan() && matchers.iter().all(|m| m.matches(labels)))
                    .then(|| (labels.clone(), t, v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every metric name known, with how many series each has.
    pub fn names(&self) -> Vec<(String, u64)> {
        let inner = self.inner.lock().expect("tsdb lock");
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for labels in inner.keys.values() {
            if let Some(n) = labels.get(series::NAME) {
                *counts.entry(n.as_str()).or_default() += 1;
            }
        }
        let mut out: Vec<(String, u64)> =
            counts.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
        out.sort();
        out
    }

    pub fn stats(&self) -> Stats {
        let inner = self.inner.lock().expect("tsdb lock");
        let mut paths = HashSet::new();
        let mut disk = 0;
        for s in inner.raw.iter().chain(inner.rollup.iter()) {
            if paths.insert(&s.path) {
                disk += store::file_bytes(&s.path);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("wal")) {
            disk += entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
        Stats {
            head_series: inner.head.len() as u64,
            head_samples: inner.head.values().map(|s| s.samples.len() as u64).sum(),
            raw_sections: inner.raw.len() as u64,
            raw_samples: inner
                .raw
                .iter()
                .flat_map(|s| s.series.iter())
                .map(|e| u64::from(e.count))
                .sum(),
            raw_bytes: inner.raw.iter().map(|s| store::file_bytes(&s.path)).sum(),
            rollup_sections: inner.rollup.len() as u64,
            disk_bytes: disk,
            oldest_raw_ms: inner.raw.iter().map(|s| s.min_t).min(),
            oldest_rollup_ms: inner.rollup.iter().map(|s| s.min_t).min(),
        }
    }
}

const ROLLED_UPTO_FILE: &str = "rolled_upto";

/// The newest raw section whose rollup is whole (0: none yet).
fn read_rolled_upto(dir: &Path) -> io::Result<u64> {
    match std::fs::read_to_string(dir.join(ROLLED_UPTO_FILE)) {
        Ok(text) => text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{ROLLED_UPTO_FILE} holds {text:?}, not a number"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn write_rolled_upto(dir: &Path, upto: u64) -> io::Result<()> {
    aerekos_common::secrets::write_secret_file(
        &dir.join(ROLLED_UPTO_FILE),
        upto.to_string().as_bytes(),
    )
}

/// The shared copy of `key` in `keys`, added with its labels when new.
fn intern_key(keys: &mut HashMap<Arc<str>, Arc<Labels>>, key: &str) -> Arc<str> {
    if let Some((k, _)) = keys.get_key_value(key) {
        return k.clone();
    }
    let k: Arc<str> = key.into();
    keys.insert(
        k.clone(),
        Arc::new(series::parse_key(key).unwrap_or_default()),
    );
    k
}

fn day_of(path: &Path) -> Option<i64> {
    path.file_stem()?.to_str()?.parse().ok()
}

fn damaged(section: &Section) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} holds a damaged chunk", section.path.display()),
    )
}

fn read_entry(section: &Section, entry: &store::SeriesEntry) -> io::Result<Vec<(i64, f64)>> {
    let chunk = store::read_chunk(&section.path, &entry.data)?;
    gorilla::decode(&chunk, entry.count as usize).ok_or_else(|| damaged(section))
}

/// A minute bucket's five fields as five Gorilla chunks (times repeat, and cost a bit each).
fn encode_buckets(buckets: &[Bucket]) -> Vec<u8> {
    let mut out = Vec::new();
    let fields: [fn(&Bucket) -> f64; 5] =
        [|b| b.min, |b| b.max, |b| b.sum, |b| b.count, |b| b.last];
    for field in fields {
        let chunk = gorilla::encode(&buckets.iter().map(|b| (b.t, field(b))).collect::<Vec<_>>());
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(&chunk);
    }
    out
}

fn read_rollup_entry(section: &Section, entry: &store::SeriesEntry) -> io::Result<Vec<Bucket>> {
    let bytes = store::read_chunk(&section.path, &entry.data)?;
    let n = entry.count as usize;
    let mut fields = Vec::with_capacity(5);
    let mut at = 0;
    for _ in 0..5 {
        let len = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize)
            .ok_or_else(|| damaged(section))?;
        let chunk = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| damaged(section))?;
        fields.push(gorilla::decode(chunk, n).ok_or_else(|| damaged(section))?);
        at += 4 + len;
    }
    Ok((0..n)
        .map(|i| Bucket {
            t: fields[0][i].0,
            min: fields[0][i].1,
            max: fields[1][i].1,
            sum: fields[2][i].1,
            count: fields[3][i].1,
            last: fields[4][i].1,
        })
        .collect())
}

/// Adds bucket `b` (the later part of the same minute) to `m`.
fn merge_into(m: &mut Bucket, b: &Bucket) {
    m.min = m.min.min(b.min);
    m.max = m.max.max(b.max);
    m.sum += b.sum;
    m.count += b.count;
    m.last = b.last;
}

/// Buckets (in time order) merged by the minute they fall in.
pub fn roll_up(buckets: impl IntoIterator<Item = Bucket>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for b in buckets {
        let minute = b.t.div_euclid(MINUTE_MS) * MINUTE_MS;
        match out.last_mut() {
            Some(m) if m.t == minute => merge_into(m, &b),
            _ => out.push(Bucket { t: minute, ..b }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TsdbConfig {
        TsdbConfig {
            block_ms: 10 * MINUTE_MS,
            raw_retention_ms: DAY_MS,
            rollup_retention_ms: 30 * DAY_MS,
            max_series: 1000,
            max_bytes: 1 << 30,
            cut_grace_ms: 0,
        }
    }

    fn all(db: &Tsdb, resolution: Resolution) -> Vec<Bucket> {
        let m = [Matcher::name("m")];
        let mut out = db
            .select(&m, i64::MIN / 2, i64::MAX / 2, resolution)
            .unwrap();
        assert!(out.len() <= 1);
        out.pop().map(|(_, b)| b).unwrap_or_default()
    }

    #[test]
    fn samples_survive_cuts_restarts_and_a_crash_between_cut_steps() {
        let dir = tempfile::tempdir().unwrap();
        let base = 1_700_000_000_000 / DAY_MS * DAY_MS;
        {
            let db = Tsdb::open(dir.path(), config()).unwrap();
            let samples = (0..1200).map(|i| ("m{a=\"1\"}".to_owned(), base + i * 1000, i as f64));
            let o = db.append(samples, true).unwrap();
            assert_eq!(o.stored, 1200);
            // Repeats and older samples are refused.
            let o = db
                .append([("m{a=\"1\"}".to_owned(), base, 0.0)], true)
                .unwrap();
            assert_eq!((o.stored, o.out_of_order), (0, 1));
            // Half is cut (the window ends at 10 minutes), half stays in the head.
            assert!(db.cut(base + 15 * MINUTE_MS).unwrap());
            assert_eq!(all(&db, Resolution::Raw).len(), 1200);
            std::fs::create_dir_all(dir.path().join("saved")).unwrap();
            for e in std::fs::read_dir(dir.path().join("wal")).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(&p, dir.path().join("saved").join(p.file_name().unwrap())).unwrap();
            }
            assert!(db.cut(base + 25 * MINUTE_MS).unwrap());
        }
        // As if the process died after the second section was written but before the old WAL
        // segment went: the section names the segments it holds, and they are not replayed.
        for e in std::fs::read_dir(dir.path().join("saved")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join("wal").join(p.file_name().unwrap())).unwrap();
        }
        let db = Tsdb::open(dir.path(), config()).unwrap();
        let raw = all(&db, Resolution::Raw);
        assert_eq!(raw.len(), 1200);
        assert!(raw.windows(2).all(|w| w[0].t < w[1].t));
        let minutes = all(&db, Resolution::Minute);
        assert_eq!(minutes.len(), 20);
        assert_eq!(minutes[0].count, 60.0);
        assert_eq!(minutes[0].sum, (0..60).sum::<i64>() as f64);
        assert_eq!(minutes[19].last, 1199.0);
        // Past raw retention the minutes remain.
        assert!(db.enforce_retention(base + 2 * DAY_MS).unwrap() >= 1);
        assert!(all(&db, Resolution::Raw).is_empty());
        assert_eq!(all(&db, Resolution::Minute).len(), 20);
        drop(db);
        let db = Tsdb::open(dir.path(), config()).unwrap();
        assert_eq!(all(&db, Resolution::Minute).len(), 20);
        assert!(db.enforce_retention(base + 40 * DAY_MS).unwrap() >= 1);
        assert!(all(&db, Resolution::Minute).is_empty());
    }

    #[test]
    fn a_second_cut_in_one_block_is_a_section_of_its_own_and_its_minute_merges() {
        let dir = tempfile::tempdir().unwrap();
        let base = 1_700_000_000_000 / DAY_MS * DAY_MS;
        {
            let db = Tsdb::open(dir.path(), config()).unwrap();
            db.append(
                (0..60).map(|i| ("m".to_owned(), base + i * 1000, 1.0)),
                false,
            )
            .unwrap();
            assert!(db.cut(base + 10 * MINUTE_MS).unwrap());
            // A late sample of the same block (a scrape stamped before the cut, stored after).
            db.append([("m".to_owned(), base + 59_500, 5.0)], false)
                .unwrap();
            assert!(db.cut(base + 10 * MINUTE_MS + 5000).unwrap());
            assert_eq!(all(&db, Resolution::Raw).len(), 61);
            let minute = all(&db, Resolution::Minute);
            assert_eq!(
                (minute.len(), minute[0].count, minute[0].last),
                (1, 61.0, 5.0)
            );
        }
        let db = Tsdb::open(dir.path(), config()).unwrap();
        assert_eq!(all(&db, Resolution::Raw).len(), 61);
        // Both rolled up: past raw retention the minute is whole.
        assert_eq!(db.enforce_retention(base + 2 * DAY_MS).unwrap(), 2);
        let minute = all(&db, Resolution::Minute);
        assert_eq!(
            (minute.len(), minute[0].count, minute[0].sum),
            (1, 61.0, 65.0)
        );
    }

    #[test]
    fn the_head_answers_at_minute_resolution_before_any_cut() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(dir.path(), config()).unwrap();
        db.append((0..180).map(|i| ("m".to_owned(), i * 1000, 1.0)), false)
            .unwrap();
        let minutes = all(&db, Resolution::Minute);
        assert_eq!(minutes.len(), 3);
        assert!(minutes.iter().all(|m| m.count == 60.0));
    }

    #[test]
    fn series_past_the_bound_are_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(
            dir.path(),
            TsdbConfig {
                max_series: 2,
                ..config()
            },
        )
        .unwrap();
        let o = db
            .append((0..5).map(|i| (format!("m{{i=\"{i}\"}}"), 1, 1.0)), false)
            .unwrap();
        assert_eq!((o.stored, o.series_refused), (2, 3));
    }
}
