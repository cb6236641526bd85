-- Moves of a stateful service and its volume from one worker to another. state: stopping,
-- copying, starting, cleaning, done, failed (see model::MoveState). At most one move of a volume
-- is under way at a time.
CREATE TABLE volume_moves (
    id               TEXT PRIMARY KEY,
    service          TEXT NOT NULL,
    volume           TEXT NOT NULL,
    source_worker_id TEXT NOT NULL,
    target_worker_id TEXT NOT NULL,
    state            TEXT NOT NULL,
    bytes_copied     INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX volume_moves_one_under_way ON volume_moves (volume) WHERE state NOT IN ('done', 'failed');
CREATE INDEX volume_moves_by_created ON volume_moves (created_at);
