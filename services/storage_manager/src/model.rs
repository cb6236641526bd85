//! storage_manager's API types. Doc comments here are the spec's text.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::Object;

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateBucketRequest {
    /// S3's rules: 3–63 lowercase letters, digits, '-' and '.', beginning and ending with a letter or digit.
    pub name: String,
    /// A key_manager key (name or id) that encrypts every new object in the bucket unless the
    /// upload names another.
    pub default_encryption_key: Option<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Bucket {
    pub name: String,
    pub default_encryption_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An object's metadata (what `HEAD` returns as headers, and listings as entries).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// MD5 of the bytes in hex for single-part uploads; `<md5 of part md5s>-<parts>` for multipart
    /// ones (as S3 does).
    pub etag: String,
    pub content_type: String,
    /// User metadata (S3's `x-amz-meta-*`).
    pub metadata: BTreeMap<String, String>,
    /// The key_manager key the object is encrypted with; absent: stored unencrypted.
    pub encryption_key: Option<String>,
    pub last_modified: DateTime<Utc>,
    /// HTTP headers the upload set (Cache-Control and the like), served by the S3 face.
    #[oai(skip)]
    pub headers: BTreeMap<String, String>,
    /// The object's tags (S3 object tagging).
    #[oai(skip)]
    pub tags: BTreeMap<String, String>,
    /// `<ALGORITHM>:<base64>`: the S3 checksum the upload was verified against.
    #[oai(skip)]
    pub checksum: Option<String>,
    /// The version's id when the bucket keeps versions (S3 versioning); None: the null version.
    #[oai(skip)]
    pub version_id: Option<String>,
    /// The object's canned S3 ACL (`public-read`, …); None: private.
    #[oai(skip)]
    pub acl: Option<String>,
}

/// One page of a listing.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct ObjectList {
    pub bucket: String,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub objects: Vec<ObjectInfo>,
    /// With a delimiter: the key prefixes up to and including the delimiter ("folders"), each once.
    pub common_prefixes: Vec<String>,
    /// Pass as `continuation_token` for the next page; absent on the last page.
    pub next_continuation_token: Option<String>,
}

#[derive(Object, Debug, Clone)]
pub struct CreateAccessKeyRequest {
    /// What the key is for, e.g. "backup job on db-1".
    pub description: String,
    /// What the key may do, at most 50: `read:<bucket>` (get, head, list), `write:<bucket>` (put,
    /// delete, multipart, object tags), `admin:<bucket>` (create and delete the bucket, its
    /// policy, CORS, lifecycle and tags); `<bucket>` may be `*` or end in `*`. Absent or empty:
    /// everything on every bucket.
    pub scopes: Option<Vec<String>>,
}

/// An S3 access key pair. The secret is shown once, when the pair is created.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct AccessKey {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub id: String,
    /// The secret (`AWS_SECRET_ACCESS_KEY`): only in the answer to its creation.
    pub secret: Option<String>,
    pub description: String,
    /// What the key may do (see `CreateAccessKeyRequest.scopes`); empty: everything.
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Set once revoked: requests signed with it are refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Object, Debug, Clone)]
pub struct Health {
    pub status: String,
    pub version: String,
}
