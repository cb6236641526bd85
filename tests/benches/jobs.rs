//! Job-queue figures for docs/benchmarks.md (run by `cargo xtask bench`):
//! - jobs submitted, placed, run and recorded per second: `true` on the process driver, 2 worker
//!   processes, against a bare loop spawning `true` in the same run;
//! - submit-to-start latency p50/p99: under that load, submitted → placed on a worker; and,
//!   unloaded (one job at a time), submitted → the job's own process running (it prints its
//!   start time);
//! - where the CPU went per job, by process.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use aerekos_sdk::conductor::types::{JobRequest, JobState, ResourceSpec};
use aerekos_tests::{
    bench,
    processes::{ConductorProcess, WorkerProcess},
    write_benchmark_section,
};

/// Jobs per measured run.
const JOBS: usize = 1000;
const RUNS: usize = 3;
/// Clients submitting at once.
const SUBMITTERS: usize = 8;

/// The reference: `true` spawned and waited for, one after another, `n` times; per second.
fn bare_spawns(n: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        let status = std::process::Command::new("true").status().expect("true");
        assert!(status.success());
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn job() -> JobRequest {
    JobRequest {
        name: None,
        image: None,
        command: vec!["true".into()],
        env: Default::default(),
        // Small, so room is not what limits the rate.
        resources: Some(ResourceSpec {
            cpu_millicores: 1,
            memory_mb: 1,
            disk_mb: 0,
        }),
        driver: None,
        timeout_secs: None,
        retry: None,
        priority: None,
        queue: None,
        idempotency_key: None,
    }
}

struct Run {
    per_sec: f64,
    placed_ms: Vec<f64>,
    /// Placed → its attempt recorded as ended: the workers' part.
    ran_ms: Vec<f64>,
    cpu: String,
}

async fn one_run(admin: &aerekos_sdk::Conductor, roots: &[u32]) -> Run {
    let meter = bench::CpuMeter::start(roots);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..SUBMITTERS {
        let (admin, next) = (admin.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = vec![];
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < JOBS {
                let job = admin.submit_job().body(job()).send().await.expect("submit");
                ids.push(job.into_inner().id);
            }
            ids
        }));
    }
    let mut ids = vec![];
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    // Done when no job of the run is queued or running.
    loop {
        let queues = admin
            .list_job_queues()
            .send()
            .await
            .expect("queues")
            .into_inner();
        if queues.iter().all(|q| q.running == 0 && q.queued == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meter.per_operation(JOBS as f64);
    let (mut placed_ms, mut ran_ms) = (vec![], vec![]);
    for id in &ids {
        let job = admin
            .get_job()
            .id(*id)
            .send()
            .await
            .expect("job")
            .into_inner();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let attempt = job.last_attempt.expect("an attempt");
        let ended = attempt.ended_at.expect("a succeeded job's attempt ended");
        ran_ms.push((ended - attempt.started_at).num_milliseconds() as f64);
        placed_ms.push(
            (attempt.started_at - job.submitted_at)
                .num_microseconds()
                .unwrap() as f64
                / 1000.0,
        );
    }
    placed_ms.sort_by(f64::total_cmp);
    ran_ms.sort_by(f64::total_cmp);
    Run {
        per_sec: JOBS as f64 / elapsed,
        placed_ms,
        ran_ms,
        cpu,
    }
}

/// Jobs one at a time, each printing the time its process started: submit → start, in ms.
async fn unloaded_starts(admin: &aerekos_sdk::Conductor, n: usize) -> Vec<f64> {
    let mut out = vec![];
    for _ in 0..n {
        let mut req = job();
        req.command = vec!["date".into(), "+%s%N".into()];
        let job = admin
            .submit_job()
            .body(req)
            .send()
            .await
            .expect("submit")
            .into_inner();
        let done = loop {
            let j = admin
                .get_job()
                .id(job.id)
                .send()
                .await
                .expect("job")
                .into_inner();
            if j.state == JobState::Succeeded {
                break j;
            }
            assert!(!j.state.to_string().contains("failed"), "{j:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let tail = done
            .last_attempt
            .and_then(|a| a.stdout_tail)
            .expect("stdout");
        let started_ns: i64 = tail.trim().parse().expect("date +%s%N");
        let submitted_ns = job.submitted_at.timestamp_nanos_opt().expect("a time");
        out.push((started_ns - submitted_ns) as f64 / 1e6);
    }
    out.sort_by(f64::total_cmp);
    out
}

#[tokio::main]
async fn main() {
    let conductor = ConductorProcess::start_with(&[
        ("RATE_LIMIT_PER_ADDRESS", "off"),
        ("RATE_LIMIT_PER_CALLER", "off"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let workers = [
        WorkerProcess::start_with(&conductor, "bench-a", &[("RUST_LOG", "warn")]),
        WorkerProcess::start_with(&conductor, "bench-b", &[("RUST_LOG", "warn")]),
    ];
    let admin = conductor.admin().await;
    for w in &workers {
        let id = w.id().await;
        aerekos_tests::processes::wait_for_worker(
            &admin,
            id,
            aerekos_sdk::conductor::types::WorkerStatus::Live,
            30,
        )
        .await;
    }
    let roots = [conductor.pid(), workers[0].pid(), workers[1].pid()];
    // Warm up: the first spawns and queries pay for caches.
    bare_spawns(100);

    let (mut refs, mut rates, mut placed, mut ran, mut cpu) =
        (vec![], vec![], vec![], vec![], String::new());
    for _ in 0..RUNS {
        refs.push(bare_spawns(JOBS));
        let run = one_run(&admin, &roots).await;
        rates.push(run.per_sec);
        placed.extend(run.placed_ms);
        ran.extend(run.ran_ms);
        cpu = run.cpu;
    }
    placed.sort_by(f64::total_cmp);
    ran.sort_by(f64::total_cmp);
    let unloaded = unloaded_starts(&admin, 200).await;
    let all = format!(
        "bare spawns/s {:?}, jobs/s {:?}",
        refs.iter().map(|r| r.round()).collect::<Vec<_>>(),
        rates.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    let (reference, rate) = (bench::median(refs), bench::median(rates));
    let ratio = rate / reference;
    println!(
        "jobs: {rate:.0}/s against {reference:.0} bare spawns/s = {ratio:.2}x; placed after p50 {:.0} ms, p99 {:.0} ms; placed → ended p50 {:.0} ms, p99 {:.0} ms; CPU per job: {cpu}",
        bench::percentile(&placed, 0.5),
        bench::percentile(&placed, 0.99),
        bench::percentile(&ran, 0.5),
        bench::percentile(&ran, 0.99)
    );
    let markdown = format!(
        "## Jobs\n\n\
         `cargo bench -p aerekos-tests --bench jobs` (release; `AEREKOS_BIN=target/release/aerekos`, \
         as `cargo xtask bench` runs it). A conductor and two worker processes on this machine (2 cores), \
         {JOBS} jobs of `true` (process driver) submitted by {SUBMITTERS} clients at once, timed from the first submit \
         until none is queued or running (each recorded `succeeded` with its attempt); median of {RUNS} runs \
         (all runs: {all}). The reference, in the same run, is a loop spawning `true` and waiting for it, {JOBS} times. \
         Last run: {date}.\n\n\
         | measurement | reference | result | aim |\n|---|---|---|---|\n\
         | jobs submitted, placed, run and recorded per second | {reference:.0} bare spawns/s | {rate:.0} jobs/s = **{ratio:.2}×** | ≥ 0.3×: {met} |\n\
         | submit → placed on a worker, during the runs above ({n} jobs) | — | p50 {p50:.0} ms, p99 {p99:.0} ms | — |\n\
         | placed → its attempt recorded as ended, during the runs above | — | p50 {r50:.0} ms, p99 {r99:.0} ms | — |\n\
         | submit → the job's process running, one job at a time ({u} jobs of `date +%s%N`) | — | p50 {u50:.0} ms, p99 {u99:.0} ms | — |\n\n\
         CPU per job in the last run, by process (each with the children it has waited for: the worker's includes the jobs it ran and their exit recorders): {cpu}.\n",
        n = placed.len(),
        p50 = bench::percentile(&placed, 0.5),
        p99 = bench::percentile(&placed, 0.99),
        r50 = bench::percentile(&ran, 0.5),
        r99 = bench::percentile(&ran, 0.99),
        u = unloaded.len(),
        u50 = bench::percentile(&unloaded, 0.5),
        u99 = bench::percentile(&unloaded, 0.99),
        met = if ratio >= 0.3 { "met" } else { "not met" },
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    write_benchmark_section("jobs", &markdown);
}
