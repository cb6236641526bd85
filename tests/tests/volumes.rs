//! Stateful services never lose their data when a machine drops out: a conductor and two workers,
//! each its own process with its own data directory, key_manager and storage_manager deployed onto
//! them as processes, and then the worker holding a service's volume paused past its TTL
//! (SIGSTOP, as a network cut looks from outside), killed with SIGKILL, or the conductor killed
//! or wiped. What the tests check: no empty replacement is ever started, the gateway's 503 names
//! the volume and the worker while it is away, and the same instance serves the same data when the
//! worker returns.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aerekos_sdk::{
    Conductor, KeyManager, SdkError, StorageManager,
    conductor::types::{
        Backup, BackupState, DeployRequest, Deployment, InstanceHealth, MoveRequest, MoveState,
        PlacementStrategy, RestoreRequest, VolumeMove, WorkerStatus,
    },
};
use aerekos_tests::{
    expect_api_error, failure,
    processes::{ConductorProcess, UpProcess, WORKER_TTL, WorkerProcess, wait_for_worker},
    *,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use uuid::Uuid;

struct Cluster {
    conductor: ConductorProcess,
    admin: Conductor,
    /// Worker `a` holds key_manager, worker `b` storage_manager.
    a: WorkerProcess,
    b: WorkerProcess,
    a_id: Uuid,
    b_id: Uuid,
}

impl Cluster {
    /// A conductor and two workers, with key_manager on `a` and storage_manager on `b`, both
    /// healthy. Neither deployment names a worker, so only their volumes keep them where they are:
    /// key_manager is deployed while `a` is the only worker, and storage_manager spreads to `b`,
    /// the worker with more room.
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With more environment for both workers.
    async fn start_with(worker_env: &[(&str, &str)]) -> Self {
        let conductor = ConductorProcess::start().await;
        let admin = conductor.admin().await;
        let a = WorkerProcess::start_with(&conductor, "worker-a", worker_env);
        let a_id = a.id().await;
        wait_for_worker(&admin, a_id, WorkerStatus::Live, 30).await;
        admin
            .enable_service()
            .name("key_manager")
            .send()
            .await
            .expect("enable key_manager");
        let b = WorkerProcess::start_with(&conductor, "worker-b", worker_env);
        let b_id = b.id().await;
        wait_for_worker(&admin, b_id, WorkerStatus::Live, 30).await;
        let cluster = Self {
            conductor,
            admin,
            a,
            b,
            a_id,
            b_id,
        };
        cluster.healthy("key_manager", a_id).await;
        cluster
            .admin
            .enable_service()
            .name("storage_manager")
            .send()
            .await
            .expect("enable storage_manager");
        cluster.healthy("storage_manager", b_id).await;
        cluster
    }

    async fn deployment(&self, service: &str) -> Deployment {
        self.admin
            .get_deployment()
            .name(service)
            .send()
            .await
            .expect("deployment")
            .into_inner()
    }

    /// Waits for `service` to have one healthy instance, on `worker`; returns its id.
    async fn healthy(&self, service: &str, worker: Uuid) -> Uuid {
        let what = format!("{service} healthy on {worker}");
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let d = self.deployment(service).await;
                if let [only] = d.instances.as_slice() {
                    if only.health == InstanceHealth::Healthy && d.healthy == 1 {
                        assert_eq!(
                            only.worker_id, worker,
                            "{service} runs on the wrong worker: {d:?}"
                        );
                        return only.id;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {what}\nconductor log:\n{}",
                self.conductor.log_tail(40)
            )
        })
    }

    fn key_manager(&self) -> KeyManager {
        KeyManager::with_token(&self.conductor.url, self.admin.token().expect("logged in"))
    }

    fn storage(&self) -> StorageManager {
        StorageManager::with_token(&self.conductor.url, self.admin.token().expect("logged in"))
    }

    /// Waits until `service` says it waits for its volume on `worker`; checks the gateway's 503.
    async fn waits_for_volume(&self, service: &str, worker: Uuid, worker_name: &str) -> Deployment {
        let d = eventually(30, &format!("{service} waiting for its volume"), || async {
            let d = self.deployment(service).await;
            d.waiting_for_volume.is_some().then_some(d)
        })
        .await;
        let wait = d.waiting_for_volume.as_ref().unwrap();
        assert_eq!(
            (wait.volume.as_str(), wait.worker_id),
            (service, worker),
            "{wait:?}"
        );
        assert_eq!(wait.worker_name.as_deref(), Some(worker_name));
        assert!(wait.lost_since.is_some());
        // The gateway names the volume and the worker, with Retry-After (from the next pass of the
        // deployment loop, which rebuilds its routes).
        let http = reqwest::Client::new();
        // (Until then a request may still find the instance gone: a plain 503.)
        let (retry_after, body) =
            eventually(5, "the gateway answers 503 volume_unavailable", || async {
                let resp = http
                    .get(format!("{}/api/{service}/anything", self.conductor.url))
                    .bearer_auth(self.admin.token().unwrap())
                    .send()
                    .await
                    .unwrap();
                let (status, retry_after) =
                    (resp.status(), resp.headers().contains_key("retry-after"));
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                (status == 503 && body["code"] == "volume_unavailable")
                    .then_some((retry_after, body))
            })
            .await;
        assert!(retry_after, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("volume {service}"))
                && message.contains(worker_name)
                && message.contains(&worker.to_string()),
            "{message}"
        );
        d
    }

    /// For `secs` seconds, `service` has no instance anywhere but on `worker`.
    async fn stays_only_on(&self, service: &str, worker: Uuid, secs: u64) {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < until {
            let d = self.deployment(service).await;
            assert!(
                d.instances.iter().all(|i| i.worker_id == worker),
                "{service} was placed elsewhere: {d:?}"
            );
            assert_eq!(d.instances.len(), 1, "{d:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn get_object(
    storage: &StorageManager,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, SdkError> {
    let response = storage.get_object().bucket(bucket).key(key).send().await?;
    let body: Vec<Bytes> = response
        .into_inner()
        .into_inner()
        .try_collect()
        .await
        .map_err(|e| SdkError::Transport(e.to_string()))?;
    Ok(body.concat())
}

/// Bytes that differ at every offset.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Data written before the faults: a key and a ciphertext, a bucket encrypted under that key with
/// two objects.
struct Written {
    ciphertext: String,
    objects: Vec<(String, Vec<u8>)>,
}

async fn write_data(c: &Cluster) -> Written {
    let ciphertext = encrypt_crown_jewels(&c.key_manager()).await;
    let storage = c.storage();
    storage
        .create_bucket()
        .body_map(|b| {
            b.name("vault")
                .default_encryption_key(Some("precious".into()))
        })
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket: {}", SdkError::from(e)));
    let objects = vec![
        ("small.txt".to_owned(), b"hello".to_vec()),
        ("dir/large.bin".to_owned(), pattern(3 << 20, 7)),
    ];
    for (key, data) in &objects {
        storage
            .put_object()
            .bucket("vault")
            .key(key)
            .body(data.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {}", SdkError::from(e)));
    }
    Written {
        ciphertext,
        objects,
    }
}

/// Every earlier ciphertext decrypts and every object reads back byte-identical.
async fn data_intact(c: &Cluster, w: &Written) {
    data_intact_at(&c.conductor.url, &c.admin.token().expect("logged in"), w).await;
}

/// The same through the gateway at `url`, with `token`.
async fn data_intact_at(url: &str, token: &str, w: &Written) {
    let km = KeyManager::with_token(url, token);
    let plain = eventually(30, "the earlier ciphertext decrypts", || async {
        decrypt_precious(&km, &w.ciphertext).await.ok()
    })
    .await;
    assert_eq!(plain, CROWN_JEWELS);
    let storage = StorageManager::with_token(url, token);
    for (key, data) in &w.objects {
        let got = eventually(30, &format!("{key} reads back"), || async {
            get_object(&storage, "vault", key).await.ok()
        })
        .await;
        assert!(
            got == *data,
            "{key}: {} bytes back, {} written, or different bytes",
            got.len(),
            data.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_holder_is_waited_for_and_its_instance_serves_the_same_data_when_it_returns() {
    let c = Cluster::start().await;
    let written = write_data(&c).await;
    let km_instance = c.healthy("key_manager", c.a_id).await;
    let sm_instance = c.healthy("storage_manager", c.b_id).await;
    let volumes = c.admin.list_volumes().send().await.unwrap().into_inner();
    let holders: Vec<(String, Uuid)> = volumes
        .iter()
        .map(|v| (v.name.clone(), v.worker_id))
        .collect();
    assert_eq!(
        holders,
        vec![
            ("key_manager".to_owned(), c.a_id),
            ("storage_manager".to_owned(), c.b_id)
        ]
    );

    // key_manager's worker drops out (its instance keeps running, unreachable as far as the
    // conductor knows): the service waits, nothing empty starts on b, and the gateway says why.
    c.a.pause();
    wait_for_worker(&c.admin, c.a_id, WorkerStatus::Lost, 30).await;
    c.waits_for_volume("key_manager", c.a_id, "worker-a").await;
    let err = failure(c.key_manager().list_keys().send().await);
    let body = expect_api_error(err, 503, "volume_unavailable");
    assert!(
        body.message.contains("volume key_manager"),
        "{}",
        body.message
    );
    c.stays_only_on("key_manager", c.a_id, 2 * WORKER_TTL.as_secs())
        .await;
    assert!(
        !c.b.volume_dir("key_manager").exists(),
        "an empty key_manager volume was made on worker b"
    );
    let v = c
        .admin
        .get_volume()
        .name("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.worker_status, Some(WorkerStatus::Lost));

    // It returns: the same instance serves the same keys.
    c.a.resume();
    assert_eq!(
        c.healthy("key_manager", c.a_id).await,
        km_instance,
        "the instance a kept running is used again"
    );
    assert!(
        c.deployment("key_manager")
            .await
            .waiting_for_volume
            .is_none()
    );
    data_intact(&c, &written).await;

    // The same for storage_manager and its objects.
    c.b.pause();
    wait_for_worker(&c.admin, c.b_id, WorkerStatus::Lost, 30).await;
    c.waits_for_volume("storage_manager", c.b_id, "worker-b")
        .await;
    let err = failure(c.storage().list_buckets().send().await);
    expect_api_error(err, 503, "volume_unavailable");
    c.stays_only_on("storage_manager", c.b_id, 2 * WORKER_TTL.as_secs())
        .await;
    assert!(
        !c.a.volume_dir("storage_manager").exists(),
        "an empty storage_manager volume was made on worker a"
    );
    c.b.resume();
    assert_eq!(c.healthy("storage_manager", c.b_id).await, sm_instance);
    data_intact(&c, &written).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_agents_and_a_killed_conductor_leave_every_service_where_its_data_is() {
    let mut c = Cluster::start().await;
    let written = write_data(&c).await;
    let km_instance = c.healthy("key_manager", c.a_id).await;

    // kill -9 of a's agent: lost, waited for; started again it adopts the instance it left.
    c.a.kill();
    wait_for_worker(&c.admin, c.a_id, WorkerStatus::Lost, 30).await;
    c.waits_for_volume("key_manager", c.a_id, "worker-a").await;
    c.a.start_again();
    assert_eq!(c.healthy("key_manager", c.a_id).await, km_instance);
    data_intact(&c, &written).await;

    // The conductor is killed while b is away, and comes back: its volume records survived, so
    // storage_manager still waits for b instead of starting empty on a.
    c.b.pause();
    wait_for_worker(&c.admin, c.b_id, WorkerStatus::Lost, 30).await;
    c.conductor.kill();
    c.conductor.start_again().await;
    c.admin = c.conductor.admin().await;
    c.waits_for_volume("storage_manager", c.b_id, "worker-b")
        .await;
    c.stays_only_on("storage_manager", c.b_id, 2 * WORKER_TTL.as_secs())
        .await;
    c.b.resume();
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_admins_explicit_word_starts_a_stateful_service_without_its_data() {
    let c = Cluster::start().await;
    let written = write_data(&c).await;

    // Disabled and deployed again on either worker, storage_manager comes back on the worker
    // holding its volume, though binpack alone would choose a (which has key_manager on it).
    c.admin
        .disable_service()
        .name("storage_manager")
        .send()
        .await
        .unwrap();
    let anywhere = DeployRequest {
        strategy: Some(PlacementStrategy::Binpack),
        ..Default::default()
    };
    c.admin
        .deploy_service()
        .name("storage_manager")
        .body(anywhere)
        .send()
        .await
        .unwrap();
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;

    // Asking for another worker is refused, naming the volume and the way out.
    let elsewhere = DeployRequest {
        worker_ids: vec![c.a_id],
        ..Default::default()
    };
    let err = failure(
        c.admin
            .deploy_service()
            .name("storage_manager")
            .body(elsewhere.clone())
            .send()
            .await,
    );
    let body = expect_api_error(err, 409, "volume_elsewhere");
    assert!(
        body.message.contains("volume storage_manager") && body.message.contains("start_empty"),
        "{}",
        body.message
    );
    c.admin
        .disable_service()
        .name("storage_manager")
        .send()
        .await
        .unwrap();
    let err = failure(
        c.admin
            .deploy_service()
            .name("storage_manager")
            .body(elsewhere)
            .send()
            .await,
    );
    expect_api_error(err, 409, "volume_elsewhere");
    // start_empty is for stateful services only.
    let define = aerekos_sdk::conductor::types::ServiceDefinition::builder()
        .name("stateless_app")
        .command(vec!["sleep".to_owned(), "600".to_owned()]);
    c.admin.define_service().body(define).send().await.unwrap();
    let err = failure(
        c.admin
            .deploy_service()
            .name("stateless_app")
            .body(DeployRequest {
                start_empty: Some(true),
                ..Default::default()
            })
            .send()
            .await,
    );
    expect_api_error(err, 400, "invalid_deployment");

    // With start_empty, it starts with no data on a, and b's copy is left alone and listed.
    let req = DeployRequest {
        worker_ids: vec![c.a_id],
        start_empty: Some(true),
        ..Default::default()
    };
    c.admin
        .deploy_service()
        .name("storage_manager")
        .body(req)
        .send()
        .await
        .unwrap();
    c.healthy("storage_manager", c.a_id).await;
    let buckets = c
        .storage()
        .list_buckets()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(buckets.is_empty(), "started empty: {buckets:?}");
    assert!(
        c.b.volume_dir("storage_manager")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "b's copy was left in place"
    );
    let v = eventually(30, "b's old copy listed", || async {
        let v = c
            .admin
            .get_volume()
            .name("storage_manager")
            .send()
            .await
            .ok()?
            .into_inner();
        v.other_copies.contains(&c.b_id).then_some(v)
    })
    .await;
    assert_eq!(v.worker_id, c.a_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conductor_made_anew_adopts_the_copy_a_worker_holds_instead_of_starting_empty() {
    let mut c = Cluster::start().await;
    let written = write_data(&c).await;

    // The conductor's whole data directory is lost. Its successor starts from the same
    // registration token, so the workers rejoin by themselves; it knows no volume.
    c.conductor.kill();
    c.conductor.wipe();
    c.conductor.start_again().await;
    c.admin = c.conductor.admin().await;
    wait_for_worker(&c.admin, c.a_id, WorkerStatus::Live, 30).await;
    wait_for_worker(&c.admin, c.b_id, WorkerStatus::Live, 30).await;
    assert!(
        c.admin
            .list_volumes()
            .send()
            .await
            .unwrap()
            .into_inner()
            .is_empty()
    );

    // Deployed anywhere, each service goes to the worker reporting its volume, and the data is
    // there: keys decrypt the old ciphertext (the services trust the new conductor's tokens
    // because the workers restart them for the new assignments).
    c.admin
        .enable_service()
        .name("storage_manager")
        .send()
        .await
        .unwrap();
    c.healthy("key_manager", c.a_id).await;
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;
    let volumes = c.admin.list_volumes().send().await.unwrap().into_inner();
    let holders: Vec<(String, Uuid)> = volumes
        .iter()
        .map(|v| (v.name.clone(), v.worker_id))
        .collect();
    assert_eq!(
        holders,
        vec![
            ("key_manager".to_owned(), c.a_id),
            ("storage_manager".to_owned(), c.b_id)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Moves with data

impl Cluster {
    async fn begin_move(&self, service: &str, to: Uuid) -> VolumeMove {
        self.admin
            .move_service()
            .name(service)
            .body(MoveRequest { worker_id: to })
            .send()
            .await
            .unwrap_or_else(|e| panic!("move {service}: {}", SdkError::from(e)))
            .into_inner()
    }

    /// Waits for the move to reach `state` (or end), and returns it.
    async fn move_reaches(&self, id: Uuid, state: MoveState, secs: u64) -> VolumeMove {
        let what = format!("move {id} reaching {state}");
        let found = tokio::time::timeout(Duration::from_secs(secs), async {
            loop {
                if let Ok(m) = self.admin.get_move().id(id).send().await {
                    let m = m.into_inner();
                    if m.state == state || matches!(m.state, MoveState::Done | MoveState::Failed) {
                        return m;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let m = found.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {what}\nconductor log:\n{}",
                self.conductor.log_tail(40)
            )
        });
        assert_eq!(m.state, state, "{m:?}");
        m
    }

    /// The worker's volume directory entries (names), for leftovers.
    fn volume_entries(worker: &WorkerProcess) -> Vec<String> {
        std::fs::read_dir(worker.dir.path().join("volumes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What clients saw during a move: answers with the right data, 503s, and anything else (wrong).
#[derive(Default, Debug)]
struct Seen {
    right: usize,
    unavailable: usize,
    wrong: Vec<String>,
}

/// Loops `probe` until `stop`; each probe gives Ok(true) for right data, Ok(false) for a 503.
fn load<F, Fut>(stop: Arc<AtomicBool>, probe: F) -> tokio::task::JoinHandle<Seen>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<bool, String>> + Send,
{
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            match probe().await {
                Ok(true) => seen.right += 1,
                Ok(false) => seen.unavailable += 1,
                Err(e) => seen.wrong.push(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

/// A 503 from the gateway (the service is moving or has no healthy instance) is expected; any
/// other failure is not.
fn classify(e: SdkError) -> Result<bool, String> {
    match e.status() {
        Some(503) => Ok(false),
        _ => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn moves_carry_the_data_to_the_new_worker_while_clients_see_only_503s_in_between() {
    let c = Cluster::start().await;
    let written = Arc::new(write_data(&c).await);

    // storage_manager b → a, while clients read every object in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let (storage, objects) = (c.storage(), written.clone());
    let readers = load(stop.clone(), move || {
        let (storage, objects) = (storage.clone(), objects.clone());
        async move {
            for (key, data) in &objects.objects {
                match get_object(&storage, "vault", key).await {
                    Ok(got) if got == *data => {}
                    Ok(got) => {
                        return Err(format!(
                            "{key}: {} bytes that are not what was written",
                            got.len()
                        ));
                    }
                    Err(e) => return classify(e),
                }
            }
            Ok(true)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = c.begin_move("storage_manager", c.a_id).await;
    assert_eq!(
        (m.state, m.source_worker_id, m.target_worker_id),
        (MoveState::Stopping, c.b_id, c.a_id)
    );
    let m = c.move_reaches(m.id, MoveState::Done, 90).await;
    assert!(m.bytes_copied >= 3 << 20, "{m:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = readers.await.unwrap();
    assert!(
        seen.wrong.is_empty(),
        "clients saw wrong or missing data: {:?}",
        seen.wrong
    );
    assert!(seen.right > 0 && seen.unavailable > 0, "{seen:?}");
    c.healthy("storage_manager", c.a_id).await;
    assert!(
        !c.b.volume_dir("storage_manager").exists(),
        "the old copy is deleted once the move is done"
    );
    assert_eq!(
        c.admin
            .get_volume()
            .name("storage_manager")
            .send()
            .await
            .unwrap()
            .worker_id,
        c.a_id
    );

    // key_manager a → b, while clients encrypt and decrypt in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let (km, old) = (c.key_manager(), written.ciphertext.clone());
    let crypto = load(stop.clone(), move || {
        let (km, old) = (km.clone(), old.clone());
        async move {
            let plain = Uuid::new_v4().to_string();
            let sealed = km
                .encrypt()
                .key("precious")
                .body_map(|b| b.plaintext(STANDARD.encode(&plain)))
                .send()
                .await;
            let sealed = match sealed {
                Ok(r) => r.into_inner().ciphertext,
                Err(e) => return classify(e.into()),
            };
            for (ciphertext, expected) in [
                (sealed.as_str(), plain.as_bytes()),
                (old.as_str(), CROWN_JEWELS),
            ] {
                match decrypt_precious(&km, ciphertext).await {
                    Ok(got) if got == expected => {}
                    Ok(_) => return Err("decrypted to other bytes".into()),
                    Err(e) => return classify(e),
                }
            }
            Ok(true)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // This one through the CLI, as an operator would: it waits for the move and prints it.
    let config = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(
        config.path(),
        &["login", "--url", &c.conductor.url, "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(ok, "{err}");
    let args = [
        "services",
        "move",
        "key_manager",
        "--to",
        &c.b_id.to_string(),
        "-o",
        "json",
    ]
    .map(str::to_owned);
    let dir = config.path().to_owned();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cli(
            &dir,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["state"], "done", "{out}");
    let (ok, out, _) = cli(config.path(), &["volumes", "ls", "-o", "json"], None);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        ok && listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "key_manager" && v["worker_id"] == c.b_id.to_string()),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = crypto.await.unwrap();
    assert!(
        seen.wrong.is_empty(),
        "clients saw wrong or missing keys: {:?}",
        seen.wrong
    );
    assert!(seen.right > 0 && seen.unavailable > 0, "{seen:?}");
    c.healthy("key_manager", c.b_id).await;
    assert!(!c.a.volume_dir("key_manager").exists());
    data_intact(&c, &written).await;

    // A move is refused where it cannot work, each with its reason.
    let refused = |r: Result<_, aerekos_sdk::ClientError<aerekos_sdk::ErrorBody>>, code: &str| {
        let err = failure(r);
        expect_api_error(err, if code == "not_movable" { 400 } else { 409 }, code);
    };
    refused(
        c.admin
            .move_service()
            .name("key_manager")
            .body(MoveRequest { worker_id: c.b_id })
            .send()
            .await,
        "already_there",
    );
    c.admin
        .define_service()
        .body(
            aerekos_sdk::conductor::types::ServiceDefinition::builder()
                .name("plain_app")
                .command(vec!["sleep".to_owned()]),
        )
        .send()
        .await
        .unwrap();
    refused(
        c.admin
            .move_service()
            .name("plain_app")
            .body(MoveRequest { worker_id: c.b_id })
            .send()
            .await,
        "not_movable",
    );
}

/// Waits until a worker has left no transfer leftovers and, unless it holds it, no copy of `volume`.
async fn no_leftovers(worker: &WorkerProcess, volume: &str) {
    eventually(
        30,
        &format!(
            "{} holds no copy of {volume} and no transfer leftovers",
            worker.name
        ),
        || async {
            let entries = Cluster::volume_entries(worker);
            (!entries.iter().any(|e| e == volume || e.starts_with('.'))).then_some(())
        },
    )
    .await;
}

/// One MB a second: a 3 MB volume takes seconds to copy, long enough to interrupt.
const SLOW_TRANSFERS: &[(&str, &str)] = &[("WORKER_TRANSFER_RATE", "1000000")];

#[tokio::test(flavor = "multi_thread")]
async fn a_move_whose_new_or_old_worker_is_killed_mid_copy_leaves_the_service_whole_where_it_was() {
    let mut c = Cluster::start_with(SLOW_TRANSFERS).await;
    let written = write_data(&c).await;

    // The receiving worker (a) is killed mid-copy.
    let m = c.begin_move("storage_manager", c.a_id).await;
    c.move_reaches(m.id, MoveState::Copying, 30).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.a.kill();
    let failed = c.move_reaches(m.id, MoveState::Failed, 60).await;
    assert!(failed.error.is_some(), "{failed:?}");
    c.a.start_again();
    c.healthy("storage_manager", c.b_id).await;
    c.healthy("key_manager", c.a_id).await;
    data_intact(&c, &written).await;
    no_leftovers(&c.a, "storage_manager").await;

    // The worker holding the volume (b) is killed mid-copy; it comes back with its data.
    let m = c.begin_move("storage_manager", c.a_id).await;
    c.move_reaches(m.id, MoveState::Copying, 30).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.b.kill();
    c.move_reaches(m.id, MoveState::Failed, 60).await;
    c.b.start_again();
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;
    no_leftovers(&c.a, "storage_manager").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_interrupted_by_a_killed_conductor_or_a_lost_holder_leaves_the_service_whole_where_it_was()
 {
    let mut c = Cluster::start_with(SLOW_TRANSFERS).await;
    let written = write_data(&c).await;

    // The conductor is killed mid-copy: when it is back the move has failed, and the service
    // runs on its old worker again; the receiving worker drops what it got.
    let m = c.begin_move("storage_manager", c.a_id).await;
    c.move_reaches(m.id, MoveState::Copying, 30).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.conductor.kill();
    c.conductor.start_again().await;
    c.admin = c.conductor.admin().await;
    let failed = c.move_reaches(m.id, MoveState::Failed, 30).await;
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("conductor restarted")),
        "{failed:?}"
    );
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;
    no_leftovers(&c.a, "storage_manager").await;

    // The holder's agent cannot stop the instance (paused), then is killed: the move fails when
    // it is lost, and the service comes back on it with its data.
    c.b.pause();
    let m = c.begin_move("storage_manager", c.a_id).await;
    assert_eq!(m.state, MoveState::Stopping);
    c.b.kill();
    let failed = c.move_reaches(m.id, MoveState::Failed, 60).await;
    assert!(
        failed.error.as_deref().is_some_and(|e| e.contains("lost")),
        "{failed:?}"
    );
    c.b.start_again();
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;
    assert!(!c.a.volume_dir("storage_manager").exists());
}

// ---------------------------------------------------------------------------------------------
// Backups and restores

impl Cluster {
    /// Backs `volume` up now and waits for the backup to be done.
    async fn backup(&self, volume: &str) -> Backup {
        let b = self
            .admin
            .backup_volume()
            .name(volume)
            .send()
            .await
            .unwrap_or_else(|e| panic!("backup {volume}: {}", SdkError::from(e)))
            .into_inner();
        let done = eventually(120, &format!("the backup of {volume} done"), || async {
            let b = self
                .admin
                .get_backup()
                .id(b.id)
                .send()
                .await
                .ok()?
                .into_inner();
            (b.state != BackupState::Running).then_some(b)
        })
        .await;
        assert_eq!(
            done.state,
            BackupState::Done,
            "{done:?}\nconductor log:\n{}",
            self.conductor.log_tail(30)
        );
        done
    }

    async fn restore(&self, service: &str, backup: Uuid, onto: Uuid) -> VolumeMove {
        let m = self
            .admin
            .restore_service()
            .name(service)
            .body(RestoreRequest {
                backup_id: backup,
                worker_id: onto,
            })
            .send()
            .await
            .unwrap_or_else(|e| panic!("restore {service}: {}", SdkError::from(e)))
            .into_inner();
        self.move_reaches(m.id, MoveState::Done, 120).await
    }
}

/// Whether any file below `dir` contains `needle`.
fn any_file_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            any_file_contains(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_are_incremental_and_encrypted_and_restore_every_service_after_its_machine_is_lost_for_good()
 {
    let mut c = Cluster::start().await;
    let written = write_data(&c).await;

    // storage_manager's volume (on b) is backed up to a's store; the second backup sends almost
    // nothing, since only the database snapshot is new.
    let first = c.backup("storage_manager").await;
    assert_eq!(
        (first.source_worker_id, first.store_worker_id),
        (c.b_id, c.a_id)
    );
    assert!(
        first.bytes >= 3 << 20 && first.bytes_sent == first.bytes,
        "{first:?}"
    );
    let second = c.backup("storage_manager").await;
    assert!(
        second.bytes_sent * 10 < second.bytes,
        "an unchanged volume's backup sent {} of {} bytes",
        second.bytes_sent,
        second.bytes
    );
    let v = c
        .admin
        .get_volume()
        .name("storage_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(v.last_backup_at.is_some());
    // The store holds ciphertext only: neither the bucket's object names nor its key's name.
    let store = c.a.dir.path().join("backups/storage_manager");
    assert!(store.is_dir());
    assert!(
        !any_file_contains(&store, b"dir/large.bin") && !any_file_contains(&store, b"precious")
    );
    assert!(
        any_file_contains(&c.b.volume_dir("storage_manager"), b"dir/large.bin"),
        "the marker is in the volume itself"
    );

    // b is lost for good: its agent, its instances and its whole data directory are gone.
    c.b.lose_for_good();
    wait_for_worker(&c.admin, c.b_id, WorkerStatus::Lost, 30).await;
    c.waits_for_volume("storage_manager", c.b_id, "worker-b")
        .await;
    // The admin restores it onto a from the latest backup.
    let restored = c.restore("storage_manager", second.id, c.a_id).await;
    assert_eq!(restored.backup_id, Some(second.id));
    c.healthy("storage_manager", c.a_id).await;
    data_intact(&c, &written).await;

    // A new machine joins; both services (now on a) are backed up to it, and then a is lost for
    // good too. Both come back on the new machine with every key and object.
    let c_worker = WorkerProcess::start(&c.conductor, "worker-c");
    let c_id = c_worker.id().await;
    wait_for_worker(&c.admin, c_id, WorkerStatus::Live, 30).await;
    let km_backup = c.backup("key_manager").await;
    let sm_backup = c.backup("storage_manager").await;
    assert_eq!(
        (km_backup.store_worker_id, sm_backup.store_worker_id),
        (c_id, c_id)
    );
    let list = c
        .admin
        .list_backups()
        .volume("key_manager")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.first().map(|b| b.id), Some(km_backup.id));
    c.a.lose_for_good();
    wait_for_worker(&c.admin, c.a_id, WorkerStatus::Lost, 30).await;
    c.restore("key_manager", km_backup.id, c_id).await;
    c.restore("storage_manager", sm_backup.id, c_id).await;
    c.healthy("key_manager", c_id).await;
    c.healthy("storage_manager", c_id).await;
    data_intact(&c, &written).await;

    // A restore never overwrites the copy in use.
    let err = failure(
        c.admin
            .restore_service()
            .name("key_manager")
            .body(RestoreRequest {
                backup_id: km_backup.id,
                worker_id: c_id,
            })
            .send()
            .await,
    );
    expect_api_error(err, 409, "restore_over_current_copy");
    drop(c_worker);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_stateful_volume_is_backed_up_on_its_schedule_and_stores_keep_the_newest() {
    let conductor =
        ConductorProcess::start_with(&[("BACKUP_INTERVAL", "3s"), ("BACKUP_KEEP", "2")]).await;
    let admin = conductor.admin().await;
    let a = WorkerProcess::start(&conductor, "worker-a");
    let b = WorkerProcess::start(&conductor, "worker-b");
    let (a_id, b_id) = (a.id().await, b.id().await);
    wait_for_worker(&admin, a_id, WorkerStatus::Live, 30).await;
    wait_for_worker(&admin, b_id, WorkerStatus::Live, 30).await;
    admin
        .enable_service()
        .name("storage_manager")
        .send()
        .await
        .unwrap();
    // With no request, each volume gets backups, kept on the worker not holding it.
    let finished = |b: &Backup| matches!(b.state, BackupState::Done | BackupState::Expired);
    let backups = eventually(120, "four scheduled backups of each volume", || async {
        let all = admin.list_backups().send().await.ok()?.into_inner();
        let count = |v: &str| all.iter().filter(|b| b.volume == v && finished(b)).count();
        (count("key_manager") >= 4 && count("storage_manager") >= 4).then_some(all)
    })
    .await;
    for b in backups.iter().filter(|b| finished(b)) {
        assert_ne!(b.source_worker_id, b.store_worker_id, "{b:?}");
    }
    // Each store keeps the newest two of each volume; the older ones are marked expired, and the
    // contents only they used are gone from the store.
    for volume in ["key_manager", "storage_manager"] {
        let all = admin
            .list_backups()
            .volume(volume)
            .send()
            .await
            .unwrap()
            .into_inner();
        let newest_done: Vec<&Backup> = all
            .iter()
            .filter(|b| b.state == BackupState::Done)
            .collect();
        assert!(
            newest_done.len() <= 2,
            "{volume}: {} backups still done",
            newest_done.len()
        );
        assert!(
            all.iter().any(|b| b.state == BackupState::Expired),
            "{volume}: none expired"
        );
        let store = newest_done[0].store_worker_id;
        let store_dir = if store == a_id {
            a.dir.path()
        } else {
            b.dir.path()
        }
        .join("backups")
        .join(volume);
        let manifests: Vec<String> = std::fs::read_dir(store_dir.join("manifests"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".chunks") && !n.starts_with('.'))
            .collect();
        let kept: Vec<String> = all
            .iter()
            .filter(|b| b.store_worker_id == store && b.state == BackupState::Done)
            .map(|b| b.id.to_string())
            .collect();
        // (A backup may be running now: its manifest is there before its report.)
        assert!(
            kept.iter().all(|k| manifests.contains(k)) && manifests.len() <= 3,
            "{volume}: {manifests:?} kept, {kept:?} done"
        );
        let contents = std::fs::read_dir(store_dir.join("chunks"))
            .unwrap()
            .flatten()
            .map(|d| std::fs::read_dir(d.path()).unwrap().count())
            .sum::<usize>();
        let files = newest_done[0].files as usize;
        assert!(
            contents <= 3 * files.max(1),
            "{volume}: {contents} contents stored for backups of {files} files"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_platform_restores_from_one_passphrase_sealed_file_onto_a_fresh_machine() {
    let mut c = Cluster::start().await;
    let written = write_data(&c).await;
    c.backup("key_manager").await;
    c.backup("storage_manager").await;

    // The admin writes the whole platform to one file.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("cli");
    let (ok, _, err) = cli(
        &config,
        &["login", "--url", &c.conductor.url, "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(ok, "{err}");
    let file = work.path().join("platform.aek");
    let passphrase = "correct horse battery staple";
    let (config2, file2) = (config.clone(), file.display().to_string());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cli(
            &config2,
            &["backup", "--out", &file2, "--passphrase-stdin"],
            Some(&format!("{passphrase}\n")),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let sealed = std::fs::read(&file).unwrap();
    assert!(sealed.len() > 3 << 20, "{} bytes", sealed.len());
    for plain in [&b"dir/large.bin"[..], b"precious", b"BEGIN PRIVATE KEY"] {
        assert!(
            !sealed.windows(plain.len()).any(|w| w == plain),
            "the file holds {:?} in the clear",
            String::from_utf8_lossy(plain)
        );
    }

    // Every machine of the cluster is gone.
    c.conductor.kill();
    c.a.lose_for_good();
    c.b.lose_for_good();

    // A wrong passphrase: a clear error, and nothing written.
    let fresh = work.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let data = fresh.join("data");
    let restore = |pass: &str| {
        cli(
            &config,
            &[
                "restore",
                "--from",
                &file.display().to_string(),
                "--data-dir",
                &data.display().to_string(),
                "--passphrase-stdin",
            ],
            Some(&format!("{pass}\n")),
        )
    };
    let (ok, _, err) = restore("not the passphrase at all");
    assert!(!ok && err.contains("wrong passphrase"), "{err}");
    assert_eq!(
        std::fs::read_dir(&fresh).unwrap().count(),
        0,
        "a refused restore left files behind"
    );
    let (ok, out, err) = restore(passphrase);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = restore(passphrase);
    assert!(
        !ok && err.contains("fresh directory"),
        "a second restore over the first must be refused: {err}"
    );

    // `aerekos up` on the restored directory: the old admin password logs in, the services start
    // on this machine with their data, every ciphertext decrypts and every object reads back.
    let up = UpProcess::start(&data).await;
    let admin = Conductor::login(&up.url, "admin", ADMIN_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("old password: {e}\n{}", up.log_tail(30)));
    for service in ["key_manager", "storage_manager"] {
        eventually(
            90,
            &format!("{service} healthy after the restore"),
            || async {
                let d = admin
                    .get_deployment()
                    .name(service)
                    .send()
                    .await
                    .ok()?
                    .into_inner();
                (d.healthy == 1).then_some(())
            },
        )
        .await;
    }
    data_intact_at(&up.url, &admin.token().unwrap(), &written).await;
}
