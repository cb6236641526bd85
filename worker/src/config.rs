//! Worker configuration: the seed's environment variables (listed with their defaults in
//! `worker/.env_example`).

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

/// Where the worker's advertised address comes from.
#[derive(Clone)]
pub enum AdvertiseIp {
    /// The local address the route to the conductor leaves from (follows DHCP changes).
    Auto,
    /// `WORKER_IP`.
    Fixed(IpAddr),
    /// Asked anew at every heartbeat (an embedding process that knows better).
    Dynamic(Arc<dyn Fn() -> Option<IpAddr> + Send + Sync>),
}

impl fmt::Debug for AdvertiseIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdvertiseIp::Auto => f.write_str("Auto"),
            AdvertiseIp::Fixed(ip) => write!(f, "Fixed({ip})"),
            AdvertiseIp::Dynamic(_) => f.write_str("Dynamic"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `CONDUCTOR_URL`, or `http://CONDUCTOR_IP:CONDUCTOR_PORT`; default `http://127.0.0.1:8080`.
    pub conductor_url: String,
    /// `CONDUCTOR_TOKEN`: the cluster's registration token (only needed to register).
    pub registration_token: String,
    /// `HEARTBEAT_INTERVAL` (seconds), default 10; the conductor's answer takes precedence.
    pub heartbeat_interval: Duration,
    /// `SECRET_WATCH_INTERVAL` (seconds, or a duration such as `30s`), default 30: how often the
    /// secrets of instances whose `secret_env` says `restart_on_change` are checked for a new version.
    pub secret_watch_interval: Duration,
    /// `RUN_OUTPUT_KEEP` (seconds, or a duration such as `24h`), default 24 h: how long the output
    /// files of a job's attempt (`instances/<id>/stdout.log`, `stderr.log`) stay after it ended and
    /// left the assignments; the conductor keeps their tails.
    pub run_output_keep: Duration,
    /// `SECRET_FILES_DIR`, default `/dev/shm/aerekos-secrets-<a hash of DATA_DIR>` (memory, so
    /// values never rest on a disk): where secrets an instance takes as files are written,
    /// `<dir>/<instance id>/<VARIABLE>`, readable by the worker's user only, removed with the instance.
    pub secret_files_dir: PathBuf,
    /// `DATA_DIR`, default `./data/worker`: identity, instance logs, last known assignments.
    pub data_dir: PathBuf,
    /// `WORKER_NAME`, default the hostname.
    pub name: Option<String>,
    /// `WORKER_LABELS`, e.g. `zone=rack-1,ssd=true`.
    pub labels: BTreeMap<String, String>,
    /// `WORKER_IP`; default: detected.
    pub advertise_ip: AdvertiseIp,
    /// `WORKER_API_HOST`:`WORKER_API_PORT`, default 0.0.0.0:8201 (127.0.0.1 when the conductor is
    /// plain HTTP and plain HTTP is not allowed); `WORKER_API_PORT=off` serves no API.
    pub api_bind: Option<SocketAddr>,
    /// `AEREKOS_ALLOW_PLAIN_HTTP=yes`: a worker of a plain-HTTP conductor may serve its API and its
    /// instances on addresses other machines reach. Without it, they stay on loopback.
    pub allow_plain_http: bool,
    /// `WORKER_DOCKER`, default on: use the local Docker engine when one answers (`off`: processes only).
    pub docker: bool,
    /// `WORKER_MICROVM` and `MICROVM_*`: the microvm driver (see `driver::microvm`).
    pub microvm: crate::driver::microvm::MicrovmConfig,
    /// `AEREKOS_EXECUTABLE`, default this program: the aerekos executable that built-in services
    /// run from (`aerekos service <name>`), and that the service image is built from.
    pub platform_executable: Option<PathBuf>,
    /// `WORKER_TRANSFER_RATE`, bytes per second a volume export sends at most (moves); default
    /// unlimited. Keeps a large move from filling the network link.
    pub transfer_rate: Option<u64>,
    /// `RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`: see `aerekos_common::throttle`.
    pub throttle: aerekos_common::throttle::ThrottleConfig,
    /// `CORS_ALLOWED_ORIGINS` (comma-separated), default the conductor's origin: the browser
    /// origins whose pages (the dashboard) may call the worker API.
    pub cors_allowed_origins: Vec<String>,
    /// `CONDUCTOR_CA_PIN` (`sha256:<hex>`): the fingerprint of the conductor's CA bundle, checked
    /// before the worker trusts it (see `trust.rs`).
    pub conductor_ca_pin: Option<String>,
    /// The conductor's CA bundle given outright (`aerekos up`, which runs both in one process).
    pub conductor_ca_pem: Option<String>,
    /// `LOG_SHIPPING` (`on`, the default, or `off`): ship every instance's output and this
    /// process's own lines to logs_manager (see `logship`).
    pub log_shipping: bool,
    /// `LOG_SPOOL_BYTES`, default 64 MiB: the disk buffer of lines not yet shipped; past it the
    /// oldest are dropped and counted.
    pub log_spool_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl WorkerConfig {
    /// `LOG_SHIPPING` and `LOG_SPOOL_BYTES` (also what `aerekos up` reads for its worker).
    pub fn log_shipping_from(
        &mut self,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("LOG_SHIPPING") {
            self.log_shipping = match v.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                _ => return Err(ConfigError(format!("LOG_SHIPPING={v:?}: on or off"))),
            };
        }
        if let Some(v) = get("LOG_SPOOL_BYTES") {
            self.log_spool_bytes = match v.trim().parse::<u64>() {
                Ok(n) if n >= 1 << 20 => n,
                _ => {
                    return Err(ConfigError(format!(
                        "LOG_SPOOL_BYTES={v:?}: a number of bytes, at least 1048576"
                    )));
                }
            };
        }
        Ok(())
    }

    pub fn new(
        conductor_url: impl Into<String>,
        registration_token: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        let conductor_url: String = conductor_url.into();
        let data_dir: PathBuf = data_dir.into();
        // Loopback for a plain-HTTP conductor (see `check_plain_http`).
        let api_host = if plain_conductor(&conductor_url) {
            [127, 0, 0, 1]
        } else {
            [0, 0, 0, 0]
        };
        Self {
            cors_allowed_origins: aerekos_common::server::origins_of(&conductor_url),
            conductor_url,
            registration_token: registration_token.into(),
            heartbeat_interval: Duration::from_secs(10),
            secret_watch_interval: Duration::from_secs(30),
            run_output_keep: Duration::from_secs(24 * 3600),
            log_shipping: true,
            log_spool_bytes: 64 << 20,
            secret_files_dir: default_secret_files_dir(&data_dir),
            data_dir,
            name: None,
            labels: BTreeMap::new(),
            advertise_ip: AdvertiseIp::Auto,
            api_bind: Some(SocketAddr::from((api_host, 8201))),
            allow_plain_http: false,
            docker: true,
            microvm: Default::default(),
            platform_executable: std::env::current_exe().ok(),
            transfer_rate: None,
            throttle: Default::default(),
            conductor_ca_pin: None,
            conductor_ca_pem: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let url = match (get("CONDUCTOR_URL"), get("CONDUCTOR_IP")) {
            (Some(url), _) => url,
            (None, Some(ip)) => format!(
                "http://{ip}:{}",
                get("CONDUCTOR_PORT").unwrap_or_else(|| "8080".into())
            ),
            (None, None) => "http://127.0.0.1:8080".into(),
        };
        let mut c = Self::new(
            url,
            get("CONDUCTOR_TOKEN").unwrap_or_default(),
            get("DATA_DIR").unwrap_or_else(|| "./data/worker".into()),
        );
        if let Some(v) = get("HEARTBEAT_INTERVAL") {
            // Seconds, or a duration as the conductor reads it (`aerekos up` reads both from one
            // environment): `10`, `10s`, `1m`.
            c.heartbeat_interval = Duration::from_secs(seconds("HEARTBEAT_INTERVAL", &v)?.max(1));
        }
        if let Some(v) = get("SECRET_WATCH_INTERVAL") {
            c.secret_watch_interval =
                Duration::from_secs(seconds("SECRET_WATCH_INTERVAL", &v)?.max(1));
        }
        c.log_shipping_from(&get)?;
        if let Some(v) = get("RUN_OUTPUT_KEEP") {
            c.run_output_keep = Duration::from_secs(seconds("RUN_OUTPUT_KEEP", &v)?);
        }
        if let Some(v) = get("SECRET_FILES_DIR") {
            // Absolute: processes start elsewhere, and Docker reads a relative bind as a volume name.
            c.secret_files_dir = std::path::absolute(&v)
                .map_err(|e| ConfigError(format!("SECRET_FILES_DIR={v:?}: {e}")))?;
        }
        c.name = get("WORKER_NAME");
        c.conductor_ca_pin = get("CONDUCTOR_CA_PIN");
        if let Some(v) = get("WORKER_LABELS") {
            c.labels = parse_labels(&v)?;
        }
        if let Some(v) = get("WORKER_IP") {
            c.advertise_ip = AdvertiseIp::Fixed(
                v.parse()
                    .map_err(|_| ConfigError(format!("WORKER_IP={v:?} is not an IP address")))?,
            );
        }
        c.docker = get("WORKER_DOCKER").is_none_or(|v| v != "off");
        c.microvm.enabled = get("WORKER_MICROVM").is_none_or(|v| v != "off");
        if let Some(v) = get("MICROVM_QEMU") {
            c.microvm.qemu = v.into();
        }
        c.microvm.kernel = get("MICROVM_KERNEL").map(Into::into);
        c.microvm.modules = get("MICROVM_MODULES").map(Into::into);
        c.microvm.guest_agent = get("MICROVM_GUEST_AGENT").map(Into::into);
        if let Some(v) = get("MICROVM_BUSYBOX") {
            c.microvm.busybox = v.into();
        }
        if let Some(v) = get("AEREKOS_EXECUTABLE") {
            c.platform_executable = Some(v.into());
        }
        if let Some(v) = get("WORKER_TRANSFER_RATE") {
            let rate: u64 = v.parse().map_err(|_| {
                ConfigError(format!(
                    "WORKER_TRANSFER_RATE={v:?} is not a number of bytes per second"
                ))
            })?;
            c.transfer_rate = (rate > 0).then_some(rate);
        }
        c.throttle = aerekos_common::throttle::ThrottleConfig::from_env().map_err(ConfigError)?;
        if let Some(origins) = aerekos_common::server::cors_origins_from_env(|name| get(name)) {
            c.cors_allowed_origins = origins;
        }
        c.listen_from(get)?;
        Ok(c)
    }

    /// `AEREKOS_ALLOW_PLAIN_HTTP` and `WORKER_API_HOST`/`WORKER_API_PORT` from `get`, for this
    /// config's conductor (`aerekos up` calls it on a config it built for its own conductor).
    pub fn listen_from(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.allow_plain_http = aerekos_common::tls::plain_http_allowed(
            get(aerekos_common::tls::ALLOW_PLAIN_HTTP_ENV).as_deref(),
        );
        self.api_bind = api_bind_from(get, self.serves_plain_http(), self.allow_plain_http)?;
        Ok(())
    }
}

/// Whether a worker of the conductor at `conductor_url` serves plain HTTP: the conductor does, so
/// there is no cluster CA to issue the worker certificates.
fn plain_conductor(conductor_url: &str) -> bool {
    !conductor_url.starts_with("https://")
}

/// `WORKER_API_HOST`:`WORKER_API_PORT` as read from `get`, for a worker that serves plain HTTP
/// (`plain`, its conductor being plain) or TLS. Its default host is every interface, but loopback
/// for a plain worker without the opt-out (`aerekos up` on a laptop).
fn api_bind_from(
    get: impl Fn(&str) -> Option<String>,
    plain: bool,
    allow_plain_http: bool,
) -> Result<Option<SocketAddr>, ConfigError> {
    let port = get("WORKER_API_PORT");
    if port.as_deref() == Some("off") {
        return Ok(None);
    }
    let default_host = if plain && !allow_plain_http {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let host = get("WORKER_API_HOST").unwrap_or_else(|| default_host.into());
    let port = port.unwrap_or_else(|| "8201".into());
    aerekos_common::server::socket_addr(&host, &port)
        .map(Some)
        .ok_or_else(|| {
            ConfigError(format!(
                "WORKER_API_HOST/PORT {host}:{port} is not an address"
            ))
        })
}

impl WorkerConfig {
    /// Whether this worker serves plain HTTP (see `plain_conductor`).
    pub fn serves_plain_http(&self) -> bool {
        plain_conductor(&self.conductor_url)
    }

    /// Whether this worker keeps its API and instances on loopback: it serves plain HTTP and has no
    /// opt-out.
    fn loopback_only(&self) -> bool {
        self.serves_plain_http() && !self.allow_plain_http
    }

    /// Refuses plain HTTP on an address other machines reach, unless explicitly allowed: the
    /// worker API carries users' tokens and instances' output, instances carry keys and objects.
    /// A plain conductor on another machine is refused too: this worker's API and instances, kept
    /// on loopback, could not be reached from there.
    pub fn check_plain_http(&self) -> Result<(), ConfigError> {
        if !self.loopback_only() {
            return Ok(());
        }
        const WAYS_OUT: &str = "join a conductor that serves TLS (https:// with CONDUCTOR_CA_PIN), \
             or set AEREKOS_ALLOW_PLAIN_HTTP=yes to accept plain HTTP (e.g. behind a TLS-terminating proxy)";
        if let Some(bind) = self.api_bind.filter(|b| !b.ip().is_loopback()) {
            return Err(ConfigError(format!(
                "the worker API would serve plain HTTP on {bind}, which other machines can reach, because the conductor ({}) is plain HTTP; \
                 listen on loopback (WORKER_API_HOST=127.0.0.1), {WAYS_OUT}",
                self.conductor_url
            )));
        }
        // Unresolved (no network yet after a power cut, say): the worker starts and keeps trying.
        let conductor = aerekos_common::net::resolve_url_host(&self.conductor_url);
        if conductor.iter().any(|a| !a.ip().is_loopback()) {
            return Err(ConfigError(format!(
                "the conductor ({}) is plain HTTP on another machine: this worker would have to serve its API and instances in plain HTTP \
                 where that machine reaches them; {WAYS_OUT} on both",
                self.conductor_url
            )));
        }
        Ok(())
    }

    /// Where the instances listen (their `AEREKOS_INSTANCE_HOST`): every interface, but loopback
    /// for a plain worker without the opt-out, as its API.
    pub fn instance_host(&self) -> IpAddr {
        if self.loopback_only() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from([0, 0, 0, 0])
        }
    }
}

pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("WORKER_LABELS: {pair:?} is not key=value")))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configs are only checked here: nothing is bound or dialled (the addresses are IP literals).
    fn config(conductor: &str, api: Option<&str>, allow: bool) -> WorkerConfig {
        let mut c = WorkerConfig::new(conductor, "token", "/nonexistent");
        if let Some(api) = api {
            c.api_bind = Some(api.parse().unwrap());
        }
        c.allow_plain_http = allow;
        c
    }

    #[test]
    fn plain_http_stays_on_loopback_unless_allowed() {
        // aerekos up on a laptop: loopback conductor, loopback API and instances.
        let laptop = config("http://127.0.0.1:8080", None, false);
        assert!(laptop.check_plain_http().is_ok());
        assert!(
            laptop.api_bind.unwrap().ip().is_loopback() && laptop.instance_host().is_loopback()
        );
        // A reachable API of a plain worker is refused, naming the ways out.
        let err = config("http://127.0.0.1:8080", Some("0.0.0.0:8201"), false)
            .check_plain_http()
            .unwrap_err()
            .0;
        assert!(
            err.contains("WORKER_API_HOST") && err.contains("AEREKOS_ALLOW_PLAIN_HTTP"),
            "{err}"
        );
        // So is a plain conductor on another machine: nothing it could reach would listen.
        let err = config("http://192.0.2.10:8080", Some("127.0.0.1:8201"), false)
            .check_plain_http()
            .unwrap_err()
            .0;
        assert!(
            err.contains("another machine") && err.contains("AEREKOS_ALLOW_PLAIN_HTTP"),
            "{err}"
        );
        assert!(
            config("http://192.0.2.10:8080", None, false)
                .check_plain_http()
                .is_err(),
            "the default API host too"
        );
        // With the opt-out both start, listening everywhere.
        for c in [
            config("http://127.0.0.1:8080", Some("0.0.0.0:8201"), true),
            config("http://192.0.2.10:8080", Some("0.0.0.0:8201"), true),
        ] {
            assert!(c.check_plain_http().is_ok());
            assert!(c.instance_host().is_unspecified());
        }
        // A TLS conductor: every interface, nothing to opt out of.
        let tls = config("https://192.0.2.10:8080", None, false);
        assert!(
            tls.check_plain_http().is_ok()
                && tls.api_bind.unwrap().ip().is_unspecified()
                && tls.instance_host().is_unspecified()
        );
    }

    #[test]
    fn the_api_address_takes_ipv6_and_off() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            api_bind_from(
                get(&[("WORKER_API_HOST", "::1"), ("WORKER_API_PORT", "9")]),
                true,
                false
            )
            .unwrap(),
            Some("[::1]:9".parse().unwrap())
        );
        assert_eq!(
            api_bind_from(get(&[("WORKER_API_PORT", "off")]), true, false).unwrap(),
            None
        );
        assert_eq!(
            api_bind_from(get(&[]), true, false).unwrap(),
            Some("127.0.0.1:8201".parse().unwrap())
        );
        assert_eq!(
            api_bind_from(get(&[]), false, false).unwrap(),
            Some("0.0.0.0:8201".parse().unwrap())
        );
        assert!(api_bind_from(get(&[("WORKER_API_HOST", "not an address")]), true, false).is_err());
    }
}

/// `/dev/shm/aerekos-secrets-<SHA-256 of the absolute data directory, 16 hex digits>`: one
/// directory per worker, the same across its restarts, so workers sharing a machine never clear
/// each other's files.
fn default_secret_files_dir(data_dir: &std::path::Path) -> PathBuf {
    use sha2::Digest as _;
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/dev/shm/aerekos-secrets-{hex}"))
}

/// A number of seconds, or a duration such as `30s` or `24h`.
fn seconds(name: &str, v: &str) -> Result<u64, ConfigError> {
    v.trim()
        .parse()
        .or_else(|_| humantime::parse_duration(v.trim()).map(|d| d.as_secs()))
        .map_err(|_| {
            ConfigError(format!(
                "{name}={v:?} is not a number of seconds or a duration such as 30s"
            ))
        })
}
