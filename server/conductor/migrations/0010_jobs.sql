-- Jobs: run-to-completion work, queued by priority (see server/conductor/src/domain/jobs.rs).

-- A job. `queue_key` orders the queue: submitted_at − priority × the aging interval, so a higher
-- priority comes first, FIFO within a priority, and a waiting job is overtaken only by jobs
-- submitted within (its priority gap × aging) of it.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    request         TEXT NOT NULL,          -- the JobRequest, defaults filled in (JSON)
    request_hash    TEXT NOT NULL,          -- of the request as submitted, for idempotency keys
    priority        INTEGER NOT NULL,
    queue           TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    queue_key       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      INTEGER,                -- a queued retry's backoff ends
    exit_code       INTEGER,
    reason          TEXT,
    submitted_by    TEXT NOT NULL,
    submitted_at    INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX jobs_queued ON jobs (queue_key) WHERE state = 'queued';
-- The queue's counts (running per queue, at every pass) read only the jobs not finished.
CREATE INDEX jobs_active ON jobs (queue, state) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_by_submitted ON jobs (submitted_at);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Every attempt at a job. A running attempt's instance is a row of `instances` (run_once) until
-- it ends; the attempt keeps its outcome and the tails of its output.
CREATE TABLE job_attempts (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number       INTEGER NOT NULL,
    instance_id  TEXT NOT NULL UNIQUE,
    worker_id    TEXT NOT NULL,
    driver       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    exit_code    INTEGER,
    signal       INTEGER,
    reason       TEXT,
    stdout_tail  TEXT,
    stderr_tail  TEXT,
    stdout_bytes INTEGER,
    stderr_bytes INTEGER,
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    PRIMARY KEY (job_id, number)
);
CREATE INDEX job_attempts_running ON job_attempts (job_id) WHERE outcome = 'running';

-- Queues with a concurrency limit (a queue nobody configured has none).
CREATE TABLE job_queues (
    name              TEXT PRIMARY KEY,
    concurrency_limit INTEGER,
    updated_at        INTEGER NOT NULL
);
