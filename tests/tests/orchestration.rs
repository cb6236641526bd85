//! Orchestration end to end: a real conductor and three real worker agents in this test process,
//! services deployed through the SDK, instances as real processes (and, in CI, Docker containers)
//! serving HTTP, requests through the conductor's gateway.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use aerekos_sdk::{
    Conductor,
    conductor::types::{
        self, DeployRequest, Deployment, InstanceHealth, LoadBalancing, ServiceDefinition,
    },
};
use aerekos_tests::*;
use aerekos_worker::{AdvertiseIp, WorkerConfig, WorkerHandle};
use uuid::Uuid;

const CLUSTER_TOKEN: &str = "aerekos_reg_orchestration-token-0123456789";
const TTL: Duration = Duration::from_secs(3);

/// A service a test deploys: answers `/health`, and every other GET with its instance id, the
/// path, and the request id it was given; POSTs with the number of body bytes it received.
const ECHO_SERVER: &str = r#"
import http.server, json, os
ME = os.environ["AEREKOS_INSTANCE_ID"]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/health":
            return self.reply({"status": "ok"})
        self.reply({"instance": ME, "path": self.path, "request_id": self.headers.get("X-Request-Id")})
    def do_POST(self):
        left, got = int(self.headers.get("Content-Length", "0")), 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            got += len(chunk)
            left -= len(chunk)
        self.reply({"instance": ME, "received": got})
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

struct Cluster {
    conductor: TestConductor,
    admin: Conductor,
    workers: Vec<Option<WorkerHandle>>,
    worker_ids: Vec<Uuid>,
    dirs: Vec<WorkerDir>,
    docker: bool,
    _scripts: tempfile::TempDir,
    echo_script: String,
}

impl Cluster {
    async fn start(docker: bool) -> Self {
        let conductor = TestConductor::start_with(|c| {
            c.heartbeat_interval = Duration::from_secs(1);
            c.worker_ttl = TTL;
            c.registration_token = Some(CLUSTER_TOKEN.to_owned());
        })
        .await;
        let admin = conductor.admin().await;
        let scripts = tempfile::tempdir().unwrap();
        let echo_script = scripts.path().join("echo.py");
        std::fs::write(&echo_script, ECHO_SERVER).unwrap();
        let mut cluster = Cluster {
            conductor,
            admin,
            workers: vec![],
            worker_ids: vec![],
            dirs: vec![],
            docker,
            echo_script: echo_script.display().to_string(),
            _scripts: scripts,
        };
        for n in 0..3 {
            let dir = WorkerDir::new();
            let (handle, id) = cluster.start_worker(n, dir.path()).await;
            cluster.workers.push(Some(handle));
            cluster.worker_ids.push(id);
            cluster.dirs.push(dir);
        }
        cluster
    }

    async fn start_worker(&self, n: usize, dir: &Path) -> (WorkerHandle, Uuid) {
        let mut config = WorkerConfig::new(self.conductor.url.clone(), CLUSTER_TOKEN, dir);
        config.advertise_ip = AdvertiseIp::Fixed(IpAddr::from([127, 0, 0, 1]));
        config.name = Some(format!("worker-{n}"));
        config.docker = self.docker;
        config.api_bind = None;
        let handle = aerekos_worker::start(config).await.expect("worker starts");
        let id = tokio::time::timeout(Duration::from_secs(10), handle.joined())
            .await
            .expect("worker joins");
        (handle, id)
    }

    fn echo_definition(&self, name: &str) -> ServiceDefinition {
        let mut def: ServiceDefinition = ServiceDefinition::builder()
            .name(name)
            .description(Some("test echo service".to_owned()))
            .try_into()
            .unwrap();
        if self.docker {
            def.image = Some(docker_image::TEST_IMAGE.into());
            let script = format!(
                "/bin/busybox mkdir -p /tmp/www/api/{name} && echo $AEREKOS_INSTANCE_ID > /tmp/www/api/{name}/whoami \
                 && echo ok > /tmp/www/health && exec /bin/busybox httpd -f -p $PORT -h /tmp/www"
            );
            def.image_command = vec!["/bin/busybox".into(), "sh".into(), "-c".into(), script];
        } else {
            def.command = vec!["python3".into(), "-u".into(), self.echo_script.clone()];
        }
        def.default_resources = Some(types::ResourceSpec {
            cpu_millicores: 100,
            memory_mb: 32,
            disk_mb: 0,
        });
        def
    }

    async fn define_echo(&self, name: &str) {
        self.admin
            .define_service()
            .body(self.echo_definition(name))
            .send()
            .await
            .expect("service defined");
    }

    async fn deploy(&self, name: &str, req: DeployRequest) -> Deployment {
        self.admin
            .deploy_service()
            .name(name)
            .body(req)
            .send()
            .await
            .expect("deploys")
            .into_inner()
    }

    async fn deployment(&self, name: &str) -> Deployment {
        self.admin
            .get_deployment()
            .name(name)
            .send()
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until `name` has exactly `n` instances, all healthy, and returns them.
    async fn healthy(&self, name: &str, n: usize, secs: u64) -> Deployment {
        eventually(
            secs,
            &format!("{n} healthy instances of {name}"),
            || async {
                let d = self.deployment(name).await;
                (d.instances.len() == n
                    && d.instances
                        .iter()
                        .all(|i| i.health == InstanceHealth::Healthy))
                .then_some(d)
            },
        )
        .await
    }

    /// A GET through the gateway: the instance that answered, or the failure.
    async fn get(&self, http: &reqwest::Client, path: &str) -> Result<String, String> {
        let token = self.admin.token().unwrap_or_default();
        let resp = http
            .get(format!("{}{path}", self.conductor.url))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        Ok(if self.docker {
            text.trim().to_owned()
        } else {
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["instance"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    }

    fn whoami(&self, name: &str) -> String {
        format!("/api/{name}/whoami")
    }

    async fn stop(mut self) {
        for worker in self.workers.iter_mut().filter_map(Option::take) {
            worker.shutdown_and_stop_instances().await;
        }
        self.conductor.stop().await;
    }
}

fn deploy_request(replicas: u32) -> DeployRequest {
    DeployRequest {
        replicas: Some(replicas),
        ..Default::default()
    }
}

#[tokio::test]
async fn replicas_spread_over_workers_shortages_are_named_and_the_gateway_balances() {
    let cluster = Cluster::start(false).await;
    deploy_replicas_and_balance(&cluster).await;
    cluster.stop().await;
}

#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn with_the_docker_driver_replicas_spread_and_the_gateway_balances() {
    docker_image::ensure_test_image();
    let cluster = Cluster::start(true).await;
    deploy_replicas_and_balance(&cluster).await;
    cluster.stop().await;
}

async fn deploy_replicas_and_balance(cluster: &Cluster) {
    cluster.define_echo("echo").await;
    let placed = cluster.deploy("echo", deploy_request(2)).await;
    assert_eq!(placed.instances.len(), 2);
    let d = cluster.healthy("echo", 2, 30).await;
    let mut workers: Vec<Uuid> = d.instances.iter().map(|i| i.worker_id).collect();
    workers.dedup();
    assert_eq!(
        workers.len(),
        2,
        "two replicas on two different workers: {:?}",
        d.instances
    );
    if cluster.docker {
        assert!(
            d.instances
                .iter()
                .all(|i| i.spec.image.as_deref() == Some(docker_image::TEST_IMAGE))
        );
    }

    // More CPU than any worker has: refused, naming the resource and the workers; nothing changes.
    let huge = DeployRequest {
        resources: Some(types::ResourceSpec {
            cpu_millicores: 1_000_000,
            memory_mb: 32,
            disk_mb: 0,
        }),
        ..deploy_request(3)
    };
    let err = failure(
        cluster
            .admin
            .deploy_service()
            .name("echo")
            .body(huge)
            .send()
            .await,
    );
    let body = expect_api_error(err, 409, "insufficient_resources");
    assert!(
        body.message.contains("CPU")
            && body.message.contains("needs 1000000m")
            && body.message.contains("worker-0"),
        "{}",
        body.message
    );
    let after = cluster.deployment("echo").await;
    assert_eq!(
        (after.spec.unwrap().replicas, after.instances.len()),
        (2, 2),
        "a refused deploy changes nothing"
    );

    // The registry lists both; the gateway spreads requests round-robin over them.
    let registry = cluster
        .admin
        .get_registry()
        .service("echo")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registry.endpoints.len(), 2);
    let http = reqwest::Client::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        *seen
            .entry(cluster.get(&http, &cluster.whoami("echo")).await.unwrap())
            .or_default() += 1;
    }
    let ids: Vec<String> = d.instances.iter().map(|i| i.id.to_string()).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for id in &ids {
        assert_eq!(seen.get(id), Some(&10), "round robin alternates: {seen:?}");
    }

    // ip_hash: one client keeps reaching one replica.
    cluster
        .deploy(
            "echo",
            DeployRequest {
                load_balancing: Some(LoadBalancing::IpHash),
                ..Default::default()
            },
        )
        .await;
    let first = cluster.get(&http, &cluster.whoami("echo")).await.unwrap();
    for _ in 0..10 {
        assert_eq!(
            cluster.get(&http, &cluster.whoami("echo")).await.unwrap(),
            first
        );
    }

    // The gateway checks the token before forwarding.
    let resp = http
        .get(format!(
            "{}{}",
            cluster.conductor.url,
            cluster.whoami("echo")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");

    // Disabling stops every instance; the gateway then answers 503 with an ErrorBody.
    cluster
        .admin
        .disable_service()
        .name("echo")
        .send()
        .await
        .unwrap();
    assert!(cluster.deployment("echo").await.instances.is_empty());
    let resp = http
        .get(format!(
            "{}{}",
            cluster.conductor.url,
            cluster.whoami("echo")
        ))
        .bearer_auth(cluster.admin.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["code"],
        "service_unavailable"
    );
}

#[tokio::test]
async fn the_gateway_streams_bodies_and_passes_the_request_id_on() {
    let cluster = Cluster::start(false).await;
    cluster.define_echo("echo").await;
    cluster.deploy("echo", deploy_request(1)).await;
    cluster.healthy("echo", 1, 30).await;
    let http = reqwest::Client::new();
    let token = cluster.admin.token().unwrap();

    let resp = http
        .get(format!("{}/api/echo/anything?x=1", cluster.conductor.url))
        .bearer_auth(&token)
        .header("X-Request-Id", "orchestration-test-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "orchestration-test-42");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (body["path"].as_str(), body["request_id"].as_str()),
        (
            Some("/api/echo/anything?x=1"),
            Some("orchestration-test-42")
        )
    );

    // 32 MiB, 32 times the conductor's own body limit: the gateway streams it to the instance.
    let size = 32 * 1024 * 1024;
    let resp = http
        .post(format!("{}/api/echo/upload", cluster.conductor.url))
        .bearer_auth(&token)
        .header("Content-Length", size.to_string())
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["received"],
        size
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_killed_instance_is_restarted_and_costs_no_failed_get() {
    let cluster = Cluster::start(false).await;
    cluster.define_echo("echo").await;
    cluster.deploy("echo", deploy_request(2)).await;
    let d = cluster.healthy("echo", 2, 30).await;
    let victim = d.instances[0].clone();

    // Clients keep reading through the gateway while one instance is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(vec![])),
    );
    let http = reqwest::Client::new();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, http) = (stop.clone(), ok.clone(), failed.clone(), http.clone());
            let (url, token) = (
                format!("{}/api/echo/whoami", cluster.conductor.url),
                cluster.admin.token().unwrap(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let line =
                                format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                            failed.lock().unwrap().push(line);
                        }
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker_index = cluster
        .worker_ids
        .iter()
        .position(|w| *w == victim.worker_id)
        .unwrap();
    let pid_file = cluster.dirs[worker_index]
        .path()
        .join("instances")
        .join(victim.id.to_string())
        .join("pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 1);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // Restarted by its worker and healthy again.
    let back = eventually(30, "the killed instance restarted and healthy", || async {
        let d = cluster.deployment("echo").await;
        d.instances
            .into_iter()
            .find(|i| i.id == victim.id && i.restarts >= 1 && i.health == InstanceHealth::Healthy)
    })
    .await;
    assert_eq!(back.worker_id, victim.worker_id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} GETs failed (of {}): {failed:?}",
        failed.len(),
        ok.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) > 50, "the readers kept reading");
    cluster.stop().await;
}

#[tokio::test]
async fn a_lost_workers_instances_move_elsewhere_and_its_return_leaves_no_duplicates() {
    let mut cluster = Cluster::start(false).await;
    cluster.define_echo("echo").await;
    cluster.deploy("echo", deploy_request(2)).await;
    let before = cluster.healthy("echo", 2, 30).await;
    let lost = before.instances[0].clone();
    let index = cluster
        .worker_ids
        .iter()
        .position(|w| *w == lost.worker_id)
        .unwrap();

    // A power cut: the agent and its instances go at once.
    cluster.workers[index]
        .take()
        .unwrap()
        .shutdown_and_stop_instances()
        .await;
    let stopped_at = tokio::time::Instant::now();
    let moved = eventually(
        2 * TTL.as_secs() + 10,
        "two healthy instances on live workers",
        || async {
            let d = cluster.deployment("echo").await;
            let healthy: Vec<_> = d
                .instances
                .iter()
                .filter(|i| i.health == InstanceHealth::Healthy)
                .collect();
            (healthy.len() == 2 && healthy.iter().all(|i| i.worker_id != lost.worker_id))
                .then_some(d)
        },
    )
    .await;
    println!("replaced within {:?} (TTL {:?})", stopped_at.elapsed(), TTL);
    // The lost instance is dropped once the replacement is healthy.
    let d = eventually(10, "the lost instance removed", || async {
        let d = cluster.deployment("echo").await;
        (!d.instances.iter().any(|i| i.id == lost.id)).then_some(d)
    })
    .await;
    assert_eq!(
        d.instances.len(),
        2,
        "{:?} (was {:?})",
        d.instances,
        moved.instances
    );

    // The worker comes back (same identity, its old assignment saved on disk): no duplicates.
    let (handle, id) = cluster
        .start_worker(index, cluster.dirs[index].path())
        .await;
    assert_eq!(id, lost.worker_id);
    cluster.workers[index] = Some(handle);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let d = cluster.deployment("echo").await;
        assert_eq!(d.instances.len(), 2, "{:?}", d.instances);
        assert!(!d.instances.iter().any(|i| i.id == lost.id));
    }
    // And the old instance is not running on it.
    let pid_file = cluster.dirs[index]
        .path()
        .join("instances")
        .join(lost.id.to_string())
        .join("pid");
    assert!(
        !pid_file.exists(),
        "the returning worker does not run the replaced instance"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn dependencies_are_placed_and_healthy_first() {
    let cluster = Cluster::start(false).await;
    cluster.define_echo("base").await;
    let mut app = cluster.echo_definition("app");
    app.depends_on = vec!["base".into()];
    cluster
        .admin
        .define_service()
        .body(app)
        .send()
        .await
        .unwrap();

    let d = cluster.deploy("app", deploy_request(1)).await;
    // base is placed at once; app waits for it to be healthy.
    assert_eq!(d.waiting_for, ["base"]);
    assert!(d.instances.is_empty());
    assert_eq!(cluster.deployment("base").await.instances.len(), 1);
    let base = cluster.healthy("base", 1, 30).await;
    let app = cluster.healthy("app", 1, 30).await;
    // app was placed after base reported itself healthy (its last change).
    assert!(
        app.instances[0].created_at >= base.instances[0].updated_at,
        "{:?} / {:?}",
        app.instances[0],
        base.instances[0]
    );

    // base cannot be disabled under app; a stateful service runs one replica.
    let err = failure(cluster.admin.disable_service().name("base").send().await);
    expect_api_error(err, 409, "service_has_dependents");
    let err = failure(
        cluster
            .admin
            .deploy_service()
            .name("key_manager")
            .body(deploy_request(2))
            .send()
            .await,
    );
    let body = expect_api_error(err, 400, "invalid_deployment");
    assert!(body.message.contains("one replica"), "{}", body.message);
    // Bad definitions say what to fix.
    let mut bad = cluster.echo_definition("workers");
    let err = failure(
        cluster
            .admin
            .define_service()
            .body(bad.clone())
            .send()
            .await,
    );
    assert!(
        expect_api_error(err, 400, "invalid_service")
            .message
            .contains("conductor's own paths")
    );
    bad.name = "Bad-Name".into();
    let err = failure(cluster.admin.define_service().body(bad).send().await);
    assert!(
        expect_api_error(err, 400, "invalid_service")
            .message
            .contains("a–z")
    );
    let labels = HashMap::from([("zone".to_owned(), "mars".to_owned())]);
    let err = failure(
        cluster
            .admin
            .deploy_service()
            .name("base")
            .body(DeployRequest {
                labels,
                ..deploy_request(2)
            })
            .send()
            .await,
    );
    assert!(
        expect_api_error(err, 409, "insufficient_resources")
            .message
            .contains("lacks label zone=mars")
    );
    cluster.stop().await;
}
