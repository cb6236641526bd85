//! key_manager end to end through the Rust SDK: a real conductor (for tokens) and a real
//! key_manager, both in-process on 127.0.0.1:0 with SQLite files.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use aerekos_sdk::{KeyManager, SdkError, key_manager::types};
use aerekos_tests::*;
use base64::{Engine as _, engine::general_purpose::STANDARD};

/// Everything every test in this binary logs, at every level, to search for secrets.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogSink(writer.clone()))
            .try_init()
            .expect("the only subscriber in this test binary");
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);
impl Write for LogSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create(km: &KeyManager, name: &str, deletion_allowed: bool) -> types::Key {
    km.create_key()
        .body_map(|b| {
            b.name(name)
                .description(Some("test key".to_owned()))
                .deletion_allowed(Some(deletion_allowed))
        })
        .send()
        .await
        .expect("create key")
        .into_inner()
}

async fn encrypt(
    km: &KeyManager,
    key: &str,
    plaintext: &[u8],
    context: HashMap<String, String>,
) -> types::EncryptResponse {
    km.encrypt()
        .key(key)
        .body_map(|b| b.plaintext(b64(plaintext)).context(context))
        .send()
        .await
        .expect("encrypt")
        .into_inner()
}

async fn decrypt(
    km: &KeyManager,
    key: &str,
    ciphertext: &str,
    context: HashMap<String, String>,
) -> Result<Vec<u8>, SdkError> {
    let r = km
        .decrypt()
        .key(key)
        .body_map(|b| b.ciphertext(ciphertext).context(context))
        .send()
        .await
        .map_err(SdkError::from)?;
    Ok(STANDARD.decode(r.into_inner().plaintext).unwrap())
}

struct Setup {
    conductor: TestConductor,
    km: TestKeyManager,
    admin: KeyManager,
}

async fn setup() -> Setup {
    captured_logs();
    let conductor = TestConductor::start().await;
    let km = TestKeyManager::start(&conductor).await;
    let admin = km.client(&conductor.admin().await);
    Setup {
        conductor,
        km,
        admin,
    }
}

impl Setup {
    async fn stop(self) {
        self.km.stop().await;
        self.conductor.stop().await;
    }
}

#[tokio::test]
async fn create_encrypt_decrypt_round_trip() {
    let s = setup().await;
    let key = create(&s.admin, "app-data", false).await;
    assert_eq!(
        (key.latest_version, key.state),
        (1, types::KeyState::Enabled)
    );
    assert_eq!(key.versions.len(), 1);
    let secret = b"attack at dawn";
    let ct = encrypt(&s.admin, "app-data", secret, ctx(&[("tenant", "acme")])).await;
    assert!(
        ct.ciphertext.starts_with("aerekos:v1:"),
        "{}",
        ct.ciphertext
    );
    assert!(!ct.ciphertext.contains(&b64(secret)));
    // By name or by id, the same key.
    assert_eq!(
        decrypt(
            &s.admin,
            "app-data",
            &ct.ciphertext,
            ctx(&[("tenant", "acme")])
        )
        .await
        .unwrap(),
        secret
    );
    assert_eq!(
        decrypt(
            &s.admin,
            &key.id.to_string(),
            &ct.ciphertext,
            ctx(&[("tenant", "acme")])
        )
        .await
        .unwrap(),
        secret
    );
    // Empty plaintext is fine too.
    let empty = encrypt(&s.admin, "app-data", b"", HashMap::new()).await;
    assert_eq!(
        decrypt(&s.admin, "app-data", &empty.ciphertext, HashMap::new())
            .await
            .unwrap(),
        b""
    );
    let listed = s.admin.list_keys().send().await.unwrap().into_inner();
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["app-data"]
    );
    let dup = s
        .admin
        .create_key()
        .body_map(|b| b.name("app-data"))
        .send()
        .await;
    expect_api_error(failure(dup), 409, "key_exists");
    s.stop().await;
}

#[tokio::test]
async fn rotation_min_decryption_version_and_rewrap() {
    let s = setup().await;
    create(&s.admin, "rotating", false).await;
    let v1 = encrypt(&s.admin, "rotating", b"old data", HashMap::new()).await;
    let rotated = s
        .admin
        .rotate_key()
        .key("rotating")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.latest_version, 2);
    let v2 = encrypt(&s.admin, "rotating", b"new data", HashMap::new()).await;
    assert_eq!((v1.key_version, v2.key_version), (1, 2));
    assert!(v2.ciphertext.starts_with("aerekos:v2:"));
    assert_eq!(
        decrypt(&s.admin, "rotating", &v1.ciphertext, HashMap::new())
            .await
            .unwrap(),
        b"old data"
    );

    // Rewrap moves old data to the latest version without showing it.
    let rewrapped = s
        .admin
        .rewrap()
        .key("rotating")
        .body_map(|b| b.ciphertext(v1.ciphertext.clone()))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rewrapped.key_version, 2);
    assert_eq!(
        decrypt(&s.admin, "rotating", &rewrapped.ciphertext, HashMap::new())
            .await
            .unwrap(),
        b"old data"
    );

    // Raising min_decryption_version retires version 1.
    let updated = s
        .admin
        .update_key()
        .key("rotating")
        .body_map(|b| b.min_decryption_version(Some(2)))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.min_decryption_version, 2);
    let body = expect_api_error(
        decrypt(&s.admin, "rotating", &v1.ciphertext, HashMap::new())
            .await
            .unwrap_err(),
        400,
        "version_not_allowed",
    );
    assert!(body.message.contains("version 1"), "{body:?}");
    assert_eq!(
        decrypt(&s.admin, "rotating", &rewrapped.ciphertext, HashMap::new())
            .await
            .unwrap(),
        b"old data"
    );

    // Encrypting with a named older version respects min_encryption_version.
    s.admin.rotate_key().key("rotating").send().await.unwrap();
    s.admin
        .update_key()
        .key("rotating")
        .body_map(|b| b.min_encryption_version(Some(3)))
        .send()
        .await
        .unwrap();
    let err = failure(
        s.admin
            .encrypt()
            .key("rotating")
            .body_map(|b| b.plaintext(b64(b"x")).key_version(Some(2)))
            .send()
            .await,
    );
    expect_api_error(err, 400, "version_not_allowed");
    let err = failure(
        s.admin
            .update_key()
            .key("rotating")
            .body_map(|b| b.min_decryption_version(Some(9)))
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_min_decryption_version");
    s.stop().await;
}

#[tokio::test]
async fn data_keys_unwrap_to_their_plaintext() {
    let s = setup().await;
    create(&s.admin, "envelope", false).await;
    for bits in [128u32, 256, 512] {
        let dk = s
            .admin
            .generate_data_key()
            .key("envelope")
            .body_map(|b| b.bits(bits))
            .send()
            .await
            .unwrap()
            .into_inner();
        let plaintext = STANDARD
            .decode(dk.plaintext.expect("plaintext by default"))
            .unwrap();
        assert_eq!(plaintext.len() * 8, bits as usize);
        assert_eq!(
            decrypt(&s.admin, "envelope", &dk.ciphertext, HashMap::new())
                .await
                .unwrap(),
            plaintext
        );
    }
    let wrapped_only = s
        .admin
        .generate_data_key()
        .key("envelope")
        .body_map(|b| b.bits(256).include_plaintext(Some(false)))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(wrapped_only.plaintext.is_none());
    assert_eq!(
        decrypt(
            &s.admin,
            "envelope",
            &wrapped_only.ciphertext,
            HashMap::new()
        )
        .await
        .unwrap()
        .len(),
        32
    );
    let err = failure(
        s.admin
            .generate_data_key()
            .key("envelope")
            .body_map(|b| b.bits(100))
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_bits");
    s.stop().await;
}

#[tokio::test]
async fn bad_ciphertexts_and_inputs_are_clear_4xx() {
    let s = setup().await;
    create(&s.admin, "k1", false).await;
    create(&s.admin, "k2", false).await;
    let ct = encrypt(&s.admin, "k1", b"payload", ctx(&[("purpose", "test")]))
        .await
        .ciphertext;

    // Wrong encryption context, and none at all.
    let err = decrypt(&s.admin, "k1", &ct, ctx(&[("purpose", "other")]))
        .await
        .unwrap_err();
    expect_api_error(err, 400, "decryption_failed");
    expect_api_error(
        decrypt(&s.admin, "k1", &ct, HashMap::new())
            .await
            .unwrap_err(),
        400,
        "decryption_failed",
    );

    // One flipped bit in the sealed data.
    let (head, data) = ct.rsplit_once(':').unwrap();
    let mut raw = STANDARD.decode(data).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    let tampered = format!("{head}:{}", b64(&raw));
    expect_api_error(
        decrypt(&s.admin, "k1", &tampered, ctx(&[("purpose", "test")]))
            .await
            .unwrap_err(),
        400,
        "decryption_failed",
    );

    // Another key's ciphertext is named as such.
    let body = expect_api_error(
        decrypt(&s.admin, "k2", &ct, ctx(&[("purpose", "test")]))
            .await
            .unwrap_err(),
        400,
        "wrong_key",
    );
    assert!(body.message.contains("k2"), "{body:?}");

    // Not a ciphertext at all; invalid base64 inside one; invalid base64 plaintext.
    expect_api_error(
        decrypt(&s.admin, "k1", "hello", HashMap::new())
            .await
            .unwrap_err(),
        400,
        "invalid_ciphertext",
    );
    expect_api_error(
        decrypt(&s.admin, "k1", "aerekos:v1:%%%", HashMap::new())
            .await
            .unwrap_err(),
        400,
        "invalid_ciphertext",
    );
    let err = failure(
        s.admin
            .encrypt()
            .key("k1")
            .body_map(|b| b.plaintext("not base64!"))
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_base64");

    // Over the plaintext limit (64 KiB by default).
    let big = vec![7u8; 64 * 1024 + 1];
    let err = failure(
        s.admin
            .encrypt()
            .key("k1")
            .body_map(|b| b.plaintext(b64(&big)))
            .send()
            .await,
    );
    let body = expect_api_error(err, 400, "plaintext_too_large");
    assert!(body.message.contains("65536"), "{body:?}");

    // Unknown key.
    let err = failure(
        s.admin
            .encrypt()
            .key("nope")
            .body_map(|b| b.plaintext(b64(b"x")))
            .send()
            .await,
    );
    expect_api_error(err, 404, "key_not_found");
    s.stop().await;
}

#[tokio::test]
async fn disabled_and_deleted_keys_refuse_use() {
    let s = setup().await;
    create(&s.admin, "lifecycle", true).await;
    create(&s.admin, "keeper", false).await;
    let ct = encrypt(&s.admin, "lifecycle", b"data", HashMap::new())
        .await
        .ciphertext;

    let disabled = s
        .admin
        .disable_key()
        .key("lifecycle")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.state, types::KeyState::Disabled);
    expect_api_error(
        decrypt(&s.admin, "lifecycle", &ct, HashMap::new())
            .await
            .unwrap_err(),
        409,
        "key_disabled",
    );
    let err = failure(
        s.admin
            .encrypt()
            .key("lifecycle")
            .body_map(|b| b.plaintext(b64(b"x")))
            .send()
            .await,
    );
    expect_api_error(err, 409, "key_disabled");
    s.admin.enable_key().key("lifecycle").send().await.unwrap();
    assert_eq!(
        decrypt(&s.admin, "lifecycle", &ct, HashMap::new())
            .await
            .unwrap(),
        b"data"
    );

    // A key that does not allow deletion cannot be scheduled for it.
    let err = failure(
        s.admin
            .schedule_key_deletion()
            .key("keeper")
            .body(types::ScheduleDeletionRequest::default())
            .send()
            .await,
    );
    expect_api_error(err, 409, "deletion_not_allowed");
    // The waiting period cannot be shortened below the configured one (1 s in tests).
    let err = failure(
        s.admin
            .schedule_key_deletion()
            .key("lifecycle")
            .body(types::ScheduleDeletionRequest {
                waiting_period_secs: Some(0),
            })
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_waiting_period");

    // Scheduled: refused at once, and cancellable (it comes back disabled).
    let pending = s
        .admin
        .schedule_key_deletion()
        .key("lifecycle")
        .body(types::ScheduleDeletionRequest::default())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.state, types::KeyState::PendingDeletion);
    assert!(pending.deletion_at.is_some());
    expect_api_error(
        decrypt(&s.admin, "lifecycle", &ct, HashMap::new())
            .await
            .unwrap_err(),
        409,
        "key_pending_deletion",
    );
    let back = s
        .admin
        .cancel_key_deletion()
        .key("lifecycle")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.state, types::KeyState::Disabled);

    // Scheduled again and left: after the waiting period the key is gone.
    s.admin
        .schedule_key_deletion()
        .key("lifecycle")
        .body(types::ScheduleDeletionRequest::default())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    expect_api_error(
        decrypt(&s.admin, "lifecycle", &ct, HashMap::new())
            .await
            .unwrap_err(),
        404,
        "key_not_found",
    );
    let names: Vec<_> = s
        .admin
        .list_keys()
        .send()
        .await
        .unwrap()
        .into_inner()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["keeper"]);
    s.stop().await;
}

#[tokio::test]
async fn who_may_do_what() {
    let s = setup().await;
    create(&s.admin, "shared", false).await;
    let ct = encrypt(&s.admin, "shared", b"x", HashMap::new())
        .await
        .ciphertext;

    // Viewers list and read, but neither manage nor use keys.
    let viewer = s.km.client(&s.conductor.viewer().await);
    assert_eq!(
        viewer.list_keys().send().await.unwrap().into_inner().len(),
        1
    );
    viewer.get_key().key("shared").send().await.unwrap();
    expect_api_error(
        failure(
            viewer
                .encrypt()
                .key("shared")
                .body_map(|b| b.plaintext(b64(b"x")))
                .send()
                .await,
        ),
        403,
        "forbidden",
    );
    expect_api_error(
        failure(
            viewer
                .decrypt()
                .key("shared")
                .body_map(|b| b.ciphertext(ct.clone()))
                .send()
                .await,
        ),
        403,
        "forbidden",
    );
    expect_api_error(
        failure(
            viewer
                .create_key()
                .body_map(|b| b.name("mine"))
                .send()
                .await,
        ),
        403,
        "forbidden",
    );
    expect_api_error(
        failure(viewer.rotate_key().key("shared").send().await),
        403,
        "forbidden",
    );

    // Services use keys but do not manage them.
    let admin = s.conductor.admin().await;
    let token = admin
        .create_service_token()
        .body_map(|b| b.service("storage_manager"))
        .send()
        .await
        .unwrap()
        .into_inner()
        .token;
    let service = KeyManager::with_token(&s.km.url, token);
    let theirs = service
        .encrypt()
        .key("shared")
        .body_map(|b| b.plaintext(b64(b"svc")))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decrypt(&service, "shared", &theirs.ciphertext, HashMap::new())
            .await
            .unwrap(),
        b"svc"
    );
    service
        .generate_data_key()
        .key("shared")
        .body_map(|b| b.bits(256))
        .send()
        .await
        .unwrap();
    expect_api_error(
        failure(
            service
                .create_key()
                .body_map(|b| b.name("svc-key"))
                .send()
                .await,
        ),
        403,
        "forbidden",
    );

    // No token, or a token from another conductor.
    let anon = KeyManager::new(&s.km.url);
    expect_api_error(failure(anon.list_keys().send().await), 401, "unauthorized");
    let other = TestConductor::start().await;
    let foreign = s.km.client(&other.admin().await);
    expect_api_error(
        failure(foreign.list_keys().send().await),
        401,
        "invalid_token",
    );
    other.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn batches_report_each_item() {
    let s = setup().await;
    create(&s.admin, "batch", false).await;
    let items = vec![
        types::EncryptRequest {
            plaintext: b64(b"one"),
            context: HashMap::new(),
            key_version: None,
        },
        types::EncryptRequest {
            plaintext: "%%%".into(),
            context: HashMap::new(),
            key_version: None,
        },
        types::EncryptRequest {
            plaintext: b64(b"three"),
            context: ctx(&[("n", "3")]),
            key_version: None,
        },
    ];
    let out = s
        .admin
        .encrypt_batch()
        .key("batch")
        .body_map(|b| b.items(items))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.results.len(), 3);
    assert!(out.results[0].ciphertext.is_some());
    assert_eq!(
        out.results[1].error.as_ref().unwrap().code,
        "invalid_base64"
    );
    let decrypts = vec![
        types::DecryptRequest {
            ciphertext: out.results[0].ciphertext.clone().unwrap(),
            context: HashMap::new(),
        },
        types::DecryptRequest {
            ciphertext: out.results[2].ciphertext.clone().unwrap(),
            context: HashMap::new(),
        },
        types::DecryptRequest {
            ciphertext: out.results[2].ciphertext.clone().unwrap(),
            context: ctx(&[("n", "3")]),
        },
    ];
    let back = s
        .admin
        .decrypt_batch()
        .key("batch")
        .body_map(|b| b.items(decrypts))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        STANDARD
            .decode(back.results[0].plaintext.as_ref().unwrap())
            .unwrap(),
        b"one"
    );
    assert_eq!(
        back.results[1].error.as_ref().unwrap().code,
        "decryption_failed"
    );
    assert_eq!(
        STANDARD
            .decode(back.results[2].plaintext.as_ref().unwrap())
            .unwrap(),
        b"three"
    );
    let err = failure(
        s.admin
            .encrypt_batch()
            .key("batch")
            .body_map(|b| b.items(vec![]))
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_batch");
    s.stop().await;
}

#[tokio::test]
async fn random_bytes_and_audit_records() {
    let s = setup().await;
    let r = s
        .admin
        .generate_random()
        .body_map(|b| b.bytes(32))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(STANDARD.decode(&r.random).unwrap().len(), 32);
    let r2 = s
        .admin
        .generate_random()
        .body_map(|b| b.bytes(32))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_ne!(r.random, r2.random);
    expect_api_error(
        failure(
            s.admin
                .generate_random()
                .body_map(|b| b.bytes(0))
                .send()
                .await,
        ),
        400,
        "invalid_bytes",
    );

    let key = create(&s.admin, "audited", false).await;
    let ct = encrypt(&s.admin, "audited", b"top secret text", HashMap::new()).await;
    decrypt(
        &s.admin,
        "audited",
        &ct.ciphertext,
        ctx(&[("wrong", "ctx")]),
    )
    .await
    .unwrap_err();
    let page = s
        .admin
        .list_audit_records()
        .key_id(key.id.to_string())
        .send()
        .await
        .unwrap()
        .into_inner();
    let ops: Vec<_> = page
        .records
        .iter()
        .map(|r| (r.operation.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            ("decrypt", "decryption_failed"),
            ("encrypt", "ok"),
            ("create", "ok")
        ]
    );
    for r in &page.records {
        assert_eq!(r.actor, "user:admin");
        assert!(!r.request_id.is_empty() && r.request_id != "none");
        let text = serde_json::to_string(r).unwrap();
        assert!(
            !text.contains("top secret") && !text.contains(&b64(b"top secret text")),
            "{text}"
        );
    }
    assert_eq!(page.records[1].key_version, Some(1));
    let viewer = s.km.client(&s.conductor.viewer().await);
    expect_api_error(
        failure(viewer.list_audit_records().send().await),
        403,
        "forbidden",
    );
    s.stop().await;
}

#[tokio::test]
async fn restart_keeps_keys_and_ciphertexts_decryptable() {
    let mut s = setup().await;
    create(&s.admin, "durable", false).await;
    let v1 = encrypt(&s.admin, "durable", b"before restart", HashMap::new()).await;
    s.admin.rotate_key().key("durable").send().await.unwrap();
    s.admin.disable_key().key("durable").send().await.unwrap();
    s.km.restart().await;
    let admin = s.km.client(&s.conductor.admin().await);
    let key = admin
        .get_key()
        .key("durable")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (key.latest_version, key.state),
        (2, types::KeyState::Disabled)
    );
    admin.enable_key().key("durable").send().await.unwrap();
    assert_eq!(
        decrypt(&admin, "durable", &v1.ciphertext, HashMap::new())
            .await
            .unwrap(),
        b"before restart"
    );
    s.admin = admin;
    s.stop().await;
}

/// The key material as stored: opened here with the test master key, following the documented
/// format (nonce ‖ sealed, additional data "aerekos-kms-material-v1" ‖ key id ‖ version).
async fn stored_material(km: &TestKeyManager) -> Vec<[u8; 32]> {
    use aes_gcm::{
        Aes256Gcm, KeyInit as _, Nonce,
        aead::{Aead as _, Payload},
    };
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        km.config.database_path.display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT key_id, version, material FROM key_versions")
            .fetch_all(&pool)
            .await
            .unwrap();
    let master = Aes256Gcm::new_from_slice(&STANDARD.decode(TEST_MASTER_KEY).unwrap()).unwrap();
    rows.into_iter()
        .map(|(key_id, version, wrapped)| {
            let mut aad = b"aerekos-kms-material-v1".to_vec();
            aad.extend_from_slice(uuid::Uuid::parse_str(&key_id).unwrap().as_bytes());
            aad.extend_from_slice(&(version as u32).to_be_bytes());
            let nonce: [u8; 12] = wrapped[..12].try_into().unwrap();
            let m = master
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &wrapped[12..],
                        aad: &aad,
                    },
                )
                .expect("material opens");
            m.try_into().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn key_material_never_appears_in_responses_or_logs() {
    let s = setup().await;
    let mut responses = Vec::new();
    let key = create(&s.admin, "watched", true).await;
    responses.push(serde_json::to_string(&key).unwrap());
    let rotated = s
        .admin
        .rotate_key()
        .key("watched")
        .send()
        .await
        .unwrap()
        .into_inner();
    responses.push(serde_json::to_string(&rotated).unwrap());
    for plaintext in [b"short".to_vec(), vec![0u8; 4096]] {
        let ct = encrypt(&s.admin, "watched", &plaintext, HashMap::new()).await;
        responses.push(serde_json::to_string(&ct).unwrap());
        let err = decrypt(&s.admin, "watched", &ct.ciphertext, ctx(&[("x", "y")]))
            .await
            .unwrap_err();
        responses.push(err.to_string());
    }
    let dk = s
        .admin
        .generate_data_key()
        .key("watched")
        .body_map(|b| b.bits(256))
        .send()
        .await
        .unwrap()
        .into_inner();
    responses.push(serde_json::to_string(&dk).unwrap());
    responses.push(
        serde_json::to_string(&s.admin.list_keys().send().await.unwrap().into_inner()).unwrap(),
    );
    let audit = s
        .admin
        .list_audit_records()
        .send()
        .await
        .unwrap()
        .into_inner();
    responses.push(serde_json::to_string(&audit).unwrap());

    let materials = stored_material(&s.km).await;
    assert!(materials.len() >= 2, "both versions of the key are stored");
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(logs.contains("key created"), "the log capture works");
    for m in &materials {
        let forms = [
            STANDARD.encode(m),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m),
            m.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            format!("{m:?}"),
        ];
        for form in &forms {
            assert!(!logs.contains(form.as_str()), "key material in the logs");
            for r in &responses {
                assert!(
                    !r.contains(form.as_str()),
                    "key material in a response: {r}"
                );
            }
        }
    }
    assert!(
        !logs.contains(&STANDARD.encode(b"short")),
        "plaintext in the logs"
    );
    s.stop().await;
}
