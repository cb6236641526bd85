//! logs_manager end to end: real `aerekos up` platforms (and a second worker process with the
//! Docker engine) shipping their instances' output and their own lines; logs_manager paused
//! (SIGSTOP) while lines keep coming; retention, gzip bodies and access rules against a
//! logs_manager process of its own. Everything through the SDK and the CLI.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use aerekos_sdk::{
    Conductor, LogsManager,
    conductor::types::{DeployRequest, DriverKind, ResourceSpec, ServiceDefinition},
    logs_manager::types::{IngestRecord, IngestRequest, LogLevel, LogRecord, LogStream, PageOrder},
};
use aerekos_tests::*;
use chrono::Utc;

/// Every record the filter `set` picks, oldest first, through every page; `None` when a page
/// could not be read (logs_manager not answering yet).
async fn try_records(
    logs: &LogsManager,
    set: impl Fn(
        aerekos_sdk::logs_manager::builder::QueryLogs<'_>,
    ) -> aerekos_sdk::logs_manager::builder::QueryLogs<'_>,
) -> Option<Vec<LogRecord>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = set(logs.query_logs()).order(PageOrder::Oldest).limit(1000);
        if let Some(c) = &cursor {
            q = q.cursor(c.clone());
        }
        let page = q.send().await.ok()?.into_inner();
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Some(out),
        }
    }
}

/// [`try_records`] where logs_manager must answer.
async fn all_records(
    logs: &LogsManager,
    set: impl Fn(
        aerekos_sdk::logs_manager::builder::QueryLogs<'_>,
    ) -> aerekos_sdk::logs_manager::builder::QueryLogs<'_>,
) -> Vec<LogRecord> {
    try_records(logs, set).await.expect("logs_manager answers")
}

/// A service that prints `count` numbered lines to stdout and to stderr (`<marker> out <n>`,
/// `<marker> err <n>`), one pair every `gap` seconds, then sleeps.
fn chatty(name: &str, marker: &str, count: u32, gap: &str) -> ServiceDefinition {
    let mut def: ServiceDefinition = ServiceDefinition::builder().name(name).try_into().unwrap();
    let script = format!(
        "i=0; while [ $i -lt {count} ]; do echo \"{marker} out $i\"; echo \"{marker} err $i\" >&2; i=$((i+1)); sleep {gap}; done; exec sleep 100000"
    );
    def.command = vec!["sh".into(), "-c".into(), script.clone()];
    def.image = Some(docker_image::TEST_IMAGE.into());
    def.image_command = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        script.replace("sleep 100000", "/bin/busybox sleep 100000"),
    ];
    def.default_resources = Some(ResourceSpec {
        cpu_millicores: 20,
        memory_mb: 16,
        disk_mb: 0,
    });
    def
}

/// Defines `def` and deploys it with `driver` (onto `workers`, when named).
async fn deploy_chatty(
    admin: &Conductor,
    def: ServiceDefinition,
    driver: DriverKind,
    workers: Vec<uuid::Uuid>,
) {
    let name = def.name.clone();
    admin.define_service().body(def).send().await.unwrap();
    admin
        .deploy_service()
        .name(name)
        .body(DeployRequest {
            worker_ids: workers,
            driver: Some(driver),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
}

fn numbers(records: &[LogRecord], marker: &str, what: &str) -> Vec<u32> {
    let prefix = format!("{marker} {what} ");
    records
        .iter()
        .filter_map(|r| r.message.strip_prefix(&prefix)?.trim().parse().ok())
        .collect()
}

async fn logs_client(platform: &Up) -> (Conductor, LogsManager) {
    let admin = Conductor::login(&platform.url, "admin", PASSWORD)
        .await
        .unwrap();
    let logs = LogsManager::with_token(&platform.url, admin.token().unwrap());
    eventually(120, "logs_manager answers through the gateway", || async {
        logs.log_stats().send().await.ok()
    })
    .await;
    (admin, logs)
}

#[tokio::test]
async fn output_of_process_instances_and_a_request_id_across_the_platform() {
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    // Request lines are logged at info.
    let platform = up_with(dir.path(), &ports, &[("RUST_LOG", "info")]);
    let (admin, logs) = logs_client(&platform).await;
    let started = Utc::now();

    // A process instance on the all-in-one worker.
    let marker = format!("proc-{}", uuid::Uuid::new_v4().simple());
    deploy_chatty(
        &admin,
        chatty("chatty", &marker, 20, "0.1"),
        DriverKind::Process,
        vec![],
    )
    .await;

    // Queryable by service, text and time within seconds of being written.
    let process_lines = eventually(60, "the process instance's 40 lines", || async {
        let records = try_records(&logs, |q| {
            q.service("chatty").contains(marker.clone()).since(started)
        })
        .await?;
        (records.len() == 40).then_some(records)
    })
    .await;
    assert_eq!(
        numbers(&process_lines, &marker, "out"),
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&process_lines, &marker, "err"),
        (0..20).collect::<Vec<_>>()
    );
    let instance = &process_lines[0].instance;
    assert!(instance.is_some());
    assert!(
        process_lines
            .iter()
            .all(|r| r.time >= started - chrono::Duration::seconds(1))
    );
    // A time range that ends before the test began holds none of them.
    let before = all_records(&logs, |q| {
        q.service("chatty")
            .contains(marker.clone())
            .until(started - chrono::Duration::seconds(5))
    })
    .await;
    assert!(before.is_empty());
    // A regex.
    let regex = all_records(&logs, |q| {
        q.service("chatty").regex(format!("^{marker} out 1[0-9]$"))
    })
    .await;
    assert_eq!(
        numbers(&regex, &marker, "out"),
        (10..20).collect::<Vec<_>>()
    );

    // One request id, followed through the gateway to key_manager: the conductor's line and
    // key_manager's both carry it.
    let request_id = format!("follow-me-{}", uuid::Uuid::new_v4().simple());
    let km = aerekos_sdk::KeyManager::with_transport(
        &platform.url,
        aerekos_sdk::Transport::new()
            .with_token(admin.token().unwrap())
            .with_request_id_source({
                let id = request_id.clone();
                move || Some(id.clone())
            }),
    );
    eventually(60, "key_manager answers", || async {
        km.list_keys().send().await.ok()
    })
    .await;
    let path = eventually(30, "the request's lines from both sides", || async {
        let records = try_records(&logs, |q| q.request_id(request_id.clone())).await?;
        let services: std::collections::BTreeSet<String> =
            records.iter().filter_map(|r| r.service.clone()).collect();
        (services.contains("conductor") && services.contains("key_manager")).then_some(records)
    })
    .await;
    assert!(path.iter().all(|r| r.message.contains(&request_id)));
    assert!(
        path.iter()
            .any(|r| r.service.as_deref() == Some("conductor") && r.stream == LogStream::Log)
    );

    // `aerekos logs -f` prints what comes after it started.
    let config = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(
        config.path(),
        &["login", "--url", &platform.url, "--password-stdin"],
        Some(PASSWORD),
    );
    assert!(ok, "{err}");
    let followed = format!("followed-{}", uuid::Uuid::new_v4().simple());
    let mut follower = Command::new(aerekos_bin())
        .args(["logs", "late", "-f", "-n", "5"])
        .env("AEREKOS_CONFIG_DIR", config.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The service starts only now, after the follower: its lines can only come from the tail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    deploy_chatty(
        &admin,
        chatty("late", &followed, 5, "0.2"),
        DriverKind::Process,
        vec![],
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen.len() < 10 && std::time::Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(500))
            && line.contains(&followed)
        {
            seen.push(line);
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(seen.len(), 10, "followed lines: {seen:?}");
    assert!(seen.iter().all(|l| l.contains("late/")), "{seen:?}");
}

#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn a_container_on_a_second_worker_ships_its_two_streams() {
    docker_image::ensure_test_image();
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let platform = up(dir.path(), &ports);
    let (admin, logs) = logs_client(&platform).await;
    // A container on a second worker, its own process and data directory.
    let mut second = join_worker(&admin, &platform.url, "docker-worker").await;
    let docker_worker = second.id;
    // A third worker on the same engine, which must leave the other's containers alone.
    let _bystander = join_worker(&admin, &platform.url, "bystander").await;
    let boxed = format!("box-{}", uuid::Uuid::new_v4().simple());
    deploy_chatty(
        &admin,
        chatty("boxchatty", &boxed, 20, "0.1"),
        DriverKind::Docker,
        vec![docker_worker],
    )
    .await;
    let docker_lines = eventually(90, "the container's 40 lines", || async {
        let records =
            try_records(&logs, |q| q.service("boxchatty").contains(boxed.clone())).await?;
        (records.len() == 40).then_some(records)
    })
    .await;
    // The engine keeps the streams apart.
    let stderr: Vec<&LogRecord> = docker_lines
        .iter()
        .filter(|r| r.stream == LogStream::Stderr)
        .collect();
    assert_eq!(stderr.len(), 20);
    assert!(stderr.iter().all(|r| r.message.contains(" err ")));
    assert!(
        docker_lines
            .iter()
            .all(|r| r.worker.as_deref() == Some(docker_worker.to_string().as_str()))
    );

    // The worker SIGKILLed and started again adopts its container and follows it on from where
    // it was: the 40 lines are not shipped again (its first look, before its instances are known
    // again, must not take the container's position for gone), and the container ran once
    // throughout (the bystander stopped nothing of it).
    second.kill_and_restart();
    eventually(60, "the restarted worker reports in", || async {
        let w = admin
            .get_worker()
            .id(docker_worker)
            .send()
            .await
            .ok()?
            .into_inner();
        (w.status == aerekos_sdk::conductor::types::WorkerStatus::Live).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = all_records(&logs, |q| q.service("boxchatty").contains(boxed.clone())).await;
    assert_eq!(
        after.len(),
        40,
        "{:?}",
        after.iter().map(|r| &r.message).collect::<Vec<_>>()
    );
    let deployment = admin
        .get_deployment()
        .name("boxchatty")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deployment.instances[0].restarts, 0);
    drop(second);
}

#[tokio::test]
async fn a_worker_cut_off_from_logs_manager_delivers_its_buffered_lines_once() {
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let platform = up(dir.path(), &ports);
    let (admin, logs) = logs_client(&platform).await;
    let marker = format!("cut-{}", uuid::Uuid::new_v4().simple());
    // 400 lines over about 20 s.
    deploy_chatty(
        &admin,
        chatty("steady", &marker, 200, "0.1"),
        DriverKind::Process,
        vec![],
    )
    .await;
    eventually(60, "the first lines arrive", || async {
        let records = try_records(&logs, |q| q.contains(marker.clone())).await?;
        (records.len() >= 10).then_some(())
    })
    .await;

    // logs_manager stops answering (its process paused) while the lines keep coming, for longer
    // than the worker waits for an answer: the batch it sent is stored at the resume, and sent
    // again, so its repeat must be skipped.
    let pid = instance_pid(&admin, &[platform.worker_dir.as_path()], "logs_manager").await;
    let group = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let paused_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(16)).await;
    let resumed_at = Utc::now();
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGCONT).unwrap();

    let records = eventually(120, "all 400 lines, after the pause", || async {
        let records = try_records(&logs, |q| q.contains(marker.clone())).await?;
        (records.len() >= 400).then_some(records)
    })
    .await;
    // None twice: exactly 400 records, each number once per stream.
    assert_eq!(records.len(), 400);
    let mut outs = numbers(&records, &marker, "out");
    outs.sort_unstable();
    assert_eq!(outs, (0..200).collect::<Vec<_>>());
    let mut errs = numbers(&records, &marker, "err");
    errs.sort_unstable();
    assert_eq!(errs, (0..200).collect::<Vec<_>>());
    // Lines written while logs_manager was paused were held and delivered later.
    let during = records
        .iter()
        .filter(|r| r.time > paused_at + chrono::Duration::seconds(1) && r.time < resumed_at)
        .count();
    assert!(during > 50, "{during} lines were written during the pause");
    let stats = logs.log_stats().send().await.unwrap().into_inner();
    assert!(
        stats.sources.iter().all(|s| s.dropped_total == 0),
        "{stats:?}"
    );
    // And the repeat did happen: logs_manager skipped records it had stored.
    let address = admin
        .get_deployment()
        .name("logs_manager")
        .send()
        .await
        .unwrap()
        .into_inner()
        .instances[0]
        .address
        .clone()
        .unwrap();
    let metrics = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let duplicates: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aerekos_logs_duplicates_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(duplicates > 0.0, "no batch was sent twice:\n{metrics}");
}

fn record(seq: u64, time: chrono::DateTime<Utc>, service: &str, message: String) -> IngestRecord {
    IngestRecord {
        seq,
        time,
        worker: None,
        service: Some(service.into()),
        instance: None,
        stream: LogStream::Stdout,
        level: Some(if seq % 10 == 0 {
            LogLevel::Error
        } else {
            LogLevel::Info
        }),
        message,
        request_id: None,
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data/segments"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn retention_removes_old_segments_and_ingest_is_safe_to_repeat() {
    let conductor = TestConductor::start().await;
    let service = TestService::start_with(
        &LOGS_MANAGER,
        &conductor,
        "",
        None,
        &[
            ("SEGMENT_BYTES", "8192"),
            ("RETENTION_SECS", "3"),
            ("RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let admin = conductor.admin().await;
    let logs = LogsManager::with_transport(
        &service.url,
        aerekos_sdk::Transport::new()
            .with_token(admin.token().unwrap())
            .with_gzip_requests(),
    );
    let source = "test/retention";
    let old: Vec<IngestRecord> = (1..=300)
        .map(|seq| {
            record(
                seq,
                Utc::now(),
                "old",
                format!("old line {seq} {}", "x".repeat(60)),
            )
        })
        .collect();
    // In batches of 50: a segment is sealed after the batch that takes it past SEGMENT_BYTES.
    for batch in old.chunks(50) {
        let stored = logs
            .ingest_logs()
            .body(IngestRequest {
                source: source.into(),
                records: batch.to_vec(),
                dropped_total: None,
            })
            .send()
            .await
            .unwrap()
            .into_inner();
        assert_eq!((stored.stored, stored.duplicates), (50, 0));
    }
    // Sent again (an answer lost on the way): nothing stored twice.
    let again = logs
        .ingest_logs()
        .body(IngestRequest {
            source: source.into(),
            records: old,
            dropped_total: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.stored, again.duplicates), (0, 300));
    assert!(segment_files(service.dir.path()) > 2);

    // Past the retention age every sealed old segment goes; new lines stay.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fresh: Vec<IngestRecord> = (301..=310)
        .map(|seq| record(seq, Utc::now(), "fresh", format!("fresh line {seq}")))
        .collect();
    logs.ingest_logs()
        .body(IngestRequest {
            source: source.into(),
            records: fresh,
            dropped_total: Some(7),
        })
        .send()
        .await
        .unwrap();
    let stats = eventually(30, "retention removes the old segments", || async {
        let stats = logs.log_stats().send().await.ok()?.into_inner();
        let old_left = try_records(&logs, |q| q.service("old")).await?;
        (stats.segments_removed > 0 && old_left.is_empty()).then_some(stats)
    })
    .await;
    assert!(segment_files(service.dir.path()) <= 2, "{stats:?}");
    let kept = all_records(&logs, |q| q.service("fresh")).await;
    assert_eq!(kept.len(), 10);
    let errors = all_records(&logs, |q| q.service("fresh").level(LogLevel::Error)).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "fresh line 310");
    let source_stats = stats.sources.iter().find(|s| s.source == source).unwrap();
    assert_eq!(
        (source_stats.last_seq, source_stats.dropped_total),
        (310, 7)
    );

    // A restart keeps the source's position: the whole history sent again stores nothing.
    let mut service = service;
    service.kill();
    service.start_again().await;
    let replay: Vec<IngestRecord> = (1..=310)
        .map(|seq| record(seq, Utc::now(), "old", format!("replayed {seq}")))
        .collect();
    let replayed = logs
        .ingest_logs()
        .body(IngestRequest {
            source: source.into(),
            records: replay,
            dropped_total: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!((replayed.stored, replayed.duplicates), (0, 310));
}

#[tokio::test]
async fn bad_batches_and_callers_are_refused_with_what_to_fix() {
    let conductor = TestConductor::start().await;
    let service = TestService::start(&LOGS_MANAGER, &conductor, "").await;
    let admin = conductor.admin().await;
    let token = admin.token().unwrap();
    let logs = LogsManager::with_token(&service.url, &token);
    let batch = |source: &str, seqs: &[u64]| IngestRequest {
        source: source.into(),
        records: seqs
            .iter()
            .map(|&s| record(s, Utc::now(), "app", format!("line {s}")))
            .collect(),
        dropped_total: None,
    };
    let refused = logs.ingest_logs().body(batch("s", &[2, 1])).send().await;
    expect_api_error(failure(refused), 400, "seq_not_increasing");
    let refused = logs.query_logs().regex("(unclosed").send().await;
    expect_api_error(failure(refused), 400, "invalid_regex");
    let refused = logs.query_logs().cursor("not-a-cursor").send().await;
    expect_api_error(failure(refused), 400, "invalid_cursor");
    let refused = logs.query_logs().limit(0).send().await;
    expect_api_error(failure(refused), 400, "invalid_page_size");

    // gzip: unpacked past MAX_BODY_BYTES is 413, not gzip at all is 400.
    let http = reqwest::Client::new();
    let bomb = {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 20 << 20]).unwrap();
        enc.finish().unwrap()
    };
    assert!(bomb.len() < 1 << 20);
    let resp = http
        .post(format!("{}/api/logs_manager/ingest", service.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    let resp = http
        .post(format!("{}/api/logs_manager/ingest", service.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("{\"source\":\"s\",\"records\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_gzip");

    // Viewers read but do not ship; an API key ships only its sources and reads only its services.
    let viewer = LogsManager::with_token(&service.url, conductor.viewer().await.token().unwrap());
    expect_api_error(
        failure(viewer.ingest_logs().body(batch("s", &[1])).send().await),
        403,
        "forbidden",
    );
    viewer.query_logs().send().await.unwrap();
    let key = admin
        .create_api_key()
        .body(aerekos_sdk::conductor::types::CreateApiKeyRequest {
            name: "shipper".into(),
            scopes: vec![
                "logs_manager:write:apps/*".into(),
                "logs_manager:read:app".into(),
            ],
            expires_in_secs: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .key;
    let app = LogsManager::with_token(&service.url, &key);
    app.ingest_logs()
        .body(batch("apps/one", &[1, 2]))
        .send()
        .await
        .unwrap();
    expect_api_error(
        failure(app.ingest_logs().body(batch("worker/x", &[1])).send().await),
        403,
        "scope_missing",
    );
    assert_eq!(
        app.query_logs()
            .service("app")
            .send()
            .await
            .unwrap()
            .into_inner()
            .records
            .len(),
        2
    );
    expect_api_error(
        failure(app.query_logs().service("other").send().await),
        403,
        "scope_missing",
    );
    expect_api_error(
        failure(app.query_logs().send().await),
        403,
        "service_required",
    );
}
