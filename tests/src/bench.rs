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

/// The `p` quantile (0–1) of `sorted`, the nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// CPU time (user + system, from `/proc/<pid>/stat`, with the children each process has waited
/// for) of a process tree, grouped by what each
/// process runs (its command line without the program: `conductor`, `worker`, `service
/// key_manager`), and of this benchmark process: where a run's CPU went, per operation.
pub struct CpuMeter {
    roots: Vec<u32>,
    start: std::collections::BTreeMap<String, CpuTime>,
}

/// Seconds of CPU in user space and in the kernel.
#[derive(Default, Clone, Copy)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuMeter {
    /// Starts counting the trees under `roots` (e.g. the conductor's and the worker's pids).
    pub fn start(roots: &[u32]) -> Self {
        let roots = roots.to_vec();
        let start = cpu_by_command(&roots);
        Self { roots, start }
    }

    /// CPU milliseconds per operation of each command since [`Self::start`], `operations` being
    /// how many completed, with the kernel's share: a line such as `conductor 0.210 ms (kernel
    /// 0.120), service key_manager 0.080 ms (kernel 0.040), …`.
    pub fn per_operation(&self, operations: f64) -> String {
        let now = cpu_by_command(&self.roots);
        now.iter()
            .map(|(command, t)| {
                let before = self.start.get(command).copied().unwrap_or_default();
                let (user, system) = (t.user - before.user, t.system - before.system);
                format!(
                    "{command} {:.3} ms (kernel {:.3})",
                    (user + system) * 1000.0 / operations,
                    system * 1000.0 / operations
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn cpu_by_command(roots: &[u32]) -> std::collections::BTreeMap<String, CpuTime> {
    // Kernel clock ticks per second: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    const TICKS: f64 = 100.0;
    let mut parents: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let mut stats: std::collections::HashMap<u32, (String, CpuTime)> =
        std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime, then cutime and cstime: the children it has waited for (a worker's
        // job processes and their exit recorders) count as its own.
        let (Some(ppid), Some(utime), Some(stime), Some(cutime), Some(cstime)) = (
            fields.get(1),
            fields.get(11),
            fields.get(12),
            fields.get(13),
            fields.get(14),
        ) else {
            continue;
        };
        let ticks = |a: &str, b: &str| {
            (a.parse::<f64>().unwrap_or(0.0) + b.parse::<f64>().unwrap_or(0.0)) / TICKS
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .skip(1)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let secs = CpuTime {
            user: ticks(utime, cutime),
            system: ticks(stime, cstime),
        };
        parents.insert(pid, ppid.parse().unwrap_or(0));
        stats.insert(pid, (words.join(" "), secs));
    }
    let in_tree = |mut pid: u32| loop {
        if roots.contains(&pid) {
            return true;
        }
        match parents.get(&pid) {
            Some(&parent) if parent > 1 => pid = parent,
            _ => return false,
        }
    };
    let mut out = std::collections::BTreeMap::new();
    let mut add = |name: String, t: &CpuTime| {
        let sum: &mut CpuTime = out.entry(name).or_default();
        sum.user += t.user;
        sum.system += t.system;
    };
    for (pid, (command, secs)) in &stats {
        if in_tree(*pid) {
            add(command.clone(), secs);
        } else if *pid == std::process::id() {
            add("benchmark client".to_owned(), secs);
        }
    }
    out
}
