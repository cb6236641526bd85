//! secrets_manager's API data shapes. Doc comments are spec text. A value travels as standard
//! base64 bytes or as a JSON object, never anywhere but in a value read's or write's body.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::Object;

pub use aerekos_common::ErrorBody;

/// A secret's value: exactly one of `bytes` and `json`.
#[derive(Object, Clone, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct SecretValue {
    /// The value's bytes, standard base64 with padding (a password is its UTF-8 bytes).
    pub bytes: Option<String>,
    /// The value as a JSON object (several settings in one secret).
    pub json: Option<BTreeMap<String, serde_json::Value>>,
}

// Values never reach a log line through a `{:?}`.
impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.bytes.is_some() {
            "SecretValue(bytes, redacted)"
        } else {
            "SecretValue(json, redacted)"
        })
    }
}

/// A new secret, with its first value if one is given.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateSecretRequest {
    /// Hierarchical: segments of letters, digits, `.`, `_`, `-` joined by `/`
    /// (`apps/shop/db-password`); at most 512 characters.
    pub name: String,
    pub description: Option<String>,
    /// The key_manager key (name or id) its versions are encrypted under; default: the service's
    /// `DEFAULT_ENCRYPTION_KEY`.
    pub encryption_key: Option<String>,
    /// How many versions are kept (the oldest without a staging label are removed first);
    /// default: the service's `DEFAULT_MAX_VERSIONS`.
    pub max_versions: Option<u32>,
    /// Custom labels of the secret (key → value), e.g. its owner or environment.
    pub tags: Option<BTreeMap<String, String>>,
    /// Version 1, labelled `AWSCURRENT`.
    pub value: Option<SecretValue>,
}

/// Changes to a secret's metadata; absent fields stay as they are.
#[derive(Object, Debug, Clone, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct UpdateSecretRequest {
    pub description: Option<String>,
    /// Versions written from now on are encrypted under this key_manager key; earlier ones keep theirs.
    pub encryption_key: Option<String>,
    /// Lowering it removes the oldest versions without a staging label at once.
    pub max_versions: Option<u32>,
    /// Replaces the tags as a whole.
    pub tags: Option<BTreeMap<String, String>>,
}

/// A new version of a secret's value.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct PutValueRequest {
    pub value: SecretValue,
    /// Check-and-set: write only if the secret's latest version is this one (0: only if it has no
    /// version yet); otherwise 409 `cas_mismatch` and nothing is written.
    pub cas: Option<u64>,
    /// Custom staging labels to put on the new version besides `AWSCURRENT` (each moves here from
    /// the version it named).
    pub labels: Option<Vec<String>>,
}

/// One version of a secret (never its value).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct SecretVersion {
    pub version: u64,
    pub created_at: DateTime<Utc>,
    /// Who wrote it (`user:<name>`, `api_key:<name>`, `service:<name>`).
    pub created_by: String,
    /// The staging labels naming it: `AWSCURRENT` (what a read without version or label serves),
    /// `AWSPREVIOUS` (the version before it), and custom ones.
    pub labels: Vec<String>,
    /// Set while soft-deleted: not served until undeleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Set once destroyed: its value is gone for good.
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// Calls that produce a secret's next value: `POST /api/<service><path>` through the conductor's
/// gateway, with this service's token; the answer is a [`RotationAnswer`].
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct RotationSchedule {
    /// A service of the platform's catalog (its gateway name), e.g. `shop_rotator`.
    pub service: String,
    /// The path under the service's gateway prefix, starting with `/`.
    pub path: String,
    /// How often, in seconds (a minute to a year).
    pub interval_secs: u64,
    /// When the next rotation is due.
    pub next_at: Option<DateTime<Utc>>,
    /// When a rotation last succeeded.
    pub last_rotated_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed (cleared by a success); the value was left as it was.
    pub last_error: Option<String>,
}

/// A rotation schedule to set.
#[derive(Object, Debug, Clone)]
pub struct SetRotationRequest {
    pub service: String,
    pub path: String,
    pub interval_secs: u64,
}

/// What a rotation endpoint is sent (`POST`, JSON).
#[derive(Object, Debug, Clone)]
pub struct RotationCall {
    pub secret: String,
    /// The version now labelled `AWSCURRENT` (0: none).
    pub current_version: u64,
}

/// What a rotation endpoint answers: the new value.
#[derive(Object, Debug, Clone)]
pub struct RotationAnswer {
    pub value: SecretValue,
}

/// A secret's metadata, versions and labels (never a value).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Secret {
    pub name: String,
    pub description: String,
    pub encryption_key: String,
    pub max_versions: u32,
    pub tags: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The version `AWSCURRENT` names (absent: no value yet).
    pub current_version: Option<u64>,
    /// The highest version number written.
    pub latest_version: u64,
    /// Set while the secret is scheduled for deletion: when it goes for good (restore cancels it).
    pub deletion_date: Option<DateTime<Utc>>,
    pub rotation: Option<RotationSchedule>,
    /// Newest first.
    pub versions: Vec<SecretVersion>,
}

/// One page of secrets (metadata only, without versions).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct SecretList {
    pub secrets: Vec<SecretSummary>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct SecretSummary {
    pub name: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub current_version: Option<u64>,
    pub latest_version: u64,
    pub updated_at: DateTime<Utc>,
    pub deletion_date: Option<DateTime<Utc>>,
}

/// A version's value.
#[derive(Object, Debug, Clone)]
pub struct SecretValueResponse {
    pub name: String,
    pub version: u64,
    pub labels: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub value: SecretValue,
}

/// Where a staging label goes.
#[derive(Object, Debug, Clone)]
pub struct MoveLabelRequest {
    pub version: u64,
}

/// A record of the audit log.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `user:<name>`, `api_key:<name>` or `service:<name>`.
    pub actor: String,
    /// `create`, `read_value`, `put_value`, `update`, `delete`, `restore`, `purge`,
    /// `delete_version`, `undelete_version`, `destroy_version`, `move_label`, `remove_label`,
    /// `set_rotation`, `remove_rotation`, `rotate`.
    pub action: String,
    pub secret: Option<String>,
    pub version: Option<u64>,
    pub request_id: String,
    /// `ok`, or the error code of a refusal.
    pub outcome: String,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `before_id` for older records.
    pub next_before_id: Option<i64>,
}

#[derive(Object, Debug, Clone)]
pub struct Health {
    pub status: String,
    pub version: String,
}
