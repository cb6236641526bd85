-- Object versions, per bucket and off by default (the bucket's settings say Enabled or
-- Suspended). `objects` keeps each key's current version; the versions it replaced and the delete
-- markers live here, a key's newest with the highest `seq`. A blob is garbage only when neither
-- table names it, so archiving a version (insert here, then replace the row in `objects`) and
-- restoring one (the other way round) never lose its file.
ALTER TABLE objects ADD COLUMN version_id TEXT; -- NULL: the "null" version (written unversioned or suspended)

CREATE TABLE object_versions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket        TEXT    NOT NULL REFERENCES buckets(name),
    key           BLOB    NOT NULL,
    version_id    TEXT    NOT NULL, -- 'null' for the null version
    delete_marker INTEGER NOT NULL DEFAULT 0,
    blob_id       TEXT    UNIQUE,   -- NULL for a delete marker
    size          INTEGER NOT NULL DEFAULT 0,
    etag          TEXT    NOT NULL DEFAULT '',
    content_type  TEXT    NOT NULL DEFAULT '',
    metadata      TEXT    NOT NULL DEFAULT '{}',
    key_ref       TEXT,
    wrapped_key   TEXT,
    created_at    INTEGER NOT NULL,
    headers       TEXT    NOT NULL DEFAULT '{}',
    tags          TEXT    NOT NULL DEFAULT '{}',
    checksum      TEXT,
    -- When it stopped being current (lifecycle rules count noncurrent days from here).
    archived_at   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (bucket, key, version_id)
);
CREATE INDEX object_versions_by_key ON object_versions (bucket, key, seq);

DROP TRIGGER objects_blob_replaced;
CREATE TRIGGER objects_blob_replaced AFTER UPDATE OF blob_id ON objects
WHEN old.blob_id <> new.blob_id AND NOT EXISTS (SELECT 1 FROM object_versions WHERE blob_id = old.blob_id)
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;

DROP TRIGGER objects_deleted;
CREATE TRIGGER objects_deleted AFTER DELETE ON objects
WHEN NOT EXISTS (SELECT 1 FROM object_versions WHERE blob_id = old.blob_id)
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;

CREATE TRIGGER object_versions_deleted AFTER DELETE ON object_versions
WHEN old.blob_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM objects WHERE blob_id = old.blob_id)
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;
