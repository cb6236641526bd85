//! microvm driver benchmarks, written to docs/benchmarks.md (section `microvm`):
//! - boot to command start: the driver's `start` until the command's first output, against the
//!   bare `qemu-system-x86_64 -M microvm` boot of a busybox initramfs whose `/init` prints at
//!   once (same kernel, same accelerator, same kernel arguments), and against the process and
//!   docker drivers starting the same command, all in the same run;
//! - QEMU's resident memory (VmRSS) for an idle guest;
//! - guests booted on one worker at once.
//! Run: `cargo xtask bench` (it builds the static guest agent and passes it in
//! `AEREKOS_GUEST_AGENT`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aerekos_sdk::conductor::types::{DriverKind, InstanceSpec};
use aerekos_tests::{
    bench::percentile,
    docker_image::{TEST_IMAGE, ensure_test_image},
    write_benchmark_section,
};
use aerekos_worker::driver::{
    Driver, OutputStream, Platform,
    docker::DockerDriver,
    microvm::{MicrovmConfig, MicrovmDriver, Setup, initramfs::Cpio},
    process::ProcessDriver,
};
use uuid::Uuid;

const ROUNDS: usize = 7;
const AT_ONCE: usize = 4;

fn spec(command: &[&str], image: Option<&str>, driver: Option<DriverKind>) -> InstanceSpec {
    InstanceSpec {
        image: image.map(str::to_owned),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: Default::default(),
        ports: vec![],
        resources: None,
        health_path: None,
        volume: None,
        tls: false,
        run_once: true,
        timeout_secs: None,
        driver,
        secret_env: Default::default(),
        generation: 0,
    }
}

/// Starts `spec` with `driver` and waits for its first byte of stdout: the time, in ms.
async fn to_first_output(driver: &dyn Driver, spec: &InstanceSpec) -> f64 {
    let id = Uuid::new_v4();
    let started = Instant::now();
    driver.start(id, spec).await.expect("start");
    loop {
        if let Ok(chunk) = driver.output(id, OutputStream::Stdout, Some(0), 64).await {
            if !chunk.bytes.is_empty() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no output");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed().as_secs_f64() * 1000.0;
    driver.stop(id).await.expect("stop");
    took
}

/// The bare boot: QEMU with a busybox initramfs whose `/init` prints a line at once; the time
/// until that line is on the serial file, in ms.
fn bare_boot(kernel: &Path, initrd: &Path, append: &str, accel: &str, dir: &Path) -> f64 {
    let serial = dir.join(format!("serial-{}", Uuid::new_v4()));
    let started = Instant::now();
    let mut qemu = std::process::Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-accel", accel, "-m", "256M", "-smp", "1"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .spawn()
        .expect("qemu");
    loop {
        if std::fs::read_to_string(&serial).is_ok_and(|s| s.contains("started")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the bare boot printed nothing"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let _ = qemu.kill();
    let _ = qemu.wait();
    took
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn p50_p99(mut runs: Vec<f64>) -> (f64, f64) {
    runs.sort_by(f64::total_cmp);
    (percentile(&runs, 0.5), percentile(&runs, 0.99))
}

#[tokio::main]
async fn main() {
    let agent: PathBuf = std::env::var("AEREKOS_GUEST_AGENT")
        .expect("AEREKOS_GUEST_AGENT: the static guest agent (cargo xtask guest)")
        .into();
    let work = tempfile::tempdir().unwrap();
    let platform = Platform {
        conductor_url: "http://127.0.0.1:1".into(),
        ca_pem: None,
        executable: None,
        volumes_dir: work.path().join("volumes"),
        instance_host: [127, 0, 0, 1].into(),
        secret_files_dir: work.path().join("secrets"),
    };
    let config = MicrovmConfig {
        guest_agent: Some(agent),
        ..Default::default()
    };
    let setup = Setup::detect(&config, None).expect("QEMU, a kernel and the guest agent");
    let accel = setup.accel();
    let microvm = MicrovmDriver::new(
        &work.path().join("vm"),
        setup.clone(),
        platform.clone(),
        None,
    )
    .unwrap();
    let process = ProcessDriver::new(&work.path().join("proc"), platform.clone()).unwrap();
    let docker = match DockerDriver::connect().await {
        Ok(d) => {
            ensure_test_image();
            Some(d.with_platform(platform.clone()))
        }
        Err(_) => None,
    };

    // The bare boot's initramfs: busybox and an /init that prints, as the anchor.
    let initrd = work.path().join("bare.cpio");
    {
        let mut cpio = Cpio::new(std::io::BufWriter::new(
            std::fs::File::create(&initrd).unwrap(),
        ));
        let mut busybox = std::fs::File::open("/bin/busybox").unwrap();
        let size = busybox.metadata().unwrap().len();
        cpio.file("bin/busybox", 0o755, size, &mut busybox).unwrap();
        cpio.bytes(
            "init",
            0o755,
            b"#!/bin/busybox sh\n/bin/busybox echo started\n/bin/busybox poweroff -f\n",
        )
        .unwrap();
        cpio.finish().unwrap();
    }
    let append = setup.kernel_append("/init").join(" ");

    let echo = ["sh", "-c", "echo started"];
    let (mut vm, mut bare, mut proc_ms, mut docker_ms) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        bare.push(bare_boot(
            setup.kernel(),
            &initrd,
            &append,
            accel.as_str(),
            work.path(),
        ));
        vm.push(to_first_output(&microvm, &spec(&echo, None, Some(DriverKind::Microvm))).await);
        proc_ms.push(to_first_output(&process, &spec(&echo, None, None)).await);
        if let Some(docker) = &docker {
            let busybox = ["/bin/busybox", "sh", "-c", "echo started"];
            docker_ms.push(to_first_output(docker, &spec(&busybox, Some(TEST_IMAGE), None)).await);
        }
    }
    let (vm50, vm99) = p50_p99(vm);
    let (bare50, bare99) = p50_p99(bare);
    let (proc50, proc99) = p50_p99(proc_ms);

    // An idle guest's QEMU, and guests started at once.
    let idle = Uuid::new_v4();
    microvm
        .start(
            idle,
            &spec(
                &["sh", "-c", "echo started; sleep 600"],
                None,
                Some(DriverKind::Microvm),
            ),
        )
        .await
        .unwrap();
    loop {
        let out = microvm
            .output(idle, OutputStream::Stdout, Some(0), 64)
            .await;
        if out.is_ok_and(|c| !c.bytes.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid: u32 = std::fs::read_to_string(
        work.path()
            .join("vm/vms")
            .join(idle.to_string())
            .join("pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let rss = rss_mib(pid);
    microvm.stop(idle).await.unwrap();

    let vm_echo = spec(&echo, None, Some(DriverKind::Microvm));
    let started = Instant::now();
    let together =
        futures_util::future::join_all((0..AT_ONCE).map(|_| to_first_output(&microvm, &vm_echo)))
            .await;
    let all_up = started.elapsed().as_secs_f64() * 1000.0;
    let slowest = together.iter().copied().fold(0.0, f64::max);

    let mut md = String::new();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    writeln!(md, "## microvm driver\n").unwrap();
    writeln!(
        md,
        "`cargo xtask bench` (tests/benches/microvm.rs), at {commit}, accelerator **{}**, {ROUNDS} rounds, \
         1 vCPU and 256 MiB per guest; Debian's kernel and QEMU; the guest's command is `sh -c 'echo started'` \
         (busybox). Times run from the start call to the command's first byte of output on the host.\n",
        accel.as_str()
    )
    .unwrap();
    writeln!(
        md,
        "| measurement | microvm driver | reference, same run | ratio | aim |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|").unwrap();
    writeln!(
        md,
        "| boot to command start, p50 / p99 | {vm50:.0} / {vm99:.0} ms | bare `qemu -M microvm` boot of a busybox initramfs printing from `/init` (same kernel, arguments and accelerator): {bare50:.0} / {bare99:.0} ms | {:.2}× / {:.2}× | ≤ 1.2× |",
        vm50 / bare50,
        vm99 / bare99
    )
    .unwrap();
    writeln!(
        md,
        "| the same command with the process driver, p50 / p99 | — | {proc50:.1} / {proc99:.1} ms | {:.0}× (p50) | — |",
        vm50 / proc50
    )
    .unwrap();
    if docker_ms.is_empty() {
        writeln!(
            md,
            "| the same command with the docker driver | — | no Docker engine in this run | — | — |"
        )
        .unwrap();
    } else {
        let (d50, d99) = p50_p99(docker_ms);
        writeln!(
            md,
            "| the same command with the docker driver (busybox image), p50 / p99 | — | {d50:.0} / {d99:.0} ms | {:.1}× (p50) | — |",
            vm50 / d50
        )
        .unwrap();
    }
    writeln!(
        md,
        "| boot to command start on KVM | not measurable here (no `vmx`/`svm`) | Firecracker's published ~125 ms | — | under 300 ms |"
    )
    .unwrap();
    writeln!(
        md,
        "| QEMU resident memory (VmRSS) of an idle guest (`sleep`), 2 s after its command started | {rss:.1} MiB | — | — | under 40 MiB |"
    )
    .unwrap();
    writeln!(
        md,
        "| {AT_ONCE} guests started at once on one worker (2 cores) | all printing after {all_up:.0} ms (slowest {slowest:.0} ms) | one alone: {vm50:.0} ms (p50) | {:.2}× | — |",
        all_up / vm50
    )
    .unwrap();
    print!("{md}");
    write_benchmark_section("microvm", &md);
}
