//! Business logic: rules, validation, orchestration of repositories. No HTTP request or response
//! types here; operations return the contract's models and [`aerekos_common::ApiError`].

pub mod audit;
pub mod auth;
pub mod backups;
pub mod catalog;
pub mod deployments;
pub mod instances;
pub mod jobs;
pub mod login_guard;
pub mod moves;
pub mod passwords;
pub mod platform;
pub mod registration;
pub mod routes;
pub mod sandboxes;
pub mod scheduler;
pub mod schedules;
pub mod tls;
pub mod users;
pub mod volumes;
pub mod workers;

pub use aerekos_common::db::from_ms;

/// A fresh random secret: `bytes` random bytes, base64url without padding, behind `prefix`.
pub fn random_secret(prefix: &str, bytes: usize) -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    )
}
