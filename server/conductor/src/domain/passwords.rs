//! Password hashing: argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane).
//! Hashing is deliberately slow, so it runs on the blocking pool, never on a request task.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::{SaltString, rand_core::OsRng},
};

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string (`$argon2id$…`) for `password`.
pub fn hash_blocking(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        // The parameters come from the hash itself, so older hashes keep verifying.
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub fn is_phc_hash(s: &str) -> bool {
    PasswordHash::new(s).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .expect("hashing task")
}

pub async fn verify(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_blocking(&hash, &password))
        .await
        .unwrap_or(false)
}
