//! Conductor configuration: environment variables with defaults that need nothing set to start
//! locally. Every variable is listed, with its default, in `server/.env_example`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone)]
pub struct ConductorConfig {
    /// `CONDUCTOR_HOST`:`CONDUCTOR_PORT`, default 0.0.0.0:8080 (workers on other machines must reach it).
    pub bind: SocketAddr,
    /// `DATA_DIR`, default `./data`: the signing key, the generated admin password, the database.
    pub data_dir: PathBuf,
    /// `DATABASE_PATH`, default `<DATA_DIR>/conductor.db`.
    pub database_path: PathBuf,
    /// `AEREKOS_ADMIN_USERNAME`, default `admin`.
    pub admin_username: String,
    /// `AEREKOS_ADMIN_PASSWORD`: the admin password. Unset → generated on first start and written
    /// to `<DATA_DIR>/admin-password` (0600). Set → applied at every start (a way to reset it).
    pub admin_password: Option<String>,
    /// `AEREKOS_USERS_FILE`: a JSON file of further seeded users, applied at every start.
    pub users_file: Option<PathBuf>,
    /// `AEREKOS_REGISTRATION_TOKEN`: the cluster's worker registration token to start with. Unset →
    /// generated on first start. Either way an admin can regenerate it; a database created anew (a
    /// reset) starts from this value again, so configured workers rejoin by themselves.
    pub registration_token: Option<String>,
    /// `JWT_EXPIRES_IN`, default `24h` (humantime, e.g. `30m`, `7d`, or plain seconds).
    pub jwt_expires_in: Duration,
    /// `HEARTBEAT_INTERVAL`, default 10 s: what workers are told to use.
    pub heartbeat_interval: Duration,
    /// `WORKER_TTL`, default 3 × the heartbeat interval: silent longer than this → lost.
    pub worker_ttl: Duration,
    /// `MAX_BODY_BYTES`, default 1 MiB: larger request bodies to the conductor's own API get 413
    /// (requests the gateway forwards are streamed and limited by the service).
    pub max_body_bytes: u64,
    /// `AEREKOS_INSTANCE_PORTS`, default `20000-29999`: the ports given to service instances, each
    /// unique on its worker's address. Keep it outside the OS's ephemeral range.
    pub instance_ports: std::ops::RangeInclusive<u16>,
    /// `BACKUP_INTERVAL`, default `1h`: how often each stateful service's volume is backed up when
    /// its deployment does not say (`0` turns scheduled backups off).
    pub backup_interval: Duration,
    /// `BACKUP_KEEP`, default 24: how many backups of each volume a store keeps (older ones, and
    /// the contents only they used, are deleted when a new one is stored).
    pub backup_keep: u32,
    /// `RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`: see `aerekos_common::throttle`.
    pub throttle: aerekos_common::throttle::ThrottleConfig,
    /// `CORS_ALLOWED_ORIGINS` (comma-separated), default none: browser origins other than the
    /// conductor's own whose pages may call its API. The dashboard is same-origin and needs none.
    pub cors_allowed_origins: Vec<String>,
    /// TLS on the conductor's listener: see [`TlsConfig`].
    pub tls: TlsConfig,
    /// `JOB_PRIORITY_AGING` (default 10 s): a queued job gains a priority level per this long
    /// waiting, so a job of priority p is overtaken only by jobs submitted within
    /// (100 − p) × this of it. `JOB_HISTORY` (default 7d) and `JOB_HISTORY_MAX` (default 10000):
    /// finished jobs are kept this long, and at most this many.
    pub jobs: crate::domain::jobs::JobSettings,
    /// `CONDUCTOR_S3_PORT`: the S3 edge's listener on `CONDUCTOR_HOST` (default 9000; `off`: none).
    /// [`ConductorConfig::new`] leaves it off.
    pub s3_edge: Option<S3EdgeConfig>,
}

#[derive(Debug, Clone, Copy)]
pub struct S3EdgeConfig {
    pub bind: SocketAddr,
    /// Set by the admin (a failure to bind stops the start), not the default (only a warning).
    pub required: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// `CONDUCTOR_TLS`: `auto` (the default: TLS unless the conductor listens on loopback only), `on`
/// or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: the admin's PEM certificate chain and key for the
    /// conductor. Unset: a certificate issued by the cluster CA (made in `<DATA_DIR>/tls`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `TLS_CA_FILE`: the CA (PEM) that issued `TLS_CERT_FILE`, added to the bundle clients pin.
    pub ca_file: Option<PathBuf>,
    /// `TLS_SANS`: more names (DNS or IP, comma-separated) for the cluster-issued certificate,
    /// e.g. the address workers and browsers use.
    pub sans: Vec<String>,
    /// `AEREKOS_ALLOW_PLAIN_HTTP=yes`: the explicit opt-out that lets the conductor listen on a
    /// non-loopback address without TLS (behind a TLS-terminating proxy, say).
    pub allow_plain_http: bool,
}

impl TlsConfig {
    /// Whether the conductor bound to `bind` serves TLS, or why it must not start.
    pub fn enabled_for(&self, bind: std::net::IpAddr) -> Result<bool, ConfigError> {
        let enabled = match self.mode {
            TlsMode::On => true,
            TlsMode::Auto => !bind.is_loopback(),
            TlsMode::Off => false,
        };
        if !enabled && !bind.is_loopback() && !self.allow_plain_http {
            return Err(ConfigError(format!(
                "CONDUCTOR_TLS=off on {bind}, which other machines can reach, would send passwords and tokens in the clear; \
                 turn TLS on (CONDUCTOR_TLS=auto or on), listen on loopback (CONDUCTOR_HOST=127.0.0.1), or set \
                 AEREKOS_ALLOW_PLAIN_HTTP=yes to accept plain HTTP (e.g. behind a TLS-terminating proxy)"
            )));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError(
                "TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither".into(),
            ));
        }
        Ok(enabled)
    }
}

impl ConductorConfig {
    /// Defaults for a conductor keeping its state in `data_dir`, bound to `bind`.
    pub fn new(data_dir: impl Into<PathBuf>, bind: SocketAddr) -> Self {
        let data_dir = data_dir.into();
        let heartbeat_interval = Duration::from_secs(10);
        Self {
            bind,
            database_path: data_dir.join("conductor.db"),
            data_dir,
            admin_username: "admin".to_owned(),
            admin_password: None,
            users_file: None,
            registration_token: None,
            jwt_expires_in: Duration::from_secs(24 * 3600),
            heartbeat_interval,
            worker_ttl: heartbeat_interval * 3,
            max_body_bytes: 1024 * 1024,
            instance_ports: 20000..=29999,
            backup_interval: Duration::from_secs(3600),
            backup_keep: 24,
            throttle: Default::default(),
            cors_allowed_origins: Vec::new(),
            tls: TlsConfig::default(),
            s3_edge: None,
            jobs: crate::domain::jobs::JobSettings {
                priority_aging: Duration::from_secs(10),
                history: Duration::from_secs(7 * 24 * 3600),
                history_max: 10_000,
            },
        }
    }

    /// Reads the environment (see `server/.env_example`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let host = get("CONDUCTOR_HOST").unwrap_or_else(|| "0.0.0.0".to_owned());
        let port: u16 = parse(&get, "CONDUCTOR_PORT", 8080)?;
        let bind: SocketAddr = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| ConfigError(format!("CONDUCTOR_HOST={host:?} is not an IP address")))?;
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
        let mut config = Self::new(data_dir, bind);
        if let Some(path) = get("DATABASE_PATH") {
            config.database_path = path.into();
        }
        if let Some(name) = get("AEREKOS_ADMIN_USERNAME") {
            config.admin_username = name;
        }
        config.admin_password = get("AEREKOS_ADMIN_PASSWORD").filter(|p| !p.is_empty());
        config.users_file = get("AEREKOS_USERS_FILE").map(PathBuf::from);
        config.registration_token = get("AEREKOS_REGISTRATION_TOKEN").filter(|t| !t.is_empty());
        if let Some(v) = get("JWT_EXPIRES_IN") {
            config.jwt_expires_in = parse_duration("JWT_EXPIRES_IN", &v)?;
        }
        if let Some(v) = get("HEARTBEAT_INTERVAL") {
            config.heartbeat_interval = parse_duration("HEARTBEAT_INTERVAL", &v)?;
            config.worker_ttl = config.heartbeat_interval * 3;
        }
        if let Some(v) = get("WORKER_TTL") {
            config.worker_ttl = parse_duration("WORKER_TTL", &v)?;
        }
        config.max_body_bytes = parse(&get, "MAX_BODY_BYTES", config.max_body_bytes)?;
        config.s3_edge = match get("CONDUCTOR_S3_PORT").as_deref().map(str::trim) {
            Some("off") => None,
            None | Some("") => Some(S3EdgeConfig {
                bind: SocketAddr::new(bind.ip(), 9000),
                required: false,
            }),
            Some(port) => {
                let port: u16 = port.parse().map_err(|_| {
                    ConfigError(format!(
                        "CONDUCTOR_S3_PORT={port:?}: give a port number or off"
                    ))
                })?;
                Some(S3EdgeConfig {
                    bind: SocketAddr::new(bind.ip(), port),
                    required: true,
                })
            }
        };
        config.throttle =
            aerekos_common::throttle::ThrottleConfig::from_lookup(&get).map_err(ConfigError)?;
        config.cors_allowed_origins =
            aerekos_common::server::cors_origins_from_env(&get).unwrap_or_default();
        config.tls.mode = match get("CONDUCTOR_TLS").as_deref().map(str::trim) {
            None | Some("") | Some("auto") => TlsMode::Auto,
            Some("on") => TlsMode::On,
            Some("off") => TlsMode::Off,
            Some(other) => {
                return Err(ConfigError(format!(
                    "CONDUCTOR_TLS={other:?}: use auto, on or off"
                )));
            }
        };
        config.tls.cert_file = get("TLS_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        config.tls.key_file = get("TLS_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        config.tls.ca_file = get("TLS_CA_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        config.tls.sans = get("TLS_SANS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        config.tls.allow_plain_http = aerekos_common::tls::plain_http_allowed(
            get(aerekos_common::tls::ALLOW_PLAIN_HTTP_ENV).as_deref(),
        );
        config.backup_keep = parse(&get, "BACKUP_KEEP", config.backup_keep)?;
        if config.backup_keep == 0 {
            return Err(ConfigError("BACKUP_KEEP must be at least 1".into()));
        }
        if let Some(v) = get("BACKUP_INTERVAL") {
            config.backup_interval = if v.trim() == "0" {
                Duration::ZERO
            } else {
                parse_duration("BACKUP_INTERVAL", &v)?
            };
        }
        if let Some(v) = get("AEREKOS_INSTANCE_PORTS") {
            let range = v
                .split_once('-')
                .and_then(|(a, b)| {
                    Some(a.trim().parse::<u16>().ok()?..=b.trim().parse::<u16>().ok()?)
                })
                .filter(|r| *r.start() > 0 && r.start() <= r.end())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "AEREKOS_INSTANCE_PORTS={v:?} is not a port range such as 20000-29999"
                    ))
                })?;
            config.instance_ports = range;
        }
        if let Some(v) = get("JOB_PRIORITY_AGING") {
            config.jobs.priority_aging = parse_duration("JOB_PRIORITY_AGING", &v)?;
        }
        if let Some(v) = get("JOB_HISTORY") {
            config.jobs.history = parse_duration("JOB_HISTORY", &v)?;
        }
        config.jobs.history_max = parse(&get, "JOB_HISTORY_MAX", config.jobs.history_max)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_expires_in < Duration::from_secs(60) {
            return Err(ConfigError("JWT_EXPIRES_IN must be at least 60s".into()));
        }
        if self.heartbeat_interval < Duration::from_secs(1) {
            return Err(ConfigError("HEARTBEAT_INTERVAL must be at least 1s".into()));
        }
        if self.worker_ttl <= self.heartbeat_interval {
            return Err(ConfigError(
                "WORKER_TTL must be longer than HEARTBEAT_INTERVAL".into(),
            ));
        }
        self.tls.enabled_for(self.bind.ip())?;
        if self.jobs.priority_aging < Duration::from_millis(1)
            || self.jobs.priority_aging > Duration::from_secs(24 * 3600)
        {
            return Err(ConfigError(
                "JOB_PRIORITY_AGING must be between 1ms and 24h".into(),
            ));
        }
        if self.jobs.history_max == 0 {
            return Err(ConfigError("JOB_HISTORY_MAX must be at least 1".into()));
        }
        if self
            .registration_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(ConfigError(
                "AEREKOS_REGISTRATION_TOKEN must be at least 16 characters".into(),
            ));
        }
        if let Some(p) = &self.admin_password {
            if p.chars().count() < 12 {
                return Err(ConfigError(
                    "AEREKOS_ADMIN_PASSWORD must be at least 12 characters".into(),
                ));
            }
        }
        Ok(())
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{name}={v:?} is not a valid number"))),
    }
}

/// `90` (seconds) or a humantime duration such as `24h`, `30m`, `1h 30m`.
pub fn parse_duration(name: &str, value: &str) -> Result<Duration, ConfigError> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(value).map_err(|e| {
        ConfigError(format!(
            "{name}={value:?} is not a duration ({e}); use e.g. 24h, 30m or seconds"
        ))
    })
}
