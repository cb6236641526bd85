//! The process driver: instances are child processes of the worker, each in its own process group
//! (so they outlive a worker restart and are adopted by the next one), with their output appended to
//! `<data dir>/instances/<id>/output.log`.
//!
//! An instance is recognised after a restart by its pid file *and* the `AEREKOS_INSTANCE_ID` in the
//! process's environment, so a recycled pid is never mistaken for it.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::PathBuf,
    time::Duration,
};

use aerekos_sdk::conductor::types::{InstanceSpec, RuntimeDriver};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::{
    Driver, DriverError, INSTANCE_ENV, Observed, OutputChunk, OutputStream, Platform,
    groups::{Groups, Poll},
    port_in_use,
};

/// A service's output, both streams together.
const OUTPUT_FILE: &str = "output.log";
/// A `run_once` instance's streams, apart.
pub(super) const STDOUT_FILE: &str = "stdout.log";
pub(super) const STDERR_FILE: &str = "stderr.log";

/// The worker's environment variables an instance process inherits.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "LOG_FORMAT",
];

pub struct ProcessDriver {
    platform: Platform,
    /// The instances' process groups, under `<data dir>/instances/<id>/`.
    groups: Groups,
}

impl ProcessDriver {
    pub fn new(data_dir: &std::path::Path, platform: Platform) -> std::io::Result<Self> {
        Ok(Self {
            platform,
            groups: Groups::new(data_dir.join("instances"))?,
        })
    }

    fn instance_dir(&self, id: Uuid) -> PathBuf {
        self.groups.dir(id)
    }

    fn observe_now(&self, id: Uuid) -> Observed {
        let status = match self.groups.poll(id) {
            Poll::Running => return Observed::Running,
            Poll::Unknown => return Observed::Missing,
            Poll::Ended(status) => status,
        };
        // Under the exit recorder, its record is the command's own status (and the only one when
        // it ended while no worker was its parent).
        let (code, signal) =
            super::exit_record::read(&self.instance_dir(id)).unwrap_or_else(|| {
                status.map_or((None, None), |s| {
                    (s.code(), std::os::unix::process::ExitStatusExt::signal(&s))
                })
            });
        Observed::Exited { code, signal }
    }
}

/// The file `program` names: itself when it has a slash, else the first executable of that name
/// on `path_var`. NotFound or PermissionDenied otherwise.
fn find_program(program: &std::path::Path, path_var: Option<&str>) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return match executable(program)? {
            true => Ok(program.to_owned()),
            false => Err(std::io::ErrorKind::PermissionDenied.into()),
        };
    }
    let mut denied = false;
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(true) => return Ok(candidate),
            Ok(false) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        std::io::ErrorKind::PermissionDenied
    } else {
        std::io::ErrorKind::NotFound
    }
    .into())
}

impl Driver for ProcessDriver {
    fn info(&self) -> Vec<RuntimeDriver> {
        vec![RuntimeDriver {
            name: "process".into(),
            version: None,
        }]
    }

    fn start<'a>(
        &'a self,
        id: Uuid,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            let Some(program) = spec.command.first() else {
                return Err(DriverError::Refused(format!(
                    "the process driver runs commands; this instance names only the image {:?}",
                    spec.image.as_deref().unwrap_or("")
                )));
            };
            if let Some(port) = port_in_use(&spec.ports) {
                return Err(DriverError::Refused(format!(
                    "port {port} is already in use on this worker"
                )));
            }
            let dir = self.instance_dir(id);
            std::fs::create_dir_all(&dir)?;
            let open = |name: &str| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(name))
            };
            // A run_once instance's streams are kept apart (a job's attempt records both); a
            // service's are one log, in the order they were written.
            let (stdout, stderr) = if spec.run_once {
                (open(STDOUT_FILE)?, open(STDERR_FILE)?)
            } else {
                let log = open(OUTPUT_FILE)?;
                (log.try_clone()?, log)
            };
            // `aerekos` is the platform's own executable (how built-in services run).
            let executable = match (program.as_str(), &self.platform.executable) {
                ("aerekos", Some(exe)) => exe.clone(),
                _ => PathBuf::from(program),
            };
            let data_dir = spec
                .volume
                .as_deref()
                .map(|v| self.platform.volume(v))
                .transpose()?;
            let not_startable = |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    DriverError::Refused(format!("command not found: {program}"))
                }
                std::io::ErrorKind::PermissionDenied => {
                    DriverError::Refused(format!("command not executable: {program}"))
                }
                _ => DriverError::Refused(format!("{program} could not start: {e}")),
            };
            // A run_once command runs under the exit recorder (see `exit_record`), so its status
            // outlives the worker. The recorder would start anything, so what it cannot run is
            // refused here, as a direct start would be.
            let mut cmd = match (&self.platform.executable, spec.run_once) {
                (Some(recorder), true) => {
                    let path_var = spec
                        .env
                        .get("PATH")
                        .cloned()
                        .or_else(|| std::env::var("PATH").ok());
                    find_program(&executable, path_var.as_deref()).map_err(not_startable)?;
                    let record = dir.join(super::exit_record::FILE);
                    let _ = std::fs::remove_file(&record);
                    let mut cmd = tokio::process::Command::new(recorder);
                    cmd.arg(super::exit_record::COMMAND)
                        .arg(record)
                        .arg("--")
                        .arg(&executable);
                    cmd
                }
                _ => tokio::process::Command::new(&executable),
            };
            // An instance gets its own environment, not the worker's (whose DATA_DIR or
            // DATABASE_PATH would otherwise become the service's): only what locates programs and
            // shapes logs passes through.
            cmd.env_clear()
                .envs(std::env::vars().filter(|(k, _)| INHERITED_ENV.contains(&k.as_str())))
                .args(&spec.command[1..])
                .envs(&spec.env)
                .envs(
                    self.platform
                        .env(spec, data_dir.map(|d| d.display().to_string())),
                )
                .env(INSTANCE_ENV, id.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .current_dir(&dir)
                // Its own process group: it survives the worker's Ctrl-C and restart.
                .process_group(0)
                .kill_on_drop(false);
            let child = cmd.spawn().map_err(not_startable)?;
            let pid = self
                .groups
                .track(id, child)
                .await
                .map_err(|e| DriverError::Refused(format!("{program}: {e}")))?;
            tracing::info!(instance_id = %id, pid, program = %program, "instance started");
            Ok(())
        })
    }

    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            self.groups.stop(id).await;
            Ok(())
        })
    }

    fn observe(&self, id: Uuid) -> BoxFuture<'_, Observed> {
        Box::pin(async move { self.observe_now(id) })
    }

    fn instances(&self) -> BoxFuture<'_, Vec<Uuid>> {
        Box::pin(async move { self.groups.ids() })
    }

    fn logs(&self, id: Uuid, max_bytes: usize) -> BoxFuture<'_, Result<String, DriverError>> {
        Box::pin(async move {
            let dir = self.instance_dir(id);
            if !dir.join(OUTPUT_FILE).exists() && dir.join(STDOUT_FILE).exists() {
                return Ok(streams_tail(&dir, max_bytes)?);
            }
            let chunk = read_file_chunk(&dir.join(OUTPUT_FILE), None, max_bytes)?;
            Ok(String::from_utf8_lossy(&chunk.bytes).into_owned())
        })
    }

    fn terminate(&self, id: Uuid, force: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            self.groups.signal(id, force);
            Ok(())
        })
    }

    fn sweep_outputs(&self, keep: Duration, live: &std::collections::HashSet<Uuid>) {
        // A run_once instance's directory (a service's keeps its one output.log instead).
        let removed = self.groups.sweep(keep, live, STDOUT_FILE);
        if removed > 0 {
            tracing::info!(
                removed,
                "output of ended job attempts past RUN_OUTPUT_KEEP deleted"
            );
        }
    }

    fn output_files(&self, id: Uuid) -> Vec<(Option<OutputStream>, PathBuf)> {
        let dir = self.instance_dir(id);
        let combined = dir.join(OUTPUT_FILE);
        if combined.exists() {
            return vec![(None, combined)];
        }
        stream_files(&dir)
    }

    fn output(
        &self,
        id: Uuid,
        stream: OutputStream,
        offset: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<OutputChunk, DriverError>> {
        Box::pin(async move {
            let file = stream_file(&self.instance_dir(id), stream);
            Ok(read_file_chunk(&file, offset, max_bytes)?)
        })
    }
}

/// The file of one of a run_once instance's streams, kept apart in its directory (the process
/// driver writes them; the microvm driver's QEMU writes its guest's).
pub(super) fn stream_file(dir: &std::path::Path, stream: OutputStream) -> PathBuf {
    dir.join(match stream {
        OutputStream::Stdout => STDOUT_FILE,
        OutputStream::Stderr => STDERR_FILE,
    })
}

/// The stream files of a directory that has them (a run_once instance's, a guest's).
pub(super) fn stream_files(dir: &std::path::Path) -> Vec<(Option<OutputStream>, PathBuf)> {
    [OutputStream::Stdout, OutputStream::Stderr]
        .into_iter()
        .map(|stream| (Some(stream), stream_file(dir, stream)))
        .filter(|(_, path)| path.exists())
        .collect()
}

/// A run_once instance's stdout, then its stderr: the last `max_bytes` in all.
pub(super) fn streams_tail(dir: &std::path::Path, max_bytes: usize) -> std::io::Result<String> {
    let half = max_bytes / 2;
    let out = read_file_chunk(&stream_file(dir, OutputStream::Stdout), None, half)?;
    let err = read_file_chunk(
        &stream_file(dir, OutputStream::Stderr),
        None,
        max_bytes - half,
    )?;
    let mut text = String::from_utf8_lossy(&out.bytes).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.bytes));
    Ok(text)
}

/// Up to `max_bytes` of the file from `offset` (`None`: its end).
pub(super) fn read_file_chunk(
    path: &std::path::Path,
    offset: Option<u64>,
    max_bytes: usize,
) -> std::io::Result<OutputChunk> {
    let mut file = std::fs::File::open(path)?;
    let total = file.metadata()?.len();
    let start = offset
        .unwrap_or_else(|| total.saturating_sub(max_bytes as u64))
        .min(total);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64).read_to_end(&mut bytes)?;
    Ok(OutputChunk {
        offset: start,
        bytes,
        total,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn only_ended_unassigned_job_output_past_its_keep_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform {
            conductor_url: "http://127.0.0.1:9".into(),
            ca_pem: None,
            executable: None,
            volumes_dir: dir.path().join("volumes"),
            instance_host: [127, 0, 0, 1].into(),
            secret_files_dir: dir.path().join("secret-files"),
        };
        let driver = ProcessDriver::new(dir.path(), platform).unwrap();
        let make = |files: &[&str]| {
            let id = Uuid::new_v4();
            let d = driver.instance_dir(id);
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), "x").unwrap();
            }
            id
        };
        let ended = make(&[STDOUT_FILE, STDERR_FILE]);
        let assigned = make(&[STDOUT_FILE, STDERR_FILE]);
        let running = make(&[STDOUT_FILE, "pid"]);
        let service = make(&[OUTPUT_FILE]);
        let live = HashSet::from([assigned]);
        // Kept for a day: nothing is old enough yet.
        driver.sweep_outputs(Duration::from_secs(24 * 3600), &live);
        assert!(driver.instance_dir(ended).exists());
        driver.sweep_outputs(Duration::ZERO, &live);
        assert!(!driver.instance_dir(ended).exists());
        for kept in [assigned, running, service] {
            assert!(driver.instance_dir(kept).exists(), "{kept} was swept");
        }
    }
}
