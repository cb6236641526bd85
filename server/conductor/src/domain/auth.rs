//! Logins and tokens.
//!
//! Users are seeded from configuration and managed by admins through the API (`users.rs`; no
//! sign-up). Tokens are EdDSA JWTs signed with a key generated on first start into the data
//! directory; its public half is published as a JWKS so other components verify tokens without a
//! shared secret.
//!
//! Revocation: every session and service token is recorded (`issued_tokens`) when signed. Revoking
//! one (logout, a user disabled, deleted or given a new password, an admin's revoke) appends its id
//! to the revocation feed in the same transaction, adds it to this conductor's verifier at once, and
//! wakes the followers of `GET /api/auth/revocations` (every service and worker keeps one long poll
//! open, see `aerekos_trust::follow_revocations`), so the token is refused everywhere within about
//! a round trip while the conductor is reachable.

use std::{path::Path, time::Duration};

use aerekos_common::{
    ApiError, ApiResult,
    auth::{Claims, ISSUER, SERVICE_ROLE, TokenError, TokenVerifier},
};
use base64::Engine as _;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use sha2::Digest as _;
use uuid::Uuid;

use aerekos_common::secrets::write_secret_file;

use super::{from_ms, passwords, random_secret};
use crate::{
    StartError,
    config::ConductorConfig,
    model::{
        ApiKey, CreateApiKeyRequest, InstanceSecretsToken, IssuedToken, IssuedTokenKind, Jwk, Jwks,
        LogShippingToken, LoginResponse, Revocation, RevocationFeed, Role, ServiceToken, User,
    },
    store::{Db, issued_tokens, users, users::UserRow},
};

pub const SIGNING_KEY_FILE: &str = "jwt-signing-key.pem";
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
const SERVICE_TOKEN_DEFAULT_SECS: u64 = 30 * 24 * 3600;
pub const SERVICE_TOKEN_MAX_SECS: u64 = 365 * 24 * 3600;
const API_KEY_DEFAULT_SECS: u64 = 90 * 24 * 3600;
/// How many scopes one API key may carry.
pub const MAX_API_KEY_SCOPES: usize = 50;
pub const API_KEY_MAX_SECS: u64 = 2 * 365 * 24 * 3600;
/// The longest username and password a login takes (characters, as a spec's maxLength counts).
pub const MAX_USERNAME_CHARS: usize = 64;
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// The shortest a service token or an API key may live.
pub const MIN_TOKEN_SECS: u64 = 60;
/// The life of the token a worker gets for an instance it starts (a restart gets a new one).
pub const INSTANCE_SERVICE_TOKEN_SECS: u64 = SERVICE_TOKEN_MAX_SECS;
/// How long the token an instance's start reads its secrets with lives (the worker revokes it
/// as soon as they are read).
pub const INSTANCE_SECRETS_TOKEN_SECS: u64 = 120;
/// How long a worker's log-shipping token lives; the worker asks for a new one halfway.
pub const LOG_SHIPPING_TOKEN_SECS: u64 = 24 * 3600;

/// The logs_manager sources a worker ships as (`worker/<id>/<spool id>`): what its token's scope
/// names.
pub fn log_source_prefix(worker_id: Uuid) -> String {
    format!("worker/{worker_id}/")
}

/// The caller of a request, as its token says.
#[derive(Debug, Clone)]
pub struct AuthedUser {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    /// The `jti` of the token presented.
    pub token_id: String,
}

impl AuthedUser {
    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> ApiResult<()> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::forbidden(
                "forbidden",
                format!(
                    "user {:?} has the viewer role, which may only read; this needs an admin",
                    self.username
                ),
            )),
        }
    }
}

pub struct AuthService {
    db: Db,
    encoding_key: EncodingKey,
    verifier: TokenVerifier,
    jwk: Jwk,
    expires_in: Duration,
    /// Verified against when the username is unknown, so a login takes as long either way and does
    /// not reveal which usernames exist.
    dummy_hash: String,
    login_guard: super::login_guard::LoginGuard,
    /// The number of the newest revocation; followers of the feed wait for it to change.
    feed: tokio::sync::watch::Sender<i64>,
}

/// The most revocations one answer of the feed carries.
const FEED_PAGE: i64 = 1000;

/// A user listed in `AEREKOS_USERS_FILE`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedUser {
    username: String,
    role: String,
    /// A plain password (hashed at start) …
    password: Option<String>,
    /// … or an argon2 PHC hash (`aerekos hash-password` prints one).
    password_hash: Option<String>,
}

impl AuthService {
    pub async fn start(db: Db, config: &ConductorConfig) -> Result<Self, StartError> {
        let signing_key = load_or_create_signing_key(&config.data_dir.join(SIGNING_KEY_FILE))?;
        let public = signing_key.verifying_key().to_bytes();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        let kid = hex(&sha2::Sha256::digest(public)[..8]);
        let der = signing_key
            .to_pkcs8_der()
            .map_err(|e| StartError::Key(e.to_string()))?;
        let encoding_key = EncodingKey::from_ed_der(der.as_bytes());
        let verifier = TokenVerifier::from_ed25519_jwk(&kid, &x)
            .map_err(|e| StartError::Key(e.to_string()))?;
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            kid,
            alg: "EdDSA".into(),
            use_: "sig".into(),
        };
        let dummy_hash = passwords::hash(random_secret("", 16)).await;
        // Tokens revoked before a restart stay refused after it.
        let now = chrono::Utc::now().timestamp();
        let mut after = 0;
        loop {
            let page = issued_tokens::revocations_after(&db, after, now, FEED_PAGE).await?;
            for (_, jti, exp) in &page {
                verifier.revocations().revoke(jti, *exp);
            }
            match page.last() {
                Some((seq, ..)) if page.len() as i64 == FEED_PAGE => after = *seq,
                _ => break,
            }
        }
        let (feed, _) = tokio::sync::watch::channel(issued_tokens::last_revocation(&db).await?);
        let service = Self {
            db,
            encoding_key,
            verifier,
            jwk,
            expires_in: config.jwt_expires_in,
            dummy_hash,
            login_guard: Default::default(),
            feed,
        };
        service.seed_users(config).await?;
        Ok(service)
    }

    async fn seed_users(&self, config: &ConductorConfig) -> Result<(), StartError> {
        let admin = users::find_by_username(&self.db, &config.admin_username).await?;
        match (admin, &config.admin_password) {
            (None, Some(password)) => {
                self.upsert_user(
                    &config.admin_username,
                    Role::Admin,
                    passwords::hash(password.clone()).await,
                )
                .await?;
                tracing::info!(username = %config.admin_username, "created the admin user from AEREKOS_ADMIN_PASSWORD");
            }
            (None, None) => {
                let password = random_secret("", 18);
                let path = config.data_dir.join(ADMIN_PASSWORD_FILE);
                write_secret_file(&path, format!("{password}\n").as_bytes())?;
                self.upsert_user(
                    &config.admin_username,
                    Role::Admin,
                    passwords::hash(password).await,
                )
                .await?;
                tracing::info!(
                    username = %config.admin_username,
                    password_file = %path.display(),
                    "created the admin user with a generated password; it is in the password file (mode 0600)"
                );
            }
            (Some(existing), Some(password)) => {
                if !passwords::verify(existing.password_hash.clone(), password.clone()).await
                    || existing.role != "admin"
                {
                    let hash = passwords::hash(password.clone()).await;
                    let revoked =
                        users::update_credentials(&self.db, &existing.id, &hash, "admin").await?;
                    self.revoked(&revoked).await;
                    tracing::info!(username = %config.admin_username, "admin password set from AEREKOS_ADMIN_PASSWORD; its sessions are revoked");
                }
            }
            (Some(_), None) => {}
        }
        if let Some(file) = &config.users_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                StartError::Seed(format!(
                    "cannot read AEREKOS_USERS_FILE {}: {e}",
                    file.display()
                ))
            })?;
            let seeds: Vec<SeedUser> = serde_json::from_str(&text).map_err(|e| {
                StartError::Seed(format!(
                    "AEREKOS_USERS_FILE {} is not a JSON list of {{username, role, password | password_hash}}: {e}",
                    file.display()
                ))
            })?;
            for seed in seeds {
                self.apply_seed(seed).await?;
            }
        }
        Ok(())
    }

    async fn apply_seed(&self, seed: SeedUser) -> Result<(), StartError> {
        let bad = |msg: String| StartError::Seed(format!("seeded user {:?}: {msg}", seed.username));
        validate_username(&seed.username).map_err(bad)?;
        let role = Role::parse(&seed.role)
            .ok_or_else(|| bad(format!("role {:?} is not admin or viewer", seed.role)))?;
        let existing = users::find_by_username(&self.db, &seed.username).await?;
        let hash = match (&seed.password, &seed.password_hash) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad("give exactly one of password and password_hash".into()));
            }
            (None, Some(hash)) if passwords::is_phc_hash(hash) => hash.clone(),
            (None, Some(_)) => return Err(bad("password_hash is not an argon2 PHC string".into())),
            (Some(password), None) => {
                // Re-hash only when the password changed, so restarts stay fast.
                match &existing {
                    Some(u)
                        if passwords::verify(u.password_hash.clone(), password.clone()).await =>
                    {
                        u.password_hash.clone()
                    }
                    _ => passwords::hash(password.clone()).await,
                }
            }
        };
        self.upsert_user(&seed.username, role, hash).await?;
        Ok(())
    }

    async fn upsert_user(
        &self,
        username: &str,
        role: Role,
        password_hash: String,
    ) -> Result<(), sqlx::Error> {
        match users::find_by_username(&self.db, username).await? {
            Some(u) if u.password_hash == password_hash && u.role == role.as_str() => Ok(()),
            // A seed that changes a user's password or role ends its sessions, as the API does.
            Some(u) => {
                let revoked =
                    users::update_credentials(&self.db, &u.id, &password_hash, role.as_str())
                        .await?;
                self.revoked(&revoked).await;
                Ok(())
            }
            None => {
                users::insert(
                    &self.db,
                    &Uuid::new_v4().to_string(),
                    username,
                    &password_hash,
                    role.as_str(),
                )
                .await
            }
        }
    }

    /// Logs `username` in from `client`. Failed attempts back off (see [`super::login_guard`]).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: std::net::IpAddr,
    ) -> ApiResult<LoginResponse> {
        let (username_chars, password_chars) = (username.chars().count(), password.chars().count());
        if !(1..=MAX_USERNAME_CHARS).contains(&username_chars)
            || !(1..=MAX_PASSWORD_CHARS).contains(&password_chars)
        {
            return Err(ApiError::bad_request(
                "invalid_login",
                format!(
                    "username (1–{MAX_USERNAME_CHARS} characters) and password (1–{MAX_PASSWORD_CHARS} characters) are both required"
                ),
            ));
        }
        if let Some(wait) = self.login_guard.wait(username, client) {
            let secs = wait.as_secs_f64().ceil() as u64;
            return Err(ApiError::too_many_requests(
                "login_throttled",
                format!(
                    "too many failed logins for this username from this address; try again in {secs} s"
                ),
                secs,
            ));
        }
        let row = users::find_by_username(&self.db, username)
            .await
            .map_err(ApiError::internal)?;
        let hash = row
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let matches = passwords::verify(hash, password.to_owned()).await;
        let row = match row {
            Some(row) if matches => row,
            _ => {
                self.login_guard.failed(username, client);
                return Err(ApiError::unauthorized(
                    "invalid_credentials",
                    "wrong username or password",
                ));
            }
        };
        self.login_guard.succeeded(username, client);
        if row.disabled {
            return Err(ApiError::forbidden(
                "user_disabled",
                format!("user {username:?} is disabled; an admin can enable it"),
            ));
        }
        let user = user_from_row(&row)?;
        tracing::info!(username = %user.username, "login");
        self.session(user).await
    }

    /// A new recorded session token for `user`.
    pub(super) async fn session(&self, user: User) -> ApiResult<LoginResponse> {
        let (token, claims) = self.sign_scoped(
            user.id.to_string(),
            &user.username,
            user.role.as_str(),
            self.expires_in,
            None,
        )?;
        let user_id = user.id.to_string();
        issued_tokens::insert(
            &self.db,
            &claims.jti,
            "session",
            Some(&user_id),
            &user.username,
            "",
            claims.exp,
        )
        .await
        .map_err(ApiError::internal)?;
        Ok(LoginResponse {
            token,
            token_type: "Bearer".into(),
            expires_at: from_secs(claims.exp),
            expires_in_secs: self.expires_in.as_secs(),
            user,
        })
    }

    /// Revokes the token the caller presented (logout).
    pub async fn logout(&self, caller: &AuthedUser) -> ApiResult<()> {
        self.revoke_token(&caller.token_id).await.map(|_| ())
    }

    /// Revokes token `jti`; false if it was unknown, expired or already revoked.
    /// The name token `jti` was issued under (None: no such token).
    pub async fn token_named(&self, jti: &str) -> ApiResult<Option<String>> {
        issued_tokens::name_of(&self.db, jti)
            .await
            .map_err(ApiError::internal)
    }

    pub async fn revoke_token(&self, jti: &str) -> ApiResult<bool> {
        match issued_tokens::revoke(&self.db, jti)
            .await
            .map_err(ApiError::internal)?
        {
            Some(exp) => {
                self.revoked(&[(jti.to_owned(), exp)]).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Makes revocations already committed to the feed take effect here and tells the followers.
    pub(super) async fn revoked(&self, tokens: &[(String, i64)]) {
        for (jti, exp) in tokens {
            self.verifier.revocations().revoke(jti, *exp);
        }
        if !tokens.is_empty() {
            tracing::info!(count = tokens.len(), "tokens revoked");
            match issued_tokens::last_revocation(&self.db).await {
                Ok(last) => {
                    self.feed.send_if_modified(|seen| {
                        let newer = last > *seen;
                        *seen = (*seen).max(last);
                        newer
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the revocation feed's position failed; followers learn at their next poll")
                }
            }
        }
    }

    /// The valid (unexpired, unrevoked) sessions and service tokens, optionally of one user.
    pub async fn list_tokens(&self, user_id: Option<Uuid>) -> ApiResult<Vec<IssuedToken>> {
        let user = user_id.map(|u| u.to_string());
        let rows =
            issued_tokens::list_valid(&self.db, user.as_deref(), chrono::Utc::now().timestamp())
                .await
                .map_err(ApiError::internal)?;
        Ok(rows
            .into_iter()
            .map(|r| IssuedToken {
                id: r.jti,
                kind: match r.kind.as_str() {
                    "service" => IssuedTokenKind::Service,
                    "api_key" => IssuedTokenKind::ApiKey,
                    _ => IssuedTokenKind::Session,
                },
                scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
                user_id: r.user_id.and_then(|u| Uuid::parse_str(&u).ok()),
                name: r.name,
                created_at: from_ms(r.created_at),
                expires_at: from_secs(r.expires_at),
            })
            .collect())
    }

    /// The revocations after `after`, waiting up to `wait` for one when there is none yet. A
    /// follower ahead of the feed (the conductor's database was replaced) gets it from the start.
    pub async fn revocation_feed(&self, after: i64, wait: Duration) -> ApiResult<RevocationFeed> {
        let mut changes = self.feed.subscribe();
        let mut last = *changes.borrow_and_update();
        let from = if after > last { 0 } else { after };
        if from == last && !wait.is_zero() {
            let _ = tokio::time::timeout(wait, changes.changed()).await;
            last = *changes.borrow_and_update();
        }
        let rows = issued_tokens::revocations_after(
            &self.db,
            from,
            chrono::Utc::now().timestamp(),
            FEED_PAGE,
        )
        .await
        .map_err(ApiError::internal)?;
        let next_after = match rows.last() {
            Some((seq, ..)) if rows.len() as i64 == FEED_PAGE => *seq,
            Some((seq, ..)) => last.max(*seq),
            None => last,
        };
        Ok(RevocationFeed {
            revocations: rows
                .into_iter()
                .map(|(_, token_id, expires_at)| Revocation {
                    token_id,
                    expires_at,
                })
                .collect(),
            next_after,
            restarted: from != after,
        })
    }

    /// Forgets tokens and revocations expired for a day (they are refused by their expiry alone).
    pub async fn prune_expired(&self) -> Result<(), sqlx::Error> {
        issued_tokens::prune_expired(&self.db, chrono::Utc::now().timestamp(), 24 * 3600).await
    }

    /// A token for the platform service `service` (admin only, checked by the caller).
    pub async fn service_token(
        &self,
        service: &str,
        expires_in: Option<u64>,
    ) -> ApiResult<ServiceToken> {
        let name_ok = (1..=64).contains(&service.len())
            && service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(ApiError::bad_request(
                "invalid_service",
                "service must be 1–64 characters of a–z, 0–9 and '_'",
            ));
        }
        let secs = expires_in.unwrap_or(SERVICE_TOKEN_DEFAULT_SECS);
        if !(MIN_TOKEN_SECS..=SERVICE_TOKEN_MAX_SECS).contains(&secs) {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                format!(
                    "expires_in_secs must be between {MIN_TOKEN_SECS} and {SERVICE_TOKEN_MAX_SECS}"
                ),
            ));
        }
        let (token, claims) = self.sign_scoped(
            format!("service:{service}"),
            service,
            SERVICE_ROLE,
            Duration::from_secs(secs),
            None,
        )?;
        issued_tokens::insert(
            &self.db,
            &claims.jti,
            "service",
            None,
            service,
            "",
            claims.exp,
        )
        .await
        .map_err(ApiError::internal)?;
        tracing::info!(service, "service token issued");
        Ok(ServiceToken {
            token,
            service: service.to_owned(),
            expires_at: from_secs(claims.exp),
            token_id: claims.jti,
        })
    }

    /// The token a worker ships its logs to logs_manager with: an API key named after the worker,
    /// scoped to writing its own sources only ([`log_source_prefix`]), living
    /// [`LOG_SHIPPING_TOKEN_SECS`]; recorded, so it lists and is revoked like any token.
    pub async fn log_shipping_token(&self, worker_id: Uuid) -> ApiResult<LogShippingToken> {
        let source_prefix = log_source_prefix(worker_id);
        let (token, claims) = self
            .platform_api_key(
                format!("worker:{worker_id}"),
                &format!("worker-{worker_id}-logs"),
                &format!("logs_manager:write:{source_prefix}*"),
                LOG_SHIPPING_TOKEN_SECS,
            )
            .await?;
        Ok(LogShippingToken {
            token,
            token_id: claims.jti,
            expires_at: from_secs(claims.exp),
            source_prefix,
        })
    }

    /// An API key the platform gives one of its own parts (a worker, an instance's start):
    /// signed with `scopes` (space-separated) for `secs`, and recorded like an admin's.
    async fn platform_api_key(
        &self,
        sub: String,
        name: &str,
        scopes: &str,
        secs: u64,
    ) -> ApiResult<(String, Claims)> {
        let (token, claims) = self.sign_scoped(
            sub,
            name,
            aerekos_common::auth::API_KEY_ROLE,
            Duration::from_secs(secs),
            Some(scopes.to_owned()),
        )?;
        issued_tokens::insert(
            &self.db,
            &claims.jti,
            "api_key",
            None,
            name,
            scopes,
            claims.exp,
        )
        .await
        .map_err(ApiError::internal)?;
        Ok((token, claims))
    }

    /// The token an instance's start reads its secrets with (see [`InstanceSecretsToken`]): an
    /// API key named after the instance, scoped to reading exactly `secrets`, living
    /// [`INSTANCE_SECRETS_TOKEN_SECS`]; recorded, so it lists and is revoked like any token.
    pub async fn instance_secrets_token(
        &self,
        instance_id: Uuid,
        secrets: &[String],
    ) -> ApiResult<InstanceSecretsToken> {
        let scopes: Vec<String> = secrets
            .iter()
            .map(|name| format!("secrets_manager:read:{name}"))
            .collect();
        for scope in &scopes {
            aerekos_common::auth::validate_scope(scope)
                .map_err(|m| ApiError::bad_request("invalid_scope", m))?;
        }
        let (token, claims) = self
            .platform_api_key(
                format!("instance:{instance_id}"),
                &format!("instance-{instance_id}"),
                &scopes.join(" "),
                INSTANCE_SECRETS_TOKEN_SECS,
            )
            .await?;
        Ok(InstanceSecretsToken {
            token,
            token_id: claims.jti,
            expires_at: from_secs(claims.exp),
        })
    }

    /// An API key for an app (admin only, checked by the caller): a token granting only `scopes`,
    /// shown in this answer and never stored (only its id, to list and revoke it).
    pub async fn create_api_key(
        &self,
        caller: &AuthedUser,
        req: &CreateApiKeyRequest,
    ) -> ApiResult<ApiKey> {
        let name_ok = (1..=64).contains(&req.name.len())
            && req
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(ApiError::bad_request(
                "invalid_name",
                "name must be 1–64 characters of a–z, A–Z, 0–9, '-', '_' or '.'",
            ));
        }
        if req.scopes.is_empty() || req.scopes.len() > MAX_API_KEY_SCOPES {
            return Err(ApiError::bad_request(
                "invalid_scopes",
                format!("give 1–{MAX_API_KEY_SCOPES} scopes, e.g. key_manager:encrypt:payments"),
            ));
        }
        for scope in &req.scopes {
            aerekos_common::auth::validate_scope(scope)
                .map_err(|m| ApiError::bad_request("invalid_scope", m))?;
        }
        let secs = req.expires_in_secs.unwrap_or(API_KEY_DEFAULT_SECS);
        if !(MIN_TOKEN_SECS..=API_KEY_MAX_SECS).contains(&secs) {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                format!("expires_in_secs must be between {MIN_TOKEN_SECS} and {API_KEY_MAX_SECS}"),
            ));
        }
        let scopes = req.scopes.join(" ");
        let id = Uuid::new_v4();
        let (key, claims) = self.sign_with_id(
            format!("api_key:{id}"),
            &req.name,
            aerekos_common::auth::API_KEY_ROLE,
            Duration::from_secs(secs),
            Some(scopes.clone()),
            id.to_string(),
        )?;
        let creator = caller.id.to_string();
        issued_tokens::insert(
            &self.db,
            &claims.jti,
            "api_key",
            Some(&creator),
            &req.name,
            &scopes,
            claims.exp,
        )
        .await
        .map_err(ApiError::internal)?;
        tracing::info!(name = %req.name, scopes = %scopes, by = %caller.username, "API key created");
        Ok(ApiKey {
            id: claims.jti,
            name: req.name.clone(),
            key,
            scopes: req.scopes.clone(),
            expires_at: from_secs(claims.exp),
        })
    }

    /// A one-time grant for `target`'s fetch of `volume` from worker `source` during move `move_id`
    /// (see [`aerekos_common::auth::VOLUME_TRANSFER_ROLE`]).
    pub fn volume_transfer_grant(
        &self,
        move_id: Uuid,
        volume: &str,
        source: Uuid,
        lifetime: Duration,
    ) -> ApiResult<String> {
        let scope = aerekos_common::auth::volume_export_scope(&source.to_string(), volume);
        self.volume_grant(&format!("move:{move_id}"), volume, scope, lifetime)
    }

    /// A grant for a worker-to-worker volume operation (`sub` names the move, backup or restore;
    /// `scope` says what and where), accepted only by the worker API that `scope` names.
    pub fn volume_grant(
        &self,
        sub: &str,
        volume: &str,
        scope: String,
        lifetime: Duration,
    ) -> ApiResult<String> {
        let role = aerekos_common::auth::VOLUME_TRANSFER_ROLE;
        self.sign_scoped(sub.to_owned(), volume, role, lifetime, Some(scope))
            .map(|(token, _)| token)
    }

    fn sign_scoped(
        &self,
        sub: String,
        name: &str,
        role: &str,
        lifetime: Duration,
        scope: Option<String>,
    ) -> ApiResult<(String, Claims)> {
        self.sign_with_id(sub, name, role, lifetime, scope, Uuid::new_v4().to_string())
    }

    fn sign_with_id(
        &self,
        sub: String,
        name: &str,
        role: &str,
        lifetime: Duration,
        scope: Option<String>,
        jti: String,
    ) -> ApiResult<(String, Claims)> {
        let now = chrono::Utc::now();
        let exp = now + chrono::Duration::from_std(lifetime).map_err(ApiError::internal)?;
        let claims = Claims {
            sub,
            name: name.to_owned(),
            role: role.to_owned(),
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti,
            scope,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.jwk.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .map_err(ApiError::internal)?;
        Ok((token, claims))
    }

    /// The claims of a valid user or service token, or 401 saying why not (the gateway's check).
    pub fn verify(&self, token: &str) -> ApiResult<aerekos_common::auth::Claims> {
        let claims = self
            .verifier
            .verify(token)
            .map_err(|e: TokenError| ApiError::unauthorized(e.code(), e.to_string()))?;
        if claims.role == aerekos_common::auth::VOLUME_TRANSFER_ROLE {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "a volume transfer grant is accepted only by the worker holding the volume",
            ));
        }
        Ok(claims)
    }

    /// The caller behind a bearer token, or 401 saying why not.
    pub fn authenticate(&self, token: &str) -> ApiResult<AuthedUser> {
        let claims = self.verify(token)?;
        if claims.role == SERVICE_ROLE {
            return Err(ApiError::forbidden(
                "service_token_not_allowed",
                "service tokens are for calling services; the conductor's API needs a user token",
            ));
        }
        if claims.role == aerekos_common::auth::API_KEY_ROLE {
            return Err(ApiError::forbidden(
                "api_key_not_allowed",
                "API keys are for the services' APIs (through the gateway, /api/<service>/…); the conductor's API needs a user token",
            ));
        }
        let id = Uuid::parse_str(&claims.sub).map_err(|_| {
            ApiError::unauthorized("invalid_token", "token subject is not a user id")
        })?;
        let role = Role::parse(&claims.role).ok_or_else(|| {
            ApiError::unauthorized("invalid_token", "token carries an unknown role")
        })?;
        Ok(AuthedUser {
            id,
            username: claims.name,
            role,
            token_id: claims.jti,
        })
    }

    pub async fn me(&self, caller: &AuthedUser) -> ApiResult<User> {
        let row = users::find_by_id(&self.db, &caller.id.to_string())
            .await
            .map_err(ApiError::internal)?;
        let row = row.ok_or_else(|| {
            ApiError::unauthorized("user_removed", "the user of this token no longer exists")
        })?;
        user_from_row(&row)
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.jwk.clone()],
        }
    }
}

pub fn validate_username(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("usernames are 1–64 characters of a–z, 0–9, '.', '_' or '-'".into())
    }
}

pub(super) fn user_from_row(row: &UserRow) -> ApiResult<User> {
    Ok(User {
        id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
        username: row.username.clone(),
        role: Role::parse(&row.role).ok_or_else(|| {
            ApiError::internal(format!("user {} has role {:?}", row.id, row.role))
        })?,
        disabled: row.disabled,
        created_at: from_ms(row.created_at),
        updated_at: from_ms(row.updated_at),
    })
}

fn from_secs(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, StartError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            StartError::Key(format!(
                "{} is not an Ed25519 PKCS#8 key: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| StartError::Key(e.to_string()))?;
            write_secret_file(path, pem.as_bytes())?;
            tracing::info!(path = %path.display(), "generated the token-signing key");
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
