//! storage_manager's business logic: no HTTP types here.

pub mod access_keys;
pub mod blobs;
pub mod bucket_settings;
pub mod crypto;
pub mod lifecycle;
pub mod names;
pub mod objects;
pub mod policy;
