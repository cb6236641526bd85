//! secrets_manager end to end, through the SDK: a conductor and key_manager in this process, the
//! service as its own process (`aerekos service secrets-manager`) with its own data directory, so
//! it can be killed with SIGKILL and started again.

use aerekos_sdk::{
    Conductor, SecretsManager,
    secrets_manager::types::{MoveLabelRequest, PutValueRequest, SecretValue, UpdateSecretRequest},
};
use aerekos_tests::*;
use base64::{Engine as _, engine::general_purpose::STANDARD};

struct Env {
    conductor: TestConductor,
    key_manager: TestKeyManager,
    service: TestService,
    admin: Conductor,
    secrets: SecretsManager,
}

async fn env() -> Env {
    let conductor = TestConductor::start().await;
    let key_manager = TestKeyManager::start(&conductor).await;
    // A day of a recovery window is a second here, the sweep runs every second, and an unwrapped
    // data key is kept for DATA_KEY_CACHE_SECS.
    let env = [
        ("DELETION_DAY_SECS", "1"),
        ("SWEEP_INTERVAL_SECS", "1"),
        ("DATA_KEY_CACHE_SECS", "3"),
    ];
    let service =
        TestService::start_with(&SECRETS_MANAGER, &conductor, &key_manager.url, None, &env).await;
    let admin = conductor.admin().await;
    let secrets = service.secrets_client(admin.token().unwrap());
    Env {
        conductor,
        key_manager,
        service,
        admin,
        secrets,
    }
}

fn bytes(value: &[u8]) -> SecretValue {
    secret_bytes(value)
}

fn json(value: serde_json::Value) -> SecretValue {
    SecretValue {
        bytes: None,
        json: value.as_object().unwrap().clone(),
    }
}

fn text_of(value: &SecretValue) -> Vec<u8> {
    STANDARD
        .decode(value.bytes.as_deref().expect("a bytes value"))
        .unwrap()
}

fn put(value: SecretValue, cas: Option<u64>) -> PutValueRequest {
    PutValueRequest {
        value,
        cas,
        labels: vec![],
    }
}

async fn read(s: &SecretsManager, name: &str) -> (u64, Vec<u8>) {
    let got = s
        .get_secret_value()
        .name(name)
        .send()
        .await
        .unwrap()
        .into_inner();
    (got.version, text_of(&got.value))
}

#[tokio::test]
async fn versions_labels_check_and_set_and_pruning() {
    let e = env().await;
    let s = &e.secrets;
    // The first secret without a key makes the service's default key in key_manager (with the admin's token).
    let made = s
        .create_secret()
        .body(new_secret(
            "apps/shop/config",
            Some(json(serde_json::json!({"host": "db", "port": 5432}))),
        ))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            made.current_version,
            made.latest_version,
            made.encryption_key.as_str()
        ),
        (Some(1), 1, "secrets_manager")
    );
    assert_eq!(made.versions[0].labels, ["AWSCURRENT"]);
    let km = e.key_manager.client(&e.admin);
    km.get_key()
        .key("secrets_manager")
        .send()
        .await
        .expect("the default key exists in key_manager");
    let config = s
        .get_secret_value()
        .name("apps/shop/config")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serde_json::Value::Object(config.value.json.clone()),
        serde_json::json!({"host": "db", "port": 5432})
    );
    assert_eq!(config.value.bytes, None);

    // Writes move AWSCURRENT to the new version and AWSPREVIOUS to the one before.
    s.create_secret()
        .body(new_secret("apps/shop/db-password", Some(bytes(b"first"))))
        .send()
        .await
        .unwrap();
    let v2 = s
        .put_secret_value()
        .name("apps/shop/db-password")
        .body(put(bytes(b"second"), None))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v2.version, v2.labels.clone()),
        (2, vec!["AWSCURRENT".to_owned()])
    );
    assert_eq!(
        read(s, "apps/shop/db-password").await,
        (2, b"second".to_vec())
    );
    let previous = s
        .get_secret_value()
        .name("apps/shop/db-password")
        .label("AWSPREVIOUS")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (previous.version, text_of(&previous.value)),
        (1, b"first".to_vec())
    );
    let first = s
        .get_secret_value()
        .name("apps/shop/db-password")
        .version(1)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(text_of(&first.value), b"first");

    // Check-and-set: a stale version is refused and nothing is written; the latest one passes.
    let stale = failure(
        s.put_secret_value()
            .name("apps/shop/db-password")
            .body(put(bytes(b"lost"), Some(1)))
            .send()
            .await,
    );
    expect_api_error(stale, 409, "cas_mismatch");
    assert_eq!(
        read(s, "apps/shop/db-password").await,
        (2, b"second".to_vec())
    );
    let third = PutValueRequest {
        value: bytes(b"third"),
        cas: Some(2),
        labels: vec!["blue".into()],
    };
    assert_eq!(
        s.put_secret_value()
            .name("apps/shop/db-password")
            .body(third)
            .send()
            .await
            .unwrap()
            .into_inner()
            .version,
        3
    );
    // cas 0: only a secret without versions.
    expect_api_error(
        failure(
            s.put_secret_value()
                .name("apps/shop/db-password")
                .body(put(bytes(b"x"), Some(0)))
                .send()
                .await,
        ),
        409,
        "cas_mismatch",
    );

    // Two writers at once without check-and-set: both land, as distinct versions.
    let (a, b) = tokio::join!(
        s.put_secret_value()
            .name("apps/shop/db-password")
            .body(put(bytes(b"racer a"), None))
            .send(),
        s.put_secret_value()
            .name("apps/shop/db-password")
            .body(put(bytes(b"racer b"), None))
            .send()
    );
    let mut raced = vec![
        a.unwrap().into_inner().version,
        b.unwrap().into_inner().version,
    ];
    raced.sort();
    assert_eq!(raced, [4, 5]);
    // Two at once with the same check-and-set: exactly one lands.
    let (a, b) = tokio::join!(
        s.put_secret_value()
            .name("apps/shop/db-password")
            .body(put(bytes(b"cas a"), Some(5)))
            .send(),
        s.put_secret_value()
            .name("apps/shop/db-password")
            .body(put(bytes(b"cas b"), Some(5)))
            .send()
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "one check-and-set write wins"
    );

    // Keeping 3 versions prunes the oldest ones no label names: labelled ones stay.
    let secret = s
        .update_secret()
        .name("apps/shop/db-password")
        .body(UpdateSecretRequest {
            max_versions: Some(3),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    let kept: Vec<u64> = secret.versions.iter().map(|v| v.version).collect();
    assert_eq!(
        kept,
        [6, 5, 3],
        "AWSCURRENT (6), AWSPREVIOUS (5) and blue (3) stay"
    );
    expect_api_error(
        failure(
            s.get_secret_value()
                .name("apps/shop/db-password")
                .version(1)
                .send()
                .await,
        ),
        404,
        "version_not_found",
    );
    let blue = s
        .get_secret_value()
        .name("apps/shop/db-password")
        .label("blue")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(text_of(&blue.value), b"third");

    // Moving AWSCURRENT back (a rollback) takes AWSPREVIOUS to the version it left.
    let moved = s
        .move_secret_label()
        .name("apps/shop/db-password")
        .label("AWSCURRENT")
        .body(MoveLabelRequest { version: 3 })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.current_version, Some(3));
    assert_eq!(
        read(s, "apps/shop/db-password").await,
        (3, b"third".to_vec())
    );
    let previous = s
        .get_secret_value()
        .name("apps/shop/db-password")
        .label("AWSPREVIOUS")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previous.version, 6);
    s.remove_secret_label()
        .name("apps/shop/db-password")
        .label("blue")
        .send()
        .await
        .unwrap();
    expect_api_error(
        failure(
            s.get_secret_value()
                .name("apps/shop/db-password")
                .label("blue")
                .send()
                .await,
        ),
        404,
        "label_not_found",
    );

    // Bad input: clear 4xx, nothing made.
    for (name, code) in [
        ("apps//x", "invalid_name"),
        ("/abs", "invalid_name"),
        ("apps/../x", "invalid_name"),
        ("..", "invalid_name"),
        ("apps/shop/config", "secret_exists"),
    ] {
        expect_api_error(
            failure(s.create_secret().body(new_secret(name, None)).send().await),
            if code == "secret_exists" { 409 } else { 400 },
            code,
        );
    }
    let neither = SecretValue {
        bytes: None,
        json: Default::default(),
    };
    expect_api_error(
        failure(
            s.put_secret_value()
                .name("apps/shop/config")
                .body(put(neither, None))
                .send()
                .await,
        ),
        400,
        "invalid_value",
    );
    let too_big = bytes(&vec![b'x'; 64 * 1024 + 1]);
    expect_api_error(
        failure(
            s.put_secret_value()
                .name("apps/shop/config")
                .body(put(too_big, None))
                .send()
                .await,
        ),
        400,
        "value_too_large",
    );
    expect_api_error(
        failure(s.get_secret_value().name("apps/nothing").send().await),
        404,
        "secret_not_found",
    );
    let listed = s
        .list_secrets()
        .prefix("apps/shop/")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .secrets
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["apps/shop/config", "apps/shop/db-password"]
    );
    e.conductor.stop().await;
}

#[tokio::test]
async fn soft_delete_undelete_destroy_and_the_whole_secrets_recovery_window() {
    let e = env().await;
    let s = &e.secrets;
    s.create_secret()
        .body(new_secret("ops/token", Some(bytes(b"v1"))))
        .send()
        .await
        .unwrap();
    s.put_secret_value()
        .name("ops/token")
        .body(put(bytes(b"v2"), None))
        .send()
        .await
        .unwrap();

    let deleted = s
        .delete_secret_version()
        .name("ops/token")
        .version(1)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted_at.is_some());
    expect_api_error(
        failure(
            s.get_secret_value()
                .name("ops/token")
                .version(1)
                .send()
                .await,
        ),
        404,
        "version_deleted",
    );
    s.undelete_secret_version()
        .name("ops/token")
        .version(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        text_of(
            &s.get_secret_value()
                .name("ops/token")
                .version(1)
                .send()
                .await
                .unwrap()
                .into_inner()
                .value
        ),
        b"v1"
    );
    let destroyed = s
        .destroy_secret_version()
        .name("ops/token")
        .version(1)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(destroyed.destroyed_at.is_some());
    expect_api_error(
        failure(
            s.get_secret_value()
                .name("ops/token")
                .version(1)
                .send()
                .await,
        ),
        404,
        "version_destroyed",
    );
    expect_api_error(
        failure(
            s.undelete_secret_version()
                .name("ops/token")
                .version(1)
                .send()
                .await,
        ),
        409,
        "version_destroyed",
    );

    // The version AWSCURRENT names stays readable.
    expect_api_error(
        failure(
            s.delete_secret_version()
                .name("ops/token")
                .version(2)
                .send()
                .await,
        ),
        409,
        "version_is_current",
    );
    expect_api_error(
        failure(
            s.destroy_secret_version()
                .name("ops/token")
                .version(2)
                .send()
                .await,
        ),
        409,
        "version_is_current",
    );

    // The whole secret: reads and changes refused during the window, restore brings it back.
    expect_api_error(
        failure(
            s.delete_secret()
                .name("ops/token")
                .recovery_days(3)
                .send()
                .await,
        ),
        400,
        "invalid_recovery_window",
    );
    let scheduled = s
        .delete_secret()
        .name("ops/token")
        .recovery_days(7)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(scheduled.deletion_date.is_some());
    expect_api_error(
        failure(s.get_secret_value().name("ops/token").send().await),
        409,
        "secret_scheduled_for_deletion",
    );
    expect_api_error(
        failure(
            s.put_secret_value()
                .name("ops/token")
                .body(put(bytes(b"v3"), None))
                .send()
                .await,
        ),
        409,
        "secret_scheduled_for_deletion",
    );
    let change = UpdateSecretRequest {
        description: Some("changed".into()),
        ..Default::default()
    };
    expect_api_error(
        failure(
            s.update_secret()
                .name("ops/token")
                .body(change)
                .send()
                .await,
        ),
        409,
        "secret_scheduled_for_deletion",
    );
    expect_api_error(
        failure(
            s.destroy_secret_version()
                .name("ops/token")
                .version(2)
                .send()
                .await,
        ),
        409,
        "secret_scheduled_for_deletion",
    );
    s.restore_secret().name("ops/token").send().await.unwrap();
    assert_eq!(read(s, "ops/token").await, (2, b"v2".to_vec()));
    // Deleted for good once the window (7 "days" of a second here) has passed.
    s.delete_secret()
        .name("ops/token")
        .recovery_days(7)
        .send()
        .await
        .unwrap();
    eventually(30, "the secret is removed at the end of its window", || async {
        matches!(s.get_secret().name("ops/token").send().await, Err(aerekos_sdk::ClientError::ErrorResponse(r)) if r.status() == 404).then_some(())
    })
    .await;
    let audit = s
        .list_secret_audit_records()
        .secret("ops/token")
        .send()
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = audit.records.iter().map(|r| r.action.as_str()).collect();
    assert!(
        actions.contains(&"purge") && actions.contains(&"destroy_version"),
        "{actions:?}"
    );
    e.conductor.stop().await;
}

#[tokio::test]
async fn viewers_see_metadata_only_and_api_keys_only_their_prefix() {
    let e = env().await;
    let s = &e.secrets;
    s.create_secret()
        .body(new_secret("apps/shop/db", Some(bytes(b"shop secret"))))
        .send()
        .await
        .unwrap();
    s.create_secret()
        .body(new_secret(
            "apps/billing/db",
            Some(bytes(b"billing secret")),
        ))
        .send()
        .await
        .unwrap();

    let viewer = e
        .service
        .secrets_client(e.conductor.viewer().await.token().unwrap());
    assert_eq!(
        viewer
            .list_secrets()
            .send()
            .await
            .unwrap()
            .into_inner()
            .secrets
            .len(),
        2
    );
    assert_eq!(
        viewer
            .get_secret()
            .name("apps/shop/db")
            .send()
            .await
            .unwrap()
            .into_inner()
            .latest_version,
        1
    );
    expect_api_error(
        failure(viewer.get_secret_value().name("apps/shop/db").send().await),
        403,
        "forbidden",
    );
    expect_api_error(
        failure(
            viewer
                .put_secret_value()
                .name("apps/shop/db")
                .body(put(bytes(b"x"), None))
                .send()
                .await,
        ),
        403,
        "forbidden",
    );
    expect_api_error(
        failure(viewer.list_secret_audit_records().send().await),
        403,
        "forbidden",
    );

    let api_key = |scopes: &[&str]| {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let admin = e.admin.clone();
        async move {
            admin
                .create_api_key()
                .body_map(|b| b.name("shop-app").scopes(scopes))
                .send()
                .await
                .unwrap()
                .into_inner()
                .key
        }
    };
    let reader = e
        .service
        .secrets_client(api_key(&["secrets_manager:read:apps/shop/*"]).await);
    assert_eq!(read(&reader, "apps/shop/db").await.1, b"shop secret");
    expect_api_error(
        failure(
            reader
                .get_secret_value()
                .name("apps/billing/db")
                .send()
                .await,
        ),
        403,
        "scope_missing",
    );
    expect_api_error(
        failure(
            reader
                .put_secret_value()
                .name("apps/shop/db")
                .body(put(bytes(b"x"), None))
                .send()
                .await,
        ),
        403,
        "scope_missing",
    );
    expect_api_error(
        failure(reader.delete_secret().name("apps/shop/db").send().await),
        403,
        "forbidden",
    );
    let names: Vec<String> = reader
        .list_secrets()
        .send()
        .await
        .unwrap()
        .into_inner()
        .secrets
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(names, ["apps/shop/db"]);

    let writer = e
        .service
        .secrets_client(api_key(&["secrets_manager:write:apps/shop/*"]).await);
    assert_eq!(
        writer
            .put_secret_value()
            .name("apps/shop/db")
            .body(put(bytes(b"rotated by the app"), None))
            .send()
            .await
            .unwrap()
            .into_inner()
            .version,
        2
    );
    writer
        .create_secret()
        .body(new_secret("apps/shop/api-key", Some(bytes(b"k"))))
        .send()
        .await
        .unwrap();
    expect_api_error(
        failure(
            writer
                .create_secret()
                .body(new_secret("apps/billing/x", None))
                .send()
                .await,
        ),
        403,
        "scope_missing",
    );
    expect_api_error(
        failure(writer.get_secret_value().name("apps/shop/db").send().await),
        403,
        "scope_missing",
    );

    // Every read and change is in the audit log, with who and which version; refusals too.
    let audit = s
        .list_secret_audit_records()
        .secret("apps/shop/db")
        .send()
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<(String, String, Option<u64>, String)> = audit
        .records
        .iter()
        .map(|r| {
            (
                r.actor.clone(),
                r.action.clone(),
                r.version,
                r.outcome.clone(),
            )
        })
        .collect();
    assert!(
        seen.contains(&(
            "api_key:shop-app".into(),
            "read_value".into(),
            Some(1),
            "ok".into()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(
            "api_key:shop-app".into(),
            "put_value".into(),
            Some(2),
            "ok".into()
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(actor, action, _, outcome)| actor.starts_with("user:")
                && action == "read_value"
                && outcome == "forbidden"),
        "{seen:?}"
    );
    e.conductor.stop().await;
}

#[tokio::test]
async fn a_disabled_key_refuses_reads_and_values_never_reach_disk_logs_or_metadata() {
    let e = env().await;
    let s = &e.secrets;
    let km = e.key_manager.client(&e.admin);
    km.create_key()
        .body_map(|b| b.name("team-key"))
        .send()
        .await
        .unwrap();
    let marker = format!("MARKER-{}", uuid::Uuid::new_v4().simple());
    let mut req = new_secret("team/marker", Some(bytes(marker.as_bytes())));
    req.encryption_key = Some("team-key".into());
    s.create_secret().body(req).send().await.unwrap();
    s.put_secret_value()
        .name("team/marker")
        .body(put(json(serde_json::json!({"password": marker})), None))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text_of(
            &s.get_secret_value()
                .name("team/marker")
                .version(1)
                .send()
                .await
                .unwrap()
                .into_inner()
                .value
        ),
        marker.as_bytes()
    );

    km.disable_key().key("team-key").send().await.unwrap();
    // Version 1 was just read: its data key is served from the cache for DATA_KEY_CACHE_SECS (3 s
    // here), and no longer.
    let cached = s
        .get_secret_value()
        .name("team/marker")
        .version(1)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        text_of(&cached.value),
        marker.as_bytes(),
        "served from the data key cache"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    expect_api_error(
        failure(
            s.get_secret_value()
                .name("team/marker")
                .version(1)
                .send()
                .await,
        ),
        409,
        "encryption_key_unusable",
    );
    // A create whose first value cannot be sealed makes nothing.
    let mut refused = new_secret("team/never", Some(bytes(b"x")));
    refused.encryption_key = Some("team-key".into());
    expect_api_error(
        failure(s.create_secret().body(refused).send().await),
        409,
        "encryption_key_unusable",
    );
    expect_api_error(
        failure(s.get_secret().name("team/never").send().await),
        404,
        "secret_not_found",
    );
    let refused = expect_api_error(
        failure(s.get_secret_value().name("team/marker").send().await),
        409,
        "encryption_key_unusable",
    );
    assert!(refused.message.contains("team-key"), "{refused:?}");
    expect_api_error(
        failure(
            s.put_secret_value()
                .name("team/marker")
                .body(put(bytes(b"x"), None))
                .send()
                .await,
        ),
        409,
        "encryption_key_unusable",
    );
    km.enable_key().key("team-key").send().await.unwrap();
    assert!(
        s.get_secret_value()
            .name("team/marker")
            .send()
            .await
            .is_ok()
    );

    // Destroyed, deleted and current versions alike: the marker is nowhere but in a read's body.
    s.destroy_secret_version()
        .name("team/marker")
        .version(1)
        .send()
        .await
        .unwrap();
    let described = serde_json::to_string(
        &s.get_secret()
            .name("team/marker")
            .send()
            .await
            .unwrap()
            .into_inner(),
    )
    .unwrap();
    let listed =
        serde_json::to_string(&s.list_secrets().send().await.unwrap().into_inner()).unwrap();
    let audit = serde_json::to_string(
        &s.list_secret_audit_records()
            .send()
            .await
            .unwrap()
            .into_inner(),
    )
    .unwrap();
    for (what, text) in [
        ("metadata", &described),
        ("listing", &listed),
        ("audit log", &audit),
        ("service log", &e.service.log()),
    ] {
        assert!(!text.contains(&marker), "the value is in the {what}");
    }
    let encoded = STANDARD.encode(marker.as_bytes());
    let files: Vec<_> = files_under(&e.service.data_dir())
        .into_iter()
        .chain(files_under(e.key_manager.dir.path()))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("secrets_manager.db")),
        "the search covers the database: {files:?}"
    );
    for file in files {
        let content = std::fs::read(&file).unwrap();
        for needle in [marker.as_bytes(), encoded.as_bytes()] {
            assert!(
                !content.windows(needle.len()).any(|w| w == needle),
                "{} holds the value",
                file.display()
            );
        }
    }
    e.conductor.stop().await;
}

#[tokio::test]
async fn everything_survives_a_kill_and_a_restart() {
    let mut e = env().await;
    e.secrets
        .create_secret()
        .body(new_secret("keep/me", Some(bytes(b"one"))))
        .send()
        .await
        .unwrap();
    e.secrets
        .put_secret_value()
        .name("keep/me")
        .body(put(bytes(b"two"), None))
        .send()
        .await
        .unwrap();
    e.secrets
        .delete_secret_version()
        .name("keep/me")
        .version(1)
        .send()
        .await
        .unwrap();
    e.service.kill();
    e.service.start_again().await;
    let s = e.service.secrets_client(e.admin.token().unwrap());
    assert_eq!(read(&s, "keep/me").await, (2, b"two".to_vec()));
    let secret = s
        .get_secret()
        .name("keep/me")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(
        secret
            .versions
            .iter()
            .any(|v| v.version == 1 && v.deleted_at.is_some())
    );
    assert_eq!(
        s.put_secret_value()
            .name("keep/me")
            .body(put(bytes(b"three"), Some(2)))
            .send()
            .await
            .unwrap()
            .into_inner()
            .version,
        3
    );
    e.conductor.stop().await;
}

/// `restart_on_change` on a cluster: a conductor and two workers as their own processes, key_manager
/// and secrets_manager deployed onto them, and an app with two replicas (one per worker) reading a
/// secret. One worker is killed (SIGKILL) and started again, adopting its instance; then a new
/// value is written. Both workers see the change within their watch interval, the conductor
/// replaces every instance (a rolling restart), the new ones serve the new value, and nothing
/// restarts again while the secret stays as it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_secret_restarts_the_instances_that_ask_for_it_across_a_worker_restart() {
    use aerekos_sdk::conductor::types::{
        DeployRequest, InstanceState, PlacementStrategy, SecretRef, ServiceDefinition,
    };
    let first = format!("first-{}", uuid::Uuid::new_v4().simple());
    let SecretsCluster {
        conductor,
        admin,
        token,
        secrets,
        mut workers,
    } = SecretsCluster::start(
        &["worker-a", "worker-b"],
        &[("SECRET_WATCH_INTERVAL", "1")],
        first.as_bytes(),
    )
    .await;
    let mut b = workers.pop().unwrap();
    let a = workers.pop().unwrap();
    let (a_id, b_id) = (a.id().await, b.id().await);

    // Refused: restart_on_change with a pinned version, and for a stateful service.
    let watched = |version: Option<u64>| SecretRef {
        secret: "apps/shop/db-password".into(),
        version,
        label: None,
        restart_on_change: true,
        as_file: false,
    };
    let pinned = DeployRequest {
        secret_env: [("DB_PASSWORD".to_owned(), watched(Some(1)))].into(),
        ..Default::default()
    };
    let refused = expect_api_error(
        failure(
            admin
                .deploy_service()
                .name("key_manager")
                .body(pinned)
                .send()
                .await,
        ),
        400,
        "invalid_env",
    );
    assert!(refused.message.contains("pins version 1"), "{refused:?}");
    let mut stateful: ServiceDefinition = ServiceDefinition::builder()
        .name("stateful_app")
        .try_into()
        .unwrap();
    stateful.command = vec!["sleep".into(), "60".into()];
    stateful.stateful = Some(true);
    stateful.secret_env = [("DB_PASSWORD".to_owned(), watched(None))].into();
    let refused = expect_api_error(
        failure(admin.define_service().body(stateful).send().await),
        400,
        "invalid_env",
    );
    assert!(refused.message.contains("restart_on_change"), "{refused:?}");

    // A binary value (NUL and all), which only a file can carry.
    let certificate = [
        b"\0\x01binary-".as_slice(),
        uuid::Uuid::new_v4().simple().to_string().as_bytes(),
        b"\xff",
    ]
    .concat();
    secrets
        .create_secret()
        .body(new_secret(
            "apps/shop/certificate",
            Some(bytes(&certificate)),
        ))
        .send()
        .await
        .unwrap();
    let as_file = SecretRef {
        secret: "apps/shop/certificate".into(),
        version: None,
        label: None,
        restart_on_change: false,
        as_file: true,
    };

    let dir = tempfile::tempdir().unwrap();
    secret_app(&admin, "shop", dir.path(), |_| {}).await;
    let req = DeployRequest {
        replicas: Some(2),
        strategy: Some(PlacementStrategy::Spread),
        secret_env: [
            ("DB_PASSWORD".to_owned(), watched(None)),
            ("DB_FILE".to_owned(), as_file),
        ]
        .into(),
        ..Default::default()
    };
    admin
        .deploy_service()
        .name("shop")
        .body(req)
        .send()
        .await
        .unwrap();
    let running = || async {
        let d = admin
            .get_deployment()
            .name("shop")
            .send()
            .await
            .ok()?
            .into_inner();
        let mut ids: Vec<_> = d
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .map(|i| (i.id, i.worker_id))
            .collect();
        ids.sort();
        (ids.len() == 2 && d.instances.len() == 2).then_some(ids)
    };
    let before = eventually(60, "two instances run", running).await;
    let workers: std::collections::HashSet<_> = before.iter().map(|(_, w)| *w).collect();
    assert_eq!(workers, [a_id, b_id].into(), "one replica on each worker");
    let http = reqwest::Client::new();
    let url = format!("{}/api/shop/secret", conductor.url);
    let answers = |expected: String| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            for _ in 0..6 {
                let text = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                if text != expected {
                    return None;
                }
            }
            Some(())
        }
    };
    eventually(60, "both replicas answer the first value", || {
        answers(first.clone())
    })
    .await;
    // The file: the exact bytes, readable by the worker's user only, in memory rather than in any
    // data directory, and the variable holds its path.
    let file_url = format!("{}/api/shop/file", conductor.url);
    let got = http
        .get(&file_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), certificate.as_slice());
    let path_url = format!("{}/api/shop/file-path", conductor.url);
    let mut old_paths = std::collections::HashSet::new();
    for _ in 0..8 {
        old_paths.insert(
            http.get(&path_url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    for path in &old_paths {
        assert!(
            path.starts_with("/dev/shm/aerekos-secrets-") && path.ends_with("/DB_FILE"),
            "{path}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600,
            "{path}"
        );
    }
    for worker in [&a, &b] {
        assert!(
            !any_file_holds(worker.dir.path(), &certificate),
            "{}'s data directory holds the file's value",
            worker.name
        );
    }

    // Worker b dies and comes back, adopting its instance: it still knows which version that
    // instance started with.
    b.kill();
    b.start_again();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        running().await.as_deref(),
        Some(before.as_slice()),
        "the same instances run after b's restart, nothing changed"
    );

    let second = format!("second-{}", uuid::Uuid::new_v4().simple());
    secrets
        .put_secret_value()
        .name("apps/shop/db-password")
        .body(put(bytes(second.as_bytes()), Some(1)))
        .send()
        .await
        .unwrap();
    let after = eventually(
        90,
        "every instance is replaced and the new ones run",
        || async {
            let now = running().await?;
            now.iter()
                .all(|(id, _)| !before.iter().any(|(old, _)| old == id))
                .then_some(now)
        },
    )
    .await;
    eventually(60, "both replicas answer the new value", || {
        answers(second.clone())
    })
    .await;
    // Each worker saw the change itself, b from the version it recorded before its restart (the
    // old instances run until the new ones are healthy, so both are checked meanwhile).
    for worker in [&a, &b] {
        assert!(
            worker
                .log()
                .contains("secrets changed since the instance started"),
            "{} did not see the change",
            worker.name
        );
    }
    let workers: std::collections::HashSet<_> = after.iter().map(|(_, w)| *w).collect();
    assert_eq!(
        workers,
        [a_id, b_id].into(),
        "still one replica on each worker"
    );

    // The replaced instances' files went with them; the new ones have theirs.
    eventually(
        30,
        "the old instances' secret files are removed",
        || async {
            old_paths
                .iter()
                .all(|p| !std::path::Path::new(p).exists())
                .then_some(())
        },
    )
    .await;
    let got = http
        .get(&file_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), certificate.as_slice());

    // No change, no restart: the new instances started with the new version.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        running().await.as_deref(),
        Some(after.as_slice()),
        "no further restart while the secret stays as it is"
    );
    drop(a);
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    files_under(dir)
        .into_iter()
        .any(|f| std::fs::read(&f).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle)))
}

/// A secrets_manager that stops answering (SIGSTOP, as a hang or a cut link looks from outside)
/// holds up only the starts that need a secret: such an instance says why it waits, another
/// instance on the same worker starts meanwhile, and once secrets_manager answers again (resumed,
/// or restarted by its worker's health checks) the waiting instance starts with its value.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_secrets_manager_holds_up_only_the_starts_that_need_it() {
    use aerekos_sdk::conductor::types::{DeployRequest, InstanceState, SecretRef};
    let value = format!("value-{}", uuid::Uuid::new_v4().simple());
    let SecretsCluster {
        conductor,
        admin,
        token,
        mut workers,
        ..
    } = SecretsCluster::start(&["worker"], &[], value.as_bytes()).await;
    let worker = workers.pop().unwrap();

    // secrets_manager's process, from its instance's pid file in the worker's data directory.
    let instance = admin
        .get_deployment()
        .name("secrets_manager")
        .send()
        .await
        .unwrap()
        .into_inner()
        .instances[0]
        .id;
    let pid: i32 = std::fs::read_to_string(
        worker
            .dir
            .path()
            .join("instances")
            .join(instance.to_string())
            .join("pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let reference = SecretRef {
        secret: "apps/shop/db-password".into(),
        version: None,
        label: None,
        restart_on_change: false,
        as_file: false,
    };
    secret_app(&admin, "shop", dir.path(), |def| {
        def.secret_env = [("DB_PASSWORD".to_owned(), reference)].into()
    })
    .await;
    secret_app(&admin, "plain", dir.path(), |_| {}).await;
    for app in ["shop", "plain"] {
        admin
            .deploy_service()
            .name(app)
            .body(DeployRequest::default())
            .send()
            .await
            .unwrap();
    }
    let instance_of = |app: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .get_deployment()
                .name(app)
                .send()
                .await
                .ok()?
                .into_inner()
                .instances
                .into_iter()
                .next()
        }
    };
    let reason = eventually(40, "the shop's instance says why it waits", || async {
        instance_of("shop")
            .await?
            .reason
            .filter(|r| r.contains("could not be read within"))
    })
    .await;
    assert!(reason.contains("secrets_manager"), "{reason}");
    eventually(
        25,
        "the plain app starts on the same worker meanwhile",
        || async { (instance_of("plain").await?.state == InstanceState::Running).then_some(()) },
    )
    .await;

    // The process may have been restarted by its worker's health checks meanwhile; either way it
    // answers again and the shop starts with its value.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    );
    let http = reqwest::Client::new();
    let url = format!("{}/api/shop/secret", conductor.url);
    let seen = eventually(90, "the shop starts with its secret", || async {
        let answer = http.get(&url).bearer_auth(&token).send().await.ok()?;
        answer.status().is_success().then_some(())?;
        answer.text().await.ok()
    })
    .await;
    assert_eq!(seen, value);
    // The tokens of the attempts that timed out were revoked too, not left to expire.
    eventually(15, "no instance token is left valid", || async {
        let tokens = admin.list_tokens().send().await.ok()?.into_inner().tokens;
        (!tokens.iter().any(|t| t.name.starts_with("instance-"))).then_some(())
    })
    .await;
}

/// A conductor process and worker processes (each with `worker_env`), key_manager and
/// secrets_manager deployed onto them, and the secret `apps/shop/db-password` made with
/// `first_value` through the gateway.
struct SecretsCluster {
    conductor: aerekos_tests::processes::ConductorProcess,
    admin: Conductor,
    token: String,
    secrets: SecretsManager,
    workers: Vec<aerekos_tests::processes::WorkerProcess>,
}

impl SecretsCluster {
    async fn start(names: &[&str], worker_env: &[(&str, &str)], first_value: &[u8]) -> Self {
        use aerekos_tests::processes::{ConductorProcess, WorkerProcess};
        let conductor = ConductorProcess::start().await;
        let admin = conductor.admin().await;
        let workers: Vec<_> = names
            .iter()
            .map(|name| WorkerProcess::start_with(&conductor, name, worker_env))
            .collect();
        for worker in &workers {
            worker.id().await;
        }
        for service in ["key_manager", "secrets_manager"] {
            let deploy = || async {
                admin
                    .deploy_service()
                    .name(service)
                    .body(aerekos_sdk::conductor::types::DeployRequest::default())
                    .send()
                    .await
                    .ok()
            };
            eventually(60, "the service deploys", deploy).await;
        }
        let token = admin.token().unwrap();
        let secrets = SecretsManager::with_token(&conductor.url, &token);
        eventually(
            120,
            "secrets_manager answers through the gateway",
            || async {
                secrets
                    .create_secret()
                    .body(new_secret(
                        "apps/shop/db-password",
                        Some(bytes(first_value)),
                    ))
                    .send()
                    .await
                    .ok()
            },
        )
        .await;
        Self {
            conductor,
            admin,
            token,
            secrets,
            workers,
        }
    }
}
