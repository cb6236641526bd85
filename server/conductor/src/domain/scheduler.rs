//! Placement: which workers new instances go to. Pure: it sees a snapshot of the live workers with
//! what is already reserved on each, and answers with workers, or with why nothing fits.
//!
//! An instance fits a worker that passes the deployment's constraints (worker ids, labels), has a
//! driver the service can use, and has the CPU, memory and disk it asks for left after what its
//! instances already reserve. Among those, replicas of one service go to workers with the fewest
//! of them first (spread over machines when possible), then by the strategy: `spread` takes the
//! worker with the most room left, `binpack` the one with the least.

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use uuid::Uuid;

use crate::model::{DriverKind, Instance, PlacementStrategy, ResourceSpec, Worker};

/// Held by whoever places instances (the deployment loop, the job queue): reservations are read
/// and written together, so two placers never give the same room twice.
pub type PlacementLock = Arc<tokio::sync::Mutex<()>>;

/// What the instances reserve, per worker.
pub fn reservations<I: std::borrow::Borrow<Instance>>(instances: &[I]) -> HashMap<Uuid, Amounts> {
    let mut reserved: HashMap<Uuid, Amounts> = HashMap::new();
    for inst in instances {
        let inst = inst.borrow();
        if let Some(r) = &inst.spec.resources {
            reserved
                .entry(inst.worker_id)
                .or_default()
                .add(Amounts::of(r));
        }
    }
    reserved
}

/// Worker `w` as the scheduler sees it, with what is reserved on it and how many instances of the
/// service being placed it has.
pub fn candidate(w: &Arc<Worker>, reserved: Amounts, same_service: u32) -> Candidate {
    Candidate {
        id: w.id,
        worker: w.clone(),
        drivers: w
            .resources
            .drivers
            .iter()
            .filter_map(|d| DriverKind::parse(&d.name))
            .collect(),
        capacity: Amounts {
            cpu: u64::from(w.resources.cpu_cores) * 1000,
            memory: w.resources.memory_total_bytes >> 20,
            disk: w.resources.disk_free_bytes >> 20,
        },
        reserved,
        same_service,
    }
}

/// A live worker as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Uuid,
    /// The worker as the registry holds it (its name, its labels): shared, not copied, since
    /// placement makes a candidate of every worker at each deploy.
    pub worker: Arc<Worker>,
    pub drivers: Vec<DriverKind>,
    pub capacity: Amounts,
    pub reserved: Amounts,
    /// Instances of the service being placed already on it.
    pub same_service: u32,
}

/// CPU millicores, memory MB, disk MB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub cpu: u64,
    pub memory: u64,
    pub disk: u64,
}

impl Amounts {
    pub fn of(r: &ResourceSpec) -> Self {
        Self {
            cpu: u64::from(r.cpu_millicores),
            memory: u64::from(r.memory_mb),
            disk: u64::from(r.disk_mb),
        }
    }

    pub fn add(&mut self, other: Amounts) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.disk += other.disk;
    }
}

pub struct Request<'a> {
    pub count: u32,
    pub resources: ResourceSpec,
    pub worker_ids: &'a [Uuid],
    pub labels: &'a BTreeMap<String, String>,
    pub strategy: PlacementStrategy,
    /// The drivers the service can run with, preferred first.
    pub drivers: &'a [DriverKind],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub worker_id: Uuid,
    pub driver: DriverKind,
}

/// Why an instance fits no worker: one line per worker, for a person to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub message: String,
}

/// Places `req.count` instances, updating the candidates' reservations as it goes.
pub fn place(candidates: &mut [Candidate], req: &Request<'_>) -> Result<Vec<Placement>, Shortage> {
    let need = Amounts::of(&req.resources);
    let mut placed = Vec::with_capacity(req.count as usize);
    for n in 0..req.count {
        let mut best: Option<(usize, DriverKind, (u32, i64))> = None;
        for (i, c) in candidates.iter().enumerate() {
            let Ok(driver) = fits(c, req, need) else {
                continue;
            };
            let room = room_after(c, need);
            let score = (
                c.same_service,
                if req.strategy == PlacementStrategy::Spread {
                    -room
                } else {
                    room
                },
            );
            if best.as_ref().is_none_or(|(_, _, s)| score < *s) {
                best = Some((i, driver, score));
            }
        }
        let Some((i, driver, _)) = best else {
            return Err(shortage(candidates, req, need, n));
        };
        let c = &mut candidates[i];
        c.reserved.add(need);
        c.same_service += 1;
        placed.push(Placement {
            worker_id: c.id,
            driver,
        });
    }
    Ok(placed)
}

/// The smaller of the CPU and memory fractions left after placing `need`, in millionths.
fn room_after(c: &Candidate, need: Amounts) -> i64 {
    let frac = |cap: u64, used: u64| {
        if cap == 0 {
            0
        } else {
            (cap.saturating_sub(used) * 1_000_000 / cap) as i64
        }
    };
    frac(c.capacity.cpu, c.reserved.cpu + need.cpu)
        .min(frac(c.capacity.memory, c.reserved.memory + need.memory))
}

/// The driver to use on `c`, or why `c` does not fit.
pub fn fits(c: &Candidate, req: &Request<'_>, need: Amounts) -> Result<DriverKind, String> {
    if !req.worker_ids.is_empty() && !req.worker_ids.contains(&c.id) {
        return Err("not among the worker_ids asked for".into());
    }
    if let Some((k, v)) = req
        .labels
        .iter()
        .find(|(k, v)| c.worker.labels.get(*k) != Some(*v))
    {
        return Err(format!("lacks label {k}={v}"));
    }
    let Some(driver) = req.drivers.iter().copied().find(|d| c.drivers.contains(d)) else {
        let wanted: Vec<_> = req.drivers.iter().map(|d| d.as_str()).collect();
        return Err(format!("has no {} driver", wanted.join(" or ")));
    };
    let free = |cap: u64, used: u64| cap.saturating_sub(used);
    let mut short = vec![];
    if free(c.capacity.cpu, c.reserved.cpu) < need.cpu {
        short.push(format!(
            "CPU {}m free of {}m, needs {}m",
            free(c.capacity.cpu, c.reserved.cpu),
            c.capacity.cpu,
            need.cpu
        ));
    }
    if free(c.capacity.memory, c.reserved.memory) < need.memory {
        short.push(format!(
            "memory {} MB free of {} MB, needs {} MB",
            free(c.capacity.memory, c.reserved.memory),
            c.capacity.memory,
            need.memory
        ));
    }
    if free(c.capacity.disk, c.reserved.disk) < need.disk {
        short.push(format!(
            "disk {} MB free, needs {} MB",
            free(c.capacity.disk, c.reserved.disk),
            need.disk
        ));
    }
    if short.is_empty() {
        Ok(driver)
    } else {
        Err(short.join("; "))
    }
}

fn shortage(candidates: &[Candidate], req: &Request<'_>, need: Amounts, placed: u32) -> Shortage {
    let what = format!(
        "{}m CPU, {} MB memory, {} MB disk",
        need.cpu, need.memory, need.disk
    );
    if candidates.is_empty() {
        return Shortage {
            message: format!(
                "no live worker to place an instance ({what}) on; start a worker or wait for one to heartbeat"
            ),
        };
    }
    const LISTED: usize = 10;
    let mut lines: Vec<String> = candidates
        .iter()
        .take(LISTED)
        .map(|c| {
            format!(
                "{} ({}): {}",
                c.worker.name,
                c.id,
                fits(c, req, need).err().unwrap_or_else(|| "fits".into())
            )
        })
        .collect();
    if candidates.len() > LISTED {
        lines.push(format!("… and {} more workers", candidates.len() - LISTED));
    }
    Shortage {
        message: format!(
            "no worker can take instance {} of {} (each needs {what}): {}",
            placed + 1,
            req.count,
            lines.join(" | ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(n: u8, cores: u64, memory_mb: u64) -> Candidate {
        let id = Uuid::from_bytes([n; 16]);
        let now = chrono::Utc::now();
        let resources = serde_json::from_value(serde_json::json!({
            "cpu_cores": cores, "cpu_usage_percent": 0.0,
            "memory_total_bytes": memory_mb << 20, "memory_available_bytes": memory_mb << 20,
            "disk_total_bytes": 100_000u64 << 20, "disk_free_bytes": 100_000u64 << 20,
        }))
        .unwrap();
        Candidate {
            id,
            worker: Arc::new(Worker {
                id,
                name: format!("w{n}"),
                hostname: format!("w{n}"),
                ip_address: "10.0.0.1".into(),
                labels: BTreeMap::new(),
                status: crate::model::WorkerStatus::Live,
                resources,
                api_url: None,
                registered_at: now,
                last_heartbeat_at: now,
            }),
            drivers: vec![DriverKind::Process],
            capacity: Amounts {
                cpu: cores * 1000,
                memory: memory_mb,
                disk: 100_000,
            },
            reserved: Amounts::default(),
            same_service: 0,
        }
    }

    fn request(count: u32, cpu: u32, strategy: PlacementStrategy) -> Request<'static> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        Request {
            count,
            resources: ResourceSpec {
                cpu_millicores: cpu,
                memory_mb: 64,
                disk_mb: 10,
            },
            worker_ids: &[],
            labels: &EMPTY,
            strategy,
            drivers: &[DriverKind::Process],
        }
    }

    #[test]
    fn replicas_go_to_different_workers_first() {
        let mut ws = vec![worker(1, 4, 4096), worker(2, 2, 2048), worker(3, 8, 8192)];
        let placed = place(&mut ws, &request(3, 100, PlacementStrategy::Binpack)).unwrap();
        let mut ids: Vec<_> = placed.iter().map(|p| p.worker_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "three replicas on three workers: {placed:?}");
    }

    #[test]
    fn spread_prefers_room_and_binpack_prefers_full() {
        let mut ws = vec![worker(1, 2, 2048), worker(2, 8, 8192)];
        let spread = place(&mut ws.clone(), &request(1, 500, PlacementStrategy::Spread)).unwrap();
        assert_eq!(spread[0].worker_id, ws[1].id);
        let packed = place(&mut ws, &request(1, 500, PlacementStrategy::Binpack)).unwrap();
        assert_eq!(packed[0].worker_id, Uuid::from_bytes([1; 16]));
    }

    #[test]
    fn reservations_are_respected_and_shortage_names_the_resource_and_worker() {
        let mut ws = vec![worker(1, 1, 1024)];
        ws[0].reserved.cpu = 900;
        let err = place(&mut ws, &request(1, 200, PlacementStrategy::Spread)).unwrap_err();
        assert!(
            err.message.contains("w1")
                && err.message.contains("CPU 100m free of 1000m, needs 200m"),
            "{}",
            err.message
        );
        // Two fit, a third does not: nothing is half-placed (the caller writes all or nothing).
        let mut ws = vec![worker(1, 1, 1024)];
        let err = place(&mut ws, &request(3, 400, PlacementStrategy::Spread)).unwrap_err();
        assert!(err.message.contains("instance 3 of 3"), "{}", err.message);
    }

    #[test]
    fn constraints_exclude_workers_with_reasons() {
        let mut ws = vec![worker(1, 4, 4096), worker(2, 4, 4096)];
        Arc::make_mut(&mut ws[1].worker)
            .labels
            .insert("zone".into(), "a".into());
        let labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
        let req = Request {
            labels: &labels,
            ..request(1, 100, PlacementStrategy::Spread)
        };
        assert_eq!(place(&mut ws.clone(), &req).unwrap()[0].worker_id, ws[1].id);
        let req = Request {
            drivers: &[DriverKind::Docker],
            ..request(1, 100, PlacementStrategy::Spread)
        };
        let err = place(&mut ws, &req).unwrap_err();
        assert!(
            err.message.contains("has no docker driver"),
            "{}",
            err.message
        );
    }
}
