-- Schedules (see server/conductor/src/domain/schedules.rs): the clock is next_fire_at, in the
-- database, so fires survive a conductor restart and missed ones are known.
CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    request         TEXT NOT NULL,       -- the ScheduleRequest (JSON)
    paused          INTEGER NOT NULL DEFAULT 0,
    anchor_at       INTEGER NOT NULL,    -- every_secs counts from here
    next_fire_at    INTEGER,
    last_fire_at    INTEGER,
    last_job_id     TEXT,
    waiting_fire_at INTEGER,             -- overlap = queue: a fire waiting for the previous job
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;

CREATE TABLE schedule_fires (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id   TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    scheduled_for INTEGER NOT NULL,
    fired_at      INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    job_id        TEXT,
    http_status   INTEGER,
    missed        INTEGER NOT NULL DEFAULT 0,
    detail        TEXT
);
CREATE INDEX schedule_fires_by_schedule ON schedule_fires (schedule_id, seq);
