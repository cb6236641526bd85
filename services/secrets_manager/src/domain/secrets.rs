//! Secrets: versions written and read through envelope encryption, staging labels, soft deletion
//! and destruction of versions, deletion of whole secrets with a recovery window, and who may do
//! what. Every read of a value and every change is audited before it is answered.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    db::{Db, from_ms as ts, now_ms},
    edge::current_request_id,
};
use aerekos_envelope::Envelope;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use zeroize::Zeroizing;

use super::{
    audit::{AuditEntry, AuditLog},
    crypto,
    names::{check_description, check_label, check_max_versions, check_name, check_tags},
    read_cache::{ReadCache, Writing},
};
use crate::{
    model::{
        AuditPage, AuditRecord, CreateSecretRequest, PutValueRequest, Secret, SecretList,
        SecretSummary, SecretValue, SecretValueResponse, SecretVersion, UpdateSecretRequest,
    },
    store::{
        self, CURRENT, MetadataChange, NewVersion, PREVIOUS, PutOutcome, SecretRow, VersionRow,
    },
};

/// This service's name in API key scopes.
const SCOPE_SERVICE: &str = "secrets_manager";
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;
/// A deleted secret's recovery window, in days (AWS Secrets Manager's bounds).
pub const MIN_RECOVERY_DAYS: u32 = 7;
pub const MAX_RECOVERY_DAYS: u32 = 30;

/// What a version's value is given back as.
const KIND_BYTES: &str = "bytes";
const KIND_JSON: &str = "json";

#[derive(Debug, Clone)]
pub struct Limits {
    pub default_key: String,
    pub default_max_versions: u32,
    pub max_value_bytes: usize,
    /// How long a day of a recovery window is.
    pub deletion_day: Duration,
}

pub struct SecretService {
    db: Db,
    envelope: Envelope,
    audit: AuditLog,
    limits: Limits,
    /// key_manager, for making the default key with an admin's own token.
    key_manager_url: String,
    /// Writers of versions take turns from reading the latest number to committing the next
    /// (the data key is fetched before, so the turn is a seal and a commit): a value is sealed for
    /// its version number, so two writers must not both seal for the same one.
    writes: tokio::sync::Mutex<()>,
    /// Rows of recent value reads; every write goes through [`Self::writing`], which empties it.
    reads: ReadCache,
}

/// What a caller may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Names and metadata.
    See,
    ReadValue,
    /// Create secrets and write versions.
    Write,
    /// Everything else that changes a secret.
    Manage,
}

fn allow(caller: &Caller, need: Need, name: &str) -> ApiResult<()> {
    let refuse = |why: String| Err(ApiError::forbidden("forbidden", why));
    match caller {
        Caller::User { admin: true, .. } => Ok(()),
        Caller::User { .. } if need == Need::See => Ok(()),
        Caller::User { .. } => refuse(format!(
            "{} has the viewer role: it may list secrets and read their metadata, never values or changes",
            caller.actor()
        )),
        Caller::ApiKey { .. } => match need {
            Need::See => caller
                .require_scope(SCOPE_SERVICE, "read", &[name])
                .or_else(|_| caller.require_scope(SCOPE_SERVICE, "write", &[name])),
            Need::ReadValue => caller.require_scope(SCOPE_SERVICE, "read", &[name]),
            Need::Write => caller.require_scope(SCOPE_SERVICE, "write", &[name]),
            Need::Manage => refuse(format!(
                "{} is an API key; changing a secret's metadata, labels or life needs an admin",
                caller.actor()
            )),
        },
        Caller::Service { .. } => refuse(format!(
            "{} is a platform service token; secrets are read with an admin's token or an API key",
            caller.actor()
        )),
    }
}

/// What an operation came to, with the version it touched (for its audit record).
struct Outcome<T> {
    version: Option<u64>,
    result: ApiResult<T>,
}

impl<T> Outcome<T> {
    fn ok(version: Option<u64>, value: T) -> Self {
        Self {
            version,
            result: Ok(value),
        }
    }

    fn err(version: Option<u64>, e: ApiError) -> Self {
        Self {
            version,
            result: Err(e),
        }
    }
}

impl<T> From<ApiResult<T>> for Outcome<T> {
    fn from(result: ApiResult<T>) -> Self {
        Self {
            version: None,
            result,
        }
    }
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::internal(format!("database: {e}"))
}

fn no_secret(name: &str) -> ApiError {
    ApiError::not_found("secret_not_found", format!("no secret {name:?}"))
}

fn scheduled(name: &str, row: &SecretRow) -> ApiError {
    scheduled_at(name, row.deletion_date.unwrap_or_default())
}

fn scheduled_at(name: &str, deletion_date: i64) -> ApiError {
    let when = ts(deletion_date).to_rfc3339();
    ApiError::conflict(
        "secret_scheduled_for_deletion",
        format!(
            "secret {name:?} is scheduled for deletion at {when}; restore it (POST …/restore) to use it again"
        ),
    )
}

/// A value as stored: its kind and plaintext bytes.
fn encode_value(
    value: &SecretValue,
    max_bytes: usize,
) -> ApiResult<(&'static str, Zeroizing<Vec<u8>>)> {
    let (kind, bytes) = match (&value.bytes, &value.json) {
        (Some(b64), None) => {
            let bytes = STANDARD.decode(b64.trim()).map_err(|_| {
                ApiError::bad_request(
                    "invalid_value",
                    "value.bytes is not valid base64 (standard alphabet, with padding)",
                )
            })?;
            (KIND_BYTES, Zeroizing::new(bytes))
        }
        (None, Some(json)) => (
            KIND_JSON,
            Zeroizing::new(serde_json::to_vec(json).map_err(ApiError::internal)?),
        ),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "a value is exactly one of bytes (base64) and json (an object)",
            ));
        }
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_value",
            "a value may not be empty",
        ));
    }
    if bytes.len() > max_bytes {
        return Err(ApiError::bad_request(
            "value_too_large",
            format!("the value is {} bytes; at most {max_bytes}", bytes.len()),
        ));
    }
    Ok((kind, bytes))
}

fn decode_value(kind: &str, plaintext: &[u8]) -> ApiResult<SecretValue> {
    match kind {
        KIND_JSON => Ok(SecretValue {
            json: Some(serde_json::from_slice(plaintext).map_err(ApiError::internal)?),
            bytes: None,
        }),
        _ => Ok(SecretValue {
            bytes: Some(STANDARD.encode(plaintext)),
            json: None,
        }),
    }
}

/// A value ready to be sealed as some version of a secret: its plaintext and a fresh data key.
struct Sealer {
    kind: &'static str,
    plaintext: Zeroizing<Vec<u8>>,
    data_key: aerekos_envelope::DataKeyBytes,
    wrapped: String,
    key_ref: String,
}

impl Sealer {
    fn seal(&self, name: &str, version: i64) -> ApiResult<Vec<u8>> {
        crypto::seal(
            &self.data_key,
            name,
            version as u64,
            self.kind,
            &self.plaintext,
        )
        .ok_or_else(|| ApiError::internal("sealing a value failed"))
    }

    fn version<'a>(
        &'a self,
        version: i64,
        sealed: &'a [u8],
        created_by: &'a str,
        labels: &'a [String],
    ) -> NewVersion<'a> {
        NewVersion {
            version,
            kind: self.kind,
            sealed,
            key_ref: &self.key_ref,
            wrapped_key: &self.wrapped,
            created_by,
            labels,
        }
    }
}

/// key_manager's encryption context for a secret's data keys: a wrapped key opens only for it.
fn context(name: &str) -> HashMap<String, String> {
    HashMap::from([("secret".to_owned(), name.to_owned())])
}

impl SecretService {
    pub fn new(
        db: Db,
        envelope: Envelope,
        audit: AuditLog,
        limits: Limits,
        key_manager_url: String,
    ) -> Self {
        Self {
            db,
            envelope,
            audit,
            limits,
            key_manager_url,
            writes: tokio::sync::Mutex::new(()),
            reads: ReadCache::default(),
        }
    }

    /// The database for a write: every write goes through here, so the read cache never serves
    /// a row the write changed (see [`ReadCache`]).
    fn writing(&self) -> Writing<'_> {
        self.reads.writing(&self.db)
    }

    /// Records what `outcome` came to, then answers it; an unrecordable one is 503.
    async fn audited<T>(
        &self,
        caller: &Caller,
        action: &'static str,
        secret: &str,
        outcome: Outcome<T>,
    ) -> ApiResult<T> {
        let entry = AuditEntry {
            actor: caller.actor(),
            action,
            secret: Some(secret.to_owned()),
            version: outcome.version,
            request_id: current_request_id(),
            outcome: match &outcome.result {
                Ok(_) => "ok".into(),
                Err(e) => e.body().code.clone(),
            },
        };
        self.audit.record(entry).await?;
        outcome.result
    }

    async fn row(&self, name: &str) -> ApiResult<SecretRow> {
        store::get_secret(&self.db, name)
            .await
            .map_err(db_err)?
            .ok_or_else(|| no_secret(name))
    }

    /// A secret as the API shows it (metadata, versions, labels; never a value).
    async fn describe_row(&self, row: SecretRow) -> ApiResult<Secret> {
        let versions = store::versions_of(&self.db, &row.name)
            .await
            .map_err(db_err)?;
        let labels = store::labels_of(&self.db, &row.name)
            .await
            .map_err(db_err)?;
        let mut by_version: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for l in labels {
            by_version.entry(l.version).or_default().push(l.label);
        }
        let current_version = by_version
            .iter()
            .find(|(_, ls)| ls.iter().any(|l| l == CURRENT))
            .map(|(v, _)| *v as u64);
        let versions = versions
            .into_iter()
            .map(|v| version_model(&v, by_version.get(&v.version).cloned().unwrap_or_default()))
            .collect();
        Ok(Secret {
            description: row.description,
            encryption_key: row.key_ref,
            max_versions: row.max_versions as u32,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            current_version,
            latest_version: row.latest_version as u64,
            deletion_date: row.deletion_date.map(ts),
            rotation: row
                .rotation
                .as_deref()
                .and_then(|r| serde_json::from_str::<super::rotation::Schedule>(r).ok())
                .map(|s| s.model()),
            versions,
            name: row.name,
        })
    }

    pub(super) async fn describe_name(&self, name: &str) -> ApiResult<Secret> {
        self.describe_row(self.row(name).await?).await
    }

    // ---- secrets

    /// Creates a secret (admin, or an API key with `secrets_manager:write` on its name), with its
    /// first version when a value is given. `token` is the caller's own, as sent: an admin's makes
    /// the default key_manager key if it does not exist yet.
    pub async fn create(
        &self,
        caller: &Caller,
        token: &str,
        req: CreateSecretRequest,
    ) -> ApiResult<Secret> {
        let name = req.name.clone();
        let outcome = self.create_inner(caller, token, req).await;
        self.audited(caller, "create", &name, outcome).await
    }

    async fn create_inner(
        &self,
        caller: &Caller,
        token: &str,
        req: CreateSecretRequest,
    ) -> Outcome<Secret> {
        let checked = (|| {
            allow(caller, Need::Write, &req.name)?;
            check_name(&req.name)?;
            let description = req.description.clone().unwrap_or_default();
            check_description(&description)?;
            let tags = req.tags.clone().unwrap_or_default();
            check_tags(&tags)?;
            let max_versions = req.max_versions.unwrap_or(self.limits.default_max_versions);
            check_max_versions(max_versions)?;
            Ok((description, tags, max_versions))
        })();
        let (description, tags, max_versions) = match checked {
            Ok(checked) => checked,
            Err(e) => return Outcome::err(None, e),
        };
        let key_ref = req
            .encryption_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| self.limits.default_key.clone());
        if let Err(e) = self.usable_key(caller, token, &key_ref).await {
            return Outcome::err(None, e);
        }
        // The first value is sealed before anything is written: a create either makes the secret
        // with it or nothing at all.
        let sealer = match &req.value {
            Some(value) => match self.sealer(&req.name, &key_ref, value).await {
                Ok(sealer) => Some(sealer),
                Err(e) => return Outcome::err(None, e),
            },
            None => None,
        };
        let now = now_ms();
        let row = SecretRow {
            name: req.name.clone(),
            description,
            key_ref,
            max_versions: max_versions.into(),
            tags: serde_json::to_string(&tags).unwrap_or_else(|_| "{}".into()),
            latest_version: 0,
            created_at: now,
            updated_at: now,
            deletion_date: None,
            rotation: None,
        };
        let created_by = caller.actor();
        let sealed = match sealer.as_ref().map(|s| s.seal(&row.name, 1)).transpose() {
            Ok(sealed) => sealed,
            Err(e) => return Outcome::err(None, e),
        };
        let first = sealer
            .as_ref()
            .zip(sealed.as_deref())
            .map(|(s, sealed)| s.version(1, sealed, &created_by, &[]));
        match store::insert_secret(&self.writing(), &row, first.as_ref()).await {
            Ok(true) => {}
            Ok(false) => {
                return Outcome::err(
                    None,
                    ApiError::conflict(
                        "secret_exists",
                        format!("a secret named {:?} exists already", req.name),
                    ),
                );
            }
            Err(e) => return Outcome::err(None, db_err(e)),
        }
        Outcome {
            version: first.map(|_| 1),
            result: self.describe_name(&row.name).await,
        }
    }

    /// Checks `value` and gets a fresh data key for it under `key_ref`.
    async fn sealer(&self, name: &str, key_ref: &str, value: &SecretValue) -> ApiResult<Sealer> {
        let (kind, plaintext) = encode_value(value, self.limits.max_value_bytes)?;
        let (data_key, wrapped) = self.envelope.new_data_key(key_ref, &context(name)).await?;
        Ok(Sealer {
            kind,
            plaintext,
            data_key,
            wrapped,
            key_ref: key_ref.to_owned(),
        })
    }

    /// Checks that key_manager has `key_ref`. The default key is made when missing, with the
    /// caller's own token, if the caller is an admin.
    async fn usable_key(&self, caller: &Caller, token: &str, key_ref: &str) -> ApiResult<()> {
        let missing = match self.envelope.check_key(key_ref).await {
            Ok(()) => return Ok(()),
            Err(e) if e.body().code == "encryption_key_not_found" => e,
            Err(e) => return Err(e),
        };
        if key_ref != self.limits.default_key {
            return Err(missing);
        }
        if !caller.is_admin() {
            return Err(ApiError::conflict(
                "default_key_missing",
                format!(
                    "key_manager has no key {key_ref:?} (secrets_manager's default) yet; an admin's first secret makes it, or name another encryption_key"
                ),
            ));
        }
        let made = aerekos_sdk::KeyManager::with_token(&self.key_manager_url, token)
            .create_key()
            .body_map(|b| {
                b.name(key_ref).description(Some(
                    "secrets_manager's default key: the data keys of secrets that name no other"
                        .to_owned(),
                ))
            })
            .send()
            .await;
        match made {
            Ok(_) => {
                tracing::info!(key = %key_ref, "made secrets_manager's default key in key_manager");
                Ok(())
            }
            // Made at the same moment by another request.
            Err(aerekos_sdk::ClientError::ErrorResponse(r)) if r.status().as_u16() == 409 => Ok(()),
            Err(e) => Err(ApiError::unavailable(
                "encryption_unavailable",
                format!("making the default key {key_ref:?} in key_manager failed: {e}"),
            )),
        }
    }

    /// Secrets whose names start with `prefix` (those an API key's scopes reach), by name.
    pub async fn list(
        &self,
        caller: &Caller,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<SecretList> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_page_size",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        if matches!(caller, Caller::Service { .. }) {
            allow(caller, Need::See, "")?;
        }
        let rows = store::list_secrets(&self.db, prefix.unwrap_or(""), cursor.unwrap_or(""), limit)
            .await
            .map_err(db_err)?;
        let next_cursor = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.row.name.clone()))
            .flatten();
        let secrets = rows
            .into_iter()
            .filter(|listed| allow(caller, Need::See, &listed.row.name).is_ok())
            .map(
                |store::ListedSecret {
                     row,
                     current_version,
                 }| SecretSummary {
                    current_version: current_version.map(|v| v as u64),
                    description: row.description,
                    tags: serde_json::from_str(&row.tags).unwrap_or_default(),
                    latest_version: row.latest_version as u64,
                    updated_at: ts(row.updated_at),
                    deletion_date: row.deletion_date.map(ts),
                    name: row.name,
                },
            )
            .collect();
        Ok(SecretList {
            secrets,
            next_cursor,
        })
    }

    /// A secret's metadata, versions and labels (everyone who may see its name).
    pub async fn describe(&self, caller: &Caller, name: &str) -> ApiResult<Secret> {
        allow(caller, Need::See, name)?;
        self.describe_name(name).await
    }

    pub async fn update(
        &self,
        caller: &Caller,
        token: &str,
        name: &str,
        req: UpdateSecretRequest,
    ) -> ApiResult<Secret> {
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            if let Some(d) = &req.description {
                check_description(d)?;
            }
            if let Some(t) = &req.tags {
                check_tags(t)?;
            }
            if let Some(m) = req.max_versions {
                check_max_versions(m)?;
            }
            self.live_secret(name).await?;
            let key_ref = req
                .encryption_key
                .as_deref()
                .map(str::trim)
                .filter(|k| !k.is_empty());
            if let Some(key) = key_ref {
                self.usable_key(caller, token, key).await?;
            }
            let tags = req
                .tags
                .as_ref()
                .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "{}".into()));
            let change = MetadataChange {
                description: req.description.as_deref(),
                key_ref,
                max_versions: req.max_versions.map(i64::from),
                tags: tags.as_deref(),
            };
            if !store::update_secret(&self.writing(), name, &change, now_ms())
                .await
                .map_err(db_err)?
            {
                return Err(no_secret(name));
            }
            self.describe_name(name).await
        }
        .await;
        self.audited(caller, "update", name, outcome.into()).await
    }

    /// Schedules the whole secret's deletion `recovery_days` from now (default 30); until then it
    /// can be restored, and nothing reads or writes it.
    pub async fn delete(
        &self,
        caller: &Caller,
        name: &str,
        recovery_days: Option<u32>,
    ) -> ApiResult<Secret> {
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            let days = recovery_days.unwrap_or(MAX_RECOVERY_DAYS);
            if !(MIN_RECOVERY_DAYS..=MAX_RECOVERY_DAYS).contains(&days) {
                return Err(ApiError::bad_request(
                    "invalid_recovery_window",
                    format!(
                        "recovery_days must be between {MIN_RECOVERY_DAYS} and {MAX_RECOVERY_DAYS}"
                    ),
                ));
            }
            let row = self.row(name).await?;
            if row.deletion_date.is_some() {
                return Err(scheduled(name, &row));
            }
            let when = now_ms() + (self.limits.deletion_day.as_millis() as i64) * i64::from(days);
            store::set_deletion_date(&self.writing(), name, Some(when), now_ms())
                .await
                .map_err(db_err)?;
            self.describe_name(name).await
        }
        .await;
        self.audited(caller, "delete", name, outcome.into()).await
    }

    pub async fn restore(&self, caller: &Caller, name: &str) -> ApiResult<Secret> {
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            let row = self.row(name).await?;
            if row.deletion_date.is_none() {
                return Err(ApiError::conflict(
                    "not_scheduled_for_deletion",
                    format!("secret {name:?} is not scheduled for deletion"),
                ));
            }
            store::set_deletion_date(&self.writing(), name, None, now_ms())
                .await
                .map_err(db_err)?;
            self.describe_name(name).await
        }
        .await;
        self.audited(caller, "restore", name, outcome.into()).await
    }

    /// Removes secrets past their deletion date, with every version. Returns how many went.
    pub async fn purge_due(&self) -> ApiResult<usize> {
        let platform = Caller::Service {
            name: "secrets_manager".into(),
        };
        let (actor, request_id) = (platform.actor(), current_request_id());
        let gone = store::purge_due(&self.writing(), now_ms(), &actor, &request_id)
            .await
            .map_err(db_err)?;
        for name in &gone {
            tracing::info!(secret = %name, "secret deleted at the end of its recovery window");
        }
        Ok(gone.len())
    }

    // ---- values

    /// Writes a new version (admin, or an API key with `secrets_manager:write` on it).
    pub async fn put_value(
        &self,
        caller: &Caller,
        name: &str,
        req: PutValueRequest,
    ) -> ApiResult<SecretVersion> {
        let outcome = match allow(caller, Need::Write, name) {
            Err(e) => Outcome::err(None, e),
            Ok(()) => {
                let labels = req.labels.clone().unwrap_or_default();
                match self
                    .write_version(caller, name, &req.value, req.cas, &labels)
                    .await
                {
                    Ok(version) => match self.version_info(name, version).await {
                        Ok(info) => Outcome::ok(Some(version), info),
                        Err(e) => Outcome::err(Some(version), e),
                    },
                    Err(e) => Outcome::err(None, e),
                }
            }
        };
        self.audited(caller, "put_value", name, outcome).await
    }

    async fn version_info(&self, name: &str, version: u64) -> ApiResult<SecretVersion> {
        let row = store::get_version(&self.db, name, version as i64)
            .await
            .map_err(db_err)?
            .ok_or_else(|| no_version(name, version))?;
        let labels = store::labels_of_version(&self.db, name, row.version)
            .await
            .map_err(db_err)?;
        Ok(version_model(&row, labels))
    }

    /// Seals `value` under a fresh data key and writes it as the next version; returns its number.
    pub(super) async fn write_version(
        &self,
        caller: &Caller,
        name: &str,
        value: &SecretValue,
        cas: Option<u64>,
        labels: &[String],
    ) -> ApiResult<u64> {
        encode_value(value, self.limits.max_value_bytes)?;
        if labels.len() > super::names::MAX_LABELS {
            return Err(ApiError::bad_request(
                "invalid_label",
                format!("at most {} labels per write", super::names::MAX_LABELS),
            ));
        }
        for label in labels {
            check_label(label)?;
            if label == PREVIOUS {
                return Err(ApiError::conflict(
                    "label_managed",
                    "AWSPREVIOUS is moved by the service itself",
                ));
            }
        }
        let row = self.row(name).await?;
        if row.deletion_date.is_some() {
            return Err(scheduled(name, &row));
        }
        let sealer = self.sealer(name, &row.key_ref, value).await?;
        let created_by = caller.actor();
        let _turn = self.writes.lock().await;
        let version = self.row(name).await?.latest_version + 1;
        let sealed = sealer.seal(name, version)?;
        let new = sealer.version(version, &sealed, &created_by, labels);
        match store::put_version(&self.writing(), name, cas.map(|c| c as i64), &new, now_ms())
            .await
            .map_err(db_err)?
        {
            PutOutcome::Written(v) => Ok(v as u64),
            PutOutcome::NoSecret => Err(no_secret(name)),
            PutOutcome::ScheduledForDeletion => Err(scheduled(name, &self.row(name).await?)),
            PutOutcome::CasMismatch(actual) => Err(ApiError::conflict(
                "cas_mismatch",
                format!(
                    "check-and-set expected version {} but the latest is {actual}; nothing was written",
                    cas.unwrap_or_default()
                ),
            )),
            // Only another process writing the same database (never the platform's own set-up).
            PutOutcome::Raced => Err(ApiError::conflict(
                "write_raced",
                "another writer took this version number at the same moment; try again",
            )),
        }
    }

    /// A version's value: the one `version` or `label` names, else `AWSCURRENT`'s (admin, or an
    /// API key with `secrets_manager:read` on it; never a viewer).
    pub async fn read_value(
        &self,
        caller: &Caller,
        name: &str,
        version: Option<u64>,
        label: Option<&str>,
    ) -> ApiResult<SecretValueResponse> {
        let outcome = self.read_inner(caller, name, version, label).await;
        self.audited(caller, "read_value", name, outcome).await
    }

    async fn read_inner(
        &self,
        caller: &Caller,
        name: &str,
        version: Option<u64>,
        label: Option<&str>,
    ) -> Outcome<SecretValueResponse> {
        if let Err(e) = allow(caller, Need::ReadValue, name) {
            return Outcome::err(version, e);
        }
        let label = match (version, label) {
            (Some(_), Some(_)) => {
                return Outcome::err(
                    version,
                    ApiError::bad_request("invalid_request", "give version or label, not both"),
                );
            }
            (_, label) => label.unwrap_or(CURRENT),
        };
        if let Err(e) = check_label(label) {
            return Outcome::err(version, e);
        }
        let asked = version.map(|v| v as i64);
        let row = match self.reads.get(name, asked, label) {
            Some(row) => row,
            None => {
                let start = self.reads.start_read();
                match store::read_target(&self.db, name, asked, label)
                    .await
                    .map_err(db_err)
                {
                    Ok(Some(row)) => {
                        self.reads.keep(start, name, asked, label, &row);
                        row
                    }
                    Ok(None) => return Outcome::err(version, no_secret(name)),
                    Err(e) => return Outcome::err(version, e),
                }
            }
        };
        if let Some(when) = row.deletion_date {
            return Outcome::err(version, scheduled_at(name, when));
        }
        let Some(wanted) = row.wanted else {
            let e = if label == CURRENT {
                ApiError::not_found("no_value", format!("secret {name:?} has no value yet"))
            } else {
                ApiError::not_found(
                    "label_not_found",
                    format!("secret {name:?} has no label {label:?}"),
                )
            };
            return Outcome::err(None, e);
        };
        let version = wanted as u64;
        Outcome {
            version: Some(version),
            result: self.open_version(name, version, row).await,
        }
    }

    async fn open_version(
        &self,
        name: &str,
        version: u64,
        row: store::ReadRow,
    ) -> ApiResult<SecretValueResponse> {
        let v = row.version;
        let (Some(kind), Some(key_ref), Some(created_at)) = (v.kind, v.key_ref, v.created_at)
        else {
            return Err(no_version(name, version));
        };
        if v.destroyed_at.is_some() {
            return Err(ApiError::not_found(
                "version_destroyed",
                format!("version {version} of {name:?} was destroyed; its value is gone"),
            ));
        }
        if v.deleted_at.is_some() {
            return Err(ApiError::not_found(
                "version_deleted",
                format!(
                    "version {version} of {name:?} is deleted; undelete it (POST …/versions/{version}/undelete) to read it"
                ),
            ));
        }
        let (Some(sealed), Some(wrapped)) = (&v.sealed, &v.wrapped_key) else {
            return Err(ApiError::internal("a live version has no sealed value"));
        };
        let data_key = self
            .envelope
            .open_data_key(&key_ref, wrapped, &context(name))
            .await?;
        let plaintext = crypto::open(&data_key, name, version, &kind, sealed).ok_or_else(|| {
            ApiError::internal(format!(
                "version {version} of {name:?} does not authenticate under its data key"
            ))
        })?;
        Ok(SecretValueResponse {
            name: name.to_owned(),
            version,
            labels: row
                .labels
                .map(|l| l.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
            created_at: ts(created_at),
            value: decode_value(&kind, &plaintext)?,
        })
    }

    // ---- versions and labels

    /// Soft-deletes a version (`deleted`), or undeletes it.
    pub async fn set_version_deleted(
        &self,
        caller: &Caller,
        name: &str,
        version: u64,
        deleted: bool,
    ) -> ApiResult<SecretVersion> {
        let action = if deleted {
            "delete_version"
        } else {
            "undelete_version"
        };
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            self.live_secret(name).await?;
            if deleted {
                self.not_current(name, version, "deleted").await?;
            }
            let at = deleted.then(now_ms);
            if !store::set_version_deleted(&self.writing(), name, version as i64, at)
                .await
                .map_err(db_err)?
            {
                return Err(self.why_no_version(name, version).await);
            }
            self.version_info(name, version).await
        }
        .await;
        self.audited(
            caller,
            action,
            name,
            Outcome {
                version: Some(version),
                result: outcome,
            },
        )
        .await
    }

    /// Destroys a version's value for good (its record stays, marked destroyed).
    pub async fn destroy_version(
        &self,
        caller: &Caller,
        name: &str,
        version: u64,
    ) -> ApiResult<SecretVersion> {
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            self.live_secret(name).await?;
            self.not_current(name, version, "destroyed").await?;
            if !store::destroy_version(&self.writing(), name, version as i64, now_ms())
                .await
                .map_err(db_err)?
            {
                return Err(no_version(name, version));
            }
            self.version_info(name, version).await
        }
        .await;
        self.audited(
            caller,
            "destroy_version",
            name,
            Outcome {
                version: Some(version),
                result: outcome,
            },
        )
        .await
    }

    /// Moves a staging label onto `version` (`AWSCURRENT` takes `AWSPREVIOUS` to the version it left).
    pub async fn move_label(
        &self,
        caller: &Caller,
        name: &str,
        label: &str,
        version: u64,
    ) -> ApiResult<Secret> {
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            check_label(label)?;
            if label == PREVIOUS {
                return Err(ApiError::conflict(
                    "label_managed",
                    "AWSPREVIOUS is moved by the service itself (when AWSCURRENT moves)",
                ));
            }
            self.live_secret(name).await?;
            if !store::move_label(&self.writing(), name, label, version as i64, now_ms())
                .await
                .map_err(db_err)?
            {
                return Err(no_version(name, version));
            }
            self.describe_name(name).await
        }
        .await;
        self.audited(
            caller,
            "move_label",
            name,
            Outcome {
                version: Some(version),
                result: outcome,
            },
        )
        .await
    }

    pub async fn remove_label(
        &self,
        caller: &Caller,
        name: &str,
        label: &str,
    ) -> ApiResult<Secret> {
        let outcome = async {
            allow(caller, Need::Manage, name)?;
            if label == CURRENT {
                return Err(ApiError::conflict(
                    "label_managed",
                    "AWSCURRENT cannot be removed, only moved to another version",
                ));
            }
            self.live_secret(name).await?;
            if !store::remove_label(&self.writing(), name, label)
                .await
                .map_err(db_err)?
            {
                return Err(ApiError::not_found(
                    "label_not_found",
                    format!("secret {name:?} has no label {label:?}"),
                ));
            }
            self.describe_name(name).await
        }
        .await;
        self.audited(caller, "remove_label", name, outcome.into())
            .await
    }

    async fn live_secret(&self, name: &str) -> ApiResult<SecretRow> {
        let row = self.row(name).await?;
        if row.deletion_date.is_some() {
            return Err(scheduled(name, &row));
        }
        Ok(row)
    }

    /// The version `AWSCURRENT` names stays readable: it is not deleted or destroyed while it is current.
    async fn not_current(&self, name: &str, version: u64, what: &str) -> ApiResult<()> {
        if store::version_of_label(&self.db, name, CURRENT)
            .await
            .map_err(db_err)?
            == Some(version as i64)
        {
            return Err(ApiError::conflict(
                "version_is_current",
                format!(
                    "version {version} of {name:?} is AWSCURRENT and cannot be {what}; write a new value or move AWSCURRENT first"
                ),
            ));
        }
        Ok(())
    }

    async fn why_no_version(&self, name: &str, version: u64) -> ApiError {
        match store::get_version(&self.db, name, version as i64).await {
            Ok(Some(v)) if v.destroyed_at.is_some() => ApiError::conflict(
                "version_destroyed",
                format!(
                    "version {version} of {name:?} was destroyed; there is nothing to undelete"
                ),
            ),
            _ => no_version(name, version),
        }
    }

    // ---- rotation and audit

    pub(super) async fn set_rotation_row(
        &self,
        name: &str,
        schedule: Option<&super::rotation::Schedule>,
    ) -> ApiResult<()> {
        let json = schedule.map(|s| serde_json::to_string(s).expect("a schedule serializes"));
        if !store::set_rotation(&self.writing(), name, json.as_deref())
            .await
            .map_err(db_err)?
        {
            return Err(no_secret(name));
        }
        Ok(())
    }

    /// One secret's rotation schedule, if it has one.
    pub(super) async fn rotation_of(
        &self,
        name: &str,
    ) -> ApiResult<Option<super::rotation::Schedule>> {
        Ok(self
            .row(name)
            .await?
            .rotation
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok()))
    }

    pub(super) async fn rotating(&self) -> ApiResult<Vec<(String, super::rotation::Schedule)>> {
        let rows = store::rotating(&self.db).await.map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.name, serde_json::from_str(r.rotation.as_deref()?).ok()?)))
            .collect())
    }

    pub(super) async fn current_version(&self, name: &str) -> ApiResult<u64> {
        Ok(store::version_of_label(&self.db, name, CURRENT)
            .await
            .map_err(db_err)?
            .unwrap_or(0) as u64)
    }

    /// Checks what `caller` may do before a rotation change, and records it.
    pub(super) async fn audited_change<T>(
        &self,
        caller: &Caller,
        action: &'static str,
        name: &str,
        work: impl std::future::Future<Output = ApiResult<T>>,
    ) -> ApiResult<T> {
        let outcome = match allow(caller, Need::Manage, name) {
            Err(e) => Err(e),
            Ok(()) => match self.live_secret(name).await {
                Err(e) => Err(e),
                Ok(_) => work.await,
            },
        };
        self.audited(caller, action, name, outcome.into()).await
    }

    pub(super) async fn record(
        &self,
        caller: &Caller,
        action: &'static str,
        name: &str,
        version: Option<u64>,
        result: ApiResult<()>,
    ) -> ApiResult<()> {
        self.audited(caller, action, name, Outcome { version, result })
            .await
    }

    /// The audit log, newest first (admins).
    pub async fn audit(
        &self,
        caller: &Caller,
        secret: Option<&str>,
        before_id: Option<i64>,
        limit: Option<u32>,
    ) -> ApiResult<AuditPage> {
        if !caller.is_admin() {
            return Err(ApiError::forbidden(
                "forbidden",
                format!(
                    "{} may not read the audit log; this needs an admin",
                    caller.actor()
                ),
            ));
        }
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_page_size",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        let rows = store::list_audit(&self.db, secret, before_id, limit)
            .await
            .map_err(db_err)?;
        let next_before_id = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let records = rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                at: ts(r.at),
                actor: r.actor,
                action: r.action,
                secret: r.secret,
                version: r.version.map(|v| v as u64),
                request_id: r.request_id,
                outcome: r.outcome,
            })
            .collect();
        Ok(AuditPage {
            records,
            next_before_id,
        })
    }

    pub async fn count(&self) -> i64 {
        store::count_secrets(&self.db).await.unwrap_or(0)
    }
}

fn no_version(name: &str, version: u64) -> ApiError {
    ApiError::not_found(
        "version_not_found",
        format!("secret {name:?} has no version {version} (it may have been pruned)"),
    )
}

fn version_model(row: &VersionRow, labels: Vec<String>) -> SecretVersion {
    SecretVersion {
        version: row.version as u64,
        created_at: ts(row.created_at),
        created_by: row.created_by.clone(),
        labels,
        deleted_at: row.deleted_at.map(ts),
        destroyed_at: row.destroyed_at.map(ts),
    }
}
