//! Verifying the conductor's user and service tokens.
//!
//! The conductor signs JWTs with an Ed25519 key that never leaves it and publishes the public half
//! (`GET /api/auth/jwks`). Every other server verifies tokens with that public key alone, so no
//! secret is shared between components.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde::{Deserialize, Serialize};

/// The `iss` of every token the conductor signs.
pub const ISSUER: &str = "aerekos-conductor";

/// The claims of a conductor-signed token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The username, for logs and audit records.
    pub name: String,
    /// `admin` or `viewer` for users.
    pub role: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// A unique token id.
    pub jti: String,
    /// What a grant allows, for tokens that are neither a user's nor a service's (e.g. a volume
    /// transfer grant: `volume_export:<worker id>:<volume>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token has expired; log in again")]
    Expired,
    #[error(
        "the token has been revoked (logged out, its user disabled, removed or given a new password, or revoked by an admin); log in again"
    )]
    Revoked,
    #[error("the token was signed by a key this server does not trust (key id {0:?})")]
    UnknownKey(Option<String>),
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

impl TokenError {
    /// The `ErrorBody` code of the 401 a server answers with.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            TokenError::Revoked => "token_revoked",
            _ => "invalid_token",
        }
    }
}

/// Checks tokens against one Ed25519 public key.
///
/// Verified tokens are remembered until they expire (the map is cleared when it holds
/// [`VERIFIED_CACHE_SIZE`] tokens), so a client's repeated calls cost a map lookup instead of an
/// Ed25519 verification each. Clones share the memory.
#[derive(Clone)]
pub struct TokenVerifier {
    key_id: String,
    key: DecodingKey,
    validation: Validation,
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Claims>>>,
    revoked: Revocations,
}

/// The ids (`jti`) of tokens revoked before they expire, with each one's expiry (Unix seconds),
/// after which the token is refused anyway and the entry can go. In the conductor they are added
/// as tokens are revoked; every other server learns them from the conductor's revocation feed
/// (`aerekos_trust::follow_revocations`). Clones share the set.
#[derive(Clone, Default)]
pub struct Revocations(std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, i64>>>);

impl Revocations {
    /// Refuses token `jti` (which expires at `expires_at`, Unix seconds) from now on.
    pub fn revoke(&self, jti: &str, expires_at: i64) {
        let mut set = self.0.write().expect("revocations lock");
        let now = unix_now();
        if set.len() >= VERIFIED_CACHE_SIZE {
            set.retain(|_, exp| *exp + LEEWAY_SECS as i64 >= now);
        }
        set.insert(jti.to_owned(), expires_at);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.0.read().expect("revocations lock").contains_key(jti)
    }

    /// True when no verifier shares this set any more (a follower of the feed can stop).
    pub fn is_abandoned(&self) -> bool {
        std::sync::Arc::strong_count(&self.0) == 1
    }
}

/// Clock skew tolerated on `exp` between the conductor and the server checking a token.
const LEEWAY_SECS: u64 = 30;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub const VERIFIED_CACHE_SIZE: usize = 10_000;

impl TokenVerifier {
    /// From a JWK's `kid` and `x` (the base64url public key), as the conductor publishes them.
    pub fn from_ed25519_jwk(key_id: &str, x_base64url: &str) -> Result<Self, TokenError> {
        let key = DecodingKey::from_ed_components(x_base64url)
            .map_err(|e| TokenError::Invalid(format!("bad public key: {e}")))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            key_id: key_id.to_owned(),
            key,
            validation,
            verified: Default::default(),
            revoked: Revocations::default(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The revoked tokens this verifier refuses (shared with its clones).
    pub fn revocations(&self) -> &Revocations {
        &self.revoked
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = unix_now();
        let cached = self
            .verified
            .lock()
            .expect("token cache")
            .get(token)
            .filter(|c| c.exp > now)
            .cloned();
        let claims = match cached {
            Some(claims) => claims,
            None => self.verify_and_remember(token)?,
        };
        if self.revoked.is_revoked(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn verify_and_remember(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token)?;
        let mut cache = self.verified.lock().expect("token cache");
        if cache.len() >= VERIFIED_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Err(TokenError::UnknownKey(header.kid));
        }
        match decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }
}

/// The `role` claim of a service token; its `sub` is `service:<name>`.
pub const SERVICE_ROLE: &str = "service";

/// The `role` claim of a one-time grant to fetch a volume from the worker holding it; its `sub` is
/// `move:<move id>` and its `scope` `volume_export:<source worker id>:<volume>`. Nothing but that
/// worker's export endpoint accepts it.
pub const VOLUME_TRANSFER_ROLE: &str = "volume_transfer";

/// The `scope` of a grant to export `volume` from worker `worker_id`.
pub fn volume_export_scope(worker_id: &str, volume: &str) -> String {
    format!("volume_export:{worker_id}:{volume}")
}

/// The `scope` of a grant to `access` (`read` or `write`) the backups of `volume` kept by worker
/// `worker_id`'s backup store.
pub fn backup_store_scope(access: &str, worker_id: &str, volume: &str) -> String {
    format!("backup_{access}:{worker_id}:{volume}")
}

/// The `role` claim of an app's API key; its `sub` is `api_key:<id>`, its `name` the key's name and
/// its `scope` the scopes it grants, space-separated (see [`scope_grants`]).
pub const API_KEY_ROLE: &str = "api_key";

/// What each service lets an API key be scoped to: `<service>:<action>:<resource>`, the resource a
/// key (id or name), bucket or secret name, a prefix of names ending in `*` (`apps/shop/*`), or
/// `*` for all of them.
pub const API_KEY_ACTIONS: &[(&str, &[&str])] = &[
    (
        "key_manager",
        &["encrypt", "decrypt", "generate_data_key", "read"],
    ),
    ("storage_manager", &["read", "write"]),
    ("secrets_manager", &["read", "write"]),
    ("logs_manager", &["read", "write"]),
    ("metrics_manager", &["read", "write"]),
];

/// Checks a scope's form (`<service>:<action>:<resource>`, service and action among
/// [`API_KEY_ACTIONS`]); the error says what is wrong.
pub fn validate_scope(scope: &str) -> Result<(), String> {
    let mut parts = scope.splitn(3, ':');
    let (Some(service), Some(action), Some(resource)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "scope {scope:?} is not <service>:<action>:<resource> (e.g. key_manager:encrypt:payments or storage_manager:read:*)"
        ));
    };
    let Some((_, actions)) = API_KEY_ACTIONS.iter().find(|(s, _)| *s == service) else {
        let known: Vec<&str> = API_KEY_ACTIONS.iter().map(|(s, _)| *s).collect();
        return Err(format!("scope {scope:?}: the service is one of {known:?}"));
    };
    if !actions.contains(&action) {
        return Err(format!(
            "scope {scope:?}: {service}'s actions are {actions:?}"
        ));
    }
    let resource_ok = (1..=255).contains(&resource.len())
        && resource.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    if !resource_ok {
        return Err(format!(
            "scope {scope:?}: the resource is a key, bucket or secret name, a prefix ending in *, or *"
        ));
    }
    Ok(())
}

/// What [`validate_scope`] accepts, as a regular expression for the specs that take scopes.
pub fn scope_pattern() -> String {
    let services: Vec<String> = API_KEY_ACTIONS
        .iter()
        .map(|(service, actions)| format!("{service}:({})", actions.join("|")))
        .collect();
    // The resource: 1–255 visible ASCII characters but ','.
    format!("^({}):[!-+\\--~]{{1,255}}$", services.join("|"))
}

/// Whether `scopes` grant `action` on `service` for a resource known by any of `names` (a
/// resource ending in `*` grants every name it is a prefix of).
pub fn scope_grants(scopes: &[String], service: &str, action: &str, names: &[&str]) -> bool {
    scopes.iter().any(|scope| {
        let mut parts = scope.splitn(3, ':');
        parts.next() == Some(service)
            && parts.next() == Some(action)
            && parts.next().is_some_and(|r| match r.strip_suffix('*') {
                Some(prefix) => names.iter().any(|n| n.starts_with(prefix)),
                None => names.contains(&r),
            })
    })
}

/// Who is calling, as a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A seeded user; `admin` may change things, `viewer` may only read.
    User {
        id: String,
        username: String,
        admin: bool,
    },
    /// A platform service (e.g. storage_manager), with a service token from the conductor.
    Service { name: String },
    /// An app with an API key: it may do only what its scopes grant.
    ApiKey {
        id: String,
        name: String,
        scopes: Vec<String>,
    },
}

impl TokenVerifier {
    /// Who a bearer token says is calling, or the 401 a server answers (`token_expired` or
    /// `invalid_token`, with what was wrong).
    pub fn caller(&self, token: &str) -> Result<Caller, crate::ApiError> {
        let claims = self.verify(token).map_err(|e| {
            let code = e.code();
            crate::ApiError::unauthorized(code, e.to_string())
        })?;
        Caller::from_claims(&claims)
            .map_err(|e| crate::ApiError::unauthorized("invalid_token", e.to_string()))
    }
}

impl Caller {
    pub fn from_claims(claims: &Claims) -> Result<Self, TokenError> {
        match claims.role.as_str() {
            "admin" | "viewer" => Ok(Caller::User {
                id: claims.sub.clone(),
                username: claims.name.clone(),
                admin: claims.role == "admin",
            }),
            SERVICE_ROLE => Ok(Caller::Service {
                name: claims.name.clone(),
            }),
            API_KEY_ROLE => Ok(Caller::ApiKey {
                id: claims.jti.clone(),
                name: claims.name.clone(),
                scopes: claims
                    .scope
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            }),
            other => Err(TokenError::Invalid(format!("unknown role {other:?}"))),
        }
    }

    /// How audit records and logs name the caller: `user:<name>`, `service:<name>` or
    /// `api_key:<name>`.
    pub fn actor(&self) -> String {
        match self {
            Caller::User { username, .. } => format!("user:{username}"),
            Caller::Service { name } => format!("service:{name}"),
            Caller::ApiKey { name, .. } => format!("api_key:{name}"),
        }
    }

    /// For an API key: 403 `scope_missing` unless its scopes grant `action` on `service` for the
    /// resource known by any of `names` (a key's id and name, say). Other callers pass: their
    /// role is the service's to check.
    pub fn require_scope(
        &self,
        service: &str,
        action: &str,
        names: &[&str],
    ) -> Result<(), crate::ApiError> {
        match self {
            Caller::ApiKey { name, scopes, .. }
                if !scope_grants(scopes, service, action, names) =>
            {
                Err(crate::ApiError::forbidden(
                    "scope_missing",
                    format!(
                        "API key {name:?} has no scope {service}:{action}:{} (nor {service}:{action}:*)",
                        names.last().copied().unwrap_or("*")
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::User { admin: true, .. })
    }
}

#[cfg(test)]
mod scope_pattern_tests {
    use super::*;

    #[test]
    fn the_scope_pattern_accepts_what_validate_scope_accepts() {
        let pattern = regex::Regex::new(&scope_pattern()).unwrap();
        for scope in [
            "key_manager:encrypt:payments",
            "storage_manager:read:*",
            "key_manager:read:a/b.c-d_e",
            "storage_manager:write:x",
            "secrets_manager:read:apps/shop/*",
        ] {
            assert!(
                validate_scope(scope).is_ok() && pattern.is_match(scope),
                "{scope}"
            );
        }
        for scope in [
            "",
            "key_manager:encrypt:",
            "key_manager:delete:x",
            "s3:read:x",
            "storage_manager:read:a,b",
            "storage_manager:read:a b",
        ] {
            assert!(
                validate_scope(scope).is_err() && !pattern.is_match(scope),
                "{scope}"
            );
        }
    }
}

/// When a platform service's own token (`AEREKOS_SERVICE_TOKEN`, which the worker fetches at each
/// start) is due for renewal: from `renew_before` ahead of its expiry, the service's `/health`
/// answers 503 ([`TokenRenewal::check`]), so its worker restarts it with a fresh token while the
/// old one still works.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRenewal {
    /// Unix seconds; None: no token (or one this conductor did not sign), nothing to renew.
    due_at: Option<i64>,
}

impl TokenRenewal {
    pub fn new(
        verifier: &TokenVerifier,
        token: Option<&str>,
        renew_before: std::time::Duration,
    ) -> Self {
        let due_at = token.and_then(|token| match verifier.verify(token) {
            Ok(claims) => Some(claims.exp - renew_before.as_secs() as i64),
            Err(e) => {
                tracing::warn!(error = %e, "AEREKOS_SERVICE_TOKEN is not a token this conductor signed; other services will refuse it");
                None
            }
        });
        Self { due_at }
    }

    /// 503 `service_token_expiring` once the token is due for renewal.
    pub fn check(&self) -> Result<(), crate::ApiError> {
        match self
            .due_at
            .filter(|at| chrono::Utc::now().timestamp() >= *at)
        {
            Some(at) => Err(crate::ApiError::unavailable(
                "service_token_expiring",
                format!(
                    "this instance's service token is due for renewal since {}; its worker restarts it with a fresh one",
                    crate::db::from_ms(at * 1000)
                ),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod scope_grant_tests {
    use super::*;

    #[test]
    fn a_trailing_star_grants_a_prefix_and_nothing_else_does() {
        let scopes = vec![
            "secrets_manager:read:apps/shop/*".to_owned(),
            "key_manager:encrypt:payments".to_owned(),
        ];
        assert!(scope_grants(
            &scopes,
            "secrets_manager",
            "read",
            &["apps/shop/db-password"]
        ));
        assert!(!scope_grants(
            &scopes,
            "secrets_manager",
            "read",
            &["apps/shopping/x"]
        ));
        assert!(!scope_grants(
            &scopes,
            "secrets_manager",
            "write",
            &["apps/shop/db-password"]
        ));
        assert!(scope_grants(
            &scopes,
            "key_manager",
            "encrypt",
            &["id-1", "payments"]
        ));
        assert!(!scope_grants(
            &scopes,
            "key_manager",
            "encrypt",
            &["payments-2"]
        ));
    }
}
