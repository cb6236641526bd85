//! storage_manager's S3 endpoint against Garage (crates.io `garage`, an S3 server in Rust) on this
//! machine in the same run, with one S3 client for both: 4 KiB PUT and GET objects/s with 16
//! concurrent clients, and 1 GiB PUT and GET in MB/s; against the disk's (1 MiB writes + fsync,
//! then reads) and loopback TCP's own limits.
//!
//! Run: `cargo xtask bench` (builds the release `aerekos`, installs Garage with `cargo install
//! garage` if `GARAGE_BIN` is unset and none is on PATH), or
//! `AEREKOS_BIN=target/release/aerekos GARAGE_BIN=… cargo bench -p aerekos-tests --bench storage_manager`.

use aerekos_common::throttle::ThrottleConfig;
use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aerekos_tests::{
    STORAGE_MANAGER, TestConductor, TestKeyManager, TestService, bench, eventually, free_port,
    write_benchmark_section,
};
use bytes::Bytes;
use futures_util::stream;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

const CLIENTS: usize = 16;
const SMALL: usize = 4 * 1024;
/// Objects the GET rows read (written first, outside the measurement).
const GET_SET: u64 = 2_000;
const MIB: usize = 1 << 20;
const LARGE_MIB: usize = 1024;
/// Each row is measured this many times; the median is reported (this machine's runs vary).
const RUNS: usize = 3;

/// An S3 endpoint and the credentials and region to sign for.
#[derive(Clone)]
struct S3Target {
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
    http: reqwest::Client,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

impl S3Target {
    /// A SigV4-signed request (UNSIGNED-PAYLOAD) for a path-style `/bucket/key` with plain ASCII names.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let now = chrono::Utc::now();
        let (date, amz_date) = (
            now.format("%Y%m%d").to_string(),
            now.format("%Y%m%dT%H%M%SZ").to_string(),
        );
        let host = self.endpoint.trim_start_matches("http://");
        let canonical = format!(
            "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz_date}\n\n\
             host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key = [date.as_str(), &self.region, "s3", "aws4_request"]
            .iter()
            .fold(
                format!("AWS4{}", self.secret_key).into_bytes(),
                |k, part| hmac(&k, part),
            );
        let signature = hex(&hmac(&key, &to_sign));
        self.http
            .request(method, format!("{}{path}", self.endpoint))
            .header("x-amz-date", amz_date)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                    self.access_key
                ),
            )
    }

    async fn put(&self, path: &str, body: reqwest::Body, len: u64) {
        let response = self
            .request(reqwest::Method::PUT, path)
            .header("content-length", len)
            .body(body)
            .send()
            .await
            .expect("PUT");
        let status = response.status();
        assert!(
            status.is_success(),
            "PUT {path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// GETs `path`, draining the body; returns its length.
    async fn get(&self, path: &str) -> u64 {
        let mut response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        let mut n = 0;
        while let Some(chunk) = response.chunk().await.expect("GET body") {
            n += chunk.len() as u64;
        }
        n
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS * 2)
        .build()
        .unwrap()
}

/// The four measurements for one server, each the median of [`RUNS`]: (PUT 4 KiB/s, GET 4 KiB/s,
/// PUT 1 GiB MB/s, GET 1 GiB MB/s).
async fn measure(target: &S3Target, bucket: &str) -> [f64; 4] {
    let small = Bytes::from(vec![0x5Au8; SMALL]);
    let mut put_small = vec![];
    for run in 0..RUNS {
        let (t, b, small) = (target.clone(), bucket.to_owned(), small.clone());
        put_small.push(
            bench::load(CLIENTS, move |i| {
                let (t, path, body) = (t.clone(), format!("/{b}/put-{run}-{i}"), small.clone());
                async move { t.put(&path, body.into(), SMALL as u64).await }
            })
            .await,
        );
    }
    for i in 0..GET_SET {
        target
            .put(
                &format!("/{bucket}/get-{i}"),
                small.clone().into(),
                SMALL as u64,
            )
            .await;
    }
    let mut get_small = vec![];
    for _ in 0..RUNS {
        let (t, b) = (target.clone(), bucket.to_owned());
        get_small.push(
            bench::load(CLIENTS, move |i| {
                let (t, path) = (t.clone(), format!("/{b}/get-{}", i % GET_SET));
                async move {
                    assert_eq!(t.get(&path).await, SMALL as u64);
                }
            })
            .await,
        );
    }
    let (mut put_large, mut get_large) = (vec![], vec![]);
    for _ in 0..RUNS {
        let block = Bytes::from(vec![0xA5u8; MIB]);
        let body =
            stream::iter((0..LARGE_MIB).map(move |_| Ok::<_, std::io::Error>(block.clone())));
        let started = Instant::now();
        target
            .put(
                &format!("/{bucket}/large"),
                reqwest::Body::wrap_stream(body),
                (LARGE_MIB * MIB) as u64,
            )
            .await;
        put_large.push(mb_per_s(started.elapsed()));
        let started = Instant::now();
        assert_eq!(
            target.get(&format!("/{bucket}/large")).await,
            (LARGE_MIB * MIB) as u64
        );
        get_large.push(mb_per_s(started.elapsed()));
    }
    [
        bench::median(put_small),
        bench::median(get_small),
        bench::median(put_large),
        bench::median(get_large),
    ]
}

fn mb_per_s(elapsed: Duration) -> f64 {
    (LARGE_MIB * MIB) as f64 / 1e6 / elapsed.as_secs_f64()
}

/// The disk's own limit here: 1 GiB in 1 MiB writes then fsync, and reading it back.
fn disk_reference(dir: &Path) -> (f64, f64) {
    let path = dir.join("disk-reference");
    let block = vec![0x3Cu8; MIB];
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..LARGE_MIB {
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
    let write = mb_per_s(started.elapsed());
    let started = Instant::now();
    let mut file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; MIB];
    while std::io::Read::read(&mut file, &mut buf).unwrap() > 0 {}
    let read = mb_per_s(started.elapsed());
    std::fs::remove_file(&path).unwrap();
    (write, read)
}

/// Loopback TCP's own limit here: 1 GiB through one connection, 1 MiB writes.
async fn loopback_reference() -> f64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; MIB];
        let mut n = 0usize;
        loop {
            let read = socket.read(&mut buf).await.unwrap();
            if read == 0 {
                return n;
            }
            n += read;
        }
    });
    let block = vec![0x11u8; MIB];
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..LARGE_MIB {
        socket.write_all(&block).await.unwrap();
    }
    socket.shutdown().await.unwrap();
    assert_eq!(sink.await.unwrap(), LARGE_MIB * MIB);
    mb_per_s(started.elapsed())
}

/// Garage, single node, in `dir`: data fsynced like ours (`data_fsync = true`), LMDB metadata.
struct Garage {
    child: Child,
    target: S3Target,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn garage_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return Some(p.into());
    }
    Command::new("garage")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "garage".into())
}

async fn start_garage(bin: &Path, dir: &Path) -> Garage {
    let (s3_port, rpc_port) = (free_port(), free_port());
    let config = dir.join("garage.toml");
    let secret: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + 11) as u8))
        .collect();
    std::fs::write(
        &config,
        format!(
            "metadata_dir = \"{0}/meta\"\ndata_dir = \"{0}/data\"\ndb_engine = \"lmdb\"\nreplication_factor = 1\n\
             data_fsync = true\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cli = |args: &[&str]| -> String {
        let out = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .expect("garage CLI");
        assert!(
            out.status.success(),
            "garage {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let log = std::fs::File::create(dir.join("garage.log")).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting garage");
    let node = eventually(30, "garage answers its CLI", || {
        let out = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(["node", "id", "-q"])
            .output();
        async move {
            out.ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        }
    })
    .await;
    let node = node.split('@').next().unwrap().to_owned();
    cli(&["layout", "assign", "-z", "dc1", "-c", "10G", &node]);
    cli(&["layout", "apply", "--version", "1"]);
    let key = cli(&["key", "create", "bench-key"]);
    let field = |name: &str| {
        key.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {key}"))
    };
    let (access_key, secret_key) = (field("Key ID:"), field("Secret key:"));
    cli(&["bucket", "create", "bench"]);
    cli(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        "bench",
        "--key",
        "bench-key",
    ]);
    let target = S3Target {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        access_key,
        secret_key,
        region: "garage".into(),
        http: client(),
    };
    Garage { child, target }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let (disk_write, disk_read) = disk_reference(dir.path());
    let loopback = loopback_reference().await;
    println!(
        "references: disk write+fsync {disk_write:.0} MB/s, read {disk_read:.0} MB/s, loopback TCP {loopback:.0} MB/s"
    );

    // Throttling off: these rows measure storage, not the limiter (the conductor bench does).
    let conductor = TestConductor::start_with(|c| c.throttle = ThrottleConfig::off()).await;
    let key_manager =
        TestKeyManager::start_with(&conductor, |c| c.throttle = ThrottleConfig::off()).await;
    let service = TestService::start_with(
        &STORAGE_MANAGER,
        &conductor,
        &key_manager.url,
        None,
        &[
            ("RATE_LIMIT_PER_ADDRESS", "off"),
            ("RATE_LIMIT_PER_CALLER", "off"),
        ],
    )
    .await;
    let storage = service.storage_client(&conductor.admin().await);
    storage
        .create_bucket()
        .body_map(|b| b.name("bench"))
        .send()
        .await
        .unwrap();
    let key = storage
        .create_access_key()
        .body_map(|b| b.description("benchmark"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let ours = S3Target {
        endpoint: service.url.clone(),
        access_key: key.id,
        secret_key: key.secret.unwrap(),
        region: "us-east-1".into(),
        http: client(),
    };
    let ours_figures = measure(&ours, "bench").await;
    println!("storage_manager: {ours_figures:?}");
    let ours_peak = service.memory_kib("VmHWM");
    drop(service);

    let garage_figures = match garage_bin() {
        Some(bin) => {
            let garage_dir = tempfile::tempdir().unwrap();
            let garage = start_garage(&bin, garage_dir.path()).await;
            let figures = measure(&garage.target, "bench").await;
            println!("garage: {figures:?}");
            Some(figures)
        }
        None => {
            println!(
                "garage is not installed (set GARAGE_BIN or `cargo install garage`): no comparison"
            );
            None
        }
    };

    let build = if std::env::var("AEREKOS_BIN").is_ok_and(|b| b.contains("release")) {
        "release"
    } else {
        "debug"
    };
    let mut md = String::new();
    writeln!(md, "## storage_manager: S3 endpoint against Garage\n").unwrap();
    writeln!(
        md,
        "Command: `cargo xtask bench` (or `AEREKOS_BIN=target/release/aerekos GARAGE_BIN=… cargo bench -p aerekos-tests --bench storage_manager`). \
         One S3 client (SigV4, UNSIGNED-PAYLOAD, reqwest) drives both servers, one after the other, on this 2-core machine; the \
         client shares the cores. storage_manager ({build} build) runs as its own process; Garage {} runs single-node with \
         `data_fsync = true` (storage_manager fsyncs every object too) and LMDB metadata. {CLIENTS} concurrent clients for 4 KiB \
         objects ({}s each after {}s warm-up); 1 GiB as one streamed PUT and one GET. Each figure is the median of {RUNS} runs.\n",
        garage_version(),
        bench::MEASURE.as_secs(),
        bench::WARMUP.as_secs()
    )
    .unwrap();
    writeln!(
        md,
        "| row | storage_manager | Garage | ratio (ours ÷ Garage) | machine limit, same run |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|").unwrap();
    let rows = [
        ("4 KiB PUT, objects/s", 0, "—"),
        ("4 KiB GET, objects/s", 1, "—"),
        ("1 GiB PUT, MB/s", 2, "disk write+fsync"),
        ("1 GiB GET, MB/s", 3, "disk read (page cache)"),
    ];
    for (name, i, limit_name) in rows {
        let ours = ours_figures[i];
        let (garage, ratio) = match &garage_figures {
            Some(g) => (format!("{:.0}", g[i]), format!("{:.2}×", ours / g[i])),
            None => ("not measured".into(), "—".into()),
        };
        let limit = match i {
            2 => format!("{limit_name} {disk_write:.0} MB/s; loopback TCP {loopback:.0} MB/s"),
            3 => format!("{limit_name} {disk_read:.0} MB/s; loopback TCP {loopback:.0} MB/s"),
            _ => limit_name.to_owned(),
        };
        writeln!(md, "| {name} | {ours:.0} | {garage} | {ratio} | {limit} |").unwrap();
    }
    writeln!(
        md,
        "\nstorage_manager's peak resident memory over the whole run: {} MiB.",
        ours_peak / 1024
    )
    .unwrap();
    if let Some(g) = &garage_figures {
        writeln!(
            md,
            "\nPer 4 KiB GET at {CLIENTS} connections: storage_manager {:.1} ms, Garage {:.1} ms. storage_manager's servers turn \
             Nagle's algorithm off; with it on, a streamed response's body waits for the client's delayed ACK of its \
             headers (up to 40 ms). Garage's figure looks like that stall; that is a reading of the numbers, not \
             something measured inside Garage.",
            CLIENTS as f64 / ours_figures[1] * 1000.0,
            CLIENTS as f64 / g[1] * 1000.0
        )
        .unwrap();
    }
    println!("{md}");
    write_benchmark_section("storage_manager", &md);
    drop((key_manager, conductor));
}

fn garage_version() -> String {
    garage_bin()
        .and_then(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::piped())
                .output()
                .ok()
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace("garage ", "")
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(not installed)".into())
}
