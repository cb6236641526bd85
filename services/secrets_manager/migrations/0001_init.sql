-- secrets_manager's state. Values are never stored in the clear: each version's bytes are sealed
-- (AES-256-GCM) under a data key of its own, which key_manager made and only key_manager can
-- unwrap; the wrapped copy is stored beside them.

-- A secret: its name (hierarchical, "apps/shop/db-password") and what its owner says of it.
CREATE TABLE secrets (
    name           TEXT    PRIMARY KEY,
    description    TEXT    NOT NULL DEFAULT '',
    -- The key_manager key its versions' data keys are made under (a name or id).
    key_ref        TEXT    NOT NULL,
    -- How many versions are kept; the oldest without a staging label go first.
    max_versions   INTEGER NOT NULL,
    -- Custom labels, a JSON object (key -> value).
    tags           TEXT    NOT NULL DEFAULT '{}',
    -- The highest version number written (versions are never renumbered, even when pruned).
    latest_version INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- Set while the whole secret is scheduled for deletion: when it goes (unix ms).
    deletion_date  INTEGER,
    -- The rotation schedule, a JSON object; NULL: none.
    rotation       TEXT
);

CREATE TABLE versions (
    secret      TEXT    NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    -- "bytes" or "json": how the value is given back.
    kind        TEXT    NOT NULL,
    -- nonce || ciphertext || tag; NULL once destroyed.
    sealed      BLOB,
    -- The key_manager key the data key was made under (the secret's key when it was written).
    key_ref     TEXT    NOT NULL,
    -- The data key, wrapped by key_manager; NULL once destroyed.
    wrapped_key TEXT,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    -- Soft deletion: set, the version is not served until undeleted.
    deleted_at  INTEGER,
    destroyed_at INTEGER,
    PRIMARY KEY (secret, version)
);

-- Staging labels (AWSCURRENT, AWSPREVIOUS, custom ones): each names one version of a secret.
CREATE TABLE labels (
    secret  TEXT    NOT NULL,
    label   TEXT    NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (secret, label),
    FOREIGN KEY (secret, version) REFERENCES versions (secret, version) ON DELETE CASCADE
);

-- Every read and change, refused ones too: who, which secret and version, what came of it. Never a value.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    secret     TEXT,
    version    INTEGER,
    request_id TEXT    NOT NULL,
    outcome    TEXT    NOT NULL
);
CREATE INDEX audit_by_secret ON audit (secret, id);
