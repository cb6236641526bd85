//! Orchestration figures for docs/benchmarks.md (run by `cargo xtask bench`):
//! - placements per second: 1,000 deploys across 500 registered workers, against reading a
//!   service back (`GET /api/services/{name}`) as many times in the same run;
//! - heartbeat latency with 5,000 simulated workers at a 10 s interval (500 heartbeats/s), against
//!   a bare poem handler taking the same heartbeats on the same schedule, and whether any worker
//!   was falsely marked lost;
//! - the gateway's overhead: requests/s to key_manager through the conductor's gateway against
//!   straight to the instance, same run.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aerekos_sdk::conductor::types::{
    self, DeployRequest, InstanceHealth, ServiceDefinition, WorkerStatus,
};
use aerekos_tests::{
    TestConductor, bench, eventually,
    processes::{ConductorProcess, WorkerProcess},
    register_request, resources, write_benchmark_section,
};
use poem::{EndpointExt as _, Route, handler, post, web::Json};

const PLACEMENT_WORKERS: usize = 500;
const DEPLOYS: usize = 1000;
const HEARTBEAT_WORKERS: usize = 5000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
const HEARTBEAT_ROUNDS: u32 = 3;

/// `n` operations from 8 tasks; operations per second.
async fn timed<F, Fut>(n: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn placements() -> (f64, f64) {
    let c = TestConductor::start_with(|c| {
        c.heartbeat_interval = Duration::from_secs(600);
        c.worker_ttl = Duration::from_secs(3600);
        c.instance_ports = 20000..=29999;
        c.throttle = aerekos_common::throttle::ThrottleConfig::off();
    })
    .await;
    let admin = c.admin().await;
    let token = c.registration_token().await;
    for i in 0..PLACEMENT_WORKERS {
        let mut req = register_request(
            &token,
            &format!("w{i}"),
            &format!("10.0.{}.{}", i / 250, i % 250 + 1),
        );
        req.resources = resources(10.0, 30 << 30);
        c.anonymous()
            .register_worker()
            .body(req)
            .send()
            .await
            .unwrap();
    }
    for i in 0..DEPLOYS {
        let def: ServiceDefinition = ServiceDefinition::builder()
            .name(format!("svc{i}"))
            .command(vec!["true".to_owned()])
            .try_into()
            .unwrap();
        admin.define_service().body(def).send().await.unwrap();
    }
    let a = Arc::new(admin);
    let deploys = {
        let a = a.clone();
        timed(DEPLOYS, move |i| {
            let a = a.clone();
            async move {
                let d = a
                    .deploy_service()
                    .name(format!("svc{i}"))
                    .body(DeployRequest::default())
                    .send()
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(d.instances.len(), 1, "one instance placed");
            }
        })
        .await
    };
    let reads = {
        let a = a.clone();
        timed(DEPLOYS, move |i| {
            let a = a.clone();
            async move {
                a.get_service()
                    .name(format!("svc{i}"))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await
    };
    // Spread: every worker got two of the thousand.
    let page = a
        .list_workers()
        .limit(1000)
        .send()
        .await
        .unwrap()
        .into_inner();
    let mut per_worker = std::collections::HashMap::<uuid::Uuid, usize>::new();
    for w in &page.workers {
        per_worker.insert(
            w.id,
            a.list_worker_instances()
                .id(w.id)
                .send()
                .await
                .unwrap()
                .into_inner()
                .len(),
        );
    }
    assert!(
        per_worker
            .values()
            .all(|n| *n == DEPLOYS / PLACEMENT_WORKERS),
        "spread evenly"
    );
    c.stop().await;
    (deploys, reads)
}

/// Sends every worker's heartbeat once per interval, evenly spread; latencies in ms.
async fn heartbeat_schedule(
    base: String,
    workers: Arc<Vec<(uuid::Uuid, String)>>,
    body: Vec<u8>,
) -> Vec<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let gap = HEARTBEAT_INTERVAL / workers.len() as u32;
    let start = tokio::time::Instant::now();
    let mut tasks = vec![];
    for k in 0..(workers.len() * HEARTBEAT_ROUNDS as usize) {
        tokio::time::sleep_until(start + gap * k as u32).await;
        let (id, credential) = workers[k % workers.len()].clone();
        let (client, latencies, body, base) = (
            client.clone(),
            latencies.clone(),
            body.clone(),
            base.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let resp = client
                .post(format!("{base}/api/workers/{id}/heartbeat"))
                .bearer_auth(credential)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(
                resp.status().is_success(),
                "heartbeat refused: {}",
                resp.status()
            );
            let _ = resp.bytes().await;
            latencies
                .lock()
                .unwrap()
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    l
}

async fn heartbeats() -> (Vec<f64>, Vec<f64>, u32) {
    let c = TestConductor::start_with(|c| {
        c.heartbeat_interval = HEARTBEAT_INTERVAL;
        c.worker_ttl = HEARTBEAT_INTERVAL * 3;
        c.throttle = aerekos_common::throttle::ThrottleConfig::off();
    })
    .await;
    let token = c.registration_token().await;
    let mut workers = vec![];
    for i in 0..HEARTBEAT_WORKERS {
        let r = c
            .anonymous()
            .register_worker()
            .body(register_request(&token, &format!("w{i}"), "10.1.0.1"))
            .send()
            .await
            .unwrap()
            .into_inner();
        workers.push((r.worker_id, r.worker_credential));
    }
    let workers = Arc::new(workers);
    let body = serde_json::to_vec(&types::HeartbeatRequest {
        resources: resources(12.0, 8 << 30),
        ip_address: None,
    })
    .unwrap();
    let conductor = heartbeat_schedule(c.url.clone(), workers.clone(), body.clone()).await;
    let admin = c.admin().await;
    let lost = admin
        .list_workers()
        .status(WorkerStatus::Lost)
        .limit(1000)
        .send()
        .await
        .unwrap()
        .into_inner()
        .workers
        .len() as u32;
    c.stop().await;

    #[handler]
    fn bare_heartbeat(body: Json<types::HeartbeatRequest>) -> Json<serde_json::Value> {
        let _ = body;
        Json(
            serde_json::json!({"heartbeat_interval_secs": 10, "server_time": "2026-01-01T00:00:00Z"}),
        )
    }
    let bare = aerekos_common::server::serve(
        "127.0.0.1:0".parse().unwrap(),
        Route::new()
            .at("/api/workers/:id/heartbeat", post(bare_heartbeat))
            .map_to_response(),
    )
    .await
    .unwrap();
    let reference = heartbeat_schedule(bare.url(), workers, body).await;
    bare.shutdown().await.unwrap();
    (conductor, reference, lost)
}

/// What the gateway row reports: requests/s through the gateway and straight to the instance with
/// every process sharing both cores, then with the load generator pinned to one core and the
/// platform's processes to the other; and where the CPU of the last shared run through the gateway
/// went, per request.
struct GatewayFigures {
    through: f64,
    direct: f64,
    pinned_through: f64,
    pinned_direct: f64,
    cpu_per_request: String,
}

/// Pins `pids` and every thread of theirs to `cpu`.
fn pin(pids: &[u32], cpu: u32) {
    for pid in pids {
        let ok = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "taskset could not pin {pid} to CPU {cpu}");
    }
}

/// `root` and every process under it.
fn process_tree(root: u32) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        tree.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
        i += 1;
    }
    tree
}

async fn gateway() -> GatewayFigures {
    // The conductor, the worker and key_manager as the platform runs them, each its own process;
    // nothing throttled.
    let unthrottled = [
        ("RATE_LIMIT_PER_ADDRESS", "off"),
        ("RATE_LIMIT_PER_CALLER", "off"),
        ("RUST_LOG", "warn"),
    ];
    let conductor = ConductorProcess::start_with(&unthrottled).await;
    let worker = WorkerProcess::start_with(&conductor, "bench", &[("RUST_LOG", "warn")]);
    let admin = conductor.admin().await;
    let env = unthrottled
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let req = DeployRequest {
        driver: Some(types::DriverKind::Process),
        env,
        ..Default::default()
    };
    eventually(60, "the worker joins and key_manager deploys", || async {
        admin
            .deploy_service()
            .name("key_manager")
            .body(req.clone())
            .send()
            .await
            .ok()
    })
    .await;
    let d = eventually(60, "key_manager healthy", || async {
        let d = admin
            .get_deployment()
            .name("key_manager")
            .send()
            .await
            .unwrap()
            .into_inner();
        (d.healthy == 1).then_some(d)
    })
    .await;
    assert_eq!(d.instances[0].health, InstanceHealth::Healthy);
    let direct_base = format!("http://{}", d.instances[0].address.clone().unwrap());
    let token = admin.token().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    let run = |base: String| {
        let (client, token) = (client.clone(), token.clone());
        bench::load(32, move |_| {
            let request = client
                .get(format!("{base}/api/key_manager/keys"))
                .bearer_auth(&token);
            async move {
                let resp = request.send().await.expect("request");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await;
            }
        })
    };
    let roots = [conductor.pid(), worker.pid()];
    let (mut through, mut direct) = (vec![], vec![]);
    let mut cpu_per_request = String::new();
    for _ in 0..3 {
        let meter = bench::CpuMeter::start(&roots);
        through.push(run(conductor.url.clone()).await);
        cpu_per_request = meter.per_operation(
            through.last().unwrap() * (bench::WARMUP + bench::MEASURE).as_secs_f64(),
        );
        direct.push(run(direct_base.clone()).await);
    }
    // The load generator on CPU 1, the platform (conductor, worker, instance) on CPU 0.
    pin(&[std::process::id()], 1);
    let platform: Vec<u32> = roots.iter().flat_map(|r| process_tree(*r)).collect();
    pin(&platform, 0);
    let (mut pinned_through, mut pinned_direct) = (vec![], vec![]);
    for _ in 0..3 {
        pinned_through.push(run(conductor.url.clone()).await);
        pinned_direct.push(run(direct_base.clone()).await);
    }
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0,1", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    drop(worker);
    drop(conductor);
    GatewayFigures {
        through: bench::median(through),
        direct: bench::median(direct),
        pinned_through: bench::median(pinned_through),
        pinned_direct: bench::median(pinned_direct),
        cpu_per_request,
    }
}

fn print_gateway(g: &GatewayFigures) {
    println!(
        "gateway: {:.0}/s vs {:.0}/s direct; pinned {:.0}/s vs {:.0}/s; CPU per request through the gateway: {}",
        g.through, g.direct, g.pinned_through, g.pinned_direct, g.cpu_per_request
    );
}

#[tokio::main]
async fn main() {
    let aerekos = std::env::var_os("AEREKOS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/aerekos")
        });
    assert!(
        aerekos.exists(),
        "{} is missing: `cargo xtask bench` builds it",
        aerekos.display()
    );

    // `-- placements` (or `heartbeats`, `gateway`) runs that part alone and writes nothing: for
    // profiling one of them.
    if let Some(only) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        match only.as_str() {
            "placements" => {
                let (deploys, reads) = placements().await;
                println!("placements: {deploys:.0}/s (reads {reads:.0}/s)");
            }
            "heartbeats" => println!(
                "heartbeats: p99 {:.2} ms",
                bench::percentile(&heartbeats().await.0, 0.99)
            ),
            "gateway" => print_gateway(&gateway().await),
            other => panic!("no part {other:?}: placements, heartbeats or gateway"),
        }
        return;
    }
    let (deploys, reads) = placements().await;
    println!("placements: {deploys:.0}/s (reads {reads:.0}/s)");
    let (hb, hb_ref, lost) = heartbeats().await;
    println!(
        "heartbeats: p99 {:.2} ms (bare {:.2} ms), lost {lost}",
        bench::percentile(&hb, 0.99),
        bench::percentile(&hb_ref, 0.99)
    );
    let g = gateway().await;
    print_gateway(&g);

    let mut md = String::new();
    md.push_str("## Orchestration\n\n`cargo xtask bench` (the `orchestration` bench of `tests/benches/`; release build, 2 cores, all on loopback).\n\n");
    md.push_str("| what | result | reference, same run | ratio | aim |\n|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| placements: {DEPLOYS} deploys (1 replica each) across {PLACEMENT_WORKERS} registered workers, 8 clients | {deploys:.0} placements/s | reading a service back: {reads:.0}/s | {:.2}× | — |\n",
        deploys / reads
    ));
    md.push_str(&format!(
        "| heartbeats: {HEARTBEAT_WORKERS} simulated workers every {}s ({}/s), {} rounds | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {lost} workers falsely lost | bare poem handler, same schedule: p99 {:.2} ms | {:.2}× | p99 < 100 ms, none lost — {} |\n",
        HEARTBEAT_INTERVAL.as_secs(),
        HEARTBEAT_WORKERS as u64 / HEARTBEAT_INTERVAL.as_secs(),
        HEARTBEAT_ROUNDS,
        bench::percentile(&hb, 0.5),
        bench::percentile(&hb, 0.99),
        hb.last().unwrap(),
        bench::percentile(&hb_ref, 0.99),
        bench::percentile(&hb, 0.99) / bench::percentile(&hb_ref, 0.99),
        if bench::percentile(&hb, 0.99) < 100.0 && lost == 0 { "met" } else { "**not met**" },
    ));
    let met = |ratio: f64| if ratio >= 0.7 { "met" } else { "**not met**" };
    md.push_str(&format!(
        "| gateway: `GET /api/key_manager/keys` on a key_manager instance, 32 clients, every process on both cores | {:.0} req/s through the conductor | {:.0} req/s straight to the instance | {:.2}× | ≥ 0.7× — {} |\n",
        g.through,
        g.direct,
        g.through / g.direct,
        met(g.through / g.direct),
    ));
    md.push_str(&format!(
        "| the same, the load generator pinned to CPU 1 and the platform (conductor, worker, instance) to CPU 0 | {:.0} req/s through the conductor | {:.0} req/s straight to the instance | {:.2}× | ≥ 0.7× — {} |\n",
        g.pinned_through,
        g.pinned_direct,
        g.pinned_through / g.pinned_direct,
        met(g.pinned_through / g.pinned_direct),
    ));
    md.push_str(&format!(
        "\nThe gateway rows run the conductor, a worker and key_manager as their own processes (the release executable), as the platform runs them. CPU per request through the gateway, from `/proc/<pid>/stat` over the last shared run: {}. The load generator, the gateway and the instance share the machine's two cores in the first row, so the gateway's CPU comes out of the instance's share and the generator's out of both; the second row gives the generator a core of its own.\n",
        g.cpu_per_request
    ));
    write_benchmark_section("orchestration", &md);
}
