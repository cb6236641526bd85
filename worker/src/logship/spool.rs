//! The disk buffer between the collectors and logs_manager.
//!
//! Records are appended (fsynced) to `<data>/logship/spool-<first seq>.jsonl` files of about
//! [`FILE_BYTES`], each with its `seq` (one counter for the spool, never reused: logs_manager
//! skips a `seq` it has stored, so a batch sent again after a lost answer is not stored twice).
//! `state.json` keeps the spool's id (part of the source name, so a wiped data dir starts a new
//! count rather than being taken for repeats), the last `seq` logs_manager acknowledged, what
//! was dropped, and the collectors' read positions. When the files pass `max_bytes`, the oldest
//! go, acknowledged or not, and the unacknowledged records in them are counted as dropped.
//!
//! A record carries the position its collector reached with it (`cursor`), and the spool is
//! written before `state.json`: after a crash the collectors go on from the furthest position
//! either says, so a line is neither read twice into the spool nor skipped.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use aerekos_sdk::logs_manager::types::IngestRecord;
use serde::{Deserialize, Serialize};

/// A spool file is closed and a new one begun past this size.
pub const FILE_BYTES: u64 = 1 << 20;
const STATE_FILE: &str = "state.json";

/// Where a collector is: a file's byte offset, a container's last timestamp.
pub type Cursors = BTreeMap<String, u64>;

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    record: IngestRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<(String, u64)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    id: String,
    acked: u64,
    /// The next seq to give: never handed out twice, even if a file's records are lost.
    #[serde(default)]
    next_seq: u64,
    dropped_total: u64,
    #[serde(default)]
    cursors: Cursors,
}

struct SpoolFile {
    first_seq: u64,
    /// The last seq in it (`first_seq - 1` when empty).
    last_seq: u64,
    bytes: u64,
    path: PathBuf,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: State,
    files: VecDeque<SpoolFile>,
    writer: Option<File>,
    next_seq: u64,
}

impl Spool {
    /// Opens (or makes) the spool, and the collectors' positions.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Self, Cursors)> {
        fs::create_dir_all(dir)?;
        let mut state: State = fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if state.id.is_empty() {
            state.id = uuid::Uuid::new_v4().simple().to_string();
        }
        let mut firsts: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("spool-")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut cursors = state.cursors.clone();
        let mut files = VecDeque::new();
        for first in firsts {
            let path = dir.join(format!("spool-{first:020}.jsonl"));
            let (file, file_cursors) = scan(&path, first)?;
            for (key, at) in file_cursors {
                let known = cursors.entry(key).or_insert(0);
                *known = (*known).max(at);
            }
            files.push_back(file);
        }
        let next_seq = files
            .back()
            .map_or(state.acked + 1, |f| f.last_seq + 1)
            .max(state.acked + 1)
            .max(state.next_seq);
        let mut spool = Self {
            dir: dir.to_owned(),
            max_bytes,
            state,
            files,
            writer: None,
            next_seq,
        };
        spool.state.cursors = cursors.clone();
        spool.save_state()?;
        Ok((spool, cursors))
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    pub fn dropped_total(&self) -> u64 {
        self.state.dropped_total
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Appends records (their `seq` is given here), fsynced, then records the collectors'
    /// positions; then drops the oldest files beyond the bound.
    pub fn append(
        &mut self,
        records: Vec<(IngestRecord, Option<(String, u64)>)>,
    ) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() || self.files.back().is_none_or(|f| f.bytes >= FILE_BYTES) {
            // After a reopen, an empty last file is begun again rather than listed twice.
            if self.files.back().is_some_and(|f| f.bytes == 0) {
                self.files.pop_back();
            }
            self.begin_file()?;
        }
        let mut buf = Vec::with_capacity(records.len() * 200);
        let mut last_cursors = Vec::new();
        for (mut record, cursor) in records {
            record.seq = self.next_seq;
            self.next_seq += 1;
            if let Some(c) = &cursor {
                last_cursors.push(c.clone());
            }
            serde_json::to_writer(&mut buf, &Entry { record, cursor }).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let writer = self.writer.as_mut().expect("a file was begun");
        let file = self.files.back_mut().expect("a file was begun");
        if let Err(e) = writer.write_all(&buf).and_then(|()| writer.sync_data()) {
            // No half batch stays to be glued to the next one; its seqs are not reused (the
            // file's end is cut back, the counter is not).
            let _ = writer.set_len(file.bytes);
            self.state.next_seq = self.next_seq;
            return Err(e);
        }
        file.bytes += buf.len() as u64;
        file.last_seq = self.next_seq - 1;
        for (key, at) in last_cursors {
            self.state.cursors.insert(key, at);
        }
        self.enforce_bound()?;
        self.save_state()
    }

    fn begin_file(&mut self) -> io::Result<()> {
        let path = self.dir.join(format!("spool-{:020}.jsonl", self.next_seq));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.writer = Some(file);
        self.files.push_back(SpoolFile {
            first_seq: self.next_seq,
            last_seq: self.next_seq - 1,
            bytes: 0,
            path,
        });
        Ok(())
    }

    fn enforce_bound(&mut self) -> io::Result<()> {
        while self.bytes() > self.max_bytes && self.files.len() > 1 {
            let oldest = self.files.pop_front().expect("more than one file");
            let unsent = oldest
                .last_seq
                .saturating_sub(self.state.acked.max(oldest.first_seq - 1));
            if unsent > 0 {
                self.state.dropped_total += unsent;
                tracing::debug!(
                    dropped = unsent,
                    "log spool full: its oldest unshipped lines dropped"
                );
            }
            self.state.acked = self.state.acked.max(oldest.last_seq);
            remove(&oldest.path)?;
        }
        Ok(())
    }

    /// Up to `max_records` (and about `max_bytes`) of the records not yet acknowledged, in order.
    pub fn unacked(&self, max_records: usize, max_bytes: usize) -> io::Result<Vec<IngestRecord>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for file in self.files.iter().filter(|f| f.last_seq > self.state.acked) {
            let data = match fs::read(&file.path) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
                    continue;
                };
                if entry.record.seq <= self.state.acked {
                    continue;
                }
                bytes += line.len();
                out.push(entry.record);
                if out.len() >= max_records || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// logs_manager has every record up to `seq`: files wholly at or below it go (but the one
    /// being written).
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.state.acked {
            return Ok(());
        }
        self.state.acked = seq;
        while self.files.len() > 1 && self.files.front().is_some_and(|f| f.last_seq <= seq) {
            let done = self.files.pop_front().expect("checked");
            remove(&done.path)?;
        }
        self.save_state()
    }

    /// Forgets a collector's position (its instance is gone).
    pub fn forget_cursor(&mut self, key: &str) -> io::Result<()> {
        if self.state.cursors.remove(key).is_some() {
            self.save_state()?;
        }
        Ok(())
    }

    /// logs_manager refused the records up to `seq` for good (a 4xx that sending again cannot
    /// change): they count as dropped, and sending goes on after them.
    pub fn refused(&mut self, seq: u64, count: u64) -> io::Result<()> {
        self.state.dropped_total += count;
        self.ack(seq)?;
        self.save_state()
    }

    fn save_state(&mut self) -> io::Result<()> {
        self.state.next_seq = self.next_seq;
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join("state.json.tmp");
        let mut file = File::create(&tmp)?;
        serde_json::to_writer(&mut file, &self.state).map_err(io::Error::other)?;
        file.sync_data()?;
        fs::rename(&tmp, &path)
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A spool file's extent and the furthest collector positions in it; a torn last line (a crash
/// mid-append) is cut off.
fn scan(path: &Path, first: u64) -> io::Result<(SpoolFile, Cursors)> {
    let data = fs::read(path)?;
    let mut cursors = Cursors::new();
    let mut last_seq = first - 1;
    let mut good = 0usize;
    let mut offset = 0usize;
    // Whole lines that do not parse are passed over (the reader skips them too); only a last
    // line without its newline (a torn append) is cut off.
    while let Some(n) = memchr_newline(&data[offset..]) {
        let line = &data[offset..offset + n];
        if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
            last_seq = last_seq.max(entry.record.seq);
            if let Some((key, at)) = entry.cursor {
                let known = cursors.entry(key).or_insert(0);
                *known = (*known).max(at);
            }
        }
        offset += n + 1;
        good = offset;
    }
    if good < data.len() {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(good as u64)?;
        file.sync_all()?;
    }
    Ok((
        SpoolFile {
            first_seq: first,
            last_seq,
            bytes: good as u64,
            path: path.to_owned(),
        },
        cursors,
    ))
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use aerekos_sdk::logs_manager::types::LogStream;

    fn record(text: &str) -> IngestRecord {
        IngestRecord {
            seq: 0,
            time: chrono::Utc::now(),
            worker: None,
            service: Some("s".into()),
            instance: None,
            stream: LogStream::Stdout,
            level: None,
            message: text.into(),
            request_id: None,
        }
    }

    #[test]
    fn seqs_go_on_after_a_reopen_and_acks_and_cursors_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, cursors) = Spool::open(dir.path(), 64 << 20).unwrap();
        assert!(cursors.is_empty());
        let id = spool.id().to_owned();
        spool
            .append(
                (0..10)
                    .map(|i| (record(&format!("l{i}")), Some(("f".into(), i * 3))))
                    .collect(),
            )
            .unwrap();
        spool.ack(4).unwrap();
        drop(spool);
        let (mut spool, cursors) = Spool::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(spool.id(), id);
        assert_eq!(cursors.get("f"), Some(&27));
        let unacked = spool.unacked(100, 1 << 20).unwrap();
        assert_eq!(
            unacked.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );
        spool.append(vec![(record("next"), None)]).unwrap();
        assert_eq!(spool.unacked(100, 1 << 20).unwrap().last().unwrap().seq, 11);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 3 * FILE_BYTES).unwrap();
        let line = "x".repeat(1000);
        let mut appended = 0u64;
        for _ in 0..60 {
            spool
                .append((0..100).map(|_| (record(&line), None)).collect())
                .unwrap();
            appended += 100;
        }
        assert!(spool.bytes() <= 4 * FILE_BYTES);
        let dropped = spool.dropped_total();
        assert!(dropped > 0);
        let unacked = spool.unacked(usize::MAX, usize::MAX).unwrap();
        assert_eq!(unacked.len() as u64 + dropped, appended);
        assert_eq!(unacked.last().unwrap().seq, appended);
    }
}
