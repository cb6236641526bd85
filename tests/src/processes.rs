//! A cluster of separate processes: a conductor (`aerekos conductor`) and workers (`aerekos
//! worker`), each with its own data directory and ports, as they run on separate machines. Fault
//! tests pause them (SIGSTOP, as a network cut looks to the others), kill them with SIGKILL and
//! start them again on the same state.
//!
//! Every process writes its log to `<its dir>/log`; a failing test prints them (see
//! [`ProcessCluster::logs`]).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use aerekos_sdk::{Conductor, conductor::types::WorkerStatus};
use nix::{sys::signal::Signal, unistd::Pid};
use tempfile::TempDir;
use uuid::Uuid;

use crate::{
    ADMIN_PASSWORD, WorkerDir, aerekos_bin, eventually, free_port, instance_port_block,
    kill_instances_of,
};

/// One `aerekos` process with its environment, restartable on the same state.
struct Process {
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(aerekos_bin())
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting aerekos");
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, signal: Signal) {
        let pid = self.pid();
        nix::sys::signal::kill(Pid::from_raw(pid as i32), signal).expect("signal");
    }

    /// SIGKILL: no shutdown, no cleanup (a paused process is killed too).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A conductor process.
pub struct ConductorProcess {
    process: Process,
    pub url: String,
    pub dir: TempDir,
    /// The cluster CA bundle, when the conductor serves TLS (`CONDUCTOR_TLS=on`).
    pub ca_pem: Option<String>,
}

/// A worker process; its instances run as its children (in their own process groups) and are
/// killed when this is dropped.
pub struct WorkerProcess {
    process: Process,
    pub name: String,
    pub dir: WorkerDir,
}

pub const CLUSTER_TOKEN: &str = "aerekos_reg_process-cluster-token-0123456789";
/// Heartbeats every second; lost after 4 s of silence.
pub const WORKER_TTL: Duration = Duration::from_secs(4);

impl ConductorProcess {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With more environment (e.g. `BACKUP_INTERVAL`).
    pub async fn start_with(extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let given = |name: &str| extra_env.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let port =
            given("CONDUCTOR_PORT").map_or_else(free_port, |p| p.parse().expect("CONDUCTOR_PORT"));
        let tls = given("CONDUCTOR_TLS") == Some("on");
        let ports = instance_port_block();
        let env = [
            ("CONDUCTOR_HOST", "127.0.0.1".to_owned()),
            ("CONDUCTOR_PORT", port.to_string()),
            // The S3 edge is tested where it is used (up_and_cli.rs); here it would take port 9000.
            ("CONDUCTOR_S3_PORT", "off".to_owned()),
            ("DATA_DIR", dir.path().join("data").display().to_string()),
            ("AEREKOS_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("AEREKOS_REGISTRATION_TOKEN", CLUSTER_TOKEN.to_owned()),
            ("HEARTBEAT_INTERVAL", "1s".to_owned()),
            ("WORKER_TTL", format!("{}s", WORKER_TTL.as_secs())),
            (
                "AEREKOS_INSTANCE_PORTS",
                format!("{}-{}", ports.start(), ports.end()),
            ),
            ("RUST_LOG", "info".to_owned()),
        ];
        let process = Process {
            args: vec!["conductor".into()],
            env: env
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .chain(
                    extra_env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                )
                .collect(),
            log: dir.path().join("log"),
            child: None,
        };
        let scheme = if tls { "https" } else { "http" };
        let mut conductor = Self {
            process,
            url: format!("{scheme}://127.0.0.1:{port}"),
            dir,
            ca_pem: None,
        };
        conductor.start_again().await;
        if tls {
            let pem = std::fs::read_to_string(conductor.dir.path().join("data/tls/ca.pem"))
                .expect("the cluster CA");
            conductor.ca_pem = Some(pem);
        }
        conductor
    }

    /// Starts the (killed) conductor again on its address and state; returns once it is ready.
    pub async fn start_again(&mut self) {
        self.process.spawn();
        let ready = format!("{}/ready", self.url);
        // Readiness only: which certificate the conductor presents is for the tests to check.
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        eventually(30, "the conductor answers /ready", || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                http.get(&ready)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }

    /// The process id (for CPU accounting in benchmarks).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sets `name` for the next start (an operator changing the configuration).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.process.env.retain(|(k, _)| k != name);
        self.process.env.push((name.to_owned(), value.to_owned()));
    }

    /// Deletes the conductor's whole data directory (database, signing key): it must be killed.
    pub fn wipe(&self) {
        assert!(self.process.child.is_none(), "kill the conductor first");
        std::fs::remove_dir_all(self.dir.path().join("data")).expect("wiping the conductor's data");
    }

    pub async fn admin(&self) -> Conductor {
        let c = Conductor::with_trust(&self.url, aerekos_sdk::Transport::new(), &self.trust());
        c.login_as("admin", ADMIN_PASSWORD)
            .await
            .expect("admin logs in");
        c
    }

    /// What a client of this conductor believes: its cluster CA when it serves TLS.
    pub fn trust(&self) -> aerekos_sdk::Trust {
        match &self.ca_pem {
            Some(pem) => {
                aerekos_sdk::Trust::ca_bundle(pem.as_bytes().to_vec()).expect("the CA bundle")
            }
            None => aerekos_sdk::Trust::system(),
        }
    }

    /// The pin workers and the CLI are given (`sha256:…` of the CA bundle).
    pub fn ca_pin(&self) -> String {
        aerekos_sdk::tls::fingerprint(self.ca_pem.as_deref().expect("a TLS conductor").as_bytes())
            .unwrap()
    }
}

impl WorkerProcess {
    pub fn start(conductor: &ConductorProcess, name: &str) -> Self {
        Self::start_with(conductor, name, &[])
    }

    /// With more environment (e.g. `WORKER_TRANSFER_RATE`).
    pub fn start_with(
        conductor: &ConductorProcess,
        name: &str,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let dir = WorkerDir::new();
        let env = [
            ("CONDUCTOR_URL", conductor.url.clone()),
            ("CONDUCTOR_TOKEN", CLUSTER_TOKEN.to_owned()),
            ("DATA_DIR", dir.path().display().to_string()),
            ("WORKER_NAME", name.to_owned()),
            ("WORKER_IP", "127.0.0.1".to_owned()),
            ("WORKER_API_HOST", "127.0.0.1".to_owned()),
            ("WORKER_API_PORT", free_port().to_string()),
            ("WORKER_DOCKER", "off".to_owned()),
            ("WORKER_MICROVM", "off".to_owned()),
            ("HEARTBEAT_INTERVAL", "1".to_owned()),
            ("AEREKOS_EXECUTABLE", aerekos_bin().display().to_string()),
            ("RUST_LOG", "info".to_owned()),
        ];
        let log = dir.path().join("agent.log");
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).chain(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut process = Process {
            args: vec!["worker".into()],
            env: env.collect(),
            log,
            child: None,
        };
        process.spawn();
        Self {
            process,
            name: name.to_owned(),
            dir,
        }
    }

    /// The id the worker was given (once it has joined).
    pub async fn id(&self) -> Uuid {
        let path = self.dir.path().join("identity.json");
        eventually(30, &format!("{} has joined", self.name), || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(path).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                v["worker_id"].as_str()?.parse().ok()
            }
        })
        .await
    }

    /// SIGSTOP: the agent stops answering and heartbeating; its instances keep running.
    pub fn pause(&self) {
        self.process.signal(Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.process.signal(Signal::SIGCONT);
    }

    /// The process id (for CPU accounting in benchmarks).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL of the agent alone: its instances keep running, to be adopted at the next start.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn start_again(&mut self) {
        assert!(self.process.child.is_none(), "kill it first");
        self.process.spawn();
    }

    /// The machine is gone for good: the agent and every instance it started are killed, and its
    /// whole data directory is deleted.
    pub fn lose_for_good(&mut self) {
        self.kill();
        self.dir.kill_instances();
        for entry in std::fs::read_dir(self.dir.path())
            .expect("worker dir")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            }
            .expect("deleting the worker's data");
        }
    }

    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("volumes").join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// Waits up to `secs` for the agent to exit by itself; its exit status.
    pub async fn exited(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let child = self.process.child.as_mut().expect("running");
        for _ in 0..secs * 10 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// Waits until the conductor sees `worker` with `status`.
pub async fn wait_for_worker(admin: &Conductor, worker: Uuid, status: WorkerStatus, secs: u64) {
    eventually(secs, &format!("worker {worker} {status}"), || async {
        let w = admin
            .get_worker()
            .id(worker)
            .send()
            .await
            .ok()?
            .into_inner();
        (w.status == status).then_some(())
    })
    .await;
}

/// The last lines of each process's log, for a failing test's message.
pub fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl ConductorProcess {
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.dir.path().join("log"), lines)
    }
}

/// `aerekos up` (conductor, local worker, services in one process) on `data_dir`, on ports of its
/// own and with no admin password given (so only the database's users can log in).
pub struct UpProcess {
    process: Process,
    pub url: String,
    data_dir: PathBuf,
}

impl UpProcess {
    pub async fn start(data_dir: &Path) -> Self {
        let port = free_port();
        let ports = instance_port_block();
        let env = [
            ("DATA_DIR", data_dir.display().to_string()),
            ("CONDUCTOR_HOST", "127.0.0.1".to_owned()),
            ("CONDUCTOR_PORT", port.to_string()),
            ("CONDUCTOR_S3_PORT", "off".to_owned()),
            ("WORKER_API_HOST", "127.0.0.1".to_owned()),
            ("WORKER_API_PORT", free_port().to_string()),
            ("HEARTBEAT_INTERVAL", "1s".to_owned()),
            (
                "AEREKOS_INSTANCE_PORTS",
                format!("{}-{}", ports.start(), ports.end()),
            ),
            ("RUST_LOG", "info".to_owned()),
        ];
        let log = data_dir.with_extension("up.log");
        let mut process = Process {
            args: vec!["up".into()],
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            log,
            child: None,
        };
        process.spawn();
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/ready");
        let http = reqwest::Client::new();
        let answered = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while !http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await;
        let up = Self {
            process,
            url,
            data_dir: data_dir.to_path_buf(),
        };
        assert!(
            answered.is_ok(),
            "aerekos up did not answer /ready within 30 s:\n{}",
            up.log_tail(30)
        );
        up
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.process.log, lines)
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.process.kill();
        kill_instances_of(&self.data_dir.join("worker"));
    }
}
