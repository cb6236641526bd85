//! key_manager throughput: encrypt and decrypt of 1 KiB through the Rust SDK over HTTP, against raw
//! AES-256-GCM in-process and against moto's KMS server (PyPI `moto[server]`), all in one run.
//! Run: `cargo bench -p aerekos-tests --bench key_manager` (or `cargo xtask bench`, which installs moto).

use aerekos_common::throttle::ThrottleConfig;
use std::{
    collections::HashMap,
    fmt::Write as _,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aerekos_sdk::KeyManager;
use aerekos_tests::{TestConductor, TestKeyManager, bench, write_benchmark_section};
use base64::{Engine as _, engine::general_purpose::STANDARD};

const CONCURRENCY: usize = 32;
const PAYLOAD: usize = 1024;

/// Raw AES-256-GCM seal (or open) of 1 KiB on every core for `bench::MEASURE`; ops/s.
fn raw_aes_gcm(open: bool) -> f64 {
    use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce, aead::Aead as _};
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (count, stop) = (count.clone(), stop.clone());
            std::thread::spawn(move || {
                let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
                let data = vec![1u8; PAYLOAD];
                let sealed = cipher
                    .encrypt(&Nonce::from([0u8; 12]), data.as_slice())
                    .unwrap();
                let mut n = 0u64;
                let mut nonce = [0u8; 12];
                while !stop.load(Ordering::Relaxed) {
                    if open {
                        std::hint::black_box(
                            cipher
                                .decrypt(&Nonce::from([0u8; 12]), sealed.as_slice())
                                .unwrap(),
                        );
                    } else {
                        nonce[..8].copy_from_slice(&n.to_le_bytes());
                        std::hint::black_box(
                            cipher
                                .encrypt(&Nonce::from(nonce), data.as_slice())
                                .unwrap(),
                        );
                    }
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(bench::MEASURE);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// moto's KMS on a free port; None (with the reason) when moto is not installed.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    async fn start() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("moto_server could not start ({e}); `pip install 'moto[server]'`")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{url}/moto-api/")).send().await.is_ok() {
                return Ok(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("moto_server did not answer within 10 s".into())
    }

    fn request(
        &self,
        http: &reqwest::Client,
        target: &str,
        body: serde_json::Value,
    ) -> reqwest::RequestBuilder {
        http.post(format!("{}/", self.url))
            .header("X-Amz-Target", format!("TrentService.{target}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            // moto reads the region from the credential scope; it does not check the signature.
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0")
            .json(&body)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto_rates(moto: &Moto) -> (f64, f64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let key: serde_json::Value = moto
        .request(&http, "CreateKey", serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let plaintext = STANDARD.encode(vec![1u8; PAYLOAD]);
    let sealed: serde_json::Value = moto
        .request(
            &http,
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": plaintext}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let blob = sealed["CiphertextBlob"].as_str().unwrap().to_owned();
    let encrypt_body = serde_json::json!({"KeyId": key_id, "Plaintext": plaintext});
    let decrypt_body = serde_json::json!({"CiphertextBlob": blob});
    let mut rates = vec![];
    for (target, body) in [("Encrypt", encrypt_body), ("Decrypt", decrypt_body)] {
        let (http, url) = (http.clone(), moto.url.clone());
        let body = Arc::new(body);
        rates.push(
            bench::load(CONCURRENCY, move |_| {
                let req = http
                    .post(format!("{url}/"))
                    .header("X-Amz-Target", format!("TrentService.{target}"))
                    .header("Content-Type", "application/x-amz-json-1.1")
                    .header("Authorization", "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0")
                    .json(&*body);
                async move {
                    let resp = req.send().await.expect("moto request");
                    assert!(resp.status().is_success(), "moto answered {}", resp.status());
                    let _ = resp.bytes().await;
                }
            })
            .await,
        );
    }
    (rates[0], rates[1])
}

#[tokio::main]
async fn main() {
    // Throttling off: these rows measure the KMS, not the limiter (the conductor bench does).
    let conductor = TestConductor::start_with(|c| c.throttle = ThrottleConfig::off()).await;
    let km = TestKeyManager::start_with(&conductor, |c| c.throttle = ThrottleConfig::off()).await;
    let client: KeyManager = km.client(&conductor.admin().await);
    client
        .create_key()
        .body_map(|b| b.name("bench"))
        .send()
        .await
        .unwrap();
    let plaintext = STANDARD.encode(vec![1u8; PAYLOAD]);
    let ciphertext = client
        .encrypt()
        .key("bench")
        .body_map(|b| b.plaintext(plaintext.clone()))
        .send()
        .await
        .unwrap()
        .into_inner()
        .ciphertext;

    let (c, p) = (client.clone(), plaintext.clone());
    let sdk_encrypt = bench::load(CONCURRENCY, move |_| {
        let (c, p) = (c.clone(), p.clone());
        async move {
            c.encrypt()
                .key("bench")
                .body_map(|b| b.plaintext(p))
                .send()
                .await
                .expect("encrypt");
        }
    })
    .await;
    let (c, ct) = (client.clone(), ciphertext.clone());
    let sdk_decrypt = bench::load(CONCURRENCY, move |_| {
        let (c, ct) = (c.clone(), ct.clone());
        async move {
            let out = c
                .decrypt()
                .key("bench")
                .body_map(|b| b.ciphertext(ct).context(HashMap::new()))
                .send()
                .await
                .expect("decrypt");
            assert_eq!(out.into_inner().plaintext.len(), 1368, "1 KiB back");
        }
    })
    .await;
    km.stop().await;
    conductor.stop().await;

    let raw_encrypt = tokio::task::spawn_blocking(|| raw_aes_gcm(false))
        .await
        .unwrap();
    let raw_decrypt = tokio::task::spawn_blocking(|| raw_aes_gcm(true))
        .await
        .unwrap();

    let moto = match Moto::start().await {
        Ok(moto) => {
            let rates = moto_rates(&moto).await;
            Ok(rates)
        }
        Err(why) => Err(why),
    };

    let mut md = String::new();
    writeln!(md, "## key_manager\n").unwrap();
    writeln!(md, "`cargo bench -p aerekos-tests --bench key_manager` (release; `cargo xtask bench` installs moto first). 1 KiB").unwrap();
    writeln!(md, "payloads, {CONCURRENCY} concurrent requests; key_manager through the Rust SDK (progenitor client, user token,").unwrap();
    writeln!(md, "every operation audited with a group commit before it is answered); moto through raw reqwest with the same").unwrap();
    writeln!(md, "concurrency; raw AES-256-GCM on every core in-process. One run of {}s each. Last run: {}.\n", bench::MEASURE.as_secs(), chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")).unwrap();
    writeln!(md, "| operation | key_manager (SDK over HTTP) | raw AES-256-GCM in-process | ratio | moto KMS server | key_manager / moto | aim |").unwrap();
    writeln!(md, "|---|---|---|---|---|---|---|").unwrap();
    for (name, ours, raw, moto_rate) in [
        (
            "encrypt",
            sdk_encrypt,
            raw_encrypt,
            moto.as_ref().ok().map(|r| r.0),
        ),
        (
            "decrypt",
            sdk_decrypt,
            raw_decrypt,
            moto.as_ref().ok().map(|r| r.1),
        ),
    ] {
        let (moto_cell, vs) = match moto_rate {
            Some(m) => (format!("{m:.0} ops/s"), format!("{:.1}×", ours / m)),
            None => ("not measured".to_owned(), "–".to_owned()),
        };
        writeln!(
            md,
            "| {name} | {ours:.0} ops/s | {raw:.0} ops/s | {:.4} | {moto_cell} | {vs} | {} |",
            ours / raw,
            if name == "encrypt" {
                "well above 10,000/s"
            } else {
                ""
            }
        )
        .unwrap();
    }
    if let Err(why) = &moto {
        writeln!(md, "\nmoto was not measured: {why}").unwrap();
    }
    print!("{md}");
    write_benchmark_section("key_manager", &md);
}
