-- Volumes: a stateful service's data directory and the worker holding the copy in use. Placement
-- follows this row; it is written in the same transaction as the placement that creates the volume.
-- worker_id is no foreign key on purpose: a removed worker's volume is still the service's data,
-- and the service waits for it rather than starting empty.
CREATE TABLE volumes (
    name           TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    worker_id      TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_backup_at INTEGER
);
