//! The segment files: logs_manager's only state.
//!
//! `<DATA_DIR>/segments/<first id, 20 digits>.log` holds records as JSON lines, appended in id
//! order and fsynced before an ingest is answered. A segment is sealed when it is big or old
//! enough: its summary (`.idx`: id and time range, size, a byte offset every
//! [`MARK_EVERY`] records, and every source's highest `seq` so far) is written beside it, and a
//! new segment begins. At start the sealed segments are known from their summaries and only the
//! last (unsealed) one is read, its torn tail (a crash mid-append) cut off. Retention deletes
//! whole sealed segments, oldest first.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// A byte offset is remembered every this many records, so a page reads blocks, not segments.
pub const MARK_EVERY: u64 = 1024;

/// A record as it is kept on disk (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    pub source: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub message: String,
}

/// What is known of a segment without reading it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub first_id: u64,
    /// The next id after its last record (`first_id` when empty).
    pub end_id: u64,
    pub min_t: i64,
    pub max_t: i64,
    pub bytes: u64,
    /// `(id, byte offset)` of every [`MARK_EVERY`]th record, the first included.
    pub marks: Vec<(u64, u64)>,
    /// Each source's highest `seq`, over this segment and all before it (so the newest summary
    /// alone restores the sources' positions after older segments are gone).
    pub sources: BTreeMap<String, SourcePosition>,
    /// When the segment was begun (ms since the epoch): sealing by age counts from here.
    pub created_t: i64,
    #[serde(skip)]
    pub sealed: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub first_id: u64,
    pub end_id: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourcePosition {
    pub seq: u64,
    pub dropped_total: u64,
}

impl SegmentMeta {
    fn empty(first_id: u64, sources: BTreeMap<String, SourcePosition>, now_t: i64) -> Self {
        Self {
            first_id,
            end_id: first_id,
            min_t: i64::MAX,
            max_t: i64::MIN,
            bytes: 0,
            marks: Vec::new(),
            sources,
            created_t: now_t,
            sealed: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end_id == self.first_id
    }

    /// Notes a record appended at byte `offset`.
    pub fn note(&mut self, record: &Stored, offset: u64, line_bytes: u64) {
        if (record.id - self.first_id).is_multiple_of(MARK_EVERY) {
            self.marks.push((record.id, offset));
        }
        self.end_id = record.id + 1;
        self.min_t = self.min_t.min(record.t);
        self.max_t = self.max_t.max(record.t);
        self.bytes = offset + line_bytes;
        let position = self.sources.entry(record.source.clone()).or_default();
        position.seq = position.seq.max(record.seq);
    }

    /// Its blocks in id order: the ids `[first, end)` each holds and its bytes `[start, end)`.
    pub fn blocks(&self) -> Vec<Block> {
        self.marks
            .iter()
            .enumerate()
            .map(|(i, &(first_id, start))| {
                let next = self.marks.get(i + 1);
                Block {
                    first_id,
                    end_id: next.map_or(self.end_id, |m| m.0),
                    start,
                    end: next.map_or(self.bytes, |m| m.1),
                }
            })
            .collect()
    }
}

pub fn segments_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("segments")
}

fn log_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.log"))
}

fn idx_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.idx"))
}

pub fn segment_path(dir: &Path, meta: &SegmentMeta) -> PathBuf {
    log_path(dir, meta.first_id)
}

/// The segment being appended to.
pub struct Active {
    pub meta: SegmentMeta,
    file: File,
}

impl Active {
    /// Appends `records` (ids already given, in order) and fsyncs them.
    pub fn append(&mut self, records: &[Stored]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 200);
        let mut offsets = Vec::with_capacity(records.len());
        for record in records {
            let start = buf.len();
            serde_json::to_writer(&mut buf, record).map_err(io::Error::other)?;
            buf.push(b'\n');
            offsets.push((start as u64, (buf.len() - start) as u64));
        }
        let base = self.meta.bytes;
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
        {
            // Leave no half batch behind to be read as records: cut back to the last whole one.
            let _ = self.file.set_len(base);
            return Err(e);
        }
        for (record, (start, len)) in records.iter().zip(offsets) {
            self.meta.note(record, base + start, len);
        }
        Ok(())
    }

    pub fn record_dropped(&mut self, source: &str, dropped_total: u64) {
        let position = self.meta.sources.entry(source.to_owned()).or_default();
        position.dropped_total = position.dropped_total.max(dropped_total);
    }
}

/// What must outlive every segment: the next id and each source's position. Written at each
/// seal, so retention may remove every sealed segment and a restart still skips repeats.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Positions {
    next_id: u64,
    sources: BTreeMap<String, SourcePosition>,
}

const POSITIONS_FILE: &str = "positions.json";

fn write_positions(dir: &Path, meta: &SegmentMeta) -> io::Result<()> {
    let positions = Positions {
        next_id: meta.end_id,
        sources: meta.sources.clone(),
    };
    let tmp = dir.join("positions.json.tmp");
    let mut file = File::create(&tmp)?;
    serde_json::to_writer(&mut file, &positions).map_err(io::Error::other)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(POSITIONS_FILE))
}

fn merge_positions(
    into: &mut BTreeMap<String, SourcePosition>,
    from: &BTreeMap<String, SourcePosition>,
) {
    for (source, p) in from {
        let known = into.entry(source.clone()).or_default();
        known.seq = known.seq.max(p.seq);
        known.dropped_total = known.dropped_total.max(p.dropped_total);
    }
}

/// Seals `active` (its summary written whole, then a new segment begun after it).
pub fn seal(dir: &Path, active: &mut Active, now_t: i64) -> io::Result<SegmentMeta> {
    write_idx(dir, &active.meta)?;
    write_positions(dir, &active.meta)?;
    let mut sealed = active.meta.clone();
    sealed.sealed = true;
    *active = create(dir, sealed.end_id, sealed.sources.clone(), now_t)?;
    Ok(sealed)
}

fn write_idx(dir: &Path, meta: &SegmentMeta) -> io::Result<()> {
    let final_path = idx_path(dir, meta.first_id);
    let tmp = final_path.with_extension("idx.tmp");
    let mut file = File::create(&tmp)?;
    serde_json::to_writer(&mut file, meta).map_err(io::Error::other)?;
    file.sync_all()?;
    fs::rename(&tmp, &final_path)?;
    File::open(dir)?.sync_all()
}

fn create(
    dir: &Path,
    first_id: u64,
    sources: BTreeMap<String, SourcePosition>,
    now_t: i64,
) -> io::Result<Active> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(log_path(dir, first_id))?;
    File::open(dir)?.sync_all()?;
    Ok(Active {
        meta: SegmentMeta::empty(first_id, sources, now_t),
        file,
    })
}

/// Opens the store: the sealed segments from their summaries (or read again where a summary is
/// missing or does not match its file), and the active one read whole, its torn tail cut.
pub fn open(dir: &Path, now_t: i64) -> io::Result<(Vec<SegmentMeta>, Active)> {
    fs::create_dir_all(dir)?;
    let mut firsts: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    firsts.sort_unstable();
    let positions: Positions = fs::read(dir.join(POSITIONS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut sealed: Vec<SegmentMeta> = Vec::new();
    let mut sources = positions.sources.clone();
    let mut active = None;
    for (i, &first) in firsts.iter().enumerate() {
        let last = i + 1 == firsts.len();
        let summary = read_idx(dir, first);
        if let Some(mut meta) = summary {
            meta.sealed = true;
            merge_positions(&mut sources, &meta.sources);
            meta.sources = sources.clone();
            sealed.push(meta);
            continue;
        }
        let mut meta = scan(&log_path(dir, first), first, sources.clone(), now_t)?;
        sources = meta.sources.clone();
        if last {
            let file = OpenOptions::new()
                .append(true)
                .read(true)
                .open(log_path(dir, first))?;
            active = Some(Active { meta, file });
        } else {
            // A segment sealed by a process that died before its summary was written.
            write_idx(dir, &meta)?;
            meta.sealed = true;
            sealed.push(meta);
        }
    }
    let active = match active {
        Some(active) => active,
        None => {
            // After the last sealed segment, or where the positions say ids had reached (every
            // segment removed by retention).
            let next = sealed.last().map_or(0, |m| m.end_id).max(positions.next_id);
            create(dir, next, sources, now_t)?
        }
    };
    Ok((sealed, active))
}

fn read_idx(dir: &Path, first: u64) -> Option<SegmentMeta> {
    let bytes = fs::read(idx_path(dir, first)).ok()?;
    let meta: SegmentMeta = serde_json::from_slice(&bytes).ok()?;
    let len = fs::metadata(log_path(dir, first)).ok()?.len();
    (meta.first_id == first && meta.bytes == len).then_some(meta)
}

/// Reads a segment's records to rebuild its summary, cutting a torn last line off the file.
fn scan(
    path: &Path,
    first: u64,
    sources: BTreeMap<String, SourcePosition>,
    now_t: i64,
) -> io::Result<SegmentMeta> {
    let bytes = fs::read(path)?;
    let mut meta = SegmentMeta::empty(first, sources, now_t);
    let mut offset = 0usize;
    while let Some(n) = memchr::memchr(b'\n', &bytes[offset..]) {
        let line = &bytes[offset..offset + n];
        match serde_json::from_slice::<Stored>(line) {
            Ok(record) if record.id == meta.end_id => {
                meta.note(&record, offset as u64, n as u64 + 1);
            }
            _ => {
                tracing::warn!(path = %path.display(), offset, "a segment line that is not the next record: the segment is cut there");
                break;
            }
        }
        offset += n + 1;
    }
    if meta.is_empty() {
        meta.created_t = now_t;
    } else {
        meta.created_t = meta.min_t.min(now_t);
    }
    if (offset as u64) < bytes.len() as u64 || meta.bytes < bytes.len() as u64 {
        tracing::warn!(path = %path.display(), kept = meta.bytes, had = bytes.len(), "a torn segment tail cut off (a crash mid-append)");
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(meta.bytes)?;
        file.sync_all()?;
    }
    Ok(meta)
}

/// Bytes `[start, end)` of a segment file; empty when the file is gone (retention removed it
/// meanwhile).
pub fn read_block(path: &Path, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((end - start) as usize);
    file.take(end - start).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Deletes a sealed segment: its summary first, so a crash between leaves a file that is read
/// again at start rather than a summary without its records.
pub fn remove(dir: &Path, meta: &SegmentMeta) -> io::Result<()> {
    match fs::remove_file(idx_path(dir, meta.first_id)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match fs::remove_file(log_path(dir, meta.first_id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
