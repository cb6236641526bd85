//! The worker agent with the process driver, end to end: a real conductor and real worker agents
//! in this test process, real child processes serving HTTP on loopback ports.

use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_sdk::conductor::types::{self, InstanceState};
use aerekos_tests::*;
use aerekos_worker::{AdvertiseIp, WorkerConfig, WorkerHandle};
use uuid::Uuid;

const CLUSTER_TOKEN: &str = "aerekos_reg_test-cluster-token-0123456789";

async fn conductor() -> TestConductor {
    TestConductor::start_with(|c| {
        c.heartbeat_interval = Duration::from_secs(1);
        c.worker_ttl = Duration::from_secs(3);
        c.registration_token = Some(CLUSTER_TOKEN.to_owned());
    })
    .await
}

fn worker_config(c: &TestConductor, data_dir: &Path) -> WorkerConfig {
    let mut config = WorkerConfig::new(c.url.clone(), CLUSTER_TOKEN, data_dir);
    config.advertise_ip = AdvertiseIp::Fixed(IpAddr::from([127, 0, 0, 1]));
    config.name = Some("test-worker".into());
    // These tests are about the process driver (tests/tests/drivers.rs covers Docker).
    config.docker = false;
    // Tests run side by side: each worker API on a port of its own.
    config.api_bind = Some("127.0.0.1:0".parse().unwrap());
    config
}

async fn start_worker(config: WorkerConfig) -> (WorkerHandle, Uuid) {
    let handle = aerekos_worker::start(config).await.expect("worker starts");
    let id = tokio::time::timeout(Duration::from_secs(10), handle.joined())
        .await
        .expect("worker joins");
    (handle, id)
}

/// A small HTTP server as an instance: python's http.server on `port`.
fn http_server_spec(port: u16) -> types::InstanceSpec {
    types::InstanceSpec {
        image: None,
        command: [
            "python3",
            "-u",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
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

async fn instance(admin: &aerekos_sdk::Conductor, id: Uuid) -> types::Instance {
    admin
        .get_instance()
        .instance_id(id)
        .send()
        .await
        .unwrap()
        .into_inner()
}

async fn wait_running(
    admin: &aerekos_sdk::Conductor,
    id: Uuid,
    min_restarts: u32,
) -> types::Instance {
    eventually(20, "instance running", || async {
        let i = instance(admin, id).await;
        (i.state == InstanceState::Running && i.restarts >= min_restarts).then_some(i)
    })
    .await
}

async fn http_ok(address: &str) -> bool {
    reqwest::get(format!("http://{address}/"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn pid_of(worker_dir: &Path, instance: Uuid) -> Option<u32> {
    std::fs::read_to_string(
        worker_dir
            .join("instances")
            .join(instance.to_string())
            .join("pid"),
    )
    .ok()?
    .trim()
    .parse()
    .ok()
}

async fn assign(admin: &aerekos_sdk::Conductor, worker: Uuid, spec: types::InstanceSpec) -> Uuid {
    admin
        .create_instance()
        .id(worker)
        .body_map(|b| b.spec(spec))
        .send()
        .await
        .unwrap()
        .into_inner()
        .id
}

#[tokio::test]
async fn an_instance_runs_is_reachable_logs_and_is_restarted_after_a_kill() {
    let c = conductor().await;
    let dir = WorkerDir::new();
    let (worker, worker_id) = start_worker(worker_config(&c, dir.path())).await;
    let admin = c.admin().await;
    let w = admin
        .get_worker()
        .id(worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.name, "test-worker");
    assert!(
        w.resources.memory_total_bytes > 0 && w.resources.disk_total_bytes > 0,
        "real resources: {:?}",
        w.resources
    );
    assert_eq!(
        w.resources
            .drivers
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["process"]
    );

    let port = free_port();
    let id = assign(&admin, worker_id, http_server_spec(port)).await;
    let running = wait_running(&admin, id, 0).await;
    let address = running.address.expect("an address");
    assert_eq!(address, format!("127.0.0.1:{port}"));
    eventually(10, "instance answers HTTP", || async {
        http_ok(&address).await.then_some(())
    })
    .await;
    let logs = eventually(10, "request in the logs", || async {
        worker
            .logs(id, 64 * 1024)
            .await
            .ok()
            .filter(|l| l.contains("\"GET / HTTP/1.1\" 200"))
    })
    .await;
    assert!(logs.contains("GET /"), "{logs}");

    // The worker's own API shows the instance and its output to a user, and to nobody else.
    let api_url = admin
        .get_worker()
        .id(worker_id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .api_url
        .expect("api_url registered");
    assert_eq!(Some(api_url.clone()), worker.api_url());
    let agent = aerekos_sdk::WorkerAgent::with_token(&api_url, admin.token().unwrap());
    let listed = agent.list_instances().send().await.unwrap().into_inner();
    assert_eq!(
        listed
            .iter()
            .map(|i| (i.id, i.state.as_str()))
            .collect::<Vec<_>>(),
        [(id, "running")]
    );
    let mut stream = agent
        .get_instance_logs()
        .id(id)
        .max_bytes(4096)
        .send()
        .await
        .unwrap()
        .into_inner()
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8_lossy(&text).contains("GET /"),
        "logs through the API"
    );
    let viewer = aerekos_sdk::WorkerAgent::with_token(&api_url, c.viewer().await.token().unwrap());
    viewer.list_instances().send().await.expect("viewers read");
    let anon = aerekos_sdk::WorkerAgent::new(&api_url);
    expect_api_error(
        failure(anon.list_instances().send().await),
        401,
        "unauthorized",
    );
    let missing = agent
        .get_instance_logs()
        .id(Uuid::new_v4())
        .send()
        .await
        .map(|_| ());
    expect_api_error(failure(missing), 404, "instance_not_found");
    assert_eq!(
        anon.health().send().await.unwrap().into_inner().worker_id,
        Some(worker_id)
    );

    // Killed from outside: the worker restarts it by itself and says so.
    let pid = pid_of(dir.path(), id).expect("pid file");
    assert!(pid > 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = wait_running(&admin, id, 1).await;
    assert_eq!(again.restarts, 1);
    let new_pid = pid_of(dir.path(), id).expect("pid file");
    assert_ne!(new_pid, pid);
    eventually(10, "restarted instance answers", || async {
        http_ok(&address).await.then_some(())
    })
    .await;

    // Removing the assignment stops it.
    admin
        .delete_instance()
        .instance_id(id)
        .send()
        .await
        .unwrap();
    eventually(10, "instance stopped", || async {
        (!http_ok(&address).await && pid_of(dir.path(), id).is_none()).then_some(())
    })
    .await;
    worker.shutdown_and_stop_instances().await;
    c.stop().await;
}

#[tokio::test]
async fn a_restarted_worker_keeps_its_id_and_adopts_its_instances() {
    let c = conductor().await;
    let dir = WorkerDir::new();
    let (worker, worker_id) = start_worker(worker_config(&c, dir.path())).await;
    let admin = c.admin().await;
    let port = free_port();
    let id = assign(&admin, worker_id, http_server_spec(port)).await;
    let address = wait_running(&admin, id, 0).await.address.unwrap();
    eventually(10, "instance answers HTTP", || async {
        http_ok(&address).await.then_some(())
    })
    .await;
    let pid = pid_of(dir.path(), id).unwrap();

    worker.shutdown().await;
    assert!(
        http_ok(&address).await,
        "instances outlive the worker process"
    );

    let (worker, again) = start_worker(worker_config(&c, dir.path())).await;
    assert_eq!(again, worker_id, "same identity");
    // A few reconcile rounds later: the same process, not a second copy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pid_of(dir.path(), id), Some(pid), "adopted, not restarted");
    let i = wait_running(&admin, id, 0).await;
    assert_eq!(i.restarts, 0);
    assert!(http_ok(&address).await);
    let workers = admin
        .list_workers()
        .send()
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1, "no duplicate worker");
    worker.shutdown_and_stop_instances().await;
    c.stop().await;
}

#[tokio::test]
async fn a_conductor_outage_leaves_instances_running_and_the_worker_reconnects() {
    let mut c = conductor().await;
    let dir = WorkerDir::new();
    let (worker, worker_id) = start_worker(worker_config(&c, dir.path())).await;
    let admin = c.admin().await;
    let port = free_port();
    let id = assign(&admin, worker_id, http_server_spec(port)).await;
    let address = wait_running(&admin, id, 0).await.address.unwrap();
    eventually(10, "instance answers HTTP", || async {
        http_ok(&address).await.then_some(())
    })
    .await;
    let pid = pid_of(dir.path(), id).unwrap();

    c.stop_for_now().await;
    // Longer than three heartbeat intervals.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(http_ok(&address).await, "the instance kept running");
    assert_eq!(pid_of(dir.path(), id), Some(pid));

    c.start_again_on_same_address().await;
    let admin = c.admin().await;
    let before = chrono::Utc::now();
    eventually(20, "worker heartbeats again", || async {
        let w = admin
            .get_worker()
            .id(worker_id)
            .send()
            .await
            .unwrap()
            .into_inner();
        (w.last_heartbeat_at > before && w.status == types::WorkerStatus::Live).then_some(())
    })
    .await;
    assert_eq!(pid_of(dir.path(), id), Some(pid), "never restarted");
    worker.shutdown_and_stop_instances().await;
    c.stop().await;
}

#[tokio::test]
async fn a_wiped_conductor_database_is_rejoined_under_the_same_id() {
    let mut c = conductor().await;
    let dir = WorkerDir::new();
    let (worker, worker_id) = start_worker(worker_config(&c, dir.path())).await;
    c.stop_for_now().await;
    c.wipe_database();
    c.start_again_on_same_address().await;
    let admin = c.admin().await;
    let w = eventually(20, "worker rejoins", || async {
        admin
            .get_worker()
            .id(worker_id)
            .send()
            .await
            .ok()
            .map(|w| w.into_inner())
    })
    .await;
    assert_eq!(w.id, worker_id);
    assert_eq!(
        admin
            .list_workers()
            .send()
            .await
            .unwrap()
            .into_inner()
            .workers
            .len(),
        1
    );
    worker.shutdown().await;
    c.stop().await;
}

#[tokio::test]
async fn a_changed_ip_updates_the_existing_worker() {
    let c = conductor().await;
    let dir = WorkerDir::new();
    let ip = Arc::new(Mutex::new(IpAddr::from([10, 0, 0, 5])));
    let mut config = worker_config(&c, dir.path());
    let source = ip.clone();
    config.advertise_ip = AdvertiseIp::Dynamic(Arc::new(move || Some(*source.lock().unwrap())));
    let (worker, worker_id) = start_worker(config).await;
    let admin = c.admin().await;
    assert_eq!(
        admin
            .get_worker()
            .id(worker_id)
            .send()
            .await
            .unwrap()
            .into_inner()
            .ip_address,
        "10.0.0.5"
    );
    *ip.lock().unwrap() = IpAddr::from([10, 0, 0, 77]);
    eventually(10, "new ip recorded", || async {
        let w = admin
            .get_worker()
            .id(worker_id)
            .send()
            .await
            .unwrap()
            .into_inner();
        (w.ip_address == "10.0.0.77").then_some(())
    })
    .await;
    assert_eq!(
        admin
            .list_workers()
            .send()
            .await
            .unwrap()
            .into_inner()
            .workers
            .len(),
        1
    );
    worker.shutdown().await;
    c.stop().await;
}

#[tokio::test]
async fn bad_assignments_fail_with_a_reason_and_the_worker_carries_on() {
    let c = conductor().await;
    let dir = WorkerDir::new();
    let (worker, worker_id) = start_worker(worker_config(&c, dir.path())).await;
    let admin = c.admin().await;

    let mut missing = http_server_spec(free_port());
    missing.command = vec!["/nonexistent/aerekos-test-binary".into()];
    let not_found = assign(&admin, worker_id, missing).await;

    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let busy = assign(&admin, worker_id, http_server_spec(taken_port)).await;

    let image_only = types::InstanceSpec {
        image: Some("alpine:3".into()),
        ..http_server_spec(free_port())
    };
    let image_only = types::InstanceSpec {
        command: vec![],
        ..image_only
    };
    let no_command = assign(&admin, worker_id, image_only).await;

    let good_port = free_port();
    let good = assign(&admin, worker_id, http_server_spec(good_port)).await;

    for (id, expected) in [
        (
            not_found,
            "command not found: /nonexistent/aerekos-test-binary".to_owned(),
        ),
        (
            busy,
            format!("port {taken_port} is already in use on this worker"),
        ),
        (
            no_command,
            "image alpine:3 needs the docker driver, and no Docker engine answers on this worker"
                .to_owned(),
        ),
    ] {
        let i = eventually(20, "instance failed", || async {
            let i = instance(&admin, id).await;
            (i.state == InstanceState::Failed).then_some(i)
        })
        .await;
        let reason = i.reason.unwrap_or_default();
        assert!(
            reason.contains(&expected),
            "{reason:?} should say {expected:?}"
        );
    }
    // The good one runs beside them, and the worker keeps heartbeating.
    let running = wait_running(&admin, good, 0).await;
    let address = running.address.unwrap();
    eventually(10, "the good instance answers", || async {
        http_ok(&address).await.then_some(())
    })
    .await;
    let before = chrono::Utc::now();
    eventually(10, "heartbeats continue", || async {
        let w = admin
            .get_worker()
            .id(worker_id)
            .send()
            .await
            .unwrap()
            .into_inner();
        (w.last_heartbeat_at > before).then_some(())
    })
    .await;
    drop(taken);
    worker.shutdown_and_stop_instances().await;
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn a_docker_instance_runs_and_is_adopted_after_a_worker_restart() {
    aerekos_tests::docker_image::ensure_test_image();
    let c = conductor().await;
    let dir = WorkerDir::new();
    let mut config = worker_config(&c, dir.path());
    config.docker = true;
    let (worker, worker_id) = start_worker(config.clone()).await;
    let admin = c.admin().await;
    let drivers = admin
        .get_worker()
        .id(worker_id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .resources
        .drivers;
    assert!(
        drivers
            .iter()
            .any(|d| d.name == "docker" && d.version.is_some()),
        "{drivers:?}"
    );

    let port = free_port();
    let spec = types::InstanceSpec {
        image: Some(aerekos_tests::docker_image::TEST_IMAGE.into()),
        command: [
            "/bin/busybox",
            "httpd",
            "-f",
            "-v",
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
    };
    let id = assign(&admin, worker_id, spec).await;
    let address = wait_running(&admin, id, 0).await.address.unwrap();
    eventually(20, "container answers HTTP", || async {
        http_ok(&address).await.then_some(())
    })
    .await;
    let container_id = |id: Uuid| {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.Id}}", &format!("aerekos-{id}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = container_id(id);
    assert!(!before.is_empty());

    worker.shutdown().await;
    let (worker, again) = start_worker(config).await;
    assert_eq!(again, worker_id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(container_id(id), before, "the same container, adopted");
    assert_eq!(wait_running(&admin, id, 0).await.restarts, 0);
    assert!(http_ok(&address).await);
    worker.shutdown_and_stop_instances().await;
    assert!(
        container_id(id).is_empty(),
        "the container is removed when stopped"
    );
    c.stop().await;
}

/// A server whose /health answers 200, or 503 while a file `unhealthy` sits in its working
/// directory (the instance's directory, for the process driver).
fn health_toggling_spec(port: u16) -> types::InstanceSpec {
    let script = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if os.path.exists('unhealthy') else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'ok' if code == 200 else b'sick')
http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
"#;
    types::InstanceSpec {
        image: None,
        command: vec!["python3".into(), "-c".into(), script.into()],
        env: Default::default(),
        ports: vec![port],
        resources: None,
        health_path: Some("/health".into()),
        volume: None,
        tls: false,
        run_once: false,
        timeout_secs: None,
        driver: None,
        secret_env: Default::default(),
        generation: 0,
    }
}

#[tokio::test]
async fn health_paths_make_instances_starting_running_and_unhealthy() {
    let c = conductor().await;
    let dir = WorkerDir::new();
    let (worker, worker_id) = start_worker(worker_config(&c, dir.path())).await;
    let admin = c.admin().await;
    let id = assign(&admin, worker_id, health_toggling_spec(free_port())).await;
    // Healthy once /health answers.
    wait_running(&admin, id, 0).await;

    let flag = dir
        .path()
        .join("instances")
        .join(id.to_string())
        .join("unhealthy");
    std::fs::write(&flag, "").unwrap();
    let sick = eventually(20, "instance unhealthy", || async {
        let i = instance(&admin, id).await;
        (i.state == InstanceState::Unhealthy).then_some(i)
    })
    .await;
    let reason = sick.reason.unwrap_or_default();
    assert!(reason.contains("/health answered 503"), "{reason}");
    assert_eq!(
        sick.restarts, 0,
        "unhealthy is reported first; only a lasting failure restarts it"
    );

    std::fs::remove_file(&flag).unwrap();
    let well = wait_running(&admin, id, 0).await;
    assert!(well.reason.is_none());

    // A health path that never answers keeps a fresh instance `starting`, with the reason.
    let mut never = health_toggling_spec(free_port());
    never.health_path = Some("/missing-but-404-is-not-2xx".into());
    never.command = [
        "python3",
        "-u",
        "-m",
        "http.server",
        &never.ports[0].to_string(),
    ]
    .map(String::from)
    .to_vec();
    let stuck = assign(&admin, worker_id, never).await;
    // (Its first probes may find nothing listening yet; then the server answers 404.)
    let starting = eventually(20, "instance starting with the probe's answer", || async {
        let i = instance(&admin, stuck).await;
        (i.state == InstanceState::Starting
            && i.reason
                .as_deref()
                .is_some_and(|r| r.contains("answered 404")))
        .then_some(i)
    })
    .await;
    assert_eq!(starting.restarts, 0);
    worker.shutdown_and_stop_instances().await;
    c.stop().await;
}
