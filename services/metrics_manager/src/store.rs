//! metrics_manager's files, under `DATA_DIR`:
//! - `wal/<n>.wal`: the write-ahead log of the head (the samples not yet in a section), as framed
//!   records: a series' key once per segment, then samples naming it by number. A cut starts a new
//!   segment that begins with the head's remaining samples, so older segments can go.
//! - `raw/<wal_upto>.sec`: a cut's samples, one frame: a directory of series (key, count,
//!   time range, where its Gorilla chunk is) and the chunks. Written whole, then renamed; named by
//!   the last WAL segment it holds, which no other cut shares. A damaged one is set aside
//!   (`.damaged`), never cut short.
//! - `rollup/<day>.sec`: the 1-minute aggregates (min, max, sum, count, last) of each raw section,
//!   appended as frames to the day file their minutes fall in.
//!
//! Every frame is `magic, length, crc32, payload`; a torn tail of an appended file (the WAL, a
//! rollup day) is cut on open, and a failed append is cut back at once, so later appends never
//! follow a torn frame.

pub mod gorilla;

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::{self, Write},
    ops::Range,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

const FRAME_MAGIC: u32 = 0x414d_4d31;
const FRAME_HEADER: usize = 12;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The whole frames in `bytes`: each payload's offset and length, and where the valid part ends.
fn frames(bytes: &[u8]) -> (Vec<Range<usize>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= FRAME_HEADER {
        let word = |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().expect("4"));
        let (magic, len, crc) = (word(0), word(4) as usize, word(8));
        let start = at + FRAME_HEADER;
        if magic != FRAME_MAGIC || bytes.len() - start < len {
            break;
        }
        if crc32fast::hash(&bytes[start..start + len]) != crc {
            break;
        }
        out.push(start..start + len);
        at = start + len;
    }
    (out, at)
}

/// Appends `bytes`; when that fails part way (a full disk), cuts the file back to where it was, so
/// no later append follows a torn frame.
fn append_or_cut_back(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    let before = file.metadata()?.len();
    if let Err(e) = file.write_all(bytes) {
        if let Err(cut) = file.set_len(before) {
            tracing::error!(error = %cut, "cutting back a failed append failed");
        }
        return Err(e);
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a file's whole frames, cutting a torn tail off (a crash mid-append).
fn read_frames_cutting_tail(path: &Path) -> io::Result<(Vec<u8>, Vec<Range<usize>>)> {
    let bytes = std::fs::read(path)?;
    let (ranges, valid) = frames(&bytes);
    if valid < bytes.len() {
        tracing::warn!(file = %path.display(), cut = bytes.len() - valid, "cutting a damaged tail");
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(valid as u64)?;
    }
    Ok((bytes, ranges))
}

/// Little-endian reading over a payload.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short record"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> io::Result<i64> {
        Ok(self.u64()? as i64)
    }
    fn str(&mut self) -> io::Result<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a key is not UTF-8"))
    }
    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

// ---- the write-ahead log

/// One head sample: the series' number in this WAL, its time (ms) and value.
pub type WalSample = (u32, i64, f64);

pub enum WalRecord {
    /// A series' number and key, written before its first sample in a segment.
    Series(u32, String),
    Samples(Vec<WalSample>),
}

const WAL_SERIES: u8 = 1;
const WAL_SAMPLES: u8 = 2;

pub struct Wal {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// Series whose key this segment holds.
    written: HashSet<u32>,
}

fn wal_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.wal"))
}

fn numbered_files(dir: &Path, ext: &str) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        if let Some(n) = path
            .file_stem()
            .and_then(|s| s.to_str()?.parse::<i64>().ok())
        {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

impl Wal {
    /// Opens the log: drops segments a section already covers (`covered`, the highest such
    /// segment), returns the others' records in order, and starts a new segment after them.
    pub fn open(dir: &Path, covered: u64) -> io::Result<(Wal, Vec<WalRecord>)> {
        std::fs::create_dir_all(dir)?;
        let mut records = Vec::new();
        let mut last = covered;
        for (n, path) in numbered_files(dir, "wal")? {
            let n = n as u64;
            if n <= covered {
                std::fs::remove_file(&path)?;
                continue;
            }
            last = last.max(n);
            let (bytes, ranges) = read_frames_cutting_tail(&path)?;
            for range in ranges {
                records.push(decode_wal_record(&bytes[range])?);
            }
        }
        let wal = Wal::create(dir, last + 1)?;
        Ok((wal, records))
    }

    fn create(dir: &Path, segment: u64) -> io::Result<Wal> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(wal_path(dir, segment))?;
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_owned(),
            file,
            segment,
            written: HashSet::new(),
        })
    }

    #[cfg(test)]
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends samples (their series' keys first where this segment lacks them). Written, not
    /// synced: a killed process loses nothing, a power cut what [`Wal::sync`] has not flushed.
    pub fn append<'k>(
        &mut self,
        samples: &[WalSample],
        key_of: impl Fn(u32) -> &'k str,
    ) -> io::Result<()> {
        let mut out = Vec::new();
        let mut declared = Vec::new();
        for &(series, _, _) in samples {
            if !self.written.contains(&series) && !declared.contains(&series) {
                declared.push(series);
                let key = key_of(series);
                let mut payload = vec![WAL_SERIES];
                payload.extend_from_slice(&series.to_le_bytes());
                payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
                payload.extend_from_slice(key.as_bytes());
                out.extend(frame(&payload));
            }
        }
        let mut payload = Vec::with_capacity(1 + samples.len() * 20);
        payload.push(WAL_SAMPLES);
        for &(series, t, v) in samples {
            payload.extend_from_slice(&series.to_le_bytes());
            payload.extend_from_slice(&t.to_le_bytes());
            payload.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        out.extend(frame(&payload));
        append_or_cut_back(&mut self.file, &out)?;
        // Declared only once written: a failed append declares nothing.
        self.written.extend(declared);
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Starts the next segment; the caller writes the head's remaining samples into it first.
    pub fn rotate(&mut self) -> io::Result<u64> {
        self.sync()?;
        let old = self.segment;
        *self = Wal::create(&self.dir, old + 1)?;
        Ok(old)
    }

    /// Removes segments up to `segment` (a section now holds what they did).
    pub fn remove_upto(&self, segment: u64) -> io::Result<()> {
        for (n, path) in numbered_files(&self.dir, "wal")? {
            if (n as u64) <= segment {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

fn decode_wal_record(payload: &[u8]) -> io::Result<WalRecord> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    match c.u8()? {
        WAL_SERIES => {
            let series = c.u32()?;
            Ok(WalRecord::Series(series, c.str()?.to_owned()))
        }
        WAL_SAMPLES => {
            let mut samples = Vec::with_capacity(payload.len() / 20);
            while !c.done() {
                samples.push((c.u32()?, c.i64()?, f64::from_bits(c.u64()?)));
            }
            Ok(WalRecord::Samples(samples))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown WAL record {other}"),
        )),
    }
}

// ---- sections (raw and rolled up)

/// What a section says about itself.
#[derive(Debug, Clone, Copy)]
pub struct SectionMeta {
    /// The cut's window end (ms): every sample in it is older. Rollups keep their raw section's.
    pub window_end: i64,
    /// The highest WAL segment whose samples it holds (raw sections).
    pub wal_upto: u64,
}

/// One series in a section: where its chunk is in the file.
#[derive(Debug, Clone)]
pub struct SeriesEntry {
    pub key: Arc<str>,
    pub count: u32,
    pub min_t: i64,
    pub max_t: i64,
    pub data: Range<u64>,
}

/// A section's series, in memory; chunks stay on disk until a query reads them.
#[derive(Debug)]
pub struct Section {
    pub path: PathBuf,
    pub meta: SectionMeta,
    pub min_t: i64,
    pub max_t: i64,
    pub series: Vec<SeriesEntry>,
}

/// A series as a cut writes it.
pub struct SeriesChunk {
    pub key: Arc<str>,
    pub count: u32,
    pub min_t: i64,
    pub max_t: i64,
    pub chunk: Vec<u8>,
}

fn encode_section(meta: SectionMeta, series: &[SeriesChunk]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&meta.window_end.to_le_bytes());
    out.extend_from_slice(&meta.wal_upto.to_le_bytes());
    out.extend_from_slice(&(series.len() as u32).to_le_bytes());
    for s in series {
        out.extend_from_slice(&(s.key.len() as u32).to_le_bytes());
        out.extend_from_slice(s.key.as_bytes());
        out.extend_from_slice(&s.count.to_le_bytes());
        out.extend_from_slice(&s.min_t.to_le_bytes());
        out.extend_from_slice(&s.max_t.to_le_bytes());
        out.extend_from_slice(&(s.chunk.len() as u32).to_le_bytes());
    }
    for s in series {
        out.extend_from_slice(&s.chunk);
    }
    out
}

/// A section's directory, its chunks' offsets made absolute (`payload_at` is where the payload
/// starts in its file). `intern` shares keys between sections.
fn decode_section(
    path: &Path,
    payload: &[u8],
    payload_at: u64,
    intern: &mut dyn FnMut(&str) -> Arc<str>,
) -> io::Result<Section> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let meta = SectionMeta {
        window_end: c.i64()?,
        wal_upto: c.u64()?,
    };
    let n = c.u32()? as usize;
    let mut series = Vec::with_capacity(n);
    let mut lens = Vec::with_capacity(n);
    for _ in 0..n {
        let key = intern(c.str()?);
        let (count, min_t, max_t, len) = (c.u32()?, c.i64()?, c.i64()?, c.u32()? as u64);
        series.push(SeriesEntry {
            key,
            count,
            min_t,
            max_t,
            data: 0..0,
        });
        lens.push(len);
    }
    let mut at = payload_at + c.at as u64;
    for (entry, len) in series.iter_mut().zip(lens) {
        entry.data = at..at + len;
        at += len;
    }
    if at != payload_at + payload.len() as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a section's chunks do not fill it",
        ));
    }
    Ok(Section {
        path: path.to_owned(),
        meta,
        min_t: series.iter().map(|s| s.min_t).min().unwrap_or(i64::MAX),
        max_t: series.iter().map(|s| s.max_t).max().unwrap_or(i64::MIN),
        series,
    })
}

/// Writes a raw section whole (temporary file, fsync, rename, fsync of the directory).
pub fn write_raw_section(
    dir: &Path,
    meta: SectionMeta,
    series: &[SeriesChunk],
    intern: &mut dyn FnMut(&str) -> Arc<str>,
) -> io::Result<Section> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.sec", meta.wal_upto));
    let tmp = dir.join(format!("{}.sec.tmp", meta.wal_upto));
    let payload = encode_section(meta, series);
    let mut file = File::create(&tmp)?;
    file.write_all(&frame(&payload))?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    decode_section(&path, &payload, FRAME_HEADER as u64, intern)
}

/// Appends a rollup section to its day file (fsynced).
pub fn append_rollup_section(
    path: &Path,
    meta: SectionMeta,
    series: &[SeriesChunk],
    intern: &mut dyn FnMut(&str) -> Arc<str>,
) -> io::Result<Section> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let existed = path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let at = file.metadata()?.len();
    let payload = encode_section(meta, series);
    append_or_cut_back(&mut file, &frame(&payload))?;
    file.sync_data()?;
    if !existed && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    decode_section(path, &payload, at + FRAME_HEADER as u64, intern)
}

/// Every section in `dir`'s files (temporary files of an interrupted write are removed).
/// `appended`: files that grow by appends (rollup days), whose torn tail is cut; otherwise each
/// file is one section written whole, and a damaged one is renamed `.damaged` and skipped.
pub fn read_sections(
    dir: &Path,
    appended: bool,
    intern: &mut dyn FnMut(&str) -> Arc<str>,
) -> io::Result<Vec<Section>> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".tmp") {
            std::fs::remove_file(path)?;
        }
    }
    let mut out = Vec::new();
    for (_, path) in numbered_files(dir, "sec")? {
        if !appended {
            let bytes = std::fs::read(&path)?;
            let (ranges, valid) = frames(&bytes);
            if ranges.len() != 1 || valid != bytes.len() {
                tracing::error!(file = %path.display(), "a damaged raw section: set aside");
                std::fs::rename(&path, path.with_extension("damaged"))?;
                continue;
            }
            let range = ranges[0].clone();
            out.push(decode_section(
                &path,
                &bytes[range.clone()],
                range.start as u64,
                intern,
            )?);
            continue;
        }
        let (bytes, ranges) = read_frames_cutting_tail(&path)?;
        for range in ranges {
            let at = range.start as u64;
            out.push(decode_section(&path, &bytes[range], at, intern)?);
        }
    }
    Ok(out)
}

/// One series' chunk from its section's file.
pub fn read_chunk(path: &Path, data: &Range<u64>) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buf = vec![0; (data.end - data.start) as usize];
    file.read_exact_at(&mut buf, data.start)?;
    Ok(buf)
}

/// Removes a section file (retention); a missing one is already gone.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_wal_tail_is_cut_and_whole_records_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, records) = Wal::open(dir.path(), 0).unwrap();
        assert!(records.is_empty());
        wal.append(&[(0, 1000, 1.0), (1, 1000, 2.0)], |s| {
            ["a", "b"][s as usize]
        })
        .unwrap();
        wal.append(&[(0, 2000, 3.0)], |_| unreachable!()).unwrap();
        let path = wal_path(dir.path(), wal.segment());
        drop(wal);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame(b"\x02torn")[..9]).unwrap();
        let (_, records) = Wal::open(dir.path(), 0).unwrap();
        let samples: Vec<WalSample> = records
            .iter()
            .flat_map(|r| match r {
                WalRecord::Samples(s) => s.clone(),
                WalRecord::Series(..) => vec![],
            })
            .collect();
        assert_eq!(
            samples,
            vec![(0, 1000, 1.0), (1, 1000, 2.0), (0, 2000, 3.0)]
        );
    }

    #[test]
    fn sections_read_back_with_their_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut intern = |k: &str| Arc::<str>::from(k);
        let chunk = gorilla::encode(&[(1, 1.0), (2, 2.0)]);
        let series = [SeriesChunk {
            key: "up{job=\"x\"}".into(),
            count: 2,
            min_t: 1,
            max_t: 2,
            chunk: chunk.clone(),
        }];
        let meta = SectionMeta {
            window_end: 60_000,
            wal_upto: 3,
        };
        write_raw_section(dir.path(), meta, &series, &mut intern).unwrap();
        let day = dir.path().join("0.sec");
        append_rollup_section(&day, meta, &series, &mut intern).unwrap();
        append_rollup_section(&day, meta, &series, &mut intern).unwrap();
        let sections = read_sections(dir.path(), true, &mut intern).unwrap();
        assert_eq!(sections.len(), 3);
        for s in &sections {
            assert_eq!(read_chunk(&s.path, &s.series[0].data).unwrap(), chunk);
            assert_eq!(s.meta.wal_upto, 3);
        }
    }
}
