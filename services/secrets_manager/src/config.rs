//! secrets_manager configuration: environment variables with working defaults
//! (listed with their defaults in `services/secrets_manager/.env_example`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone)]
pub struct SecretsManagerConfig {
    /// `SECRETS_MANAGER_HOST`:`SECRETS_MANAGER_PORT` (else `PORT`, which a worker sets), default
    /// 0.0.0.0:8303.
    pub bind: SocketAddr,
    /// `DATA_DIR`, default `./data/secrets_manager`: the database.
    pub data_dir: PathBuf,
    /// `DATABASE_PATH`, default `<DATA_DIR>/secrets_manager.db`.
    pub database_path: PathBuf,
    /// `CONDUCTOR_URL`, default `http://127.0.0.1:8080`: the token-verifying public key, and the
    /// gateway rotation endpoints are called through.
    pub conductor_url: String,
    /// `KEY_MANAGER_URL`, default the conductor's URL (its gateway routes to key_manager).
    pub key_manager_url: String,
    /// `AEREKOS_SERVICE_TOKEN`: this service's token for key_manager (the conductor gives deployed
    /// instances one). Without it no value can be written or read.
    pub service_token: Option<String>,
    /// `SERVICE_TOKEN_RENEW_BEFORE`, default 1 day (see `aerekos_common::auth::TokenRenewal`).
    pub service_token_renew_before: Duration,
    /// `DEFAULT_ENCRYPTION_KEY`, default `secrets_manager`: the key_manager key of secrets created
    /// without one (made by the first admin who creates such a secret, if key_manager lacks it).
    pub default_encryption_key: String,
    /// `DEFAULT_MAX_VERSIONS`, default 10: versions a secret keeps unless it says otherwise.
    pub default_max_versions: u32,
    /// `MAX_VALUE_BYTES`, default 64 KiB: the largest value (bytes, or a JSON object's text).
    pub max_value_bytes: usize,
    /// `DELETION_DAY_SECS`, default 86400: how long a "day" of a secret's recovery window is
    /// (shorter only to test deletions).
    pub deletion_day: Duration,
    /// `SWEEP_INTERVAL_SECS`, default 60: how often secrets past their deletion date are removed
    /// and rotations falling due are started.
    pub sweep_interval: Duration,
    /// `DATA_KEY_CACHE_SECS`, default 30, at most 300, 0 for none: how long a version's data key,
    /// once key_manager unwrapped it, is kept to read that version again without asking
    /// key_manager (the read benchmark's aim needs it). A disabled or deleted key_manager key
    /// refuses reads within this time, not at once.
    pub data_key_cache: Duration,
    /// `MAX_BODY_BYTES`, default 1 MiB.
    pub max_body_bytes: u64,
    /// `RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`: see `aerekos_common::throttle`.
    pub throttle: aerekos_common::throttle::ThrottleConfig,
    /// `TLS_CERT_PEM`/`TLS_KEY_PEM` (given by a worker when the conductor serves TLS) or
    /// `TLS_CERT_FILE`/`TLS_KEY_FILE`: serve HTTPS. Unset: plain HTTP.
    pub tls: Option<std::sync::Arc<aerekos_common::tls::ServerConfig>>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl SecretsManagerConfig {
    /// `MAX_VALUE_BYTES`'s default, which the committed spec declares.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
    /// The longest a disabled key may go on unwrapping through the cache.
    pub const MAX_DATA_KEY_CACHE_SECS: u64 = 300;
    /// How many unwrapped data keys the cache holds at most (about 300 bytes each).
    pub const DATA_KEY_CACHE_ENTRIES: usize = 4096;

    pub fn new(
        data_dir: impl Into<PathBuf>,
        bind: SocketAddr,
        conductor_url: impl Into<String>,
    ) -> Self {
        let data_dir = data_dir.into();
        let conductor_url = conductor_url.into();
        Self {
            bind,
            database_path: data_dir.join("secrets_manager.db"),
            data_dir,
            key_manager_url: conductor_url.clone(),
            conductor_url,
            service_token: None,
            service_token_renew_before: Duration::from_secs(24 * 3600),
            default_encryption_key: "secrets_manager".into(),
            default_max_versions: 10,
            max_value_bytes: Self::DEFAULT_MAX_VALUE_BYTES,
            deletion_day: Duration::from_secs(86_400),
            sweep_interval: Duration::from_secs(60),
            data_key_cache: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            throttle: Default::default(),
            tls: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bind = aerekos_common::server::bind_from_env(get, "SECRETS_MANAGER", 8303)
            .map_err(ConfigError)?;
        let data_dir = get("DATA_DIR").unwrap_or_else(|| "./data/secrets_manager".into());
        let conductor = get("CONDUCTOR_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let mut c = Self::new(data_dir, bind, conductor);
        if let Some(p) = get("DATABASE_PATH") {
            c.database_path = p.into();
        }
        if let Some(url) = get("KEY_MANAGER_URL") {
            c.key_manager_url = url;
        }
        c.service_token = get("AEREKOS_SERVICE_TOKEN");
        if let Some(key) = get("DEFAULT_ENCRYPTION_KEY") {
            c.default_encryption_key = key;
        }
        let num = |name: &str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| ConfigError(format!("{name}={v:?} is not a number")))
            })
        };
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match num(name, default)? {
                0 => Err(ConfigError(format!("{name} must be at least 1"))),
                n => Ok(n),
            }
        };
        c.service_token_renew_before = Duration::from_secs(num(
            "SERVICE_TOKEN_RENEW_BEFORE",
            c.service_token_renew_before.as_secs(),
        )?);
        c.default_max_versions = u32::try_from(positive(
            "DEFAULT_MAX_VERSIONS",
            c.default_max_versions.into(),
        )?)
        .map_err(|_| ConfigError("DEFAULT_MAX_VERSIONS is too large".into()))?;
        c.max_value_bytes = positive("MAX_VALUE_BYTES", c.max_value_bytes as u64)? as usize;
        c.deletion_day =
            Duration::from_secs(positive("DELETION_DAY_SECS", c.deletion_day.as_secs())?);
        c.sweep_interval =
            Duration::from_secs(positive("SWEEP_INTERVAL_SECS", c.sweep_interval.as_secs())?);
        c.data_key_cache = match num("DATA_KEY_CACHE_SECS", c.data_key_cache.as_secs())? {
            secs @ 0..=Self::MAX_DATA_KEY_CACHE_SECS => Duration::from_secs(secs),
            _ => {
                return Err(ConfigError(format!(
                    "DATA_KEY_CACHE_SECS must be 0–{} (seconds)",
                    Self::MAX_DATA_KEY_CACHE_SECS
                )));
            }
        };
        c.max_body_bytes = num("MAX_BODY_BYTES", c.max_body_bytes)?;
        c.throttle = aerekos_common::throttle::ThrottleConfig::from_env().map_err(ConfigError)?;
        c.tls = aerekos_common::tls::service_tls_from_env().map_err(ConfigError)?;
        Ok(c)
    }
}
