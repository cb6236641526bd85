-- Sandboxes (see server/conductor/src/domain/sandboxes.rs): a long-lived container on a worker
-- (an `instances` row once placed) and the history of the commands run in it.
CREATE TABLE sandboxes (
    id          TEXT PRIMARY KEY,
    request     TEXT NOT NULL,      -- the SandboxRequest (JSON)
    state       TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'failed')),
    instance_id TEXT,
    worker_id   TEXT,
    reason      TEXT,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    ready_at    INTEGER
);

CREATE TABLE sandbox_execs (
    id           TEXT PRIMARY KEY,
    sandbox_id   TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    request      TEXT NOT NULL,     -- the ExecRequest (JSON)
    state        TEXT NOT NULL,
    exit_code    INTEGER,
    stdout       TEXT,
    stderr       TEXT,
    reason       TEXT,
    submitted_at INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE INDEX sandbox_execs_by_sandbox ON sandbox_execs (sandbox_id, submitted_at);
CREATE INDEX sandbox_execs_queued ON sandbox_execs (sandbox_id) WHERE state = 'queued';
