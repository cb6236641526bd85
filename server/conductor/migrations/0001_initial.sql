-- The conductor's state. Timestamps are Unix milliseconds (UTC).

-- Seeded users only: there is no sign-up. role: admin may change things, viewer may only read.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- The one worker registration token (a shared secret shown to admins, so it is kept as is).
CREATE TABLE registration_token (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Workers. The headline resource figures are columns so /api/resources can SUM them;
-- the full report (network, drivers, OS) is kept as JSON. Live/lost is derived from
-- last_heartbeat_at at read time, never stored.
CREATE TABLE workers (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL,
    hostname               TEXT NOT NULL,
    ip_address             TEXT NOT NULL,
    labels                 TEXT NOT NULL DEFAULT '{}',
    credential_hash        TEXT NOT NULL,
    cpu_cores              INTEGER NOT NULL,
    cpu_usage_percent      REAL NOT NULL,
    memory_total_bytes     INTEGER NOT NULL,
    memory_available_bytes INTEGER NOT NULL,
    disk_total_bytes       INTEGER NOT NULL,
    disk_free_bytes        INTEGER NOT NULL,
    resources              TEXT NOT NULL,
    registered_at          INTEGER NOT NULL,
    last_heartbeat_at      INTEGER NOT NULL
);
CREATE INDEX workers_by_last_heartbeat ON workers (last_heartbeat_at);

-- Enabled state of the catalog's services (the catalog itself is defined in code).
CREATE TABLE services (
    name       TEXT PRIMARY KEY,
    enabled    INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- Instances of services placed on workers (written by the scheduler).
CREATE TABLE deployments (
    id            TEXT PRIMARY KEY,
    service       TEXT NOT NULL REFERENCES services (name),
    worker_id     TEXT REFERENCES workers (id) ON DELETE SET NULL,
    state         TEXT NOT NULL,
    address       TEXT,
    health        TEXT NOT NULL DEFAULT 'unknown',
    health_reason TEXT,
    restarts      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX deployments_by_service ON deployments (service);
