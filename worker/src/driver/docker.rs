//! The docker driver: instances are containers of the local Docker engine, reached through bollard.
//! Each container is named `aerekos-<instance id>` and labelled as this worker's, so a restarted
//! worker adopts running containers instead of starting duplicates. Images are never pulled (there
//! may be no registry): an image must be present on the worker.

use std::collections::HashMap;

use aerekos_sdk::conductor::types::{InstanceSpec, RuntimeDriver};
use bollard::{
    Docker, body_full,
    errors::Error as DockerError,
    models::{ContainerCreateBody, HostConfig},
    query_parameters::{
        BuildImageOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions,
        KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
    },
};
use futures_util::{StreamExt as _, future::BoxFuture};
use uuid::Uuid;

use super::{
    Driver, DriverError, ExecOutput, INSTANCE_ENV, Observed, OutputChunk, OutputStream, Platform,
    port_in_use,
};

const MANAGED_LABEL: &str = "aerekos.managed";
const INSTANCE_LABEL: &str = "aerekos.instance";
/// Which worker a container is (its data directory): several workers may share one engine, and
/// each must adopt, and stop as unassigned, only its own containers.
const OWNER_LABEL: &str = "aerekos.worker";

pub struct DockerDriver {
    docker: Docker,
    version: String,
    platform: Option<Platform>,
    /// This worker's [`OWNER_LABEL`] value.
    owner: String,
}

/// A container's followed log as lines with their engine timestamps; ends with the container
/// (or the engine's error, logged at debug: the shipper follows again while the instance runs).
fn async_stream_of(
    docker: Docker,
    name: String,
    options: bollard::query_parameters::LogsOptions,
) -> futures_util::stream::BoxStream<'static, super::FollowedLine> {
    use bollard::container::LogOutput;
    docker
        .logs(&name, Some(options))
        .take_while(|item| {
            if let Err(e) = item {
                tracing::debug!(error = %e, "following a container's output ended");
            }
            std::future::ready(item.is_ok())
        })
        .filter_map(|item| async move {
            let (stream, bytes) = match item.ok()? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (OutputStream::Stdout, message)
                }
                LogOutput::StdErr { message } => (OutputStream::Stderr, message),
                LogOutput::StdIn { .. } => return None,
            };
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches(['\n', '\r']);
            // `timestamps`: each line starts with the engine's RFC 3339 time and a space.
            let (stamp, line) = text.split_once(' ').unwrap_or((text, ""));
            let time_ns = chrono::DateTime::parse_from_rfc3339(stamp)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .map_or(0, |n| n.max(0) as u64);
            Some(super::FollowedLine {
                stream,
                time_ns,
                text: line.to_owned(),
            })
        })
        .boxed()
}

fn container_name(id: Uuid) -> String {
    format!("aerekos-{id}")
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Docker's own message, without bollard's wrapping.
fn docker_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl DockerDriver {
    /// Connects to the local engine (DOCKER_HOST or the default socket); Err when none answers.
    pub async fn connect() -> Result<Self, String> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
        let version = tokio::time::timeout(std::time::Duration::from_secs(3), docker.version())
            .await
            .map_err(|_| "the Docker engine did not answer within 3 s".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(Self {
            docker,
            version: version.version.unwrap_or_default(),
            platform: None,
            owner: String::new(),
        })
    }

    /// Labels the containers it makes as `owner`'s and knows only those (and unlabelled ones,
    /// made before containers were labelled with their worker).
    pub fn owned_by(mut self, owner: String) -> Self {
        self.owner = owner;
        self
    }

    /// The engine's client (the microvm driver exports images through it).
    pub fn client(&self) -> Docker {
        self.docker.clone()
    }

    /// Gives containers the platform's environment and volumes.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    /// Builds the aerekos service image from the executable at `exe` unless it is present already;
    /// returns its tag. Err says why not (the executable is not static, or the build failed).
    pub async fn ensure_service_image(&self, exe: &std::path::Path) -> Result<String, String> {
        let tag = super::image::service_image_tag();
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let executable = super::image::read_static_executable(exe)?;
        let context = super::image::build_context(&executable).map_err(|e| e.to_string())?;
        let options = BuildImageOptionsBuilder::default()
            .t(&tag)
            .dockerfile("Dockerfile")
            .rm(true)
            .build();
        let mut build = self
            .docker
            .build_image(options, None, Some(body_full(context.into())));
        while let Some(step) = build.next().await {
            let step = step.map_err(|e| format!("building {tag}: {}", docker_message(&e)))?;
            if let Some(error) = step.error {
                return Err(format!("building {tag}: {error}"));
            }
        }
        tracing::info!(image = %tag, from = %exe.display(), "built the aerekos service image");
        Ok(tag)
    }

    async fn remove(&self, id: Uuid) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = self
            .docker
            .remove_container(&container_name(id), Some(options))
            .await
        {
            if !is_not_found(&e) {
                tracing::warn!(instance_id = %id, error = %e, "removing the container failed");
            }
        }
    }
}

impl Driver for DockerDriver {
    fn info(&self) -> Vec<RuntimeDriver> {
        vec![RuntimeDriver {
            name: "docker".into(),
            version: Some(self.version.clone()),
        }]
    }

    fn start<'a>(
        &'a self,
        id: Uuid,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            let Some(image) = spec.image.as_deref() else {
                return Err(DriverError::Refused(
                    "the docker driver runs images; this instance names no image".into(),
                ));
            };
            if let Err(e) = self.docker.inspect_image(image).await {
                return Err(DriverError::Refused(if is_not_found(&e) {
                    format!(
                        "image {image} is not on this worker (images are not pulled: build or load it here first)"
                    )
                } else {
                    format!(
                        "the Docker engine could not look up image {image}: {}",
                        docker_message(&e)
                    )
                }));
            }
            if let Some(port) = port_in_use(&spec.ports) {
                return Err(DriverError::Refused(format!(
                    "port {port} is already in use on this worker"
                )));
            }
            // A container left from an earlier run of this instance (exited) is replaced.
            self.remove(id).await;
            // Host networking: the instance listens on its worker's own address and port, and reaches
            // the conductor at the address the worker does (even 127.0.0.1).
            let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            env.push(format!("{INSTANCE_ENV}={id}"));
            let mut binds = vec![];
            // Secrets taken as files: their directory, read-only where containers look for them.
            if let Some(files) = self
                .platform
                .as_ref()
                .map(|p| crate::secrets::files_dir(&p.secret_files_dir, id))
                .filter(|d| d.is_dir())
            {
                binds.push(format!(
                    "{}:{}:ro",
                    files.display(),
                    super::CONTAINER_SECRETS_DIR
                ));
            }
            let data_dir = match (&spec.volume, &self.platform) {
                (Some(volume), Some(platform)) => {
                    binds.push(format!("{}:/data", platform.volume(volume)?.display()));
                    Some("/data".to_owned())
                }
                _ => None,
            };
            match &self.platform {
                Some(platform) => env.extend(
                    platform
                        .env(spec, data_dir)
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}")),
                ),
                None => env.extend(spec.ports.first().map(|port| format!("PORT={port}"))),
            }
            let labels = HashMap::from([
                (MANAGED_LABEL.to_owned(), "true".to_owned()),
                (INSTANCE_LABEL.to_owned(), id.to_string()),
                (OWNER_LABEL.to_owned(), self.owner.clone()),
            ]);
            let body = ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
                env: Some(env),
                labels: Some(labels),
                host_config: Some(HostConfig {
                    network_mode: Some("host".into()),
                    binds: (!binds.is_empty()).then_some(binds),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let name = container_name(id);
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            self.docker
                .create_container(Some(options), body)
                .await
                .map_err(|e| {
                    DriverError::Refused(format!(
                        "the Docker engine could not create it: {}",
                        docker_message(&e)
                    ))
                })?;
            if let Err(e) = self
                .docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
            {
                self.remove(id).await;
                return Err(DriverError::Refused(format!(
                    "the Docker engine could not start it: {}",
                    docker_message(&e)
                )));
            }
            tracing::info!(instance_id = %id, image, "container started");
            Ok(())
        })
    }

    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            let options = StopContainerOptionsBuilder::default().t(5).build();
            match self
                .docker
                .stop_container(&container_name(id), Some(options))
                .await
            {
                Ok(()) => tracing::info!(instance_id = %id, "container stopped"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(instance_id = %id, error = %e, "stopping the container failed; removing it by force")
                }
            }
            self.remove(id).await;
            Ok(())
        })
    }

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed> {
        Box::pin(async move {
            match self
                .docker
                .inspect_container(&container_name(id), None::<InspectContainerOptions>)
                .await
            {
                Ok(info) => {
                    let state = info.state.unwrap_or_default();
                    if state.running == Some(true) {
                        Observed::Running
                    } else {
                        Observed::Exited {
                            code: state.exit_code.map(|c| c as i32),
                            signal: None,
                        }
                    }
                }
                Err(_) => Observed::Missing,
            }
        })
    }

    fn instances(&self) -> BoxFuture<'_, Vec<Uuid>> {
        Box::pin(async move {
            let filters = HashMap::from([("label", vec![format!("{MANAGED_LABEL}=true")])]);
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            match self.docker.list_containers(Some(options)).await {
                Ok(containers) => containers
                    .iter()
                    .filter_map(|c| {
                        let labels = c.labels.as_ref()?;
                        if labels.get(OWNER_LABEL).is_some_and(|o| *o != self.owner) {
                            return None;
                        }
                        labels
                            .get(INSTANCE_LABEL)
                            .and_then(|id| Uuid::parse_str(id).ok())
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "listing containers failed");
                    Vec::new()
                }
            }
        })
    }

    fn follow_output(
        &self,
        id: Uuid,
        since_ns: u64,
    ) -> Option<futures_util::stream::BoxStream<'static, super::FollowedLine>> {
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(i32::try_from(since_ns / 1_000_000_000).unwrap_or(i32::MAX))
            .build();
        let docker = self.docker.clone();
        let name = container_name(id);
        let stream = async_stream_of(docker, name, options);
        Some(stream)
    }

    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        Box::pin(async move {
            let options = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail("2000")
                .build();
            let mut stream = self.docker.logs(&container_name(id), Some(options));
            let mut out = Vec::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) => out.extend_from_slice(chunk.as_ref()),
                    Err(e) if is_not_found(&e) => {
                        return Err(DriverError::Io(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such container",
                        )));
                    }
                    Err(e) => return Err(DriverError::Io(std::io::Error::other(e.to_string()))),
                }
            }
            let start = out.len().saturating_sub(max_bytes);
            Ok(String::from_utf8_lossy(&out[start..]).into_owned())
        })
    }

    fn terminate(&self, id: Uuid, force: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            let signal = if force { "SIGKILL" } else { "SIGTERM" };
            let options = KillContainerOptionsBuilder::new().signal(signal).build();
            match self
                .docker
                .kill_container(&container_name(id), Some(options))
                .await
            {
                Ok(()) => {
                    tracing::info!(instance_id = %id, signal, "container signalled");
                    Ok(())
                }
                // Not there, or not running any more: nothing to signal.
                Err(e) if is_not_found(&e) => Ok(()),
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) => Ok(()),
                Err(e) => Err(DriverError::Io(std::io::Error::other(e.to_string()))),
            }
        })
    }

    fn exec<'a>(
        &'a self,
        id: Uuid,
        command: &'a [String],
        env: &'a [(String, String)],
        timeout: std::time::Duration,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        Box::pin(async move {
            let failed = |e: DockerError| {
                if is_not_found(&e) {
                    DriverError::Refused(format!(
                        "the sandbox's container is not on this worker: {}",
                        docker_message(&e)
                    ))
                } else {
                    DriverError::Refused(docker_message(&e))
                }
            };
            let config = bollard::models::ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                ..Default::default()
            };
            let created = self
                .docker
                .create_exec(&container_name(id), config)
                .await
                .map_err(failed)?;
            let started = self
                .docker
                .start_exec(&created.id, None)
                .await
                .map_err(failed)?;
            let bollard::exec::StartExecResults::Attached { mut output, .. } = started else {
                return Err(DriverError::Refused(
                    "the engine did not attach to the command".into(),
                ));
            };
            let mut out = ExecOutput::default();
            // Only the last `max_bytes` of each stream are kept (a bounded tail).
            let keep = |buf: &mut Vec<u8>, bytes: &[u8]| {
                buf.extend_from_slice(bytes);
                if buf.len() > 2 * max_bytes {
                    buf.drain(..buf.len() - max_bytes);
                }
            };
            let read = async {
                while let Some(item) = output.next().await {
                    match item {
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            keep(&mut out.stderr, &message)
                        }
                        Ok(other) => keep(&mut out.stdout, other.as_ref()),
                        Err(_) => break,
                    }
                }
            };
            if tokio::time::timeout(timeout, read).await.is_err() {
                out.timed_out = true;
                // The command's own process, by its host pid (the engine has no call to stop an exec).
                if let Ok(info) = self.docker.inspect_exec(&created.id).await {
                    if let Some(pid) = info.pid.filter(|p| *p > 1) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            for buf in [&mut out.stdout, &mut out.stderr] {
                if buf.len() > max_bytes {
                    buf.drain(..buf.len() - max_bytes);
                }
            }
            // The exit code is set once the engine has seen the process end.
            for _ in 0..50 {
                match self.docker.inspect_exec(&created.id).await {
                    Ok(info) if info.running != Some(true) => {
                        out.exit_code = info.exit_code.map(|c| c as i32);
                        break;
                    }
                    Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                    Err(_) => break,
                }
            }
            Ok(out)
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
            // The engine keeps the streams apart; it serves them whole, so a chunk is cut here.
            let options = LogsOptionsBuilder::default()
                .stdout(stream == OutputStream::Stdout)
                .stderr(stream == OutputStream::Stderr)
                .build();
            let mut logs = self.docker.logs(&container_name(id), Some(options));
            let mut all = Vec::new();
            while let Some(item) = logs.next().await {
                match item {
                    Ok(chunk) => all.extend_from_slice(chunk.as_ref()),
                    Err(e) if is_not_found(&e) => {
                        return Err(DriverError::Io(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such container",
                        )));
                    }
                    Err(e) => return Err(DriverError::Io(std::io::Error::other(e.to_string()))),
                }
            }
            Ok(OutputChunk::of(&all, offset, max_bytes))
        })
    }
}
