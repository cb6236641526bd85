//! `run_once` instances (jobs' attempts): what the worker remembers of them across its own
//! restarts, and how their end is told to the conductor.
//!
//! A marker `<data dir>/runs/<instance id>` holding the start time (Unix ms) is written, and
//! synced, before such an instance starts (`<data dir>/exec-runs/<exec id>.<attempt>` before a
//! sandbox exec's attempt). So a restarted worker knows an instance it finds
//! stopped has run already (it reports its end instead of running it twice), and its timeout still
//! counts from the real start.

use std::{
    collections::HashSet,
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aerekos_sdk::conductor::types::RunEnding;
use uuid::Uuid;

use crate::driver::{Driver, OutputStream};

/// The most of each stream an ending carries (the conductor keeps the same).
pub const TAIL_BYTES: usize = 16 * 1024;

/// What a marker records the start of: a `run_once` instance, or a sandbox exec (the same rule:
/// run once, and after a restart report what ran rather than run it again).
#[derive(Clone, Copy)]
pub enum Kind {
    Instance,
    Exec,
}

fn dir(data_dir: &Path, kind: Kind) -> PathBuf {
    data_dir.join(match kind {
        Kind::Instance => "runs",
        Kind::Exec => "exec-runs",
    })
}

/// The marker's name: an instance's id, or an exec's id and attempt (`<id>.<attempt>`), since
/// each attempt of an exec runs once.
pub fn key(id: Uuid, attempt: Option<u32>) -> String {
    match attempt {
        Some(n) => format!("{id}.{n}"),
        None => id.to_string(),
    }
}

/// Records that the run named `key` (see [`key`]) starts now.
pub fn mark_started(data_dir: &Path, kind: Kind, key: &str) -> std::io::Result<()> {
    let dir = dir(data_dir, kind);
    std::fs::create_dir_all(&dir)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut file = std::fs::File::create(dir.join(key))?;
    file.write_all(now.to_string().as_bytes())?;
    file.sync_all()?;
    // The new name must survive a power cut too.
    std::fs::File::open(&dir)?.sync_all()
}

/// When the run named `key` started, if it did.
pub fn started_at(data_dir: &Path, kind: Kind, key: &str) -> Option<SystemTime> {
    let text = std::fs::read_to_string(dir(data_dir, kind).join(key)).ok()?;
    let ms: u64 = text.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Forgets the markers of runs no longer assigned here (`live`: their keys).
pub fn forget_except(data_dir: &Path, kind: Kind, live: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir(data_dir, kind)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_none_or(|n| !live.contains(n)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// How instance `id` ended, with the tails of its output.
pub async fn ending(
    driver: &dyn Driver,
    id: Uuid,
    signal: Option<i32>,
    timed_out: bool,
    detail: Option<String>,
) -> RunEnding {
    let tail = |stream| async move {
        match driver.output(id, stream, None, TAIL_BYTES).await {
            Ok(chunk) => (
                String::from_utf8_lossy(&chunk.bytes).into_owned(),
                Some(chunk.total),
            ),
            Err(_) => (String::new(), None),
        }
    };
    let (stdout_tail, stdout_bytes) = tail(OutputStream::Stdout).await;
    let (stderr_tail, stderr_bytes) = tail(OutputStream::Stderr).await;
    RunEnding {
        signal,
        timed_out,
        detail,
        stdout_tail,
        stderr_tail,
        stdout_bytes,
        stderr_bytes,
    }
}
