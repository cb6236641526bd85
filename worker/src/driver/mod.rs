//! Runtime drivers: how a worker runs an instance. One trait, two implementations that pass the same
//! tests: `process` (child processes; always there) and `docker` (containers of the local engine,
//! through bollard, when one answers). [`Runtimes`] puts them together: an instance that names an
//! image runs in Docker, one that names only a command runs as a process.

pub mod docker;
pub mod image;
pub mod process;

use std::net::IpAddr;

use aerekos_sdk::conductor::types::{InstanceSpec, RuntimeDriver};
use futures_util::future::BoxFuture;
use uuid::Uuid;

/// What a driver sees of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Running,
    /// Ended; the code when the driver could collect it.
    Exited { code: Option<i32> },
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

    /// Starts instance `id` (it must not be running).
    fn start<'a>(&'a self, id: Uuid, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<(), DriverError>>;

    /// Stops instance `id` (politely, then by force) and forgets it. Stopping what is not running is fine.
    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>>;

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed>;

    /// Every instance this driver knows of, including ones started before the worker restarted.
    fn instances(&self) -> BoxFuture<'_, Vec<Uuid>>;

    /// The last `max_bytes` of the instance's output.
    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>>;
}

/// The environment variable naming the instance inside it (how a restarted worker recognises it).
pub const INSTANCE_ENV: &str = "AEREKOS_INSTANCE_ID";

/// The first of `ports` that something on this machine already listens on.
pub fn port_in_use(ports: &[u16]) -> Option<u16> {
    ports.iter().copied().find(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_err())
}

/// The worker's drivers together: images go to Docker (when there is an engine), commands to processes.
pub struct Runtimes {
    process: process::ProcessDriver,
    docker: Option<docker::DockerDriver>,
}

impl Runtimes {
    pub fn new(process: process::ProcessDriver, docker: Option<docker::DockerDriver>) -> Self {
        Self { process, docker }
    }
}

impl Driver for Runtimes {
    fn info(&self) -> Vec<RuntimeDriver> {
        let mut all = self.process.info();
        if let Some(d) = &self.docker {
            all.extend(d.info());
        }
        all
    }

    fn start<'a>(&'a self, id: Uuid, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<(), DriverError>> {
        match (&spec.image, &self.docker) {
            (Some(_), Some(docker)) => docker.start(id, spec),
            (Some(image), None) if spec.command.is_empty() => Box::pin(async move {
                Err(DriverError::Refused(format!("image {image} needs the docker driver, and no Docker engine answers on this worker")))
            }),
            // An image without an engine but with a command: the command runs as a process.
            _ => self.process.start(id, spec),
        }
    }

    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            self.process.stop(id).await?;
            if let Some(docker) = &self.docker {
                docker.stop(id).await?;
            }
            Ok(())
        })
    }

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed> {
        Box::pin(async move {
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
            ids.sort();
            ids.dedup();
            ids
        })
    }

    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        Box::pin(async move {
            match (self.process.logs(id, max_bytes).await, &self.docker) {
                (Err(DriverError::Io(e)), Some(docker)) if e.kind() == std::io::ErrorKind::NotFound => docker.logs(id, max_bytes).await,
                (result, _) => result,
            }
        })
    }
}

/// `host:port` for an instance's first port on the worker's address.
pub fn address(ip: IpAddr, spec: &InstanceSpec) -> Option<String> {
    spec.ports.first().map(|port| std::net::SocketAddr::new(ip, *port).to_string())
}
