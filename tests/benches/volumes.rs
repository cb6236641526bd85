//! Volume benchmarks, written to docs/benchmarks.md, each against a reference measured in the same
//! run on the same disk:
//! - moving storage_manager with a 1 GiB volume to another worker (stop, copy worker to worker,
//!   start, healthy), against `cp -a` of the same directory plus `sync`;
//! - a first (full) backup of that volume, against `tar -cf` of it plus `sync`;
//! - the bytes a backup sends after 1% of the bucket's objects were rewritten.
//! A conductor and two workers run as their own processes (release build). Run: `cargo xtask bench`.

use std::{
    fmt::Write as _,
    process::Command,
    time::{Duration, Instant},
};

use aerekos_sdk::{
    SdkError, StorageManager,
    conductor::types::{BackupState, InstanceHealth, MoveRequest, MoveState, WorkerStatus},
};
use aerekos_tests::{
    eventually,
    processes::{ConductorProcess, WorkerProcess, wait_for_worker},
    write_benchmark_section,
};

const OBJECTS: usize = 1024;
const OBJECT_BYTES: usize = 1 << 20;
const CHANGED: usize = OBJECTS / 100;

fn object(i: usize, round: u8) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(round);
    (0..OBJECT_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn put_objects(storage: &StorageManager, indexes: impl Iterator<Item = usize>, round: u8) {
    let indexes: Vec<usize> = indexes.collect();
    for batch in indexes.chunks(16) {
        let puts = batch.iter().map(|&i| {
            let storage = storage.clone();
            async move {
                storage
                    .put_object()
                    .bucket("bench")
                    .key(format!("objects/{i:05}"))
                    .body(object(i, round))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {i}: {}", SdkError::from(e)));
            }
        });
        futures_util::future::join_all(puts).await;
    }
}

fn timed_shell(script: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("sh");
    assert!(status.success(), "{script}");
    started.elapsed()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let out = Command::new("du")
        .args(["-sb"])
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let conductor = ConductorProcess::start_with(&[("BACKUP_INTERVAL", "0")]).await;
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
        .expect("enable storage_manager");
    let holder = eventually(60, "storage_manager healthy", || async {
        let d = admin
            .get_deployment()
            .name("storage_manager")
            .send()
            .await
            .ok()?
            .into_inner();
        d.instances
            .iter()
            .find(|i| i.health == InstanceHealth::Healthy)
            .map(|i| i.worker_id)
    })
    .await;
    let (from, to) = if holder == a_id {
        (&a, (&b, b_id))
    } else {
        (&b, (&a, a_id))
    };

    // 1 GiB in 1,024 objects of 1 MiB (no encryption: the volume's bytes are what is measured).
    let storage = StorageManager::with_token(&conductor.url, admin.token().unwrap());
    storage
        .create_bucket()
        .body_map(|b| b.name("bench"))
        .send()
        .await
        .expect("bucket");
    put_objects(&storage, 0..OBJECTS, 0).await;
    let volume = from.volume_dir("storage_manager");
    let volume_bytes = dir_bytes(&volume);

    // Reference: cp -a of the same directory, then sync, on the same disk.
    let scratch = tempfile::tempdir_in(from.dir.path()).unwrap();
    let copy = scratch.path().join("copy");
    timed_shell("sync");
    let cp = timed_shell(&format!(
        "cp -a '{}' '{}' && sync",
        volume.display(),
        copy.display()
    ));
    std::fs::remove_dir_all(&copy).unwrap();

    // The move, from the request to done (the service stopped, copied, started, healthy, and the
    // old copy deleted).
    timed_shell("sync");
    let started = Instant::now();
    let m = admin
        .move_service()
        .name("storage_manager")
        .body(MoveRequest { worker_id: to.1 })
        .send()
        .await
        .expect("move")
        .into_inner();
    // When each step was first seen (polled every 50 ms).
    let mut seen: Vec<(MoveState, Duration)> = vec![(MoveState::Stopping, Duration::ZERO)];
    let moved = loop {
        let m = admin
            .get_move()
            .id(m.id)
            .send()
            .await
            .expect("the move")
            .into_inner();
        if seen.last().is_none_or(|(s, _)| *s != m.state) {
            seen.push((m.state, started.elapsed()));
        }
        if matches!(m.state, MoveState::Done | MoveState::Failed) {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the move took over 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let move_time = started.elapsed();
    let at = |state: MoveState| {
        seen.iter()
            .find(|(s, _)| *s == state)
            .map_or(Duration::ZERO, |(_, t)| *t)
    };
    let steps = [
        MoveState::Stopping,
        MoveState::Copying,
        MoveState::Starting,
        MoveState::Cleaning,
        MoveState::Done,
    ];
    let phases: Vec<String> = steps
        .windows(2)
        .map(|w| {
            format!(
                "{} {:.1} s",
                w[0],
                (at(w[1]).saturating_sub(at(w[0]))).as_secs_f64()
            )
        })
        .collect();
    let copy_time = at(MoveState::Starting).saturating_sub(at(MoveState::Copying));
    assert_eq!(moved.state, MoveState::Done, "{moved:?}");

    // Reference: tar of the volume (now on the new worker), then sync.
    let volume = to.0.volume_dir("storage_manager");
    let tar_file = scratch.path().join("volume.tar");
    timed_shell("sync");
    let tar = timed_shell(&format!(
        "tar -cf '{}' -C '{}' . && sync",
        tar_file.display(),
        volume.display()
    ));
    std::fs::remove_file(&tar_file).unwrap();

    let backup = |label: &'static str| {
        let admin = admin.clone();
        async move {
            let started = Instant::now();
            let b = admin
                .backup_volume()
                .name("storage_manager")
                .send()
                .await
                .expect(label)
                .into_inner();
            let done = eventually(900, label, || async {
                let b = admin.get_backup().id(b.id).send().await.ok()?.into_inner();
                (b.state != BackupState::Running).then_some(b)
            })
            .await;
            assert_eq!(done.state, BackupState::Done, "{done:?}");
            (started.elapsed(), done)
        }
    };
    timed_shell("sync");
    let (full_time, full) = backup("the full backup").await;
    // 1% of the objects rewritten, then a backup.
    put_objects(
        &storage,
        (0..OBJECTS).step_by(OBJECTS / CHANGED).take(CHANGED),
        1,
    )
    .await;
    let (incr_time, incremental) = backup("the incremental backup").await;

    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let rate = |bytes: u64, t: Duration| mib(bytes) / t.as_secs_f64();
    let move_ratio = move_time.as_secs_f64() / cp.as_secs_f64();
    let copy_ratio = copy_time.as_secs_f64() / cp.as_secs_f64();
    let sent_share = incremental.bytes_sent as f64 / incremental.bytes as f64;
    let mut md = String::new();
    writeln!(md, "## Volumes: moves and backups").unwrap();
    writeln!(md).unwrap();
    writeln!(
        md,
        "`cargo xtask bench` (`cargo bench -p aerekos-tests --bench volumes`, release build): a conductor and two workers as \
         their own processes on this machine; storage_manager's volume holds {OBJECTS} objects of 1 MiB ({:.0} MiB on disk). \
         References are measured in the same run on the same disk.",
        mib(volume_bytes)
    )
    .unwrap();
    writeln!(md).unwrap();
    writeln!(md, "| measurement | aerekos | reference | ratio | aim |").unwrap();
    writeln!(md, "|---|---|---|---|---|").unwrap();
    writeln!(
        md,
        "| moving the 1 GiB volume (request to done: stop, copy worker to worker, start, healthy, old copy deleted) | {:.1} s | `cp -a` + `sync`: {:.1} s | {move_ratio:.2}× | ≤ 1.5× |",
        move_time.as_secs_f64(),
        cp.as_secs_f64()
    )
    .unwrap();
    writeln!(
        md,
        "| of which the copy step (export, tar over HTTP with a SHA-256, fsync of every file, rename) | {:.1} s ({:.0} MiB/s) | `cp -a` + `sync`: {:.1} s | {copy_ratio:.2}× | — |",
        copy_time.as_secs_f64(),
        rate(volume_bytes, copy_time),
        cp.as_secs_f64()
    )
    .unwrap();
    writeln!(
        md,
        "| first backup (hold, online SQLite copy, hash, seal, send to the other worker's store) | {:.0} MiB/s ({:.1} s) | `tar -cf` + `sync`: {:.0} MiB/s | {:.2}× the time | — |",
        rate(full.bytes, full_time),
        full_time.as_secs_f64(),
        rate(volume_bytes, tar),
        full_time.as_secs_f64() / tar.as_secs_f64()
    )
    .unwrap();
    writeln!(
        md,
        "| bytes a backup sends after {CHANGED} of {OBJECTS} objects (1%) were rewritten | {:.1} MiB of {:.0} MiB ({:.2}%, {:.1} s) | — | — | ≤ 2% |",
        mib(incremental.bytes_sent),
        mib(incremental.bytes),
        sent_share * 100.0,
        incr_time.as_secs_f64()
    )
    .unwrap();
    writeln!(md).unwrap();
    writeln!(
        md,
        "The move's steps in this run (each as first seen, polled every 50 ms): {}.",
        phases.join(", ")
    )
    .unwrap();
    writeln!(
        md,
        "The first backup's bytes sent equal its size ({:.0} MiB); the incremental one sends the rewritten objects and \
         the database snapshot (new at every backup).",
        mib(full.bytes_sent)
    )
    .unwrap();
    println!("{md}");
    write_benchmark_section("volumes", &md);
}
