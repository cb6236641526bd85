//! Logging set-up for binaries: `RUST_LOG` filters (default `info`; s3s's per-request error lines
//! are off unless RUST_LOG names s3s), `LOG_FORMAT=json` for JSON lines.

use tracing_subscriber::{EnvFilter, fmt};

pub fn init_from_env() {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    // s3s (storage_manager's S3 layer) logs every S3 error answer at ERROR, a 404 for a key that is
    // not there included; the access log already records each request and its status. Name s3s in
    // RUST_LOG to see its lines.
    let spec = if spec.contains("s3s") {
        spec
    } else {
        format!("{spec},s3s=off")
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info,s3s=off"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // try_init: a test harness or an embedding process may have installed a subscriber already.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
