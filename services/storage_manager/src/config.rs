//! storage_manager configuration: environment variables with working defaults
//! (listed with their defaults in `services/storage_manager/.env_example`).

use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, Clone)]
pub struct StorageManagerConfig {
    /// `STORAGE_MANAGER_HOST`:`STORAGE_MANAGER_PORT` (else `PORT`, which a worker sets), default
    /// 0.0.0.0:8302. The service's own API and the S3 protocol share it.
    pub bind: SocketAddr,
    /// `DATA_DIR`, default `./data/storage_manager`: the database, object files (`blobs/`) and
    /// uploads in progress (`tmp/`).
    pub data_dir: PathBuf,
    /// `DATABASE_PATH`, default `<DATA_DIR>/storage_manager.db`.
    pub database_path: PathBuf,
    /// `CONDUCTOR_URL`, default `http://127.0.0.1:8080`: the token-verifying public key.
    pub conductor_url: String,
    /// `KEY_MANAGER_URL`, default the conductor's URL (its gateway routes to key_manager).
    pub key_manager_url: String,
    /// `AEREKOS_SERVICE_TOKEN`: this service's token for calling key_manager (the conductor gives
    /// deployed instances one). Without it, encrypted buckets and uploads are refused.
    pub service_token: Option<String>,
    /// `S3_REGION`, default `us-east-1`: the region S3 clients sign for.
    pub s3_region: String,
    /// `MAX_BODY_BYTES`, default 1 MiB: the limit for JSON requests. Object bodies stream and are
    /// limited by `MAX_OBJECT_BYTES` instead.
    pub max_body_bytes: u64,
    /// `MAX_OBJECT_BYTES`, default 5 TiB (S3's limit).
    pub max_object_bytes: u64,
    /// `SERVICE_TOKEN_RENEW_BEFORE`, default 1 day: from this long before the service token expires,
    /// `/health` answers 503, so the worker restarts the instance and gives it a fresh token
    /// before encryption stops working.
    pub service_token_renew_before: std::time::Duration,
    /// `RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`: see `aerekos_common::throttle`.
    pub throttle: aerekos_common::throttle::ThrottleConfig,
    /// `TLS_CERT_PEM`/`TLS_KEY_PEM` (a worker gives them to the instances it starts when the
    /// conductor serves TLS) or `TLS_CERT_FILE`/`TLS_KEY_FILE`: serve HTTPS. Unset: plain HTTP.
    pub tls: Option<std::sync::Arc<aerekos_common::tls::ServerConfig>>,
    /// `S3_DOMAIN` (comma-separated): domains under which buckets are addressed as virtual hosts
    /// (`<bucket>.<domain>`); path style works on every host either way.
    pub s3_domains: Vec<String>,
    /// How often buckets' lifecycle rules are applied (`LIFECYCLE_INTERVAL_SECS`).
    pub lifecycle_interval: std::time::Duration,
    /// How long a lifecycle rule's "day" is (`LIFECYCLE_DAY_SECS`; shorter only to test rules).
    pub lifecycle_day: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl StorageManagerConfig {
    pub fn new(
        data_dir: impl Into<PathBuf>,
        bind: SocketAddr,
        conductor_url: impl Into<String>,
    ) -> Self {
        let data_dir = data_dir.into();
        let conductor_url = conductor_url.into();
        Self {
            bind,
            database_path: data_dir.join("storage_manager.db"),
            data_dir,
            key_manager_url: conductor_url.clone(),
            conductor_url,
            service_token: None,
            s3_region: "us-east-1".into(),
            max_body_bytes: 1024 * 1024,
            max_object_bytes: 5 << 40,
            service_token_renew_before: std::time::Duration::from_secs(24 * 3600),
            throttle: Default::default(),
            tls: None,
            s3_domains: Vec::new(),
            lifecycle_interval: std::time::Duration::from_secs(3600),
            lifecycle_day: std::time::Duration::from_secs(86_400),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bind = aerekos_common::server::bind_from_env(get, "STORAGE_MANAGER", 8302)
            .map_err(ConfigError)?;
        let data_dir = get("DATA_DIR").unwrap_or_else(|| "./data/storage_manager".into());
        let conductor = get("CONDUCTOR_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let mut c = Self::new(data_dir, bind, conductor);
        if let Some(p) = get("DATABASE_PATH") {
            c.database_path = p.into();
        }
        if let Some(url) = get("KEY_MANAGER_URL") {
            c.key_manager_url = url;
        }
        c.service_token = get("AEREKOS_SERVICE_TOKEN");
        if let Some(region) = get("S3_REGION") {
            c.s3_region = region;
        }
        c.s3_domains = get("S3_DOMAIN")
            .map(|v| {
                v.split(',')
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let num = |name: &str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| ConfigError(format!("{name}={v:?} is not a number")))
            })
        };
        c.max_body_bytes = num("MAX_BODY_BYTES", c.max_body_bytes)?;
        c.max_object_bytes = num("MAX_OBJECT_BYTES", c.max_object_bytes)?;
        c.service_token_renew_before = std::time::Duration::from_secs(num(
            "SERVICE_TOKEN_RENEW_BEFORE",
            c.service_token_renew_before.as_secs(),
        )?);
        let positive_secs = |name: &str,
                             default: std::time::Duration|
         -> Result<std::time::Duration, ConfigError> {
            match num(name, default.as_secs())? {
                0 => Err(ConfigError(format!("{name} must be at least 1"))),
                secs => Ok(std::time::Duration::from_secs(secs)),
            }
        };
        c.lifecycle_interval = positive_secs("LIFECYCLE_INTERVAL_SECS", c.lifecycle_interval)?;
        c.lifecycle_day = positive_secs("LIFECYCLE_DAY_SECS", c.lifecycle_day)?;
        c.throttle = aerekos_common::throttle::ThrottleConfig::from_env().map_err(ConfigError)?;
        c.tls = aerekos_common::tls::service_tls_from_env().map_err(ConfigError)?;
        Ok(c)
    }
}
