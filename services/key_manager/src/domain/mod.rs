//! The KMS logic: key material and its protection (`crypto`), the key ring (`keys`), and the audit
//! log (`audit`). No HTTP types; operations return the contract's models and `ApiError`.

pub mod audit;
pub mod crypto;
pub mod keys;
