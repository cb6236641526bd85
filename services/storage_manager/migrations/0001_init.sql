-- storage_manager's state. Object bytes live in files under <DATA_DIR>/blobs, named by blob_id;
-- a row here is what makes an object visible. Keys are BLOBs (their UTF-8 bytes) so that ordering
-- and prefix ranges are plain byte comparisons, as S3 lists them.

CREATE TABLE buckets (
    name        TEXT PRIMARY KEY,
    -- key_manager key (name or id) that encrypts new objects by default; NULL: none.
    default_key TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE objects (
    bucket       TEXT    NOT NULL REFERENCES buckets(name),
    key          BLOB    NOT NULL,
    blob_id      TEXT    NOT NULL UNIQUE,
    size         INTEGER NOT NULL,
    etag         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    -- user metadata, a JSON object of strings
    metadata     TEXT    NOT NULL,
    -- envelope encryption: the key_manager key and the data key it wrapped; both NULL: plaintext.
    key_ref      TEXT,
    wrapped_key  TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;

CREATE TABLE uploads (
    id           TEXT    PRIMARY KEY,
    bucket       TEXT    NOT NULL REFERENCES buckets(name),
    key          BLOB    NOT NULL,
    content_type TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    key_ref      TEXT,
    wrapped_key  TEXT,
    created_at   INTEGER NOT NULL
);

CREATE TABLE parts (
    upload_id   TEXT    NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    blob_id     TEXT    NOT NULL UNIQUE,
    size        INTEGER NOT NULL,
    -- hex MD5 of the part's bytes (its ETag)
    md5         TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE access_keys (
    id          TEXT    PRIMARY KEY,
    -- SigV4 needs the secret itself on the server side.
    secret      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
