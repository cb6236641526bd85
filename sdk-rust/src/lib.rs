//! `aerekos-sdk`: the Rust SDK for aerekos-cloud.
//!
//! Generated clients, one module per API (`conductor`, …), produced by `cargo xtask sdk` from the
//! committed specs in `openapi/`, plus a small hand-written layer: log in and get an authorized
//! client, set a token, pass on request ids, retry what is safe to retry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), aerekos_sdk::SdkError> {
//! let c = aerekos_sdk::Conductor::login("http://127.0.0.1:8080", "admin", "secret").await?;
//! let page = c.list_workers().send().await?;
//! for worker in &page.workers {
//!     println!("{} {} {:?}", worker.id, worker.hostname, worker.status);
//! }
//! # Ok(()) }
//! ```

#[allow(clippy::all, unused_imports, unused_mut, dead_code)]
#[rustfmt::skip]
mod generated {
    pub mod conductor;
    pub mod key_manager;
    pub mod logs_manager;
    pub mod metrics_manager;
    pub mod secrets_manager;
    pub mod storage_manager;
    pub mod worker;
}
pub mod tls;
mod transport;

use std::{ops::Deref, time::Duration};

pub use generated::{
    conductor, key_manager, logs_manager, metrics_manager, secrets_manager, storage_manager, worker,
};
pub use progenitor_client::{Error as ClientError, ResponseValue};
pub use tls::{Trust, fetch_ca, fetch_pinned_ca};
pub use transport::{REQUEST_ID_HEADER, RetryPolicy, Transport};

/// The body of every error response of every aerekos API (the generated modules all use this one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable error code, e.g. `invalid_credentials` or `worker_not_found`.
    pub code: String,
    /// What went wrong and what to change.
    pub message: String,
    /// The request id (also in the `X-Request-Id` response header).
    pub request_id: String,
}

/// What an SDK call can fail with, reduced to what a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The server answered with an error status and an [`ErrorBody`].
    #[error("{status} {}: {} (request id {})", body.code, body.message, body.request_id)]
    Api { status: u16, body: ErrorBody },
    /// The server could not be reached or the exchange broke off.
    #[error("could not reach the server: {0}")]
    Transport(String),
    /// The server answered with something that is not the API's.
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

impl SdkError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SdkError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The [`ErrorBody`], when the server answered with one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            SdkError::Api { body, .. } => Some(body),
            _ => None,
        }
    }
}

impl From<ClientError<ErrorBody>> for SdkError {
    fn from(err: ClientError<ErrorBody>) -> Self {
        match err {
            ClientError::ErrorResponse(rv) => SdkError::Api {
                status: rv.status().as_u16(),
                body: rv.into_inner(),
            },
            ClientError::CommunicationError(e) => SdkError::Transport(error_chain(&e)),
            other => {
                let status = other.status().map(|s| s.as_u16());
                SdkError::Unexpected(match status {
                    Some(s) => format!("status {s}: {other}"),
                    None => other.to_string(),
                })
            }
        }
    }
}

/// An error and its causes on one line (reqwest's own message leaves out why: a refused
/// certificate, a refused connection).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

impl SdkError {
    /// True when the server's certificate was refused (not trusted, expired, or for another name).
    pub fn is_certificate_refused(&self) -> bool {
        matches!(self, SdkError::Transport(m) if m.contains("certificate") || m.contains("UnknownIssuer"))
    }
}

/// A reqwest client with the SDK's defaults (timeouts; no proxy surprises on loopback), believing
/// the servers `trust` says.
pub fn http_client(trust: &Trust) -> reqwest::Client {
    trust
        .apply(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60)),
        )
        .build()
        .expect("building the HTTP client")
}

/// For APIs whose bodies stream (objects of any size): no limit on a whole exchange, but one on
/// each wait for the next bytes, so a stalled server is still noticed.
pub fn streaming_http_client(trust: &Trust) -> reqwest::Client {
    trust
        .apply(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60)),
        )
        .build()
        .expect("building the HTTP client")
}

/// Defines a client type for one API: it dereferences to the generated client, so every operation
/// is a method (`c.list_workers().send().await?`), and carries its credential in its [`Transport`].
macro_rules! api_client {
    ($(#[$doc:meta])* $name:ident, $module:ident) => {
        api_client!($(#[$doc])* $name, $module, http_client);
    };
    ($(#[$doc:meta])* $name:ident, $module:ident, $http:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            client: $module::Client,
        }

        impl Deref for $name {
            type Target = $module::Client;
            fn deref(&self) -> &$module::Client {
                &self.client
            }
        }

        impl $name {
            /// A client without credentials.
            pub fn new(base_url: &str) -> Self {
                Self::with_transport(base_url, Transport::new())
            }

            /// A client sending `token` as its bearer credential.
            pub fn with_token(base_url: &str, token: impl Into<String>) -> Self {
                Self::with_transport(base_url, Transport::new().with_token(token))
            }

            /// With `transport`, believing the servers of `AEREKOS_CA_FILE` when it is set (else
            /// the system's roots).
            pub fn with_transport(base_url: &str, transport: Transport) -> Self {
                Self::with_trust(base_url, transport, &Trust::from_env())
            }

            /// With `transport`, believing only the servers `trust` says (e.g. the cluster CA).
            pub fn with_trust(base_url: &str, transport: Transport, trust: &Trust) -> Self {
                let base = base_url.trim_end_matches('/');
                Self { client: $module::Client::new_with_client(base, $http(trust), transport) }
            }

            pub fn set_token(&self, token: Option<String>) {
                use progenitor_client::ClientInfo as _;
                self.client.inner().set_token(token);
            }

            pub fn token(&self) -> Option<String> {
                use progenitor_client::ClientInfo as _;
                self.client.inner().token()
            }
        }
    };
}

api_client!(
    /// A conductor client.
    Conductor,
    conductor
);

api_client!(
    /// A key_manager client; the same client works against the service or the conductor's gateway.
    /// Give it a user token (`Conductor::token()`) or a service token.
    KeyManager,
    key_manager
);

api_client!(
    /// A secrets_manager client (secrets, their versions, labels and rotation); the same client
    /// works against the service or the conductor's gateway. Give it a user token or an API key.
    SecretsManager,
    secrets_manager
);

api_client!(
    /// A logs_manager client (ship, query and tail log records); the same client works against
    /// the service or the conductor's gateway. Give it a user token or an API key. A tail streams
    /// for as long as it is read, so its HTTP client has no whole-request timeout.
    LogsManager,
    logs_manager,
    streaming_http_client
);

api_client!(
    /// A metrics_manager client (range queries, pushed samples, federation, alert rules); the
    /// same client works against the service or the conductor's gateway. Give it a user token or
    /// an API key.
    MetricsManager,
    metrics_manager
);

api_client!(
    /// A storage_manager client (buckets, objects, S3 access keys); the same client works against the
    /// service or the conductor's gateway. Object bodies stream both ways, so its HTTP client has no
    /// whole-request timeout (only one per read).
    StorageManager,
    storage_manager,
    streaming_http_client
);

api_client!(
    /// A worker's own API (its instances and their output); give it a user token. Its address is
    /// the worker's `api_url` in the conductor's registry. Volume exports stream, so its HTTP
    /// client has no whole-request timeout (only one per read).
    WorkerAgent,
    worker,
    streaming_http_client
);

impl Conductor {
    /// Logs in and returns a client carrying the user's token.
    pub async fn login(base_url: &str, username: &str, password: &str) -> Result<Self, SdkError> {
        let c = Self::new(base_url);
        c.login_as(username, password).await?;
        Ok(c)
    }

    /// Logs in with this client and keeps the token for its next calls.
    pub async fn login_as(
        &self,
        username: &str,
        password: &str,
    ) -> Result<conductor::types::LoginResponse, SdkError> {
        let response = self
            .client
            .login()
            .body_map(|b| b.username(username).password(password))
            .send()
            .await?
            .into_inner();
        self.set_token(Some(response.token.clone()));
        Ok(response)
    }
}
