//! Which conductor this worker believes.
//!
//! Over `https://`, the worker trusts the conductor's CA bundle, and only after its fingerprint
//! matched `CONDUCTOR_CA_PIN` (the join command `aerekos token show` prints carries it): fetched on
//! the first start, then kept in `<data dir>/conductor-ca.pem` so restarts (power cuts, a
//! conductor away) need no fetch. A bundle whose fingerprint differs from the pin is refused and
//! the worker does not start: it is another server, or someone in the middle. Without a pin the
//! worker believes the system's roots (an admin's publicly trusted certificate) or
//! `AEREKOS_CA_FILE`.
//!
//! The instances it starts get the bundle in `AEREKOS_CA_PEM`, so the services trust the same
//! conductor (see [`crate::driver::Platform::env`]).

use std::{path::Path, time::Duration};

use aerekos_sdk::{SdkError, Trust};

use crate::{StartError, WorkerConfig};

pub const CA_FILE: &str = "conductor-ca.pem";

/// The trust for `config`'s conductor and the bundle (PEM) when it is a pinned cluster CA.
pub async fn resolve(config: &WorkerConfig) -> Result<(Trust, Option<String>), StartError> {
    if let Some(pem) = &config.conductor_ca_pem {
        return Ok((bundle(pem)?, Some(pem.clone())));
    }
    if !config.conductor_url.starts_with("https://") {
        return Ok((Trust::from_env(), None));
    }
    let path = config.data_dir.join(CA_FILE);
    if let Some(stored) = read(&path)? {
        match &config.conductor_ca_pin {
            Some(pin) if !aerekos_sdk::tls::fingerprint(stored.as_bytes()).is_ok_and(|f| f.eq_ignore_ascii_case(pin.trim())) => {
                tracing::warn!(path = %path.display(), "the stored conductor CA does not match CONDUCTOR_CA_PIN; fetching it again");
            }
            _ => return Ok((bundle(&stored)?, Some(stored))),
        }
    }
    let Some(pin) = &config.conductor_ca_pin else {
        tracing::info!("CONDUCTOR_URL is https and no CONDUCTOR_CA_PIN is set: the conductor's certificate must chain to the system's roots (or AEREKOS_CA_FILE)");
        return Ok((Trust::from_env(), None));
    };
    let pem = fetch_until_answered(&config.conductor_url, pin).await?;
    aerekos_common::secrets::write_secret_file(&path, pem.as_bytes())?;
    tracing::info!(pin = %pin, "the conductor's CA matches the pin; kept for later starts");
    Ok((bundle(&pem)?, Some(pem)))
}

/// Retries while the conductor cannot be reached; a fingerprint other than the pin ends it.
async fn fetch_until_answered(url: &str, pin: &str) -> Result<String, StartError> {
    let mut wait = Duration::from_millis(500);
    loop {
        match aerekos_sdk::fetch_pinned_ca(url, pin).await {
            Ok(pem) => return Ok(pem),
            Err(SdkError::Transport(e)) => {
                tracing::warn!(error = %e, "cannot reach the conductor to check its CA against the pin; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(StartError::Trust(e.to_string())),
        }
    }
}

fn bundle(pem: &str) -> Result<Trust, StartError> {
    Trust::ca_bundle(pem.as_bytes().to_vec()).map_err(|e| StartError::Trust(format!("the conductor's CA bundle: {e}")))
}

fn read(path: &Path) -> Result<Option<String>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
