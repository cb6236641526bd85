//! key_manager configuration: environment variables with working defaults
//! (listed with their defaults in `services/key_manager/.env_example`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone)]
pub struct KeyManagerConfig {
    /// `KEY_MANAGER_HOST`:`KEY_MANAGER_PORT` (else `PORT`, which a worker sets), default 0.0.0.0:8301.
    pub bind: SocketAddr,
    /// `DATA_DIR`, default `./data/key_manager`: the database and the generated master key.
    pub data_dir: PathBuf,
    /// `DATABASE_PATH`, default `<DATA_DIR>/key_manager.db`.
    pub database_path: PathBuf,
    /// `KEY_MANAGER_MASTER_KEY`: 32 bytes, base64. Unset → generated on first start into
    /// `<DATA_DIR>/master.key` (0600). Key material at rest is encrypted under it.
    pub master_key: Option<String>,
    /// `CONDUCTOR_URL`, default `http://127.0.0.1:8080`: where the token-verifying public keys come from.
    pub conductor_url: String,
    /// `MAX_PLAINTEXT_BYTES`, default 64 KiB: larger data belongs under a data key.
    pub max_plaintext_bytes: usize,
    /// `MAX_BATCH_ITEMS`, default 1000.
    pub max_batch_items: usize,
    /// `MAX_BODY_BYTES`, default 16 MiB.
    pub max_body_bytes: u64,
    /// `KEY_DELETION_WAITING_PERIOD`, default 7 days: the shortest time between scheduling a key's
    /// deletion and its destruction.
    pub deletion_waiting_period: Duration,
    /// `RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`: see `aerekos_common::throttle`.
    pub throttle: aerekos_common::throttle::ThrottleConfig,
    /// `TLS_CERT_PEM`/`TLS_KEY_PEM` (a worker gives them to the instances it starts when the
    /// conductor serves TLS) or `TLS_CERT_FILE`/`TLS_KEY_FILE`: serve HTTPS. Unset: plain HTTP.
    pub tls: Option<std::sync::Arc<aerekos_common::tls::ServerConfig>>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl KeyManagerConfig {
    /// `MAX_BATCH_ITEMS`'s default, which the committed spec declares.
    pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1000;
    /// `KEY_DELETION_WAITING_PERIOD`'s default (a week), which the committed spec declares.
    pub const DEFAULT_DELETION_WAITING_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

    pub fn new(
        data_dir: impl Into<PathBuf>,
        bind: SocketAddr,
        conductor_url: impl Into<String>,
    ) -> Self {
        let data_dir = data_dir.into();
        Self {
            bind,
            database_path: data_dir.join("key_manager.db"),
            data_dir,
            master_key: None,
            conductor_url: conductor_url.into(),
            max_plaintext_bytes: 64 * 1024,
            max_batch_items: Self::DEFAULT_MAX_BATCH_ITEMS,
            max_body_bytes: 16 * 1024 * 1024,
            deletion_waiting_period: Self::DEFAULT_DELETION_WAITING_PERIOD,
            throttle: Default::default(),
            tls: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bind =
            aerekos_common::server::bind_from_env(get, "KEY_MANAGER", 8301).map_err(ConfigError)?;
        let data_dir = get("DATA_DIR").unwrap_or_else(|| "./data/key_manager".into());
        let conductor = get("CONDUCTOR_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let mut c = Self::new(data_dir, bind, conductor);
        if let Some(p) = get("DATABASE_PATH") {
            c.database_path = p.into();
        }
        c.master_key = get("KEY_MANAGER_MASTER_KEY");
        let num = |name: &str, default: usize| -> Result<usize, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| ConfigError(format!("{name}={v:?} is not a number")))
            })
        };
        c.max_plaintext_bytes = num("MAX_PLAINTEXT_BYTES", c.max_plaintext_bytes)?;
        c.max_batch_items = num("MAX_BATCH_ITEMS", c.max_batch_items)?;
        c.max_body_bytes = num("MAX_BODY_BYTES", c.max_body_bytes as usize)? as u64;
        if let Some(v) = get("KEY_DELETION_WAITING_PERIOD") {
            c.deletion_waiting_period = humantime::parse_duration(&v)
                .map_err(|e| ConfigError(format!("KEY_DELETION_WAITING_PERIOD={v:?}: {e}")))?;
        }
        c.throttle = aerekos_common::throttle::ThrottleConfig::from_env().map_err(ConfigError)?;
        c.tls = aerekos_common::tls::service_tls_from_env().map_err(ConfigError)?;
        Ok(c)
    }
}
