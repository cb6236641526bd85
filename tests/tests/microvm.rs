//! The microvm driver with real QEMU guests (TCG on machines without hardware virtualization, as
//! here; KVM where the CPU has it), through the SDK: a conductor process and a worker process,
//! each with its own data directory. A job's command runs in a guest of its own: its exit code
//! and both streams come back, the guest sees nothing of the host, a timeout kills the VM, and a
//! worker killed under a running guest adopts it when it starts again, with no second VM. A
//! service in a guest answers through the gateway, is restarted after a crash inside and
//! replaced off a lost worker; a sandbox in a guest runs commands at once. The built-in services
//! run in guests from the static aerekos: key_manager keeps its keys in its volume (shared over
//! 9p) through a VM kill, a backup made inside the guest and a restore onto another worker, and
//! secrets_manager, in another guest, hands an app in a third its secret as a variable and a file.
//!
//! Boots take seconds under emulation, so the waits are generous.

use std::{collections::HashMap, time::Duration};

use aerekos_sdk::{
    Conductor, KeyManager, SecretsManager,
    conductor::types::{
        AttemptOutcome, BackupState, DeployRequest, DriverKind, ExecRequest, ExecState, Instance,
        InstanceHealth, Job, JobAttempt, JobRequest, JobState, MoveState, ResourceSpec,
        RestoreRequest, SandboxRequest, SandboxState, SecretRef, ServiceDefinition, WorkerStatus,
    },
};
use aerekos_tests::{
    eventually,
    processes::{ConductorProcess, WorkerProcess, wait_for_worker},
};
use uuid::Uuid;

/// A worker process with the microvm driver on (the static guest agent that `cargo xtask test`
/// builds is in `AEREKOS_GUEST_AGENT`).
fn vm_worker(conductor: &ConductorProcess, name: &str) -> WorkerProcess {
    let agent = std::env::var("AEREKOS_GUEST_AGENT")
        .expect("AEREKOS_GUEST_AGENT: the static guest agent (cargo xtask guest)");
    WorkerProcess::start_with(
        conductor,
        name,
        &[("WORKER_MICROVM", "on"), ("MICROVM_GUEST_AGENT", &agent)],
    )
}

/// The same, running built-in services from the statically linked aerekos (`AEREKOS_STATIC_BIN`,
/// also built by `cargo xtask test`): a guest has no libc for the test build's.
/// `conductor_url`: how this worker names the conductor (its guests are given the same URL).
fn static_vm_worker(
    conductor: &ConductorProcess,
    name: &str,
    conductor_url: &str,
) -> WorkerProcess {
    let agent = std::env::var("AEREKOS_GUEST_AGENT").expect("AEREKOS_GUEST_AGENT");
    let aerekos = std::env::var("AEREKOS_STATIC_BIN")
        .expect("AEREKOS_STATIC_BIN: a statically linked aerekos (cargo xtask test builds it)");
    WorkerProcess::start_with(
        conductor,
        name,
        &[
            ("WORKER_MICROVM", "on"),
            ("MICROVM_GUEST_AGENT", &agent),
            ("AEREKOS_EXECUTABLE", &aerekos),
            ("CONDUCTOR_URL", conductor_url),
        ],
    )
}

async fn cluster() -> (ConductorProcess, Conductor, WorkerProcess, Uuid) {
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    let worker = vm_worker(&conductor, "vm-host");
    let id = worker.id().await;
    wait_for_worker(&admin, id, WorkerStatus::Live, 30).await;
    (conductor, admin, worker, id)
}

fn vm_job(script: &str, timeout_secs: u32) -> JobRequest {
    JobRequest {
        name: None,
        image: None,
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: HashMap::new(),
        resources: None,
        driver: Some(DriverKind::Microvm),
        timeout_secs: Some(timeout_secs),
        retry: None,
        priority: None,
        queue: None,
        idempotency_key: None,
    }
}

async fn until_done(admin: &Conductor, id: Uuid, secs: u64) -> (Job, Vec<JobAttempt>) {
    let job = eventually(secs, "the job ends", || async {
        let job = admin.get_job().id(id).send().await.ok()?.into_inner();
        matches!(
            job.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
        .then_some(job)
    })
    .await;
    let attempts = admin
        .list_job_attempts()
        .id(id)
        .send()
        .await
        .unwrap()
        .into_inner();
    (job, attempts)
}

/// The QEMU processes running instance `id` (found by the id in their environment).
fn vms_of(id: Uuid) -> usize {
    vm_pids(id).len()
}

fn vm_pids(id: Uuid) -> Vec<i32> {
    let needle = format!("AEREKOS_INSTANCE_ID={id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            comm.starts_with("qemu-system")
                && std::fs::read(e.path().join("environ"))
                    .unwrap_or_default()
                    .split(|b| *b == 0)
                    .any(|v| v == needle.as_bytes())
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[tokio::test]
#[ignore = "needs QEMU, a kernel and the static guest agent; `cargo xtask test` provides them"]
async fn a_job_runs_in_a_guest_of_its_own_and_its_timeout_kills_the_vm() {
    let (conductor, admin, _worker, worker_id) = cluster().await;
    let conductor_port = conductor.url.rsplit(':').next().unwrap().to_owned();
    let worker = admin
        .get_worker()
        .id(worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    let microvm = worker
        .resources
        .drivers
        .iter()
        .find(|d| d.name == "microvm")
        .expect("the worker offers the microvm driver");
    let version = microvm.version.clone().unwrap_or_default();
    assert!(
        version.ends_with("(tcg)") || version.ends_with("(kvm)"),
        "the driver says its accelerator: {version}"
    );

    assert!(
        !worker
            .resources
            .unavailable_drivers
            .iter()
            .any(|d| d.name == "microvm"),
        "{:?}",
        worker.resources.unavailable_drivers
    );
    // A worker whose QEMU cannot run says why it offers no microvm driver (and why no docker).
    let agent = std::env::var("AEREKOS_GUEST_AGENT").unwrap();
    let without = WorkerProcess::start_with(
        &conductor,
        "no-qemu",
        &[
            ("WORKER_MICROVM", "on"),
            ("MICROVM_GUEST_AGENT", &agent),
            ("MICROVM_QEMU", "/nonexistent/qemu-system-x86_64"),
        ],
    );
    let without_id = without.id().await;
    let reasons = eventually(
        30,
        "the worker says why it has no microvm driver",
        || async {
            let w = admin
                .get_worker()
                .id(without_id)
                .send()
                .await
                .ok()?
                .into_inner();
            let reasons: HashMap<String, String> = w
                .resources
                .unavailable_drivers
                .into_iter()
                .map(|d| (d.name, d.reason))
                .collect();
            reasons.contains_key("microvm").then_some(reasons)
        },
    )
    .await;
    assert!(
        reasons["microvm"].contains("/nonexistent/qemu-system-x86_64")
            && reasons["microvm"].contains("qemu-system-x86"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.get("docker").map(String::as_str),
        Some("WORKER_DOCKER=off")
    );
    drop(without);

    // A file on the host, outside any volume: the guest must not see it.
    let host = tempfile::tempdir().unwrap();
    let marker = host.path().join("marker");
    std::fs::write(&marker, "host-secret").unwrap();
    // Nor its network: a job reaches nothing, not a port on the host's loopback (10.0.2.2 from
    // inside), nor the conductor at its URL (only services' guests are relayed to it).
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    // It answers whoever reaches it.
    std::thread::spawn(move || {
        for mut client in other.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut client, b"reached\n");
        }
    });
    // (busybox's nc: its static wget crashes in glibc's resolver. A server inside the guest is
    // the control that shows the probe works.)
    let script = format!(
        r#"echo attempt $AEREKOS_JOB_ATTEMPT; echo to-stderr >&2
echo pid1 $(cat /proc/1/cmdline); cat {marker} || echo no-marker
probe() {{ printf 'GET /health HTTP/1.0\r\n\r\n' | nc -w 5 $1 $2; }}
mkdir /www && echo ok > /www/health && httpd -p 127.0.0.1:8088 -h /www
probe 127.0.0.1 8088 | grep -q ' 200 ' && echo probe-works
probe 10.0.2.2 {conductor_port} | grep -q ' 200 ' && echo host-reached || echo host-unreachable
probe 10.0.2.2 {other_port} | grep -q . && echo other-reached || echo other-unreachable
url=${{CONDUCTOR_URL#http://}}
probe ${{url%:*}} ${{url##*:}} | grep -q ' 200 ' && echo conductor-reached || echo conductor-unreachable
ls /; exit 7"#,
        marker = marker.display()
    );
    let job = admin
        .submit_job()
        .body(vm_job(&script, 300))
        .send()
        .await
        .unwrap()
        .into_inner();
    let (job, attempts) = until_done(&admin, job.id, 300).await;
    assert_eq!(
        (job.state, job.exit_code),
        (JobState::Failed, Some(7)),
        "{attempts:?}"
    );
    let attempt = &attempts[0];
    assert_eq!(attempt.driver, DriverKind::Microvm);
    assert_eq!(attempt.outcome, AttemptOutcome::Exited);
    let stdout = attempt.stdout_tail.clone().unwrap_or_default();
    let stderr = attempt.stderr_tail.clone().unwrap_or_default();
    assert!(stdout.starts_with("attempt 1\n"), "{stdout:?}");
    // Its PID 1 is the guest agent: it ran in the guest, not on the host.
    assert!(stdout.contains("pid1 /.aerekos/init"), "{stdout:?}");
    assert!(
        stdout.contains("probe-works")
            && stdout.contains("no-marker")
            && !stdout.contains("host-secret")
            && stdout.contains("host-unreachable")
            && stdout.contains("other-unreachable")
            && stdout.contains("conductor-unreachable"),
        "{stdout:?}\n{stderr}"
    );
    assert!(
        stderr.contains("to-stderr") && stderr.contains("No such file"),
        "{stderr:?}"
    );
    // The guest's root is its own: the agent's directory and the image, not the host's.
    assert!(
        stdout.contains(".aerekos") || stdout.contains("bin"),
        "{stdout:?}"
    );
    assert!(
        !stdout.contains("home\n") && !stdout.contains("work\n"),
        "{stdout:?}"
    );
    assert_eq!(
        vms_of(attempt.instance_id),
        0,
        "the VM ended with its command"
    );

    // A command past its timeout: the VM is killed, and the attempt says so.
    let slow = admin
        .submit_job()
        .body(vm_job("sleep 600", 20))
        .send()
        .await
        .unwrap()
        .into_inner();
    let (slow, attempts) = until_done(&admin, slow.id, 180).await;
    assert_eq!(slow.state, JobState::Failed, "{attempts:?}");
    assert_eq!(
        attempts[0].outcome,
        AttemptOutcome::TimedOut,
        "{attempts:?}"
    );
    eventually(30, "no QEMU process is left", || async {
        (vms_of(attempts[0].instance_id) == 0).then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs QEMU, a kernel and the static guest agent; `cargo xtask test` provides them"]
async fn a_worker_killed_under_a_running_guest_adopts_it_and_starts_no_second_vm() {
    let (_conductor, admin, mut worker, _) = cluster().await;
    let job = admin
        .submit_job()
        .body(vm_job("sleep 12; echo survived", 300))
        .send()
        .await
        .unwrap()
        .into_inner();
    let instance = eventually(120, "the job's VM runs", || async {
        let job = admin.get_job().id(job.id).send().await.ok()?.into_inner();
        let instance = job.last_attempt?.instance_id;
        (vms_of(instance) == 1).then_some(instance)
    })
    .await;
    worker.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(vms_of(instance), 1, "the guest outlives its worker");
    worker.start_again();
    let done = tokio::spawn({
        let admin = admin.clone();
        async move { until_done(&admin, job.id, 300).await }
    });
    while !done.is_finished() {
        assert!(vms_of(instance) <= 1, "a second VM started for {instance}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (job, attempts) = done.await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{attempts:?}");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].stdout_tail.as_deref(), Some("survived\n"));
}

/// The deployment of `name` once it has one instance, healthy, other than `not`.
async fn healthy_instance(admin: &Conductor, name: &str, not: Option<Uuid>, secs: u64) -> Instance {
    eventually(secs, &format!("{name} healthy"), || async {
        let d = admin
            .get_deployment()
            .name(name)
            .send()
            .await
            .ok()?
            .into_inner();
        d.instances
            .into_iter()
            .find(|i| i.health == InstanceHealth::Healthy && Some(i.id) != not)
    })
    .await
}

/// secrets_manager deployed in a guest on `worker`, a secret created through it, and an app in a
/// guest on `app_worker` that reads the secret from its environment and from the file it is given.
async fn secrets_in_guests(
    admin: &Conductor,
    conductor: &ConductorProcess,
    worker: Uuid,
    app_worker: Uuid,
) {
    admin
        .deploy_service()
        .name("secrets_manager")
        .body(DeployRequest {
            driver: Some(DriverKind::Microvm),
            worker_ids: vec![worker],
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let sm = healthy_instance(admin, "secrets_manager", None, 240).await;
    assert_eq!(vms_of(sm.id), 1, "secrets_manager runs in a VM");
    let value = format!("pw-{}", Uuid::new_v4().simple());
    let secrets = SecretsManager::with_token(&conductor.url, admin.token().unwrap());
    eventually(120, "secrets_manager stores a secret", || async {
        secrets
            .create_secret()
            .body(aerekos_tests::new_secret(
                "apps/vm/db",
                Some(aerekos_tests::secret_bytes(value.as_bytes())),
            ))
            .send()
            .await
            .ok()
    })
    .await;

    // busybox httpd with two CGI scripts: one prints the variable, the file's path and its
    // content; the other asks the conductor (relayed: a service's guest reaches it at its own URL)
    // for its health and says how many seconds that took (the relay passes the conductor's close
    // on, so `nc` ends with the answer, not at its 10 s timeout).
    let mut def: ServiceDefinition = ServiceDefinition::builder()
        .name("vm_secret")
        .try_into()
        .unwrap();
    def.command = vec![
        "sh".into(),
        "-c".into(),
        r#"mkdir -p /www/cgi-bin && echo ok > /www/health
cat > /www/cgi-bin/secret <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\n\n'
echo env=$DB_PASSWORD
echo path=$DB_FILE
echo file=$(cat $DB_FILE)
EOF
cat > /www/cgi-bin/conductor <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\n\n'
url=${CONDUCTOR_URL#http://}
started=$(date +%s)
printf 'GET /health HTTP/1.0\r\n\r\n' | nc -w 10 ${url%:*} ${url##*:} | tail -1
echo
echo secs=$(( $(date +%s) - started ))
EOF
chmod +x /www/cgi-bin/* && exec httpd -f -p $PORT -h /www"#
            .into(),
    ];
    def.health_path = Some("/health".into());
    admin.define_service().body(def).send().await.unwrap();
    let reference = |as_file| SecretRef {
        secret: "apps/vm/db".into(),
        version: None,
        label: None,
        restart_on_change: false,
        as_file,
    };
    admin
        .deploy_service()
        .name("vm_secret")
        .body(DeployRequest {
            driver: Some(DriverKind::Microvm),
            // Where the conductor is named by address (the probe is busybox's nc).
            worker_ids: vec![app_worker],
            secret_env: [
                ("DB_PASSWORD".to_owned(), reference(false)),
                ("DB_FILE".to_owned(), reference(true)),
            ]
            .into(),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let app = healthy_instance(admin, "vm_secret", None, 240).await;
    assert_eq!(vms_of(app.id), 1);
    let address = app.address.expect("the app's address");
    let seen = reqwest::get(format!("http://{address}/cgi-bin/secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        seen,
        format!("env={value}\npath=/run/secrets/DB_FILE\nfile={value}\n")
    );
    let conductor_seen = reqwest::get(format!("http://{address}/cgi-bin/conductor"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secs: u64 = conductor_seen
        .split("secs=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        conductor_seen.contains("\"status\":\"ok\"") && secs <= 3,
        "the conductor answers a service's guest at its URL, at once: {conductor_seen:?}"
    );
}

/// Instance `id` of `name` once its worker has restarted it and it is healthy again.
async fn restarted_instance(admin: &Conductor, name: &str, id: Uuid, secs: u64) -> Instance {
    eventually(
        secs,
        &format!("{name}'s instance {id} runs again"),
        || async {
            let d = admin
                .get_deployment()
                .name(name)
                .send()
                .await
                .ok()?
                .into_inner();
            d.instances
                .into_iter()
                .find(|i| i.id == id && i.restarts >= 1 && i.health == InstanceHealth::Healthy)
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs QEMU, a kernel and the static guest agent; `cargo xtask test` provides them"]
async fn a_service_in_a_guest_answers_through_the_gateway_restarts_after_a_crash_and_moves_off_a_lost_worker()
 {
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    let mut workers = vec![vm_worker(&conductor, "vm-a"), vm_worker(&conductor, "vm-b")];
    let mut ids = vec![];
    for w in &workers {
        let id = w.id().await;
        wait_for_worker(&admin, id, WorkerStatus::Live, 30).await;
        ids.push(id);
    }
    // busybox's httpd, with a health file (for its worker, and under the gateway's path) and a
    // CGI script that kills every process but the guest's init: the service's command ends, as
    // a crash would end it.
    let mut def: ServiceDefinition = ServiceDefinition::builder()
        .name("vm_web")
        .try_into()
        .unwrap();
    def.command = vec![
        "sh".into(),
        "-c".into(),
        "mkdir -p /www/cgi-bin /www/api/vm_web && echo ok > /www/health \
         && echo ok > /www/api/vm_web/health \
         && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho bye\\nkill -9 -1\\n' > /www/cgi-bin/crash \
         && chmod +x /www/cgi-bin/crash && exec httpd -f -p $PORT -h /www"
            .into(),
    ];
    def.health_path = Some("/health".into());
    def.default_resources = Some(ResourceSpec {
        cpu_millicores: 100,
        memory_mb: 64,
        disk_mb: 0,
    });
    admin.define_service().body(def).send().await.unwrap();
    admin
        .deploy_service()
        .name("vm_web")
        .body(DeployRequest {
            driver: Some(DriverKind::Microvm),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let first = healthy_instance(&admin, "vm_web", None, 180).await;
    assert_eq!(vms_of(first.id), 1, "the instance is a VM");

    let http = reqwest::Client::new();
    let token = admin.token().unwrap();
    let get = |path: &'static str| {
        let (http, token, url) = (http.clone(), token.clone(), conductor.url.clone());
        async move {
            http.get(format!("{url}/api/vm_web{path}"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())
        }
    };
    assert_eq!(get("/health").await.unwrap(), "ok\n");

    // A crash inside the guest: the VM ends with its command, and its worker starts it again.
    let address = first.address.clone().expect("the instance's address");
    let _ = http
        .get(format!("http://{address}/cgi-bin/crash"))
        .send()
        .await;
    let restarted = restarted_instance(&admin, "vm_web", first.id, 180).await;
    assert_eq!(vms_of(restarted.id), 1);
    assert_eq!(get("/health").await.unwrap(), "ok\n");

    // Its worker is lost for good (agent and VMs killed, data gone): the instance is replaced on
    // the other worker.
    let lost = ids
        .iter()
        .position(|id| *id == restarted.worker_id)
        .unwrap();
    workers[lost].lose_for_good();
    let moved = healthy_instance(&admin, "vm_web", Some(first.id), 240).await;
    assert_eq!(moved.worker_id, ids[1 - lost]);
    assert_eq!(vms_of(moved.id), 1);
    assert_eq!(
        eventually(30, "the gateway reaches the new instance", || async {
            get("/health").await.ok()
        })
        .await,
        "ok\n"
    );
}

#[tokio::test]
#[ignore = "needs QEMU, a kernel, the static guest agent and a Docker engine (the image is exported from it); `cargo xtask test` provides them"]
async fn a_sandbox_in_a_guest_runs_commands_at_once_and_its_delete_leaves_no_vm() {
    aerekos_tests::docker_image::ensure_test_image();
    let agent = std::env::var("AEREKOS_GUEST_AGENT").expect("AEREKOS_GUEST_AGENT");
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    // Docker on too: the sandbox's root filesystem is the local busybox image, exported.
    let worker = WorkerProcess::start_with(
        &conductor,
        "vm-sandboxes",
        &[
            ("WORKER_MICROVM", "on"),
            ("MICROVM_GUEST_AGENT", &agent),
            ("WORKER_DOCKER", "on"),
        ],
    );
    let id = worker.id().await;
    wait_for_worker(&admin, id, WorkerStatus::Live, 30).await;
    let made = admin
        .create_sandbox()
        .body(SandboxRequest {
            name: Some("vm-scratch".into()),
            image: aerekos_tests::docker_image::TEST_IMAGE.into(),
            command: vec!["/bin/busybox".into(), "sleep".into(), "2147483647".into()],
            env: HashMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            resources: None,
            ready_timeout_secs: None,
            create_retries: None,
            driver: Some(DriverKind::Microvm),
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    let ready = eventually(180, "the sandbox's guest is ready", || async {
        let s = admin
            .get_sandbox()
            .id(made.id)
            .send()
            .await
            .ok()?
            .into_inner();
        (s.state == SandboxState::Ready).then_some(s)
    })
    .await;
    let instance = ready.instance_id.unwrap();
    assert_eq!(vms_of(instance), 1, "the sandbox is a VM");

    let run = |command: &str, timeout: Option<u32>| {
        let admin = admin.clone();
        let command = vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            command.to_owned(),
        ];
        async move {
            let exec = admin
                .exec_in_sandbox()
                .id(made.id)
                .body(ExecRequest {
                    command,
                    env: HashMap::new(),
                    timeout_secs: timeout,
                    retry: None,
                })
                .send()
                .await
                .unwrap()
                .into_inner();
            eventually(120, "the exec ends", || async {
                let e = admin
                    .get_sandbox_exec()
                    .id(made.id)
                    .exec_id(exec.id)
                    .send()
                    .await
                    .ok()?
                    .into_inner();
                (e.state != ExecState::Queued).then_some(e)
            })
            .await
        }
    };
    let echo = run("echo $GREETING from $(cat /proc/1/cmdline)", None).await;
    assert_eq!(
        (echo.state, echo.exit_code),
        (ExecState::Exited, Some(0)),
        "{echo:?}"
    );
    assert_eq!(echo.stdout.as_deref(), Some("hello from /.aerekos/init\n"));
    let failing = run("echo bad >&2; exit 7", None).await;
    assert_eq!(
        (failing.exit_code, failing.stderr.as_deref()),
        (Some(7), Some("bad\n"))
    );
    let wrote = run("echo kept > /state", None).await;
    assert_eq!(wrote.exit_code, Some(0), "{wrote:?}");
    let kept = run("cat /state", None).await;
    assert_eq!(kept.stdout.as_deref(), Some("kept\n"), "{kept:?}");
    // Concurrent: three commands of a second each overlap in the guest.
    let spans = futures_util::future::join_all((0..3).map(|_| {
        run(
            "cut -d' ' -f1 /proc/uptime; sleep 1; cut -d' ' -f1 /proc/uptime",
            None,
        )
    }))
    .await;
    aerekos_tests::assert_ran_together(
        &spans
            .iter()
            .map(|e| e.stdout.as_deref())
            .collect::<Vec<_>>(),
        "the commands ran one after another",
    );
    let slow = run("sleep 30", Some(2)).await;
    assert_eq!(slow.state, ExecState::TimedOut, "{slow:?}");
    // Commands that leave processes behind: once those end, PID 1 (the agent) collects them, so
    // no zombie stays. The shell forks a subshell that starts each sleep and ends at once.
    let left = run(
        "for i in 1 2 3 4 5; do (sleep 0.3 > /dev/null 2>&1 &); done",
        None,
    )
    .await;
    assert_eq!(left.exit_code, Some(0), "{left:?}");
    let zombies = |e: &aerekos_sdk::conductor::types::SandboxExec| {
        e.stdout
            .as_deref()
            .unwrap_or_default()
            .trim()
            .parse::<u32>()
            .ok()
    };
    let first = run("cat /proc/[0-9]*/stat | grep -c ') Z ' || true", None).await;
    eventually(30, "the orphans are collected", || async {
        let seen = run(
            "sleep 1; cat /proc/[0-9]*/stat | grep -c ') Z ' || true",
            None,
        )
        .await;
        (zombies(&seen) == Some(0)).then_some(())
    })
    .await;
    assert!(zombies(&first).is_some(), "{first:?}");

    admin.delete_sandbox().id(made.id).send().await.unwrap();
    eventually(60, "the sandbox's VM is gone", || async {
        (vms_of(instance) == 0).then_some(())
    })
    .await;
}

/// The other two root filesystems an image can name: a directory and a `.tar` on the worker.
#[tokio::test]
#[ignore = "needs QEMU, a kernel and the static guest agent; `cargo xtask test` provides them"]
async fn a_guest_boots_from_a_directory_or_a_tarball_as_its_root() {
    let (_conductor, admin, _worker, _) = cluster().await;
    // A root filesystem of a static busybox and a file of its own.
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("data/hello"), "from the image\n").unwrap();
    let tarball = work.path().join("root.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    for image in [root.display().to_string(), tarball.display().to_string()] {
        let mut job = vm_job("/bin/busybox cat /data/hello", 300);
        job.image = Some(image.clone());
        let job = admin
            .submit_job()
            .body(job)
            .send()
            .await
            .unwrap()
            .into_inner();
        let (job, attempts) = until_done(&admin, job.id, 300).await;
        assert_eq!(job.state, JobState::Succeeded, "{image}: {attempts:?}");
        assert_eq!(
            attempts[0].stdout_tail.as_deref(),
            Some("from the image\n"),
            "{image}"
        );
    }
}

#[tokio::test]
#[ignore = "needs QEMU, a kernel, the static guest agent and a static aerekos; `cargo xtask test` provides them"]
async fn a_stateful_built_in_service_in_a_guest_keeps_its_keys_through_a_crash_a_backup_and_a_restore()
 {
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    // key_manager, from the static aerekos, in a guest on a (the only worker when it is deployed).
    let mut a = static_vm_worker(&conductor, "vm-km-a", &conductor.url);
    let a_id = a.id().await;
    wait_for_worker(&admin, a_id, WorkerStatus::Live, 30).await;
    admin
        .deploy_service()
        .name("key_manager")
        .body(DeployRequest {
            driver: Some(DriverKind::Microvm),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    // b names the conductor by a host name rather than an address: its guests resolve it to the
    // relay inside (their /etc/hosts).
    let by_name = conductor.url.replace("127.0.0.1", "localhost");
    assert_ne!(by_name, conductor.url);
    let b = static_vm_worker(&conductor, "vm-km-b", &by_name);
    let b_id = b.id().await;
    wait_for_worker(&admin, b_id, WorkerStatus::Live, 30).await;
    let first = healthy_instance(&admin, "key_manager", None, 240).await;
    assert_eq!(first.worker_id, a_id);
    assert_eq!(vms_of(first.id), 1, "key_manager runs in a VM");

    // Healthy means it fetched the conductor's keys at start: through the guest's relay.
    let km = KeyManager::with_token(&conductor.url, admin.token().unwrap());
    let ciphertext = aerekos_tests::encrypt_crown_jewels(&km).await;
    // secrets_manager in a guest too (on b), keeping its values under key_manager's keys: one
    // guest calls the other through the gateway. An app in a guest takes a secret as a variable
    // and as a file.
    secrets_in_guests(&admin, &conductor, b_id, a_id).await;

    // key_manager's database is in its volume on the worker, not in the guest's memory.
    let volume = a.volume_dir("key_manager");
    let on_host = aerekos_tests::files_under(&volume);
    assert!(
        on_host
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "db")),
        "{on_host:?}"
    );

    // The VM dies (QEMU killed): its worker starts it again on the same volume, keys and all.
    for pid in vm_pids(first.id) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    restarted_instance(&admin, "key_manager", first.id, 240).await;
    assert_eq!(vms_of(first.id), 1);
    let plain = eventually(60, "the ciphertext decrypts after the restart", || async {
        aerekos_tests::decrypt_precious(&km, &ciphertext).await.ok()
    })
    .await;
    assert_eq!(plain, aerekos_tests::CROWN_JEWELS);

    // A backup, its database copied inside the guest (where the service's locks are), stored on b.
    let backup = admin
        .backup_volume()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    let backup = eventually(180, "the backup is done", || async {
        let b = admin
            .get_backup()
            .id(backup.id)
            .send()
            .await
            .ok()?
            .into_inner();
        (b.state != BackupState::Running).then_some(b)
    })
    .await;
    assert_eq!(backup.state, BackupState::Done, "{backup:?}");
    assert_eq!(
        (backup.source_worker_id, backup.store_worker_id),
        (a_id, b_id)
    );
    assert!(
        a.log().contains("database copied inside the guest"),
        "{}",
        a.log()
    );
    let left: Vec<_> = aerekos_tests::files_under(&volume)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".aerekos-snapshot"))
        .collect();
    assert!(left.is_empty(), "the guest's copy stays behind: {left:?}");

    // a is lost for good, VM and all; restored onto b, key_manager runs there in a VM and
    // decrypts what it encrypted before.
    a.lose_for_good();
    wait_for_worker(&admin, a_id, WorkerStatus::Lost, 30).await;
    let restore = admin
        .restore_service()
        .name("key_manager")
        .body(RestoreRequest {
            backup_id: backup.id,
            worker_id: b_id,
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    eventually(180, "the restore is done", || async {
        let m = admin
            .get_move()
            .id(restore.id)
            .send()
            .await
            .ok()?
            .into_inner();
        assert_ne!(m.state, MoveState::Failed, "{m:?}");
        (m.state == MoveState::Done).then_some(())
    })
    .await;
    let moved = healthy_instance(&admin, "key_manager", Some(first.id), 240).await;
    assert_eq!(moved.worker_id, b_id);
    assert_eq!(vms_of(moved.id), 1, "restored, it runs in a VM again");
    let plain = eventually(60, "the ciphertext decrypts after the restore", || async {
        aerekos_tests::decrypt_precious(&km, &ciphertext).await.ok()
    })
    .await;
    assert_eq!(plain, aerekos_tests::CROWN_JEWELS);
    drop(b);
}
