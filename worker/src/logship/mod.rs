//! Log shipping: every instance's stdout and stderr, and this process's own lines, to
//! logs_manager.
//!
//! Collectors read what is new every [`COLLECT_EVERY`]: the files the process and microvm
//! drivers write (`Driver::output_files`, from the byte offset reached), each container's log as
//! the engine streams it (`Driver::follow_output`, from the last timestamp reached) and the
//! lines `aerekos_common::telemetry` captured from this process. Each line becomes a record
//! (its time, level and request id read off the line where it says them, `parse`) appended to
//! the disk [`spool`](spool::Spool). The shipper sends what the spool holds, in order, in batches
//! (gzip) through the conductor's gateway with a token the conductor gives the worker
//! (`logs_manager:write` on `worker/<id>/…`), and acknowledges each batch logs_manager stored.
//! A batch whose answer was lost is sent again; logs_manager skips the `seq`s it has, so nothing
//! is stored twice. While logs_manager is away the spool grows to `LOG_SPOOL_BYTES`, then drops
//! its oldest lines and counts them (reported with the next batch).

mod parse;
pub mod spool;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aerekos_sdk::logs_manager::types::{IngestRecord, IngestRequest, LogStream};
use chrono::Utc;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{
    Shared,
    driver::{FollowedLine, OutputStream},
};
use spool::{Cursors, Spool};

/// How often collectors look for new output.
const COLLECT_EVERY: Duration = Duration::from_millis(500);
/// How much of a file one look reads at most.
const READ_AT_MOST: u64 = 4 << 20;
/// A batch: at most this many records, or about this many bytes.
const BATCH_RECORDS: usize = 2000;
const BATCH_BYTES: usize = 1 << 20;
/// Waits between failed sends grow to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A batch not answered within this is sent again (logs_manager may have stored it: the repeat's
/// records are skipped there).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A new token is asked for this long before the current one expires.
const TOKEN_RENEW_BEFORE: chrono::Duration = chrono::Duration::hours(12);
/// Lines read but refused by the spool (a full disk) are kept to this many, then dropped.
const PENDING_AT_MOST: usize = 200_000;
/// A container whose log could not be followed is tried again after this.
const FOLLOW_RETRY: Duration = Duration::from_secs(5);

/// The spool and what the worker's metrics report of shipping.
pub(crate) struct LogShip {
    spool: Mutex<Spool>,
    /// Part of the source name (see `spool`).
    spool_id: String,
    /// Lines dropped before they reached the spool (it refused them for too long).
    pub lost: AtomicU64,
    wake: tokio::sync::Notify,
    pub shipped: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub dropped: AtomicU64,
}

impl LogShip {
    /// Opens the spool in `<data dir>/logship`.
    pub fn open(data_dir: &Path, max_bytes: u64) -> std::io::Result<(Arc<Self>, Cursors)> {
        let (spool, cursors) = Spool::open(&data_dir.join("logship"), max_bytes)?;
        let ship = Arc::new(Self {
            spool_id: spool.id().to_owned(),
            lost: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(spool.bytes()),
            dropped: AtomicU64::new(spool.dropped_total()),
            spool: Mutex::new(spool),
            wake: tokio::sync::Notify::new(),
            shipped: AtomicU64::new(0),
        });
        Ok((ship, cursors))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_spool(&self, spool: &Spool) {
        self.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        self.dropped.store(spool.dropped_total(), Ordering::Relaxed);
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Spool) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let ship = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut spool = ship.lock();
            let out = work(&mut spool);
            ship.note_spool(&spool);
            out
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Runs the collectors and the shipper until the worker stops.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ship: Arc<LogShip>,
    cursors: Cursors,
    stop: watch::Receiver<bool>,
) {
    let collector = tokio::spawn(collect(shared.clone(), ship.clone(), cursors, stop.clone()));
    send(shared, ship, stop).await;
    let _ = collector.await;
}

fn record(
    worker: Option<String>,
    service: Option<String>,
    instance: Option<Uuid>,
    stream: LogStream,
    raw: &str,
    fallback_time: chrono::DateTime<Utc>,
) -> IngestRecord {
    let parsed = parse::parse(raw);
    IngestRecord {
        seq: 0,
        time: parsed.time.unwrap_or(fallback_time),
        worker,
        service,
        instance: instance.map(|i| i.to_string()),
        stream,
        level: parsed.level,
        message: parsed.message,
        request_id: parsed.request_id,
    }
}

fn stream_of(stream: Option<OutputStream>) -> LogStream {
    match stream {
        // A service's instance under the process driver writes both to one file.
        None | Some(OutputStream::Stdout) => LogStream::Stdout,
        Some(OutputStream::Stderr) => LogStream::Stderr,
    }
}

/// The complete lines of `path` from `offset` (a line longer than the limit is cut), and the
/// offset after the last one. A file shorter than `offset` was begun again: read from 0.
fn read_lines(path: &Path, offset: u64) -> std::io::Result<(Vec<String>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let offset = if len < offset { 0 } else { offset };
    if len == offset {
        return Ok((Vec::new(), offset));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(READ_AT_MOST).read_to_end(&mut buf)?;
    let complete = match buf.iter().rposition(|b| *b == b'\n') {
        Some(at) => at + 1,
        // No newline in a whole read: one over-long line, taken as it is.
        None if buf.len() as u64 == READ_AT_MOST => buf.len(),
        None => 0,
    };
    let lines = buf[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    Ok((lines, offset + complete as u64))
}

async fn collect(
    shared: Arc<Shared>,
    ship: Arc<LogShip>,
    mut cursors: Cursors,
    mut stop: watch::Receiver<bool>,
) {
    let mut captured = aerekos_common::telemetry::take_captured();
    let (lines_tx, mut lines_rx) = mpsc::channel::<(Uuid, FollowedLine)>(8192);
    let mut followers: HashMap<Uuid, (tokio::task::JoinHandle<()>, Instant)> = HashMap::new();
    // Records read but not yet in the spool (an append failed): kept for the next round, since
    // the positions they were read up to have moved on.
    let mut batch: Vec<(IngestRecord, Option<(String, u64)>)> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(COLLECT_EVERY) => {}
            _ = stop.changed() => break,
        }
        let Some(worker_id) = shared
            .identity
            .read()
            .expect("identity lock")
            .as_ref()
            .map(|i| i.worker_id.to_string())
        else {
            continue;
        };
        let worker = Some(worker_id);
        let now = Utc::now();
        if batch.len() > PENDING_AT_MOST {
            ship.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                lines = batch.len(),
                "the log spool has refused lines for a while; they are dropped"
            );
            batch.clear();
        }

        if let Some(rx) = captured.as_mut() {
            while let Ok(line) = rx.try_recv() {
                batch.push((
                    record(
                        worker.clone(),
                        Some(line.component.to_owned()),
                        None,
                        LogStream::Log,
                        &line.text,
                        now,
                    ),
                    None,
                ));
            }
        }

        let view: Vec<(Uuid, Option<String>)> = shared
            .view
            .lock()
            .expect("view lock")
            .iter()
            .map(|i| (i.id, i.service.clone()))
            .collect();
        let services: HashMap<Uuid, Option<String>> = view.iter().cloned().collect();
        let mut live_keys = HashSet::new();
        for (id, service) in &view {
            let files = shared.driver.output_files(*id);
            if files.is_empty() {
                let key = format!("docker:{id}");
                live_keys.insert(key.clone());
                let running = followers
                    .get(id)
                    .is_some_and(|(task, at)| !task.is_finished() || at.elapsed() < FOLLOW_RETRY);
                if !running {
                    let since = cursors.get(&key).copied().unwrap_or(0);
                    tracing::debug!(instance = %id, since, "following a container's output");
                    if let Some(mut stream) = shared.driver.follow_output(*id, since) {
                        let tx = lines_tx.clone();
                        let id = *id;
                        let task = tokio::spawn(async move {
                            use futures_util::StreamExt as _;
                            // The engine starts at a whole second: lines up to the position
                            // reached are passed over until the first one after it. From then on
                            // nothing is, as the engine's streams may be out of time order.
                            let mut caught_up = since == 0;
                            while let Some(line) = stream.next().await {
                                if !caught_up {
                                    if line.time_ns <= since {
                                        continue;
                                    }
                                    caught_up = true;
                                }
                                if tx.send((id, line)).await.is_err() {
                                    return;
                                }
                            }
                        });
                        followers.insert(id, (task, Instant::now()));
                    }
                }
                continue;
            }
            for (stream, path) in files {
                let key = format!("file:{}", path.display());
                live_keys.insert(key.clone());
                let offset = cursors.get(&key).copied().unwrap_or(0);
                let read = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || read_lines(&path, offset)).await
                };
                let (lines, end) = match read {
                    Ok(Ok(read)) => read,
                    Ok(Err(e)) => {
                        tracing::debug!(path = %path.display(), error = %e, "reading an instance's output to ship failed");
                        continue;
                    }
                    Err(_) => continue,
                };
                let count = lines.len();
                for (i, line) in lines.into_iter().enumerate() {
                    let cursor = (i + 1 == count).then(|| (key.clone(), end));
                    batch.push((
                        record(
                            worker.clone(),
                            service.clone(),
                            Some(*id),
                            stream_of(stream),
                            &line,
                            now,
                        ),
                        cursor,
                    ));
                }
                cursors.insert(key, end);
            }
        }
        while let Ok((id, line)) = lines_rx.try_recv() {
            let key = format!("docker:{id}");
            let reached = cursors.get(&key).copied().unwrap_or(0).max(line.time_ns);
            cursors.insert(key.clone(), reached);
            let time = chrono::DateTime::from_timestamp_nanos(line.time_ns as i64);
            let service = services.get(&id).cloned().flatten();
            batch.push((
                record(
                    worker.clone(),
                    service,
                    Some(id),
                    stream_of(Some(line.stream)),
                    &line.text,
                    time,
                ),
                Some((key, reached)),
            ));
        }
        followers.retain(|id, (task, _)| services.contains_key(id) || !task.is_finished());
        // Positions of instances gone: their files removed, their containers unknown to the
        // driver (not merely absent from a view the reconcile loop has not filled yet).
        // Asked of the driver (an engine call for containers) only when some container's
        // position is not among this round's instances, not every round.
        let unseen_container = cursors
            .keys()
            .any(|k| k.starts_with("docker:") && !live_keys.contains(k));
        let existing: HashSet<Uuid> = if unseen_container {
            shared.driver.instances().await.into_iter().collect()
        } else {
            HashSet::new()
        };
        let gone: Vec<String> = cursors
            .keys()
            .filter(|k| !live_keys.contains(*k))
            .filter(|k| {
                if let Some(path) = k.strip_prefix("file:") {
                    !Path::new(path).exists()
                } else {
                    k.strip_prefix("docker:")
                        .and_then(|id| id.parse::<Uuid>().ok())
                        .is_none_or(|id| !existing.contains(&id))
                }
            })
            .cloned()
            .collect();
        for key in &gone {
            cursors.remove(key);
        }
        if batch.is_empty() && gone.is_empty() {
            continue;
        }
        let records = std::mem::take(&mut batch);
        let appended = ship
            .blocking(move |spool| {
                // Handed back when the append fails, to be tried again next round.
                if let Err(e) = spool.append(records.clone()) {
                    return Ok(Err((e, records)));
                }
                for key in &gone {
                    spool.forget_cursor(key)?;
                }
                Ok(Ok(()))
            })
            .await;
        match appended {
            Ok(Ok(())) => ship.wake.notify_one(),
            Ok(Err((e, records))) => {
                tracing::warn!(error = %e, "appending to the log spool failed; its lines are kept to try again");
                batch = records;
            }
            Err(e) => tracing::warn!(error = %e, "the log spool could not be written"),
        }
    }
    for (task, _) in followers.into_values() {
        task.abort();
    }
}

/// The token and the client that carries it (one HTTP client and its connections for as long
/// as the token lasts).
struct ShippingToken {
    client: aerekos_sdk::LogsManager,
    source: String,
    renew_at: chrono::DateTime<Utc>,
}

/// Sends the spool's records to logs_manager, oldest first, until the worker stops.
async fn send(shared: Arc<Shared>, ship: Arc<LogShip>, mut stop: watch::Receiver<bool>) {
    let mut token: Option<ShippingToken> = None;
    let mut failures: u32 = 0;
    loop {
        if failures > 0 {
            let wait = Duration::from_secs(1u64 << failures.min(5)).min(MAX_BACKOFF);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        if *stop.borrow() {
            return;
        }
        let Some(identity) = shared.identity.read().expect("identity lock").clone() else {
            tokio::select! {
                _ = tokio::time::sleep(COLLECT_EVERY) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let batch = match ship
            .blocking(|spool| spool.unacked(BATCH_RECORDS, BATCH_BYTES))
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "reading the log spool failed");
                failures += 1;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = ship.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        if token.as_ref().is_none_or(|t| Utc::now() >= t.renew_at) {
            let conductor = shared.conductor(Some(identity.credential.clone()));
            match conductor
                .issue_worker_logs_token()
                .id(identity.worker_id)
                .send()
                .await
            {
                Ok(t) => {
                    token = Some(ShippingToken {
                        client: aerekos_sdk::LogsManager::with_trust(
                            &shared.config.conductor_url,
                            aerekos_sdk::Transport::new()
                                .with_token(t.token.clone())
                                .with_gzip_requests(),
                            &shared.trust,
                        ),
                        source: format!("{}{}", t.source_prefix, ship.spool_id),
                        renew_at: t.expires_at - TOKEN_RENEW_BEFORE,
                    });
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::info!(error = %aerekos_sdk::SdkError::from(e), "no log-shipping token yet; lines wait in the spool");
                    }
                    failures += 1;
                    continue;
                }
            }
        }
        let current = token.as_ref().expect("set above");
        let client = &current.client;
        let last = batch.last().map(|r| r.seq).unwrap_or_default();
        let count = batch.len() as u64;
        let dropped_total = ship.dropped.load(Ordering::Relaxed)
            + ship.lost.load(Ordering::Relaxed)
            + aerekos_common::telemetry::captured_dropped();
        let sent = tokio::time::timeout(
            SEND_TIMEOUT,
            client
                .ingest_logs()
                .body(IngestRequest {
                    source: current.source.clone(),
                    records: batch,
                    dropped_total: Some(dropped_total),
                })
                .send(),
        )
        .await
        .unwrap_or_else(|_| {
            Err(aerekos_sdk::ClientError::InvalidRequest(format!(
                "logs_manager did not answer within {} s",
                SEND_TIMEOUT.as_secs()
            )))
        });
        match sent {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!("log shipping to logs_manager resumed");
                }
                failures = 0;
                ship.shipped.fetch_add(count, Ordering::Relaxed);
                if let Err(e) = ship.blocking(move |spool| spool.ack(last)).await {
                    tracing::warn!(error = %e, "recording shipped lines failed; they may be sent again (and skipped)");
                }
            }
            Err(e) => {
                let e = aerekos_sdk::SdkError::from(e);
                if matches!(e.status(), Some(400 | 413 | 422)) {
                    // Refused for what the batch holds: sending it again cannot help, and would
                    // hold up every line behind it. Counted as dropped, and shipping goes on.
                    tracing::warn!(error = %e, lines = count, "logs_manager refused a batch of log lines; they are dropped");
                    if let Err(e) = ship.blocking(move |spool| spool.refused(last, count)).await {
                        tracing::warn!(error = %e, "recording refused lines failed");
                    }
                    continue;
                }
                if matches!(e.status(), Some(401 | 403)) {
                    token = None;
                }
                // Once per outage: each line logged here would be one more to ship.
                if failures == 0 {
                    tracing::info!(error = %e, "logs_manager cannot be reached; lines wait in the spool");
                }
                failures += 1;
            }
        }
    }
}
