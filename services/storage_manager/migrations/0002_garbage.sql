-- Blobs no row refers to any more (an object replaced or deleted, a part replaced, an upload
-- completed or aborted). The triggers record them in the same transaction as the change, so a
-- change and its garbage commit together; a collector removes the files and then these rows.
CREATE TABLE garbage (
    blob_id TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TRIGGER objects_blob_replaced AFTER UPDATE OF blob_id ON objects WHEN old.blob_id <> new.blob_id
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;

CREATE TRIGGER objects_deleted AFTER DELETE ON objects
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;

CREATE TRIGGER parts_blob_replaced AFTER UPDATE OF blob_id ON parts WHEN old.blob_id <> new.blob_id
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;

CREATE TRIGGER parts_deleted AFTER DELETE ON parts
BEGIN
    INSERT OR IGNORE INTO garbage (blob_id) VALUES (old.blob_id);
END;
