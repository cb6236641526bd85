//! The microvm driver: each instance is a QEMU guest on `-M microvm`, booted from a kernel and an
//! initramfs the worker makes for it ([`initramfs`]): the instance's root filesystem with the
//! guest agent (`aerekos-guest`, in `worker/guest`) as its init. KVM where the CPU offers
//! hardware virtualization (`vmx`/`svm`) and `/dev/kvm` is there, QEMU's own emulation (TCG)
//! otherwise.
//!
//! - **What the guest says.** The agent runs the command with stdout and stderr on two
//!   virtio-serial ports and writes its end (`code N`, `signal N`) to a third. QEMU writes each
//!   port to a file in `<data dir>/vms/<id>/` (`stdout.log`, `stderr.log`, `exit`), so nothing
//!   depends on a worker listening: a worker that restarts finds it all there. When the command
//!   ends the agent powers the guest off and QEMU exits: a guest lives as long as its command,
//!   and a crash is a QEMU exit the worker restarts like a process's.
//! - **Adoption.** QEMU runs in its own process group with `AEREKOS_INSTANCE_ID` in its
//!   environment and its pid in `vms/<id>/pid`, as the process driver's children do, so it
//!   outlives the worker and the next one recognises it (never a second VM).
//! - **Network.** QEMU's user-mode network (slirp) with `restrict=on`: the guest is 10.0.2.15 and
//!   can open no connection out (not to the host's loopback, the LAN or a metadata service; a
//!   service's one exception is the conductor, below), and
//!   each of the instance's ports is forwarded from the worker's instance address to the same
//!   port in the guest, so a guest's service is reached as a process's is. Every packet goes
//!   through QEMU's process (no vhost, no tap here): simple and unprivileged, not fast.
//! - **Exec.** A fourth port, `aerekos.ctl`, is a socket QEMU listens on (`vms/<id>/ctl.sock`):
//!   the worker sends a sandbox's commands there, one JSON line each, and the agent runs them at
//!   once, killed at their timeout, answering with their exit code and output tails.
//! - **The conductor.** The one address outside that a service's guest reaches (jobs and
//!   sandboxes, which run code the operator may not trust, reach nothing): QEMU runs
//!   `aerekos relay` for each connection the guest opens to it, and the agent listens on the
//!   conductor's own address inside the guest, so `CONDUCTOR_URL` is the worker's, unchanged
//!   ([`relay`]).
//! - **Volume.** An instance's volume is its directory on the worker (`volumes/<name>`), shared
//!   with the guest over virtio-9p and mounted at `/data` (its `DATA_DIR`): it stays the one
//!   format that moves, backups and restores handle. `security_model=mapped-xattr`: what the
//!   guest makes are plain files and directories on the host (its owners, modes, symlinks and
//!   device nodes are kept in extended attributes), so a guest cannot leave a symlink out of the
//!   volume, a setuid program or a device node for the host (QEMU may run as root). QEMU's 9p server does not pass the guest's
//!   file locks on to the host, so a backup copies the guest's databases from inside the guest
//!   ([`MicrovmDriver::snapshot_database`]).
//! - **Built-in services.** A command `aerekos …` runs the platform's executable, copied into the
//!   guest: it must be statically linked (the guest has no libc), as for the service image.
//! - **Isolation.** Nothing else of the host's filesystem is shared with the guest (its root
//!   filesystem is a copy, in guest RAM; secrets taken as files are copied into it, at
//!   `/run/secrets` as for containers), nor the worker's credentials.

pub mod initramfs;
pub mod relay;

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_sdk::conductor::types::{InstanceSpec, RuntimeDriver};
use futures_util::{StreamExt as _, future::BoxFuture};
use uuid::Uuid;

use super::{
    Driver, DriverError, ExecOutput, INSTANCE_ENV, Observed, OutputChunk, OutputStream,
    groups::{Groups, Poll},
};

/// The modules a stock distribution kernel needs for the guest's devices (virtio over MMIO,
/// the entropy source, virtio-serial and the virtio NIC).
const GUEST_MODULES: &[&str] = &["virtio_mmio", "virtio_rng", "virtio_console", "virtio_net"];
/// And for a guest with a volume (9p over virtio).
const VOLUME_MODULES: &[&str] = &["9pnet_virtio", "9p"];
/// The volume's 9p tag, and where the guest mounts it (its `DATA_DIR`).
const VOLUME_TAG: &str = "aerekos.volume";
const GUEST_DATA_DIR: &str = "/data";
/// Where a guest finds the platform's executable (for commands `aerekos …`).
const GUEST_AEREKOS: &str = ".aerekos/bin/aerekos";
/// The guest agent, inside the guest.
const GUEST_INIT: &str = "/.aerekos/init";
/// `vms/<id>/volume`: the name of the volume a guest runs on (how a backup finds the guest).
const VOLUME_FILE: &str = "volume";
/// Debian's bundle of the system's CA certificates (also where the guest looks for it).
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// How long a database copy inside a guest may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
/// QEMU's user-mode network: the guest's address, its gateway and its resolver (with
/// `restrict=on` neither leads anywhere).
const GUEST_ADDRESS: [u8; 4] = [10, 0, 2, 15];
const GUEST_GATEWAY: [u8; 4] = [10, 0, 2, 2];
const GUEST_DNS: [u8; 4] = [10, 0, 2, 3];
/// The least guest RAM: the kernel and the initramfs (which holds the whole root filesystem).
const MIN_GUEST_MB: u32 = 256;
const INITRAMFS_FILE: &str = "initramfs.cpio";
/// The exit code of a guest whose agent could not run the command.
const COULD_NOT_RUN: i32 = 127;
/// The most of each stream an exec's answer keeps, whatever the guest sends.
const MAX_ANSWER_LINE: usize = 4 << 20;
/// The control port's socket (QEMU listens; the worker connects for execs).
const CONTROL_SOCKET: &str = "ctl.sock";
/// How much longer than an exec's own timeout the worker waits for the guest's answer.
const EXEC_ANSWER_GRACE: Duration = Duration::from_secs(30);

/// What the operator sets (`WORKER_MICROVM`, `MICROVM_*`; see worker/.env_example).
#[derive(Debug, Clone)]
pub struct MicrovmConfig {
    /// `WORKER_MICROVM`, default on: offer the driver when QEMU, a kernel and the guest agent are
    /// found (`off`: never).
    pub enabled: bool,
    /// `MICROVM_QEMU`, default `qemu-system-x86_64` on `PATH`.
    pub qemu: PathBuf,
    /// `MICROVM_KERNEL`, default the newest `/boot/vmlinuz-*` (Debian's `linux-image-amd64`).
    pub kernel: Option<PathBuf>,
    /// `MICROVM_MODULES`, default `/lib/modules/<the kernel's version>`.
    pub modules: Option<PathBuf>,
    /// `MICROVM_GUEST_AGENT`, default `aerekos-guest` beside the worker's executable.
    pub guest_agent: Option<PathBuf>,
    /// `MICROVM_BUSYBOX`, default `/bin/busybox`: a static busybox, the root filesystem of an
    /// instance that names no image (its shell and tools).
    pub busybox: PathBuf,
}

impl Default for MicrovmConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            qemu: "qemu-system-x86_64".into(),
            kernel: None,
            modules: None,
            guest_agent: None,
            busybox: "/bin/busybox".into(),
        }
    }
}

/// Hardware virtualization, or emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// KVM when `/dev/kvm` is there and the CPU offers `vmx` or `svm` (a KVM without them, such
    /// as a software one, does not boot a stock kernel).
    fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hardware = cpu
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if hardware && Path::new("/dev/kvm").exists() {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

/// What was found usable on this worker.
#[derive(Debug, Clone)]
pub struct Setup {
    qemu: PathBuf,
    qemu_version: String,
    kernel: PathBuf,
    /// The modules the guest loads, in order (host paths); empty when the kernel has them built in.
    modules: Vec<PathBuf>,
    /// The further modules of a guest with a volume; why there are none (a kernel without 9p
    /// leaves the driver usable, for instances with no volume).
    volume_modules: Result<Vec<PathBuf>, String>,
    guest_agent: PathBuf,
    /// The platform's executable when it is statically linked (it runs in guests); why not
    /// otherwise.
    guest_aerekos: Result<PathBuf, String>,
    busybox: PathBuf,
    accel: Accel,
    /// The host's TSC rate in kHz: under TCG the guest's TSC ticks at it, and a guest told so
    /// skips a calibration that hangs without a PIT or HPET to calibrate against.
    tsc_khz: Option<u64>,
}

impl Setup {
    /// Finds QEMU, a kernel, its modules and the guest agent; why not when one is missing.
    pub fn detect(config: &MicrovmConfig, executable: Option<&Path>) -> Result<Self, String> {
        if !config.enabled {
            return Err("WORKER_MICROVM=off".into());
        }
        let version = std::process::Command::new(&config.qemu)
            .arg("--version")
            .output()
            .map_err(|e| {
                format!(
                    "{} cannot run ({e}); install Debian's qemu-system-x86 or set MICROVM_QEMU",
                    config.qemu.display()
                )
            })?;
        let qemu_version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .and_then(|l| l.split("version ").nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or(v).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let kernel = match &config.kernel {
            Some(k) => k.clone(),
            None => newest_kernel().ok_or(
                "no kernel in /boot; install Debian's linux-image-amd64 or set MICROVM_KERNEL",
            )?,
        };
        if !kernel.is_file() {
            return Err(format!("the kernel {} is not a file", kernel.display()));
        }
        let modules_dir = config.modules.clone().or_else(|| {
            let name = kernel.file_name()?.to_str()?;
            let version = name.strip_prefix("vmlinuz-")?;
            Some(PathBuf::from("/lib/modules").join(version))
        });
        let (modules, volume_modules) = match modules_dir {
            Some(dir) if dir.join("modules.dep").exists() => {
                let modules =
                    initramfs::modules_in_order(&dir, GUEST_MODULES).map_err(|e| e.to_string())?;
                let volume_modules = initramfs::modules_in_order(&dir, VOLUME_MODULES)
                    .map(|mut more| {
                        more.retain(|m| !modules.contains(m));
                        more
                    })
                    .map_err(|e| format!("volumes need 9p over virtio in the guest's kernel: {e}"));
                (modules, volume_modules)
            }
            // A kernel of the operator's own, with virtio and 9p built in.
            _ => (vec![], Ok(vec![])),
        };
        let guest_aerekos = match executable {
            Some(exe) if super::image::is_static_file(exe).unwrap_or(false) => Ok(exe.to_owned()),
            Some(exe) => Err(format!(
                "the aerekos executable {} is not statically linked (a guest has no libc): set AEREKOS_EXECUTABLE to a static build",
                exe.display()
            )),
            None => Err("the aerekos executable was not found: set AEREKOS_EXECUTABLE".into()),
        };
        let guest_agent = config
            .guest_agent
            .clone()
            .or_else(|| {
                executable
                    .and_then(Path::parent)
                    .map(|d| d.join("aerekos-guest"))
            })
            .filter(|p| p.is_file())
            .ok_or(
                "no guest agent: build it with `cargo xtask guest` and set MICROVM_GUEST_AGENT",
            )?;
        if !super::image::is_static_file(&guest_agent).unwrap_or(false) {
            return Err(format!(
                "the guest agent {} is not a statically linked executable (a guest has no libc): build it with `cargo xtask guest`",
                guest_agent.display()
            ));
        }
        Ok(Self {
            qemu: config.qemu.clone(),
            qemu_version,
            kernel,
            modules,
            volume_modules,
            guest_agent,
            guest_aerekos,
            busybox: config.busybox.clone(),
            accel: Accel::detect(),
            tsc_khz: host_tsc_khz(),
        })
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// The kernel's command line for a guest whose init is `init`.
    pub fn kernel_append(&self, init: &str) -> Vec<String> {
        let mut append: Vec<String> = ["console=ttyS0", "panic=-1", "quiet", "edd=off"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        append.push(format!("rdinit={init}"));
        if let (Accel::Tcg, Some(khz)) = (self.accel, self.tsc_khz) {
            append.push(format!("tsc_early_khz={khz}"));
            append.push(format!("lpj={}", khz * 1000 / 250));
            append.push("no_timer_check".into());
        }
        append
    }
}

/// `value` as part of one QEMU option (a comma is written twice there); a quote is refused, as
/// the relay's command line is split as a shell would.
fn qemu_option_value(value: &str) -> Result<String, DriverError> {
    if value.contains(['\'', '\n']) {
        return Err(DriverError::Refused(format!(
            "{value:?}: a path or address with a quote or a newline cannot be given to QEMU"
        )));
    }
    Ok(value.replace(',', ",,"))
}

fn newest_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// Whether the guest agent recorded that it could not run the command (`failed: why`).
fn guest_failed(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(super::exit_record::FILE))
        .is_ok_and(|t| t.starts_with("failed:"))
}

fn host_tsc_khz() -> Option<u64> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpu
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// What the guest agent reads at `/.aerekos/plan.json` (worker/guest/src/main.rs).
#[derive(serde::Serialize)]
struct Plan {
    modules: Vec<String>,
    command: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    network: PlanNetwork,
    relays: Vec<PlanRelay>,
    mounts: Vec<PlanMount>,
}

#[derive(serde::Serialize, Clone)]
struct PlanRelay {
    listen: std::net::SocketAddr,
    to: std::net::SocketAddr,
    /// The host name the guest resolves to `listen` (in its `/etc/hosts`).
    name: Option<String>,
}

/// A service's guest's way to the conductor ([`MicrovmDriver::conductor_relay`]).
struct ConductorRelay {
    /// What the agent listens on inside the guest, and where it carries connections.
    inside: PlanRelay,
    /// The conductor as the host reaches it (`host:port`).
    target: String,
    /// The executable QEMU runs (`<exe> relay <target>`) for each connection.
    exe: PathBuf,
}

#[derive(serde::Serialize)]
struct PlanMount {
    tag: &'static str,
    target: &'static str,
}

#[derive(serde::Serialize)]
struct PlanNetwork {
    address: std::net::Ipv4Addr,
    prefix_len: u8,
    gateway: std::net::Ipv4Addr,
    dns: std::net::Ipv4Addr,
}

pub struct MicrovmDriver {
    setup: Setup,
    platform: super::Platform,
    /// For an instance whose root filesystem is a local Docker image (exported).
    docker: Option<bollard::Docker>,
    /// The guests' QEMU processes, under `<data dir>/vms/<id>/`.
    groups: Groups,
    /// Connections to the guests' control ports (QEMU takes one client per socket), each shared
    /// by every exec in that guest.
    controls: Mutex<HashMap<Uuid, Arc<Control>>>,
    /// Held while connecting, so execs starting together share one connection (QEMU serves one
    /// client per socket).
    connecting: tokio::sync::Mutex<()>,
}

/// What the guest agent answers on the control port (see worker/guest/src/exec.rs).
#[derive(serde::Deserialize)]
struct ExecAnswer {
    id: String,
    exit_code: Option<i32>,
    timed_out: bool,
    error: Option<String>,
    stdout: String,
    stderr: String,
}

/// One connection to a guest's control port: requests written in turn, answers sent to whoever
/// waits for their id.
struct Control {
    writer: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
    waiting: Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<ExecAnswer>>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl MicrovmDriver {
    pub fn new(
        data_dir: &Path,
        setup: Setup,
        platform: super::Platform,
        docker: Option<bollard::Docker>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            setup,
            platform,
            docker,
            groups: Groups::new(data_dir.join("vms"))?,
            controls: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    fn vm_dir(&self, id: Uuid) -> PathBuf {
        self.groups.dir(id)
    }

    /// Whether instance `id` is (or was) a guest of this driver.
    pub fn knows(&self, id: Uuid) -> bool {
        self.vm_dir(id).is_dir()
    }

    /// The guest's initramfs: the instance's root filesystem, then the agent, its plan and the
    /// modules under `/.aerekos`.
    async fn build_initramfs(
        &self,
        id: Uuid,
        spec: &InstanceSpec,
        relay: Option<&ConductorRelay>,
        path: &Path,
    ) -> Result<(), DriverError> {
        let refused = |what: String| DriverError::Refused(what);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        let mut cpio = initramfs::Cpio::new(std::io::BufWriter::new(file));
        // The agent's files first: the first entry of a path wins, so an image cannot replace
        // the guest's init or its plan.
        self.add_agent(id, spec, relay, &mut cpio)?;
        match spec.image.as_deref() {
            None => {
                // The host's static busybox, with a link for each of its tools.
                let mut busybox = std::fs::File::open(&self.setup.busybox).map_err(|e| {
                    refused(format!(
                        "no image, and no busybox for a root filesystem at {}: {e}",
                        self.setup.busybox.display()
                    ))
                })?;
                let size = busybox.metadata()?.len();
                cpio.file("bin/busybox", 0o755, size, &mut busybox)?;
                let listed = std::process::Command::new(&self.setup.busybox)
                    .arg("--list")
                    .output()?;
                for tool in String::from_utf8_lossy(&listed.stdout).lines() {
                    if !tool.is_empty() && tool != "busybox" {
                        cpio.symlink(Path::new("bin").join(tool), Path::new("busybox"))?;
                    }
                }
            }
            Some(image) if image.starts_with('/') && Path::new(image).is_dir() => {
                cpio.tree(Path::new(image))?
            }
            Some(image) if image.starts_with('/') && image.ends_with(".tar") => {
                cpio.tar(std::fs::File::open(image)?)?
            }
            Some(image) => {
                let tar = self.export_image(image, path).await?;
                cpio.tar(std::fs::File::open(&tar)?)?;
                let _ = std::fs::remove_file(tar);
            }
        }
        // The host's CA bundle where the root filesystem has none (a static program's TLS
        // client refuses to start without roots).
        if let Ok(mut bundle) = std::fs::File::open(HOST_CA_BUNDLE) {
            let size = bundle.metadata()?.len();
            cpio.file(&HOST_CA_BUNDLE[1..], 0o644, size, &mut bundle)?;
        }
        for d in ["proc", "sys", "dev", "root", "etc"] {
            cpio.dir(d, 0o755)?;
        }
        cpio.dir("tmp", 0o1777)?;
        cpio.finish()?;
        Ok(())
    }

    /// The guest agent, the modules it loads and its plan, under `/.aerekos`.
    fn add_agent(
        &self,
        id: Uuid,
        spec: &InstanceSpec,
        relay: Option<&ConductorRelay>,
        cpio: &mut initramfs::Cpio<std::io::BufWriter<std::fs::File>>,
    ) -> std::io::Result<()> {
        let mut agent = std::fs::File::open(&self.setup.guest_agent)?;
        let size = agent.metadata()?.len();
        cpio.file(&GUEST_INIT[1..], 0o755, size, &mut agent)?;
        let mut command = spec.command.clone();
        if command.first().is_some_and(|p| p == "aerekos") {
            // Checked in `start`.
            if let Ok(exe) = &self.setup.guest_aerekos {
                let mut file = std::fs::File::open(exe)?;
                let size = file.metadata()?.len();
                cpio.file(GUEST_AEREKOS, 0o755, size, &mut file)?;
                command[0] = format!("/{GUEST_AEREKOS}");
            }
        }
        let volume = spec.volume.is_some();
        let mut modules = vec![];
        let wanted = self.setup.modules.iter().chain(
            self.setup
                .volume_modules
                .iter()
                .filter(|_| volume)
                .flatten(),
        );
        for module in wanted {
            let name = module
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("module.ko");
            let inside = format!(".aerekos/modules/{name}");
            let mut file = std::fs::File::open(module)?;
            let size = file.metadata()?.len();
            cpio.file(&inside, 0o644, size, &mut file)?;
            modules.push(format!("/{inside}"));
        }
        // As a process gets it: the instance's variables, then the platform's.
        let mut env: std::collections::BTreeMap<String, String> =
            spec.env.clone().into_iter().collect();
        env.extend(
            self.platform
                .env(spec, volume.then(|| GUEST_DATA_DIR.to_owned())),
        );
        env.insert(INSTANCE_ENV.into(), id.to_string());
        // Inside, the service listens on every address of the guest (its ports are forwarded to
        // them).
        env.insert(
            aerekos_common::server::INSTANCE_HOST_ENV.into(),
            "0.0.0.0".into(),
        );
        let plan = Plan {
            modules,
            command,
            env,
            network: PlanNetwork {
                address: GUEST_ADDRESS.into(),
                prefix_len: 24,
                gateway: GUEST_GATEWAY.into(),
                dns: GUEST_DNS.into(),
            },
            relays: relay.map(|r| r.inside.clone()).into_iter().collect(),
            mounts: volume
                .then_some(PlanMount {
                    tag: VOLUME_TAG,
                    target: GUEST_DATA_DIR,
                })
                .into_iter()
                .collect(),
        };
        // Secrets taken as files, where containers find them too (the worker wrote them for
        // this start; nothing of the host is shared to read them from).
        let secrets = crate::secrets::files_dir(&self.platform.secret_files_dir, id);
        let entries = match std::fs::read_dir(&secrets) {
            Ok(entries) => entries.collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e),
        };
        for entry in entries {
            let mut file = std::fs::File::open(entry.path())?;
            let size = file.metadata()?.len();
            let inside = Path::new(&super::CONTAINER_SECRETS_DIR[1..]).join(entry.file_name());
            cpio.file(inside, 0o400, size, &mut file)?;
        }
        cpio.bytes(
            ".aerekos/plan.json",
            0o644,
            &serde_json::to_vec(&plan).map_err(std::io::Error::other)?,
        )?;
        Ok(())
    }

    /// A service's guest's way to the conductor: what the agent listens on inside, the host's
    /// end (`host:port`) and the executable that relays. None for a job or a sandbox (they reach
    /// nothing), and when the conductor's address cannot be stood in for inside the guest (said
    /// in the log).
    fn conductor_relay(&self, spec: &InstanceSpec) -> Option<ConductorRelay> {
        if spec.run_once || spec.health_path.is_none() {
            return None;
        }
        // QEMU runs it from the guest's directory, with no PATH.
        let exe = std::path::absolute(self.platform.executable.as_ref()?).ok()?;
        let (host, port) = aerekos_common::net::url_host_port(&self.platform.conductor_url)?;
        let to = std::net::SocketAddr::from((relay::GUEST_ADDRESS, port));
        let in_guest_network = |ip: std::net::Ipv4Addr| ip.octets()[..3] == GUEST_ADDRESS[..3];
        let (listen, name) = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) if ip.is_unspecified() || in_guest_network(ip) => {
                tracing::warn!(conductor = %self.platform.conductor_url, "the conductor's address is unspecified or inside the guests' own network (10.0.2.0/24): guests cannot reach it");
                return None;
            }
            Ok(ip @ std::net::IpAddr::V4(_)) => (std::net::SocketAddr::new(ip, port), None),
            Ok(ip) if ip.is_loopback() => (std::net::SocketAddr::new(ip, port), None),
            Ok(_) => {
                tracing::warn!(conductor = %self.platform.conductor_url, "guests have no IPv6 address to stand in for the conductor's: they cannot reach it (give the conductor an IPv4 address or a name)");
                return None;
            }
            Err(_) => (
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Some(host.clone()),
            ),
        };
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Some(ConductorRelay {
            inside: PlanRelay { listen, to, name },
            target,
            exe,
        })
    }

    /// A local Docker image's filesystem, exported (a container is made, never started, for it).
    async fn export_image(&self, image: &str, next_to: &Path) -> Result<PathBuf, DriverError> {
        let Some(docker) = &self.docker else {
            return Err(DriverError::Refused(format!(
                "image {image} is neither a directory nor a .tar here, and no Docker engine answers to export it"
            )));
        };
        let made = docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                bollard::models::ContainerCreateBody {
                    image: Some(image.to_owned()),
                    cmd: Some(vec!["true".into()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                DriverError::Refused(format!(
                    "image {image} is not on this worker (images are not pulled): {e}"
                ))
            })?;
        let tar = next_to.with_extension("tar");
        let written = async {
            let mut out = tokio::fs::File::create(&tar).await?;
            let mut stream = docker.export_container(&made.id);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(std::io::Error::other)?;
                tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await?;
            }
            tokio::io::AsyncWriteExt::flush(&mut out).await
        }
        .await;
        let _ = docker
            .remove_container(
                &made.id,
                None::<bollard::query_parameters::RemoveContainerOptions>,
            )
            .await;
        written?;
        Ok(tar)
    }

    /// QEMU's arguments for instance `id`, whose volume (if any) is the directory `volume`.
    fn qemu_args(
        &self,
        dir: &Path,
        spec: &InstanceSpec,
        relay: Option<&ConductorRelay>,
        volume: Option<&Path>,
    ) -> Result<Vec<String>, DriverError> {
        let resources = spec.resources.as_ref();
        // The root filesystem lives in guest RAM for the guest's whole life, on top of what the
        // kernel and the workload need: a 60 MB platform executable in it left a 256 MB guest
        // unable even to unpack its initramfs.
        let rootfs_mb = std::fs::metadata(dir.join(INITRAMFS_FILE))
            .map_or(0, |m| m.len().div_ceil(1 << 20) as u32);
        let memory = resources
            .map_or(0, |r| r.memory_mb as u32)
            .max(MIN_GUEST_MB)
            + rootfs_mb;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let vcpus = resources
            .map_or(1, |r| (r.cpu_millicores as u32).div_ceil(1000))
            .clamp(1, cores);
        let append = self.setup.kernel_append("/.aerekos/init");
        let path = |name: &str| dir.join(name).display().to_string();
        let mut args: Vec<String> = vec![
            "-M".into(),
            "microvm".into(),
            "-accel".into(),
            self.setup.accel.as_str().into(),
        ];
        if self.setup.accel == Accel::Kvm {
            args.extend(["-cpu".into(), "host".into()]);
        }
        args.extend([
            "-m".into(),
            format!("{memory}M"),
            "-smp".into(),
            vcpus.to_string(),
            "-kernel".into(),
            self.setup.kernel.display().to_string(),
            "-initrd".into(),
            path(INITRAMFS_FILE),
            "-append".into(),
            append.join(" "),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-serial".into(),
            format!("file:{}", path("console.log")),
            "-device".into(),
            "virtio-serial-device".into(),
            // Entropy from the host: an emulated guest has no other early source, and a program
            // waiting on /dev/random for the pool to be ready (as some TLS stacks do) would wait
            // for as long as the guest has no interrupts to gather it from.
            "-object".into(),
            "rng-random,id=rng,filename=/dev/urandom".into(),
            "-device".into(),
            "virtio-rng-device,rng=rng".into(),
        ]);
        // The instance's ports, forwarded from the worker's instance address (all addresses when
        // that is unspecified).
        let host = match self.platform.instance_host {
            ip if ip.is_unspecified() => String::new(),
            ip => ip.to_string(),
        };
        // restrict=on: the guest reaches nothing (not the host's loopback, the LAN, nor a cloud's
        // metadata service); only its forwarded ports are reached from outside.
        let mut netdev = "user,id=net0,restrict=on".to_owned();
        for port in &spec.ports {
            netdev.push_str(&format!(",hostfwd=tcp:{host}:{port}-:{port}"));
        }
        // Connections to the conductor's stand-in address: each is given to `aerekos relay`.
        if let Some(conductor) = relay {
            let exe = qemu_option_value(&conductor.exe.display().to_string())?;
            netdev.push_str(&format!(
                ",guestfwd=tcp:{}-cmd:'{exe}' {} {}",
                conductor.inside.to,
                relay::COMMAND,
                qemu_option_value(&conductor.target)?
            ));
        }
        args.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-device,netdev=net0".into(),
        ]);
        args.extend([
            "-chardev".into(),
            format!(
                "socket,id=ctl,path={},server=on,wait=off",
                path(CONTROL_SOCKET)
            ),
            "-device".into(),
            "virtserialport,chardev=ctl,name=aerekos.ctl".into(),
        ]);
        if let Some(volume) = volume {
            // mapped-xattr: the guest's owners, modes, symlinks and device nodes stay metadata
            // (extended attributes) on plain files, which backups and moves read as any
            // volume's; nothing the guest makes acts on the host.
            args.extend([
                "-fsdev".into(),
                format!(
                    "local,id=volume,path={},security_model=mapped-xattr",
                    qemu_option_value(&volume.display().to_string())?
                ),
                "-device".into(),
                format!("virtio-9p-device,fsdev=volume,mount_tag={VOLUME_TAG}"),
            ]);
        }
        // The output files grow across restarts of the instance (as the process driver's do), so
        // log shipping's byte offsets into them stay valid; the exit record is each run's own.
        for (id, file, name, append) in [
            ("out", super::process::STDOUT_FILE, "aerekos.stdout", true),
            ("err", super::process::STDERR_FILE, "aerekos.stderr", true),
            ("exit", super::exit_record::FILE, "aerekos.status", false),
        ] {
            let append = if append { ",append=on" } else { "" };
            args.extend([
                "-chardev".into(),
                format!("file,id={id},path={}{append}", path(file)),
                "-device".into(),
                format!("virtserialport,chardev={id},name={name}"),
            ]);
        }
        Ok(args)
    }

    /// Writes the guest's initramfs into `dir` and starts its QEMU; the QEMU's pid.
    async fn launch(
        &self,
        id: Uuid,
        spec: &InstanceSpec,
        dir: &Path,
        volume: Option<&Path>,
    ) -> Result<u32, DriverError> {
        let relay = self.conductor_relay(spec);
        self.build_initramfs(id, spec, relay.as_ref(), &dir.join(INITRAMFS_FILE))
            .await?;
        if let Some(name) = &spec.volume {
            std::fs::write(dir.join(VOLUME_FILE), name)?;
        }
        let args = self.qemu_args(dir, spec, relay.as_ref(), volume)?;
        let log = std::fs::File::create(dir.join("qemu.log"))?;
        let mut cmd = tokio::process::Command::new(&self.setup.qemu);
        cmd.args(args)
            .env_clear()
            .env(INSTANCE_ENV, id.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(&dir)
            // Its own process group: it outlives the worker's restart.
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| {
            DriverError::Refused(format!(
                "{} could not start: {e}",
                self.setup.qemu.display()
            ))
        })?;
        self.groups
            .track(id, child)
            .await
            .map_err(|e| DriverError::Refused(format!("QEMU: {e}")))
    }

    /// The connection to guest `id`'s control port, made if there is none.
    async fn control(&self, id: Uuid) -> std::io::Result<Arc<Control>> {
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.controls.lock().expect("controls lock").get(&id) {
            if !c.reader.is_finished() {
                return Ok(c.clone());
            }
        }
        let stream = tokio::net::UnixStream::connect(self.vm_dir(id).join(CONTROL_SOCKET)).await?;
        let (read, write) = stream.into_split();
        let waiting: Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<ExecAnswer>>>> =
            Arc::default();
        let reader = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                // A line longer than any answer could be ends the connection (the guest is not
                // trusted to bound what it sends).
                let bounded = tokio::io::AsyncReadExt::take(read, u64::MAX);
                let mut reader = tokio::io::BufReader::new(bounded);
                let mut line = String::new();
                loop {
                    line.clear();
                    reader.get_mut().set_limit(MAX_ANSWER_LINE as u64);
                    match tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await {
                        Ok(n) if n > 0 && line.ends_with('\n') => {}
                        _ => break,
                    }
                    if let Ok(answer) = serde_json::from_str::<ExecAnswer>(&line) {
                        let to = waiting.lock().expect("waiting lock").remove(&answer.id);
                        if let Some(to) = to {
                            let _ = to.send(answer);
                        }
                    }
                }
                // Gone: whoever still waits learns it (their senders drop).
                waiting.lock().expect("waiting lock").clear();
            }
        });
        let control = Arc::new(Control {
            writer: tokio::sync::Mutex::new(write),
            waiting,
            reader,
        });
        self.controls
            .lock()
            .expect("controls lock")
            .insert(id, control.clone());
        Ok(control)
    }

    fn observe_now(&self, id: Uuid) -> Observed {
        let dir = self.vm_dir(id);
        let status = match self.groups.poll(id) {
            Poll::Running => return Observed::Running,
            Poll::Ended(status) => status,
            // Ended and seen before (its record stays with its output).
            Poll::Unknown if dir.join(super::exit_record::FILE).exists() => None,
            Poll::Unknown => return Observed::Missing,
        };
        let _ = std::fs::remove_file(dir.join(INITRAMFS_FILE));
        // The guest's own record of its command; without one (QEMU killed, or the guest failed
        // before its command ended), how QEMU itself ended.
        let (code, signal) = super::exit_record::read(&dir).unwrap_or_else(|| {
            if guest_failed(&dir) {
                // The agent could not run the command (it said why on stderr): as a shell reports
                // a command it cannot run.
                return (Some(COULD_NOT_RUN), None);
            }
            status.map_or((None, None), |s| {
                (None, std::os::unix::process::ExitStatusExt::signal(&s))
            })
        });
        Observed::Exited { code, signal }
    }
}

impl Driver for MicrovmDriver {
    fn info(&self) -> Vec<RuntimeDriver> {
        vec![RuntimeDriver {
            name: "microvm".into(),
            version: Some(format!(
                "qemu {} ({})",
                self.setup.qemu_version,
                self.setup.accel.as_str()
            )),
        }]
    }

    fn start<'a>(
        &'a self,
        id: Uuid,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            if spec.command.is_empty() {
                return Err(DriverError::Refused(
                    "the microvm driver runs a command: give one (the image is its root filesystem)"
                        .into(),
                ));
            }
            if spec.command.first().is_some_and(|p| p == "aerekos") {
                if let Err(why) = &self.setup.guest_aerekos {
                    return Err(DriverError::Refused(format!(
                        "`aerekos` cannot run in a guest here: {why}"
                    )));
                }
            }
            if let (Some(_), Err(why)) = (&spec.volume, &self.setup.volume_modules) {
                return Err(DriverError::Refused(format!(
                    "a guest cannot have a volume here: {why}"
                )));
            }
            let volume = spec
                .volume
                .as_deref()
                .map(|name| self.platform.volume(name))
                .transpose()?;
            if let Some(port) = super::port_in_use(&spec.ports) {
                return Err(DriverError::Refused(format!(
                    "port {port} is already in use on this worker"
                )));
            }
            let dir = self.vm_dir(id);
            // A guest starts afresh: what an earlier start left is gone. Private: the initramfs
            // holds the instance's environment (its secrets among it).
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            match self.launch(id, spec, &dir, volume.as_deref()).await {
                Ok(pid) => {
                    tracing::info!(instance_id = %id, pid, accel = self.setup.accel.as_str(), "microVM started");
                    Ok(())
                }
                Err(e) => {
                    // Nothing half-made stays: not an exported image (it can be large), nor an
                    // initramfs holding the instance's secrets.
                    let _ = std::fs::remove_dir_all(&dir);
                    Err(e)
                }
            }
        })
    }

    fn stop(&self, id: Uuid) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            self.groups.stop(id).await;
            self.controls.lock().expect("controls lock").remove(&id);
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
        Box::pin(async move { Ok(super::process::streams_tail(&self.vm_dir(id), max_bytes)?) })
    }

    fn terminate(&self, id: Uuid, force: bool) -> BoxFuture<'_, Result<(), DriverError>> {
        Box::pin(async move {
            self.groups.signal(id, force);
            Ok(())
        })
    }

    fn exec<'a>(
        &'a self,
        id: Uuid,
        command: &'a [String],
        env: &'a [(String, String)],
        timeout: Duration,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        Box::pin(async move {
            let gone = |e: String| {
                DriverError::Refused(format!("the guest's control port did not answer: {e}"))
            };
            if self.observe_now(id) != Observed::Running {
                return Err(DriverError::Refused("the guest is not running".into()));
            }
            let control = self.control(id).await.map_err(|e| gone(e.to_string()))?;
            let request_id = Uuid::new_v4().to_string();
            let (tx, rx) = tokio::sync::oneshot::channel();
            control
                .waiting
                .lock()
                .expect("waiting lock")
                .insert(request_id.clone(), tx);
            let mut line = serde_json::to_vec(&serde_json::json!({
                "id": request_id,
                "command": command,
                "env": env.iter().cloned().collect::<HashMap<_, _>>(),
                "timeout_ms": timeout.as_millis() as u64,
                "max_bytes": max_bytes,
            }))
            .map_err(std::io::Error::other)?;
            line.push(b'\n');
            let asked = async {
                {
                    let mut writer = control.writer.lock().await;
                    tokio::io::AsyncWriteExt::write_all(&mut *writer, &line)
                        .await
                        .map_err(|e| gone(e.to_string()))?;
                }
                tokio::time::timeout(timeout + EXEC_ANSWER_GRACE, rx)
                    .await
                    .map_err(|_| gone("no answer".into()))?
                    .map_err(|_| gone("the connection closed".into()))
            }
            .await;
            // Answered or not, nobody waits for it any more.
            control
                .waiting
                .lock()
                .expect("waiting lock")
                .remove(&request_id);
            let answer = asked?;
            if let Some(error) = answer.error {
                return Err(DriverError::Refused(error));
            }
            // The guest is not trusted to keep to `max_bytes`.
            let tail = |text: String| {
                let mut bytes = text.into_bytes();
                if bytes.len() > max_bytes {
                    bytes.drain(..bytes.len() - max_bytes);
                }
                bytes
            };
            Ok(ExecOutput {
                exit_code: answer.exit_code,
                timed_out: answer.timed_out,
                stdout: tail(answer.stdout),
                stderr: tail(answer.stderr),
            })
        })
    }

    fn snapshot_database<'a>(
        &'a self,
        volume: &'a str,
        database: &'a Path,
        copy: &'a Path,
    ) -> Option<BoxFuture<'a, Result<(), DriverError>>> {
        let guest = self.groups.ids().into_iter().find(|id| {
            std::fs::read_to_string(self.vm_dir(*id).join(VOLUME_FILE)).is_ok_and(|v| v == volume)
                && self.observe_now(*id) == Observed::Running
        })?;
        Some(Box::pin(async move {
            // Made in the volume (a platform file, which backups leave out), then moved out.
            let name = format!(".aerekos-snapshot-{}.db", Uuid::new_v4());
            let volume_dir = self.platform.volume(volume)?;
            let made = volume_dir.join(&name);
            let inside = |p: &Path| format!("{GUEST_DATA_DIR}/{}", p.display());
            let ran = self
                .exec(
                    guest,
                    &[
                        GUEST_INIT.to_owned(),
                        "snapshot-sqlite".to_owned(),
                        inside(database),
                        inside(Path::new(&name)),
                    ],
                    &[],
                    SNAPSHOT_TIMEOUT,
                    64 * 1024,
                )
                .await;
            let moved = match ran {
                // Only a regular file: the guest could have left a symlink to a host file there.
                Ok(out) if out.exit_code == Some(0) => {
                    crate::volumes::open_regular(&volume_dir, &made)
                        .and_then(|mut source| {
                            std::io::copy(&mut source, &mut std::fs::File::create(copy)?)
                        })
                        .map(|_| ())
                        .map_err(DriverError::from)
                }
                Ok(out) => Err(DriverError::Refused(format!(
                    "the copy in the guest failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))),
                Err(e) => Err(e),
            };
            let _ = std::fs::remove_file(&made);
            if moved.is_ok() {
                tracing::info!(instance_id = %guest, volume, database = %database.display(), "database copied inside the guest");
            }
            moved
        }))
    }

    fn sweep_outputs(&self, keep: Duration, live: &HashSet<Uuid>) {
        self.groups.sweep(keep, live, "qemu.log");
    }

    fn output_files(&self, id: Uuid) -> Vec<(Option<OutputStream>, PathBuf)> {
        super::process::stream_files(&self.vm_dir(id))
    }

    fn output(
        &self,
        id: Uuid,
        stream: OutputStream,
        offset: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<OutputChunk, DriverError>> {
        Box::pin(async move {
            let file = super::process::stream_file(&self.vm_dir(id), stream);
            Ok(super::process::read_file_chunk(&file, offset, max_bytes)?)
        })
    }
}
