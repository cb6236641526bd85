//! Throttling: token buckets per client address and per caller, in front of every aerekos server.
//!
//! A request takes one token from its address's bucket and, when it names a caller, one from the
//! caller's. An empty bucket answers 429 `rate_limited` with `Retry-After` and an [`ErrorBody`]
//! before the request reaches the API. The caller is the bearer token or S3 access key id *as
//! sent* (hashed; not verified here, which is the API's work): made-up callers still drain their
//! address's bucket, and a real caller's bucket cannot be drained by anyone without its token.
//!
//! The address is the TCP peer, except behind a trusted proxy (the conductor's gateway, which sets
//! `X-Forwarded-For`), where it is the address the proxy names: otherwise every client of the
//! gateway would share the conductor's one bucket at each service.
//!
//! Limits come from the environment (`RATE_LIMIT_PER_ADDRESS`, `RATE_LIMIT_PER_CALLER`), the same
//! variables for every server; see [`ThrottleConfig::from_env`].

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher as _,
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use poem::{
    Request, Response,
    http::{HeaderValue, StatusCode, header},
};

use crate::edge::error_response;

/// One limit: `rate` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_second: u32,
    pub burst: u32,
}

impl Limit {
    /// Parses `<n>/s` or `<n>/min`, optionally followed by `,burst=<m>` (default burst: 2 × the
    /// per-second rate, at least 1); `off` means no limit.
    pub fn parse(text: &str) -> Result<Option<Limit>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(None);
        }
        let bad = || {
            format!(
                "{text:?} is not a rate: write e.g. `100/s`, `600/min`, `100/s,burst=400` or `off`"
            )
        };
        let (rate, burst) = match text.split_once(',') {
            Some((rate, burst)) => (
                rate.trim(),
                Some(
                    burst
                        .trim()
                        .strip_prefix("burst=")
                        .ok_or_else(bad)?
                        .parse::<u32>()
                        .map_err(|_| bad())?,
                ),
            ),
            None => (text, None),
        };
        let (n, unit) = rate.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let per_second = match unit.trim() {
            "s" | "sec" | "second" => n,
            "min" | "minute" => n.div_ceil(60),
            _ => return Err(bad()),
        };
        if n == 0 {
            return Ok(None);
        }
        let burst = burst.unwrap_or(per_second.saturating_mul(2)).max(1);
        Ok(Some(Limit {
            per_second: per_second.max(1),
            burst,
        }))
    }

    fn quota(self) -> Quota {
        let rate = NonZeroU32::new(self.per_second).expect("per_second is at least 1");
        Quota::per_second(rate)
            .allow_burst(NonZeroU32::new(self.burst).expect("burst is at least 1"))
    }
}

/// The limits of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// `RATE_LIMIT_PER_ADDRESS`, default `5000/s,burst=10000`.
    pub per_address: Option<Limit>,
    /// `RATE_LIMIT_PER_CALLER`, default `5000/s,burst=10000`.
    pub per_caller: Option<Limit>,
    /// Peers whose `X-Forwarded-For` names the client (the conductor, for services behind its
    /// gateway). Set by the server, not the environment.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        // Generous: they stop floods, not a busy app (a KMS or S3 client from one host).
        let limit = Some(Limit {
            per_second: 5000,
            burst: 10_000,
        });
        Self {
            per_address: limit,
            per_caller: limit,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ThrottleConfig {
    /// No limits (benchmarks' references, tests that are not about throttling).
    pub fn off() -> Self {
        Self {
            per_address: None,
            per_caller: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// The defaults, overridden by `RATE_LIMIT_PER_ADDRESS` and `RATE_LIMIT_PER_CALLER`.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut config = Self::default();
        for (var, slot) in [
            ("RATE_LIMIT_PER_ADDRESS", &mut config.per_address),
            ("RATE_LIMIT_PER_CALLER", &mut config.per_caller),
        ] {
            if let Some(text) = get(var).filter(|t| !t.trim().is_empty()) {
                *slot = Limit::parse(&text).map_err(|e| format!("{var}: {e}"))?;
            }
        }
        Ok(config)
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The buckets of one server, checked by its [`crate::edge::Edge`]. Clones share them.
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Buckets>,
}

struct Buckets {
    per_address: Option<Keyed<IpAddr>>,
    per_caller: Option<Keyed<u64>>,
    trusted_proxies: Vec<IpAddr>,
    hasher: RandomState,
    checks: AtomicU64,
}

/// Every this many checks, buckets that are full again are forgotten (memory stays bounded by the
/// number of recently active clients).
const FORGET_EVERY: u64 = 10_000;

impl Throttle {
    pub fn new(config: &ThrottleConfig) -> Self {
        Self {
            inner: Arc::new(Buckets {
                per_address: config.per_address.map(|l| RateLimiter::keyed(l.quota())),
                per_caller: config.per_caller.map(|l| RateLimiter::keyed(l.quota())),
                trusted_proxies: config.trusted_proxies.clone(),
                hasher: RandomState::new(),
                checks: AtomicU64::new(0),
            }),
        }
    }

    /// `Err(seconds to wait)` when `req` is over a limit.
    pub fn check(&self, req: &Request) -> Result<(), u64> {
        let b = &self.inner;
        if b.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            if let Some(l) = &b.per_address {
                l.retain_recent();
            }
            if let Some(l) = &b.per_caller {
                l.retain_recent();
            }
        }
        let wait = |not_until: governor::NotUntil<governor::clock::QuantaInstant>| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        };
        if let Some(limiter) = &b.per_address {
            limiter
                .check_key(&crate::net::client_address(req, &b.trusted_proxies))
                .map_err(wait)?;
        }
        if let (Some(limiter), Some(caller)) = (&b.per_caller, caller_of(req)) {
            limiter
                .check_key(&b.hasher.hash_one(caller))
                .map_err(wait)?;
        }
        Ok(())
    }
}

/// `config` for a service behind the conductor's gateway at `conductor_url`: the gateway's
/// `X-Forwarded-For` names the client.
pub fn behind_gateway(config: &ThrottleConfig, conductor_url: &str) -> ThrottleConfig {
    let mut config = config.clone();
    config.trusted_proxies.extend(
        crate::net::resolve_url_host(conductor_url)
            .into_iter()
            .map(|a| a.ip()),
    );
    config
}

/// Who the request says it is: the bearer token, or an S3 signature's access key id.
fn caller_of(req: &Request) -> Option<&str> {
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return Some(token);
    }
    // `AWS4-HMAC-SHA256 Credential=<key id>/<date>/…`
    let credential = auth.split("Credential=").nth(1)?;
    credential.split('/').next()
}

/// The 429 answer to a request over a limit.
pub fn too_many_requests(wait_secs: u64) -> Response {
    let mut resp = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this address or caller; try again in {wait_secs} s"),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(
            Limit::parse("100/s").unwrap(),
            Some(Limit {
                per_second: 100,
                burst: 200
            })
        );
        assert_eq!(
            Limit::parse("600/min,burst=5").unwrap(),
            Some(Limit {
                per_second: 10,
                burst: 5
            })
        );
        assert_eq!(Limit::parse("off").unwrap(), None);
        assert!(Limit::parse("100").unwrap_err().contains("100/s"));
        assert!(Limit::parse("10/s,bust=3").is_err());
    }
}
