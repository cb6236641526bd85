//! Worker benchmarks, written to docs/benchmarks.md:
//! - time from assignment (the conductor's `create_instance`) to the worker reporting the container
//!   running, against raw Docker create+start through the Engine API (bollard) in the same run;
//! - the worker process's memory (VmRSS) idle and with 20 process instances.
//! Run: `cargo xtask bench` (it builds the release `aerekos` binary the memory figure runs).

use std::{
    collections::HashMap,
    fmt::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use aerekos_sdk::conductor::types::{InstanceSpec, InstanceState};
use aerekos_tests::{
    TestConductor,
    bench::median,
    docker_image::{TEST_IMAGE, ensure_test_image},
    free_port, write_benchmark_section,
};
use bollard::{
    Docker,
    models::{ContainerCreateBody, HostConfig, PortBinding},
    query_parameters::{
        CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    },
};
use uuid::Uuid;

const ROUNDS: usize = 10;
const CLUSTER_TOKEN: &str = "aerekos_reg_bench-cluster-token-0123456789";

fn busybox(port: u16) -> InstanceSpec {
    InstanceSpec {
        image: Some(TEST_IMAGE.into()),
        command: [
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            &port.to_string(),
            "-h",
            "/www",
        ]
        .map(String::from)
        .to_vec(),
        env: Default::default(),
        ports: vec![port],
        resources: None,
        health_path: None,
        volume: None,
        tls: false,
        run_once: false,
        timeout_secs: None,
        driver: None,
        secret_env: Default::default(),
        generation: 0,
    }
}

/// Raw Docker: create + start of the same container, as the driver does, through bollard.
async fn raw_docker_start(docker: &Docker, port: u16) -> Duration {
    let name = format!("aerekos-bench-raw-{}", Uuid::new_v4());
    let key = format!("{port}/tcp");
    let body = ContainerCreateBody {
        image: Some(TEST_IMAGE.into()),
        cmd: Some(busybox(port).command),
        exposed_ports: Some(HashMap::from([(key.clone(), HashMap::new())])),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                key,
                Some(vec![PortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some(port.to_string()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .unwrap();
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();
    let took = started.elapsed();
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    took
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    ensure_test_image();
    let docker = Docker::connect_with_local_defaults().expect("a Docker engine");
    let c =
        TestConductor::start_with(|config| config.registration_token = Some(CLUSTER_TOKEN.into()))
            .await;
    let admin = c.admin().await;

    // 1. Assignment to running container, through the in-process worker.
    let worker_dir = tempfile::tempdir().unwrap();
    let mut config =
        aerekos_worker::WorkerConfig::new(c.url.clone(), CLUSTER_TOKEN, worker_dir.path());
    config.advertise_ip = aerekos_worker::AdvertiseIp::Fixed([127, 0, 0, 1].into());
    config.api_bind = Some("127.0.0.1:0".parse().unwrap());
    let worker = aerekos_worker::start(config).await.unwrap();
    let worker_id = worker.joined().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the assignment watch is open

    let (mut ours, mut raw) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        raw.push(raw_docker_start(&docker, free_port()).await.as_secs_f64() * 1000.0);
        let started = Instant::now();
        let id = admin
            .create_instance()
            .id(worker_id)
            .body_map(|b| b.spec(busybox(free_port())))
            .send()
            .await
            .unwrap()
            .into_inner()
            .id;
        loop {
            let i = admin
                .get_instance()
                .instance_id(id)
                .send()
                .await
                .unwrap()
                .into_inner();
            if i.state == InstanceState::Running {
                break;
            }
            assert_ne!(i.state, InstanceState::Failed, "{:?}", i.reason);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ours.push(started.elapsed().as_secs_f64() * 1000.0);
        admin
            .delete_instance()
            .instance_id(id)
            .send()
            .await
            .unwrap();
    }
    worker.shutdown_and_stop_instances().await;
    let (ours_ms, raw_ms) = (median(ours), median(raw));

    // 2. Memory of a real worker process (the release binary), idle and with 20 process instances.
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/aerekos");
    let memory = if bin.exists() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(&bin)
            .arg("worker")
            .env("CONDUCTOR_URL", &c.url)
            .env("CONDUCTOR_TOKEN", CLUSTER_TOKEN)
            .env("DATA_DIR", dir.path())
            .env("WORKER_NAME", "bench-memory")
            .env("WORKER_IP", "127.0.0.1")
            .env("WORKER_API_HOST", "127.0.0.1")
            .env("WORKER_API_PORT", "0")
            .env("WORKER_DOCKER", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let id = loop {
            let page = admin.list_workers().send().await.unwrap().into_inner();
            if let Some(w) = page.workers.iter().find(|w| w.name == "bench-memory") {
                break w.id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss_kib(pid);
        let mut ids = vec![];
        for _ in 0..20 {
            let spec = InstanceSpec {
                image: None,
                command: vec!["sleep".into(), "600".into()],
                ..busybox(free_port())
            };
            let spec = InstanceSpec {
                ports: vec![],
                ..spec
            };
            ids.push(
                admin
                    .create_instance()
                    .id(id)
                    .body_map(|b| b.spec(spec))
                    .send()
                    .await
                    .unwrap()
                    .into_inner()
                    .id,
            );
        }
        loop {
            let all = admin
                .list_worker_instances()
                .id(id)
                .send()
                .await
                .unwrap()
                .into_inner();
            if all
                .iter()
                .filter(|i| i.state == InstanceState::Running)
                .count()
                == 20
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let busy = rss_kib(pid);
        for i in ids {
            admin.delete_instance().instance_id(i).send().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = child.kill();
        let _ = child.wait();
        Some((idle, busy))
    } else {
        None
    };
    c.stop().await;

    let mut md = String::new();
    writeln!(md, "## Worker\n").unwrap();
    writeln!(md, "`cargo bench -p aerekos-tests --bench worker` (release; `cargo xtask bench` builds the release `aerekos`").unwrap();
    writeln!(md, "binary the memory figure runs, and needs a Docker engine). Median of {ROUNDS} rounds. Last run: {}.\n", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")).unwrap();
    writeln!(md, "| what | worker | reference | ratio | aim |").unwrap();
    writeln!(md, "|---|---|---|---|---|").unwrap();
    writeln!(
        md,
        "| assignment (`create_instance` at the conductor) → container reported running (busybox httpd, port published) | {ours_ms:.0} ms | raw Docker create+start through the Engine API (bollard): {raw_ms:.0} ms | {:.2}× | ≤ 1.3× |",
        ours_ms / raw_ms
    )
    .unwrap();
    match memory {
        Some((idle, busy)) => writeln!(
            md,
            "| worker process memory (VmRSS), idle → with 20 process instances | {:.1} MiB → {:.1} MiB | the same process idle | {:.2}× | |",
            idle as f64 / 1024.0,
            busy as f64 / 1024.0,
            busy as f64 / idle as f64
        )
        .unwrap(),
        None => writeln!(md, "| worker process memory | not measured: target/release/aerekos is missing (run `cargo xtask bench`) | | | |").unwrap(),
    }
    print!("{md}");
    write_benchmark_section("worker", &md);
}
