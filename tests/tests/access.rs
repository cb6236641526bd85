//! Safe to expose (issue 13): TLS with a pinned cluster CA, users managed through the API,
//! revocation that every server honours within about a second, throttling, login back-off, the
//! dashboard's security headers, CORS allow-lists and the audit trail.
//!
//! Revocation runs on a cluster of processes: a conductor, a worker, and key_manager and
//! storage_manager deployed onto it as processes of their own; each check calls the services at
//! their instance addresses directly (not through the gateway, which the conductor guards itself).

use std::{net::IpAddr, time::Duration};

use aerekos_sdk::{
    Conductor, KeyManager, SdkError, StorageManager, WorkerAgent,
    conductor::types::{self, Role, WorkerStatus},
};
use aerekos_tests::{
    expect_api_error, failure,
    processes::{ConductorProcess, WorkerProcess, wait_for_worker},
    *,
};
use uuid::Uuid;

const ALICE_PASSWORD: &str = "alice-password-long-enough";

/// How long a revocation may take to reach every server here: the design bound is one round trip
/// of the feed's long poll while the conductor is reachable; the allowance covers a loaded CI box.
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

struct Servers {
    conductor: String,
    key_manager: String,
    storage_manager: String,
    worker_api: String,
}

/// 401 `token_revoked` from each server, waiting at most [`REVOCATION_BOUND`] for each.
async fn refused_everywhere(servers: &Servers, token: &str) {
    let deadline = tokio::time::Instant::now() + REVOCATION_BOUND;
    for (server, probe) in [
        ("conductor", 0),
        ("key_manager", 1),
        ("storage_manager", 2),
        ("worker API", 3),
    ] {
        loop {
            let result: Result<(), SdkError> = match probe {
                0 => Conductor::with_token(&servers.conductor, token)
                    .get_me()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                1 => KeyManager::with_token(&servers.key_manager, token)
                    .list_keys()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                2 => StorageManager::with_token(&servers.storage_manager, token)
                    .list_buckets()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                _ => WorkerAgent::with_token(&servers.worker_api, token)
                    .list_instances()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
            };
            match result {
                Err(SdkError::Api { status: 401, body }) => {
                    assert_eq!(body.code, "token_revoked", "{server}: {body:?}");
                    break;
                }
                other => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{server} still accepts the revoked token after {REVOCATION_BOUND:?}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every server takes `token` (before it is revoked).
async fn accepted_everywhere(servers: &Servers, token: &str) {
    Conductor::with_token(&servers.conductor, token)
        .get_me()
        .send()
        .await
        .expect("conductor accepts the token");
    KeyManager::with_token(&servers.key_manager, token)
        .list_keys()
        .send()
        .await
        .expect("key_manager accepts the token");
    StorageManager::with_token(&servers.storage_manager, token)
        .list_buckets()
        .send()
        .await
        .expect("storage_manager accepts the token");
    WorkerAgent::with_token(&servers.worker_api, token)
        .list_instances()
        .send()
        .await
        .expect("the worker API accepts the token");
}

async fn instance_url(admin: &Conductor, service: &str) -> String {
    eventually(90, &format!("{service} healthy"), || async {
        let d = admin
            .get_deployment()
            .name(service)
            .send()
            .await
            .ok()?
            .into_inner();
        let i = d
            .instances
            .iter()
            .find(|i| i.health == types::InstanceHealth::Healthy)?;
        i.address.as_ref().map(|a| format!("http://{a}"))
    })
    .await
}

async fn alice(conductor: &str) -> (Conductor, String) {
    let c = Conductor::login(conductor, "alice", ALICE_PASSWORD)
        .await
        .expect("alice logs in");
    let token = c.token().expect("token");
    (c, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_revocation_reaches_the_conductor_key_manager_storage_manager_and_the_worker_within_seconds()
 {
    let mut conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    let worker = WorkerProcess::start(&conductor, "worker-a");
    let worker_id = worker.id().await;
    wait_for_worker(&admin, worker_id, WorkerStatus::Live, 30).await;
    for service in ["key_manager", "storage_manager"] {
        admin
            .enable_service()
            .name(service)
            .send()
            .await
            .expect("enable");
    }
    let worker_api = admin
        .get_worker()
        .id(worker_id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .api_url
        .expect("worker API url");
    let servers = Servers {
        conductor: conductor.url.clone(),
        key_manager: instance_url(&admin, "key_manager").await,
        storage_manager: instance_url(&admin, "storage_manager").await,
        worker_api,
    };
    let user = admin
        .create_user()
        .body(types::CreateUserRequest {
            username: "alice".into(),
            role: Role::Admin,
            password: ALICE_PASSWORD.into(),
        })
        .send()
        .await
        .expect("create alice")
        .into_inner();

    // Logout.
    let (c, token) = alice(&conductor.url).await;
    accepted_everywhere(&servers, &token).await;
    c.logout().send().await.expect("logout");
    refused_everywhere(&servers, &token).await;

    // An admin revokes one session by id; another session of the same user keeps working.
    let (_, token) = alice(&conductor.url).await;
    let (_, other) = alice(&conductor.url).await;
    let sessions = admin
        .list_tokens()
        .user_id(user.id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let claims = jwt_id(&token);
    admin
        .revoke_token()
        .id(&claims)
        .send()
        .await
        .expect("revoke by id");
    refused_everywhere(&servers, &token).await;
    accepted_everywhere(&servers, &other).await;

    // Disabled: every session ends, and logging in is refused until enabled again.
    let disable = types::UpdateUserRequest {
        disabled: Some(true),
        role: None,
    };
    admin
        .update_user()
        .id(user.id)
        .body(disable)
        .send()
        .await
        .expect("disable");
    refused_everywhere(&servers, &other).await;
    let err: SdkError = Conductor::login(&conductor.url, "alice", ALICE_PASSWORD)
        .await
        .expect_err("a disabled user cannot log in");
    expect_api_error(err, 403, "user_disabled");
    let enable = types::UpdateUserRequest {
        disabled: Some(false),
        role: None,
    };
    admin
        .update_user()
        .id(user.id)
        .body(enable)
        .send()
        .await
        .expect("enable");

    // A password reset by an admin.
    let (_, token) = alice(&conductor.url).await;
    let reset = types::SetPasswordRequest {
        password: format!("{ALICE_PASSWORD}-2"),
    };
    admin
        .reset_user_password()
        .id(user.id)
        .body(reset)
        .send()
        .await
        .expect("reset");
    refused_everywhere(&servers, &token).await;

    // Her own password change: the old session ends, the new one works.
    let c = Conductor::login(&conductor.url, "alice", &format!("{ALICE_PASSWORD}-2"))
        .await
        .expect("new password");
    let token = c.token().unwrap();
    let change = types::ChangePasswordRequest {
        current_password: format!("{ALICE_PASSWORD}-2"),
        new_password: ALICE_PASSWORD.into(),
    };
    let fresh = c
        .change_password()
        .body(change)
        .send()
        .await
        .expect("change password")
        .into_inner();
    refused_everywhere(&servers, &token).await;
    accepted_everywhere(&servers, &fresh.token).await;

    // A service token revoked by id.
    let service = admin
        .create_service_token()
        .body(types::ServiceTokenRequest {
            service: "reporting".into(),
            expires_in_secs: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    KeyManager::with_token(&servers.key_manager, &service.token)
        .list_keys()
        .send()
        .await
        .expect("service token works");
    admin
        .revoke_token()
        .id(&service.token_id)
        .send()
        .await
        .expect("revoke service token");
    let deadline = tokio::time::Instant::now() + REVOCATION_BOUND;
    loop {
        match KeyManager::with_token(&servers.key_manager, &service.token)
            .list_keys()
            .send()
            .await
            .map_err(SdkError::from)
        {
            Err(SdkError::Api { status: 401, body }) if body.code == "token_revoked" => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "key_manager still accepts the revoked service token: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The conductor killed with SIGKILL and started again: what was revoked stays revoked, and the
    // services' followers reconnect and learn revocations made after the restart.
    conductor.kill();
    conductor.start_again().await;
    refused_everywhere(&servers, &token).await;
    let (_, token) = alice(&conductor.url).await;
    accepted_everywhere(&servers, &token).await;
    admin_again(&conductor)
        .await
        .delete_user()
        .id(user.id)
        .send()
        .await
        .expect("delete alice");
    refused_everywhere(&servers, &token).await;
    refused_everywhere(&servers, &fresh.token).await;
    let err = Conductor::login(&conductor.url, "alice", ALICE_PASSWORD)
        .await
        .expect_err("a deleted user cannot log in");
    expect_api_error(err, 401, "invalid_credentials");

    // The operator resets the seeded admin's password (AEREKOS_ADMIN_PASSWORD) and restarts the
    // conductor: the admin's old sessions end too, as with a password change through the API.
    let old_admin = conductor.admin().await.token().unwrap();
    accepted_everywhere(&servers, &old_admin).await;
    conductor.kill();
    conductor.set_env(
        "AEREKOS_ADMIN_PASSWORD",
        "a-new-admin-password-from-the-operator",
    );
    conductor.start_again().await;
    refused_everywhere(&servers, &old_admin).await;
    Conductor::login(
        &conductor.url,
        "admin",
        "a-new-admin-password-from-the-operator",
    )
    .await
    .expect("the new password works");
}

async fn admin_again(conductor: &ConductorProcess) -> Conductor {
    conductor.admin().await
}

/// The `jti` of a JWT (its payload decoded without checking it: the test only needs the id).
fn jwt_id(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["jti"].as_str().expect("jti").to_owned()
}

#[tokio::test]
async fn users_are_managed_through_the_api_and_the_last_admin_is_kept() {
    let conductor = TestConductor::start().await;
    let admin = conductor.admin().await;
    let viewer = conductor.viewer().await;
    let me = admin.get_me().send().await.unwrap().into_inner();

    let weak = types::CreateUserRequest {
        username: "bob".into(),
        role: Role::Viewer,
        password: "short".into(),
    };
    expect_api_error(
        failure(admin.create_user().body(weak).send().await),
        400,
        "weak_password",
    );
    let bad = types::CreateUserRequest {
        username: "Bob Smith".into(),
        role: Role::Viewer,
        password: ALICE_PASSWORD.into(),
    };
    expect_api_error(
        failure(admin.create_user().body(bad).send().await),
        400,
        "invalid_username",
    );
    let bob = types::CreateUserRequest {
        username: "bob".into(),
        role: Role::Viewer,
        password: ALICE_PASSWORD.into(),
    };
    expect_api_error(
        failure(viewer.create_user().body(bob.clone()).send().await),
        403,
        "forbidden",
    );
    let created = admin
        .create_user()
        .body(bob.clone())
        .send()
        .await
        .expect("create")
        .into_inner();
    assert_eq!((created.role, created.disabled), (Role::Viewer, false));
    expect_api_error(
        failure(admin.create_user().body(bob).send().await),
        409,
        "user_exists",
    );
    let names: Vec<String> = admin
        .list_users()
        .send()
        .await
        .unwrap()
        .into_inner()
        .users
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["admin", "bob", VIEWER_USERNAME]);

    // Bob, made an admin, logs in with the admin role.
    let promote = types::UpdateUserRequest {
        role: Some(Role::Admin),
        disabled: None,
    };
    admin
        .update_user()
        .id(created.id)
        .body(promote)
        .send()
        .await
        .expect("promote");
    let bob = Conductor::login(&conductor.url, "bob", ALICE_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        bob.get_me().send().await.unwrap().into_inner().role,
        Role::Admin
    );

    // Demoting bob revokes his session (his token says admin).
    let demote = types::UpdateUserRequest {
        role: Some(Role::Viewer),
        disabled: None,
    };
    admin
        .update_user()
        .id(created.id)
        .body(demote)
        .send()
        .await
        .expect("demote");
    expect_api_error(failure(bob.get_me().send().await), 401, "token_revoked");

    // The only admin can be neither disabled, demoted nor deleted.
    let disable = types::UpdateUserRequest {
        disabled: Some(true),
        role: None,
    };
    expect_api_error(
        failure(admin.update_user().id(me.id).body(disable).send().await),
        409,
        "last_admin",
    );
    expect_api_error(
        failure(admin.delete_user().id(me.id).send().await),
        409,
        "last_admin",
    );
    expect_api_error(
        failure(admin.delete_user().id(Uuid::new_v4()).send().await),
        404,
        "user_not_found",
    );

    // Changing one's own password needs the current one.
    let wrong = types::ChangePasswordRequest {
        current_password: "not it".into(),
        new_password: ALICE_PASSWORD.into(),
    };
    expect_api_error(
        failure(viewer.change_password().body(wrong).send().await),
        403,
        "wrong_password",
    );
}

#[tokio::test]
async fn requests_over_the_configured_rate_get_429_with_retry_after_per_address_and_per_caller() {
    let conductor = TestConductor::start_with(|c| {
        c.throttle.per_address = Some(aerekos_common::throttle::Limit {
            per_second: 5,
            burst: 5,
        });
        c.throttle.per_caller = None;
    })
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..20 {
        let resp = http
            .get(format!("{}/health", conductor.url))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && throttled.is_none() {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let body: serde_json::Value = resp.json().await.unwrap();
            throttled = Some((retry, body));
        }
    }
    assert!(
        statuses[..5].iter().all(|s| *s == 200),
        "the burst of 5 passes: {statuses:?}"
    );
    let (retry, body) =
        throttled.unwrap_or_else(|| panic!("20 requests at once over 5/s: {statuses:?}"));
    assert!(retry >= 1, "{retry}");
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = http
        .get(format!("{}/health", conductor.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the bucket refills at the configured rate"
    );

    // Per caller: one token's bucket runs dry, another caller's does not.
    let conductor = TestConductor::start_with(|c| {
        c.throttle.per_address = None;
        c.throttle.per_caller = Some(aerekos_common::throttle::Limit {
            per_second: 3,
            burst: 3,
        });
    })
    .await;
    let admin = conductor.admin().await;
    let viewer = conductor.viewer().await;
    let mut refused = None;
    for _ in 0..10 {
        if let Err(e) = admin.list_workers().send().await {
            refused = Some(SdkError::from(e));
            break;
        }
    }
    expect_api_error(
        refused.expect("the admin's token is throttled"),
        429,
        "rate_limited",
    );
    viewer
        .list_workers()
        .send()
        .await
        .expect("another caller is not throttled");
}

/// A client whose connections come from `source` (any 127.x address is this machine).
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .build()
        .unwrap()
}

async fn login_status(
    http: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
) -> (u16, Option<u64>, String) {
    let resp = http
        .post(format!("{url}/api/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: serde_json::Value = resp.json().await.unwrap();
    (
        status,
        retry,
        body["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn failed_logins_back_off_per_username_and_address_without_locking_the_user_out_elsewhere() {
    let conductor = TestConductor::start().await;
    let attacker = client_from([127, 0, 0, 2]);
    let colleague = client_from([127, 0, 0, 3]);
    for _ in 0..3 {
        assert_eq!(
            login_status(&attacker, &conductor.url, "admin", "guess")
                .await
                .0,
            401
        );
    }
    assert_eq!(
        login_status(&attacker, &conductor.url, "admin", "guess")
            .await
            .0,
        401,
        "the 4th failure is answered, then blocks"
    );
    let (status, retry, code) =
        login_status(&attacker, &conductor.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "login_throttled"),
        "even the right password waits"
    );
    assert!(retry.is_some_and(|r| r >= 1));
    // The same answer for a username that does not exist.
    for _ in 0..4 {
        login_status(&attacker, &conductor.url, "nobody", "guess").await;
    }
    assert_eq!(
        login_status(&attacker, &conductor.url, "nobody", "guess")
            .await
            .2,
        "login_throttled"
    );
    // The real admin, from another address, is not locked out.
    let (status, _, code) = login_status(&colleague, &conductor.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{code}");
}

#[tokio::test]
async fn the_dashboard_carries_a_strict_csp_and_foreign_origins_get_no_cors() {
    let conductor = TestConductor::start().await;
    let http = reqwest::Client::new();
    for path in ["/", "/workers", "/assets/index.js"] {
        let resp = http
            .get(format!("{}{path}", conductor.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self';")
                && !csp.contains("script-src 'self' 'unsafe-inline'"),
            "{path}: {csp}"
        );
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
    // A CORS preflight from another origin is not allowed by the conductor …
    let preflight = |url: String| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let resp = preflight(format!("{}/api/workers", conductor.url))
        .await
        .unwrap();
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        resp.headers()
    );

    // … nor by a worker's API, which allows the conductor's origin (the dashboard) only.
    let dir = tempfile::tempdir().unwrap();
    let mut config = aerekos_worker::WorkerConfig::new(
        conductor.url.clone(),
        conductor.registration_token().await,
        dir.path(),
    );
    config.advertise_ip = aerekos_worker::AdvertiseIp::Fixed(IpAddr::from([127, 0, 0, 1]));
    config.docker = false;
    config.api_bind = Some("127.0.0.1:0".parse().unwrap());
    let worker = aerekos_worker::start(config).await.expect("worker starts");
    tokio::time::timeout(Duration::from_secs(10), worker.joined())
        .await
        .expect("worker joins");
    let api = worker.api_url().expect("worker API");
    let resp = preflight(format!("{api}/api/worker/instances"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{api}/api/worker/instances"),
        )
        .header("origin", conductor.url.replace("127.0.0.1", "localhost"))
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        conductor.url.replace("127.0.0.1", "localhost")
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn the_audit_trail_records_who_changed_what_and_what_was_refused() {
    let conductor = TestConductor::start().await;
    let admin = conductor.admin().await;
    let viewer = conductor.viewer().await;
    let bob = types::CreateUserRequest {
        username: "bob".into(),
        role: Role::Viewer,
        password: ALICE_PASSWORD.into(),
    };
    let created = admin
        .create_user()
        .body(bob.clone())
        .send()
        .await
        .unwrap()
        .into_inner();
    failure(viewer.create_user().body(bob).send().await);
    let _ = Conductor::login(&conductor.url, "mallory", "guess").await;
    admin.delete_user().id(created.id).send().await.unwrap();
    admin.get_registration_token().send().await.unwrap();
    admin.list_workers().send().await.unwrap();

    let page = admin.list_audit_events().send().await.unwrap().into_inner();
    let seen: Vec<(String, String, u16)> = page
        .events
        .iter()
        .map(|e| (e.actor.clone(), e.action.clone(), e.status))
        .collect();
    let expect = [
        ("user:admin", "get_registration_token", 200),
        ("user:admin", "delete_user", 200),
        ("user:mallory", "login", 401),
        ("user:vera", "create_user", 403),
        ("user:admin", "create_user", 200),
    ];
    for (i, (actor, action, status)) in expect.iter().enumerate() {
        assert_eq!(
            seen[i],
            ((*actor).into(), (*action).into(), *status),
            "newest first: {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|(_, a, _)| a == "list_workers"),
        "plain reads are not changes: {seen:?}"
    );
    assert!(
        page.events
            .iter()
            .all(|e| !e.request_id.is_empty() && e.client_ip.as_deref() == Some("127.0.0.1"))
    );
    assert_eq!(page.events[1].target, format!("/api/users/{}", created.id));

    let refused = admin
        .list_audit_events()
        .failed(true)
        .send()
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        refused.iter().all(|e| e.status >= 400) && refused.len() >= 2,
        "{refused:?}"
    );
    let first = admin
        .list_audit_events()
        .limit(2)
        .send()
        .await
        .unwrap()
        .into_inner();
    let next = admin
        .list_audit_events()
        .limit(2)
        .before(first.next_before.expect("more"))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.events[0].id, page.events[2].id, "pages follow on");
    expect_api_error(
        failure(viewer.list_audit_events().send().await),
        403,
        "forbidden",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_the_sdk_and_the_cli_trust_only_the_pinned_cluster_ca() {
    let s3_edge_port = free_port().to_string();
    let mut conductor = ConductorProcess::start_with(&[
        ("CONDUCTOR_TLS", "on"),
        ("CONDUCTOR_S3_PORT", &s3_edge_port),
    ])
    .await;
    assert!(conductor.url.starts_with("https://"));
    let pin = conductor.ca_pin();
    let admin = conductor.admin().await;
    let served = admin.get_tls_ca().send().await.unwrap().into_inner();
    assert_eq!(
        served.fingerprint.as_deref(),
        Some(pin.as_str()),
        "the conductor names the fingerprint clients compute"
    );
    let page = conductor
        .trust()
        .apply(reqwest::Client::builder())
        .build()
        .unwrap()
        .get(&conductor.url)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000",
        "HSTS with TLS on"
    );

    // A worker with the right pin joins over TLS, and the service it runs trusts the conductor too
    // (key_manager fetches the conductor's keys over https with the CA the worker hands it).
    let worker = WorkerProcess::start_with(&conductor, "pinned", &[("CONDUCTOR_CA_PIN", &pin)]);
    let worker_id = worker.id().await;
    wait_for_worker(&admin, worker_id, WorkerStatus::Live, 30).await;
    for service in ["key_manager", "storage_manager"] {
        admin.enable_service().name(service).send().await.unwrap();
    }
    let kms_address = instance_url(&admin, "key_manager")
        .await
        .trim_start_matches("http://")
        .to_owned();
    let s3_address = instance_url(&admin, "storage_manager")
        .await
        .trim_start_matches("http://")
        .to_owned();
    let kms = KeyManager::with_trust(
        &conductor.url,
        aerekos_sdk::Transport::new().with_token(admin.token().unwrap()),
        &conductor.trust(),
    );
    kms.list_keys()
        .send()
        .await
        .expect("key_manager through the gateway over TLS");

    // Instance traffic is TLS too: the gateway reaches the instances over HTTPS (the registry says
    // so), the instances and the worker API present certificates of the cluster CA, and plain
    // HTTP to them gets no answer.
    let mut urls = vec![];
    for service in ["key_manager", "storage_manager"] {
        let endpoints = admin
            .get_registry()
            .service(service)
            .send()
            .await
            .unwrap()
            .into_inner()
            .endpoints;
        urls.extend(endpoints.into_iter().map(|e| e.url));
    }
    assert!(
        urls.len() == 2 && urls.iter().all(|u| u.starts_with("https://")),
        "{urls:?}"
    );
    let trusting = conductor
        .trust()
        .apply(reqwest::Client::builder())
        .build()
        .unwrap();
    let plain = reqwest::Client::new();
    let worker_api = admin
        .get_worker()
        .id(worker_id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .api_url
        .expect("worker API");
    assert!(worker_api.starts_with("https://"), "{worker_api}");
    for base in [
        format!("https://{kms_address}"),
        format!("https://{s3_address}"),
        worker_api.clone(),
    ] {
        let resp = trusting
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{base}: {e:?}"));
        assert!(resp.status().is_success(), "{base}");
        let refused = reqwest::Client::new()
            .get(format!("{base}/health"))
            .send()
            .await;
        assert!(
            refused.is_err(),
            "{base} must not be believed without the cluster CA"
        );
        let plain_answer = plain
            .get(format!(
                "{}/health",
                base.replacen("https://", "http://", 1)
            ))
            .send()
            .await;
        assert!(
            plain_answer
                .map(|r| r.status().is_success())
                .unwrap_or(false)
                == false,
            "{base} answers plain HTTP"
        );
    }
    let instances = WorkerAgent::with_trust(
        &worker_api,
        aerekos_sdk::Transport::new().with_token(admin.token().unwrap()),
        &conductor.trust(),
    )
    .list_instances()
    .send()
    .await
    .expect("the worker API over TLS")
    .into_inner();
    assert!(instances.len() >= 2, "{instances:?}");

    // S3 over TLS: the conductor's S3 edge presents the cluster's certificate. The AWS CLI given
    // the CA bundle works through it; without the bundle, or in plain HTTP, it gets nowhere.
    let storage = StorageManager::with_trust(
        &conductor.url,
        aerekos_sdk::Transport::new().with_token(admin.token().unwrap()),
        &conductor.trust(),
    );
    let access_key = storage
        .create_access_key()
        .body_map(|b| b.description("S3 over TLS"))
        .send()
        .await
        .expect("an access key")
        .into_inner();
    let s3_dir = tempfile::tempdir().unwrap();
    let ca_file = s3_dir.path().join("cluster-ca.pem");
    std::fs::write(&ca_file, conductor.ca_pem.as_deref().unwrap()).unwrap();
    std::fs::write(s3_dir.path().join("object.txt"), b"sealed in transit").unwrap();
    let aws = |endpoint: &str, bundle: Option<&std::path::Path>, args: &[&str]| {
        let mut command = aws_command(
            endpoint,
            &access_key.id,
            access_key.secret.as_deref().unwrap(),
            s3_dir.path(),
        );
        command.args(["--cli-read-timeout", "10", "--cli-connect-timeout", "5"]);
        if let Some(bundle) = bundle {
            command.arg("--ca-bundle").arg(bundle);
        }
        // The machine's own bundle is not the cluster's: only what --ca-bundle says is believed.
        let out = command
            .args(args)
            .env_remove("AWS_CA_BUNDLE")
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running {} (cargo xtask test installs it): {e}",
                    aws_cli().display()
                )
            });
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let edge = format!("https://127.0.0.1:{s3_edge_port}");
    let object = s3_dir.path().join("object.txt");
    let (ok, out) = aws(&edge, Some(&ca_file), &["s3", "mb", "s3://tls-bucket"]);
    assert!(ok, "{out}");
    let (ok, out) = aws(
        &edge,
        Some(&ca_file),
        &[
            "s3",
            "cp",
            "--no-progress",
            object.to_str().unwrap(),
            "s3://tls-bucket/object.txt",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = aws(&edge, Some(&ca_file), &["s3", "ls", "s3://tls-bucket/"]);
    assert!(ok && out.contains("object.txt"), "{out}");
    let (ok, out) = aws(&edge, None, &["s3", "ls", "s3://tls-bucket/"]);
    assert!(
        !ok && out.contains("CERTIFICATE_VERIFY_FAILED"),
        "without the cluster CA the edge is not believed: {out}"
    );
    let (ok, out) = aws(
        &format!("http://127.0.0.1:{s3_edge_port}"),
        None,
        &["s3", "ls", "s3://tls-bucket/"],
    );
    assert!(
        !ok && !out.contains("object.txt"),
        "plain HTTP to the edge gets no listing: {out}"
    );

    // A wrong pin: the worker refuses the conductor and stops, naming both fingerprints.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let mut refused =
        WorkerProcess::start_with(&conductor, "wrong-pin", &[("CONDUCTOR_CA_PIN", &wrong)]);
    let status = refused
        .exited(30)
        .await
        .expect("a worker with a wrong pin stops");
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("not the pinned") && log.contains(&pin),
        "{log}"
    );
    assert!(
        !refused.dir.path().join("identity.json").exists(),
        "it never registered"
    );

    // The CLI logs in with the pin.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("cli");
    let login = [
        "login",
        "--url",
        conductor.url.as_str(),
        "--password-stdin",
        "--ca-pin",
        pin.as_str(),
    ];
    let (ok, _, err) = cli(&config, &login, Some(&format!("{ADMIN_PASSWORD}\n")));
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&config, &["workers", "ls"], None);
    assert!(ok && out.contains("pinned"), "{out}{err}");
    let (ok, _, err) = cli(
        &config,
        &[
            "login",
            "--url",
            conductor.url.as_str(),
            "--password-stdin",
            "--ca-pin",
            wrong.as_str(),
        ],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(!ok && err.contains("not the pinned"), "{err}");

    // A man in the middle: an impostor on the conductor's address with a certificate of another CA.
    let port = conductor.url.rsplit(':').next().unwrap().to_owned();
    conductor.kill();
    let impostor =
        ConductorProcess::start_with(&[("CONDUCTOR_TLS", "on"), ("CONDUCTOR_PORT", &port)]).await;
    assert_ne!(impostor.ca_pin(), pin);
    // … refused by the SDK trusting the pinned CA,
    let sdk = Conductor::with_trust(
        &conductor.url,
        aerekos_sdk::Transport::new(),
        &conductor.trust(),
    );
    let err: SdkError = sdk
        .login_as("admin", ADMIN_PASSWORD)
        .await
        .expect_err("the impostor's certificate is refused");
    assert!(err.is_certificate_refused(), "{err}");
    // … by the CLI, saying what it means,
    let (ok, _, err) = cli(&config, &["workers", "ls"], None);
    assert!(
        !ok && err.contains("does not chain to the CA pinned at login") && err.contains(&pin),
        "{err}"
    );
    // … by a worker joining with the pin,
    let mut fooled = WorkerProcess::start_with(
        &impostor,
        "fooled",
        &[
            ("CONDUCTOR_URL", &conductor.url),
            ("CONDUCTOR_CA_PIN", &pin),
        ],
    );
    assert!(
        fooled.exited(30).await.is_some_and(|s| !s.success()),
        "{}",
        fooled.log()
    );
    assert!(
        fooled.log().contains("not the pinned"),
        "it stops because the CA is not the pinned one: {}",
        fooled.log()
    );
    // … and by the worker that joined before, which keeps the CA it pinned.
    eventually(
        30,
        "the joined worker refuses the impostor's certificate",
        || async {
            let log = worker.log();
            (log.contains("UnknownIssuer") || log.contains("invalid peer certificate"))
                .then_some(())
        },
    )
    .await;
}

/// Plain HTTP where other machines reach it takes the explicit opt-out, for the conductor and for
/// a worker of a plain conductor alike; with the opt-out each starts and says so loudly.
#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_an_address_other_machines_reach_needs_the_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let command = |args: &[&str], env: &[(&str, String)]| {
        let mut c = std::process::Command::new(aerekos_bin());
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        c
    };
    let port = free_port();
    let conductor_env = |extra: &[(&'static str, &str)]| {
        let mut env = vec![
            (
                "DATA_DIR",
                dir.path().join("conductor").display().to_string(),
            ),
            ("CONDUCTOR_HOST", "0.0.0.0".to_owned()),
            ("CONDUCTOR_PORT", port.to_string()),
            ("CONDUCTOR_S3_PORT", "off".to_owned()),
            ("CONDUCTOR_TLS", "off".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let out = command(&["conductor"], &conductor_env(&[]))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("AEREKOS_ALLOW_PLAIN_HTTP")
            && text.contains("CONDUCTOR_TLS"),
        "{text}"
    );

    // With the opt-out it serves plain HTTP, and its log says so.
    let log_path = dir.path().join("conductor.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut conductor = command(
        &["conductor"],
        &conductor_env(&[("AEREKOS_ALLOW_PLAIN_HTTP", "yes")]),
    )
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap();
    let plain = reqwest::Client::new();
    eventually(30, "the opted-out conductor answers plain HTTP", || async {
        plain
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    let _ = conductor.kill();
    let _ = conductor.wait();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.contains("PLAIN HTTP"), "{logged}");

    // A worker of a plain conductor: its API on every interface is refused, naming what to set …
    let worker_api_port = free_port();
    let worker_env = |extra: &[(&'static str, &str)]| {
        let mut env = vec![
            ("CONDUCTOR_URL", format!("http://127.0.0.1:{}", free_port())),
            ("CONDUCTOR_TOKEN", "unused".to_owned()),
            ("DATA_DIR", dir.path().join("worker").display().to_string()),
            ("WORKER_API_HOST", "0.0.0.0".to_owned()),
            ("WORKER_API_PORT", worker_api_port.to_string()),
            ("WORKER_DOCKER", "off".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let out = command(&["worker"], &worker_env(&[])).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("AEREKOS_ALLOW_PLAIN_HTTP")
            && text.contains("WORKER_API_HOST"),
        "{text}"
    );
    // … and with the opt-out it starts (and keeps trying to reach the conductor), saying so.
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut worker = command(
        &["worker"],
        &worker_env(&[("AEREKOS_ALLOW_PLAIN_HTTP", "yes")]),
    )
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap();
    eventually(
        30,
        "the opted-out worker warns that it serves plain HTTP",
        || async {
            std::fs::read_to_string(&log_path)
                .ok()?
                .contains("PLAIN HTTP")
                .then_some(())
        },
    )
    .await;
    eventually(
        30,
        "the opted-out worker's API answers plain HTTP on every interface",
        || async {
            plain
                .get(format!("http://127.0.0.1:{worker_api_port}/health"))
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        },
    )
    .await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the opted-out worker keeps running"
    );
    let _ = worker.kill();
    let _ = worker.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_do_only_what_their_scopes_grant_and_are_revoked_everywhere() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    let worker = WorkerProcess::start(&conductor, "worker-a");
    wait_for_worker(&admin, worker.id().await, WorkerStatus::Live, 30).await;
    for service in ["key_manager", "storage_manager"] {
        admin.enable_service().name(service).send().await.unwrap();
    }
    let kms_direct = instance_url(&admin, "key_manager").await;
    let s3_direct = instance_url(&admin, "storage_manager").await;
    let token = admin.token().unwrap();
    let kms_admin = KeyManager::with_token(&conductor.url, &token);
    for name in ["payments", "hr"] {
        kms_admin
            .create_key()
            .body_map(|b| b.name(name))
            .send()
            .await
            .expect("create key");
    }
    let s3_admin = StorageManager::with_token(&conductor.url, &token);
    for bucket in ["invoices", "private"] {
        s3_admin
            .create_bucket()
            .body_map(|b| b.name(bucket))
            .send()
            .await
            .expect("create bucket");
        s3_admin
            .put_object()
            .bucket(bucket)
            .key("a.txt")
            .body(b"hello".to_vec())
            .send()
            .await
            .expect("put");
    }

    // Bad scopes are refused with what to fix.
    let bad = types::CreateApiKeyRequest {
        name: "shop".into(),
        scopes: vec!["key_manager:delete:payments".into()],
        expires_in_secs: None,
    };
    let body = expect_api_error(
        failure(admin.create_api_key().body(bad).send().await),
        400,
        "invalid_scope",
    );
    assert!(body.message.contains("encrypt"), "{}", body.message);

    let scopes = vec![
        "key_manager:encrypt:payments".to_owned(),
        "storage_manager:read:invoices".to_owned(),
    ];
    let created = admin
        .create_api_key()
        .body(types::CreateApiKeyRequest {
            name: "shop".into(),
            scopes: scopes.clone(),
            expires_in_secs: None,
        })
        .send()
        .await
        .expect("create API key")
        .into_inner();
    let listed = admin
        .list_tokens()
        .send()
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let entry = listed
        .iter()
        .find(|t| t.id == created.id)
        .expect("the key is listed");
    assert_eq!(
        (entry.kind, &entry.scopes),
        (types::IssuedTokenKind::ApiKey, &scopes)
    );
    // The listing never shows the key itself.
    let listing = serde_json::to_string(&listed).unwrap();
    assert!(
        !listing.contains(&created.key),
        "the key is shown once only"
    );

    // An expiry outside 60 s … 2 years is refused; one of a minute is honoured (checked at the end).
    let expiring = |secs| types::CreateApiKeyRequest {
        name: "brief".into(),
        scopes: scopes.clone(),
        expires_in_secs: Some(secs),
    };
    let body = expect_api_error(
        failure(admin.create_api_key().body(expiring(59)).send().await),
        400,
        "invalid_expiry",
    );
    assert!(body.message.contains("between 60"), "{}", body.message);
    let brief = admin
        .create_api_key()
        .body(expiring(60))
        .send()
        .await
        .expect("a key of a minute")
        .into_inner();
    let brief_made = tokio::time::Instant::now();
    KeyManager::with_token(&kms_direct, &brief.key)
        .encrypt()
        .key("payments")
        .body_map(|b| b.plaintext(b64(b"x")))
        .send()
        .await
        .expect("the brief key works before it expires");

    // Through the gateway and straight to the instances alike.
    for (kms_url, s3_url) in [
        (conductor.url.clone(), conductor.url.clone()),
        (kms_direct.clone(), s3_direct.clone()),
    ] {
        let kms = KeyManager::with_token(&kms_url, &created.key);
        kms.encrypt()
            .key("payments")
            .body_map(|b| b.plaintext(b64(b"4111")))
            .send()
            .await
            .expect("encrypt with payments");
        let err = failure(
            kms.encrypt()
                .key("hr")
                .body_map(|b| b.plaintext(b64(b"x")))
                .send()
                .await,
        );
        let body = expect_api_error(err, 403, "scope_missing");
        assert!(
            body.message.contains("key_manager:encrypt:hr"),
            "{}",
            body.message
        );
        let sealed = kms_admin
            .encrypt()
            .key("payments")
            .body_map(|b| b.plaintext(b64(b"x")))
            .send()
            .await
            .unwrap()
            .into_inner();
        expect_api_error(
            failure(
                kms.decrypt()
                    .key("payments")
                    .body_map(|b| b.ciphertext(sealed.ciphertext))
                    .send()
                    .await,
            ),
            403,
            "scope_missing",
        );
        assert!(
            kms.list_keys()
                .send()
                .await
                .unwrap()
                .into_inner()
                .is_empty(),
            "no read scope: no key is listed"
        );
        expect_api_error(
            failure(kms.create_key().body_map(|b| b.name("mine")).send().await),
            403,
            "forbidden",
        );

        let s3 = StorageManager::with_token(&s3_url, &created.key);
        s3.get_object()
            .bucket("invoices")
            .key("a.txt")
            .send()
            .await
            .expect("read invoices");
        let refused = s3
            .get_object()
            .bucket("private")
            .key("a.txt")
            .send()
            .await
            .map(|_| ())
            .map_err(SdkError::from);
        expect_api_error(
            refused.expect_err("no scope for the bucket"),
            403,
            "scope_missing",
        );
        expect_api_error(
            failure(
                s3.put_object()
                    .bucket("invoices")
                    .key("b.txt")
                    .body(b"x".to_vec())
                    .send()
                    .await,
            ),
            403,
            "scope_missing",
        );
        let buckets: Vec<String> = s3
            .list_buckets()
            .send()
            .await
            .unwrap()
            .into_inner()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(buckets, ["invoices"]);
    }
    // The conductor's own API is not for API keys.
    let as_app = Conductor::with_token(&conductor.url, &created.key);
    expect_api_error(
        failure(as_app.list_workers().send().await),
        403,
        "api_key_not_allowed",
    );

    // Revoked: refused by the gateway and by both services within the bound.
    admin
        .revoke_token()
        .id(&created.id)
        .send()
        .await
        .expect("revoke");
    let deadline = tokio::time::Instant::now() + REVOCATION_BOUND;
    for url in [conductor.url.clone(), kms_direct.clone()] {
        let kms = KeyManager::with_token(&url, &created.key);
        loop {
            match kms
                .encrypt()
                .key("payments")
                .body_map(|b| b.plaintext(b64(b"x")))
                .send()
                .await
                .map_err(SdkError::from)
            {
                Err(SdkError::Api { status: 401, body }) if body.code == "token_revoked" => break,
                other => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{url} still accepts the revoked API key: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let s3 = StorageManager::with_token(&s3_direct, &created.key);
    loop {
        match s3
            .get_object()
            .bucket("invoices")
            .key("a.txt")
            .send()
            .await
            .map_err(SdkError::from)
        {
            Err(SdkError::Api { status: 401, body }) if body.code == "token_revoked" => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "storage_manager still accepts the revoked API key: {:?}",
                other.map(|_| ())
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Expired: past its minute (and the 30 s of clock skew servers allow) it is refused everywhere.
    tokio::time::sleep_until(brief_made + Duration::from_secs(60 + 30 + 2)).await;
    for url in [conductor.url.clone(), kms_direct.clone()] {
        let kms = KeyManager::with_token(&url, &brief.key);
        let err = failure(
            kms.encrypt()
                .key("payments")
                .body_map(|b| b.plaintext(b64(b"x")))
                .send()
                .await,
        );
        expect_api_error(err, 401, "token_expired");
    }
    let refused = StorageManager::with_token(&s3_direct, &brief.key)
        .get_object()
        .bucket("invoices")
        .key("a.txt")
        .send()
        .await;
    expect_api_error(
        refused
            .map(|_| ())
            .map_err(SdkError::from)
            .expect_err("the expired key is refused"),
        401,
        "token_expired",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admins_own_certificate_is_served_and_its_ca_is_in_the_pinned_bundle() {
    // The admin's CA, and a certificate for this host that it issued.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Example Corp CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).display().to_string();
    std::fs::write(path("cert.pem"), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(path("key.pem"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    let conductor = ConductorProcess::start_with(&[
        ("CONDUCTOR_TLS", "on"),
        ("TLS_CERT_FILE", &path("cert.pem")),
        ("TLS_KEY_FILE", &path("key.pem")),
        ("TLS_CA_FILE", &path("ca.pem")),
    ])
    .await;

    // The bundle clients pin holds the cluster CA (workers' and instances' certificates) and the
    // admin's; its fingerprint is computed by the client, and matches the one served.
    let (bundle, fingerprint) = aerekos_sdk::fetch_ca(&conductor.url)
        .await
        .expect("the CA bundle");
    assert!(
        bundle.contains(ca.pem().trim())
            && bundle.contains(conductor.ca_pem.as_deref().unwrap().trim()),
        "{bundle}"
    );
    let trusting = |pem: &str| {
        Conductor::with_trust(
            &conductor.url,
            aerekos_sdk::Transport::new(),
            &aerekos_sdk::Trust::ca_bundle(pem.as_bytes().to_vec()).unwrap(),
        )
    };
    let admin = trusting(&bundle);
    admin
        .login_as("admin", ADMIN_PASSWORD)
        .await
        .expect("a client of the pinned bundle logs in");
    assert_eq!(
        admin
            .get_tls_ca()
            .send()
            .await
            .unwrap()
            .into_inner()
            .fingerprint,
        Some(fingerprint)
    );
    // The conductor presents the admin's certificate: the admin's CA alone is enough, the cluster
    // CA alone is not.
    trusting(&ca.pem())
        .login_as("admin", ADMIN_PASSWORD)
        .await
        .expect("the admin's CA verifies the conductor");
    let err = trusting(conductor.ca_pem.as_deref().unwrap())
        .login_as("admin", ADMIN_PASSWORD)
        .await
        .expect_err("not the cluster CA's");
    assert!(err.is_certificate_refused(), "{err}");
}
