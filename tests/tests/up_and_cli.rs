//! `aerekos up` and the CLI, as a user runs them: the real executable (`AEREKOS_BIN`, which
//! `cargo xtask test` builds; else `target/debug/aerekos`) in a fresh directory.

use std::{path::Path, process::Command};

use aerekos_sdk::{Conductor, KeyManager};
use aerekos_tests::*;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn up_runs_key_manager_behind_the_gateway_the_cli_drives_it_and_a_restart_finds_everything() {
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let config = dir.path().join("cli-config");
    let first = up(dir.path(), &ports);
    assert!(
        first
            .lines
            .iter()
            .any(|l| l.contains("key_manager enabled")),
        "{:?}",
        first.lines
    );
    assert!(
        first.lines.iter().any(|l| l.contains("Swagger UI")),
        "{:?}",
        first.lines
    );
    let url = first.url.clone();

    // Not logged in yet: one line that says what to do.
    let (ok, _, err) = cli(&config, &["services", "ls", "--url", &url], None);
    assert!(
        !ok && err.contains("not logged in") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = cli(
        &config,
        &["login", "--url", &url, "--password-stdin"],
        Some("wrong-password\n"),
    );
    assert!(
        !ok && err.contains("401") && err.contains("request id"),
        "{err}"
    );
    let (ok, out, err) = cli(
        &config,
        &["login", "--url", &url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
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
    assert!(
        ok && out.contains("HEALTH") && out.contains("healthy"),
        "{out}"
    );
    let (ok, out, _) = cli(&config, &["workers", "ls", "-o", "json"], None);
    assert!(ok && json(&out)[0]["name"] == "local", "{out}");
    let (ok, out, _) = cli(&config, &["services", "ls", "-o", "json"], None);
    assert!(ok && json(&out)[0]["enabled"] == true, "{out}");

    // Apps reach it through the conductor's gateway with the SDK.
    let admin = Conductor::login(&url, "admin", PASSWORD).await.unwrap();
    let km = KeyManager::with_token(&url, admin.token().unwrap());
    km.create_key()
        .body_map(|b| b.name("up-test"))
        .send()
        .await
        .unwrap();
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
    assert!(
        !ok && err.contains("404 service_not_found")
            && err.contains("request id")
            && err.trim().lines().count() == 1,
        "{err}"
    );
    let (_, before, _) = cli(&config, &["token", "show", "-o", "json"], None);
    let (ok, after, _) = cli(&config, &["token", "regenerate", "-o", "json"], None);
    assert!(ok && json(&before)["token"] != json(&after)["token"]);

    // Ctrl-C stops everything, key_manager included.
    let instance_id = deployment["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid_file = dir
        .path()
        .join("data/worker/instances")
        .join(&instance_id)
        .join("pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(first.interrupt().success());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || !pid_file.exists(),
        "key_manager stopped with the platform"
    );

    // The next `aerekos up` finds everything as it was: the key decrypts.
    let second = up(dir.path(), &ports);
    assert!(
        second
            .lines
            .iter()
            .any(|l| l.contains("kept as deployed before")),
        "{:?}",
        second.lines
    );
    let admin = Conductor::login(&second.url, "admin", PASSWORD)
        .await
        .unwrap();
    let km = KeyManager::with_token(&second.url, admin.token().unwrap());
    let opened = eventually(60, "key_manager back with its keys", || async {
        km.decrypt()
            .key("up-test")
            .body_map(|b| b.ciphertext(sealed.ciphertext.clone()))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(
        opened.into_inner().plaintext,
        base64_of(b"kept across restarts")
    );
    assert!(second.interrupt().success());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// S3 clients reach storage_manager at one fixed address, the conductor's S3 edge, and never an
/// instance's port: the AWS CLI as a user runs it (`mb`, `sync` both ways with a 12 MiB file that
/// goes multipart, `ls --recursive`, `cp`, a second `sync` that finds nothing to do, `rm`, `rb`)
/// and rclone (`copy`, `check`, `sync` of a deletion, `lsf`), with an access key made through the
/// API.
#[tokio::test]
async fn the_aws_cli_works_against_the_s3_edge() {
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let platform = up(dir.path(), &ports);
    let s3 = platform
        .s3
        .clone()
        .unwrap_or_else(|| panic!("up names the S3 endpoint: {:?}", platform.lines));
    let admin = Conductor::login(&platform.url, "admin", PASSWORD)
        .await
        .unwrap();
    let storage = aerekos_sdk::StorageManager::with_token(&platform.url, admin.token().unwrap());
    let key = eventually(
        90,
        "storage_manager answers through the gateway",
        || async {
            storage
                .create_access_key()
                .body_map(|b| b.description("aws cli test"))
                .send()
                .await
                .ok()
                .map(|k| k.into_inner())
        },
    )
    .await;
    let secret = key.secret.clone().unwrap();
    let aws = |args: &[&str]| {
        let mut command = aws_command(&s3, &key.id, &secret, dir.path());
        command.args(args);
        // Transfers report progress unless told not to (`ls`, `mb` and the rest take no such option).
        if args.first() == Some(&"s3") && matches!(args.get(1), Some(&("cp" | "sync"))) {
            command.arg("--no-progress");
        }
        let out = command.output().unwrap_or_else(|e| {
            panic!(
                "running {} (cargo xtask test installs it): {e}",
                aws_cli().display()
            )
        });
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "aws {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    };

    // A tree to upload: nested, a name needing encoding, and a file past the CLI's 8 MiB
    // multipart threshold.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("docs/nested")).unwrap();
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("readme.txt", b"hello from the aws cli".to_vec()),
        (
            "docs/nested/notes+plus & space.md",
            b"# encoded keys".to_vec(),
        ),
        ("docs/ünïcode.txt", "grüße".as_bytes().to_vec()),
        ("big.bin", big.clone()),
    ];
    for (name, data) in &files {
        std::fs::write(tree.join(name), data).unwrap();
    }
    aws(&["s3", "mb", "s3://cli-bucket"]);
    aws(&[
        "s3",
        "sync",
        tree.to_str().unwrap(),
        "s3://cli-bucket/tree/",
    ]);
    let listing = aws(&["s3", "ls", "--recursive", "s3://cli-bucket/"]);
    for (name, data) in &files {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!("tree/{name}")))
            .unwrap_or_else(|| panic!("{name} listed:\n{listing}"));
        assert!(
            line.split_whitespace().nth(2) == Some(&data.len().to_string()),
            "{name} has its size: {line}"
        );
    }
    // Nothing changed: a second sync uploads nothing.
    assert_eq!(
        aws(&[
            "s3",
            "sync",
            tree.to_str().unwrap(),
            "s3://cli-bucket/tree/"
        ])
        .trim(),
        ""
    );
    // Back down, byte for byte, one file and the whole tree.
    let copy = dir.path().join("big-copy.bin");
    aws(&[
        "s3",
        "cp",
        "s3://cli-bucket/tree/big.bin",
        copy.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&copy).unwrap() == big,
        "the 12 MiB file comes back as it went"
    );
    let back = dir.path().join("back");
    aws(&[
        "s3",
        "sync",
        "s3://cli-bucket/tree/",
        back.to_str().unwrap(),
    ]);
    for (name, data) in &files {
        assert!(
            std::fs::read(back.join(name)).unwrap() == *data,
            "{name} round-trips"
        );
    }
    // The multipart upload kept S3's ETag shape (md5-of-parts and the part count).
    let head = aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "tree/big.bin",
    ]);
    assert!(
        json(&head)["ETag"].as_str().unwrap().ends_with("-2\""),
        "{head}"
    );
    // `cp --acl public-read` publishes one object: anyone reads it through the edge, unsigned;
    // its neighbours stay private.
    aws(&[
        "s3",
        "cp",
        tree.join("readme.txt").to_str().unwrap(),
        "s3://cli-bucket/public/readme.txt",
        "--acl",
        "public-read",
    ]);
    let anyone = reqwest::Client::new();
    let public = anyone
        .get(format!("{s3}/cli-bucket/public/readme.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(
        public.bytes().await.unwrap(),
        b"hello from the aws cli".as_slice()
    );
    let private = anyone
        .get(format!("{s3}/cli-bucket/tree/readme.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 403);

    // Virtual-host buckets through the edge: storage_manager deployed with S3_DOMAIN (a stateful
    // service changes its env only while disabled), then `<bucket>.<domain>` at the edge's port.
    let env =
        std::collections::HashMap::from([("S3_DOMAIN".to_owned(), "s3.aerekos.test".to_owned())]);
    let deploy = |env: std::collections::HashMap<String, String>| {
        admin
            .deploy_service()
            .name("storage_manager")
            .body(aerekos_sdk::conductor::types::DeployRequest {
                env,
                ..Default::default()
            })
            .send()
    };
    expect_api_error(
        failure(deploy(env.clone()).await),
        409,
        "stateful_service_running",
    );
    let platform_set =
        std::collections::HashMap::from([("DATA_DIR".to_owned(), "/elsewhere".to_owned())]);
    expect_api_error(failure(deploy(platform_set).await), 400, "invalid_env");
    admin
        .disable_service()
        .name("storage_manager")
        .send()
        .await
        .unwrap();
    let deployed = deploy(env).await.unwrap().into_inner();
    assert_eq!(
        deployed
            .spec
            .unwrap()
            .env
            .get("S3_DOMAIN")
            .map(String::as_str),
        Some("s3.aerekos.test")
    );
    let edge_port = reqwest::Url::parse(&s3).unwrap().port().unwrap();
    let hosted = eventually(
        90,
        "the public object by virtual host at the edge",
        || async {
            let answer = anyone
                .get(format!("{s3}/public/readme.txt"))
                .header(
                    reqwest::header::HOST,
                    format!("cli-bucket.s3.aerekos.test:{edge_port}"),
                )
                .send()
                .await
                .ok()?;
            (answer.status() == 200).then_some(answer)
        },
    )
    .await;
    assert_eq!(
        hosted.bytes().await.unwrap(),
        b"hello from the aws cli".as_slice()
    );
    // rclone (Debian's) against the same edge: copy, check, sync a deletion, list.
    let rclone = |args: &[&str]| {
        let out = Command::new("rclone")
            .args(args)
            // rclone 1.60 cannot load a CA bundle into its transport (and the edge here is plain HTTP).
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG", dir.path().join("no-rclone.conf"))
            .env("RCLONE_CONFIG_EDGE_TYPE", "s3")
            .env("RCLONE_CONFIG_EDGE_PROVIDER", "Other")
            .env("RCLONE_CONFIG_EDGE_ENDPOINT", &s3)
            .env("RCLONE_CONFIG_EDGE_ACCESS_KEY_ID", &key.id)
            .env("RCLONE_CONFIG_EDGE_SECRET_ACCESS_KEY", &secret)
            .env("RCLONE_CONFIG_EDGE_REGION", "us-east-1")
            .env("RCLONE_CONFIG_EDGE_FORCE_PATH_STYLE", "true")
            .output()
            .expect("running rclone (cargo xtask test installs Debian's)");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "rclone {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    };
    rclone(&["copy", tree.to_str().unwrap(), "edge:cli-bucket/rclone"]);
    rclone(&["check", tree.to_str().unwrap(), "edge:cli-bucket/rclone"]);
    std::fs::remove_file(tree.join("readme.txt")).unwrap();
    rclone(&["sync", tree.to_str().unwrap(), "edge:cli-bucket/rclone"]);
    let listed = rclone(&["lsf", "-R", "--files-only", "edge:cli-bucket/rclone"]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "big.bin",
            "docs/nested/notes+plus & space.md",
            "docs/ünïcode.txt"
        ],
        "the deleted file went, the rest stayed"
    );

    aws(&["s3", "rm", "--recursive", "s3://cli-bucket/"]);
    aws(&["s3", "rb", "s3://cli-bucket"]);
    assert!(!aws(&["s3", "ls"]).contains("cli-bucket"));
    assert!(platform.interrupt().success());
}

/// A Python app for the process driver: `GET /api/<name>/secret` answers its `DB_PASSWORD`;
/// `POST /api/<name>/rotate` answers a rotation (`{"value": {"bytes": …}}` of a fresh value),
/// `POST /api/<name>/fail` a failed one.
async fn get_text(http: &reqwest::Client, url: &str, token: &str) -> Option<String> {
    let answer = http.get(url).bearer_auth(token).send().await.ok()?;
    answer.status().is_success().then_some(())?;
    answer.text().await.ok()
}

/// secrets_manager under `aerekos up`: an app's deployment names a secret in `secret_env`; its
/// worker reads it just before the start with a token that only that start may use, and the app
/// finds it in its environment; the deployment and the data directory never hold it; a new value
/// arrives with a restart; rotation through an endpoint of the platform moves the labels.
#[tokio::test]
async fn secrets_reach_instances_only_at_their_start_and_rotation_moves_the_labels() {
    use aerekos_sdk::secrets_manager::types::SetRotationRequest;
    use base64::Engine as _;
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let platform = up(dir.path(), &ports);
    let admin = Conductor::login(&platform.url, "admin", PASSWORD)
        .await
        .unwrap();
    let token = admin.token().unwrap();
    let secrets = aerekos_sdk::SecretsManager::with_token(&platform.url, &token);
    let b64 = |v: &str| secret_bytes(v.as_bytes());
    let first = format!("first-{}", uuid::Uuid::new_v4().simple());
    eventually(
        120,
        "secrets_manager answers through the gateway",
        || async {
            secrets
                .create_secret()
                .body(new_secret("apps/shop/db-password", Some(b64(&first))))
                .send()
                .await
                .ok()
        },
    )
    .await;

    secret_app(&admin, "shop", dir.path(), |_| {}).await;
    let secret_env = std::collections::HashMap::from([(
        "DB_PASSWORD".to_owned(),
        aerekos_sdk::conductor::types::SecretRef {
            secret: "apps/shop/db-password".into(),
            version: None,
            label: None,
            restart_on_change: false,
            as_file: false,
        },
    )]);
    let deploy = |restart: bool| {
        let req = aerekos_sdk::conductor::types::DeployRequest {
            secret_env: secret_env.clone(),
            restart: restart.then_some(true),
            ..Default::default()
        };
        admin.deploy_service().name("shop").body(req).send()
    };
    deploy(false).await.unwrap();
    let http = reqwest::Client::new();
    let secret_url = format!("{}/api/shop/secret", platform.url);
    let seen = eventually(60, "the app answers with its secret", || {
        get_text(&http, &secret_url, &token)
    })
    .await;
    assert_eq!(seen, first);
    // The start's token is gone once used: no instance token is left valid.
    let tokens = admin
        .list_tokens()
        .send()
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(
        !tokens.iter().any(|t| t.name.starts_with("instance-")),
        "the secrets token was revoked after the start: {tokens:?}"
    );
    // Only the reference is stored: not in the deployment, nor anywhere in the platform's files.
    let deployment = serde_json::to_string(
        &admin
            .get_deployment()
            .name("shop")
            .send()
            .await
            .unwrap()
            .into_inner(),
    )
    .unwrap();
    assert!(
        deployment.contains("apps/shop/db-password") && !deployment.contains(&first),
        "{deployment}"
    );
    let files = files_under(&dir.path().join("data"));
    assert!(
        files.iter().any(|f| f.ends_with("secrets_manager.db")),
        "the search covers the services' data: {files:?}"
    );
    for file in files {
        let content = std::fs::read(&file).unwrap_or_default();
        assert!(
            !content.windows(first.len()).any(|w| w == first.as_bytes()),
            "{} holds the secret",
            file.display()
        );
    }

    // A new value, written with the CLI from stdin (never an argument), reaches the app with a
    // restart (a rolling one: the new instance reads it).
    let second = format!("second-{}", uuid::Uuid::new_v4().simple());
    let config = dir.path().join("cli");
    let (ok, _, err) = cli(
        &config,
        &["login", "--url", &platform.url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        &config,
        &["secrets", "put", "apps/shop/db-password", "--cas", "1"],
        Some(&format!("{second}\n")),
    );
    assert!(ok && out.contains("version 2"), "{out}{err}");
    let (ok, out, err) = cli(&config, &["secrets", "get", "apps/shop/db-password"], None);
    assert!(ok, "{err}");
    assert_eq!(
        out, second,
        "get prints the value as it is, without the newline stdin gave"
    );
    let (ok, out, _) = cli(
        &config,
        &[
            "secrets",
            "get",
            "apps/shop/db-password",
            "--label",
            "AWSPREVIOUS",
        ],
        None,
    );
    assert!(ok && out == first);
    let (ok, out, _) = cli(&config, &["secrets", "ls", "--prefix", "apps/"], None);
    assert!(
        ok && out.contains("apps/shop/db-password") && !out.contains(&second),
        "{out}"
    );
    let (ok, out, _) = cli(
        &config,
        &["secrets", "show", "apps/shop/db-password", "-o", "json"],
        None,
    );
    assert!(
        ok && json(&out)["current_version"] == 2 && !out.contains(&second),
        "{out}"
    );
    assert_eq!(
        get_text(&http, &secret_url, &token).await.as_deref(),
        Some(first.as_str()),
        "the running instance keeps the value it started with"
    );
    deploy(true).await.unwrap();
    eventually(60, "the restarted app has the new value", || async {
        (get_text(&http, &secret_url, &token).await.as_deref() == Some(second.as_str()))
            .then_some(())
    })
    .await;

    // A secret that cannot be read keeps the instance from starting, and says why.
    secret_app(&admin, "broken", dir.path(), |def| {
        def.secret_env = std::collections::HashMap::from([(
            "DB_PASSWORD".to_owned(),
            aerekos_sdk::conductor::types::SecretRef {
                secret: "apps/missing".into(),
                version: None,
                label: None,
                restart_on_change: false,
                as_file: false,
            },
        )]);
    })
    .await;
    admin
        .deploy_service()
        .name("broken")
        .body(aerekos_sdk::conductor::types::DeployRequest::default())
        .send()
        .await
        .unwrap();
    let reason = eventually(
        60,
        "the broken app's instance says why it did not start",
        || async {
            let d = admin
                .get_deployment()
                .name("broken")
                .send()
                .await
                .ok()?
                .into_inner();
            d.instances
                .first()?
                .reason
                .clone()
                .filter(|r| r.contains("apps/missing"))
        },
    )
    .await;
    assert!(
        reason.contains("secret_not_found") || reason.contains("no secret"),
        "{reason}"
    );

    // Rotation through the shop app's own endpoint (through the gateway, with secrets_manager's token).
    let rotation = SetRotationRequest {
        service: "shop".into(),
        path: "/rotate".into(),
        interval_secs: 3600,
    };
    secrets
        .set_secret_rotation()
        .name("apps/shop/db-password")
        .body(rotation)
        .send()
        .await
        .unwrap();
    let rotated = secrets
        .rotate_secret()
        .name("apps/shop/db-password")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.current_version, Some(3));
    assert!(rotated.rotation.as_ref().unwrap().last_rotated_at.is_some());
    let current = secrets
        .get_secret_value()
        .name("apps/shop/db-password")
        .send()
        .await
        .unwrap()
        .into_inner();
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(current.value.bytes.unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        text.starts_with("rotated-") && text.ends_with("-after-2"),
        "{text}"
    );
    let previous = secrets
        .get_secret_value()
        .name("apps/shop/db-password")
        .label("AWSPREVIOUS")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previous.version, 2);
    // A failing endpoint changes nothing and is kept as the schedule's last error.
    let failing = SetRotationRequest {
        service: "shop".into(),
        path: "/fail".into(),
        interval_secs: 3600,
    };
    secrets
        .set_secret_rotation()
        .name("apps/shop/db-password")
        .body(failing)
        .send()
        .await
        .unwrap();
    let refused = expect_api_error(
        failure(
            secrets
                .rotate_secret()
                .name("apps/shop/db-password")
                .send()
                .await,
        ),
        503,
        "rotation_failed",
    );
    assert!(refused.message.contains("500"), "{refused:?}");
    let after = secrets
        .get_secret()
        .name("apps/shop/db-password")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.current_version,
        Some(3),
        "a failed rotation leaves the current version"
    );
    assert!(
        after
            .rotation
            .unwrap()
            .last_error
            .is_some_and(|e| e.contains("down"))
    );
    assert!(platform.interrupt().success());
}

/// The same for an instance in a Docker container, on a second worker (its own process and data
/// directory) that joins the platform `aerekos up` started.
#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn a_docker_instance_on_a_second_worker_gets_its_secret_in_its_environment() {
    docker_image::ensure_test_image();
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let platform = up(dir.path(), &ports);
    let admin = Conductor::login(&platform.url, "admin", PASSWORD)
        .await
        .unwrap();
    let token = admin.token().unwrap();
    let secrets = aerekos_sdk::SecretsManager::with_token(&platform.url, &token);
    let value = format!("in-a-container-{}", uuid::Uuid::new_v4().simple());
    eventually(
        120,
        "secrets_manager answers through the gateway",
        || async {
            secrets
                .create_secret()
                .body(new_secret(
                    "apps/box/db-password",
                    Some(secret_bytes(value.as_bytes())),
                ))
                .send()
                .await
                .ok()
        },
    )
    .await;

    // A second worker, as its own process with its own data directory, with the Docker engine.
    let second = join_worker(&admin, &platform.url, "docker-worker").await;
    let docker_worker = second.id;

    let mut def: aerekos_sdk::conductor::types::ServiceDefinition =
        aerekos_sdk::conductor::types::ServiceDefinition::builder()
            .name("boxapp")
            .try_into()
            .unwrap();
    def.image = Some(docker_image::TEST_IMAGE.into());
    let script = "/bin/busybox mkdir -p /tmp/www/api/boxapp && printf %s \"$DB_PASSWORD\" > /tmp/www/api/boxapp/secret \
                  && cat \"$DB_FILE\" > /tmp/www/api/boxapp/file && printf %s \"$DB_FILE\" > /tmp/www/api/boxapp/file-path \
                  && echo ok > /tmp/www/health && exec /bin/busybox httpd -f -p $PORT -h /tmp/www";
    def.image_command = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ];
    def.default_resources = Some(aerekos_sdk::conductor::types::ResourceSpec {
        cpu_millicores: 50,
        memory_mb: 32,
        disk_mb: 0,
    });
    let reference = |as_file: bool| aerekos_sdk::conductor::types::SecretRef {
        secret: "apps/box/db-password".into(),
        version: None,
        label: None,
        restart_on_change: false,
        as_file,
    };
    // The same secret in the environment and as a file, which the container finds in /run/secrets.
    def.secret_env = std::collections::HashMap::from([
        ("DB_PASSWORD".to_owned(), reference(false)),
        ("DB_FILE".to_owned(), reference(true)),
    ]);
    admin.define_service().body(def).send().await.unwrap();
    let req = aerekos_sdk::conductor::types::DeployRequest {
        worker_ids: vec![docker_worker],
        driver: Some(aerekos_sdk::conductor::types::DriverKind::Docker),
        ..Default::default()
    };
    admin
        .deploy_service()
        .name("boxapp")
        .body(req)
        .send()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/boxapp/secret", platform.url);
    let seen = eventually(120, "the container answers with its secret", || {
        get_text(&http, &url, &token)
    })
    .await;
    assert_eq!(seen, value);
    let file_url = url.replace("/secret", "/file");
    assert_eq!(
        get_text(&http, &file_url, &token).await.as_deref(),
        Some(value.as_str())
    );
    let path_url = url.replace("/secret", "/file-path");
    assert_eq!(
        get_text(&http, &path_url, &token).await.as_deref(),
        Some("/run/secrets/DB_FILE")
    );
    let deployment = admin
        .get_deployment()
        .name("boxapp")
        .send()
        .await
        .unwrap()
        .into_inner();
    let instance_id = deployment.instances[0].id.to_string();
    let container = format!("aerekos-{instance_id}");
    assert!(!serde_json::to_string(&deployment).unwrap().contains(&value));
    // The container's environment has it; its stored spec (what users see) does not.
    let inspect = Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Env}}", &container])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains(&format!("DB_PASSWORD={value}")));
    // The file the container reads is on the host's memory filesystem, in the instance's directory.
    let host_file = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("aerekos-secrets-")
        })
        .map(|e| e.path().join(&instance_id).join("DB_FILE"))
        .find(|p| p.exists());
    assert!(
        host_file.is_some(),
        "no /dev/shm/aerekos-secrets-*/{instance_id}/DB_FILE"
    );
    // Disabled, its worker stops and removes the container before the worker goes.
    admin.disable_service().name("boxapp").send().await.unwrap();
    eventually(60, "the container is removed", || async {
        let out = Command::new("docker")
            .args(["inspect", &container])
            .output()
            .ok()?;
        (!out.status.success()).then_some(())
    })
    .await;
    // And its secret files with it: no worker's secrets directory keeps the instance's.
    eventually(30, "the instance's secret files are removed", || async {
        let left = std::fs::read_dir("/dev/shm")
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("aerekos-secrets-")
            })
            .any(|e| e.path().join(&instance_id).exists());
        (!left).then_some(())
    })
    .await;
    drop(second);
    assert!(platform.interrupt().success());
}
