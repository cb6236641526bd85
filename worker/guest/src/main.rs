//! The microVM guest agent: the `init` (PID 1) of a guest the worker's microvm driver boots.
//!
//! The worker puts this executable at `/.aerekos/init` in the guest's initramfs, with the
//! instance's root filesystem and the guest's plan ([`Plan`], `/.aerekos/plan.json`). The agent:
//! 1. mounts `/proc`, `/sys` and `/dev`;
//! 2. loads the kernel modules the plan lists (a stock distribution kernel has virtio as modules);
//! 3. brings the network up when the plan has one ([`net`]);
//!    and, when the plan has relays, listens on their addresses inside the guest ([`relay`]);
//! 4. mounts the instance's volume, shared by the worker over 9p, where the plan says;
//! 5. finds the virtio-serial ports by name (`aerekos.stdout`, `aerekos.stderr`,
//!    `aerekos.status`): QEMU writes each to a file in the instance's directory on the host, so
//!    what the guest says is kept whether or not a worker is listening;
//! 6. runs the command with the plan's environment, its stdout and stderr on their ports, and
//!    serves the worker's exec requests on the control port meanwhile ([`exec`]);
//! 7. writes how it ended (`code N` or `signal N`, or `failed: why`) to the status port and
//!    powers the guest off, so QEMU exits: a guest lives as long as its command.
//!
//! Run as `init snapshot-sqlite <database> <copy>` (by the worker, through the control port), it
//! copies a database online instead ([`snapshot`]).

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod exec;
mod net;
mod reaper;
mod relay;
mod snapshot;

use nix::{
    kmod::{ModuleInitFlags, finit_module},
    mount::{MsFlags, mount},
    sys::reboot::{RebootMode, reboot},
};

const PLAN: &str = "/.aerekos/plan.json";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the virtio-serial ports may take to appear once their modules are loaded.
const PORTS_WAIT: Duration = Duration::from_secs(10);

/// What the worker asks of the guest (written by the worker's microvm driver).
#[derive(serde::Deserialize)]
struct Plan {
    /// Kernel modules to load, in order (paths inside the guest).
    #[serde(default)]
    modules: Vec<PathBuf>,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "root")]
    workdir: PathBuf,
    /// The NIC's configuration; absent: no network.
    #[serde(default)]
    network: Option<net::Network>,
    /// Addresses inside the guest carried to forwarded ones (the conductor's).
    #[serde(default)]
    relays: Vec<relay::Relay>,
    /// 9p shares to mount (the instance's volume).
    #[serde(default)]
    mounts: Vec<Mount>,
}

/// A 9p share QEMU exports under `tag`, mounted at `target`.
#[derive(serde::Deserialize)]
struct Mount {
    tag: String,
    target: PathBuf,
}

/// The 9p mount's options: the virtio transport, Linux's dialect, and `cache=mmap`, which caches
/// nothing but what a shared writable mapping needs (SQLite maps a WAL database's `-shm`), so
/// what the host changes in the volume (a backup's hold file) is seen at once.
const NINE_P_OPTIONS: &str = "trans=virtio,version=9p2000.L,cache=mmap,msize=262144";

fn root() -> PathBuf {
    PathBuf::from("/")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, command, database, copy] = args.as_slice() {
        if command == "snapshot-sqlite" {
            if let Err(why) = snapshot::run(database, copy) {
                eprintln!("{why}");
                std::process::exit(1);
            }
            return;
        }
    }
    let outcome = run();
    let line = match &outcome {
        Ok(line) => line.clone(),
        Err(why) => format!("failed: {why}"),
    };
    if let Err(why) = &outcome {
        // Said where the instance's stderr is read, too.
        if let Some(mut stderr) = port("aerekos.stderr") {
            let _ = writeln!(stderr, "aerekos-guest: {why}");
        }
    }
    if let Some(mut status) = port("aerekos.status") {
        let _ = status.write_all(line.as_bytes());
        let _ = status.sync_all();
    } else {
        eprintln!("aerekos-guest: {line}");
    }
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Not PID 1 (run by hand): nothing to power off.
    std::process::exit(if outcome.is_ok() { 0 } else { 1 });
}

fn run() -> Result<String, String> {
    for (source, target, kind) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        let _ = std::fs::create_dir_all(target);
        mount(
            Some(source),
            target,
            Some(kind),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mounting {target}: {e}"))?;
    }
    let plan: Plan =
        serde_json::from_slice(&std::fs::read(PLAN).map_err(|e| format!("reading {PLAN}: {e}"))?)
            .map_err(|e| format!("{PLAN}: {e}"))?;
    for module in &plan.modules {
        let file = File::open(module).map_err(|e| format!("{}: {e}", module.display()))?;
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            // Built into this kernel, or loaded already.
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("loading {}: {e}", module.display())),
        }
    }
    if let Some(network) = &plan.network {
        net::configure(network).map_err(|e| format!("the network: {e}"))?;
    }
    for relay in &plan.relays {
        if let std::net::IpAddr::V4(ip) = relay.listen.ip() {
            if !ip.is_loopback() {
                net::add_loopback_address(ip)
                    .map_err(|e| format!("the relay's address {ip}: {e}"))?;
            }
        }
    }
    relay::start(&plan.relays)?;
    for share in &plan.mounts {
        std::fs::create_dir_all(&share.target)
            .map_err(|e| format!("{}: {e}", share.target.display()))?;
        mount(
            Some(share.tag.as_str()),
            &share.target,
            Some("9p"),
            MsFlags::empty(),
            Some(NINE_P_OPTIONS),
        )
        .map_err(|e| format!("mounting the volume at {}: {e}", share.target.display()))?;
    }
    let deadline = Instant::now() + PORTS_WAIT;
    let (stdout, stderr) = loop {
        if let (Some(out), Some(err)) = (port("aerekos.stdout"), port("aerekos.stderr")) {
            break (out, err);
        }
        if Instant::now() > deadline {
            return Err("the virtio-serial ports did not appear".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (program, args) = plan
        .command
        .split_first()
        .ok_or("the plan names no command")?;
    let mut child = reaper::spawn(
        Command::new(program)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .envs(&plan.env)
            .current_dir(&plan.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr)),
    )
    .map_err(|e| format!("starting {program}: {e}"))?;
    if let Some(control) = port_path("aerekos.ctl") {
        let mut base_env = plan.env.clone();
        base_env
            .entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        std::thread::spawn(move || exec::serve(control, base_env));
    }
    // PID 1: orphans are the agent's to collect.
    std::thread::spawn(reaper::run);
    let status = child.wait();
    reaper::forget(child.id());
    let status = status.map_err(|e| format!("waiting for {program}: {e}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "failed: no exit status".into(),
    })
}

/// The device of the virtio-serial port QEMU named `name`.
fn port_path(name: &str) -> Option<PathBuf> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    ports.flatten().find_map(|entry| {
        let named = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        (named.trim() == name).then(|| Path::new("/dev").join(entry.file_name()))
    })
}

/// The virtio-serial port QEMU named `name`, opened for writing.
fn port(name: &str) -> Option<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(port_path(name)?)
        .ok()
}
