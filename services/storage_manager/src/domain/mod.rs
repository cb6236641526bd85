//! storage_manager's business logic: no HTTP types here.

pub mod access_keys;
pub mod blobs;
pub mod crypto;
pub mod envelope;
pub mod names;
pub mod objects;
