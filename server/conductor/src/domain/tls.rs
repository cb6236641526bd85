//! The cluster's certificates.
//!
//! Unless the admin gives a certificate (`TLS_CERT_FILE`, `TLS_KEY_FILE`), the conductor makes a
//! cluster CA in its data directory (`tls/ca.pem`, `tls/ca.key`, 0600) on first start and issues
//! its own server certificate from it at every start (so new names in `TLS_SANS` are picked up).
//! Workers and the CLI trust the CA *bundle* served at `GET /api/tls/ca` only after checking its
//! fingerprint against the pin they were given (`CONDUCTOR_CA_PIN`, shown by `aerekos token show`)
//! or took at login, as k3s and kubeadm do.

use std::{net::IpAddr, path::Path, sync::Arc};

use aerekos_common::{secrets::write_secret_file, tls};
use chrono::Datelike as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::StartError;

/// The cluster CA's subject; the same at every start, so certificates issued before a restart
/// still chain to the CA file.
const CA_NAME: &str = "aerekos cluster CA";
/// How long a certificate the CA issues is valid.
const LEAF_DAYS: i64 = 365;

pub struct ClusterCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

impl ClusterCa {
    /// The CA in `dir` (`ca.pem`, `ca.key`), made on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, StartError> {
        aerekos_common::secrets::create_private_dir(dir)?;
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let bad =
            |e: rcgen::Error| StartError::Tls(format!("cluster CA in {}: {e}", dir.display()));
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(bad)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(bad)?;
                write_secret_file(&key_path, key.serialize_pem().as_bytes())?;
                key
            }
            Err(e) => return Err(e.into()),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = name(CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_for(&mut params, 3650);
        // The certificate object signs leaves; the file is what clients trust (made once).
        let cert = params.self_signed(&key).map_err(bad)?;
        let pem = match std::fs::read_to_string(&cert_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_secret_file(&cert_path, cert.pem().as_bytes())?;
                tracing::info!(path = %cert_path.display(), "made the cluster CA");
                cert.pem()
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self { cert, key, pem })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses): (chain PEM, key PEM).
    pub fn issue(
        &self,
        common_name: &str,
        names: &[String],
    ) -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        valid_for(&mut params, LEAF_DAYS);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((format!("{}{}", cert.pem(), self.pem), key.serialize_pem()))
    }
}

/// How long a certificate the CA issues is valid (for the answer's `expires_at`).
pub fn leaf_lifetime() -> chrono::Duration {
    chrono::Duration::days(LEAF_DAYS)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "aerekos-cloud");
    dn
}

/// Valid from yesterday (clocks differ) until `days` from now.
fn valid_for(params: &mut CertificateParams, days: i64) {
    let ymd = |d: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(chrono::Utc::now() - chrono::Duration::days(1));
    params.not_after = ymd(chrono::Utc::now() + chrono::Duration::days(days));
}

/// How the conductor serves: its TLS configuration and the CA bundle clients pin.
pub struct ConductorTls {
    pub server: Arc<tls::ServerConfig>,
    /// What `GET /api/tls/ca` serves: the cluster CA, then the admin's `TLS_CA_FILE` if any.
    pub bundle_pem: String,
    pub fingerprint: String,
    pub ca: ClusterCa,
}

/// The names the conductor's own certificate carries: `extra` (`TLS_SANS`), this host's name, the
/// bound address when specific, the address other machines most likely reach (the one routing to
/// the outside), and loopback.
pub fn conductor_names(bind: IpAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = extra.to_vec();
    names.extend([
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]);
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_owned());
    }
    if !bind.is_unspecified() {
        names.push(bind.to_string());
    }
    // The address on the route out (to a documentation address: nothing is sent).
    if let Some(outward) =
        aerekos_common::net::outward_address(std::net::SocketAddr::from(([192, 0, 2, 1], 9)))
    {
        names.push(outward.to_string());
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

impl ConductorTls {
    pub fn start(
        data_dir: &Path,
        config: &crate::config::TlsConfig,
        bind: IpAddr,
    ) -> Result<Self, StartError> {
        let ca = ClusterCa::load_or_create(&data_dir.join("tls"))?;
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| StartError::Tls(format!("{}: {e}", path.display())))
        };
        let (chain, key, admin_ca) = match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => (
                read(cert)?,
                read(key)?,
                config.ca_file.as_deref().map(read).transpose()?,
            ),
            _ => {
                let names = conductor_names(bind, &config.sans);
                let (chain, key) = ca
                    .issue("aerekos conductor", &names)
                    .map_err(|e| StartError::Tls(e.to_string()))?;
                tracing::info!(names = ?names, "issued the conductor's certificate from the cluster CA (add names with TLS_SANS)");
                (chain.into_bytes(), key.into_bytes(), None)
            }
        };
        let server =
            tls::server_config(&chain, &key).map_err(|e| StartError::Tls(e.to_string()))?;
        let mut bundle_pem = ca.pem().to_owned();
        if let Some(admin_ca) = admin_ca {
            bundle_pem.push_str(&String::from_utf8_lossy(&admin_ca));
        }
        let fingerprint =
            tls::fingerprint(bundle_pem.as_bytes()).map_err(|e| StartError::Tls(e.to_string()))?;
        Ok(Self {
            server,
            bundle_pem,
            fingerprint,
            ca,
        })
    }
}

impl ConductorTls {
    /// A certificate for what listens on `worker`'s machine (its API, or an instance of it): its
    /// address, its hostname and loopback.
    pub fn issue_for_worker(
        &self,
        worker: &crate::model::Worker,
        what: &str,
    ) -> aerekos_common::ApiResult<crate::model::IssuedCertificate> {
        let mut names = vec![
            worker.ip_address.clone(),
            worker.hostname.clone(),
            "127.0.0.1".into(),
            "::1".into(),
            "localhost".into(),
        ];
        names.retain(|n| !n.is_empty());
        names.dedup();
        let (certificate_pem, private_key_pem) = self
            .ca
            .issue(&format!("{what} on {}", worker.name), &names)
            .map_err(aerekos_common::ApiError::internal)?;
        Ok(crate::model::IssuedCertificate {
            certificate_pem,
            private_key_pem,
            names,
            expires_at: chrono::Utc::now() + leaf_lifetime(),
        })
    }
}
