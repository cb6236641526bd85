//! Volumes: where each stateful service's data is, and so where it may run.
//!
//! A stateful service keeps its data in a directory on its worker (`<worker data>/volumes/<name>`)
//! that outlives its instances. The conductor records which worker holds the copy in use (the
//! `volumes` table), and placement follows that record:
//! - a volume is created (recorded) only in the transaction that places the first instance, and
//!   only when no worker reports a copy of it: workers report the volume directories they hold with
//!   every heartbeat, so a conductor whose database was made anew adopts the copy it finds instead
//!   of starting empty;
//! - while the holder is lost (or removed from the registry) the service waits for it, and the
//!   gateway answers 503 naming the volume and the worker; the instance the worker still runs is
//!   used again when it returns;
//! - nothing starts a stateful service elsewhere without its data, unless an admin deploys with
//!   `start_empty`, which records a fresh volume on a worker holding no copy and leaves the old copy
//!   where it is.
//!
//! How big a volume is and which other workers hold old copies are derived from the workers'
//! latest reports at read time, never stored.

use std::sync::Arc;

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{from_ms, workers::WorkerService};
use crate::{
    model::{Volume, VolumeWait, Worker, WorkerStatus},
    store::{
        Db,
        volumes::{self, VolumeRow},
    },
};

pub struct VolumeService {
    db: Db,
    workers: Arc<WorkerService>,
}

/// Where a stateful service's instance may go, given its volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// Only on this worker, which holds the volume. `record`: the conductor had no record and adopts
    /// this worker's copy, so the record is written with the placement.
    On { worker_id: Uuid, record: bool },
    /// Anywhere but these workers (they hold copies that are not to be used): a fresh volume.
    Fresh { exclude: Vec<Uuid> },
    /// Not now: the worker holding the volume is lost or gone.
    Wait(Box<VolumeWait>),
    /// Not without an admin's choice (several unrecorded copies).
    Choose(String),
}

/// The workers that report a directory named `volume`, with its size.
fn copies<'a>(
    volume: &'a str,
    workers: &'a [Arc<Worker>],
) -> impl Iterator<Item = (&'a Worker, u64)> + 'a {
    workers.iter().filter_map(move |w| {
        w.resources
            .volumes
            .iter()
            .find(|v| v.name == volume)
            .map(|v| (&**w, v.size_bytes))
    })
}

/// What waiting for `holder` means: `None` when it is live.
pub fn wait_for(volume: &str, holder: Uuid, workers: &[Arc<Worker>]) -> Option<VolumeWait> {
    let worker = workers.iter().find(|w| w.id == holder);
    match worker {
        Some(w) if w.status == WorkerStatus::Live => None,
        Some(w) => Some(VolumeWait {
            volume: volume.to_owned(),
            worker_id: holder,
            worker_name: Some(w.name.clone()),
            lost_since: Some(w.last_heartbeat_at),
            message: format!(
                "the data of {volume} (volume {volume}) is on worker {} ({holder}), lost since {}; it is served again when \
                 that worker returns (or an admin restores a backup elsewhere)",
                w.name,
                w.last_heartbeat_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }),
        None => Some(VolumeWait {
            volume: volume.to_owned(),
            worker_id: holder,
            worker_name: None,
            lost_since: None,
            message: format!(
                "the data of {volume} (volume {volume}) is on worker {holder}, which was removed from the registry; it is \
                 served again when that worker rejoins (or an admin deploys with start_empty)"
            ),
        }),
    }
}

/// Where the instance of the stateful service owning `volume` may be placed. `only` is the
/// deployment's worker list (empty: any); `start_empty` is the admin's explicit word.
pub fn site(
    volume: &str,
    record: Option<&VolumeRow>,
    workers: &[Arc<Worker>],
    only: &[Uuid],
    start_empty: bool,
) -> Site {
    if start_empty {
        let mut exclude: Vec<Uuid> = copies(volume, workers).map(|(w, _)| w.id).collect();
        exclude.extend(record.and_then(|r| Uuid::parse_str(&r.worker_id).ok()));
        return Site::Fresh { exclude };
    }
    if let Some(record) = record {
        let Ok(holder) = Uuid::parse_str(&record.worker_id) else {
            return Site::Choose(format!(
                "volume {volume} names no valid worker ({:?})",
                record.worker_id
            ));
        };
        return match wait_for(volume, holder, workers) {
            Some(wait) => Site::Wait(Box::new(wait)),
            None => Site::On {
                worker_id: holder,
                record: false,
            },
        };
    }
    let found: Vec<(&Worker, u64)> = copies(volume, workers).collect();
    let chosen: Vec<&(&Worker, u64)> = if only.is_empty() {
        found.iter().collect()
    } else {
        found.iter().filter(|(w, _)| only.contains(&w.id)).collect()
    };
    match (found.len(), chosen.as_slice()) {
        (0, _) => Site::Fresh { exclude: vec![] },
        (_, [(w, _)]) if w.status == WorkerStatus::Live => Site::On {
            worker_id: w.id,
            record: true,
        },
        (_, [(w, _)]) => Site::Wait(Box::new(wait_for(volume, w.id, workers).expect("not live"))),
        _ => {
            let listed: Vec<String> = found
                .iter()
                .map(|(w, size)| format!("{} ({}, {size} bytes)", w.name, w.id))
                .collect();
            Site::Choose(format!(
                "the conductor has no record of volume {volume}, and {} workers hold a copy: {}; deploy with worker_ids naming \
                 the one whose data to keep",
                found.len(),
                listed.join(", ")
            ))
        }
    }
}

/// The record of a volume created or adopted on `worker_id` now.
pub fn new_record(volume: &str, service: &str, worker_id: Uuid, now: i64) -> VolumeRow {
    VolumeRow {
        name: volume.to_owned(),
        service: service.to_owned(),
        worker_id: worker_id.to_string(),
        created_at: now,
        updated_at: now,
        last_backup_at: None,
    }
}

impl VolumeService {
    pub fn new(db: Db, workers: Arc<WorkerService>) -> Self {
        Self { db, workers }
    }

    /// Every volume record.
    pub async fn records(&self) -> ApiResult<Vec<VolumeRow>> {
        volumes::all(&self.db).await.map_err(ApiError::internal)
    }

    pub async fn list(&self) -> ApiResult<Vec<Volume>> {
        let workers = self.workers.snapshot();
        Ok(self
            .records()
            .await?
            .iter()
            .map(|r| to_model(r, &workers))
            .collect())
    }

    pub async fn get(&self, name: &str) -> ApiResult<Volume> {
        let workers = self.workers.snapshot();
        self.records()
            .await?
            .iter()
            .find(|r| r.name == name)
            .map(|r| to_model(r, &workers))
            .ok_or_else(|| {
                ApiError::not_found(
                    "volume_not_found",
                    format!("no volume {name:?}; GET /api/volumes lists them"),
                )
            })
    }
}

fn to_model(row: &VolumeRow, workers: &[Arc<Worker>]) -> Volume {
    let worker_id = Uuid::parse_str(&row.worker_id).unwrap_or_default();
    let holder = workers.iter().find(|w| w.id == worker_id);
    Volume {
        name: row.name.clone(),
        service: row.service.clone(),
        worker_id,
        worker_name: holder.map(|w| w.name.clone()),
        worker_status: holder.map(|w| w.status),
        size_bytes: holder
            .and_then(|w| w.resources.volumes.iter().find(|v| v.name == row.name))
            .map(|v| v.size_bytes),
        created_at: from_ms(row.created_at),
        updated_at: from_ms(row.updated_at),
        last_backup_at: row.last_backup_at.map(from_ms),
        other_copies: copies(&row.name, workers)
            .map(|(w, _)| w.id)
            .filter(|id| *id != worker_id)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{VolumeReport, WorkerResources};

    fn worker(n: u8, live: bool, volumes: &[(&str, u64)]) -> Arc<Worker> {
        Arc::new(Worker {
            id: Uuid::from_bytes([n; 16]),
            name: format!("w{n}"),
            hostname: "h".into(),
            ip_address: "127.0.0.1".into(),
            labels: BTreeMap::new(),
            status: if live {
                WorkerStatus::Live
            } else {
                WorkerStatus::Lost
            },
            resources: WorkerResources {
                cpu_cores: 2,
                cpu_usage_percent: 0.0,
                memory_total_bytes: 1 << 30,
                memory_available_bytes: 1 << 30,
                disk_total_bytes: 1 << 30,
                disk_free_bytes: 1 << 30,
                network: vec![],
                os: None,
                drivers: vec![],
                unavailable_drivers: vec![],
                volumes: volumes
                    .iter()
                    .map(|(n, s)| VolumeReport {
                        name: (*n).into(),
                        size_bytes: *s,
                    })
                    .collect(),
            },
            api_url: None,
            registered_at: from_ms(0),
            last_heartbeat_at: from_ms(1_000),
        })
    }

    fn record(w: &Worker) -> VolumeRow {
        new_record("kv", "kv", w.id, 1)
    }

    #[test]
    fn a_recorded_volume_pins_its_service_to_the_holder_and_waits_while_it_is_lost() {
        let (a, b) = (worker(1, true, &[("kv", 10)]), worker(2, true, &[]));
        assert_eq!(
            site("kv", Some(&record(&a)), &[a.clone(), b.clone()], &[], false),
            Site::On {
                worker_id: a.id,
                record: false
            }
        );
        let lost_a = worker(1, false, &[("kv", 10)]);
        let Site::Wait(wait) = site("kv", Some(&record(&a)), &[lost_a, b.clone()], &[], false)
        else {
            panic!("should wait")
        };
        assert_eq!(
            (
                wait.volume.as_str(),
                wait.worker_id,
                wait.worker_name.as_deref()
            ),
            ("kv", a.id, Some("w1"))
        );
        assert!(
            wait.message.contains("volume kv") && wait.message.contains("w1"),
            "{}",
            wait.message
        );
        // A holder removed from the registry is waited for too.
        let Site::Wait(wait) = site("kv", Some(&record(&a)), &[b], &[], false) else {
            panic!("should wait")
        };
        assert_eq!(wait.worker_name, None);
    }

    #[test]
    fn fresh_volumes_only_where_no_copy_exists_and_unrecorded_copies_are_adopted() {
        let (a, b) = (worker(1, true, &[]), worker(2, true, &[("kv", 7)]));
        assert_eq!(
            site("kv", None, &[a.clone()], &[], false),
            Site::Fresh { exclude: vec![] }
        );
        assert_eq!(
            site("kv", None, &[a.clone(), b.clone()], &[], false),
            Site::On {
                worker_id: b.id,
                record: true
            }
        );
        // A lost worker's copy is waited for, not replaced by an empty one.
        let lost_b = worker(2, false, &[("kv", 7)]);
        assert!(matches!(
            site("kv", None, &[a.clone(), lost_b], &[], false),
            Site::Wait(_)
        ));
        // Two copies: the admin chooses, with worker_ids.
        let c = worker(3, true, &[("kv", 9)]);
        assert!(
            matches!(site("kv", None, &[a.clone(), b.clone(), c.clone()], &[], false), Site::Choose(m) if m.contains("w2") && m.contains("w3"))
        );
        assert_eq!(
            site(
                "kv",
                None,
                &[a.clone(), b.clone(), c.clone()],
                &[c.id],
                false
            ),
            Site::On {
                worker_id: c.id,
                record: true
            }
        );
        // start_empty avoids every copy and the holder.
        assert_eq!(
            site(
                "kv",
                Some(&record(&a)),
                &[a.clone(), b.clone(), c.clone()],
                &[],
                true
            ),
            Site::Fresh {
                exclude: vec![b.id, c.id, a.id]
            }
        );
    }
}
