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
pub mod memory_table;
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

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The last `max` bytes of `text`, cut at a character boundary (the tails of output kept).
pub fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

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
