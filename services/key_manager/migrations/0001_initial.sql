-- key_manager state. Timestamps are Unix milliseconds (UTC).

CREATE TABLE keys (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE,
    description            TEXT NOT NULL DEFAULT '',
    usage                  TEXT NOT NULL,
    enabled                INTEGER NOT NULL,
    latest_version         INTEGER NOT NULL,
    min_decryption_version INTEGER NOT NULL,
    -- 0: encrypt with the latest version.
    min_encryption_version INTEGER NOT NULL,
    deletion_allowed       INTEGER NOT NULL,
    -- Set while deletion is scheduled: when the key and its material are destroyed.
    deletion_at            INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

-- Key material, one row per version, encrypted under the master key (AES-256-GCM, nonce || ct,
-- additional data binding it to its key id and version).
CREATE TABLE key_versions (
    key_id     TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    material   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- Every use of a key; never plaintext, never key material.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    key_id      TEXT,
    key_version INTEGER,
    operation   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX audit_by_key ON audit (key_id, id);
