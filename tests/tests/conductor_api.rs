//! The conductor's core API, end to end through the Rust SDK against a conductor started
//! in-process on 127.0.0.1:0 with a real SQLite file.

use aerekos_common::auth::TokenVerifier;
use aerekos_sdk::{Conductor, Transport, conductor::types};
use aerekos_tests::*;
use uuid::Uuid;

#[tokio::test]
async fn login_succeeds_and_wrong_password_is_401_error_body() {
    let c = TestConductor::start().await;
    let admin = c.admin().await;
    let token = admin.token().expect("token kept after login");
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let err = failure(
        c.anonymous()
            .login()
            .body_map(|b| b.username("admin").password("not-the-password"))
            .send()
            .await,
    );
    let body = expect_api_error(err, 401, "invalid_credentials");
    assert_eq!(body.message, "wrong username or password");

    // An unknown user gets the very same answer: usernames are not revealed.
    let err = failure(
        c.anonymous()
            .login()
            .body_map(|b| b.username("nobody").password("whatever"))
            .send()
            .await,
    );
    expect_api_error(err, 401, "invalid_credentials");
    c.stop().await;
}

#[tokio::test]
async fn me_returns_the_tokens_user() {
    let c = TestConductor::start().await;
    let me = c.admin().await.get_me().send().await.unwrap().into_inner();
    assert_eq!(me.username, "admin");
    assert_eq!(me.role, types::Role::Admin);
    let me = c.viewer().await.get_me().send().await.unwrap().into_inner();
    assert_eq!(me.username, VIEWER_USERNAME);
    assert_eq!(me.role, types::Role::Viewer);
    c.stop().await;
}

#[tokio::test]
async fn missing_or_tampered_tokens_are_401() {
    let c = TestConductor::start().await;
    let err = failure(c.anonymous().list_workers().send().await);
    expect_api_error(err, 401, "unauthorized");

    // A viewer rewrites its token's claims to become admin; the signature no longer matches.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let viewer_token = c.viewer().await.token().unwrap();
    let parts: Vec<&str> = viewer_token.split('.').collect();
    let claims = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    assert!(claims.contains("\"role\":\"viewer\""), "{claims}");
    let forged_claims = b64.encode(claims.replace("\"role\":\"viewer\"", "\"role\":\"admin\""));
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    let err = failure(
        Conductor::with_token(&c.url, forged)
            .regenerate_registration_token()
            .send()
            .await,
    );
    expect_api_error(err, 401, "invalid_token");
    c.stop().await;
}

#[tokio::test]
async fn tokens_verify_with_the_published_public_key() {
    let c = TestConductor::start().await;
    let admin = c.admin().await;
    let jwks = c.anonymous().get_jwks().send().await.unwrap().into_inner();
    assert_eq!(jwks.keys.len(), 1);
    let jwk = &jwks.keys[0];
    assert_eq!(
        (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    let verifier = TokenVerifier::from_ed25519_jwk(&jwk.kid, &jwk.x).unwrap();
    let claims = verifier
        .verify(&admin.token().unwrap())
        .expect("the conductor's token verifies");
    let me = admin.get_me().send().await.unwrap().into_inner();
    assert_eq!(claims.sub, me.id.to_string());
    assert_eq!(claims.role, "admin");
    c.stop().await;
}

#[tokio::test]
async fn viewer_may_read_but_gets_403_on_mutations() {
    let c = TestConductor::start().await;
    let viewer = c.viewer().await;
    viewer
        .list_workers()
        .send()
        .await
        .expect("viewer reads workers");
    viewer
        .list_services()
        .send()
        .await
        .expect("viewer reads services");

    let body = expect_api_error(
        failure(viewer.regenerate_registration_token().send().await),
        403,
        "forbidden",
    );
    assert!(body.message.contains("viewer"), "{body:?}");
    expect_api_error(
        failure(viewer.get_registration_token().send().await),
        403,
        "forbidden",
    );
    expect_api_error(
        failure(viewer.enable_service().name("key_manager").send().await),
        403,
        "forbidden",
    );
    // Nothing changed.
    let svc = viewer
        .get_service()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(!svc.enabled);
    c.stop().await;
}

#[tokio::test]
async fn regenerated_token_replaces_the_old_one_at_registration() {
    let c = TestConductor::start().await;
    let admin = c.admin().await;
    let old = admin
        .get_registration_token()
        .send()
        .await
        .unwrap()
        .into_inner()
        .token;
    let new = admin
        .regenerate_registration_token()
        .send()
        .await
        .unwrap()
        .into_inner()
        .token;
    assert_ne!(old, new);
    assert_eq!(
        admin
            .get_registration_token()
            .send()
            .await
            .unwrap()
            .into_inner()
            .token,
        new
    );

    let anon = c.anonymous();
    let err = failure(
        anon.register_worker()
            .body(register_request(&old, "w1", "10.0.0.1"))
            .send()
            .await,
    );
    expect_api_error(err, 401, "invalid_registration_token");
    let reg = anon
        .register_worker()
        .body(register_request(&new, "w1", "10.0.0.1"))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(reg.created);
    c.stop().await;
}

#[tokio::test]
async fn heartbeat_updates_resources_and_last_seen() {
    let c = TestConductor::start().await;
    let token = c.registration_token().await;
    let reg = c
        .anonymous()
        .register_worker()
        .body(register_request(&token, "w1", "10.0.0.1"))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reg.heartbeat_interval_secs, 10);
    let admin = c.admin().await;
    let before = admin
        .get_worker()
        .id(reg.worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.status, types::WorkerStatus::Live);
    assert_eq!(before.resources.cpu_usage_percent, 12.5);

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let worker = Conductor::with_token(&c.url, reg.worker_credential.clone());
    worker
        .worker_heartbeat()
        .id(reg.worker_id)
        .body(types::HeartbeatRequest {
            resources: resources(77.0, 3 << 30),
            ip_address: None,
        })
        .send()
        .await
        .unwrap();
    let after = admin
        .get_worker()
        .id(reg.worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.resources.cpu_usage_percent, 77.0);
    assert_eq!(after.resources.memory_available_bytes, 3 << 30);
    assert!(
        after.last_heartbeat_at > before.last_heartbeat_at,
        "{:?} !> {:?}",
        after.last_heartbeat_at,
        before.last_heartbeat_at
    );
    assert_eq!(after.ip_address, "10.0.0.1");

    let totals = admin.get_resources().send().await.unwrap().into_inner();
    assert_eq!(
        (
            totals.live_workers,
            totals.cpu_cores,
            totals.memory_available_bytes
        ),
        (1, 8, 3 << 30)
    );

    // A wrong credential, and an unknown worker (which must register again), are told apart.
    let err = failure(
        Conductor::with_token(&c.url, "aerekos_wkr_wrong")
            .worker_heartbeat()
            .id(reg.worker_id)
            .body(types::HeartbeatRequest {
                resources: resources(1.0, 1),
                ip_address: None,
            })
            .send()
            .await,
    );
    expect_api_error(err, 401, "invalid_worker_credential");
    let err = failure(
        worker
            .worker_heartbeat()
            .id(Uuid::new_v4())
            .body(types::HeartbeatRequest {
                resources: resources(1.0, 1),
                ip_address: None,
            })
            .send()
            .await,
    );
    expect_api_error(err, 404, "worker_not_found");
    c.stop().await;
}

#[tokio::test]
async fn reregistering_with_the_same_identity_from_a_new_ip_updates_the_worker() {
    let c = TestConductor::start().await;
    let token = c.registration_token().await;
    let anon = c.anonymous();
    let first = anon
        .register_worker()
        .body(register_request(&token, "w1", "10.0.0.1"))
        .send()
        .await
        .unwrap()
        .into_inner();

    let mut again = register_request(&token, "w1", "10.0.0.99");
    again.worker_id = Some(first.worker_id);
    again.worker_credential = Some(first.worker_credential.clone());
    let second = anon
        .register_worker()
        .body(again.clone())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.worker_id, first.worker_id);
    assert!(!second.created);

    let admin = c.admin().await;
    let page = admin.list_workers().send().await.unwrap().into_inner();
    assert_eq!(page.workers.len(), 1, "no duplicate: {:?}", page.workers);
    assert_eq!(page.workers[0].ip_address, "10.0.0.99");

    // Someone else claiming the id without its credential is refused and changes nothing.
    again.worker_credential = Some("aerekos_wkr_stolen".into());
    again.ip_address = "10.6.6.6".into();
    expect_api_error(
        failure(anon.register_worker().body(again).send().await),
        409,
        "worker_identity_conflict",
    );
    let w = admin
        .get_worker()
        .id(first.worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.ip_address, "10.0.0.99");
    c.stop().await;
}

#[tokio::test]
async fn workers_are_listed_paged_and_fetched_and_unknown_is_404() {
    let c = TestConductor::start().await;
    let token = c.registration_token().await;
    let anon = c.anonymous();
    let mut ids = vec![];
    for i in 0..5 {
        let reg = anon
            .register_worker()
            .body(register_request(&token, &format!("w{i}"), "10.0.0.1"))
            .send()
            .await
            .unwrap();
        ids.push(reg.into_inner().worker_id);
    }
    ids.sort();
    let admin = c.admin().await;
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let mut req = admin.list_workers().limit(2);
        if let Some(cur) = &cursor {
            req = req.cursor(cur.clone());
        }
        let page = req.send().await.unwrap().into_inner();
        assert!(page.workers.len() <= 2);
        seen.extend(page.workers.iter().map(|w| w.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every worker once, in id order");

    let live = admin
        .list_workers()
        .status(types::WorkerStatus::Live)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.workers.len(), 5);
    let lost = admin
        .list_workers()
        .status(types::WorkerStatus::Lost)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(lost.workers.is_empty());

    let one = admin
        .get_worker()
        .id(ids[3])
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.id, ids[3]);
    assert_eq!(one.labels.get("zone").map(String::as_str), Some("rack-1"));

    let missing = Uuid::new_v4();
    let body = expect_api_error(
        failure(admin.get_worker().id(missing).send().await),
        404,
        "worker_not_found",
    );
    assert!(body.message.contains(&missing.to_string()));
    expect_api_error(
        failure(admin.list_workers().limit(0).send().await),
        400,
        "invalid_limit",
    );

    admin.delete_worker().id(ids[0]).send().await.unwrap();
    expect_api_error(
        failure(admin.get_worker().id(ids[0]).send().await),
        404,
        "worker_not_found",
    );
    c.stop().await;
}

#[tokio::test]
async fn invalid_registration_fields_are_400_with_a_message() {
    let c = TestConductor::start().await;
    let token = c.registration_token().await;
    let anon = c.anonymous();
    let body = expect_api_error(
        failure(
            anon.register_worker()
                .body(register_request(&token, "w1", "not-an-ip"))
                .send()
                .await,
        ),
        400,
        "invalid_ip_address",
    );
    assert!(body.message.contains("not-an-ip"));
    let mut req = register_request(&token, "w1", "10.0.0.1");
    req.resources.memory_available_bytes = req.resources.memory_total_bytes + 1;
    expect_api_error(
        failure(anon.register_worker().body(req).send().await),
        400,
        "invalid_resources",
    );
    let mut req = register_request(&token, "w1", "10.0.0.1");
    req.labels.insert("bad key!".into(), "x".into());
    expect_api_error(
        failure(anon.register_worker().body(req).send().await),
        400,
        "invalid_labels",
    );
    c.stop().await;
}

#[tokio::test]
async fn an_over_large_body_is_413_error_body() {
    let c = TestConductor::start_with(|config| config.max_body_bytes = 64 * 1024).await;
    let token = c.registration_token().await;
    let mut req = register_request(&token, "w1", "10.0.0.1");
    req.name = Some("x".repeat(100 * 1024));
    let err = failure(c.anonymous().register_worker().body(req).send().await);
    let body = expect_api_error(err, 413, "payload_too_large");
    assert!(body.message.contains("65536"), "{body:?}");
    let admin = c.admin().await;
    assert!(
        admin
            .list_workers()
            .send()
            .await
            .unwrap()
            .into_inner()
            .workers
            .is_empty(),
        "nothing half-written"
    );
    c.stop().await;
}

#[tokio::test]
async fn the_callers_request_id_is_echoed_in_errors() {
    let c = TestConductor::start().await;
    let client = Conductor::with_transport(
        &c.url,
        Transport::new().with_request_id_source(|| Some("trace-me-42".to_owned())),
    );
    let body = expect_api_error(
        failure(client.list_workers().send().await),
        401,
        "unauthorized",
    );
    assert_eq!(body.request_id, "trace-me-42");
    c.stop().await;
}

#[tokio::test]
async fn service_catalog_enable_disable_and_deployments() {
    let c = TestConductor::start().await;
    let admin = c.admin().await;
    let services = admin.list_services().send().await.unwrap().into_inner();
    let names: Vec<_> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "key_manager",
            "logs_manager",
            "metrics_manager",
            "secrets_manager",
            "storage_manager"
        ]
    );
    assert!(services.iter().all(|s| !s.enabled
        && s.builtin
        && s.default_resources.memory_mb > 0
        && s.health_path == "/health"));
    for sealing in services
        .iter()
        .filter(|s| ["secrets_manager", "storage_manager"].contains(&s.name.as_str()))
    {
        assert_eq!(
            sealing.depends_on,
            ["key_manager"],
            "{} encrypts through key_manager",
            sealing.name
        );
    }
    // logs_manager keeps its lines as they came, metrics_manager its samples: they need no
    // other service.
    for name in ["logs_manager", "metrics_manager"] {
        assert!(
            services
                .iter()
                .any(|s| s.name == name && s.depends_on.is_empty())
        );
    }

    // A service of one's own that needs key_manager: enabling it brings key_manager along; with no
    // worker yet, both wait for one.
    let app = types::ServiceDefinition::builder()
        .name("vault_app")
        .command(vec!["vault-app".to_owned()])
        .depends_on(vec!["key_manager".to_owned()]);
    let defined = admin
        .define_service()
        .body(app)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(!defined.builtin && !defined.enabled && !defined.stateful);
    let s = admin
        .enable_service()
        .name("vault_app")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(s.enabled);
    assert_eq!(s.waiting_for, ["key_manager"]);
    assert!(s.problem.unwrap_or_default().contains("no live worker"));
    let km = admin
        .get_service()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(km.enabled);
    assert_eq!(km.deployment.map(|d| d.replicas), Some(1));

    // key_manager cannot go while vault_app needs it; vault_app cannot be removed while enabled.
    let body = expect_api_error(
        failure(admin.disable_service().name("key_manager").send().await),
        409,
        "service_has_dependents",
    );
    assert!(body.message.contains("vault_app"));
    expect_api_error(
        failure(admin.remove_service().name("vault_app").send().await),
        409,
        "service_enabled",
    );
    expect_api_error(
        failure(admin.remove_service().name("key_manager").send().await),
        409,
        "service_builtin",
    );
    admin
        .disable_service()
        .name("vault_app")
        .send()
        .await
        .unwrap();
    admin
        .remove_service()
        .name("vault_app")
        .send()
        .await
        .unwrap();
    expect_api_error(
        failure(admin.get_service().name("vault_app").send().await),
        404,
        "service_not_found",
    );
    let km = admin
        .disable_service()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(!km.enabled);

    let deployment = admin
        .get_deployment()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(deployment.instances.is_empty() && !deployment.enabled);
    let body = expect_api_error(
        failure(admin.get_service().name("nope").send().await),
        404,
        "service_not_found",
    );
    assert!(body.message.contains("key_manager"));
    c.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_users_workers_token_and_catalog_state() {
    let mut c = TestConductor::start().await;
    let admin = c.admin().await;
    let token = admin
        .regenerate_registration_token()
        .send()
        .await
        .unwrap()
        .into_inner()
        .token;
    let reg = c
        .anonymous()
        .register_worker()
        .body(register_request(&token, "w1", "10.0.0.1"))
        .send()
        .await
        .unwrap()
        .into_inner();
    admin
        .enable_service()
        .name("key_manager")
        .send()
        .await
        .unwrap();
    let jwks_before = c.anonymous().get_jwks().send().await.unwrap().into_inner();
    // A heartbeat just before the restart (written behind) is not lost by a clean shutdown.
    Conductor::with_token(&c.url, reg.worker_credential.clone())
        .worker_heartbeat()
        .id(reg.worker_id)
        .body(types::HeartbeatRequest {
            resources: resources(66.0, 7 << 30),
            ip_address: Some("10.0.0.7".into()),
        })
        .send()
        .await
        .unwrap();

    c.restart().await;

    let admin_after = c.admin().await;
    c.viewer().await;
    assert_eq!(
        admin_after
            .get_registration_token()
            .send()
            .await
            .unwrap()
            .into_inner()
            .token,
        token
    );
    let w = admin_after
        .get_worker()
        .id(reg.worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.hostname, "w1");
    assert_eq!(
        (w.ip_address.as_str(), w.resources.cpu_usage_percent),
        ("10.0.0.7", 66.0)
    );
    assert!(
        admin_after
            .get_service()
            .name("key_manager")
            .send()
            .await
            .unwrap()
            .into_inner()
            .enabled
    );
    // Tokens issued before the restart still verify: the signing key persisted.
    let old_session = Conductor::with_token(&c.url, admin.token().unwrap());
    old_session
        .get_me()
        .send()
        .await
        .expect("pre-restart token still valid");
    assert_eq!(
        c.anonymous()
            .get_jwks()
            .send()
            .await
            .unwrap()
            .into_inner()
            .keys[0]
            .x,
        jwks_before.keys[0].x
    );
    // The worker's credential survived too.
    Conductor::with_token(&c.url, reg.worker_credential)
        .worker_heartbeat()
        .id(reg.worker_id)
        .body(types::HeartbeatRequest {
            resources: resources(5.0, 1 << 30),
            ip_address: Some("10.0.0.2".into()),
        })
        .send()
        .await
        .unwrap();
    c.stop().await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let c = TestConductor::start().await;
    let anon = c.anonymous();
    assert_eq!(
        anon.health().send().await.unwrap().into_inner().status,
        "ok"
    );
    assert_eq!(
        anon.ready().send().await.unwrap().into_inner().status,
        "ready"
    );
    let _ = anon.list_workers().send().await; // a 401, counted
    let mut stream = anon
        .metrics()
        .send()
        .await
        .unwrap()
        .into_inner()
        .into_inner();
    let mut body = String::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        body.contains("aerekos_http_requests_total{operation=\"list_workers\",status=\"401\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("aerekos_http_requests_total{operation=\"health\",status=\"200\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("aerekos_workers{status=\"live\"} 0"),
        "{body}"
    );
    c.stop().await;
}

#[tokio::test]
async fn admins_issue_service_tokens_that_services_can_verify() {
    let c = TestConductor::start().await;
    let admin = c.admin().await;
    let issued = admin
        .create_service_token()
        .body_map(|b| b.service("storage_manager").expires_in_secs(Some(3600)))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.service, "storage_manager");
    let jwk = c
        .anonymous()
        .get_jwks()
        .send()
        .await
        .unwrap()
        .into_inner()
        .keys
        .remove(0);
    let claims = TokenVerifier::from_ed25519_jwk(&jwk.kid, &jwk.x)
        .unwrap()
        .verify(&issued.token)
        .unwrap();
    let caller = aerekos_common::auth::Caller::from_claims(&claims).unwrap();
    assert_eq!(
        caller,
        aerekos_common::auth::Caller::Service {
            name: "storage_manager".into()
        }
    );
    assert_eq!(caller.actor(), "service:storage_manager");

    // A service token is not a user token: the conductor's user API refuses it.
    let err = failure(
        Conductor::with_token(&c.url, issued.token)
            .list_workers()
            .send()
            .await,
    );
    expect_api_error(err, 403, "service_token_not_allowed");
    let err = failure(
        c.viewer()
            .await
            .create_service_token()
            .body_map(|b| b.service("x"))
            .send()
            .await,
    );
    expect_api_error(err, 403, "forbidden");
    let err = failure(
        admin
            .create_service_token()
            .body_map(|b| b.service("Bad Name"))
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_service");
    c.stop().await;
}

fn command_spec(cmd: &[&str]) -> types::InstanceSpec {
    types::InstanceSpec {
        image: None,
        command: cmd.iter().map(|s| (*s).to_owned()).collect(),
        env: Default::default(),
        ports: vec![],
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
async fn instances_are_assigned_fetched_by_their_worker_and_reported() {
    let c = TestConductor::start().await;
    let token = c.registration_token().await;
    let anon = c.anonymous();
    let w1 = anon
        .register_worker()
        .body(register_request(&token, "w1", "10.0.0.1"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let w2 = anon
        .register_worker()
        .body(register_request(&token, "w2", "10.0.0.2"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let admin = c.admin().await;

    let inst = admin
        .create_instance()
        .id(w1.worker_id)
        .body_map(|b| {
            b.service(Some("key_manager".to_owned()))
                .spec(command_spec(&["sleep", "60"]))
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (inst.state, inst.desired_state),
        (types::InstanceState::Pending, types::DesiredState::Running)
    );

    // The worker sees it with its own credential; another worker's credential does not open it.
    let worker1 = Conductor::with_token(&c.url, w1.worker_credential.clone());
    let assigned = worker1
        .get_assignments()
        .id(w1.worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        assigned.instances.iter().map(|i| i.id).collect::<Vec<_>>(),
        [inst.id]
    );
    let worker2 = Conductor::with_token(&c.url, w2.worker_credential.clone());
    expect_api_error(
        failure(worker2.get_assignments().id(w1.worker_id).send().await),
        401,
        "invalid_worker_credential",
    );
    assert!(
        worker2
            .get_assignments()
            .id(w2.worker_id)
            .send()
            .await
            .unwrap()
            .into_inner()
            .instances
            .is_empty()
    );

    worker1
        .report_instance_status()
        .id(w1.worker_id)
        .instance_id(inst.id)
        .body_map(|b| {
            b.state(types::InstanceState::Running)
                .address(Some("10.0.0.1:9000".into()))
                .restarts(2)
        })
        .send()
        .await
        .unwrap();
    let seen = admin
        .get_instance()
        .instance_id(inst.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (seen.state, seen.address.as_deref(), seen.restarts),
        (types::InstanceState::Running, Some("10.0.0.1:9000"), 2)
    );
    let deployment = admin
        .get_deployment()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        deployment
            .instances
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        [inst.id]
    );

    // Its worker gets a service token for it (how platform services call each other); the token
    // verifies as key_manager's and is nowhere in what users read. Another worker gets none.
    let issued = worker1
        .issue_instance_service_token()
        .id(w1.worker_id)
        .instance_id(inst.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.service, "key_manager");
    let jwk = c
        .anonymous()
        .get_jwks()
        .send()
        .await
        .unwrap()
        .into_inner()
        .keys
        .remove(0);
    let claims = TokenVerifier::from_ed25519_jwk(&jwk.kid, &jwk.x)
        .unwrap()
        .verify(&issued.token)
        .expect("a conductor-signed token");
    assert_eq!(
        (claims.role.as_str(), claims.name.as_str()),
        ("service", "key_manager")
    );
    assert!(
        !serde_json::to_string(&seen)
            .unwrap()
            .contains(&issued.token)
    );
    let err = failure(
        worker2
            .issue_instance_service_token()
            .id(w2.worker_id)
            .instance_id(inst.id)
            .send()
            .await,
    );
    expect_api_error(err, 404, "instance_not_found");
    let plain = admin
        .create_instance()
        .id(w1.worker_id)
        .body_map(|b| b.spec(command_spec(&["sleep", "60"])))
        .send()
        .await
        .unwrap()
        .into_inner();
    let err = failure(
        worker1
            .issue_instance_service_token()
            .id(w1.worker_id)
            .instance_id(plain.id)
            .send()
            .await,
    );
    expect_api_error(err, 403, "service_token_not_allowed");
    let err = failure(
        admin
            .issue_instance_service_token()
            .id(w1.worker_id)
            .instance_id(inst.id)
            .send()
            .await,
    );
    expect_api_error(err, 401, "invalid_worker_credential");
    admin
        .delete_instance()
        .instance_id(plain.id)
        .send()
        .await
        .unwrap();

    // A report about an instance that is not the worker's says so (the worker then stops it).
    let err = failure(
        worker2
            .report_instance_status()
            .id(w2.worker_id)
            .instance_id(inst.id)
            .body_map(|b| b.state(types::InstanceState::Running).restarts(0))
            .send()
            .await,
    );
    expect_api_error(err, 404, "instance_not_found");

    // Invalid specs, unknown workers and viewers are refused.
    let mut empty = command_spec(&["x"]);
    empty.command = vec![];
    let err = failure(
        admin
            .create_instance()
            .id(w1.worker_id)
            .body_map(|b| b.spec(empty))
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_spec");
    let err = failure(
        admin
            .create_instance()
            .id(Uuid::new_v4())
            .body_map(|b| b.spec(command_spec(&["true"])))
            .send()
            .await,
    );
    expect_api_error(err, 404, "worker_not_found");
    let viewer = c.viewer().await;
    let err = failure(
        viewer
            .create_instance()
            .id(w1.worker_id)
            .body_map(|b| b.spec(command_spec(&["true"])))
            .send()
            .await,
    );
    expect_api_error(err, 403, "forbidden");

    admin
        .delete_instance()
        .instance_id(inst.id)
        .send()
        .await
        .unwrap();
    let after = worker1
        .get_assignments()
        .id(w1.worker_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(after.instances.is_empty());
    assert!(after.version > assigned.version, "removal is a new version");

    // A worker waiting on its version hears of a new assignment as soon as it is made.
    let waiting = tokio::spawn({
        let worker1 = worker1.clone();
        let id = w1.worker_id;
        let known = after.version;
        async move {
            let started = std::time::Instant::now();
            let next = worker1
                .get_assignments()
                .id(id)
                .after_version(known)
                .wait_secs(30)
                .send()
                .await
                .unwrap()
                .into_inner();
            (next, started.elapsed())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let new = admin
        .create_instance()
        .id(w1.worker_id)
        .body_map(|b| b.spec(command_spec(&["true"])))
        .send()
        .await
        .unwrap()
        .into_inner();
    let (next, waited) = waiting.await.unwrap();
    assert_eq!(
        next.instances.iter().map(|i| i.id).collect::<Vec<_>>(),
        [new.id]
    );
    assert!(next.version > after.version);
    assert!(
        waited < std::time::Duration::from_secs(30),
        "answered on the change, not at the end of the wait"
    );
    let err = failure(
        worker1
            .get_assignments()
            .id(w1.worker_id)
            .after_version(0)
            .wait_secs(61)
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_wait");
    c.stop().await;
}
