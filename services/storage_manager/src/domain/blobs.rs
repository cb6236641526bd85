//! Object bytes on disk.
//!
//! A blob is written to `tmp/<id>`, fsynced, renamed to `blobs/<id[..2]>/<id>` and the directory
//! fsynced; only then does the caller commit the metadata row that makes it visible. So a crash or
//! a dropped connection leaves at most a file nobody refers to, and [`BlobStore::sweep`] removes
//! those at start. Nothing holds a whole object: writes go out in 256 KiB batches (or 64 KiB sealed
//! chunks), reads come back as a stream of the same.

use std::{
    collections::HashSet,
    io::{self, SeekFrom},
    ops::Range,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use md5::{Digest as _, Md5};
use tokio::{
    fs::File,
    io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _},
};

use super::crypto::{CHUNK, DataKey, TAG, chunk_count};

/// Plaintext blobs are written in batches of this size.
const WRITE_BATCH: usize = 256 * 1024;
/// and read in pieces of this size.
const READ_PIECE: usize = 256 * 1024;

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

/// Which data key seals a blob, and the nonce domain its chunks use.
#[derive(Clone)]
pub struct Seal {
    pub key: Arc<DataKey>,
    pub domain: u32,
}

#[derive(Clone)]
pub struct BlobStore {
    /// The volume (`DATA_DIR`): where a backup's hold marker appears.
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

/// A blob that is durably on disk under its final name.
#[derive(Debug, Clone)]
pub struct WrittenBlob {
    pub id: String,
    /// Plaintext bytes.
    pub size: u64,
    /// MD5 of the plaintext, lowercase hex (S3's ETag for a single-part object).
    pub md5_hex: String,
}

impl BlobStore {
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let store = Self {
            root: data_dir.to_path_buf(),
            blobs: data_dir.join("blobs"),
            tmp: data_dir.join("tmp"),
        };
        std::fs::create_dir_all(&store.blobs)?;
        std::fs::create_dir_all(&store.tmp)?;
        Ok(store)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.blobs.join(&id[..2]).join(id)
    }

    pub async fn create(&self, seal: Option<Seal>) -> io::Result<BlobWriter> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tmp_path = self.tmp.join(&id);
        Ok(BlobWriter {
            final_path: self.path(&id),
            id,
            tmp_path,
            file: None,
            finished: false,
            md5: Md5::new(),
            size: 0,
            seal,
            pending: Vec::with_capacity(WRITE_BATCH.max(CHUNK + TAG)),
            index: 0,
        })
    }

    /// Whether a backup holds the volume: blobs are not deleted meanwhile (see
    /// [`aerekos_common::volume_hold`]).
    pub fn held(&self) -> bool {
        aerekos_common::volume_hold::held(&self.root)
    }

    /// Removes a blob; one already gone is fine (a sweep or an earlier attempt removed it).
    pub async fn remove(&self, id: &str) {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(blob = id, error = %e, "could not remove a blob; the next start's sweep will")
            }
        }
    }

    /// The plaintext bytes `range` of a blob holding `size` plaintext bytes, as a stream.
    pub async fn read(
        &self,
        id: &str,
        size: u64,
        range: Range<u64>,
        seal: Option<Seal>,
    ) -> io::Result<ByteStream> {
        let mut file = File::open(self.path(id)).await?;
        match seal {
            None => {
                file.seek(SeekFrom::Start(range.start)).await?;
                let state = (file, range.end - range.start);
                Ok(Box::pin(futures_util::stream::try_unfold(
                    state,
                    |(mut file, left)| async move {
                        if left == 0 {
                            return Ok(None);
                        }
                        let want = left.min(READ_PIECE as u64) as usize;
                        let mut buf = BytesMut::zeroed(want);
                        file.read_exact(&mut buf)
                            .await
                            .map_err(|e| truncated(e, "object file"))?;
                        Ok(Some((buf.freeze(), (file, left - want as u64))))
                    },
                )))
            }
            Some(seal) => {
                let chunks = chunk_count(size);
                let first = range.start / CHUNK as u64;
                file.seek(SeekFrom::Start(first * (CHUNK + TAG) as u64))
                    .await?;
                let state = SealedRead {
                    file,
                    seal,
                    chunks,
                    index: first,
                    size,
                    range,
                };
                Ok(Box::pin(futures_util::stream::try_unfold(
                    state,
                    |mut s| async move {
                        let chunk_start = s.index * CHUNK as u64;
                        if s.range.start >= s.range.end || chunk_start >= s.range.end {
                            return Ok(None);
                        }
                        let plain_len = (s.size - chunk_start).min(CHUNK as u64) as usize;
                        let mut buf = vec![0u8; plain_len + TAG];
                        s.file
                            .read_exact(&mut buf)
                            .await
                            .map_err(|e| truncated(e, "encrypted object file"))?;
                        let last = s.index + 1 == s.chunks;
                        s.seal
                            .key
                            .open(s.seal.domain, s.index, last, &mut buf)
                            .map_err(io::Error::other)?;
                        let from = (s.range.start.max(chunk_start) - chunk_start) as usize;
                        let to = (s.range.end.min(chunk_start + plain_len as u64) - chunk_start)
                            as usize;
                        s.index += 1;
                        Ok(Some((Bytes::from(buf).slice(from..to), s)))
                    },
                )))
            }
        }
    }

    /// Removes uploads that never finished (everything in `tmp/`) and blobs no row refers to
    /// (written, but the process died before their row was committed, or after it was deleted).
    /// Returns (temporary files, orphaned blobs) removed.
    pub async fn sweep(&self, referenced: HashSet<String>) -> io::Result<(usize, usize)> {
        let (root, blobs, tmp) = (self.root.clone(), self.blobs.clone(), self.tmp.clone());
        tokio::task::spawn_blocking(move || {
            let mut temporary = 0;
            for entry in std::fs::read_dir(&tmp)? {
                std::fs::remove_file(entry?.path())?;
                temporary += 1;
            }
            let mut orphans = 0;
            if aerekos_common::volume_hold::held(&root) {
                // A backup is copying the blobs its snapshot names; orphans wait for the next start.
                return Ok((temporary, orphans));
            }
            for shard in std::fs::read_dir(&blobs)? {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(shard.path())? {
                    let entry = entry?;
                    if !referenced.contains(entry.file_name().to_string_lossy().as_ref()) {
                        std::fs::remove_file(entry.path())?;
                        orphans += 1;
                    }
                }
            }
            Ok((temporary, orphans))
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn truncated(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::other(format!("the {what} is shorter than its recorded size"))
    } else {
        e
    }
}

struct SealedRead {
    file: File,
    seal: Seal,
    chunks: u64,
    index: u64,
    size: u64,
    range: Range<u64>,
}

/// A blob being written. Dropped before [`BlobWriter::finish`], it removes its temporary file.
/// The temporary file is created with the first batch written, so a small object is written,
/// fsynced and renamed in one trip to the blocking pool.
pub struct BlobWriter {
    id: String,
    tmp_path: PathBuf,
    final_path: PathBuf,
    file: Option<File>,
    finished: bool,
    md5: Md5,
    size: u64,
    seal: Option<Seal>,
    pending: Vec<u8>,
    index: u64,
}

impl BlobWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.md5.update(data);
        self.size += data.len() as u64;
        let mut data = data;
        loop {
            match &self.seal {
                // Keep at least one byte back: the chunk that ends the object is sealed by finish,
                // flagged as the last.
                Some(_) => {
                    let room = CHUNK - self.pending.len();
                    let take = room.min(data.len());
                    self.pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if data.is_empty() {
                        return Ok(());
                    }
                    self.flush_chunk().await?;
                }
                None => {
                    self.pending.extend_from_slice(data);
                    if self.pending.len() >= WRITE_BATCH {
                        self.write_pending().await?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Seals and writes a full chunk that is not the object's last.
    async fn flush_chunk(&mut self) -> io::Result<()> {
        let seal = self.seal.as_ref().expect("sealed writer");
        seal.key
            .seal(seal.domain, self.index, false, &mut self.pending);
        self.index += 1;
        self.write_pending().await
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(File::create(&self.tmp_path).await?);
        }
        let file = self.file.as_mut().expect("created above");
        file.write_all(&self.pending).await?;
        self.pending.clear();
        Ok(())
    }

    /// Makes the blob durable under its final name. The caller commits the row that refers to it.
    pub async fn finish(mut self) -> io::Result<WrittenBlob> {
        if let Some(seal) = &self.seal {
            // The last chunk is sealed here and written below with the rest.
            seal.key
                .seal(seal.domain, self.index, true, &mut self.pending);
        }
        let open = match self.file.take() {
            Some(mut file) => {
                file.flush().await?;
                Some(file.into_std().await)
            }
            None => None,
        };
        let tail = std::mem::take(&mut self.pending);
        let (tmp, fin) = (self.tmp_path.clone(), self.final_path.clone());
        // From here on the temporary file is removed by this function, not by Drop.
        self.finished = true;
        let moved = tokio::task::spawn_blocking(move || -> io::Result<()> {
            use std::io::Write as _;
            let mut file = match open {
                Some(file) => file,
                None => std::fs::File::create(&tmp)?,
            };
            file.write_all(&tail)?;
            file.sync_all()?;
            drop(file);
            let dir = fin.parent().expect("blob path has a shard directory");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&tmp, &fin)?;
            std::fs::File::open(dir)?.sync_all()
        })
        .await
        .map_err(io::Error::other)?;
        if let Err(e) = moved {
            let _ = std::fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        let md5 = std::mem::take(&mut self.md5).finalize();
        Ok(WrittenBlob {
            id: std::mem::take(&mut self.id),
            size: self.size,
            md5_hex: hex(&md5),
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
