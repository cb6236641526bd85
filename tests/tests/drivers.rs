//! One test suite, two runtime drivers: `process` always, `docker` against the real local engine.
//!
//! The Docker run is `#[ignore]`d here because a plain `cargo test` may run where no engine does;
//! `cargo xtask test` starts dockerd and runs it by name (and in CI fails if no engine can be had),
//! so it is reported as skipped, never as passed, where it did not run.

use std::{path::Path, sync::Arc};

use aerekos_sdk::conductor::types::InstanceSpec;
use aerekos_worker::driver::{
    Driver, DriverError, Observed, docker::DockerDriver, process::ProcessDriver,
};
use uuid::Uuid;

use aerekos_tests::{
    docker_image::{TEST_IMAGE, ensure_test_image},
    eventually, free_port,
};

async fn http_get(port: u16) -> Option<String> {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

/// What differs between the drivers; everything else in the suite is the same.
struct Case {
    /// A spec serving HTTP on `port`.
    serving: fn(u16) -> InstanceSpec,
    /// What a served request leaves in the instance's output.
    log_marker: &'static str,
    /// An assignment this driver cannot run, and the reason it must give.
    unrunnable: (InstanceSpec, &'static str),
    /// Kills the instance from outside the worker.
    kill: fn(Uuid, &Path),
}

async fn driver_suite(new_driver: impl AsyncFn() -> Arc<dyn Driver>, case: Case, dir: &Path) {
    let driver = new_driver().await;
    let id = Uuid::new_v4();
    let port = free_port();
    let spec = (case.serving)(port);

    // Start: running, reachable on its port, its output readable.
    driver.start(id, &spec).await.expect("starts");
    assert_eq!(driver.observe(id).await, Observed::Running);
    let body = eventually(20, "instance answers HTTP", || http_get(port)).await;
    assert!(!body.is_empty());
    let logs = eventually(10, "request in the output", || async {
        driver
            .logs(id, 64 * 1024)
            .await
            .ok()
            .filter(|l| l.contains(case.log_marker))
    })
    .await;
    assert!(logs.contains(case.log_marker));
    assert!(driver.instances().await.contains(&id));

    // Killed from outside: seen as exited.
    (case.kill)(id, dir);
    let seen = eventually(10, "instance seen exited", || async {
        match driver.observe(id).await {
            Observed::Running => None,
            other => Some(other),
        }
    })
    .await;
    assert!(
        matches!(seen, Observed::Exited { .. } | Observed::Missing),
        "{seen:?}"
    );

    // Started again, then found by a fresh driver (a restarted worker): adopted, not duplicated.
    driver.start(id, &spec).await.expect("starts again");
    eventually(20, "restarted instance answers", || http_get(port)).await;
    drop(driver);
    let adopter = new_driver().await;
    assert_eq!(
        adopter.observe(id).await,
        Observed::Running,
        "a new driver sees the running instance"
    );
    assert_eq!(
        adopter
            .instances()
            .await
            .iter()
            .filter(|i| **i == id)
            .count(),
        1
    );
    assert!(http_get(port).await.is_some());

    // Stopped: gone and no longer listening.
    adopter.stop(id).await.expect("stops");
    assert_ne!(adopter.observe(id).await, Observed::Running);
    eventually(10, "port released", || async {
        http_get(port).await.is_none().then_some(())
    })
    .await;
    assert!(!adopter.instances().await.contains(&id));

    // Bad assignments are refused with a reason.
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    match adopter
        .start(Uuid::new_v4(), &(case.serving)(busy_port))
        .await
    {
        Err(DriverError::Refused(reason)) => assert_eq!(
            reason,
            format!("port {busy_port} is already in use on this worker")
        ),
        other => panic!("a taken port must be refused, got {other:?}"),
    }
    let (spec, expected) = case.unrunnable;
    match adopter.start(Uuid::new_v4(), &spec).await {
        Err(DriverError::Refused(reason)) => assert!(
            reason.contains(expected),
            "{reason:?} should say {expected:?}"
        ),
        other => panic!("{spec:?} must be refused, got {other:?}"),
    }
}

fn python_http(port: u16) -> InstanceSpec {
    InstanceSpec {
        image: None,
        command: [
            "python3",
            "-u",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "0.0.0.0",
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

fn busybox_http(port: u16) -> InstanceSpec {
    InstanceSpec {
        image: Some(TEST_IMAGE.into()),
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
    }
}

#[tokio::test]
async fn the_process_driver_passes_the_driver_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let new_driver = async || -> Arc<dyn Driver> {
        let platform = aerekos_worker::driver::Platform {
            conductor_url: "http://127.0.0.1:9".into(),
            ca_pem: None,
            executable: None,
            volumes_dir: path.join("volumes"),
            instance_host: [127, 0, 0, 1].into(),
            secret_files_dir: path.join("secret-files"),
        };
        let driver: Arc<dyn Driver> = Arc::new(ProcessDriver::new(&path, platform).unwrap());
        driver
    };
    let case = Case {
        serving: python_http,
        log_marker: "\"GET / HTTP/1.1\" 200",
        unrunnable: (
            InstanceSpec {
                command: vec!["/nonexistent/aerekos-binary".into()],
                ..python_http(free_port())
            },
            "command not found: /nonexistent/aerekos-binary",
        ),
        kill: |id, dir| {
            let pid: i32 =
                std::fs::read_to_string(dir.join("instances").join(id.to_string()).join("pid"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
            assert!(pid > 1);
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        },
    };
    driver_suite(new_driver, case, dir.path()).await;
}

#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn the_docker_driver_passes_the_driver_suite() {
    ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let new_driver = async || -> Arc<dyn Driver> {
        let driver: Arc<dyn Driver> = Arc::new(
            DockerDriver::connect()
                .await
                .expect("a Docker engine answers"),
        );
        driver
    };
    let case = Case {
        serving: busybox_http,
        log_marker: "response:200",
        unrunnable: (
            InstanceSpec {
                image: Some("aerekos-test/not-here:0".into()),
                ..busybox_http(free_port())
            },
            "image aerekos-test/not-here:0 is not on this worker",
        ),
        kill: |id, _| {
            let status = std::process::Command::new("docker")
                .args(["kill", &format!("aerekos-{id}")])
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "docker kill: {}",
                String::from_utf8_lossy(&status.stderr)
            );
        },
    };
    driver_suite(new_driver, case, dir.path()).await;
}

#[test]
fn only_static_executables_qualify_for_the_scratch_image() {
    use aerekos_worker::driver::image::{build_context, is_static_executable};
    // This test binary is dynamically linked (it has a program interpreter).
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(!is_static_executable(&me));
    assert!(!is_static_executable(b"#!/bin/sh\necho not an ELF\n"));
    let busybox = Path::new("/bin/busybox");
    if busybox.exists() {
        assert!(
            is_static_executable(&std::fs::read(busybox).unwrap()),
            "Debian's busybox-static is static"
        );
    }
    // The build context holds the Dockerfile and the executable, nothing else.
    let context = build_context(b"binary").unwrap();
    let mut archive = tar::Archive::new(context.as_slice());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["Dockerfile", "aerekos"]);
}

#[tokio::test]
#[ignore = "needs a Docker engine and a static aerekos build; `cargo xtask test` provides both"]
async fn the_worker_builds_the_service_image_from_its_static_executable_and_runs_it() {
    let exe = std::env::var("AEREKOS_STATIC_BIN")
        .expect("AEREKOS_STATIC_BIN names a statically linked aerekos");
    let docker = DockerDriver::connect()
        .await
        .expect("a Docker engine answers");
    let tag = aerekos_worker::driver::image::service_image_tag();
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();

    let built = docker
        .ensure_service_image(Path::new(&exe))
        .await
        .expect("the image builds");
    assert_eq!(built, tag);
    let inspect = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}}",
            &tag,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        "[\"/aerekos\"]"
    );

    // The image runs aerekos: here a conductor inside the container, answering on a published port.
    // It listens on 0.0.0.0, so it serves TLS (its own cluster CA, made inside the container): the
    // static executable's TLS works from scratch.
    let port = free_port();
    let spec = InstanceSpec {
        image: Some(tag.clone()),
        command: vec!["conductor".into()],
        env: [
            ("CONDUCTOR_HOST", "0.0.0.0".to_owned()),
            ("CONDUCTOR_PORT", port.to_string()),
            ("DATA_DIR", "/data".to_owned()),
            (
                "AEREKOS_ADMIN_PASSWORD",
                "container-admin-password".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
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
    };
    let id = Uuid::new_v4();
    docker
        .start(id, &spec)
        .await
        .expect("the service container starts");
    // The CA is inside the container; which certificate it presents is for the TLS tests.
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let health = eventually(
        30,
        "the containerised conductor answers over TLS",
        || async {
            let resp = http
                .get(format!("https://127.0.0.1:{port}/health"))
                .send()
                .await
                .ok()?;
            resp.status().is_success().then_some(())?;
            resp.json::<serde_json::Value>().await.ok()
        },
    )
    .await;
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    docker.stop(id).await.unwrap();

    // A dynamically linked executable is refused with the reason, not built into a broken image.
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();
    let err = docker
        .ensure_service_image(&std::env::current_exe().unwrap())
        .await
        .unwrap_err();
    assert!(err.contains("dynamically linked"), "{err}");
    // Leave the image built for whatever runs next.
    docker.ensure_service_image(Path::new(&exe)).await.unwrap();
}
