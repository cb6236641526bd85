//! secrets_manager throughput through the conductor's gateway, with the Rust SDK: reads of a 1 KiB
//! secret against key_manager's decrypt of 1 KiB through the same gateway (the aim: ≥ 0.8×), and
//! writes of new versions. A conductor process and a worker process, with key_manager and
//! secrets_manager deployed onto it as the platform runs them; throttling off everywhere.
//! Run: `cargo bench -p aerekos-tests --bench secrets_manager` (AEREKOS_BIN: the release binary;
//! `cargo xtask bench` builds it).

use std::collections::HashMap;

use aerekos_sdk::{
    KeyManager, SecretsManager,
    conductor::types::DeployRequest,
    secrets_manager::types::{PutValueRequest, SecretValue},
};
use aerekos_tests::{
    bench, eventually, new_secret,
    processes::{ConductorProcess, WorkerProcess},
    write_benchmark_section,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};

const CONCURRENCY: usize = 32;
const PAYLOAD: usize = 1024;
const RUNS: usize = 3;

#[tokio::main]
async fn main() {
    let unthrottled = [
        ("RATE_LIMIT_PER_ADDRESS", "off"),
        ("RATE_LIMIT_PER_CALLER", "off"),
    ];
    let conductor =
        ConductorProcess::start_with(&[unthrottled[0], unthrottled[1], ("RUST_LOG", "warn")]).await;
    let worker = WorkerProcess::start_with(&conductor, "bench", &[("RUST_LOG", "warn")]);
    let admin = conductor.admin().await;
    let env: HashMap<String, String> = unthrottled
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("RUST_LOG".into(), "warn".into())])
        .collect();
    for service in ["key_manager", "secrets_manager"] {
        let req = DeployRequest {
            env: env.clone(),
            ..Default::default()
        };
        eventually(60, "the worker joins and the service deploys", || async {
            admin
                .deploy_service()
                .name(service)
                .body(req.clone())
                .send()
                .await
                .ok()
        })
        .await;
    }
    let token = admin.token().unwrap();
    let km = KeyManager::with_token(&conductor.url, &token);
    let secrets = SecretsManager::with_token(&conductor.url, &token);
    let payload = STANDARD.encode(vec![7u8; PAYLOAD]);
    eventually(120, "key_manager answers through the gateway", || async {
        km.create_key()
            .body_map(|b| b.name("bench"))
            .send()
            .await
            .ok()
    })
    .await;
    let ciphertext = km
        .encrypt()
        .key("bench")
        .body_map(|b| b.plaintext(payload.clone()))
        .send()
        .await
        .unwrap()
        .into_inner()
        .ciphertext;
    let value = SecretValue {
        bytes: Some(payload.clone()),
        json: Default::default(),
    };
    eventually(
        120,
        "secrets_manager answers through the gateway",
        || async {
            secrets
                .create_secret()
                .body(new_secret("bench/one-kib", Some(value.clone())))
                .send()
                .await
                .ok()
        },
    )
    .await;

    let (mut decrypts, mut reads, mut writes) = (vec![], vec![], vec![]);
    let roots = [conductor.pid(), worker.pid()];
    // Where the CPU of the last run's decrypts and reads went, per operation (the profile).
    let (mut decrypt_cpu, mut read_cpu) = (String::new(), String::new());
    for _ in 0..RUNS {
        let meter = bench::CpuMeter::start(&roots);
        let (km, ciphertext) = (km.clone(), ciphertext.clone());
        decrypts.push(
            bench::load(CONCURRENCY, move |_| {
                let (km, ciphertext) = (km.clone(), ciphertext.clone());
                async move {
                    km.decrypt()
                        .key("bench")
                        .body_map(|b| b.ciphertext(ciphertext))
                        .send()
                        .await
                        .expect("decrypt");
                }
            })
            .await,
        );
        decrypt_cpu = meter.per_operation(
            decrypts.last().unwrap() * (bench::WARMUP + bench::MEASURE).as_secs_f64(),
        );
        let meter = bench::CpuMeter::start(&roots);
        let s = secrets.clone();
        reads.push(
            bench::load(CONCURRENCY, move |_| {
                let s = s.clone();
                async move {
                    let got = s
                        .get_secret_value()
                        .name("bench/one-kib")
                        .send()
                        .await
                        .expect("read");
                    assert!(
                        got.into_inner()
                            .value
                            .bytes
                            .is_some_and(|b| b.len() > PAYLOAD)
                    );
                }
            })
            .await,
        );
        read_cpu = meter
            .per_operation(reads.last().unwrap() * (bench::WARMUP + bench::MEASURE).as_secs_f64());
        let (s, value) = (secrets.clone(), value.clone());
        writes.push(
            bench::load(CONCURRENCY, move |_| {
                let (s, value) = (s.clone(), value.clone());
                async move {
                    let req = PutValueRequest {
                        value,
                        cas: None,
                        labels: vec![],
                    };
                    s.put_secret_value()
                        .name("bench/one-kib")
                        .body(req)
                        .send()
                        .await
                        .expect("write");
                }
            })
            .await,
        );
    }
    let (decrypt, read, write) = (
        bench::median(decrypts.clone()),
        bench::median(reads.clone()),
        bench::median(writes.clone()),
    );
    println!("decrypt {decrypts:?} read {reads:?} write {writes:?}");
    println!("CPU per decrypt: {decrypt_cpu}\nCPU per read: {read_cpu}");
    let ratio = read / decrypt;
    let verdict = if ratio >= 0.8 { "met" } else { "not met" };
    let when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let markdown = format!(
        "## secrets_manager\n\n\
         `cargo bench -p aerekos-tests --bench secrets_manager` (release; `AEREKOS_BIN=target/release/aerekos`). A conductor \
         process and one worker process on this machine, key_manager and secrets_manager deployed onto it as the platform \
         runs them, throttling off; everything through the conductor's gateway with the Rust SDK and an admin's token, \
         {CONCURRENCY} requests at once. A secret read is the gateway to secrets_manager, which asks key_manager (through the \
         gateway again) to unwrap the version's data key unless it unwrapped it within `DATA_KEY_CACHE_SECS` (default \
         30 s), finds the sealed version in its read cache unless a write came between, and audits the read before \
         answering; the reference is key_manager's own decrypt of 1 KiB through the \
         gateway. Medians of {RUNS} runs of 5 s (all runs: decrypts {decrypts:.0?}, reads {reads:.0?}). Last run: {when}.\n\n\
         | measurement | secrets_manager | reference: key_manager decrypt (1 KiB) | ratio | aim |\n\
         |---|---|---|---|---|\n\
         | reads/s of a 1 KiB secret | {read:.0} | {decrypt:.0} | {ratio:.2} | ≥ 0.8×: {verdict} |\n\
         | writes/s of a 1 KiB version | {write:.0} | — | — | — |\n\n\
         CPU per operation by process, from `/proc/<pid>/stat` over the last run (warm-up included):\n\n\
         - decrypt: {decrypt_cpu}\n\
         - read: {read_cpu}\n"
    );
    write_benchmark_section("secrets_manager", &markdown);
}
