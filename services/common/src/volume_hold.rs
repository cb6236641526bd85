//! The backup hold: while the platform backs up a stateful service's volume, the service must not
//! delete files from it, so every file the database snapshot refers to is still there when the
//! backup copies it. The worker making the backup creates [`HOLD_FILE`] in the volume (its
//! `DATA_DIR`) before the snapshot, touches it while copying and removes it after. A service that
//! deletes files (storage_manager's garbage collector and its start-up sweep) asks [`held`] first
//! and leaves them for later while it answers true.
//!
//! Creating and deleting files, and changing the database, go on as usual: only deletions wait.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

/// The marker, at the top of the volume. Files whose names start with `.aerekos-` are the
/// platform's, never a service's data: backups and moves leave them out.
pub const HOLD_FILE: &str = ".aerekos-backup-hold";

/// A hold not touched for this long is stale (its backup died with its worker) and ignored.
pub const HOLD_STALE_AFTER: Duration = Duration::from_secs(600);

/// Whether a backup holds the volume at `data_dir`, so files must not be deleted from it now.
pub fn held(data_dir: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(data_dir.join(HOLD_FILE)) else {
        return false;
    };
    let touched = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    SystemTime::now()
        .duration_since(touched)
        .map_or(true, |age| age < HOLD_STALE_AFTER)
}

/// Whether `name` (a top-level entry of a volume) is the platform's rather than the service's.
pub fn is_platform_file(name: &str) -> bool {
    name.starts_with(".aerekos-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_counts_while_fresh() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!held(dir.path()));
        std::fs::write(dir.path().join(HOLD_FILE), b"").unwrap();
        assert!(held(dir.path()));
        std::fs::remove_file(dir.path().join(HOLD_FILE)).unwrap();
        assert!(!held(dir.path()));
    }
}
