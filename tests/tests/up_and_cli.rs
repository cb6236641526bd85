//! `aerekos up` and the CLI, as a user runs them: the real executable (`AEREKOS_BIN`, which
//! `cargo xtask test` builds; else `target/debug/aerekos`) in a fresh directory.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use aerekos_sdk::{Conductor, KeyManager};
use aerekos_tests::*;

const PASSWORD: &str = "up-test-admin-password";

struct Up {
    child: Child,
    url: String,
    lines: Vec<String>,
}

fn up(dir: &Path, ports: &std::ops::RangeInclusive<u16>) -> Up {
    let mut child = Command::new(aerekos_bin())
        .arg("up")
        .current_dir(dir)
        .env("CONDUCTOR_PORT", "0")
        .env("CONDUCTOR_HOST", "127.0.0.1")
        .env("WORKER_API_PORT", "off")
        .env("HEARTBEAT_INTERVAL", "1")
        .env("AEREKOS_ADMIN_PASSWORD", PASSWORD)
        .env("AEREKOS_INSTANCE_PORTS", format!("{}-{}", ports.start(), ports.end()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = vec![];
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    // Everything up prints before it waits for Ctrl-C ends with the Ctrl-C line.
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "aerekos up ended early: {lines:?}");
        if let Some(u) = line.trim().strip_prefix("aerekos conductor listening on ") {
            url = Some(u.to_owned());
        }
        lines.push(line.trim_end().to_owned());
        if line.contains("Ctrl-C stops") {
            break;
        }
    }
    Up { child, url: url.expect("the listening line"), lines }
}

impl Up {
    /// Ctrl-C, and the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        assert!(pid > 1);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT).unwrap();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("aerekos up did not stop within 30 s of Ctrl-C");
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn up_runs_key_manager_behind_the_gateway_the_cli_drives_it_and_a_restart_finds_everything() {
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let config = dir.path().join("cli-config");
    let first = up(dir.path(), &ports);
    assert!(first.lines.iter().any(|l| l.contains("key_manager enabled")), "{:?}", first.lines);
    assert!(first.lines.iter().any(|l| l.contains("Swagger UI")), "{:?}", first.lines);
    let url = first.url.clone();

    // Not logged in yet: one line that says what to do.
    let (ok, _, err) = cli(&config, &["services", "ls", "--url", &url], None);
    assert!(!ok && err.contains("not logged in") && err.trim().lines().count() == 1, "{err}");
    let (ok, _, err) = cli(&config, &["login", "--url", &url, "--password-stdin"], Some("wrong-password\n"));
    assert!(!ok && err.contains("401") && err.contains("request id"), "{err}");
    let (ok, out, err) = cli(&config, &["login", "--url", &url, "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    assert!(ok, "{err}");
    assert!(out.contains("logged in"), "{out}");

    // key_manager was deployed onto the local worker and turns healthy.
    let deployment = eventually(60, "key_manager healthy", || async {
        let (ok, out, _) = cli(&config, &["deployments", "key_manager", "-o", "json"], None);
        let d = json(&out);
        (ok && d["healthy"] == 1).then_some(d)
    })
    .await;
    assert_eq!(deployment["instances"][0]["spec"]["command"][0], "aerekos");
    let (ok, out, _) = cli(&config, &["deployments", "key_manager"], None);
    assert!(ok && out.contains("HEALTH") && out.contains("healthy"), "{out}");
    let (ok, out, _) = cli(&config, &["workers", "ls", "-o", "json"], None);
    assert!(ok && json(&out)[0]["name"] == "local", "{out}");
    let (ok, out, _) = cli(&config, &["services", "ls", "-o", "json"], None);
    assert!(ok && json(&out)[0]["enabled"] == true, "{out}");

    // Apps reach it through the conductor's gateway with the SDK.
    let admin = Conductor::login(&url, "admin", PASSWORD).await.unwrap();
    let km = KeyManager::with_token(&url, admin.token().unwrap());
    km.create_key().body_map(|b| b.name("up-test")).send().await.unwrap();
    let sealed = km
        .encrypt()
        .key("up-test")
        .body_map(|b| b.plaintext(base64_of(b"kept across restarts")))
        .send()
        .await
        .unwrap()
        .into_inner();

    // Errors are one line with the request id; regenerate gives a new token.
    let (ok, _, err) = cli(&config, &["services", "enable", "nope"], None);
    assert!(!ok && err.contains("404 service_not_found") && err.contains("request id") && err.trim().lines().count() == 1, "{err}");
    let (_, before, _) = cli(&config, &["token", "show", "-o", "json"], None);
    let (ok, after, _) = cli(&config, &["token", "regenerate", "-o", "json"], None);
    assert!(ok && json(&before)["token"] != json(&after)["token"]);

    // Ctrl-C stops everything, key_manager included.
    let instance_id = deployment["instances"][0]["id"].as_str().unwrap().to_owned();
    let pid_file = dir.path().join("data/worker/instances").join(&instance_id).join("pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(first.interrupt().success());
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || !pid_file.exists(), "key_manager stopped with the platform");

    // The next `aerekos up` finds everything as it was: the key decrypts.
    let second = up(dir.path(), &ports);
    assert!(second.lines.iter().any(|l| l.contains("kept as deployed before")), "{:?}", second.lines);
    let admin = Conductor::login(&second.url, "admin", PASSWORD).await.unwrap();
    let km = KeyManager::with_token(&second.url, admin.token().unwrap());
    let opened = eventually(60, "key_manager back with its keys", || async {
        km.decrypt().key("up-test").body_map(|b| b.ciphertext(sealed.ciphertext.clone())).send().await.ok()
    })
    .await;
    assert_eq!(opened.into_inner().plaintext, base64_of(b"kept across restarts"));
    assert!(second.interrupt().success());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
