-- Backups of volumes, in the backup store of a worker (see model::Backup). state: running, done,
-- failed.
CREATE TABLE backups (
    id               TEXT PRIMARY KEY,
    volume           TEXT NOT NULL,
    service          TEXT NOT NULL,
    source_worker_id TEXT NOT NULL,
    store_worker_id  TEXT NOT NULL,
    state            TEXT NOT NULL,
    files            INTEGER NOT NULL DEFAULT 0,
    bytes            INTEGER NOT NULL DEFAULT 0,
    bytes_sent       INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX backups_by_volume ON backups (volume, created_at);

-- A restore is a move whose data comes from a backup.
ALTER TABLE volume_moves ADD COLUMN backup_id TEXT;
