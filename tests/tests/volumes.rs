//! Stateful services never lose their data when a machine drops out: a conductor and two workers,
//! each its own process with its own data directory, key_manager and storage_manager deployed onto
//! them as processes, and then the worker holding a service's volume paused past its TTL
//! (SIGSTOP, as a network cut looks from outside), killed with SIGKILL, or the conductor killed
//! or wiped. What the tests check: no empty replacement is ever started, the gateway's 503 names
//! the volume and the worker while it is away, and the same instance serves the same data when the
//! worker returns.

use std::time::Duration;

use aerekos_sdk::{
    Conductor, KeyManager, SdkError, StorageManager,
    conductor::types::{DeployRequest, Deployment, InstanceHealth, PlacementStrategy, WorkerStatus},
};
use aerekos_tests::{
    expect_api_error, failure,
    processes::{ConductorProcess, WORKER_TTL, WorkerProcess, wait_for_worker},
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
        let conductor = ConductorProcess::start().await;
        let admin = conductor.admin().await;
        let a = WorkerProcess::start(&conductor, "worker-a");
        let a_id = a.id().await;
        wait_for_worker(&admin, a_id, WorkerStatus::Live, 30).await;
        admin.enable_service().name("key_manager").send().await.expect("enable key_manager");
        let b = WorkerProcess::start(&conductor, "worker-b");
        let b_id = b.id().await;
        wait_for_worker(&admin, b_id, WorkerStatus::Live, 30).await;
        let cluster = Self { conductor, admin, a, b, a_id, b_id };
        cluster.healthy("key_manager", a_id).await;
        cluster.admin.enable_service().name("storage_manager").send().await.expect("enable storage_manager");
        cluster.healthy("storage_manager", b_id).await;
        cluster
    }

    async fn deployment(&self, service: &str) -> Deployment {
        self.admin.get_deployment().name(service).send().await.expect("deployment").into_inner()
    }

    /// Waits for `service` to have one healthy instance, on `worker`; returns its id.
    async fn healthy(&self, service: &str, worker: Uuid) -> Uuid {
        let what = format!("{service} healthy on {worker}");
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let d = self.deployment(service).await;
                if let [only] = d.instances.as_slice() {
                    if only.health == InstanceHealth::Healthy && d.healthy == 1 {
                        assert_eq!(only.worker_id, worker, "{service} runs on the wrong worker: {d:?}");
                        return only.id;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}\nconductor log:\n{}", self.conductor.log_tail(40)))
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
        assert_eq!((wait.volume.as_str(), wait.worker_id), (service, worker), "{wait:?}");
        assert_eq!(wait.worker_name.as_deref(), Some(worker_name));
        assert!(wait.lost_since.is_some());
        // The gateway names the volume and the worker, with Retry-After (from the next pass of the
        // deployment loop, which rebuilds its routes).
        let http = reqwest::Client::new();
        let resp = eventually(5, "the gateway answers 503", || async {
            let resp = http
                .get(format!("{}/api/{service}/anything", self.conductor.url))
                .bearer_auth(self.admin.token().unwrap())
                .send()
                .await
                .unwrap();
            (resp.status() == 503).then_some(resp)
        })
        .await;
        assert!(resp.headers().contains_key("retry-after"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "volume_unavailable", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("volume {service}")) && message.contains(worker_name) && message.contains(&worker.to_string()), "{message}");
        d
    }

    /// For `secs` seconds, `service` has no instance anywhere but on `worker`.
    async fn stays_only_on(&self, service: &str, worker: Uuid, secs: u64) {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < until {
            let d = self.deployment(service).await;
            assert!(d.instances.iter().all(|i| i.worker_id == worker), "{service} was placed elsewhere: {d:?}");
            assert_eq!(d.instances.len(), 1, "{d:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn decrypt(km: &KeyManager, ciphertext: &str) -> Result<Vec<u8>, SdkError> {
    let r = km.decrypt().key("precious").body_map(|b| b.ciphertext(ciphertext)).send().await.map_err(SdkError::from)?;
    Ok(STANDARD.decode(r.into_inner().plaintext).unwrap())
}

async fn get_object(storage: &StorageManager, bucket: &str, key: &str) -> Result<Vec<u8>, SdkError> {
    let response = storage.get_object().bucket(bucket).key(key).send().await?;
    let body: Vec<Bytes> = response.into_inner().into_inner().try_collect().await.map_err(|e| SdkError::Transport(e.to_string()))?;
    Ok(body.concat())
}

/// Bytes that differ at every offset.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Data written before the faults: a key and a ciphertext, a bucket encrypted under that key with
/// two objects.
struct Written {
    ciphertext: String,
    objects: Vec<(String, Vec<u8>)>,
}

async fn write_data(c: &Cluster) -> Written {
    let km = c.key_manager();
    km.create_key().body_map(|b| b.name("precious")).send().await.expect("create key");
    let ciphertext = km
        .encrypt()
        .key("precious")
        .body_map(|b| b.plaintext(STANDARD.encode(b"the crown jewels")))
        .send()
        .await
        .expect("encrypt")
        .into_inner()
        .ciphertext;
    let storage = c.storage();
    storage
        .create_bucket()
        .body_map(|b| b.name("vault").default_encryption_key(Some("precious".into())))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket: {}", SdkError::from(e)));
    let objects = vec![("small.txt".to_owned(), b"hello".to_vec()), ("dir/large.bin".to_owned(), pattern(3 << 20, 7))];
    for (key, data) in &objects {
        storage.put_object().bucket("vault").key(key).body(data.clone()).send().await.unwrap_or_else(|e| panic!("put {key}: {}", SdkError::from(e)));
    }
    Written { ciphertext, objects }
}

/// Every earlier ciphertext decrypts and every object reads back byte-identical.
async fn data_intact(c: &Cluster, w: &Written) {
    let plain = eventually(30, "the earlier ciphertext decrypts", || async { decrypt(&c.key_manager(), &w.ciphertext).await.ok() }).await;
    assert_eq!(plain, b"the crown jewels");
    let storage = c.storage();
    for (key, data) in &w.objects {
        let got = eventually(30, &format!("{key} reads back"), || async { get_object(&storage, "vault", key).await.ok() }).await;
        assert!(got == *data, "{key}: {} bytes back, {} written, or different bytes", got.len(), data.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_holder_is_waited_for_and_its_instance_serves_the_same_data_when_it_returns() {
    let c = Cluster::start().await;
    let written = write_data(&c).await;
    let km_instance = c.healthy("key_manager", c.a_id).await;
    let sm_instance = c.healthy("storage_manager", c.b_id).await;
    let volumes = c.admin.list_volumes().send().await.unwrap().into_inner();
    let holders: Vec<(String, Uuid)> = volumes.iter().map(|v| (v.name.clone(), v.worker_id)).collect();
    assert_eq!(holders, vec![("key_manager".to_owned(), c.a_id), ("storage_manager".to_owned(), c.b_id)]);

    // key_manager's worker drops out (its instance keeps running, unreachable as far as the
    // conductor knows): the service waits, nothing empty starts on b, and the gateway says why.
    c.a.pause();
    wait_for_worker(&c.admin, c.a_id, WorkerStatus::Lost, 30).await;
    c.waits_for_volume("key_manager", c.a_id, "worker-a").await;
    let err = failure(c.key_manager().list_keys().send().await);
    let body = expect_api_error(err, 503, "volume_unavailable");
    assert!(body.message.contains("volume key_manager"), "{}", body.message);
    c.stays_only_on("key_manager", c.a_id, 2 * WORKER_TTL.as_secs()).await;
    assert!(!c.b.volume_dir("key_manager").exists(), "an empty key_manager volume was made on worker b");
    let v = c.admin.get_volume().name("key_manager").send().await.unwrap().into_inner();
    assert_eq!(v.worker_status, Some(WorkerStatus::Lost));

    // It returns: the same instance serves the same keys.
    c.a.resume();
    assert_eq!(c.healthy("key_manager", c.a_id).await, km_instance, "the instance a kept running is used again");
    assert!(c.deployment("key_manager").await.waiting_for_volume.is_none());
    data_intact(&c, &written).await;

    // The same for storage_manager and its objects.
    c.b.pause();
    wait_for_worker(&c.admin, c.b_id, WorkerStatus::Lost, 30).await;
    c.waits_for_volume("storage_manager", c.b_id, "worker-b").await;
    let err = failure(c.storage().list_buckets().send().await);
    expect_api_error(err, 503, "volume_unavailable");
    c.stays_only_on("storage_manager", c.b_id, 2 * WORKER_TTL.as_secs()).await;
    assert!(!c.a.volume_dir("storage_manager").exists(), "an empty storage_manager volume was made on worker a");
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
    c.waits_for_volume("storage_manager", c.b_id, "worker-b").await;
    c.stays_only_on("storage_manager", c.b_id, 2 * WORKER_TTL.as_secs()).await;
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
    c.admin.disable_service().name("storage_manager").send().await.unwrap();
    let anywhere = DeployRequest { strategy: Some(PlacementStrategy::Binpack), ..Default::default() };
    c.admin.deploy_service().name("storage_manager").body(anywhere).send().await.unwrap();
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;

    // Asking for another worker is refused, naming the volume and the way out.
    let elsewhere = DeployRequest { worker_ids: vec![c.a_id], ..Default::default() };
    let err = failure(c.admin.deploy_service().name("storage_manager").body(elsewhere.clone()).send().await);
    let body = expect_api_error(err, 409, "volume_elsewhere");
    assert!(body.message.contains("volume storage_manager") && body.message.contains("start_empty"), "{}", body.message);
    c.admin.disable_service().name("storage_manager").send().await.unwrap();
    let err = failure(c.admin.deploy_service().name("storage_manager").body(elsewhere).send().await);
    expect_api_error(err, 409, "volume_elsewhere");
    // start_empty is for stateful services only.
    let define = aerekos_sdk::conductor::types::ServiceDefinition::builder()
        .name("stateless_app")
        .command(vec!["sleep".to_owned(), "600".to_owned()]);
    c.admin.define_service().body(define).send().await.unwrap();
    let err = failure(
        c.admin.deploy_service().name("stateless_app").body(DeployRequest { start_empty: Some(true), ..Default::default() }).send().await,
    );
    expect_api_error(err, 400, "invalid_deployment");

    // With start_empty, it starts with no data on a, and b's copy is left alone and listed.
    let req = DeployRequest { worker_ids: vec![c.a_id], start_empty: Some(true), ..Default::default() };
    c.admin.deploy_service().name("storage_manager").body(req).send().await.unwrap();
    c.healthy("storage_manager", c.a_id).await;
    let buckets = c.storage().list_buckets().send().await.unwrap().into_inner();
    assert!(buckets.is_empty(), "started empty: {buckets:?}");
    assert!(c.b.volume_dir("storage_manager").read_dir().unwrap().next().is_some(), "b's copy was left in place");
    let v = eventually(30, "b's old copy listed", || async {
        let v = c.admin.get_volume().name("storage_manager").send().await.ok()?.into_inner();
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
    assert!(c.admin.list_volumes().send().await.unwrap().into_inner().is_empty());

    // Deployed anywhere, each service goes to the worker reporting its volume, and the data is
    // there: keys decrypt the old ciphertext (the services trust the new conductor's tokens
    // because the workers restart them for the new assignments).
    c.admin.enable_service().name("storage_manager").send().await.unwrap();
    c.healthy("key_manager", c.a_id).await;
    c.healthy("storage_manager", c.b_id).await;
    data_intact(&c, &written).await;
    let volumes = c.admin.list_volumes().send().await.unwrap().into_inner();
    let holders: Vec<(String, Uuid)> = volumes.iter().map(|v| (v.name.clone(), v.worker_id)).collect();
    assert_eq!(holders, vec![("key_manager".to_owned(), c.a_id), ("storage_manager".to_owned(), c.b_id)]);
}
