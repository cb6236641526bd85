//! Volumes on this worker and their part in moves (see the conductor's `domain/moves.rs`).
//!
//! - **Export** (the old worker): `GET /api/worker/volumes/{name}/export` with a one-time grant
//!   streams the volume as a tar archive ending in a SHA-256 of everything in it. It is refused
//!   while an instance here still runs on the volume, so the copy is of data at rest.
//! - **Import** (the new worker): for each transfer in its assignments the worker fetches the
//!   archive into `volumes/.incoming-<move id>`, checks every path and the checksum, syncs every
//!   file and directory, renames it to `volumes/<name>`, and reports to the conductor. A broken,
//!   truncated or altered stream leaves nothing in place.
//! - **Release** (the old worker, once the service is healthy on the new one): the volume's
//!   directory is deleted, but only while no instance here uses it.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{self, Read, Write},
    path::{Component, Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aerekos_common::{ApiError, ApiResult, auth::Claims};
use aerekos_sdk::{
    SdkError,
    conductor::types::{DesiredState, TransferOutcome, TransferReport, VolumeTransfer},
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{Shared, driver::Observed};

/// A volume being received: `volumes/.incoming-<move id>`.
const INCOMING_PREFIX: &str = ".incoming-";
/// An old copy being replaced: `volumes/.replaced-<move id>`.
const REPLACED_PREFIX: &str = ".replaced-";
/// The last entry of an export: the hex SHA-256 of every entry before it.
const CHECKSUM_ENTRY: &str = ".aerekos-volume-sha256";
/// The grants this worker has honoured (a grant is good for one export), with their expiry.
const USED_GRANTS_FILE: &str = "used-grants.json";
const CHUNK: usize = 256 * 1024;
/// How long an import waits for the old instance to finish stopping.
const IN_USE_PATIENCE: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Opens `path`, a file below the directory `root` (a volume), for reading, only if it is a
/// regular file reached without a symlink on the way: what runs on a volume, in a container or a
/// guest, can make one (in place of a file, or of a directory on its path, even between a listing
/// and this open) that points at any file of the host's. Nor a FIFO (it would hold the reader
/// up) or a device.
pub fn open_regular(root: &Path, path: &Path) -> io::Result<fs::File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let rel = path.strip_prefix(root).map_err(|_| {
        io::Error::other(format!(
            "{} is not below {}",
            path.display(),
            root.display()
        ))
    })?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let opened = openat2(
        fs::File::open(root)?,
        rel,
        OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    );
    let file = match opened {
        Ok(fd) => fs::File::from(fd),
        // A kernel before 5.6 (or a sandbox that forbids the call): the last component at least.
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(path)?
        }
        Err(e) => return Err(io::Error::from(e)),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// Whether `name` is a volume's directory (not a transfer's working directory).
pub fn is_volume_name(name: &str) -> bool {
    !name.starts_with('.')
}

// ---------------------------------------------------------------------------------------------
// The archive format

/// Adds one entry's identity and content to the running checksum.
fn hash_entry(hasher: &mut Sha256, kind: u8, path: &Path, size: u64) {
    use std::os::unix::ffi::OsStrExt as _;
    hasher.update([kind]);
    hasher.update(path.as_os_str().as_bytes());
    hasher.update([0]);
    hasher.update(size.to_le_bytes());
}

/// Every entry below `root`, parents before children, in name order: (relative path, metadata).
/// Platform files at the top (`.aerekos-*`) are left out, and so is any entry `skip` names (given
/// the directory it is in, relative, and its name).
pub(crate) fn walk(
    root: &Path,
    skip: impl Fn(&Path, &str) -> bool,
) -> io::Result<Vec<(PathBuf, fs::Metadata)>> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(root.join(&rel))?.collect::<Result<_, _>>()?;
        children.sort_by_key(fs::DirEntry::file_name);
        let mut dirs = vec![];
        for child in children {
            let name = child.file_name().to_string_lossy().into_owned();
            if (rel.as_os_str().is_empty() && aerekos_common::volume_hold::is_platform_file(&name))
                || skip(&rel, &name)
            {
                continue;
            }
            let path = rel.join(&name);
            let meta = fs::symlink_metadata(child.path())?;
            if meta.is_dir() {
                dirs.push(path.clone());
            }
            out.push((path, meta));
        }
        stack.extend(dirs.into_iter().rev());
    }
    Ok(out)
}

/// Writes the tree below `dir` to `out` as a tar stream whose last entry is the checksum.
/// Returns the bytes of file content written.
pub fn write_archive(dir: &Path, out: impl Write) -> io::Result<u64> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut builder = tar::Builder::new(out);
    let mut hasher = Sha256::new();
    let mut total = 0;
    for (rel, meta) in walk(dir, |_, _| false)? {
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.permissions().mode() & 0o7777);
        header.set_mtime(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        if meta.is_dir() {
            hash_entry(&mut hasher, b'd', &rel, 0);
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &rel, io::empty())?;
        } else if meta.is_file() {
            let size = meta.len();
            hash_entry(&mut hasher, b'f', &rel, size);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            let file = open_regular(dir, &dir.join(&rel))?;
            // Read in large pieces: tar copies through a small buffer, which would cost a system
            // call per 8 KiB.
            let mut reader = HashingReader {
                inner: io::BufReader::with_capacity(CHUNK, file.take(size)),
                hasher: &mut hasher,
                read: 0,
            };
            builder.append_data(&mut header, &rel, &mut reader)?;
            if reader.read != size {
                return Err(io::Error::other(format!(
                    "{} changed while it was exported",
                    rel.display()
                )));
            }
            total += size;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(dir.join(&rel))?;
            hash_entry(&mut hasher, b'l', &rel, 0);
            hasher.update(target.as_os_str().as_encoded_bytes());
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &rel, &target)?;
        } else {
            tracing::warn!(path = %rel.display(), "a volume holds a special file (socket, fifo, device); it is not exported");
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.set_size(digest.len() as u64);
    builder.append_data(&mut header, CHECKSUM_ENTRY, digest.as_bytes())?;
    builder.into_inner()?.flush()?;
    Ok(total)
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn bad_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads an archive [`write_archive`] wrote into `dest` (created here; its parent must exist),
/// refusing any path that would leave it and any archive whose checksum is missing or wrong.
/// Every file and directory is synced before this returns (each file as soon as it is written, so
/// the disk works while the next one arrives). `progress` is told the content bytes
/// written so far.
pub fn read_archive(input: impl Read, dest: &Path, progress: &AtomicU64) -> io::Result<u64> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::create_dir(dest)?;
    let mut archive = tar::Archive::new(input);
    let mut hasher = Sha256::new();
    let mut expected: Option<String> = None;
    let mut dirs = vec![dest.to_path_buf()];
    let mut total = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        if expected.is_some() {
            return Err(bad_data("the archive goes on after its checksum".into()));
        }
        if rel.as_os_str() == CHECKSUM_ENTRY {
            let mut digest = String::new();
            entry.by_ref().take(64).read_to_string(&mut digest)?;
            expected = Some(digest);
            continue;
        }
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(bad_data(format!(
                "the archive names a path outside the volume: {}",
                rel.display()
            )));
        }
        let path = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o600) & 0o7777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                hash_entry(&mut hasher, b'd', &rel, 0);
                fs::create_dir_all(&path)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))?;
                dirs.push(path);
            }
            tar::EntryType::Regular => {
                let size = entry.header().size()?;
                hash_entry(&mut hasher, b'f', &rel, size);
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                let mut buf = vec![0; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK)).max(1)];
                let mut left = size;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
                    let n = entry.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(bad_data(format!(
                            "the archive ends inside {}",
                            rel.display()
                        )));
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n])?;
                    left -= n as u64;
                    total += n as u64;
                    progress.store(total, Ordering::Relaxed);
                }
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                file.sync_all()?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| bad_data(format!("{} is a link to nothing", rel.display())))?;
                hash_entry(&mut hasher, b'l', &rel, 0);
                hasher.update(target.as_os_str().as_encoded_bytes());
                std::os::unix::fs::symlink(&target, &path)?;
            }
            other => {
                return Err(bad_data(format!(
                    "{} is of a kind a volume cannot hold ({other:?})",
                    rel.display()
                )));
            }
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match expected {
        None => {
            return Err(bad_data(
                "the archive ended before its checksum: it was cut short".into(),
            ));
        }
        Some(e) if e != digest => {
            return Err(bad_data(format!(
                "checksum mismatch: the archive says {e}, its contents give {digest}"
            )));
        }
        Some(_) => {}
    }
    for dir in dirs.iter().rev() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(total)
}

/// A writer sending what it is given down a channel in chunks, at most `rate` bytes a second,
/// until `cancelled` is set.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    rate: Option<u64>,
    sent: u64,
    started: Instant,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other(
                "the export was called off: an instance here starts on the volume again",
            ));
        }
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        self.sent += self.buf.len() as u64;
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// A reader taking chunks from a channel (an HTTP body read on the async side).
pub(crate) struct ChannelReader {
    pub(crate) rx: mpsc::Receiver<io::Result<Bytes>>,
    pub(crate) current: Bytes,
}

/// Runs `consume` on a blocking thread, reading `body` as it arrives; its result, or why the
/// stream or the thread failed.
pub(crate) async fn read_blocking<T: Send + 'static>(
    mut body: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
    consume: impl FnOnce(ChannelReader) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let reader = tokio::task::spawn_blocking(move || {
        consume(ChannelReader {
            rx,
            current: Bytes::new(),
        })
    });
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| io::Error::other(format!("the stream broke: {e}")));
        let failed = piece.is_err();
        if tx.send(piece).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    reader.await.map_err(io::Error::other)?
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Export (the worker holding the volume)

/// The grants honoured so far, kept on disk so a restart does not make one good again.
#[derive(Default)]
pub struct UsedGrants(std::sync::Mutex<Option<HashMap<String, i64>>>);

impl UsedGrants {
    /// Records `jti` as used; false when it was already.
    fn use_once(&self, data_dir: &Path, jti: &str, exp: i64) -> io::Result<bool> {
        let mut guard = self.0.lock().expect("grants lock");
        let used = guard.get_or_insert_with(|| {
            fs::read(data_dir.join(USED_GRANTS_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        });
        let now = chrono::Utc::now().timestamp();
        used.retain(|_, exp| *exp + 60 > now);
        if used.contains_key(jti) {
            return Ok(false);
        }
        used.insert(jti.to_owned(), exp);
        aerekos_common::secrets::write_secret_file(
            &data_dir.join(USED_GRANTS_FILE),
            &serde_json::to_vec(used)?,
        )?;
        Ok(true)
    }
}

/// Whether an instance here runs (or may still run) on `volume`.
async fn in_use(shared: &Shared, volume: &str) -> bool {
    let desired = shared.desired().unwrap_or_default();
    let mine: HashSet<Uuid> = desired
        .iter()
        .filter(|i| i.spec.volume.as_deref() == Some(volume))
        .map(|i| i.id)
        .collect();
    if desired
        .iter()
        .any(|i| mine.contains(&i.id) && i.desired_state == DesiredState::Running)
    {
        return true;
    }
    // An instance still stopping, or one this worker no longer knows the spec of, may hold it.
    let known: HashSet<Uuid> = desired.iter().map(|i| i.id).collect();
    for id in shared.driver.instances().await {
        let ours_or_unknown = mine.contains(&id) || !known.contains(&id);
        if ours_or_unknown && shared.driver.observe(id).await == Observed::Running {
            return true;
        }
    }
    false
}

/// The archive of `volume` for the holder of `grant`, streamed.
pub async fn export(shared: &Arc<Shared>, grant: &Claims, volume: &str) -> ApiResult<poem::Body> {
    let me = (*shared.registered.borrow())
        .ok_or_else(|| ApiError::unavailable("not_joined", "this worker has not joined yet"))?;
    let scope = aerekos_common::auth::volume_export_scope(&me.to_string(), volume);
    if grant.scope.as_deref() != Some(scope.as_str()) {
        return Err(ApiError::forbidden(
            "grant_mismatch",
            format!("this grant is not for volume {volume} on this worker"),
        ));
    }
    let dir = shared.config.data_dir.join("volumes").join(volume);
    if !is_volume_name(volume) || !dir.is_dir() {
        return Err(ApiError::not_found(
            "volume_not_found",
            format!("this worker holds no volume {volume:?}"),
        ));
    }
    if in_use(shared, volume).await {
        return Err(ApiError::conflict(
            "volume_in_use",
            format!(
                "an instance here still runs on volume {volume}; try again once it has stopped"
            ),
        ));
    }
    if !shared
        .used_grants
        .use_once(&shared.config.data_dir, &grant.jti, grant.exp)
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::conflict(
            "grant_used",
            "this grant was used already; a grant is good for one export",
        ));
    }
    tracing::info!(volume, grant = %grant.sub, "exporting a volume");
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let rate = shared.config.transfer_rate;
    let volume_name = volume.to_owned();
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    shared
        .exports
        .lock()
        .expect("exports lock")
        .insert(volume.to_owned(), cancelled.clone());
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            rate,
            sent: 0,
            started: Instant::now(),
            cancelled,
        };
        let result = write_archive(&dir, writer);
        shared
            .exports
            .lock()
            .expect("exports lock")
            .remove(&volume_name);
        match result {
            Ok(bytes) => tracing::info!(volume = %volume_name, bytes, "volume exported"),
            Err(e) => {
                tracing::warn!(volume = %volume_name, error = %e, "volume export broke off");
                let _ = errors.blocking_send(Err(e));
            }
        }
    });
    Ok(poem::Body::from_bytes_stream(tokio_stream(rx)))
}

/// The receiving half of a channel as a stream.
fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Before an instance starts on `volume`: false while the volume is being exported, and the
/// export is called off (the move it served has failed, so the data is about to change).
pub fn ready_to_start_on(shared: &Shared, volume: &str) -> bool {
    match shared.exports.lock().expect("exports lock").get(volume) {
        Some(cancelled) => {
            tracing::warn!(
                volume,
                "an instance is to start on a volume being exported; calling the export off"
            );
            cancelled.store(true, Ordering::Relaxed);
            false
        }
        None => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Import and release (driven by the assignments)

/// Carries out this worker's volume work from its assignments until told to stop: imports,
/// releases, and removal of the leftovers of transfers that are over.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let running: Arc<std::sync::Mutex<HashSet<Uuid>>> = Arc::default();
    loop {
        let work = shared.volume_work();
        for job in work.backups {
            if running.lock().expect("running lock").insert(job.backup_id) {
                let (shared, running) = (shared.clone(), running.clone());
                tokio::spawn(async move {
                    crate::backup::run_job(&shared, &job).await;
                    running.lock().expect("running lock").remove(&job.backup_id);
                });
            }
        }
        for t in work.transfers {
            if running.lock().expect("running lock").insert(t.move_id) {
                let (shared, running) = (shared.clone(), running.clone());
                tokio::spawn(async move {
                    import(&shared, &t).await;
                    running.lock().expect("running lock").remove(&t.move_id);
                });
            }
        }
        for volume in work.releases {
            release(&shared, &volume).await;
        }
        let busy: HashSet<Uuid> = running.lock().expect("running lock").clone();
        remove_leftovers(&shared.config.data_dir.join("volumes"), &busy);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shared.volume_work_changed.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Removes `.incoming-*` and `.replaced-*` directories of transfers not running now.
fn remove_leftovers(volumes: &Path, running: &HashSet<Uuid>) {
    let Ok(entries) = fs::read_dir(volumes) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name
            .strip_prefix(INCOMING_PREFIX)
            .or_else(|| name.strip_prefix(REPLACED_PREFIX))
            .and_then(|id| Uuid::parse_str(id).ok());
        if id.is_some_and(|id| !running.contains(&id)) {
            tracing::info!(dir = %name, "removing what an ended volume transfer left");
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %name, error = %e, "could not remove it");
            }
        }
    }
}

/// Deletes this worker's copy of `volume` (moved away), unless something here still uses it.
async fn release(shared: &Shared, volume: &str) {
    let dir = shared.config.data_dir.join("volumes").join(volume);
    if !is_volume_name(volume) || !dir.exists() {
        return;
    }
    if in_use(shared, volume).await {
        tracing::warn!(
            volume,
            "not deleting a moved volume: an instance here still uses it"
        );
        return;
    }
    // Renamed first, so a crash mid-delete never leaves a half volume under its own name.
    let doomed = shared
        .config
        .data_dir
        .join("volumes")
        .join(format!("{REPLACED_PREFIX}{}", Uuid::new_v4()));
    match fs::rename(&dir, &doomed).and_then(|()| fs::remove_dir_all(&doomed)) {
        Ok(()) => tracing::info!(volume, "deleted this worker's copy of a moved volume"),
        Err(e) => tracing::warn!(volume, error = %e, "could not delete a moved volume's old copy"),
    }
}

/// Fetches, checks and installs the volume of `t`, then reports the outcome to the conductor.
async fn import(shared: &Arc<Shared>, t: &VolumeTransfer) {
    let progress = Arc::new(AtomicU64::new(0));
    let reporter = {
        let (shared, progress, move_id) = (shared.clone(), progress.clone(), t.move_id);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let bytes = progress.load(Ordering::Relaxed);
                if report(&shared, move_id, TransferOutcome::Copying, bytes, None).await
                    == Reported::Refused
                {
                    return;
                }
            }
        })
    };
    let outcome = fetch_and_install(shared, t, &progress).await;
    reporter.abort();
    let bytes = progress.load(Ordering::Relaxed);
    match outcome {
        Ok(()) => {
            tracing::info!(volume = %t.volume, move_id = %t.move_id, bytes, "volume received and in place");
            if report(shared, t.move_id, TransferOutcome::Copied, bytes, None).await
                == Reported::Refused
            {
                // The move ended without making this worker the holder (it failed meanwhile):
                // the copy is not the volume's, and may be of data that has changed since.
                drop_copy(
                    &shared.config.data_dir.join("volumes"),
                    &t.volume,
                    t.move_id,
                );
            }
        }
        Err(why) => {
            tracing::warn!(volume = %t.volume, move_id = %t.move_id, reason = %why, "volume transfer failed");
            let _ = report(shared, t.move_id, TransferOutcome::Failed, bytes, Some(why)).await;
        }
    }
}

async fn fetch_and_install(
    shared: &Arc<Shared>,
    t: &VolumeTransfer,
    progress: &Arc<AtomicU64>,
) -> Result<(), String> {
    if !is_volume_name(&t.volume) || t.volume.contains('/') {
        return Err(format!("{:?} is not a volume name", t.volume));
    }
    let volumes = shared.config.data_dir.join("volumes");
    fs::create_dir_all(&volumes).map_err(|e| e.to_string())?;
    let incoming = volumes.join(format!("{INCOMING_PREFIX}{}", t.move_id));
    if incoming.exists() {
        fs::remove_dir_all(&incoming).map_err(|e| e.to_string())?;
    }
    if let Some(backup) = &t.backup {
        // A restore: from the backup's store rather than from the old worker.
        if let Err(why) = crate::backup::restore_into(
            &shared.worker_agent(&backup.store_url, backup.grant.clone()),
            backup,
            &t.volume,
            &incoming,
            progress,
        )
        .await
        {
            let _ = fs::remove_dir_all(&incoming);
            return Err(why);
        }
        return install(shared, &volumes, &incoming, t)
            .await
            .inspect_err(|_| {
                let _ = fs::remove_dir_all(&incoming);
            });
    }
    let source = shared.worker_agent(&t.source_url, t.grant.clone());
    // The old instance may still be stopping: its worker refuses until it has.
    let deadline = Instant::now() + IN_USE_PATIENCE;
    let response = loop {
        match source
            .export_volume()
            .name(&t.volume)
            .send()
            .await
            .map_err(SdkError::from)
        {
            Ok(r) => break r,
            Err(SdkError::Api { status: 409, body })
                if body.code == "volume_in_use" && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("fetching from {}: {e}", t.source_url)),
        }
    };
    let (dest, counter) = (incoming.clone(), progress.clone());
    let body = response.into_inner().into_inner();
    if let Err(e) = read_blocking(body, move |input| read_archive(input, &dest, &counter)).await {
        let _ = fs::remove_dir_all(&incoming);
        return Err(format!("from {}: {e}", t.source_url));
    }
    install(shared, &volumes, &incoming, t)
        .await
        .inspect_err(|_| {
            let _ = fs::remove_dir_all(&incoming);
        })
}

/// Renames the received copy to the volume's name (an old copy here, unused, is replaced).
async fn install(
    shared: &Shared,
    volumes: &Path,
    incoming: &Path,
    t: &VolumeTransfer,
) -> Result<(), String> {
    let dir = volumes.join(&t.volume);
    if dir.exists() {
        if in_use(shared, &t.volume).await {
            return Err(format!(
                "an instance on this worker uses its own copy of {}",
                t.volume
            ));
        }
        let old = volumes.join(format!("{REPLACED_PREFIX}{}", t.move_id));
        fs::rename(&dir, &old).map_err(|e| e.to_string())?;
        tracing::info!(volume = %t.volume, "an old copy of the volume here is replaced by the one received");
    }
    fs::rename(incoming, &dir).map_err(|e| e.to_string())?;
    fs::File::open(volumes)
        .and_then(|d| d.sync_all())
        .map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(volumes.join(format!("{REPLACED_PREFIX}{}", t.move_id)));
    Ok(())
}

/// Deletes a received copy the conductor did not take (renamed first, as a release is).
fn drop_copy(volumes: &Path, volume: &str, move_id: Uuid) {
    let doomed = volumes.join(format!("{REPLACED_PREFIX}{move_id}"));
    match fs::rename(volumes.join(volume), &doomed).and_then(|()| fs::remove_dir_all(&doomed)) {
        Ok(()) => {
            tracing::info!(volume, %move_id, "dropped the copy of a move that ended without it")
        }
        Err(e) => {
            tracing::warn!(volume, %move_id, error = %e, "could not drop the copy of an ended move")
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reported {
    Taken,
    /// The conductor answered that the move is over (or not this worker's).
    Refused,
    /// It could not be reached.
    Unknown,
}

/// Tells the conductor how the transfer goes; transport failures are retried for a while (a
/// conductor restarting is back within seconds).
async fn report(
    shared: &Shared,
    move_id: Uuid,
    outcome: TransferOutcome,
    bytes: u64,
    error: Option<String>,
) -> Reported {
    let Some(identity) = shared.identity.read().expect("identity lock").clone() else {
        return Reported::Unknown;
    };
    let conductor = shared.conductor(Some(identity.credential.clone()));
    let body = TransferReport {
        outcome,
        bytes,
        error,
    };
    let attempts = if outcome == TransferOutcome::Copying {
        1
    } else {
        30
    };
    for attempt in 1..=attempts {
        match conductor
            .report_transfer()
            .id(identity.worker_id)
            .move_id(move_id)
            .body(body.clone())
            .send()
            .await
            .map_err(SdkError::from)
        {
            Ok(_) => return Reported::Taken,
            Err(SdkError::Api {
                status: 404 | 409,
                body,
            }) => {
                tracing::info!(%move_id, reason = %body.message, "the conductor no longer expects this transfer");
                return Reported::Refused;
            }
            Err(e) if attempt < attempts => {
                tracing::debug!(%move_id, error = %e, "reporting a transfer failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => tracing::warn!(%move_id, error = %e, "could not report a transfer"),
        }
    }
    Reported::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_from_a_volume() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("host-secret");
        fs::write(&outside, b"secret").unwrap();
        let volume = dir.path().join("volume");
        fs::create_dir(&volume).unwrap();
        fs::write(volume.join("data"), b"data").unwrap();
        std::os::unix::fs::symlink(&outside, volume.join("link")).unwrap();
        nix::unistd::mkfifo(&volume.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A directory on the way that is a symlink out of the volume.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("data"), b"secret").unwrap();
        std::os::unix::fs::symlink(&elsewhere, volume.join("dir")).unwrap();
        let mut read = String::new();
        open_regular(&volume, &volume.join("data"))
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "data");
        // Symlinks out of the volume are not followed; a FIFO does not hold the reader up.
        assert!(open_regular(&volume, &volume.join("link")).is_err());
        assert!(open_regular(&volume, &volume.join("dir/data")).is_err());
        assert!(open_regular(&volume, &volume.join("fifo")).is_err());
        assert!(open_regular(&volume, &outside).is_err());
    }

    fn sample(dir: &Path) {
        fs::create_dir_all(dir.join("blobs/ab")).unwrap();
        fs::write(dir.join("db.sqlite"), b"database bytes").unwrap();
        fs::write(dir.join("blobs/ab/abcdef"), vec![7u8; 300_000]).unwrap();
        fs::write(dir.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("db.sqlite", dir.join("link")).unwrap();
    }

    fn archive_of(dir: &Path) -> Vec<u8> {
        let mut out = vec![];
        write_archive(dir, &mut out).unwrap();
        out
    }

    #[test]
    fn a_volume_round_trips_with_its_tree_and_bytes() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        sample(src.path());
        let bytes = archive_of(src.path());
        let progress = AtomicU64::new(0);
        let total = read_archive(&bytes[..], &dst.path().join("v"), &progress).unwrap();
        assert_eq!(total, 14 + 300_000);
        assert_eq!(
            fs::read(dst.path().join("v/db.sqlite")).unwrap(),
            b"database bytes"
        );
        assert_eq!(
            fs::read(dst.path().join("v/blobs/ab/abcdef")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(fs::read(dst.path().join("v/empty")).unwrap(), b"");
        assert_eq!(
            fs::read_link(dst.path().join("v/link")).unwrap(),
            Path::new("db.sqlite")
        );
        assert!(!dst.path().join("v").join(CHECKSUM_ENTRY).exists());
    }

    #[test]
    fn a_cut_short_or_altered_archive_is_refused() {
        let src = tempfile::tempdir().unwrap();
        sample(src.path());
        let bytes = archive_of(src.path());
        let progress = AtomicU64::new(0);
        // Cut short at every 100 KiB boundary: never accepted.
        for cut in (0..bytes.len() - 1024).step_by(100 * 1024) {
            let dst = tempfile::tempdir().unwrap();
            assert!(
                read_archive(&bytes[..cut], &dst.path().join("v"), &progress).is_err(),
                "cut at {cut} accepted"
            );
        }
        // One content byte changed: the checksum says so.
        let at = bytes.windows(4).position(|w| w == [7, 7, 7, 7]).unwrap() + 1000;
        let mut altered = bytes.clone();
        altered[at] = 8;
        let dst = tempfile::tempdir().unwrap();
        let err = read_archive(&altered[..], &dst.path().join("v"), &progress).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn paths_outside_the_volume_are_refused() {
        let mut out = vec![];
        {
            let mut builder = tar::Builder::new(&mut out);
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(1);
            header.set_mode(0o600);
            // set_path refuses `..`, so the name is written into the header by hand.
            header.as_old_mut().name[..9].copy_from_slice(b"../escape");
            header.set_cksum();
            builder.append(&header, &b"x"[..]).unwrap();
            builder.finish().unwrap();
        }
        let dst = tempfile::tempdir().unwrap();
        let err = read_archive(&out[..], &dst.path().join("v"), &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("outside the volume"), "{err}");
        assert!(!dst.path().join("escape").exists());
    }
}
