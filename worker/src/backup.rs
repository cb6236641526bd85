//! Backups on this worker: making them of the volumes it holds, keeping them for other workers
//! (the backup store), and restoring from them (see the conductor's `domain/backups.rs`).
//!
//! **Consistency.** A backup first holds the volume ([`aerekos_common::volume_hold`]: the service
//! defers deleting files), then copies every SQLite database in it online (`VACUUM INTO`, a read
//! transaction: the service keeps writing), then the other files. Every file a database snapshot
//! refers to is still there, because nothing was deleted since the hold.
//!
//! **Only the volume.** A file is read only if it is a regular one, never through a symlink
//! ([`crate::volumes::open_regular`]): what runs on the volume (in a container or a guest) could
//! otherwise put any file of the host's into its backup.
//!
//! **Incremental, content-addressed.** Each file's content is named by a keyed SHA-256 (the
//! cluster's backup key is mixed in, so names reveal nothing about content). The store is asked
//! which names it lacks, and only those are sent. A local cache (path, size, mtime, inode → name)
//! spares re-reading files unchanged since the last backup.
//!
//! **Encrypted.** Each file and each manifest is sealed with AES-256-GCM under the backup key in
//! 1 MiB segments; a segment's nonce is the file's random prefix and its index, and its additional
//! data the object's name, the total length and whether it is the last, so segments cannot be
//! reordered, dropped or moved between files. Stores hold only ciphertext.

use std::{
    collections::HashMap,
    fs,
    io::{self, Read, Write},
    path::{Component, Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult, auth::Claims, volume_hold};
use aerekos_sdk::{
    SdkError, WorkerAgent,
    conductor::types::{BackupJob, BackupReport, BackupSource, BackupState},
    worker::types::{BackupIds, ChunkList},
};
use aes_gcm::{Aes256Gcm, KeyInit as _, aead::Aead as _};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Shared, volumes::read_blocking};

/// Plaintext bytes per sealed segment.
const SEGMENT: usize = 1 << 20;
const TAG: usize = 16;
const MAGIC: &[u8; 4] = b"AEB1";
/// Magic, nonce prefix, plaintext length.
const HEADER: usize = 4 + 8 + 8;
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Chunk names asked about per request.
const MISSING_BATCH: usize = 1000;

/// The cluster's backup key.
#[derive(Clone)]
pub struct BackupKey([u8; 32]);

impl BackupKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("backup key: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "backup key: not 32 bytes".to_owned())?;
        Ok(Self(key))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0).expect("32-byte key")
    }

    /// The name of a file's content: a keyed SHA-256, hex.
    fn hasher(&self) -> Sha256 {
        let mut h = Sha256::new();
        h.update(b"aerekos-backup-chunk\0");
        h.update(self.0);
        h
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nonce(prefix: &[u8; 8], index: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    n[8..].copy_from_slice(&index.to_be_bytes());
    n
}

fn aad(label: &str, len: u64, last: bool) -> Vec<u8> {
    let mut a = label.as_bytes().to_vec();
    a.extend_from_slice(&len.to_le_bytes());
    a.push(u8::from(last));
    a
}

fn segments(len: u64) -> u64 {
    len.div_ceil(SEGMENT as u64).max(1)
}

/// Seals `len` bytes read from `input` as object `label`, writing to `out`.
pub fn seal(
    key: &BackupKey,
    label: &str,
    len: u64,
    mut input: impl Read,
    mut out: impl Write,
) -> io::Result<()> {
    use rand::RngCore as _;
    let mut prefix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut prefix);
    out.write_all(MAGIC)?;
    out.write_all(&prefix)?;
    out.write_all(&len.to_le_bytes())?;
    let cipher = key.cipher();
    let count = segments(len);
    let mut buf = vec![0u8; SEGMENT];
    let mut left = len;
    for index in 0..count {
        let take = usize::try_from(left.min(SEGMENT as u64)).expect("at most a segment");
        input
            .read_exact(&mut buf[..take])
            .map_err(|e| io::Error::other(format!("{label} changed while being backed up: {e}")))?;
        let payload = aes_gcm::aead::Payload {
            msg: &buf[..take],
            aad: &aad(label, len, index + 1 == count),
        };
        let sealed = cipher
            .encrypt(
                &nonce(&prefix, u32::try_from(index).expect("segments")).into(),
                payload,
            )
            .map_err(|_| io::Error::other("sealing failed"))?;
        out.write_all(&sealed)?;
        left -= take as u64;
    }
    out.flush()
}

/// Opens what [`seal`] wrote for `label`, writing the plaintext to `out`; fails on any change.
/// Returns the plaintext length.
pub fn open(
    key: &BackupKey,
    label: &str,
    mut input: impl Read,
    mut out: impl Write,
    progress: &AtomicU64,
) -> io::Result<u64> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{label}: {m}"));
    let mut header = [0u8; HEADER];
    input
        .read_exact(&mut header)
        .map_err(|_| bad("too short"))?;
    if &header[..4] != MAGIC {
        return Err(bad("not a sealed backup object"));
    }
    let prefix: [u8; 8] = header[4..12].try_into().expect("8 bytes");
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let cipher = key.cipher();
    let count = segments(len);
    let mut buf = vec![0u8; SEGMENT + TAG];
    let mut left = len;
    for index in 0..count {
        let take = usize::try_from(left.min(SEGMENT as u64)).expect("at most a segment") + TAG;
        input
            .read_exact(&mut buf[..take])
            .map_err(|_| bad("cut short"))?;
        let payload = aes_gcm::aead::Payload {
            msg: &buf[..take],
            aad: &aad(label, len, index + 1 == count),
        };
        let plain = cipher
            .decrypt(
                &nonce(&prefix, u32::try_from(index).expect("segments")).into(),
                payload,
            )
            .map_err(|_| {
                bad("does not open under the backup key (altered, or another cluster's)")
            })?;
        out.write_all(&plain)?;
        left -= plain.len() as u64;
        progress.fetch_add(plain.len() as u64, Ordering::Relaxed);
    }
    let mut rest = [0u8; 1];
    if input.read(&mut rest)? != 0 {
        return Err(bad("has bytes after its end"));
    }
    Ok(len)
}

/// One entry of a backup's manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// `d`, `f` or `l`.
    pub kind: char,
    pub mode: u32,
    #[serde(default)]
    pub size: u64,
    /// A file's content name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub backup_id: Uuid,
    pub volume: String,
    pub created_at: String,
    pub entries: Vec<Entry>,
}

fn manifest_label(backup_id: Uuid) -> String {
    format!("manifest:{backup_id}")
}

// ---------------------------------------------------------------------------------------------
// Making a backup (the worker holding the volume)

/// What was read of a file at the last backup, so an unchanged one is not read again.
#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    chunk: String,
}

fn seen_of(meta: &fs::Metadata) -> (u64, i128, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (
        meta.len(),
        i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        meta.ino(),
    )
}

fn is_sqlite(root: &Path, path: &Path) -> bool {
    let mut head = [0u8; 16];
    crate::volumes::open_regular(root, path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == SQLITE_MAGIC
}

/// A file of the backup: where its content is read from (a database's snapshot, or the volume).
struct FileToSend {
    entry: Entry,
    from: PathBuf,
    /// The directory `from` is read beneath (the volume, or the staging directory).
    root: PathBuf,
    /// Read from a database snapshot (new at every backup, so never taken from the cache).
    snapshot: bool,
}

/// Runs `job` and reports how it went.
pub(crate) async fn run_job(shared: &Arc<Shared>, job: &BackupJob) {
    let progress = Arc::new(AtomicU64::new(0));
    let reporter = {
        let (shared, progress, id) = (shared.clone(), progress.clone(), job.backup_id);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let sent = progress.load(Ordering::Relaxed);
                let report = BackupReport {
                    state: BackupState::Running,
                    files: 0,
                    bytes: 0,
                    bytes_sent: sent,
                    error: None,
                };
                if !send_report(&shared, id, report).await {
                    return;
                }
            }
        })
    };
    let volume_dir = shared.config.data_dir.join("volumes").join(&job.volume);
    let outcome = make(shared, job, &volume_dir, &progress).await;
    reporter.abort();
    let _ = fs::remove_file(volume_dir.join(volume_hold::HOLD_FILE));
    let _ = fs::remove_dir_all(staging_dir(shared, job.backup_id));
    let report = match outcome {
        Ok((files, bytes, bytes_sent)) => {
            tracing::info!(volume = %job.volume, backup_id = %job.backup_id, files, bytes, bytes_sent, "backup made");
            BackupReport {
                state: BackupState::Done,
                files,
                bytes,
                bytes_sent,
                error: None,
            }
        }
        Err(why) => {
            tracing::warn!(volume = %job.volume, backup_id = %job.backup_id, reason = %why, "backup failed");
            BackupReport {
                state: BackupState::Failed,
                files: 0,
                bytes: 0,
                bytes_sent: progress.load(Ordering::Relaxed),
                error: Some(why),
            }
        }
    };
    send_report(shared, job.backup_id, report).await;
}

fn staging_dir(shared: &Shared, backup_id: Uuid) -> PathBuf {
    shared
        .config
        .data_dir
        .join("backup-staging")
        .join(backup_id.to_string())
}

/// Makes the backup: (files, bytes, bytes sent).
async fn make(
    shared: &Arc<Shared>,
    job: &BackupJob,
    volume_dir: &Path,
    progress: &Arc<AtomicU64>,
) -> Result<(u64, u64, u64), String> {
    let key = BackupKey::from_base64(&job.key)?;
    if !volume_dir.is_dir() {
        return Err(format!("this worker holds no volume {:?}", job.volume));
    }
    // Hold the volume, and keep the hold fresh while the backup runs.
    let hold = volume_dir.join(volume_hold::HOLD_FILE);
    fs::write(&hold, b"").map_err(|e| format!("holding the volume: {e}"))?;
    let toucher = {
        let hold = hold.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = fs::write(&hold, b"");
            }
        })
    };
    // A deletion that began before the hold was visible ends first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = snapshot_and_send(shared, job, &key, volume_dir, progress).await;
    toucher.abort();
    result
}

async fn snapshot_and_send(
    shared: &Arc<Shared>,
    job: &BackupJob,
    key: &BackupKey,
    volume_dir: &Path,
    progress: &Arc<AtomicU64>,
) -> Result<(u64, u64, u64), String> {
    let staging = staging_dir(shared, job.backup_id);
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
    // The tree, with each SQLite database copied online first.
    let listed = {
        let dir = volume_dir.to_path_buf();
        tokio::task::spawn_blocking(move || list(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the volume: {e}"))?
    };
    let mut files = vec![];
    for (rel, meta) in listed {
        let path = volume_dir.join(&rel);
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if meta.is_dir() {
            files.push(FileToSend {
                entry: Entry {
                    path: rel,
                    kind: 'd',
                    mode,
                    size: 0,
                    chunk: None,
                    link: None,
                },
                from: path,
                root: volume_dir.to_path_buf(),
                snapshot: false,
            });
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(&path).map_err(|e| e.to_string())?;
            files.push(FileToSend {
                entry: Entry {
                    path: rel,
                    kind: 'l',
                    mode,
                    size: 0,
                    chunk: None,
                    link: Some(link),
                },
                from: path,
                root: volume_dir.to_path_buf(),
                snapshot: false,
            });
        } else if meta.is_file() {
            let snapshot = is_sqlite(volume_dir, &path);
            let from = if snapshot {
                let copy = staging.join(format!("{}.db", files.len()));
                // From inside the instance when its locks are not the worker's to see (a guest).
                let made = match shared.driver.snapshot_database(&job.volume, &rel, &copy) {
                    Some(inside) => inside.await.map_err(|e| e.to_string()),
                    None => snapshot_database(&path, &copy)
                        .await
                        .map_err(|e| e.to_string()),
                };
                made.map_err(|e| format!("snapshot of {}: {e}", rel.display()))?;
                copy
            } else {
                path
            };
            files.push(FileToSend {
                entry: Entry {
                    path: rel,
                    kind: 'f',
                    mode,
                    size: 0,
                    chunk: None,
                    link: None,
                },
                root: if snapshot {
                    staging.clone()
                } else {
                    volume_dir.to_path_buf()
                },
                from,
                snapshot,
            });
        }
    }
    // Name every file's content (from the cache where the file is unchanged).
    let cache_path = shared
        .config
        .data_dir
        .join("backup-cache")
        .join(format!("{}.json", job.volume));
    let (files, cache) = {
        let key = key.clone();
        let cache_path = cache_path.clone();
        tokio::task::spawn_blocking(move || name_contents(&key, files, &cache_path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading files: {e}"))?
    };
    let store = shared.worker_agent(&job.store_url, job.grant.clone());
    // Ask the store which contents it lacks.
    let mut wanted: Vec<String> = files.iter().filter_map(|f| f.entry.chunk.clone()).collect();
    wanted.sort();
    wanted.dedup();
    let mut missing = std::collections::HashSet::new();
    for batch in wanted.chunks(MISSING_BATCH) {
        let answer = store
            .missing_backup_chunks()
            .volume(&job.volume)
            .body(ChunkList {
                chunks: batch.to_vec(),
            })
            .send()
            .await
            .map_err(|e| format!("asking the store: {}", SdkError::from(e)))?;
        missing.extend(answer.into_inner().chunks);
    }
    // Send what it lacks, each content once.
    let mut sent = 0u64;
    for f in &files {
        let Some(chunk) = f.entry.chunk.as_ref().filter(|c| missing.remove(*c)) else {
            continue;
        };
        let body = sealed_stream(
            key.clone(),
            chunk.clone(),
            f.entry.size,
            f.root.clone(),
            f.from.clone(),
        );
        store
            .put_backup_chunk()
            .volume(&job.volume)
            .chunk(chunk)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| format!("sending {}: {}", f.entry.path.display(), SdkError::from(e)))?;
        sent += f.entry.size;
        progress.store(sent, Ordering::Relaxed);
    }
    // Then the manifest: the backup exists once it is stored.
    let manifest = Manifest {
        backup_id: job.backup_id,
        volume: job.volume.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        entries: files.iter().map(|f| f.entry.clone()).collect(),
    };
    // The contents it uses first (the store keeps them for pruning), then the manifest.
    store
        .put_backup_chunk_list()
        .volume(&job.volume)
        .backup_id(job.backup_id)
        .body(ChunkList {
            chunks: wanted.clone(),
        })
        .send()
        .await
        .map_err(|e| format!("sending the content list: {}", SdkError::from(e)))?;
    let plain = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let mut sealed = Vec::with_capacity(plain.len() + HEADER + TAG * 4);
    seal(
        key,
        &manifest_label(job.backup_id),
        plain.len() as u64,
        &plain[..],
        &mut sealed,
    )
    .map_err(|e| e.to_string())?;
    store
        .put_backup_manifest()
        .volume(&job.volume)
        .backup_id(job.backup_id)
        .body(sealed)
        .send()
        .await
        .map_err(|e| format!("sending the manifest: {}", SdkError::from(e)))?;
    // The store keeps the newest backups only; a failed prune is retried with the next backup.
    match store
        .prune_backups()
        .volume(&job.volume)
        .body(BackupIds {
            keep: job.keep.clone(),
        })
        .send()
        .await
    {
        Ok(p) => {
            let p = p.into_inner();
            tracing::info!(volume = %job.volume, backups = p.backups, contents = p.contents, bytes = p.bytes, "older backups pruned from the store");
        }
        Err(e) => {
            tracing::warn!(volume = %job.volume, error = %SdkError::from(e), "pruning older backups failed")
        }
    }
    fs::create_dir_all(cache_path.parent().expect("a parent")).map_err(|e| e.to_string())?;
    aerekos_common::secrets::write_secret_file(
        &cache_path,
        &serde_json::to_vec(&cache).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let count = files.iter().filter(|f| f.entry.kind == 'f').count() as u64;
    let bytes = files.iter().map(|f| f.entry.size).sum();
    Ok((count, bytes, sent))
}

/// Every entry of the volume, parents first; databases' side files are left out (their online
/// copy includes what they hold).
fn list(dir: &Path) -> io::Result<Vec<(PathBuf, fs::Metadata)>> {
    crate::volumes::walk(dir, |rel, name| {
        let side = ["-wal", "-shm", "-journal"]
            .iter()
            .find_map(|s| name.strip_suffix(s));
        side.is_some_and(|base| is_sqlite(dir, &dir.join(rel).join(base)))
    })
}

/// Copies the database at `path` to `copy` online: one read transaction, the writer carries on.
async fn snapshot_database(path: &Path, copy: &Path) -> Result<(), sqlx::Error> {
    use sqlx::{ConnectOptions as _, sqlite::SqliteConnectOptions};
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging()
        .connect()
        .await?;
    sqlx::query("VACUUM INTO ?")
        .bind(copy.display().to_string())
        .execute(&mut conn)
        .await?;
    sqlx::Connection::close(conn).await
}

/// Names each file's content, reading only files the cache does not vouch for.
fn name_contents(
    key: &BackupKey,
    mut files: Vec<FileToSend>,
    cache_path: &Path,
) -> io::Result<(Vec<FileToSend>, HashMap<PathBuf, Seen>)> {
    let old: HashMap<PathBuf, Seen> = fs::read(cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut new = HashMap::new();
    for f in files.iter_mut().filter(|f| f.entry.kind == 'f') {
        let meta = fs::symlink_metadata(&f.from)?;
        let (size, mtime_ns, ino) = seen_of(&meta);
        f.entry.size = size;
        // Database snapshots are new files every time; only the volume's own files are cached.
        let cacheable = !f.snapshot;
        let known = old
            .get(&f.entry.path)
            .filter(|s| cacheable && s.size == size && s.mtime_ns == mtime_ns && s.ino == ino);
        let chunk = match known {
            Some(s) => s.chunk.clone(),
            None => {
                let mut h = key.hasher();
                let mut file = crate::volumes::open_regular(&f.root, &f.from)?;
                let mut buf = vec![0u8; SEGMENT];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                hex(&h.finalize())
            }
        };
        if cacheable {
            new.insert(
                f.entry.path.clone(),
                Seen {
                    size,
                    mtime_ns,
                    ino,
                    chunk: chunk.clone(),
                },
            );
        }
        f.entry.chunk = Some(chunk);
    }
    Ok((files, new))
}

/// The sealed bytes of the file at `from`, as a stream.
fn sealed_stream(
    key: BackupKey,
    chunk: String,
    size: u64,
    root: PathBuf,
    from: PathBuf,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let result = crate::volumes::open_regular(&root, &from).and_then(|file| {
            seal(
                &key,
                &chunk,
                size,
                file,
                Sender {
                    tx,
                    buf: Vec::with_capacity(SEGMENT + TAG),
                },
            )
        });
        if let Err(e) = result {
            let _ = errors.blocking_send(Err(e));
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Sends what is written down a channel, a segment at a time.
struct Sender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for Sender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SEGMENT {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the store went away"))
    }
}

/// Reports to the conductor; false when it no longer expects this backup.
async fn send_report(shared: &Shared, backup_id: Uuid, report: BackupReport) -> bool {
    let Some(identity) = shared.identity.read().expect("identity lock").clone() else {
        return true;
    };
    let conductor = shared.conductor(Some(identity.credential.clone()));
    for attempt in 1..=10 {
        match conductor
            .report_backup()
            .id(identity.worker_id)
            .backup_id(backup_id)
            .body(report.clone())
            .send()
            .await
            .map_err(SdkError::from)
        {
            Ok(_) => return true,
            Err(SdkError::Api { status: 404, .. }) => return false,
            Err(e) if attempt < 10 => {
                tracing::debug!(%backup_id, error = %e, "reporting a backup failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => tracing::warn!(%backup_id, error = %e, "could not report a backup"),
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The backup store (a worker keeping other workers' backups)

/// Checks that `grant` lets its holder `access` (`read` or `write`) this worker's backups of `volume`.
pub(crate) fn check_store_grant(
    shared: &Shared,
    grant: &Claims,
    access: &str,
    volume: &str,
) -> ApiResult<PathBuf> {
    let me = (*shared.registered.borrow())
        .ok_or_else(|| ApiError::unavailable("not_joined", "this worker has not joined yet"))?;
    let allowed: Vec<String> = match access {
        // Writing a backup also asks what the store has.
        "read" => vec![
            aerekos_common::auth::backup_store_scope("read", &me.to_string(), volume),
            aerekos_common::auth::backup_store_scope("write", &me.to_string(), volume),
        ],
        _ => vec![aerekos_common::auth::backup_store_scope(
            access,
            &me.to_string(),
            volume,
        )],
    };
    if !grant.scope.as_ref().is_some_and(|s| allowed.contains(s)) {
        return Err(ApiError::forbidden(
            "grant_mismatch",
            format!("this grant does not allow {access} of volume {volume}'s backups here"),
        ));
    }
    if volume.is_empty()
        || !Path::new(volume)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        || volume.contains('/')
    {
        return Err(ApiError::bad_request("invalid_volume", "not a volume name"));
    }
    Ok(shared.config.data_dir.join("backups").join(volume))
}

fn valid_chunk(chunk: &str) -> ApiResult<()> {
    if chunk.len() == 64
        && chunk
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_chunk",
            "a chunk name is 64 lowercase hex digits",
        ))
    }
}

fn chunk_path(store: &Path, chunk: &str) -> PathBuf {
    store.join("chunks").join(&chunk[..2]).join(chunk)
}

/// Which of `chunks` this store lacks.
pub fn missing(store: &Path, chunks: Vec<String>) -> ApiResult<Vec<String>> {
    for c in &chunks {
        valid_chunk(c)?;
    }
    Ok(chunks
        .into_iter()
        .filter(|c| !chunk_path(store, c).exists())
        .collect())
}

/// Writes `body` to `path` whole or not at all (temporary name, fsync, rename, directory fsync).
pub async fn store_file(path: PathBuf, body: poem::Body) -> ApiResult<()> {
    let dir = path.parent().expect("a parent").to_path_buf();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    let tmp = dir.join(format!(".tmp-{}", Uuid::new_v4()));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut stream = body.into_bytes_stream();
        while let Some(chunk) = stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk?).await?;
        }
        file.sync_all().await?;
        tokio::fs::rename(&tmp, &path).await?;
        tokio::fs::File::open(&dir).await?.sync_all().await
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiError::bad_request(
            "upload_failed",
            format!("the upload broke off: {e}"),
        ));
    }
    Ok(())
}

pub fn chunk_file(store: &Path, chunk: &str) -> ApiResult<PathBuf> {
    valid_chunk(chunk)?;
    Ok(chunk_path(store, chunk))
}

pub fn manifest_file(store: &Path, backup_id: Uuid) -> PathBuf {
    store.join("manifests").join(backup_id.to_string())
}

fn chunk_list_file(store: &Path, backup_id: Uuid) -> PathBuf {
    store.join("manifests").join(format!("{backup_id}.chunks"))
}

/// Stores the list of contents backup `backup_id` uses.
pub async fn store_chunk_list(store: &Path, backup_id: Uuid, chunks: Vec<String>) -> ApiResult<()> {
    for c in &chunks {
        valid_chunk(c)?;
    }
    let json = serde_json::to_vec(&chunks).map_err(ApiError::internal)?;
    store_file(
        chunk_list_file(store, backup_id),
        poem::Body::from_vec(json),
    )
    .await
}

/// Deletes every backup in `store` but `keep`, then every content no kept backup uses (unless a
/// kept backup's content list is missing: then no content is deleted). Returns (backups,
/// contents, bytes) deleted.
pub fn prune(store: &Path, keep: &[Uuid]) -> io::Result<(u64, u64, u64)> {
    let manifests = store.join("manifests");
    let mut backups = 0;
    for entry in fs::read_dir(&manifests)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.strip_suffix(".chunks").unwrap_or(&name);
        if Uuid::parse_str(id).is_ok_and(|id| !keep.contains(&id)) {
            fs::remove_file(entry.path())?;
            backups += u64::from(!name.ends_with(".chunks"));
        }
    }
    let mut used = std::collections::HashSet::new();
    for id in keep {
        let Ok(list) = fs::read(chunk_list_file(store, *id)) else {
            tracing::warn!(backup_id = %id, "a kept backup has no content list; no content is deleted");
            return Ok((backups, 0, 0));
        };
        used.extend(serde_json::from_slice::<Vec<String>>(&list).map_err(io::Error::other)?);
    }
    let (mut contents, mut bytes) = (0, 0);
    let Ok(shards) = fs::read_dir(store.join("chunks")) else {
        return Ok((backups, 0, 0));
    };
    for shard in shards.flatten() {
        for entry in fs::read_dir(shard.path())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !used.contains(&name) {
                bytes += entry.metadata().map_or(0, |m| m.len());
                fs::remove_file(entry.path())?;
                contents += 1;
            }
        }
    }
    Ok((backups, contents, bytes))
}

/// A stored file as a response body; 404 naming `what` when it is not there.
pub async fn read_file(path: &Path, what: &str) -> ApiResult<poem::Body> {
    match tokio::fs::File::open(path).await {
        Ok(file) => Ok(poem::Body::from_async_read(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ApiError::not_found(
            "not_in_store",
            format!("this store holds no {what}"),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Restoring (the worker a restore puts the volume on)

/// Restores the backup `source` names into `dest` (created here): every file is fetched, opened,
/// checked against its content name, written and synced. Returns the bytes restored.
/// Restores backup `backup_id` of `volume` from a backup store's directory on this machine (as
/// `aerekos restore` unpacks a platform backup) into `dest` (created here).
pub fn restore_from_store_dir(
    store: &Path,
    volume: &str,
    backup_id: Uuid,
    key: &BackupKey,
    dest: &Path,
) -> Result<u64, String> {
    let sealed = fs::read(manifest_file(store, backup_id))
        .map_err(|e| format!("the manifest of backup {backup_id}: {e}"))?;
    let manifest = open_manifest(key, &sealed, volume, backup_id)?;
    let mut writer = RestoreWriter::new(dest)?;
    let progress = AtomicU64::new(0);
    for entry in &manifest.entries {
        if let Some(chunk) = writer.place(entry)? {
            let file = fs::File::open(chunk_path(store, &chunk))
                .map_err(|e| format!("{}: {e}", entry.path.display()))?;
            let size = restore_file(
                key,
                &chunk,
                io::BufReader::new(file),
                &dest.join(&entry.path),
                entry.mode,
                &progress,
            )
            .map_err(|e| format!("{}: {e}", entry.path.display()))?;
            writer.check_size(entry, size)?;
        }
    }
    writer.finish()
}

fn open_manifest(
    key: &BackupKey,
    sealed: &[u8],
    volume: &str,
    backup_id: Uuid,
) -> Result<Manifest, String> {
    let mut plain = vec![];
    open(
        key,
        &manifest_label(backup_id),
        sealed,
        &mut plain,
        &AtomicU64::new(0),
    )
    .map_err(|e| e.to_string())?;
    let manifest: Manifest =
        serde_json::from_slice(&plain).map_err(|e| format!("the manifest: {e}"))?;
    if manifest.volume != volume || manifest.backup_id != backup_id {
        return Err("the manifest is of another backup".into());
    }
    Ok(manifest)
}

/// Lays out a restored volume: directories and links as the manifest goes, files by the caller.
struct RestoreWriter {
    dest: PathBuf,
    dirs: Vec<PathBuf>,
    total: u64,
}

impl RestoreWriter {
    fn new(dest: &Path) -> Result<Self, String> {
        fs::create_dir(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            dirs: vec![dest.to_path_buf()],
            total: 0,
        })
    }

    /// Places a directory or link; for a file, the name of the content to write there.
    fn place(&mut self, entry: &Entry) -> Result<Option<String>, String> {
        if entry.path.as_os_str().is_empty()
            || !entry
                .path
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format!(
                "the manifest names a path outside the volume: {}",
                entry.path.display()
            ));
        }
        let path = self.dest.join(&entry.path);
        match entry.kind {
            'd' => {
                fs::create_dir_all(&path).map_err(|e| e.to_string())?;
                self.dirs.push(path);
                Ok(None)
            }
            'l' => {
                std::os::unix::fs::symlink(entry.link.as_deref().unwrap_or(Path::new("")), &path)
                    .map_err(|e| e.to_string())?;
                Ok(None)
            }
            'f' => entry
                .chunk
                .clone()
                .map(Some)
                .ok_or_else(|| "a file without content in the manifest".to_owned()),
            other => Err(format!(
                "the manifest has an entry of unknown kind {other:?}"
            )),
        }
    }

    fn check_size(&mut self, entry: &Entry, size: u64) -> Result<(), String> {
        if size != entry.size {
            return Err(format!(
                "{}: {size} bytes restored, the manifest says {}",
                entry.path.display(),
                entry.size
            ));
        }
        self.total += size;
        Ok(())
    }

    /// Syncs every directory; the bytes restored.
    fn finish(self) -> Result<u64, String> {
        for dir in self.dirs.iter().rev() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| e.to_string())?;
        }
        Ok(self.total)
    }
}

/// `store` is a client of the backup store `source` names, with its grant.
pub async fn restore_into(
    store: &WorkerAgent,
    source: &BackupSource,
    volume: &str,
    dest: &Path,
    progress: &Arc<AtomicU64>,
) -> Result<u64, String> {
    let key = BackupKey::from_base64(&source.key)?;
    let sealed = store
        .get_backup_manifest()
        .volume(volume)
        .backup_id(source.backup_id)
        .send()
        .await
        .map_err(|e| format!("fetching the manifest: {}", SdkError::from(e)))?;
    let sealed = collect(sealed.into_inner().into_inner()).await?;
    let manifest = open_manifest(&key, &sealed, volume, source.backup_id)?;
    let mut writer = RestoreWriter::new(dest)?;
    for entry in &manifest.entries {
        let Some(chunk) = writer.place(entry)? else {
            continue;
        };
        let response = store
            .get_backup_chunk()
            .volume(volume)
            .chunk(&chunk)
            .send()
            .await
            .map_err(|e| format!("fetching {}: {}", entry.path.display(), SdkError::from(e)))?;
        let (key, path, counter, mode) = (
            key.clone(),
            dest.join(&entry.path),
            progress.clone(),
            entry.mode,
        );
        let body = response.into_inner().into_inner();
        let size = read_blocking(body, move |input| {
            restore_file(&key, &chunk, input, &path, mode, &counter)
        })
        .await
        .map_err(|e| format!("{}: {e}", entry.path.display()))?;
        writer.check_size(entry, size)?;
    }
    writer.finish()
}

/// Opens one sealed file into `path`, checking its content name; synced before it returns.
fn restore_file(
    key: &BackupKey,
    chunk: &str,
    input: impl Read,
    path: &Path,
    mode: u32,
    progress: &AtomicU64,
) -> io::Result<u64> {
    use std::os::unix::fs::PermissionsExt as _;
    struct Hashing<W> {
        inner: W,
        hasher: Sha256,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.hasher.update(data);
            self.inner.write_all(data)?;
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut out = Hashing {
        inner: io::BufWriter::with_capacity(SEGMENT, file),
        hasher: key.hasher(),
    };
    let size = open(key, chunk, input, &mut out, progress)?;
    if hex(&out.hasher.finalize_reset()) != chunk {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "its content does not match its name",
        ));
    }
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()?;
    Ok(size)
}

async fn collect(
    mut body: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
) -> Result<Vec<u8>, String> {
    let mut out = vec![];
    while let Some(piece) = body.next().await {
        out.extend_from_slice(&piece.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BackupKey {
        BackupKey([9u8; 32])
    }

    #[test]
    fn sealed_objects_open_only_unaltered_and_under_their_name() {
        for len in [
            0usize,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT + 17,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut sealed = vec![];
            seal(&key(), "a", len as u64, &plain[..], &mut sealed).unwrap();
            let mut back = vec![];
            open(&key(), "a", &sealed[..], &mut back, &AtomicU64::new(0)).unwrap();
            assert_eq!(back, plain, "len {len}");
            // Another name, a flipped byte, a cut, or a segment dropped: refused.
            assert!(open(&key(), "b", &sealed[..], &mut vec![], &AtomicU64::new(0)).is_err());
            let mut flipped = sealed.clone();
            let at = flipped.len() - 1;
            flipped[at] ^= 1;
            assert!(open(&key(), "a", &flipped[..], &mut vec![], &AtomicU64::new(0)).is_err());
            assert!(
                open(
                    &key(),
                    "a",
                    &sealed[..sealed.len() - 1],
                    &mut vec![],
                    &AtomicU64::new(0)
                )
                .is_err()
            );
            assert!(
                open(
                    &BackupKey([8u8; 32]),
                    "a",
                    &sealed[..],
                    &mut vec![],
                    &AtomicU64::new(0)
                )
                .is_err()
            );
        }
    }
}
