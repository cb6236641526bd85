//! TLS for the servers of the platform (rustls with the aws-lc-rs provider, the one reqwest uses).
//!
//! - [`server_config`] turns a PEM certificate chain and key into what [`crate::server`] serves
//!   with;
//! - [`fingerprint`] is what workers and the CLI pin: the SHA-256 of the DER certificates of a CA
//!   bundle, in order (`sha256:<hex>`), as k3s and kubeadm pin a cluster's CA;
//! - the handshake of each connection runs on its own task, so a client that stalls mid-handshake
//!   never holds up the accept loop.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use sha2::{Digest as _, Sha256};

pub use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("PEM: {0}")]
    Pem(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The DER certificates of a PEM bundle, in order.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A client configuration that believes only the certificates of `ca_pem` (the cluster CA), or no
/// server at all without one.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in certificates(pem)? {
            roots.add(cert)?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A server configuration from a PEM chain (leaf first) and its PEM private key.
pub fn server_config(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server certificate that can be replaced while serving (a worker's, re-issued when it joins
/// again, say after its address changed). Until one is set, handshakes fail.
#[derive(Debug, Default)]
pub struct ReloadableCert(std::sync::RwLock<Option<Arc<rustls::sign::CertifiedKey>>>);

impl ReloadableCert {
    /// Serves `chain_pem` (leaf first) with `key_pem` from now on.
    pub fn set(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let chain = certificates(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        let signing = provider().key_provider.load_private_key(key)?;
        *self.0.write().expect("certificate lock") =
            Some(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)));
        Ok(())
    }

    /// A server configuration that presents whatever certificate is set at each handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl rustls::server::ResolvesServerCert for ReloadableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().expect("certificate lock").clone()
    }
}

/// The explicit, loudly logged opt-out that lets a component serve plain HTTP on an address other
/// machines reach (behind a TLS-terminating proxy, say); the conductor and the worker read it alike.
pub const ALLOW_PLAIN_HTTP_ENV: &str = "AEREKOS_ALLOW_PLAIN_HTTP";

/// Whether `value` (of [`ALLOW_PLAIN_HTTP_ENV`]) says yes.
pub fn plain_http_allowed(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim(), "yes" | "1" | "true"))
}

/// The variables through which a worker gives an instance its certificate (chain, then key, PEM).
pub const CERT_PEM_ENV: &str = "TLS_CERT_PEM";
pub const KEY_PEM_ENV: &str = "TLS_KEY_PEM";

/// A service's TLS from its environment: `TLS_CERT_PEM` and `TLS_KEY_PEM` (what a worker gives the
/// instances it starts), or the files `TLS_CERT_FILE` and `TLS_KEY_FILE` (an admin's). None when
/// neither pair is set: the service serves plain HTTP.
pub fn service_tls_from_env() -> Result<Option<Arc<ServerConfig>>, String> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let pair = match (get(CERT_PEM_ENV), get(KEY_PEM_ENV), get("TLS_CERT_FILE"), get("TLS_KEY_FILE")) {
        (Some(cert), Some(key), _, _) => (cert.into_bytes(), key.into_bytes()),
        (_, _, Some(cert), Some(key)) => (
            std::fs::read(&cert).map_err(|e| format!("TLS_CERT_FILE={cert}: {e}"))?,
            std::fs::read(&key).map_err(|e| format!("TLS_KEY_FILE={key}: {e}"))?,
        ),
        (None, None, None, None) => return Ok(None),
        _ => return Err("give a certificate and its key together: TLS_CERT_PEM and TLS_KEY_PEM, or TLS_CERT_FILE and TLS_KEY_FILE".into()),
    };
    server_config(&pair.0, &pair.1)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `sha256:<hex>` over the DER certificates of `bundle_pem`, in order.
pub fn fingerprint(bundle_pem: &[u8]) -> Result<String, TlsError> {
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

/// Accepts TCP connections and completes their TLS handshakes concurrently, handing on only those
/// that finished within [`HANDSHAKE_TIMEOUT`].
pub(crate) struct TlsAcceptor {
    local: Vec<poem::web::LocalAddr>,
    ready: tokio::sync::mpsc::Receiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

type Accepted = (
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    poem::web::LocalAddr,
    poem::web::RemoteAddr,
);

const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsAcceptor {
    pub(crate) fn new<A>(mut tcp: A, config: Arc<ServerConfig>) -> Self
    where
        A: poem::listener::Acceptor<Io = tokio::net::TcpStream> + 'static,
    {
        let local = tcp.local_addr();
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (stream, local, remote, _) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, local, remote)).await;
                        }
                        // A client that does not trust the certificate ends here; it is its log that says why.
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self { local, ready, task }
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl poem::listener::Acceptor for TlsAcceptor {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.local.clone()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(
        Self::Io,
        poem::web::LocalAddr,
        poem::web::RemoteAddr,
        poem::http::uri::Scheme,
    )> {
        let (io, local, remote) = self
            .ready
            .recv()
            .await
            .ok_or_else(|| std::io::Error::other("the TLS acceptor stopped"))?;
        Ok((io, local, remote, poem::http::uri::Scheme::HTTPS))
    }
}
