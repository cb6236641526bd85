//! The key ring: keys, their versions and settings, and every operation on them.
//!
//! Keys are held in memory (material unwrapped into ready AES-GCM ciphers, wiped on drop) with
//! SQLite as the durable copy; changes are committed to SQLite first, one at a time, then applied.
//! Each use of a key is audited before it is answered.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::Duration,
};

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    db::{Db, from_ms, now_ms},
    edge::current_request_id,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use uuid::Uuid;

use super::{
    audit::{AuditEntry, AuditLog},
    crypto::{self, MasterKey, SealingKey},
};
use crate::{
    model::{
        BatchDecryptResponse, BatchDecryptResult, BatchEncryptResponse, BatchEncryptResult,
        CreateKeyRequest, DataKeyRequest, DataKeyResponse, DecryptRequest, DecryptResponse,
        EncryptRequest, EncryptResponse, Key, KeyState, KeyUsage, KeyVersion, RandomResponse,
        UpdateKeyRequest,
    },
    store::{self, KeyRow, VersionRow},
};

struct VersionEntry {
    key: SealingKey,
    created_at: i64,
}

#[derive(Clone)]
struct KeyEntry {
    row: KeyRow,
    versions: BTreeMap<u32, Arc<VersionEntry>>,
}

impl KeyEntry {
    fn id(&self) -> Uuid {
        Uuid::parse_str(&self.row.id).expect("ids are uuids")
    }
    fn latest(&self) -> u32 {
        self.row.latest_version as u32
    }
    fn state(&self) -> KeyState {
        if self.row.deletion_at.is_some() {
            KeyState::PendingDeletion
        } else if self.row.enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        }
    }
}

#[derive(Default)]
struct Ring {
    by_id: HashMap<Uuid, Arc<KeyEntry>>,
    by_name: HashMap<String, Uuid>,
}

/// The sizes a data key may have.
pub const DATA_KEY_BITS: [u32; 3] = [128, 256, 512];
/// The most random bytes one request gets.
pub const MAX_RANDOM_BYTES: u32 = 1024;
/// The longest a key's deletion may be scheduled ahead (ten years): beyond it, the deletion time
/// would not fit the store's millisecond timestamps.
pub const MAX_DELETION_WAITING_PERIOD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The longest description a key takes.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// Limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_plaintext_bytes: usize,
    pub max_batch_items: usize,
    pub deletion_waiting_period: Duration,
}

pub struct KeyService {
    db: Db,
    master: MasterKey,
    audit: AuditLog,
    limits: Limits,
    ring: RwLock<Ring>,
    mutation: tokio::sync::Mutex<()>,
}

/// An operation's result with what the audit record needs to name.
struct Outcome<T> {
    key_id: Option<Uuid>,
    version: Option<u32>,
    detail: Option<String>,
    result: ApiResult<T>,
}

impl<T> Outcome<T> {
    fn err(key_id: Option<Uuid>, e: ApiError) -> Self {
        Self {
            key_id,
            version: None,
            detail: None,
            result: Err(e),
        }
    }
}

fn b64_decode(field: &str, value: &str) -> ApiResult<zeroize::Zeroizing<Vec<u8>>> {
    STANDARD
        .decode(value.trim())
        .map(zeroize::Zeroizing::new)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_base64",
                format!("{field} is not valid base64 (standard alphabet, with padding)"),
            )
        })
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            format!(
                "{} may not manage keys; this needs an admin",
                caller.actor()
            ),
        ))
    }
}

/// Encrypt, decrypt, rewrap and data keys: admins, services, and API keys scoped to the action
/// on this key (checked once the key is known, see [`KeyService::usable_key`]).
fn require_crypto(caller: &Caller) -> ApiResult<()> {
    match caller {
        Caller::Service { .. } | Caller::ApiKey { .. } => Ok(()),
        Caller::User { admin: true, .. } => Ok(()),
        Caller::User { .. } => Err(ApiError::forbidden(
            "forbidden",
            format!(
                "{} has the viewer role, which may list keys but not use them",
                caller.actor()
            ),
        )),
    }
}

/// For an API key, 403 unless its scopes grant `action` on `key` (named by its id or its name).
pub fn require_key_scope(caller: &Caller, action: &str, key: &Key) -> ApiResult<()> {
    caller.require_scope("key_manager", action, &[&key.id.to_string(), &key.name])
}

fn validate_name(name: &str) -> ApiResult<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && Uuid::parse_str(name).is_err();
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            "key names are 1–128 characters of letters, digits, '-', '_', '.', '/', and not a UUID",
        ))
    }
}

impl KeyService {
    /// Loads every key, unwrapping its material with the master key.
    pub async fn start(
        db: Db,
        master: MasterKey,
        audit: AuditLog,
        limits: Limits,
    ) -> Result<Self, String> {
        let (keys, versions) = store::load_keys(&db).await.map_err(|e| e.to_string())?;
        let mut ring = Ring::default();
        let mut by_key: HashMap<String, BTreeMap<u32, Arc<VersionEntry>>> = HashMap::new();
        for v in versions {
            let id = Uuid::parse_str(&v.key_id).map_err(|e| e.to_string())?;
            let material = master.unwrap(id, v.version as u32, &v.material).ok_or_else(|| {
                format!("key {} version {} does not open with this master key (wrong KEY_MANAGER_MASTER_KEY?)", v.key_id, v.version)
            })?;
            let entry = VersionEntry {
                key: SealingKey::new(&material),
                created_at: v.created_at,
            };
            by_key
                .entry(v.key_id)
                .or_default()
                .insert(v.version as u32, Arc::new(entry));
        }
        for row in keys {
            let id = Uuid::parse_str(&row.id).map_err(|e| e.to_string())?;
            let versions = by_key.remove(&row.id).unwrap_or_default();
            ring.by_name.insert(row.name.clone(), id);
            ring.by_id.insert(id, Arc::new(KeyEntry { row, versions }));
        }
        tracing::info!(keys = ring.by_id.len(), "key ring loaded");
        Ok(Self {
            db,
            master,
            audit,
            limits,
            ring: RwLock::new(ring),
            mutation: tokio::sync::Mutex::new(()),
        })
    }

    /// The key named by `key_ref` (its id or its name). Keys past their deletion date are gone.
    fn resolve(&self, key_ref: &str) -> ApiResult<Arc<KeyEntry>> {
        let ring = self.ring.read().expect("ring lock");
        let id = Uuid::parse_str(key_ref)
            .ok()
            .or_else(|| ring.by_name.get(key_ref).copied());
        let entry = id.and_then(|id| ring.by_id.get(&id)).cloned();
        match entry {
            Some(e) if !e.row.deletion_at.is_some_and(|at| at <= now_ms()) => Ok(e),
            _ => Err(ApiError::not_found(
                "key_not_found",
                format!("no key {key_ref:?} (by id or name)"),
            )),
        }
    }

    fn usable(entry: &KeyEntry) -> ApiResult<()> {
        match entry.state() {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(ApiError::conflict(
                "key_disabled",
                format!("key {} is disabled; enable it to use it", entry.row.name),
            )),
            KeyState::PendingDeletion => Err(ApiError::conflict(
                "key_pending_deletion",
                format!(
                    "key {} is scheduled for deletion; cancel the deletion to use it again",
                    entry.row.name
                ),
            )),
        }
    }

    async fn audited<T>(
        &self,
        caller: &Caller,
        operation: &'static str,
        outcome: Outcome<T>,
    ) -> ApiResult<T> {
        let entry = AuditEntry {
            actor: caller.actor(),
            key_id: outcome.key_id.map(|id| id.to_string()),
            key_version: outcome.version,
            operation,
            request_id: current_request_id(),
            outcome: match &outcome.result {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.body().code.clone(),
            },
            detail: outcome.detail,
        };
        self.audit.record(entry).await?;
        outcome.result
    }

    // ----- management -----

    pub fn list(&self) -> Vec<Key> {
        let ring = self.ring.read().expect("ring lock");
        let now = now_ms();
        let mut keys: Vec<Key> = ring
            .by_id
            .values()
            .filter(|e| !e.row.deletion_at.is_some_and(|at| at <= now))
            .map(|e| to_model(e))
            .collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        keys
    }

    pub fn get(&self, key_ref: &str) -> ApiResult<Key> {
        self.resolve(key_ref).map(|e| to_model(&e))
    }

    pub async fn create(&self, caller: &Caller, req: CreateKeyRequest) -> ApiResult<Key> {
        let outcome = self.create_inner(caller, req).await;
        self.audited(caller, "create", outcome).await
    }

    async fn create_inner(&self, caller: &Caller, req: CreateKeyRequest) -> Outcome<Key> {
        if let Err(e) = require_admin(caller).and_then(|_| validate_name(&req.name)) {
            return Outcome::err(None, e);
        }
        let description = req.description.unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Outcome::err(
                None,
                ApiError::bad_request(
                    "invalid_description",
                    format!("description is at most {MAX_DESCRIPTION_CHARS} characters"),
                ),
            );
        }
        let _one_at_a_time = self.mutation.lock().await;
        if self
            .ring
            .read()
            .expect("ring lock")
            .by_name
            .contains_key(&req.name)
        {
            return Outcome::err(
                None,
                ApiError::conflict(
                    "key_exists",
                    format!("a key named {:?} exists already", req.name),
                ),
            );
        }
        let id = Uuid::new_v4();
        let now = now_ms();
        let material = crypto::random_material();
        let row = KeyRow {
            id: id.to_string(),
            name: req.name.clone(),
            description,
            usage: "encrypt_decrypt".into(),
            enabled: true,
            latest_version: 1,
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: req.deletion_allowed.unwrap_or(false),
            deletion_at: None,
            created_at: now,
            updated_at: now,
        };
        let version = VersionRow {
            key_id: row.id.clone(),
            version: 1,
            material: self.master.wrap(id, 1, &material),
            created_at: now,
        };
        if let Err(e) = store::insert_key(&self.db, &row, &version).await {
            return Outcome::err(Some(id), ApiError::internal(e));
        }
        let entry = KeyEntry {
            row,
            versions: [(
                1,
                Arc::new(VersionEntry {
                    key: SealingKey::new(&material),
                    created_at: now,
                }),
            )]
            .into(),
        };
        let model = to_model(&entry);
        {
            let mut ring = self.ring.write().expect("ring lock");
            ring.by_name.insert(req.name, id);
            ring.by_id.insert(id, Arc::new(entry));
        }
        tracing::info!(key_id = %id, name = %model.name, "key created");
        Outcome {
            key_id: Some(id),
            version: Some(1),
            detail: None,
            result: Ok(model),
        }
    }

    /// Applies `change` to a copy of the key's row (and maybe adds a version), commits, swaps it in.
    async fn modify(
        &self,
        caller: &Caller,
        operation: &'static str,
        key_ref: &str,
        change: impl FnOnce(&KeyEntry, &mut KeyRow) -> ApiResult<bool>,
    ) -> ApiResult<Key> {
        let outcome = async {
            if let Err(e) = require_admin(caller) {
                return Outcome::err(None, e);
            }
            let _one_at_a_time = self.mutation.lock().await;
            let entry = match self.resolve(key_ref) {
                Ok(e) => e,
                Err(e) => return Outcome::err(None, e),
            };
            let id = entry.id();
            let mut row = entry.row.clone();
            let rotate = match change(&entry, &mut row) {
                Ok(rotate) => rotate,
                Err(e) => return Outcome::err(Some(id), e),
            };
            let now = now_ms();
            row.updated_at = now;
            let mut versions = entry.versions.clone();
            let mut new_version = None;
            if rotate {
                let v = entry.latest() + 1;
                let material = crypto::random_material();
                new_version = Some(VersionRow {
                    key_id: row.id.clone(),
                    version: i64::from(v),
                    material: self.master.wrap(id, v, &material),
                    created_at: now,
                });
                versions.insert(
                    v,
                    Arc::new(VersionEntry {
                        key: SealingKey::new(&material),
                        created_at: now,
                    }),
                );
                row.latest_version = i64::from(v);
            }
            if let Err(e) = store::update_key(&self.db, &row, new_version.as_ref()).await {
                return Outcome::err(Some(id), ApiError::internal(e));
            }
            let updated = KeyEntry { row, versions };
            let model = to_model(&updated);
            self.ring
                .write()
                .expect("ring lock")
                .by_id
                .insert(id, Arc::new(updated));
            tracing::info!(key_id = %id, operation, "key changed");
            Outcome {
                key_id: Some(id),
                version: Some(model.latest_version),
                detail: None,
                result: Ok(model),
            }
        }
        .await;
        self.audited(caller, operation, outcome).await
    }

    pub async fn rotate(&self, caller: &Caller, key_ref: &str) -> ApiResult<Key> {
        self.modify(caller, "rotate", key_ref, |entry, _| {
            if entry.state() == KeyState::PendingDeletion {
                return Err(ApiError::conflict(
                    "key_pending_deletion",
                    "a key scheduled for deletion cannot be rotated",
                ));
            }
            Ok(true)
        })
        .await
    }

    pub async fn update(
        &self,
        caller: &Caller,
        key_ref: &str,
        req: UpdateKeyRequest,
    ) -> ApiResult<Key> {
        self.modify(caller, "update", key_ref, |entry, row| {
            let latest = entry.latest();
            if let Some(d) = req.description {
                if d.chars().count() > MAX_DESCRIPTION_CHARS {
                    return Err(ApiError::bad_request("invalid_description", format!("description is at most {MAX_DESCRIPTION_CHARS} characters")));
                }
                row.description = d;
            }
            if let Some(v) = req.min_decryption_version {
                if v < 1 || v > latest {
                    return Err(ApiError::bad_request(
                        "invalid_min_decryption_version",
                        format!("min_decryption_version must be between 1 and the latest version, {latest}"),
                    ));
                }
                row.min_decryption_version = i64::from(v);
            }
            if let Some(v) = req.min_encryption_version {
                if v > latest {
                    return Err(ApiError::bad_request(
                        "invalid_min_encryption_version",
                        format!("min_encryption_version must be 0 (latest) or at most the latest version, {latest}"),
                    ));
                }
                row.min_encryption_version = i64::from(v);
            }
            if row.min_encryption_version != 0 && row.min_encryption_version < row.min_decryption_version {
                return Err(ApiError::bad_request(
                    "invalid_min_encryption_version",
                    "min_encryption_version may not be below min_decryption_version: new ciphertexts would not decrypt",
                ));
            }
            if let Some(allowed) = req.deletion_allowed {
                row.deletion_allowed = allowed;
            }
            Ok(false)
        })
        .await
    }

    pub async fn set_enabled(
        &self,
        caller: &Caller,
        key_ref: &str,
        enabled: bool,
    ) -> ApiResult<Key> {
        let operation = if enabled { "enable" } else { "disable" };
        self.modify(caller, operation, key_ref, |entry, row| {
            if entry.state() == KeyState::PendingDeletion {
                return Err(ApiError::conflict(
                    "key_pending_deletion",
                    "cancel the scheduled deletion first",
                ));
            }
            row.enabled = enabled;
            Ok(false)
        })
        .await
    }

    pub async fn schedule_deletion(
        &self,
        caller: &Caller,
        key_ref: &str,
        waiting: Option<Duration>,
    ) -> ApiResult<Key> {
        let minimum = self.limits.deletion_waiting_period;
        self.modify(caller, "schedule_deletion", key_ref, |entry, row| {
            if !entry.row.deletion_allowed {
                return Err(ApiError::conflict(
                    "deletion_not_allowed",
                    format!(
                        "key {} does not allow deletion; set deletion_allowed first",
                        entry.row.name
                    ),
                ));
            }
            let waiting = waiting.unwrap_or(minimum);
            if waiting < minimum || waiting > MAX_DELETION_WAITING_PERIOD {
                return Err(ApiError::bad_request(
                    "invalid_waiting_period",
                    format!(
                        "the waiting period must be between {}s and {}s",
                        minimum.as_secs(),
                        MAX_DELETION_WAITING_PERIOD.as_secs()
                    ),
                ));
            }
            // Within the bound above, milliseconds from now fit an i64 by far.
            row.deletion_at = Some(now_ms() + waiting.as_millis() as i64);
            Ok(false)
        })
        .await
    }

    pub async fn cancel_deletion(&self, caller: &Caller, key_ref: &str) -> ApiResult<Key> {
        self.modify(caller, "cancel_deletion", key_ref, |entry, row| {
            if entry.row.deletion_at.is_none() {
                return Err(ApiError::conflict(
                    "not_pending_deletion",
                    "the key is not scheduled for deletion",
                ));
            }
            // A key coming back from pending deletion comes back disabled, as in AWS KMS.
            row.deletion_at = None;
            row.enabled = false;
            Ok(false)
        })
        .await
    }

    /// Destroys keys whose deletion date has passed. Returns how many.
    pub async fn purge_due(&self) -> Result<usize, sqlx::Error> {
        let _one_at_a_time = self.mutation.lock().await;
        let now = now_ms();
        let due: Vec<Arc<KeyEntry>> = {
            let ring = self.ring.read().expect("ring lock");
            ring.by_id
                .values()
                .filter(|e| e.row.deletion_at.is_some_and(|at| at <= now))
                .cloned()
                .collect()
        };
        for entry in &due {
            store::delete_key(&self.db, &entry.row.id).await?;
            let mut ring = self.ring.write().expect("ring lock");
            ring.by_id.remove(&entry.id());
            ring.by_name.remove(&entry.row.name);
            tracing::info!(key_id = %entry.row.id, name = %entry.row.name, "key destroyed after its waiting period");
        }
        Ok(due.len())
    }

    // ----- cryptography -----

    fn encrypt_one(
        &self,
        entry: &KeyEntry,
        plaintext_b64: &str,
        context: Option<&BTreeMap<String, String>>,
        version: Option<u32>,
    ) -> (Option<u32>, ApiResult<EncryptResponse>) {
        let plaintext = match b64_decode("plaintext", plaintext_b64) {
            Ok(p) => p,
            Err(e) => return (None, Err(e)),
        };
        self.encrypt_bytes(entry, &plaintext, context, version)
    }

    fn encrypt_bytes(
        &self,
        entry: &KeyEntry,
        plaintext: &[u8],
        context: Option<&BTreeMap<String, String>>,
        version: Option<u32>,
    ) -> (Option<u32>, ApiResult<EncryptResponse>) {
        if plaintext.len() > self.limits.max_plaintext_bytes {
            return (
                None,
                Err(ApiError::bad_request(
                    "plaintext_too_large",
                    format!(
                        "the plaintext is {} bytes; the limit is {}. Encrypt larger data locally under a data key (POST …/datakey)",
                        plaintext.len(),
                        self.limits.max_plaintext_bytes
                    ),
                )),
            );
        }
        let latest = entry.latest();
        let floor = entry.row.min_encryption_version as u32;
        let v = version.unwrap_or(latest);
        if v > latest || v < floor.max(1) {
            return (
                Some(v),
                Err(ApiError::bad_request(
                    "version_not_allowed",
                    format!(
                        "key {} encrypts with versions {}–{latest}",
                        entry.row.name,
                        floor.max(1)
                    ),
                )),
            );
        }
        if floor != 0 && version.is_none() && latest < floor {
            return (
                Some(v),
                Err(ApiError::internal("min_encryption_version above latest")),
            );
        }
        let key = &entry.versions[&v].key;
        let ctx = crypto::canonical_context(context.unwrap_or(&BTreeMap::new()));
        (
            Some(v),
            Ok(EncryptResponse {
                ciphertext: crypto::encrypt(key, entry.id(), v, plaintext, &ctx),
                key_version: v,
            }),
        )
    }

    fn decrypt_bytes(
        &self,
        entry: &KeyEntry,
        ciphertext: &str,
        context: Option<&BTreeMap<String, String>>,
    ) -> (Option<u32>, ApiResult<zeroize::Zeroizing<Vec<u8>>>) {
        let parsed = match crypto::parse(ciphertext) {
            Ok(p) => p,
            Err(crypto::CiphertextError::Malformed(why)) => {
                return (
                    None,
                    Err(ApiError::bad_request(
                        "invalid_ciphertext",
                        format!("this is not an aerekos ciphertext: {why}"),
                    )),
                );
            }
        };
        let v = parsed.version;
        if parsed.key_id != entry.id() {
            return (
                Some(v),
                Err(ApiError::bad_request(
                    "wrong_key",
                    format!(
                        "the ciphertext was made with key {}, not with {} ({})",
                        parsed.key_id, entry.row.name, entry.row.id
                    ),
                )),
            );
        }
        if v < entry.row.min_decryption_version as u32 {
            return (
                Some(v),
                Err(ApiError::bad_request(
                    "version_not_allowed",
                    format!(
                        "the ciphertext is of version {v}; key {} only decrypts versions {} and above (min_decryption_version)",
                        entry.row.name, entry.row.min_decryption_version
                    ),
                )),
            );
        }
        let Some(version) = entry.versions.get(&v) else {
            return (
                Some(v),
                Err(ApiError::bad_request(
                    "invalid_ciphertext",
                    format!("key {} has no version {v}", entry.row.name),
                )),
            );
        };
        let ctx = crypto::canonical_context(context.unwrap_or(&BTreeMap::new()));
        match crypto::decrypt(&version.key, &parsed, &ctx) {
            Some(plaintext) => (Some(v), Ok(plaintext)),
            None => (
                Some(v),
                Err(ApiError::bad_request(
                    "decryption_failed",
                    "the ciphertext does not authenticate: it was altered, or the encryption context differs from the one used to encrypt",
                )),
            ),
        }
    }

    /// Resolves the key and checks the caller may use it and that it is usable.
    /// `actions` are what an API key's scopes must grant on this key (a rewrap decrypts and encrypts).
    fn usable_key(
        &self,
        caller: &Caller,
        key_ref: &str,
        actions: &[&str],
    ) -> Result<Arc<KeyEntry>, (Option<Uuid>, ApiError)> {
        require_crypto(caller).map_err(|e| (None, e))?;
        let entry = self.resolve(key_ref).map_err(|e| (None, e))?;
        for action in actions {
            caller
                .require_scope("key_manager", action, &[&entry.row.id, &entry.row.name])
                .map_err(|e| (Some(entry.id()), e))?;
        }
        Self::usable(&entry).map_err(|e| (Some(entry.id()), e))?;
        Ok(entry)
    }

    fn usable_batch_key(
        &self,
        caller: &Caller,
        key_ref: &str,
        action: &str,
        items: usize,
    ) -> Result<Arc<KeyEntry>, (Option<Uuid>, ApiError)> {
        let entry = self.usable_key(caller, key_ref, &[action])?;
        self.check_batch(items).map_err(|e| (Some(entry.id()), e))?;
        Ok(entry)
    }

    pub async fn encrypt(
        &self,
        caller: &Caller,
        key_ref: &str,
        req: EncryptRequest,
    ) -> ApiResult<EncryptResponse> {
        let outcome = match self.usable_key(caller, key_ref, &["encrypt"]) {
            Err((id, e)) => Outcome::err(id, e),
            Ok(entry) => {
                let (version, result) = self.encrypt_one(
                    &entry,
                    &req.plaintext,
                    req.context.as_ref(),
                    req.key_version,
                );
                Outcome {
                    key_id: Some(entry.id()),
                    version,
                    detail: None,
                    result,
                }
            }
        };
        self.audited(caller, "encrypt", outcome).await
    }

    pub async fn decrypt(
        &self,
        caller: &Caller,
        key_ref: &str,
        req: DecryptRequest,
    ) -> ApiResult<DecryptResponse> {
        let outcome = match self.usable_key(caller, key_ref, &["decrypt"]) {
            Err((id, e)) => Outcome::err(id, e),
            Ok(entry) => {
                let (version, result) =
                    self.decrypt_bytes(&entry, &req.ciphertext, req.context.as_ref());
                let result = result.map(|p| DecryptResponse {
                    plaintext: STANDARD.encode(&*p),
                    key_version: version.unwrap_or(0),
                });
                Outcome {
                    key_id: Some(entry.id()),
                    version,
                    detail: None,
                    result,
                }
            }
        };
        self.audited(caller, "decrypt", outcome).await
    }

    /// Decrypts and re-encrypts under the newest allowed version; the plaintext never leaves.
    pub async fn rewrap(
        &self,
        caller: &Caller,
        key_ref: &str,
        req: DecryptRequest,
    ) -> ApiResult<EncryptResponse> {
        let outcome = match self.usable_key(caller, key_ref, &["decrypt", "encrypt"]) {
            Err((id, e)) => Outcome::err(id, e),
            Ok(entry) => {
                let (old, opened) =
                    self.decrypt_bytes(&entry, &req.ciphertext, req.context.as_ref());
                let (version, result) = match opened {
                    Ok(plaintext) => {
                        self.encrypt_bytes(&entry, &plaintext, req.context.as_ref(), None)
                    }
                    Err(e) => (old, Err(e)),
                };
                let detail = old.map(|v| format!("from version {v}"));
                Outcome {
                    key_id: Some(entry.id()),
                    version,
                    detail,
                    result,
                }
            }
        };
        self.audited(caller, "rewrap", outcome).await
    }

    pub async fn data_key(
        &self,
        caller: &Caller,
        key_ref: &str,
        req: DataKeyRequest,
    ) -> ApiResult<DataKeyResponse> {
        let outcome = match self.usable_key(caller, key_ref, &["generate_data_key"]) {
            Err((id, e)) => Outcome::err(id, e),
            Ok(entry) => {
                let id = Some(entry.id());
                if !DATA_KEY_BITS.contains(&req.bits) {
                    Outcome::err(
                        id,
                        ApiError::bad_request("invalid_bits", "bits must be 128, 256 or 512"),
                    )
                } else {
                    let data_key = crypto::random_bytes(req.bits as usize / 8);
                    let (version, wrapped) =
                        self.encrypt_bytes(&entry, &data_key, req.context.as_ref(), None);
                    let include = req.include_plaintext.unwrap_or(true);
                    let result = wrapped.map(|w| DataKeyResponse {
                        ciphertext: w.ciphertext,
                        plaintext: include.then(|| STANDARD.encode(&*data_key)),
                        key_version: w.key_version,
                        bits: req.bits,
                    });
                    let detail = Some(format!(
                        "{} bits, plaintext {}",
                        req.bits,
                        if include { "returned" } else { "withheld" }
                    ));
                    Outcome {
                        key_id: id,
                        version,
                        detail,
                        result,
                    }
                }
            }
        };
        self.audited(caller, "datakey", outcome).await
    }

    fn check_batch(&self, n: usize) -> ApiResult<()> {
        if n == 0 || n > self.limits.max_batch_items {
            return Err(ApiError::bad_request(
                "invalid_batch",
                format!(
                    "a batch has 1–{} items; this one has {n}",
                    self.limits.max_batch_items
                ),
            ));
        }
        Ok(())
    }

    pub async fn encrypt_batch(
        &self,
        caller: &Caller,
        key_ref: &str,
        items: Vec<EncryptRequest>,
    ) -> ApiResult<BatchEncryptResponse> {
        let outcome = match self.usable_batch_key(caller, key_ref, "encrypt", items.len()) {
            Err((id, e)) => Outcome::err(id, e),
            Ok(entry) => {
                let mut failed = 0;
                let results: Vec<_> = items
                    .iter()
                    .map(|item| {
                        match self
                            .encrypt_one(
                                &entry,
                                &item.plaintext,
                                item.context.as_ref(),
                                item.key_version,
                            )
                            .1
                        {
                            Ok(r) => BatchEncryptResult {
                                ciphertext: Some(r.ciphertext),
                                key_version: Some(r.key_version),
                                error: None,
                            },
                            Err(e) => {
                                failed += 1;
                                BatchEncryptResult {
                                    ciphertext: None,
                                    key_version: None,
                                    error: Some(e.body().clone()),
                                }
                            }
                        }
                    })
                    .collect();
                let detail = Some(format!("{} items, {failed} refused", items.len()));
                Outcome {
                    key_id: Some(entry.id()),
                    version: Some(entry.latest()),
                    detail,
                    result: Ok(BatchEncryptResponse { results }),
                }
            }
        };
        self.audited(caller, "encrypt_batch", outcome).await
    }

    pub async fn decrypt_batch(
        &self,
        caller: &Caller,
        key_ref: &str,
        items: Vec<DecryptRequest>,
    ) -> ApiResult<BatchDecryptResponse> {
        let outcome = match self.usable_batch_key(caller, key_ref, "decrypt", items.len()) {
            Err((id, e)) => Outcome::err(id, e),
            Ok(entry) => {
                let mut failed = 0;
                let results: Vec<_> = items
                    .iter()
                    .map(|item| {
                        match self.decrypt_bytes(&entry, &item.ciphertext, item.context.as_ref()) {
                            (v, Ok(p)) => BatchDecryptResult {
                                plaintext: Some(STANDARD.encode(&*p)),
                                key_version: v,
                                error: None,
                            },
                            (_, Err(e)) => {
                                failed += 1;
                                BatchDecryptResult {
                                    plaintext: None,
                                    key_version: None,
                                    error: Some(e.body().clone()),
                                }
                            }
                        }
                    })
                    .collect();
                let detail = Some(format!("{} items, {failed} refused", items.len()));
                Outcome {
                    key_id: Some(entry.id()),
                    version: None,
                    detail,
                    result: Ok(BatchDecryptResponse { results }),
                }
            }
        };
        self.audited(caller, "decrypt_batch", outcome).await
    }

    pub fn random(&self, bytes: u32) -> ApiResult<RandomResponse> {
        if !(1..=MAX_RANDOM_BYTES).contains(&bytes) {
            return Err(ApiError::bad_request(
                "invalid_bytes",
                format!("bytes must be between 1 and {MAX_RANDOM_BYTES}"),
            ));
        }
        Ok(RandomResponse {
            random: STANDARD.encode(&*crypto::random_bytes(bytes as usize)),
        })
    }
}

fn to_model(e: &KeyEntry) -> Key {
    Key {
        id: e.id(),
        name: e.row.name.clone(),
        description: e.row.description.clone(),
        usage: KeyUsage::EncryptDecrypt,
        state: e.state(),
        latest_version: e.latest(),
        min_decryption_version: e.row.min_decryption_version as u32,
        min_encryption_version: e.row.min_encryption_version as u32,
        deletion_allowed: e.row.deletion_allowed,
        deletion_at: e.row.deletion_at.map(from_ms),
        versions: e
            .versions
            .iter()
            .map(|(v, entry)| KeyVersion {
                version: *v,
                created_at: from_ms(entry.created_at),
            })
            .collect(),
        created_at: from_ms(e.row.created_at),
        updated_at: from_ms(e.row.updated_at),
    }
}
