//! What every aerekos server shares, so each concept lives in one place:
//!
//! - [`error`]: the one JSON [`ErrorBody`] every non-2xx response carries, and [`ApiError`];
//! - [`edge`]: the middleware in front of every server (request id, body limit, access log, metrics,
//!   and turning the framework's own plain-text errors into `ErrorBody`);
//! - [`group_commit`]: records (audit trails) stored in batches before their requests are answered;
//! - [`limits`]: the limits a server's domain enforces, declared in its spec;
//! - [`names`]: names several components check (a secret's);
//! - [`metrics`]: the Prometheus text registry behind `/metrics`;
//! - [`auth`]: verifying the conductor's EdDSA JWTs with its public key (no shared secret);
//! - [`db`]: the SQLite set-up (WAL, one writer pool, a reader pool, migrations);
//! - [`net`]: a request's client address, a URL's host, this machine's outward address;
//! - [`secrets`]: 0600 files written whole or not at all;
//! - [`server`]: binding a listener (port 0 in tests) and serving with graceful shutdown;
//! - [`strict_json`]: JSON request bodies held to the string and null rules of their spec;
//! - [`throttle`]: token buckets per client address and per caller (429 with `Retry-After`);
//! - [`tls`]: serving over TLS, and the CA fingerprint workers and the CLI pin;
//! - [`telemetry`]: tracing set-up for binaries;
//! - [`volume_hold`]: the backup hold a stateful service respects before deleting files.

pub mod auth;
pub mod db;
pub mod direct_json;
pub mod edge;
pub mod error;
pub mod group_commit;
pub mod gzip;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod net;
pub mod secrets;
pub mod server;
pub mod strict_json;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod volume_hold;

pub use error::{ApiError, ApiResult, ErrorBody};
