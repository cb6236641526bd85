//! metrics_manager configuration: environment variables with working defaults (listed with their
//! defaults in `services/metrics_manager/.env_example`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone)]
pub struct MetricsManagerConfig {
    /// `METRICS_MANAGER_HOST`:`METRICS_MANAGER_PORT` (else `PORT`, which a worker sets), default
    /// 0.0.0.0:8305.
    pub bind: SocketAddr,
    /// `DATA_DIR`, default `./data/metrics_manager`: the WAL, raw sections and rollups.
    pub data_dir: PathBuf,
    /// `CONDUCTOR_URL`, default `http://127.0.0.1:8080`: the token key, and the scrape targets.
    pub conductor_url: String,
    /// `AEREKOS_SERVICE_TOKEN`: asks the conductor for the scrape targets.
    pub service_token: Option<String>,
    /// `SERVICE_TOKEN_RENEW_BEFORE`, default 1 day (see `aerekos_common::auth::TokenRenewal`).
    pub service_token_renew_before: Duration,
    /// `SCRAPE_INTERVAL_SECS`, default 10: how often every target is scraped (also its timeout).
    pub scrape_interval: Duration,
    /// `SCRAPE_CONCURRENCY`, default 64: scrapes in flight at once.
    pub scrape_concurrency: usize,
    /// `TARGETS_REFRESH_SECS`, default 30: how often the targets are asked of the conductor.
    pub targets_refresh: Duration,
    /// `STATIC_TARGETS`: more `/metrics` URLs to scrape, comma-separated (an exporter outside the
    /// platform), labelled `job="static"`, `target="<url>"`.
    pub static_targets: Vec<String>,
    /// `BLOCK_SECS`, default 600 (a multiple of 60): the head is cut into a raw section this often.
    pub block: Duration,
    /// `RAW_RETENTION_SECS`, default 1 day.
    pub raw_retention: Duration,
    /// `ROLLUP_RETENTION_SECS`, default 30 days: the 1-minute rollups.
    pub rollup_retention: Duration,
    /// `MAX_SERIES`, default 200000: series in the head; new ones past it are refused (counted).
    pub max_series: usize,
    /// `MAX_DISK_BYTES`, default 4 GiB: past it the oldest sections go (rolled-up raw ones first).
    pub max_disk_bytes: u64,
    /// `ALERT_INTERVAL_SECS`, default 15: how often alert rules are evaluated.
    pub alert_interval: Duration,
    /// `ALERT_WEBHOOK_URL`: where alerts go when their rule names no webhook of its own.
    pub alert_webhook_url: Option<String>,
    /// `RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`: see `aerekos_common::throttle`.
    pub throttle: aerekos_common::throttle::ThrottleConfig,
    /// `TLS_CERT_PEM`/`TLS_KEY_PEM` or `TLS_CERT_FILE`/`TLS_KEY_FILE`: serve HTTPS.
    pub tls: Option<std::sync::Arc<aerekos_common::tls::ServerConfig>>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl MetricsManagerConfig {
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
            scrape_interval: Duration::from_secs(10),
            scrape_concurrency: 64,
            targets_refresh: Duration::from_secs(30),
            static_targets: Vec::new(),
            block: Duration::from_secs(600),
            raw_retention: Duration::from_secs(86_400),
            rollup_retention: Duration::from_secs(30 * 86_400),
            max_series: 200_000,
            max_disk_bytes: 4 << 30,
            alert_interval: Duration::from_secs(15),
            alert_webhook_url: None,
            throttle: Default::default(),
            tls: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bind = aerekos_common::server::bind_from_env(get, "METRICS_MANAGER", 8305)
            .map_err(ConfigError)?;
        let data_dir = get("DATA_DIR").unwrap_or_else(|| "./data/metrics_manager".into());
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
        let secs = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            positive(name, default.as_secs()).map(Duration::from_secs)
        };
        c.service_token_renew_before =
            secs("SERVICE_TOKEN_RENEW_BEFORE", c.service_token_renew_before)?;
        c.scrape_interval = secs("SCRAPE_INTERVAL_SECS", c.scrape_interval)?;
        c.scrape_concurrency =
            positive("SCRAPE_CONCURRENCY", c.scrape_concurrency as u64)? as usize;
        c.targets_refresh = secs("TARGETS_REFRESH_SECS", c.targets_refresh)?;
        for url in get("STATIC_TARGETS").unwrap_or_default().split(',') {
            let url = url.trim();
            if url.is_empty() {
                continue;
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "STATIC_TARGETS: {url:?} is not an http:// or https:// URL"
                )));
            }
            c.static_targets.push(url.to_owned());
        }
        c.block = secs("BLOCK_SECS", c.block)?;
        if c.block.as_secs() % 60 != 0 {
            return Err(ConfigError(format!(
                "BLOCK_SECS={} must be a multiple of 60 (sections hold whole minutes)",
                c.block.as_secs()
            )));
        }
        c.raw_retention = secs("RAW_RETENTION_SECS", c.raw_retention)?;
        c.rollup_retention = secs("ROLLUP_RETENTION_SECS", c.rollup_retention)?;
        c.max_series = positive("MAX_SERIES", c.max_series as u64)? as usize;
        c.max_disk_bytes = positive("MAX_DISK_BYTES", c.max_disk_bytes)?;
        c.alert_interval = secs("ALERT_INTERVAL_SECS", c.alert_interval)?;
        c.alert_webhook_url = get("ALERT_WEBHOOK_URL");
        c.throttle = aerekos_common::throttle::ThrottleConfig::from_env().map_err(ConfigError)?;
        c.tls = aerekos_common::tls::service_tls_from_env().map_err(ConfigError)?;
        Ok(c)
    }
}
