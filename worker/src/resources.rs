//! What the worker tells the conductor about its machine, read with sysinfo.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use aerekos_sdk::conductor::types::{
    NetworkInterface, RuntimeDriver, UnavailableDriver, VolumeReport, WorkerResources,
};
use sysinfo::{Disks, Networks, System};

/// Keeps the sysinfo handles between heartbeats (CPU usage is a difference between two readings).
pub struct Probe {
    system: System,
    networks: Networks,
    /// Volume sizes and when each was measured: walking a volume of many files at every heartbeat
    /// would cost more than the figure is worth.
    volume_sizes: HashMap<String, (u64, Instant)>,
}

/// How long a measured volume size is reported before it is measured again.
const VOLUME_SIZE_MAX_AGE: Duration = Duration::from_secs(60);

impl Probe {
    pub fn new() -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self {
            system,
            networks: Networks::new_with_refreshed_list(),
            volume_sizes: HashMap::new(),
        }
    }

    pub fn hostname() -> String {
        System::host_name().unwrap_or_else(|| "unknown".into())
    }

    pub fn sample(
        &mut self,
        data_dir: &Path,
        drivers: &[RuntimeDriver],
        unavailable_drivers: &[UnavailableDriver],
    ) -> WorkerResources {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.networks.refresh(true);
        let (disk_total, disk_free) = disk_of(data_dir);
        let network = self
            .networks
            .iter()
            .map(|(name, data)| NetworkInterface {
                name: name.clone(),
                addresses: data
                    .ip_networks()
                    .iter()
                    .map(|n| n.addr.to_string())
                    .collect(),
                rx_bytes: data.total_received(),
                tx_bytes: data.total_transmitted(),
            })
            .collect();
        let cores = self.system.cpus().len().max(1) as u32;
        WorkerResources {
            cpu_cores: cores,
            cpu_usage_percent: f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
            memory_total_bytes: self.system.total_memory(),
            memory_available_bytes: self
                .system
                .available_memory()
                .min(self.system.total_memory()),
            disk_total_bytes: disk_total,
            disk_free_bytes: disk_free.min(disk_total),
            network,
            os: System::long_os_version(),
            drivers: drivers.to_vec(),
            unavailable_drivers: unavailable_drivers.to_vec(),
            volumes: self.volumes(&data_dir.join("volumes")),
        }
    }

    /// The volume directories under `dir`, every one at every call (the conductor learns of a new
    /// copy at once), with sizes at most [`VOLUME_SIZE_MAX_AGE`] old.
    fn volumes(&mut self, dir: &Path) -> Vec<VolumeReport> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return vec![];
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| crate::volumes::is_volume_name(name))
            .collect();
        names.sort();
        self.volume_sizes.retain(|name, _| names.contains(name));
        names
            .into_iter()
            .map(|name| {
                let fresh = self
                    .volume_sizes
                    .get(&name)
                    .filter(|(_, at)| at.elapsed() < VOLUME_SIZE_MAX_AGE)
                    .map(|(size, _)| *size);
                let size_bytes = fresh.unwrap_or_else(|| {
                    let size = size_of_tree(&dir.join(&name));
                    self.volume_sizes
                        .insert(name.clone(), (size, Instant::now()));
                    size
                });
                VolumeReport { name, size_bytes }
            })
            .collect()
    }
}

/// Bytes of the regular files below `dir` (symbolic links are not followed).
fn size_of_tree(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

/// Total and free bytes of the volume holding `dir` (the longest mount point containing it).
fn disk_of(dir: &Path) -> (u64, u64) {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let disks = Disks::new_with_refreshed_list();
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| (d.total_space(), d.available_space()))
}
