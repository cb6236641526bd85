//! Runtime drivers: how a worker runs an instance. One trait, three implementations: `process`
//! (child processes; always there), `docker` (containers of the local engine, through bollard,
//! when one answers) and `microvm` (QEMU guests, when QEMU, a kernel and the guest agent are
//! found). [`Runtimes`] puts them together: an instance whose spec names `microvm` runs in a
//! guest; otherwise one that names an image runs in Docker, one that names only a command runs as
//! a process.

pub mod docker;
pub mod exit_record;
pub mod groups;
pub mod image;
pub mod microvm;
pub mod process;

use std::net::IpAddr;

use aerekos_sdk::conductor::types::{DriverKind, InstanceSpec, RuntimeDriver, UnavailableDriver};
use futures_util::future::BoxFuture;
use uuid::Uuid;

/// What a driver sees of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Running,
    /// Ended; the code, or the signal that ended it, when the driver could collect them.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The driver knows nothing of it.
    Missing,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The assignment cannot run here as given (command not found, port taken, …): the reason is
    /// reported to the conductor as the instance's failure.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub trait Driver: Send + Sync + 'static {
    /// Names and versions, as reported in heartbeats.
    fn info(&self) -> Vec<RuntimeDriver>;

    /// The drivers that are not there, and why (as reported in heartbeats).
    fn unavailable(&self) -> Vec<UnavailableDriver> {
        vec![]
    }

    /// Starts instance `id` (it must not be running).
    fn start<'a>(
        &'a self,
        id: Uuid,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<(), DriverError>>;

    /// Stops instance `id` (politely, then by force) and forgets it. Stopping what is not running is fine.
    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>>;

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed>;

    /// Every instance this driver knows of, including ones started before the worker restarted.
    fn instances(&self) -> BoxFuture<'_, Vec<Uuid>>;

    /// The last `max_bytes` of the instance's output.
    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>>;

    /// Signals the instance's whole process group or container (SIGTERM, or SIGKILL when
    /// `force`) and leaves it known, so its end is observed as usual (a `run_once` instance's
    /// timeout).
    fn terminate(&self, id: Uuid, force: bool) -> BoxFuture<'_, Result<(), DriverError>>;

    /// Runs `command` once inside instance `id` (a sandbox's container), killing it at `timeout`;
    /// keeps the last `max_bytes` of each stream.
    fn exec<'a>(
        &'a self,
        _id: Uuid,
        _command: &'a [String],
        _env: &'a [(String, String)],
        _timeout: std::time::Duration,
        _max_bytes: usize,
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        Box::pin(async {
            Err(DriverError::Refused(
                "running commands in an instance needs the docker or microvm driver".into(),
            ))
        })
    }

    /// Copies the SQLite database at `database` (relative to volume `volume`) online to `copy`
    /// from inside the instance running on the volume, when that instance is one whose locks the
    /// worker's own SQLite cannot see (a guest's, over 9p). `None`: no such instance, the worker
    /// copies it itself.
    fn snapshot_database<'a>(
        &'a self,
        _volume: &'a str,
        _database: &'a std::path::Path,
        _copy: &'a std::path::Path,
    ) -> Option<BoxFuture<'a, Result<(), DriverError>>> {
        None
    }

    /// Deletes what ended `run_once` instances not in `live` left behind (their output files)
    /// once it is older than `keep`.
    fn sweep_outputs(&self, _keep: std::time::Duration, _live: &std::collections::HashSet<Uuid>) {}

    /// The files the instance's output accumulates in, for log shipping, each with its stream
    /// (`None`: stdout and stderr written to one file). Empty for a container (see
    /// [`Driver::follow_output`]).
    fn output_files(&self, _id: Uuid) -> Vec<(Option<OutputStream>, std::path::PathBuf)> {
        Vec::new()
    }

    /// A container's output from `since_ns` (nanoseconds since the epoch; whole seconds are
    /// what the engine honours) and then as it is written, until the container goes. `None`:
    /// not a container.
    fn follow_output(
        &self,
        _id: Uuid,
        _since_ns: u64,
    ) -> Option<futures_util::stream::BoxStream<'static, FollowedLine>> {
        None
    }

    /// Up to `max_bytes` of one of a `run_once` instance's output streams from byte `offset`
    /// (`None`: its last `max_bytes`).
    fn output(
        &self,
        id: Uuid,
        stream: OutputStream,
        offset: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<OutputChunk, DriverError>>;
}

/// A line of a container's output, with the engine's timestamp.
#[derive(Debug, Clone)]
pub struct FollowedLine {
    pub stream: OutputStream,
    /// Nanoseconds since the epoch, as the engine stamped it.
    pub time_ns: u64,
    pub text: String,
}

/// How a command run in an instance ended.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One of a `run_once` instance's output streams, which are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Part of an output stream: `bytes` start at `offset`; `total` is the stream's length so far.
#[derive(Debug, Clone, Default)]
pub struct OutputChunk {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub total: u64,
}

impl OutputChunk {
    /// The chunk of `all` that `offset` and `max_bytes` ask for.
    pub fn of(all: &[u8], offset: Option<u64>, max_bytes: usize) -> Self {
        let total = all.len() as u64;
        let start = offset
            .unwrap_or_else(|| total.saturating_sub(max_bytes as u64))
            .min(total);
        let end = (start + max_bytes as u64).min(total);
        Self {
            offset: start,
            bytes: all[start as usize..end as usize].to_vec(),
            total,
        }
    }
}

/// The environment variable naming the instance inside it (how a restarted worker recognises it).
pub const INSTANCE_ENV: &str = "AEREKOS_INSTANCE_ID";

/// What the worker adds to every instance it starts: where the conductor is, which executable the
/// program name `aerekos` means, and where named volumes live.
#[derive(Debug, Clone)]
pub struct Platform {
    pub conductor_url: String,
    /// The conductor's CA bundle when it is a pinned cluster CA; instances get it in `AEREKOS_CA_PEM`.
    pub ca_pem: Option<String>,
    /// The aerekos executable (built-in services run `aerekos service <name>`).
    pub executable: Option<std::path::PathBuf>,
    /// `<data dir>/volumes`: a directory per volume name, outliving the instances that use it.
    pub volumes_dir: std::path::PathBuf,
    /// Where instances listen (`AEREKOS_INSTANCE_HOST`): loopback on a worker that serves plain HTTP without the
    /// opt-out (see `WorkerConfig::instance_host`).
    pub instance_host: std::net::IpAddr,
    /// Where secrets taken as files are written (`WorkerConfig::secret_files_dir`).
    pub secret_files_dir: std::path::PathBuf,
}

/// Where a container finds the secrets its instance takes as files (Docker's own convention).
pub const CONTAINER_SECRETS_DIR: &str = "/run/secrets";

impl Platform {
    /// The directory of volume `name`, created if need be.
    pub fn volume(&self, name: &str) -> std::io::Result<std::path::PathBuf> {
        let dir = std::path::absolute(self.volumes_dir.join(name))?;
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Variables every instance gets unless its spec sets them: `PORT`, `AEREKOS_INSTANCE_HOST`, `CONDUCTOR_URL`, the
    /// conductor's CA (`AEREKOS_CA_PEM`) when it serves TLS, and `DATA_DIR` (= `data_dir`) when it
    /// has a volume.
    pub fn env(&self, spec: &InstanceSpec, data_dir: Option<String>) -> Vec<(String, String)> {
        let mut env = vec![];
        if let Some(port) = spec.ports.first() {
            env.push(("PORT".to_owned(), port.to_string()));
        }
        env.push((
            aerekos_common::server::INSTANCE_HOST_ENV.to_owned(),
            self.instance_host.to_string(),
        ));
        env.push(("CONDUCTOR_URL".to_owned(), self.conductor_url.clone()));
        if let Some(pem) = &self.ca_pem {
            env.push((aerekos_sdk::tls::CA_PEM_ENV.to_owned(), pem.clone()));
        }
        if let Some(dir) = data_dir {
            env.push(("DATA_DIR".to_owned(), dir));
        }
        env.retain(|(k, _)| !spec.env.contains_key(k));
        env
    }
}

/// The first of `ports` that something on this machine already listens on.
pub fn port_in_use(ports: &[u16]) -> Option<u16> {
    ports
        .iter()
        .copied()
        .find(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_err())
}

/// The worker's drivers together: images go to Docker (when there is an engine), commands to processes.
pub struct Runtimes {
    process: process::ProcessDriver,
    docker: Option<docker::DockerDriver>,
    microvm: Option<microvm::MicrovmDriver>,
    /// Why the missing ones are missing.
    unavailable: Vec<UnavailableDriver>,
}

impl Runtimes {
    pub fn new(
        process: process::ProcessDriver,
        docker: Option<docker::DockerDriver>,
        microvm: Option<microvm::MicrovmDriver>,
        unavailable: Vec<UnavailableDriver>,
    ) -> Self {
        Self {
            process,
            docker,
            microvm,
            unavailable,
        }
    }

    /// The microvm driver when instance `id` is one of its guests.
    fn guest(&self, id: Uuid) -> Option<&microvm::MicrovmDriver> {
        self.microvm.as_ref().filter(|m| m.knows(id))
    }
}

impl Driver for Runtimes {
    fn info(&self) -> Vec<RuntimeDriver> {
        let mut all = self.process.info();
        if let Some(d) = &self.docker {
            all.extend(d.info());
        }
        if let Some(m) = &self.microvm {
            all.extend(m.info());
        }
        all
    }

    fn unavailable(&self) -> Vec<UnavailableDriver> {
        self.unavailable.clone()
    }

    fn start<'a>(
        &'a self,
        id: Uuid,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        if spec.driver == Some(DriverKind::Microvm) {
            return match &self.microvm {
                Some(microvm) => microvm.start(id, spec),
                None => Box::pin(async {
                    Err(DriverError::Refused(
                        "the microvm driver is not usable on this worker (see its log for why)"
                            .into(),
                    ))
                }),
            };
        }
        match (&spec.image, &self.docker) {
            (Some(_), Some(docker)) => docker.start(id, spec),
            (Some(image), None) if spec.command.is_empty() => Box::pin(async move {
                Err(DriverError::Refused(format!(
                    "image {image} needs the docker driver, and no Docker engine answers on this worker"
                )))
            }),
            // An image without an engine but with a command: the command runs as a process.
            _ => self.process.start(id, spec),
        }
    }

    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            if let Some(microvm) = self.guest(id) {
                return microvm.stop(id).await;
            }
            self.process.stop(id).await?;
            if let Some(docker) = &self.docker {
                docker.stop(id).await?;
            }
            Ok(())
        })
    }

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed> {
        Box::pin(async move {
            if let Some(microvm) = self.guest(id) {
                return microvm.observe(id).await;
            }
            match (self.process.observe(id).await, &self.docker) {
                (Observed::Missing, Some(docker)) => docker.observe(id).await,
                (seen, _) => seen,
            }
        })
    }

    fn instances(&self) -> BoxFuture<'_, Vec<Uuid>> {
        Box::pin(async move {
            let mut ids = self.process.instances().await;
            if let Some(docker) = &self.docker {
                ids.extend(docker.instances().await);
            }
            if let Some(microvm) = &self.microvm {
                ids.extend(microvm.instances().await);
            }
            ids.sort();
            ids.dedup();
            ids
        })
    }

    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        Box::pin(async move {
            if let Some(microvm) = self.guest(id) {
                return microvm.logs(id, max_bytes).await;
            }
            match (self.process.logs(id, max_bytes).await, &self.docker) {
                (Err(DriverError::Io(e)), Some(docker))
                    if e.kind() == std::io::ErrorKind::NotFound =>
                {
                    docker.logs(id, max_bytes).await
                }
                (result, _) => result,
            }
        })
    }

    fn output_files(&self, id: Uuid) -> Vec<(Option<OutputStream>, std::path::PathBuf)> {
        match self.guest(id) {
            Some(microvm) => microvm.output_files(id),
            None => self.process.output_files(id),
        }
    }

    fn follow_output(
        &self,
        id: Uuid,
        since_ns: u64,
    ) -> Option<futures_util::stream::BoxStream<'static, FollowedLine>> {
        if self.guest(id).is_some() || !self.process.output_files(id).is_empty() {
            return None;
        }
        self.docker.as_ref()?.follow_output(id, since_ns)
    }

    fn snapshot_database<'a>(
        &'a self,
        volume: &'a str,
        database: &'a std::path::Path,
        copy: &'a std::path::Path,
    ) -> Option<BoxFuture<'a, Result<(), DriverError>>> {
        self.microvm
            .as_ref()?
            .snapshot_database(volume, database, copy)
    }

    fn sweep_outputs(&self, keep: std::time::Duration, live: &std::collections::HashSet<Uuid>) {
        self.process.sweep_outputs(keep, live);
        if let Some(microvm) = &self.microvm {
            microvm.sweep_outputs(keep, live);
        }
    }

    fn exec<'a>(
        &'a self,
        id: Uuid,
        command: &'a [String],
        env: &'a [(String, String)],
        timeout: std::time::Duration,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        if let Some(microvm) = self.guest(id) {
            return microvm.exec(id, command, env, timeout, max_bytes);
        }
        match &self.docker {
            Some(docker) => docker.exec(id, command, env, timeout, max_bytes),
            None => self.process.exec(id, command, env, timeout, max_bytes),
        }
    }

    fn terminate(&self, id: Uuid, force: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            if let Some(microvm) = self.guest(id) {
                return microvm.terminate(id, force).await;
            }
            self.process.terminate(id, force).await?;
            if let Some(docker) = &self.docker {
                docker.terminate(id, force).await?;
            }
            Ok(())
        })
    }

    fn output(
        &self,
        id: Uuid,
        stream: OutputStream,
        offset: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<OutputChunk, DriverError>> {
        Box::pin(async move {
            if let Some(microvm) = self.guest(id) {
                return microvm.output(id, stream, offset, max_bytes).await;
            }
            match (
                self.process.output(id, stream, offset, max_bytes).await,
                &self.docker,
            ) {
                (Err(DriverError::Io(e)), Some(docker))
                    if e.kind() == std::io::ErrorKind::NotFound =>
                {
                    docker.output(id, stream, offset, max_bytes).await
                }
                (result, _) => result,
            }
        })
    }
}

/// `host:port` for an instance's first port on the worker's address.
pub fn address(ip: IpAddr, spec: &InstanceSpec) -> Option<String> {
    spec.ports
        .first()
        .map(|port| std::net::SocketAddr::new(ip, *port).to_string())
}
