//! logs_manager configuration: environment variables with working defaults (listed with their
//! defaults in `services/logs_manager/.env_example`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone)]
pub struct LogsManagerConfig {
    /// `LOGS_MANAGER_HOST`:`LOGS_MANAGER_PORT` (else `PORT`, which a worker sets), default
    /// 0.0.0.0:8304.
    pub bind: SocketAddr,
    /// `DATA_DIR`, default `./data/logs_manager`: the segments (`<DATA_DIR>/segments/`).
    pub data_dir: PathBuf,
    /// `CONDUCTOR_URL`, default `http://127.0.0.1:8080`: the token-verifying public key.
    pub conductor_url: String,
    /// `AEREKOS_SERVICE_TOKEN`: only for `/health`'s renewal warning (logs_manager calls no service).
    pub service_token: Option<String>,
    /// `SERVICE_TOKEN_RENEW_BEFORE`, default 1 day (see `aerekos_common::auth::TokenRenewal`).
    pub service_token_renew_before: Duration,
    /// `RETENTION_SECS`, default 7 days: a segment whose newest record is older goes.
    pub retention_age: Duration,
    /// `RETENTION_BYTES`, default 1 GiB: past it, the oldest segments go.
    pub retention_bytes: u64,
    /// `SEGMENT_BYTES`, default 16 MiB: a segment is sealed (and a new one begun) at this size…
    pub segment_bytes: u64,
    /// `SEGMENT_SECS`, default 1 hour: …or this age, so retention by age has whole segments to drop.
    pub segment_age: Duration,
    /// `RETENTION_INTERVAL_SECS`, default 60: how often segments are sealed by age and retention runs.
    pub retention_interval: Duration,
    /// `MAX_BODY_BYTES`, default 8 MiB: an ingest batch's body, after gzip is undone.
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

impl LogsManagerConfig {
    pub fn new(
        data_dir: impl Into<PathBuf>,
        bind: SocketAddr,
        conductor_url: impl Into<String>,
    ) -> Self {
        Self {
            bind,
            data_dir: data_dir.into(),
            conductor_url: conductor_url.into(),
            service_token: None,
            service_token_renew_before: Duration::from_secs(24 * 3600),
            retention_age: Duration::from_secs(7 * 86_400),
            retention_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            segment_age: Duration::from_secs(3600),
            retention_interval: Duration::from_secs(60),
            max_body_bytes: 8 << 20,
            throttle: Default::default(),
            tls: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bind = aerekos_common::server::bind_from_env(get, "LOGS_MANAGER", 8304)
            .map_err(ConfigError)?;
        let data_dir = get("DATA_DIR").unwrap_or_else(|| "./data/logs_manager".into());
        let conductor = get("CONDUCTOR_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let mut c = Self::new(data_dir, bind, conductor);
        c.service_token = get("AEREKOS_SERVICE_TOKEN");
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(0) => Err(ConfigError(format!("{name} must be at least 1"))),
                    Ok(n) => Ok(n),
                    Err(_) => Err(ConfigError(format!("{name}={v:?} is not a number"))),
                },
            }
        };
        c.service_token_renew_before = Duration::from_secs(positive(
            "SERVICE_TOKEN_RENEW_BEFORE",
            c.service_token_renew_before.as_secs(),
        )?);
        c.retention_age =
            Duration::from_secs(positive("RETENTION_SECS", c.retention_age.as_secs())?);
        c.retention_bytes = positive("RETENTION_BYTES", c.retention_bytes)?;
        c.segment_bytes = positive("SEGMENT_BYTES", c.segment_bytes)?;
        c.segment_age = Duration::from_secs(positive("SEGMENT_SECS", c.segment_age.as_secs())?);
        c.retention_interval = Duration::from_secs(positive(
            "RETENTION_INTERVAL_SECS",
            c.retention_interval.as_secs(),
        )?);
        c.max_body_bytes = positive("MAX_BODY_BYTES", c.max_body_bytes)?;
        c.throttle = aerekos_common::throttle::ThrottleConfig::from_env().map_err(ConfigError)?;
        c.tls = aerekos_common::tls::service_tls_from_env().map_err(ConfigError)?;
        Ok(c)
    }
}
