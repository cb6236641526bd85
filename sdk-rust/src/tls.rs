//! Which HTTPS servers a client believes.
//!
//! A cluster runs on its own CA (the conductor makes it), so clients trust that CA's bundle rather
//! than the system's roots: given outright ([`Trust::ca_bundle`]), taken from `AEREKOS_CA_FILE`
//! (how a worker hands it to the services it starts), or fetched from the conductor and accepted
//! only if its fingerprint matches a pin ([`fetch_pinned_ca`]), as k3s and kubeadm join with a
//! CA hash.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use sha2::{Digest as _, Sha256};

use crate::SdkError;

/// The environment variable naming a PEM bundle every client of this process trusts (instead of
/// the system's roots) when it is not given a [`Trust`] of its own.
pub const CA_FILE_ENV: &str = "AEREKOS_CA_FILE";
/// The same, the bundle itself (how a worker hands the cluster CA to the instances it starts, in a
/// process or a container alike).
pub const CA_PEM_ENV: &str = "AEREKOS_CA_PEM";

/// The certificates a client accepts from HTTPS servers.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    ca_pem: Option<Arc<Vec<u8>>>,
}

impl Trust {
    /// The system's roots.
    pub fn system() -> Self {
        Self::default()
    }

    /// Only certificates chaining to the CAs of this PEM bundle.
    pub fn ca_bundle(pem: impl Into<Vec<u8>>) -> Result<Self, SdkError> {
        let pem = pem.into();
        certificates(&pem)?;
        Ok(Self {
            ca_pem: Some(Arc::new(pem)),
        })
    }

    /// The bundle in `AEREKOS_CA_PEM` or the file `AEREKOS_CA_FILE` when set, else the system's
    /// roots. A bundle that cannot be read is a configuration error the process cannot work
    /// around, so it panics naming the variable.
    pub fn from_env() -> Self {
        static FROM_ENV: std::sync::OnceLock<Trust> = std::sync::OnceLock::new();
        FROM_ENV
            .get_or_init(|| {
                if let Some(pem) = std::env::var_os(CA_PEM_ENV).filter(|v| !v.is_empty()) {
                    return Trust::ca_bundle(pem.into_encoded_bytes())
                        .unwrap_or_else(|e| panic!("{CA_PEM_ENV}: {e}"));
                }
                match std::env::var_os(CA_FILE_ENV).filter(|v| !v.is_empty()) {
                    Some(path) => std::fs::read(&path)
                        .map_err(|e| SdkError::Unexpected(e.to_string()))
                        .and_then(Trust::ca_bundle)
                        .unwrap_or_else(|e| {
                            panic!("{CA_FILE_ENV}={}: {e}", path.to_string_lossy())
                        }),
                    None => Trust::system(),
                }
            })
            .clone()
    }

    /// `builder`, made to believe only what this trusts.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match &self.ca_pem {
            Some(pem) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .expect("checked when the Trust was made");
                builder.tls_certs_only(certs)
            }
            None => builder,
        }
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, SdkError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SdkError::Unexpected(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(SdkError::Unexpected(
            "the CA bundle holds no certificate".into(),
        ));
    }
    Ok(certs)
}

/// `sha256:<hex>` over the DER certificates of a PEM bundle, in order: what a pin names.
pub fn fingerprint(bundle_pem: &[u8]) -> Result<String, SdkError> {
    let mut hash = Sha256::new();
    for cert in certificates(bundle_pem)? {
        hash.update(cert.as_ref());
    }
    Ok(format!(
        "sha256:{}",
        hash.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// Fetches the conductor's CA bundle (`GET /api/tls/ca`, over a connection not yet trusted) and
/// returns it only if its fingerprint is `pin`; a different one means another server, or someone
/// in the middle, and is refused with both fingerprints named.
pub async fn fetch_pinned_ca(base_url: &str, pin: &str) -> Result<String, SdkError> {
    let (pem, seen) = fetch_ca(base_url).await?;
    if !seen.eq_ignore_ascii_case(pin.trim()) {
        return Err(SdkError::Unexpected(format!(
            "the server at {base_url} presents CA {seen}, not the pinned {pin}: refusing it (another server, or a man in the middle)"
        )));
    }
    Ok(pem)
}

/// The conductor's CA bundle and its fingerprint as computed here, without checking either
/// (trust on first use: show the fingerprint to a person, or compare it with a pin).
pub async fn fetch_ca(base_url: &str) -> Result<(String, String), SdkError> {
    let unverified = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        // Nothing sent on this connection is secret, and what comes back is checked by its hash.
        .tls_danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| SdkError::Transport(e.to_string()))?;
    let url = format!("{}/api/tls/ca", base_url.trim_end_matches('/'));
    let resp = unverified
        .get(&url)
        .send()
        .await
        .map_err(|e| SdkError::Transport(crate::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(SdkError::Unexpected(format!(
            "GET {url}: status {}",
            resp.status()
        )));
    }
    let ca: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| SdkError::Unexpected(e.to_string()))?;
    let pem = match (ca["enabled"].as_bool(), ca["pem"].as_str()) {
        (Some(true), Some(pem)) => pem.to_owned(),
        _ => {
            return Err(SdkError::Unexpected(format!(
                "{base_url} does not serve TLS, so there is no CA to pin"
            )));
        }
    };
    let seen = fingerprint(pem.as_bytes())?;
    Ok((pem, seen))
}
