//! key_manager's API data shapes. Doc comments are spec text. Binary values (plaintext, data keys,
//! random bytes) travel as standard base64 strings; ciphertexts are `aerekos:v<version>:<base64>`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

pub use aerekos_common::ErrorBody;

/// What a key may be used for.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum KeyUsage {
    /// Encrypt, decrypt, rewrap, and data keys for envelope encryption.
    EncryptDecrypt,
}

/// `enabled` keys work; `disabled` ones refuse encrypt and decrypt until enabled again;
/// `pending_deletion` ones refuse everything and are destroyed at `deletion_at` unless cancelled.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

/// A new key.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateKeyRequest {
    /// Unique; 1–128 characters of letters, digits, `-`, `_`, `.`, `/`. Usable in paths instead of the id.
    pub name: String,
    pub description: Option<String>,
    /// Default `encrypt_decrypt`.
    pub usage: Option<KeyUsage>,
    /// Whether the key may ever be deleted; default false. Can be changed later.
    pub deletion_allowed: Option<bool>,
}

/// Changes to a key's settings; absent fields stay as they are.
#[derive(Object, Debug, Clone, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct UpdateKeyRequest {
    pub description: Option<String>,
    /// Ciphertexts of older versions are refused (raise it after rewrapping old data).
    pub min_decryption_version: Option<u32>,
    /// Encrypt with at least this version; 0 means the latest.
    pub min_encryption_version: Option<u32>,
    pub deletion_allowed: Option<bool>,
}

/// One version of a key's material (the material itself never leaves the service).
#[derive(Object, Debug, Clone)]
pub struct KeyVersion {
    pub version: u32,
    pub created_at: DateTime<Utc>,
}

/// A key and its settings.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Key {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub usage: KeyUsage,
    pub state: KeyState,
    pub latest_version: u32,
    pub min_decryption_version: u32,
    /// 0: the latest version encrypts.
    pub min_encryption_version: u32,
    pub deletion_allowed: bool,
    /// When a scheduled deletion happens.
    pub deletion_at: Option<DateTime<Utc>>,
    pub versions: Vec<KeyVersion>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Scheduling a key's deletion.
#[derive(Object, Debug, Clone, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleDeletionRequest {
    /// Wait this long before destroying the key; at least the service's configured waiting period
    /// (the default).
    pub waiting_period_secs: Option<u64>,
}

/// Data to encrypt.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct EncryptRequest {
    /// The data, base64.
    pub plaintext: String,
    /// Must be given again, identical, to decrypt.
    pub context: Option<BTreeMap<String, String>>,
    /// Encrypt with this version instead of the latest (not below `min_encryption_version`).
    pub key_version: Option<u32>,
}

#[derive(Object, Debug, Clone)]
pub struct EncryptResponse {
    /// `aerekos:v<version>:<base64>`.
    pub ciphertext: String,
    pub key_version: u32,
}

/// A ciphertext to open.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct DecryptRequest {
    pub ciphertext: String,
    /// The context given at encryption.
    pub context: Option<BTreeMap<String, String>>,
}

#[derive(Object, Debug, Clone)]
pub struct DecryptResponse {
    /// The data, base64.
    pub plaintext: String,
    pub key_version: u32,
}

/// A data key for envelope encryption.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct DataKeyRequest {
    /// 128, 256 or 512.
    pub bits: u32,
    /// Return the plaintext data key too (default true); false returns only the wrapped copy.
    pub include_plaintext: Option<bool>,
    pub context: Option<BTreeMap<String, String>>,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct DataKeyResponse {
    /// The data key wrapped by the key: store it beside the data; `decrypt` unwraps it.
    pub ciphertext: String,
    /// The data key, base64: use it, then forget it.
    pub plaintext: Option<String>,
    pub key_version: u32,
    pub bits: u32,
}

#[derive(Object, Debug, Clone)]
pub struct BatchEncryptRequest {
    pub items: Vec<EncryptRequest>,
}

/// One item's outcome: a result or an error.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct BatchEncryptResult {
    pub ciphertext: Option<String>,
    pub key_version: Option<u32>,
    pub error: Option<ErrorBody>,
}

#[derive(Object, Debug, Clone)]
pub struct BatchEncryptResponse {
    /// In the order of the request's items.
    pub results: Vec<BatchEncryptResult>,
}

#[derive(Object, Debug, Clone)]
pub struct BatchDecryptRequest {
    pub items: Vec<DecryptRequest>,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct BatchDecryptResult {
    pub plaintext: Option<String>,
    pub key_version: Option<u32>,
    pub error: Option<ErrorBody>,
}

#[derive(Object, Debug, Clone)]
pub struct BatchDecryptResponse {
    /// In the order of the request's items.
    pub results: Vec<BatchDecryptResult>,
}

/// Random bytes from the operating system's CSPRNG.
#[derive(Object, Debug, Clone)]
pub struct RandomRequest {
    /// 1–1024.
    pub bytes: u32,
}

#[derive(Object, Debug, Clone)]
pub struct RandomResponse {
    /// base64.
    pub random: String,
}

/// One recorded use of a key.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `user:<name>` or `service:<name>`.
    pub actor: String,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    pub operation: String,
    pub request_id: String,
    /// `ok`, or the error code of a refusal.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Newest first.
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
