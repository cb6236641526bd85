//! The load loop every benchmark uses, so conductor, services and references are measured alike.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

pub const WARMUP: Duration = Duration::from_secs(1);
pub const MEASURE: Duration = Duration::from_secs(5);

/// Runs `op(i)` from `concurrency` tasks (each waiting for its previous call) for [`WARMUP`] then
/// [`MEASURE`]; returns completed operations per second during the measurement. `op` panics on a
/// failed operation: a benchmark of errors measures nothing.
pub async fn load<F, Fut>(concurrency: usize, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![];
    for t in 0..concurrency {
        let (op, done, measuring, stop) =
            (op.clone(), done.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t as u64;
            while !stop.load(Ordering::Relaxed) {
                op(i).await;
                if measuring.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += concurrency as u64;
            }
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let count = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a benchmark operation failed");
    }
    count as f64 / elapsed.as_secs_f64()
}

pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}
