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
    #[error("the token was signed by a key this server does not trust (key id {0:?})")]
    UnknownKey(Option<String>),
    #[error("the token is not valid: {0}")]
    Invalid(String),
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
        validation.leeway = 30;
        Ok(Self { key_id: key_id.to_owned(), key, validation, verified: Default::default() })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if let Some(claims) = self.verified.lock().expect("token cache").get(token) {
            if claims.exp > now {
                return Ok(claims.clone());
            }
        }
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

/// Who is calling, as a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A seeded user; `admin` may change things, `viewer` may only read.
    User { id: String, username: String, admin: bool },
    /// A platform service (e.g. storage_manager), with a service token from the conductor.
    Service { name: String },
}

impl TokenVerifier {
    /// Who a bearer token says is calling, or the 401 a server answers (`token_expired` or
    /// `invalid_token`, with what was wrong).
    pub fn caller(&self, token: &str) -> Result<Caller, crate::ApiError> {
        let claims = self.verify(token).map_err(|e| {
            let code = if matches!(e, TokenError::Expired) { "token_expired" } else { "invalid_token" };
            crate::ApiError::unauthorized(code, e.to_string())
        })?;
        Caller::from_claims(&claims).map_err(|e| crate::ApiError::unauthorized("invalid_token", e.to_string()))
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
            SERVICE_ROLE => Ok(Caller::Service { name: claims.name.clone() }),
            other => Err(TokenError::Invalid(format!("unknown role {other:?}"))),
        }
    }

    /// How audit records and logs name the caller: `user:<name>` or `service:<name>`.
    pub fn actor(&self) -> String {
        match self {
            Caller::User { username, .. } => format!("user:{username}"),
            Caller::Service { name } => format!("service:{name}"),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::User { admin: true, .. })
    }
}
