-- What S3 clients set on an upload and expect back on GET and HEAD besides the content type and
-- user metadata: the HTTP headers Cache-Control, Content-Disposition, Content-Encoding,
-- Content-Language and Expires (a JSON object, lowercase header name -> value), and the object's
-- tags (a JSON object, key -> value). A multipart upload keeps them until it completes.
ALTER TABLE objects ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';
ALTER TABLE objects ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE uploads ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';
ALTER TABLE uploads ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
-- The checksum an S3 upload sent (x-amz-checksum-*), verified on the way in and served back:
-- "<ALGORITHM>:<base64 value>", e.g. "CRC32:AAAAAA=="; NULL: none was sent.
ALTER TABLE objects ADD COLUMN checksum TEXT;
-- What the bucket's owner configured on it (policy, canned ACL, public access block, CORS,
-- lifecycle, tags): one JSON document, written whole by each change.
ALTER TABLE buckets ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
-- What an access key may do: a JSON list of scopes ("read:<bucket>", "write:<bucket>",
-- "admin:<bucket>"; a bucket may be "*" or end in "*"). Empty: everything (keys made before scopes).
ALTER TABLE access_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
