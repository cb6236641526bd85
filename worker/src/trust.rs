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
            Some(pin)
                if !aerekos_sdk::tls::fingerprint(stored.as_bytes())
                    .is_ok_and(|f| f.eq_ignore_ascii_case(pin.trim())) =>
            {
                tracing::warn!(path = %path.display(), "the stored conductor CA does not match CONDUCTOR_CA_PIN; fetching it again");
            }
            _ => return Ok((bundle(&stored)?, Some(stored))),
        }
    }
    let Some(pin) = &config.conductor_ca_pin else {
        tracing::info!(
            "CONDUCTOR_URL is https and no CONDUCTOR_CA_PIN is set: the conductor's certificate must chain to the system's roots (or AEREKOS_CA_FILE)"
        );
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
    Trust::ca_bundle(pem.as_bytes().to_vec())
        .map_err(|e| StartError::Trust(format!("the conductor's CA bundle: {e}")))
}

fn read(path: &Path) -> Result<Option<String>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The worker's certificates from the cluster CA: one for its own API, one per instance whose
/// spec says `tls`. Each is kept on disk (0600, certificate chain then key) so a worker restarting
/// while the conductor is away still serves and starts its instances; a certificate within
/// [`RENEW_BEFORE`] of its end is asked for again.
pub struct Certificates {
    dir: std::path::PathBuf,
    /// What the worker API presents; replaced at each join (a new address needs a new one).
    pub api: std::sync::Arc<aerekos_common::tls::ReloadableCert>,
}

const RENEW_BEFORE: chrono::Duration = chrono::Duration::days(30);

/// A kept certificate: PEM chain and key, and when it ends.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    certificate_pem: String,
    private_key_pem: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

impl Certificates {
    /// The certificates under `<data dir>/certs`; the API's kept one is served at once.
    pub fn open(data_dir: &Path) -> Result<Self, StartError> {
        let dir = data_dir.join("certs");
        aerekos_common::secrets::create_private_dir(&dir)?;
        let certs = Self {
            dir,
            api: Default::default(),
        };
        if let Some(kept) = certs.kept("api") {
            certs.serve_api(&kept)?;
        }
        Ok(certs)
    }

    fn kept(&self, name: &str) -> Option<Kept> {
        let kept: Kept =
            serde_json::from_slice(&std::fs::read(self.dir.join(format!("{name}.json"))).ok()?)
                .ok()?;
        (kept.expires_at - chrono::Utc::now() > RENEW_BEFORE).then_some(kept)
    }

    fn keep(&self, name: &str, cert: &aerekos_sdk::conductor::types::IssuedCertificate) -> Kept {
        let kept = Kept {
            certificate_pem: cert.certificate_pem.clone(),
            private_key_pem: cert.private_key_pem.clone(),
            expires_at: cert.expires_at,
        };
        let bytes = serde_json::to_vec(&kept).expect("a certificate serializes");
        if let Err(e) = aerekos_common::secrets::write_secret_file(
            &self.dir.join(format!("{name}.json")),
            &bytes,
        ) {
            tracing::warn!(error = %e, name, "could not keep the certificate on disk; it is asked for again at the next start");
        }
        kept
    }

    fn serve_api(&self, kept: &Kept) -> Result<(), StartError> {
        self.api
            .set(
                kept.certificate_pem.as_bytes(),
                kept.private_key_pem.as_bytes(),
            )
            .map_err(|e| StartError::Trust(format!("the worker API's certificate: {e}")))
    }

    /// Asks the conductor for a new API certificate (at each join) and serves it.
    pub async fn renew_api(
        &self,
        conductor: &aerekos_sdk::Conductor,
        worker_id: uuid::Uuid,
    ) -> Result<(), String> {
        let cert = conductor
            .issue_worker_certificate()
            .id(worker_id)
            .send()
            .await
            .map_err(|e| SdkError::from(e).to_string())?;
        let kept = self.keep("api", &cert.into_inner());
        self.serve_api(&kept).map_err(|e| e.to_string())
    }

    /// The certificate for instance `instance`, kept or newly issued: (chain PEM, key PEM).
    pub async fn for_instance(
        &self,
        conductor: &aerekos_sdk::Conductor,
        worker_id: uuid::Uuid,
        instance: uuid::Uuid,
    ) -> Result<(String, String), String> {
        let name = format!("instance-{instance}");
        let kept = match self.kept(&name) {
            Some(kept) => kept,
            None => {
                let cert = conductor
                    .issue_instance_certificate()
                    .id(worker_id)
                    .instance_id(instance)
                    .send()
                    .await
                    .map_err(|e| SdkError::from(e).to_string())?;
                self.keep(&name, &cert.into_inner())
            }
        };
        Ok((kept.certificate_pem, kept.private_key_pem))
    }

    /// Forgets the certificates of instances no longer assigned here.
    pub fn forget_instances_except(&self, keep: &std::collections::HashSet<uuid::Uuid>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name
                .strip_prefix("instance-")
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse().ok());
            if id.is_some_and(|id| !keep.contains(&id)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
