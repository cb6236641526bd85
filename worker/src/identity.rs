//! The worker's identity (id and credential from the conductor), kept in its data directory (0600)
//! so a restart, a power cut or a new IP address never makes it a new worker.

use std::{io, path::Path};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

const FILE: &str = "identity.json";

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub worker_id: Uuid,
    pub credential: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

pub fn load(data_dir: &Path) -> io::Result<Option<Identity>> {
    match std::fs::read(data_dir.join(FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn store(data_dir: &Path, identity: &Identity) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(identity).map_err(io::Error::other)?;
    aerekos_common::secrets::write_secret_file(&data_dir.join(FILE), &bytes)
}
