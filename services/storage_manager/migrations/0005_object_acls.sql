-- An object's canned ACL (S3's x-amz-acl: "public-read", "authenticated-read", …), kept per
-- version like its tags and carried by a multipart upload until it completes. NULL: private, the
-- ACL every object had before.
ALTER TABLE objects ADD COLUMN acl TEXT;
ALTER TABLE object_versions ADD COLUMN acl TEXT;
ALTER TABLE uploads ADD COLUMN acl TEXT;
