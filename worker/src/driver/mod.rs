//! Runtime drivers: how a worker runs an instance. One trait; `process` runs child processes
//! (the default, and what the all-in-one uses). A `docker` driver over bollard is still to come.

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
    /// Name and version, as reported in heartbeats.
    fn info(&self) -> RuntimeDriver;

    /// Starts instance `id` (it must not be running). `advertise` is the worker's address.
    fn start<'a>(&'a self, id: Uuid, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<(), DriverError>>;

    /// Stops instance `id` (politely, then by force) and forgets it. Stopping what is not running is fine.
    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>>;

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed>;

    /// Every instance this driver knows of, including ones started before the worker restarted.
    fn instances(&self) -> BoxFuture<'_, Vec<Uuid>>;

    /// The last `max_bytes` of the instance's output.
    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>>;
}

/// `host:port` for an instance's first port on the worker's address.
pub fn address(ip: IpAddr, spec: &InstanceSpec) -> Option<String> {
    spec.ports.first().map(|port| std::net::SocketAddr::new(ip, *port).to_string())
}
