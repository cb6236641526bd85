//! Logging set-up for binaries: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for JSON lines.

use tracing_subscriber::{EnvFilter, fmt};

pub fn init_from_env() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // try_init: a test harness or an embedding process may have installed a subscriber already.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
