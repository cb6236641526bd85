//! Test support: real servers started in-process on 127.0.0.1:0 with their state in a temporary
//! directory, and SDK clients for them. Tests talk to servers only through `aerekos-sdk` (raw HTTP
//! only where a test must send what the SDK cannot, such as malformed JSON).

pub mod bench;
pub mod processes;

/// The image Docker tests run (no registry is reachable, so it is imported locally).
pub mod docker_image {
    use std::path::Path;

    pub const TEST_IMAGE: &str = "aerekos-test/busybox:1";

    /// Imports the test image (busybox's static binary and one page) if the engine lacks it.
    pub fn ensure_test_image() {
        let present = std::process::Command::new("docker")
            .args(["image", "inspect", TEST_IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            return;
        }
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "the Docker test image is built from /bin/busybox (Debian's busybox-static)"
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::create_dir_all(root.path().join("www")).unwrap();
        std::fs::copy(busybox, root.path().join("bin/busybox")).unwrap();
        std::fs::write(
            root.path().join("www/index.html"),
            "hello from an aerekos test container\n",
        )
        .unwrap();
        let script = format!(
            "tar -C {} -c . | docker import - {TEST_IMAGE}",
            root.path().display()
        );
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "docker import of the test image failed");
    }
}

use std::net::SocketAddr;

use aerekos_conductor::{ConductorConfig, ConductorHandle};
use aerekos_key_manager::{KeyManagerConfig, KeyManagerHandle};
use aerekos_sdk::{Conductor, KeyManager, conductor::types};
use tempfile::TempDir;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const VIEWER_USERNAME: &str = "vera";
pub const VIEWER_PASSWORD: &str = "viewer-password-for-tests";

/// A conductor with an admin and a viewer, its state in a temp dir that outlives restarts.
pub struct TestConductor {
    handle: Option<ConductorHandle>,
    pub url: String,
    pub config: ConductorConfig,
    pub dir: TempDir,
}

impl TestConductor {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults, after `adjust` has changed the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ConductorConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let users_file = dir.path().join("users.json");
        std::fs::write(
            &users_file,
            serde_json::json!([{ "username": VIEWER_USERNAME, "role": "viewer", "password": VIEWER_PASSWORD }]).to_string(),
        )
        .expect("users file");
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = ConductorConfig::new(dir.path().join("data"), bind);
        config.admin_password = Some(ADMIN_PASSWORD.to_owned());
        config.users_file = Some(users_file);
        config.instance_ports = instance_port_block();
        adjust(&mut config);
        let handle = aerekos_conductor::start(config.clone())
            .await
            .expect("conductor starts");
        let url = handle.url();
        Self {
            handle: Some(handle),
            url,
            config,
            dir,
        }
    }

    /// Stops the conductor (as an outage would), keeping its state.
    pub async fn stop_for_now(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
    }

    /// Starts a stopped conductor again on the same address and state.
    pub async fn start_again_on_same_address(&mut self) {
        let addr: SocketAddr = self
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("url is an address");
        let mut config = self.config.clone();
        config.bind = addr;
        let handle = aerekos_conductor::start(config)
            .await
            .expect("conductor restarts on its address");
        self.handle = Some(handle);
    }

    /// Deletes the conductor's database (it must be stopped), as a reset would.
    pub fn wipe_database(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", self.config.database_path.display());
            let _ = std::fs::remove_file(path);
        }
    }

    /// Stops the conductor and starts it again on the same state (on a new port).
    pub async fn restart(&mut self) {
        self.handle
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let handle = aerekos_conductor::start(self.config.clone())
            .await
            .expect("conductor restarts");
        self.url = handle.url();
        self.handle = Some(handle);
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
    }

    pub async fn admin(&self) -> Conductor {
        Conductor::login(&self.url, "admin", ADMIN_PASSWORD)
            .await
            .expect("admin logs in")
    }

    pub async fn viewer(&self) -> Conductor {
        Conductor::login(&self.url, VIEWER_USERNAME, VIEWER_PASSWORD)
            .await
            .expect("viewer logs in")
    }

    pub fn anonymous(&self) -> Conductor {
        Conductor::new(&self.url)
    }

    pub async fn registration_token(&self) -> String {
        self.admin()
            .await
            .get_registration_token()
            .send()
            .await
            .expect("token")
            .into_inner()
            .token
    }
}

/// A plausible machine report.
pub fn resources(cpu_usage_percent: f64, memory_available_bytes: u64) -> types::WorkerResources {
    types::WorkerResources {
        cpu_cores: 8,
        cpu_usage_percent,
        memory_total_bytes: 32 << 30,
        memory_available_bytes,
        disk_total_bytes: 500 << 30,
        disk_free_bytes: 200 << 30,
        network: vec![types::NetworkInterface {
            name: "eth0".into(),
            addresses: vec!["10.0.0.5".into()],
            rx_bytes: 1000,
            tx_bytes: 2000,
        }],
        os: Some("Debian 12".into()),
        drivers: vec![types::RuntimeDriver {
            name: "process".into(),
            version: None,
        }],
        unavailable_drivers: vec![],
        volumes: vec![],
    }
}

pub fn register_request(token: &str, hostname: &str, ip: &str) -> types::RegisterWorkerRequest {
    types::RegisterWorkerRequest {
        registration_token: token.to_owned(),
        worker_id: None,
        worker_credential: None,
        api_url: None,
        name: None,
        hostname: hostname.to_owned(),
        ip_address: ip.to_owned(),
        labels: [("zone".to_owned(), "rack-1".to_owned())]
            .into_iter()
            .collect(),
        resources: resources(12.5, 16 << 30),
    }
}

/// Asserts `err` is an API error with `status` and `code`, and a request id; returns the body.
#[track_caller]
pub fn expect_api_error(
    err: aerekos_sdk::SdkError,
    status: u16,
    code: &str,
) -> aerekos_sdk::ErrorBody {
    match err {
        aerekos_sdk::SdkError::Api { status: got, body } => {
            assert_eq!(got, status, "status of {body:?}");
            assert_eq!(body.code, code, "code of {body:?}");
            assert!(
                !body.request_id.is_empty() && body.request_id != "none",
                "request id in {body:?}"
            );
            assert!(!body.message.is_empty(), "message in {body:?}");
            body
        }
        other => panic!("expected an API error {status} {code}, got {other:?}"),
    }
}

/// The error of a call that must fail.
#[track_caller]
pub fn failure<T: std::fmt::Debug>(
    result: Result<T, aerekos_sdk::ClientError<aerekos_sdk::ErrorBody>>,
) -> aerekos_sdk::SdkError {
    match result {
        Ok(v) => panic!("expected the call to fail, it returned {v:?}"),
        Err(e) => e.into(),
    }
}

/// The master key the test key_manager runs with (base64 of 32 bytes), so tests can inspect what
/// is stored at rest.
pub const TEST_MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A key_manager trusting a test conductor, its state in a temp dir that outlives restarts.
pub struct TestKeyManager {
    handle: Option<KeyManagerHandle>,
    pub url: String,
    pub config: KeyManagerConfig,
    pub dir: TempDir,
}

impl TestKeyManager {
    pub async fn start(conductor: &TestConductor) -> Self {
        Self::start_with(conductor, |_| {}).await
    }

    pub async fn start_with(
        conductor: &TestConductor,
        adjust: impl FnOnce(&mut KeyManagerConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = KeyManagerConfig::new(
            dir.path().join("data"),
            "127.0.0.1:0".parse().unwrap(),
            conductor.url.clone(),
        );
        config.master_key = Some(TEST_MASTER_KEY.to_owned());
        config.deletion_waiting_period = std::time::Duration::from_secs(1);
        adjust(&mut config);
        let handle = aerekos_key_manager::start(config.clone())
            .await
            .expect("key_manager starts");
        Self {
            url: handle.url(),
            handle: Some(handle),
            config,
            dir,
        }
    }

    pub async fn restart(&mut self) {
        self.handle
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let handle = aerekos_key_manager::start(self.config.clone())
            .await
            .expect("key_manager restarts");
        self.url = handle.url();
        self.handle = Some(handle);
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
    }

    /// A client for this key_manager carrying `conductor_client`'s token.
    pub fn client(&self, conductor_client: &Conductor) -> KeyManager {
        KeyManager::with_token(&self.url, conductor_client.token().expect("logged in"))
    }
}

/// Replaces this benchmark's section of docs/benchmarks.md (between `<!-- bench:NAME -->` markers),
/// keeping the other benchmarks' sections.
pub fn write_benchmark_section(name: &str, markdown: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let section = format!("{start}\n{}\n{end}", markdown.trim_end());
    let header = "# Benchmarks\n\nEach figure comes from the command named in its section, on the project's 2-core machine.\n\
                  Timings here are noisy, so each is given against a reference measured in the same run.\n";
    let updated = match (existing.find(&start), existing.find(&end)) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{}{}",
            &existing[..a],
            section,
            &existing[b + end.len()..]
        ),
        _ if existing.trim().starts_with("# Benchmarks") && existing.contains("<!-- bench:") => {
            format!("{}\n\n{section}\n", existing.trim_end())
        }
        _ => format!("{header}\n{section}\n"),
    };
    std::fs::write(&path, updated).expect("writing docs/benchmarks.md");
    println!("wrote {}", path.display());
}

/// The real `aerekos` executable (`AEREKOS_BIN`, which `cargo xtask test` sets, else the debug build).
pub fn aerekos_bin() -> std::path::PathBuf {
    let path = std::env::var_os("AEREKOS_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/aerekos")
        });
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bin aerekos` (cargo xtask test does)",
        path.display()
    );
    path
}

/// Runs the `aerekos` CLI with its credentials in `config`; (success, stdout, stderr).
pub fn cli(config: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let (code, out, err) = cli_exit(config, args, stdin);
    (code == Some(0), out, err)
}

/// [`cli`] with the exit code (None: ended by a signal).
pub fn cli_exit(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(aerekos_bin())
        .args(args)
        .env("AEREKOS_CONFIG_DIR", config)
        .env_remove("AEREKOS_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The AWS CLI: `AEREKOS_AWS_CLI` (which `cargo xtask test` installs into target/tools), else `aws`.
pub fn aws_cli() -> std::path::PathBuf {
    std::env::var_os("AEREKOS_AWS_CLI")
        .map(Into::into)
        .unwrap_or_else(|| "aws".into())
}

/// The AWS CLI against `endpoint` with the access key `id`/`secret` and nothing else of the
/// machine's: no config or credentials files (they would be looked for in `scratch`, which has
/// none), no instance metadata, region us-east-1.
pub fn aws_command(
    endpoint: &str,
    id: &str,
    secret: &str,
    scratch: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(aws_cli());
    command
        .args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", scratch.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.join("no-aws-credentials"),
        );
    command
}

/// A port free on this machine right now (for an instance or server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it returns Some, for up to `secs` seconds; fails the test naming `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A block of instance ports of its own for each conductor a test starts: tests run side by side
/// on one machine, where every worker shares 127.0.0.1.
pub fn instance_port_block() -> std::ops::RangeInclusive<u16> {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 190;
    let start = 20000 + n * 50;
    start..=start + 49
}

/// A worker's data directory that, when dropped (a test passing or panicking), kills every instance
/// process group still recorded in it, so no test leaves processes behind.
pub struct WorkerDir(TempDir);

impl WorkerDir {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// Kills every instance process group recorded here.
    pub fn kill_instances(&self) {
        kill_instances_of(self.0.path());
    }
}

/// Kills every instance process group recorded in the worker data directory `dir`: processes,
/// and the QEMU processes of microVMs.
pub fn kill_instances_of(dir: &std::path::Path) {
    let entries = ["instances", "vms"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(dir.join(kind)).ok())
        .flatten();
    for entry in entries.flatten() {
        // Only a real process group: `kill` with a pid of 1 or a stray sign would reach far more.
        let pid = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for WorkerDir {
    fn drop(&mut self) {
        self.kill_instances();
    }
}

/// A platform service that encrypts through key_manager, as `aerekos service <subcommand>` runs it.
pub struct ServiceKind {
    /// Its catalog name (and its service token's).
    pub name: &'static str,
    pub subcommand: &'static str,
    /// `<PREFIX>_HOST` and `<PREFIX>_PORT` are where it listens.
    pub env_prefix: &'static str,
}

pub const STORAGE_MANAGER: ServiceKind = ServiceKind {
    name: "storage_manager",
    subcommand: "storage-manager",
    env_prefix: "STORAGE_MANAGER",
};
pub const LOGS_MANAGER: ServiceKind = ServiceKind {
    name: "logs_manager",
    subcommand: "logs-manager",
    env_prefix: "LOGS_MANAGER",
};
pub const METRICS_MANAGER: ServiceKind = ServiceKind {
    name: "metrics_manager",
    subcommand: "metrics-manager",
    env_prefix: "METRICS_MANAGER",
};
pub const SECRETS_MANAGER: ServiceKind = ServiceKind {
    name: "secrets_manager",
    subcommand: "secrets-manager",
    env_prefix: "SECRETS_MANAGER",
};

/// A platform service run as its own process (storage_manager, secrets_manager), so tests can
/// measure its memory and kill it mid-operation. It trusts `conductor`'s tokens, encrypts through
/// the key_manager at `key_manager_url` with a service token from that conductor, and keeps its
/// state in a temp dir that outlives restarts.
pub struct TestService {
    kind: &'static ServiceKind,
    child: Option<std::process::Child>,
    pub url: String,
    pub dir: TempDir,
    env: Vec<(String, String)>,
}

impl TestService {
    pub async fn start(
        kind: &'static ServiceKind,
        conductor: &TestConductor,
        key_manager_url: &str,
    ) -> Self {
        Self::start_with(kind, conductor, key_manager_url, None, &[]).await
    }

    /// With a service token living `token_secs` (default: the conductor's 30 days) and more
    /// environment.
    pub async fn start_with(
        kind: &'static ServiceKind,
        conductor: &TestConductor,
        key_manager_url: &str,
        token_secs: Option<u64>,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let admin = conductor.admin().await;
        let token = admin
            .create_service_token()
            .body_map(|b| b.service(kind.name).expires_in_secs(token_secs))
            .send()
            .await
            .unwrap()
            .into_inner()
            .token;
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let env = vec![
            (format!("{}_HOST", kind.env_prefix), "127.0.0.1".to_owned()),
            (format!("{}_PORT", kind.env_prefix), port.to_string()),
            (
                "DATA_DIR".to_owned(),
                dir.path().join("data").display().to_string(),
            ),
            ("CONDUCTOR_URL".to_owned(), conductor.url.clone()),
            ("KEY_MANAGER_URL".to_owned(), key_manager_url.to_owned()),
            ("AEREKOS_SERVICE_TOKEN".to_owned(), token),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
        ];
        let env = env
            .into_iter()
            .chain(
                extra_env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        let mut sm = Self {
            kind,
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            env,
        };
        sm.spawn().await;
        sm
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("service.log"))
            .unwrap();
        let child = std::process::Command::new(aerekos_bin())
            .args(["service", self.kind.subcommand])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.kind.name));
        self.child = Some(child);
        // Ready (its database answers), not /health, which may fail on purpose (token renewal).
        let health = format!("{}/ready", self.url);
        let http = reqwest::Client::new();
        eventually(30, &format!("{} answers /ready", self.kind.name), || {
            let (http, health) = (http.clone(), health.clone());
            async move {
                http.get(&health)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the process outright (SIGKILL): no shutdown, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory (after [`Self::kill`]).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    /// A line of `/proc/<pid>/status` in KiB: `VmHWM` is the peak resident memory so far, `VmRSS` now.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The log the process wrote (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// A storage_manager client for this service carrying `conductor_client`'s token.
    pub fn storage_client(&self, conductor_client: &Conductor) -> aerekos_sdk::StorageManager {
        aerekos_sdk::StorageManager::with_token(
            &self.url,
            conductor_client.token().expect("logged in"),
        )
    }

    /// A secrets_manager client for this service carrying `token`.
    pub fn secrets_client(&self, token: impl Into<String>) -> aerekos_sdk::SecretsManager {
        aerekos_sdk::SecretsManager::with_token(&self.url, token)
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Files under `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A secrets_manager value of these bytes.
pub fn secret_bytes(value: &[u8]) -> aerekos_sdk::secrets_manager::types::SecretValue {
    use base64::Engine as _;
    aerekos_sdk::secrets_manager::types::SecretValue {
        bytes: Some(base64::engine::general_purpose::STANDARD.encode(value)),
        json: Default::default(),
    }
}

/// A secret to create, with `value` as its version 1 when given.
pub fn new_secret(
    name: &str,
    value: Option<aerekos_sdk::secrets_manager::types::SecretValue>,
) -> aerekos_sdk::secrets_manager::types::CreateSecretRequest {
    aerekos_sdk::secrets_manager::types::CreateSecretRequest {
        name: name.into(),
        description: None,
        encryption_key: None,
        max_versions: None,
        tags: Default::default(),
        value,
    }
}

/// A Python app that answers its `DB_PASSWORD` at `/api/<name>/secret`, the file `DB_FILE` names
/// at `/api/<name>/file` (its path at `/api/<name>/file-path`), and serves a rotation
/// endpoint at `/api/<name>/rotate` (`/api/<name>/fail` fails), for secret injection tests.
pub const SECRET_APP: &str = r#"
import base64, json, os, sys, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
NAME = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def answer(self, code, body, kind="text/plain"):
        self.send_response(code); self.send_header("content-type", kind); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        if self.path == "/health": return self.answer(200, b"ok")
        if self.path == "/api/%s/secret" % NAME: return self.answer(200, os.environ.get("DB_PASSWORD", "<unset>").encode())
        if self.path == "/api/%s/file" % NAME: return self.answer(200, open(os.environ["DB_FILE"], "rb").read())
        if self.path == "/api/%s/file-path" % NAME: return self.answer(200, os.environ.get("DB_FILE", "<unset>").encode())
        self.answer(404, b"")
    def do_POST(self):
        length = int(self.headers.get("content-length", 0)); call = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/api/%s/rotate" % NAME:
            value = "rotated-%s-after-%d" % (uuid.uuid4().hex[:8], call.get("current_version", -1))
            return self.answer(200, json.dumps({"value": {"bytes": base64.b64encode(value.encode()).decode()}}).encode(), "application/json")
        self.answer(500, b"the rotation endpoint is down")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Defines `name` as a process service running [`SECRET_APP`] (its script written into `dir`).
pub async fn secret_app(
    admin: &aerekos_sdk::Conductor,
    name: &str,
    dir: &std::path::Path,
    extra: impl FnOnce(&mut aerekos_sdk::conductor::types::ServiceDefinition),
) {
    let script = dir.join(format!("{name}.py"));
    std::fs::write(&script, SECRET_APP).unwrap();
    let mut def: aerekos_sdk::conductor::types::ServiceDefinition =
        aerekos_sdk::conductor::types::ServiceDefinition::builder()
            .name(name)
            .try_into()
            .unwrap();
    def.command = vec![
        "python3".into(),
        "-u".into(),
        script.display().to_string(),
        name.into(),
    ];
    def.default_resources = Some(aerekos_sdk::conductor::types::ResourceSpec {
        cpu_millicores: 50,
        memory_mb: 32,
        disk_mb: 0,
    });
    extra(&mut def);
    admin.define_service().body(def).send().await.unwrap();
}

/// The key the state-safety tests (volumes, microVM guests) keep data under, and what they
/// encrypt with it.
pub const PRECIOUS_KEY: &str = "precious";
pub const CROWN_JEWELS: &[u8] = b"the crown jewels";

/// Creates [`PRECIOUS_KEY`] and encrypts [`CROWN_JEWELS`] under it: the ciphertext.
pub async fn encrypt_crown_jewels(km: &KeyManager) -> String {
    use base64::Engine as _;
    km.create_key()
        .body_map(|b| b.name(PRECIOUS_KEY))
        .send()
        .await
        .expect("create key");
    km.encrypt()
        .key(PRECIOUS_KEY)
        .body_map(|b| b.plaintext(base64::engine::general_purpose::STANDARD.encode(CROWN_JEWELS)))
        .send()
        .await
        .expect("encrypt")
        .into_inner()
        .ciphertext
}

/// The plaintext of `ciphertext` under [`PRECIOUS_KEY`].
pub async fn decrypt_precious(
    km: &KeyManager,
    ciphertext: &str,
) -> Result<Vec<u8>, aerekos_sdk::SdkError> {
    use base64::Engine as _;
    let r = km
        .decrypt()
        .key(PRECIOUS_KEY)
        .body_map(|b| b.ciphertext(ciphertext))
        .send()
        .await
        .map_err(aerekos_sdk::SdkError::from)?;
    Ok(base64::engine::general_purpose::STANDARD
        .decode(r.into_inner().plaintext)
        .expect("base64 plaintext"))
}

/// Checks that commands run side by side overlapped: each printed the guest's or host's uptime
/// (the first field of `/proc/uptime`) when it started and when it ended, and the last to start
/// started before the first to end ended.
pub fn assert_ran_together(outputs: &[Option<&str>], what: &str) {
    let times: Vec<(f64, f64)> = outputs
        .iter()
        .map(|out| {
            let mut lines = out.unwrap().lines().map(|l| l.parse::<f64>().unwrap());
            (lines.next().unwrap(), lines.next().unwrap())
        })
        .collect();
    let last_start = times.iter().map(|t| t.0).fold(f64::MIN, f64::max);
    let first_end = times.iter().map(|t| t.1).fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "{what}: {times:?}");
}

/// The admin password of the platforms [`up`] starts.
pub const PASSWORD: &str = "up-test-admin-password";

/// `aerekos up` as a user runs it: the real executable in a fresh directory, its own process.
pub struct Up {
    pub child: std::process::Child,
    /// Where its worker keeps instances (killed with it if a test fails half-way).
    pub worker_dir: std::path::PathBuf,
    pub url: String,
    /// The conductor's S3 edge (on a free port here; 9000 by default).
    pub s3: Option<String>,
    pub lines: Vec<String>,
}

pub fn up(dir: &std::path::Path, ports: &std::ops::RangeInclusive<u16>) -> Up {
    up_with(dir, ports, &[])
}

/// [`up`] with more environment (it wins over the defaults here).
pub fn up_with(
    dir: &std::path::Path,
    ports: &std::ops::RangeInclusive<u16>,
    env: &[(&str, &str)],
) -> Up {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(aerekos_bin())
        .arg("up")
        .current_dir(dir)
        .env("CONDUCTOR_PORT", "0")
        .env("CONDUCTOR_HOST", "127.0.0.1")
        .env("CONDUCTOR_S3_PORT", "0")
        .env("WORKER_API_PORT", "off")
        .env("HEARTBEAT_INTERVAL", "1")
        .env("AEREKOS_ADMIN_PASSWORD", PASSWORD)
        .env(
            "AEREKOS_INSTANCE_PORTS",
            format!("{}-{}", ports.start(), ports.end()),
        )
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = vec![];
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut s3) = (None, None);
    // Everything up prints before it waits for Ctrl-C ends with the Ctrl-C line.
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "aerekos up ended early: {lines:?}"
        );
        if let Some(u) = line.trim().strip_prefix("aerekos conductor listening on ") {
            url = Some(u.to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("S3 endpoint:") {
            s3 = rest.split_whitespace().next().map(str::to_owned);
        }
        lines.push(line.trim_end().to_owned());
        if line.contains("Ctrl-C stops") {
            break;
        }
    }
    Up {
        child,
        worker_dir: dir.join("data/worker"),
        url: url.expect("the listening line"),
        s3,
        lines,
    }
}

/// The pid of a service's instance (its process group's leader) on one of the workers whose data
/// directories are `worker_dirs` (the all-in-one worker's is `Up::worker_dir`; a joined worker
/// may hold the instance as well, placement spreads). Waits for the instance's pid file: the
/// worker writes it once the process is started, so an instance the worker is (re)starting has
/// none for a moment.
pub async fn instance_pid(
    admin: &aerekos_sdk::Conductor,
    worker_dirs: &[&std::path::Path],
    service: &str,
) -> i32 {
    let mut last = String::new();
    for _ in 0..60 {
        let deployment = admin
            .get_deployment()
            .name(service)
            .send()
            .await
            .unwrap()
            .into_inner();
        for instance in &deployment.instances {
            for dir in worker_dirs {
                let pid_file = dir
                    .join("instances")
                    .join(instance.id.to_string())
                    .join("pid");
                if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                    return pid.trim().parse().unwrap();
                }
            }
        }
        last = format!("{:?}", deployment.instances);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("no instance of {service} with a pid file under {worker_dirs:?} in 30 s: {last}");
}

/// A test that fails half-way leaves neither `aerekos up` nor its instances running: they would
/// hold instance ports the next test binary's platforms are given.
impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        kill_instances_of(&self.worker_dir);
    }
}

impl Up {
    /// Ctrl-C, and the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        assert!(pid > 1);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("aerekos up did not stop within 30 s of Ctrl-C");
    }
}

/// A worker of its own: `aerekos worker` as a process with its own data directory, joined to the
/// conductor at `url` as `name` (the Docker engine is used when one answers). Killed with the
/// returned [`JoinedWorker`].
pub async fn join_worker(admin: &aerekos_sdk::Conductor, url: &str, name: &str) -> JoinedWorker {
    join_worker_with(admin, url, name, &[]).await
}

/// [`join_worker`] with more environment (it wins over the defaults here).
pub async fn join_worker_with(
    admin: &aerekos_sdk::Conductor,
    url: &str,
    name: &str,
    env: &[(&str, &str)],
) -> JoinedWorker {
    let registration = admin
        .get_registration_token()
        .send()
        .await
        .unwrap()
        .into_inner()
        .token;
    let dir = WorkerDir::new();
    let mut command = std::process::Command::new(aerekos_bin());
    command
        .arg("worker")
        .env("CONDUCTOR_URL", url)
        .env("CONDUCTOR_TOKEN", registration)
        .env("DATA_DIR", dir.path())
        .env("WORKER_NAME", name)
        .env("WORKER_API_PORT", "off")
        .env("HEARTBEAT_INTERVAL", "1")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = command.spawn().unwrap();
    let id = eventually(60, &format!("worker {name} joins"), || async {
        let workers = admin.list_workers().send().await.ok()?.into_inner().workers;
        workers.into_iter().find(|w| w.name == name).map(|w| w.id)
    })
    .await;
    JoinedWorker {
        child,
        command,
        dir,
        id,
    }
}

pub struct JoinedWorker {
    child: std::process::Child,
    command: std::process::Command,
    /// Dropped after the process: its instances are killed with it.
    dir: WorkerDir,
    pub id: uuid::Uuid,
}

impl JoinedWorker {
    /// Its data directory (`instances/<id>/` holds each of its instances' files).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// SIGKILL, then the same worker started again on its data directory (its instances run on).
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = self.command.spawn().unwrap();
    }
}

impl Drop for JoinedWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
