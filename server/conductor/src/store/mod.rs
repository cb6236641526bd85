//! Repositories: SQL in, rows out, no business rules. Every write that belongs with another is one
//! transaction. The connection handling is `aerekos_common::db`.

pub mod audit;
pub mod backups;
pub mod instances;
pub mod issued_tokens;
pub mod jobs;
pub mod moves;
pub mod platform;
pub mod sandboxes;
pub mod schedules;
pub mod services;
pub mod tokens;
pub mod users;
pub mod volumes;
pub mod workers;

pub use aerekos_common::db::{Db, DbResult, now_ms};

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
