-- Instances replace the placeholder deployments table (it was never written to): an instance is
-- one running copy of a service (or of a user's own image or command) assigned to a worker.
DROP TABLE deployments;

CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    worker_id     TEXT NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    -- The catalog service this is an instance of; NULL for a user's own container or process.
    service       TEXT,
    -- How it runs (image or command, env, ports, resources, health path), as JSON.
    spec          TEXT NOT NULL,
    -- What the conductor wants: 'running' or 'stopped'.
    desired_state TEXT NOT NULL,
    -- What the worker last reported.
    state         TEXT NOT NULL,
    address       TEXT,
    exit_code     INTEGER,
    reason        TEXT,
    restarts      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX instances_by_worker ON instances (worker_id);
CREATE INDEX instances_by_service ON instances (service);
