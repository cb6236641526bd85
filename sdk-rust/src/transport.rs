//! The hand-written half of every generated client: what progenitor leaves to us.
//!
//! The generated clients hold a [`Transport`] and call its hooks around each request (progenitor's
//! `ClientHooks`, generated in "expected" mode so these impls are required). It adds the bearer
//! token, passes on a request id, and retries a request whose connection could not be made, with
//! exponential backoff and jitter — a request that never reached the server is safe to send again
//! whatever its method. Idempotent requests (GET, HEAD, PUT, DELETE) are also retried when the
//! connection broke before a response came.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo};
use reqwest::{
    Method,
    header::{AUTHORIZATION, HeaderValue},
};

/// The header carrying the request id through every component.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

type RequestIdSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How transport failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 disables retries.
    pub retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Per-client state the hooks use: the credential, the request-id source and the retry policy.
/// Cloning shares the credential, so `set_token` on one clone is seen by all.
#[derive(Clone, Default)]
pub struct Transport {
    token: Arc<RwLock<Option<String>>>,
    request_id: Option<RequestIdSource>,
    retry: RetryPolicy,
    compress: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("Transport")
            .field("has_token", &self.token().is_some())
            .field("retry", &self.retry)
            .finish()
    }
}

impl Transport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `Authorization: Bearer <token>` on every request (a user JWT or a worker credential).
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.set_token(Some(token.into()));
        self
    }

    /// Where the request id of the current call comes from, e.g. the server's own request id so a
    /// call made while serving a request carries that request's id downstream.
    pub fn with_request_id_source(
        mut self,
        source: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.request_id = Some(Arc::new(source));
        self
    }

    /// Sends request bodies larger than [`COMPRESS_FROM_BYTES`] gzip-compressed
    /// (`Content-Encoding: gzip`). Only for servers that take them (logs_manager's ingest).
    pub fn with_gzip_requests(mut self) -> Self {
        self.compress = true;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn set_token(&self, token: Option<String>) {
        *self.token.write().expect("token lock") = token;
    }

    pub fn token(&self) -> Option<String> {
        self.token.read().expect("token lock").clone()
    }

    fn request_id(&self) -> Option<String> {
        self.request_id.as_ref().and_then(|source| source())
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(policy.max_backoff);
    // Full jitter: spread retries of many clients apart.
    let nanos = capped.as_nanos() as u64;
    let jitter = if nanos == 0 { 0 } else { rand_u64() % nanos };
    Duration::from_nanos(nanos / 2 + jitter / 2)
}

fn rand_u64() -> u64 {
    // The jitter needs no cryptographic randomness; a v4 uuid's bits are at hand.
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Bodies smaller than this go as they are: gzip's header and the work would outweigh the saving.
pub const COMPRESS_FROM_BYTES: usize = 1024;

fn gzip_body(request: &mut reqwest::Request) {
    use std::io::Write as _;
    let Some(bytes) = request.body().and_then(|b| b.as_bytes()) else {
        return;
    };
    if bytes.len() < COMPRESS_FROM_BYTES {
        return;
    }
    // Level 1: a log batch shrinks about as much as at the default, for a fraction of the CPU.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    if encoder.write_all(bytes).is_err() {
        return;
    }
    let Ok(packed) = encoder.finish() else {
        return;
    };
    request.headers_mut().insert(
        reqwest::header::CONTENT_ENCODING,
        HeaderValue::from_static("gzip"),
    );
    request
        .headers_mut()
        .remove(reqwest::header::CONTENT_LENGTH);
    *request.body_mut() = Some(packed.into());
}

/// The hooks, for any generated client whose inner type is [`Transport`].
pub(crate) async fn prepare(transport: &Transport, request: &mut reqwest::Request) {
    if transport.compress {
        gzip_body(request);
    }
    if !request.headers().contains_key(AUTHORIZATION) {
        if let Some(token) = transport.token() {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                request.headers_mut().insert(AUTHORIZATION, value);
            }
        }
    }
    if let Some(id) = transport.request_id() {
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
    }
}

pub(crate) async fn execute(
    transport: &Transport,
    client: &reqwest::Client,
    request: reqwest::Request,
) -> reqwest::Result<reqwest::Response> {
    let policy = transport.retry;
    let mut attempt = 0;
    let mut request = request;
    loop {
        // A streaming body cannot be cloned; such a request gets one try.
        let spare = if attempt < policy.retries {
            request.try_clone()
        } else {
            None
        };
        let idempotent = is_idempotent(request.method());
        match client.execute(request).await {
            Ok(response) => return Ok(response),
            Err(err) => {
                let retriable = err.is_connect()
                    || (idempotent && (err.is_request() || err.is_body()) && !err.is_timeout());
                match spare {
                    Some(next) if retriable => {
                        tokio::time::sleep(backoff(&policy, attempt)).await;
                        attempt += 1;
                        request = next;
                    }
                    _ => return Err(err),
                }
            }
        }
    }
}

/// Implements progenitor's hooks for a generated client whose inner type is [`Transport`].
macro_rules! transport_hooks {
    ($client:ty) => {
        impl ClientHooks<Transport> for $client {
            async fn pre<E>(
                &self,
                request: &mut reqwest::Request,
                _info: &OperationInfo,
            ) -> std::result::Result<(), progenitor_client::Error<E>> {
                prepare(self.inner(), request).await;
                Ok(())
            }

            async fn exec(
                &self,
                request: reqwest::Request,
                _info: &OperationInfo,
            ) -> reqwest::Result<reqwest::Response> {
                execute(self.inner(), self.client(), request).await
            }
        }
    };
}

transport_hooks!(crate::conductor::Client);
transport_hooks!(crate::key_manager::Client);
transport_hooks!(crate::storage_manager::Client);
transport_hooks!(crate::secrets_manager::Client);
transport_hooks!(crate::logs_manager::Client);
transport_hooks!(crate::metrics_manager::Client);
transport_hooks!(crate::worker::Client);
