//! The conductor API's data shapes. Doc comments here are spec text: they are part of the contract.

use std::collections::BTreeMap;

use aerekos_common::direct_json::rfc3339;
use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// What a user may do: `admin` may change things, `viewer` may only read.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// A user of the platform.
#[derive(Object, Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    /// A disabled user cannot log in, and its tokens were revoked when it was disabled.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The platform's users.
#[derive(Object, Debug, Clone)]
pub struct UserList {
    pub users: Vec<User>,
}

/// A new user (admin only).
#[derive(Object, Debug, Clone)]
pub struct CreateUserRequest {
    /// 1–64 characters of a–z, 0–9, `.`, `_` or `-`.
    pub username: String,
    pub role: Role,
    /// 12–1024 bytes.
    pub password: String,
}

/// Changes to a user (admin only); what is left out stays. Disabling or demoting an admin revokes
/// the user's tokens; the last enabled admin can be neither.
#[derive(Object, Debug, Clone, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// A new password set by an admin; the user's tokens are revoked.
#[derive(Object, Debug, Clone)]
pub struct SetPasswordRequest {
    /// 12–1024 bytes.
    pub password: String,
}

/// A user changing their own password.
#[derive(Object, Debug, Clone)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// 12–1024 bytes.
    pub new_password: String,
}

/// What a token the conductor signed is for.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum IssuedTokenKind {
    /// A user's login.
    Session,
    /// A service token (from `POST /api/auth/service-tokens`, or one a worker got for an instance).
    Service,
    /// An app's API key (from `POST /api/auth/api-keys`).
    #[oai(rename = "api_key")]
    ApiKey,
}

/// A new API key for an app (admin only).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateApiKeyRequest {
    /// 1–64 characters of a–z, A–Z, 0–9, `-`, `_`, `.`; names the app in audit records.
    pub name: String,
    /// What the key may do, each `<service>:<action>:<resource>` with the resource a key or bucket
    /// name or `*`: `key_manager:` `encrypt`, `decrypt`, `generate_data_key`, `read`;
    /// `storage_manager:` `read`, `write`. E.g. `key_manager:encrypt:payments`,
    /// `storage_manager:read:invoices`.
    pub scopes: Vec<String>,
    /// Lifetime in seconds; default 90 days, at most 2 years.
    pub expires_in_secs: Option<u64>,
}

/// An API key, as created. `key` is in this answer only: keep it; it cannot be shown again.
#[derive(Object, Debug, Clone)]
pub struct ApiKey {
    /// Revoke it with `DELETE /api/auth/tokens/{id}`.
    pub id: String,
    pub name: String,
    /// Send it as `Authorization: Bearer <key>` to the services (through the gateway).
    pub key: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// A token the conductor signed that is still valid. The token itself is never shown again.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct IssuedToken {
    /// The token's id (its `jti` claim); revoke it with `DELETE /api/auth/tokens/{id}`.
    pub id: String,
    pub kind: IssuedTokenKind,
    /// The user of a session.
    pub user_id: Option<Uuid>,
    /// The username, service name or API key name.
    pub name: String,
    /// What an API key grants (empty for the others).
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Valid tokens, newest first (at most 1,000).
#[derive(Object, Debug, Clone)]
pub struct IssuedTokenList {
    pub tokens: Vec<IssuedToken>,
}

/// A revoked token, refused until it expires.
#[derive(Object, Debug, Clone)]
pub struct Revocation {
    /// The token's `jti`.
    pub token_id: String,
    /// Its `exp` (Unix seconds): after it the token is refused anyway.
    pub expires_at: i64,
}

/// What services and workers learn from `GET /api/auth/revocations`.
#[derive(Object, Debug, Clone)]
pub struct RevocationFeed {
    /// Unexpired revocations after the `after` asked for, oldest first (at most 1,000).
    pub revocations: Vec<Revocation>,
    /// The `after` to ask with next.
    pub next_after: i64,
    /// True when the feed was sent from its start because `after` was ahead of it (the
    /// conductor's database was replaced): the follower should drop what it knew.
    pub restarted: bool,
}

/// One record of the audit trail.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `user:<name>`, `service:<name>`, `worker:<id>` or `anonymous`.
    pub actor: String,
    /// The operation id, e.g. `deploy_service` or `login`.
    pub action: String,
    /// The path asked for, e.g. `/api/services/key_manager/deploy`.
    pub target: String,
    /// The HTTP status answered: 2xx done, 4xx refused, 5xx failed.
    pub status: u16,
    pub request_id: String,
    pub client_ip: Option<String>,
}

/// A page of the audit trail, newest first.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Credentials of a seeded user.
#[derive(Object, Debug, Clone)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// A signed access token for the user.
#[derive(Object, Debug, Clone)]
pub struct LoginResponse {
    /// The JWT: send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    pub expires_in_secs: u64,
    pub user: User,
}

/// A request for a token a platform service uses to call other services.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct ServiceTokenRequest {
    /// The service's name, e.g. `storage_manager` (1–64 of a–z, 0–9, `_`).
    pub service: String,
    /// Lifetime in seconds; default 30 days, at most 365 days.
    pub expires_in_secs: Option<u64>,
}

/// A signed service token.
#[derive(Object, Debug, Clone)]
pub struct ServiceToken {
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its id, to revoke it with `DELETE /api/auth/tokens/{id}`.
    pub token_id: String,
    pub service: String,
    pub expires_at: DateTime<Utc>,
}

/// The conductor's token-signing public keys, as a JSON Web Key Set (RFC 7517). Services and
/// workers verify user tokens with these; no secret is shared.
#[derive(Object, Debug, Clone)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Object, Debug, Clone)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// Key id; tokens name it in their `kid` header.
    pub kid: String,
    /// Algorithm: `EdDSA`.
    pub alg: String,
    /// Use: `sig`.
    #[oai(rename = "use")]
    pub use_: String,
}

/// The token a new worker presents to register.
#[derive(Object, Debug, Clone)]
pub struct RegistrationToken {
    pub token: String,
    pub created_at: DateTime<Utc>,
}

/// One network interface of a worker.
#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct NetworkInterface {
    pub name: String,
    /// IP addresses of the interface.
    #[oai(default)]
    #[serde(default)]
    pub addresses: Vec<String>,
    #[oai(default)]
    #[serde(default)]
    pub rx_bytes: u64,
    #[oai(default)]
    #[serde(default)]
    pub tx_bytes: u64,
}

/// A runtime a worker can run instances with.
#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct RuntimeDriver {
    /// `docker` or `process`.
    pub name: String,
    /// e.g. the Docker engine version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A runtime driver a worker cannot offer, and why.
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnavailableDriver {
    /// `docker` or `microvm`.
    pub name: String,
    /// What is missing, e.g. `no kernel in /boot; install Debian's linux-image-amd64 or set
    /// MICROVM_KERNEL`.
    pub reason: String,
}

/// What a worker reports about its machine.
#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkerResources {
    #[oai(validator(minimum(value = "1")))]
    pub cpu_cores: u32,
    /// Average CPU use over all cores, 0–100.
    #[oai(validator(minimum(value = "0"), maximum(value = "100")))]
    pub cpu_usage_percent: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    /// Size of the volume holding the worker's data directory.
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    #[oai(default)]
    #[serde(default)]
    pub network: Vec<NetworkInterface>,
    /// Operating system name and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Runtime drivers usable on this worker.
    #[oai(default)]
    #[serde(default)]
    pub drivers: Vec<RuntimeDriver>,
    /// Runtime drivers this worker does not offer, each with why (what to install or set).
    #[oai(default)]
    #[serde(default)]
    pub unavailable_drivers: Vec<UnavailableDriver>,
    /// The volume directories this worker holds (`<data dir>/volumes/<name>`), whether or not an
    /// instance uses them now.
    #[oai(default)]
    #[serde(default)]
    pub volumes: Vec<VolumeReport>,
}

/// A volume directory a worker holds.
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeReport {
    pub name: String,
    /// Bytes of the files in it (measured at most once a minute).
    pub size_bytes: u64,
}

/// A worker asking to join (or rejoin) the cluster.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct RegisterWorkerRequest {
    /// The cluster's registration token (`GET /api/token`).
    pub registration_token: String,
    /// The id this worker was given before, to keep its identity across restarts and IP changes.
    pub worker_id: Option<Uuid>,
    /// The credential that came with `worker_id`.
    pub worker_credential: Option<String>,
    /// A display name (at most 128 bytes); defaults to the hostname.
    pub name: Option<String>,
    /// The machine's hostname (1–253 bytes).
    pub hostname: String,
    /// The address the conductor and other workers reach this worker at.
    pub ip_address: String,
    /// Labels for placement constraints, e.g. `{"zone": "rack-1"}`.
    #[oai(default)]
    pub labels: BTreeMap<String, String>,
    pub resources: WorkerResources,
    /// Where the worker's own API (its instances, their logs) answers, e.g. `http://10.0.0.5:8201`.
    pub api_url: Option<String>,
}

/// The identity a worker keeps in its data directory.
#[derive(Object, Debug, Clone)]
pub struct RegisterWorkerResponse {
    pub worker_id: Uuid,
    /// Send it as `Authorization: Bearer <credential>` on heartbeats. Keep it secret.
    pub worker_credential: String,
    /// How often to heartbeat.
    pub heartbeat_interval_secs: u64,
    /// False when an existing worker was recognised and updated.
    pub created: bool,
}

/// A worker's periodic report.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct HeartbeatRequest {
    pub resources: WorkerResources,
    /// The worker's current address, when it may have changed.
    pub ip_address: Option<String>,
}

/// The conductor's answer to a heartbeat.
#[derive(Object, Debug, Clone)]
pub struct HeartbeatResponse {
    pub heartbeat_interval_secs: u64,
    pub server_time: DateTime<Utc>,
}

/// `live`: heard from within the worker TTL; `lost`: silent for longer.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    Live,
    Lost,
}

// Answered as `DirectJson`: its serde form must stay poem-openapi's (`aerekos_common::direct_json`).
/// A machine of the cluster.
#[derive(Object, Debug, Clone, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct Worker {
    pub id: Uuid,
    pub name: String,
    pub hostname: String,
    pub ip_address: String,
    pub labels: BTreeMap<String, String>,
    pub status: WorkerStatus,
    pub resources: WorkerResources,
    /// Where the worker's own API answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub registered_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub last_heartbeat_at: DateTime<Utc>,
}

/// One page of workers, ordered by id.
#[derive(Object, Debug, Clone, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkerPage {
    pub workers: Vec<Worker>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Resources summed over live workers.
#[derive(Object, Debug, Clone)]
pub struct ClusterResources {
    pub live_workers: u64,
    pub lost_workers: u64,
    pub cpu_cores: u64,
    /// Average CPU use over all live cores, 0–100.
    pub cpu_usage_percent: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
}

/// Resources an instance reserves.
#[derive(Object, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceSpec {
    /// CPU in thousandths of a core.
    pub cpu_millicores: u32,
    pub memory_mb: u32,
    pub disk_mb: u32,
}

/// How the gateway picks an instance of a service for each request.
#[derive(
    Enum, Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each request to the next healthy instance in turn.
    #[default]
    RoundRobin,
    /// To the instance with the fewest requests in flight through the gateway.
    LeastConnections,
    /// By the client's IP address: one client keeps reaching the same instance while it is healthy.
    IpHash,
}

/// How the scheduler chooses among the workers an instance fits on.
#[derive(
    Enum, Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum PlacementStrategy {
    /// The worker with the most room left (instances spread over the cluster).
    #[default]
    Spread,
    /// The fullest worker that still fits (instances packed, whole workers kept free).
    Binpack,
}

/// A runtime driver: `process` runs a command, `docker` an image, `microvm` a command in a QEMU
/// guest of its own (an image is then the guest's root filesystem, a stateful service's volume is
/// shared with it at `/data`).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Process,
    Docker,
    Microvm,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Process => "process",
            DriverKind::Docker => "docker",
            DriverKind::Microvm => "microvm",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [DriverKind::Process, DriverKind::Docker, DriverKind::Microvm]
            .into_iter()
            .find(|d| d.as_str() == name)
    }
}

/// What a service's deployment asks for; the conductor keeps this many instances running.
#[derive(Object, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct DeploymentSpec {
    pub replicas: u32,
    /// What each instance reserves on its worker.
    pub resources: ResourceSpec,
    /// Only these workers (empty: any).
    #[oai(default)]
    #[serde(default)]
    pub worker_ids: Vec<Uuid>,
    /// Only workers carrying all these labels.
    #[oai(default)]
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub strategy: PlacementStrategy,
    /// Only this driver (absent: docker where a worker has it and the service has an image, else process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverKind>,
    /// A stateful service's volume is backed up this often (absent: the conductor's
    /// `BACKUP_INTERVAL`, default hourly; 0: no scheduled backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_interval_secs: Option<u64>,
    /// Environment variables every instance gets, over the service's own (`S3_DOMAIN` for
    /// storage_manager, an app's settings).
    #[oai(default)]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets from secrets_manager, over the service's own.
    #[oai(default)]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// Counts the deploys that asked for `restart`: instances of an older generation are replaced.
    #[oai(default)]
    #[serde(default)]
    pub generation: u64,
}

/// Deploy a service: every field is optional and defaults to the service's current deployment,
/// or else to the catalog's defaults.
#[derive(Object, Debug, Clone, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct DeployRequest {
    /// How many instances to keep running (0 stops them all but keeps the service enabled).
    pub replicas: Option<u32>,
    pub resources: Option<ResourceSpec>,
    /// Place only on these workers.
    pub worker_ids: Option<Vec<Uuid>>,
    /// Place only on workers with all these labels.
    pub labels: Option<BTreeMap<String, String>>,
    pub strategy: Option<PlacementStrategy>,
    pub driver: Option<DriverKind>,
    /// How the gateway spreads requests over the instances.
    pub load_balancing: Option<LoadBalancing>,
    /// A stateful service's backup schedule, in seconds (0: none; the default is the conductor's
    /// `BACKUP_INTERVAL`).
    pub backup_interval_secs: Option<u64>,
    /// For a stateful service only: `true` starts it with no data on a worker that holds no copy
    /// of its volume, leaving the old copy where it is (it is not deleted, and is no longer used).
    /// Without it, a stateful service runs only where its volume is.
    pub start_empty: Option<bool>,
    /// Environment variables for the instances, replacing the deployment's as a whole (`{}`
    /// clears them). Names are `[A-Za-z_][A-Za-z0-9_]*`; those the worker sets itself (`PORT`,
    /// `DATA_DIR`, `CONDUCTOR_URL`, `TLS_CERT_PEM`, `TLS_KEY_PEM`, `AEREKOS_*`) are refused.
    /// Changing them replaces the instances; a stateful service's must be disabled first.
    pub env: Option<BTreeMap<String, String>>,
    /// Environment variables whose values are secrets from secrets_manager
    /// (`{"DB_PASSWORD": {"secret": "apps/shop/db-password"}}`), replacing the deployment's as a
    /// whole. Each instance's worker reads them just before starting it, with a token scoped to
    /// those secrets; only the references are stored.
    pub secret_env: Option<BTreeMap<String, SecretRef>>,
    /// `true`: replace every instance even if nothing else changed, as a rolling restart (new
    /// instances start, reading their secrets anew, and the old ones go once the new are healthy).
    /// A stateful service's must be disabled first, like any change.
    pub restart: Option<bool>,
}

/// A service's deployment: what was asked for and the instances that serve it.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Deployment {
    pub service: String,
    pub enabled: bool,
    /// Absent until the service is enabled or deployed.
    pub spec: Option<DeploymentSpec>,
    pub load_balancing: LoadBalancing,
    /// Instances with a healthy health check on a live worker.
    pub healthy: u32,
    /// Dependencies with no healthy instance yet; this service's instances are placed once they have one.
    pub waiting_for: Vec<String>,
    /// Why instances are missing, when they are (e.g. no worker has room for them).
    pub problem: Option<String>,
    /// A stateful service whose volume is on a lost worker waits for that worker: it is never
    /// started elsewhere without its data.
    pub waiting_for_volume: Option<VolumeWait>,
    pub instances: Vec<Instance>,
}

/// What a stateful service waits for: the worker holding its volume to come back.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct VolumeWait {
    pub volume: String,
    pub worker_id: Uuid,
    /// The worker's name; absent when the worker was removed from the registry.
    pub worker_name: Option<String>,
    /// The worker's last heartbeat; absent when the worker was removed from the registry.
    pub lost_since: Option<DateTime<Utc>>,
    /// What the wait means, for people.
    pub message: String,
}

/// A stateful service's data directory, as the conductor records it. A stateful service's instance
/// is placed only on the worker holding its volume.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Volume {
    /// The volume's name (a stateful service's volume is named after it).
    pub name: String,
    /// The service whose data it is.
    pub service: String,
    /// The worker holding the copy in use.
    pub worker_id: Uuid,
    /// Absent when that worker was removed from the registry.
    pub worker_name: Option<String>,
    /// Whether the holding worker is live; absent when it was removed from the registry.
    pub worker_status: Option<WorkerStatus>,
    /// Bytes, as the holding worker last reported them; absent until it has.
    pub size_bytes: Option<u64>,
    pub created_at: DateTime<Utc>,
    /// When the holder last changed (created, adopted, started empty elsewhere).
    pub updated_at: DateTime<Utc>,
    /// When the last backup of it completed; absent when none has.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// Other workers that report a directory of this name: old copies no longer in use (for
    /// example after `start_empty`), which the platform leaves alone.
    pub other_copies: Vec<Uuid>,
}

/// A service of the catalog: a built-in one, or one an admin defined.
#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct Service {
    /// e.g. `key_manager`; also the gateway prefix `/api/<name>/…`.
    pub name: String,
    pub description: String,
    /// Part of the platform (cannot be removed).
    pub builtin: bool,
    /// What the process driver runs. The program `aerekos` is the worker's own executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// What the docker driver runs (an image present on the worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The container's command with `image`, in place of the image's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_command: Option<Vec<String>>,
    /// Environment of every instance. The worker adds `PORT` (where to listen), `CONDUCTOR_URL`
    /// and, for a stateful service, `DATA_DIR`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets from secrets_manager, read by the worker
    /// at each start.
    #[oai(default)]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// The path probed for health; instances serve it on `$PORT`.
    pub health_path: String,
    pub default_resources: ResourceSpec,
    pub default_replicas: u32,
    /// Keeps state in a directory on its worker that outlives its instances; runs one replica.
    pub stateful: bool,
    /// Services that must run for this one to work; deploying it deploys them, and its instances
    /// are placed once they are healthy.
    pub depends_on: Vec<String>,
    pub load_balancing: LoadBalancing,
    pub enabled: bool,
    /// The deployment the conductor keeps running, once enabled or deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentSpec>,
    pub updated_at: DateTime<Utc>,
}

/// Define a service of your own; the gateway routes `/api/<name>/…` to its instances, which
/// listen on `$PORT` and serve paths under `/api/<name>/` unchanged.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct ServiceDefinition {
    /// 1–48 of a–z, 0–9 and `_`, starting with a letter; not a conductor path such as `workers`.
    pub name: String,
    pub description: Option<String>,
    /// For the process driver: the program and its arguments.
    pub command: Option<Vec<String>>,
    /// For the docker driver: an image present on the workers.
    pub image: Option<String>,
    /// The container's command with `image`.
    pub image_command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    /// Environment variables whose values are secrets from secrets_manager.
    pub secret_env: Option<BTreeMap<String, SecretRef>>,
    /// Default `/health`.
    pub health_path: Option<String>,
    /// Default 100 millicores, 64 MB memory, 64 MB disk.
    pub default_resources: Option<ResourceSpec>,
    /// Default 1.
    pub default_replicas: Option<u32>,
    /// Default false.
    pub stateful: Option<bool>,
    pub depends_on: Option<Vec<String>>,
    pub load_balancing: Option<LoadBalancing>,
}

/// A healthy instance of a service, where it answers.
#[derive(Object, Debug, Clone)]
pub struct Endpoint {
    pub instance_id: Uuid,
    pub worker_id: Uuid,
    /// `host:port`.
    pub address: String,
    /// `http://host:port`, or `https://` when the instance serves TLS (trust the cluster CA).
    pub url: String,
}

/// The healthy endpoints of a service.
#[derive(Object, Debug, Clone)]
pub struct ServiceEndpoints {
    pub service: String,
    pub load_balancing: LoadBalancing,
    pub endpoints: Vec<Endpoint>,
}

/// How an instance runs. Give an image (docker driver) or a command (process driver), or both.
/// A secrets_manager secret an instance gets in an environment variable: its worker reads the
/// value just before starting it (the version or staging label named, else `AWSCURRENT`'s). Only
/// the reference is stored: the value never appears in a spec, a listing or a log.
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct SecretRef {
    /// The secret's name, e.g. `apps/shop/db-password`.
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `true`: when the version the label names changes (a new value, a rotation), the service's
    /// instances are replaced by themselves, as a rolling restart, so they read the new one. The
    /// worker running an instance checks every `SECRET_WATCH_INTERVAL` (default 30 s). Not with a
    /// pinned `version`, nor for a stateful service.
    #[oai(default)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_on_change: bool,
    /// `true`: the value goes into a file rather than the variable, which holds the file's path
    /// (`/run/secrets/<VARIABLE>` in a container). Any bytes, NUL included, and values too large
    /// for an environment. The file is on the worker's memory filesystem, readable by the
    /// worker's user only, written at each start and removed with the instance.
    #[oai(default)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub as_file: bool,
}

/// The token a worker ships its logs with: an API key scoped to `logs_manager:write` on the
/// sources under `source_prefix`.
#[derive(Object, Debug, Clone)]
pub struct LogShippingToken {
    pub token: String,
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
    /// `worker/<worker id>/`: the sources this token may write.
    pub source_prefix: String,
}

/// A token an instance's start reads its secrets with: an API key scoped to reading exactly the
/// secrets its spec names, living two minutes; the worker revokes it once they are read.
#[derive(Object, Debug, Clone)]
pub struct InstanceSecretsToken {
    pub token: String,
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct InstanceSpec {
    /// A Docker image present on the worker, e.g. `aerekos/service:0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The program and its arguments; with an image, replaces the image's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[oai(default)]
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets, read by the worker at each start.
    #[oai(default)]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// The deployment generation it was placed for (see `DeploymentSpec.generation`).
    #[oai(default)]
    #[serde(default)]
    pub generation: u64,
    /// TCP ports the instance listens on (published on the worker's address under the same number).
    #[oai(default)]
    #[serde(default)]
    pub ports: Vec<u16>,
    /// What it reserves on the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpec>,
    /// An HTTP path answering 2xx when the instance is healthy, e.g. `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// A named directory on the worker that outlives the instance: passed as `DATA_DIR` (process)
    /// or mounted at `/data` (docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// The instance serves HTTPS with a certificate its worker gets for it from the cluster CA
    /// (`TLS_CERT_PEM`, `TLS_KEY_PEM`): instances of the built-in services, when the conductor
    /// serves TLS. The gateway and the worker's health checks then speak HTTPS to it.
    #[oai(default)]
    pub tls: bool,
    /// Runs once, to its end, and is not restarted (a job's attempt). Its stdout and stderr are
    /// kept apart, and its end is reported with their tails (`InstanceStatusReport.ending`).
    #[oai(default)]
    #[serde(default)]
    pub run_once: bool,
    /// With `run_once`: its worker stops it this many seconds after it started (SIGTERM to its
    /// process group or container, SIGKILL 5 s later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// The driver that runs it. Absent: docker when it names an image, else process; `microvm`
    /// is always named (the image, if any, is then the guest's root filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverKind>,
}

/// What the conductor wants of an instance.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Stopped,
}

/// What an instance is doing, as its worker last reported: `pending` (not picked up yet),
/// `starting`, `running`, `unhealthy`, `exited` (with a code), `failed` (could not start, with a
/// reason), `stopped` (on purpose).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum InstanceState {
    Pending,
    Starting,
    Running,
    Unhealthy,
    Exited,
    Failed,
    Stopped,
}

/// `healthy` (running, health path answering, worker live), `starting`, `unhealthy` (see
/// `reason`), `stopped`, or `lost` (its worker stopped sending heartbeats).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum InstanceHealth {
    Healthy,
    Starting,
    Unhealthy,
    Stopped,
    Lost,
}

/// One running copy of a service (or of a user's image or command) on a worker.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Instance {
    pub id: Uuid,
    pub worker_id: Uuid,
    /// The catalog service; absent for a user's own instance.
    pub service: Option<String>,
    pub spec: InstanceSpec,
    pub desired_state: DesiredState,
    pub state: InstanceState,
    /// `host:port` where it answers, once running.
    pub address: Option<String>,
    pub exit_code: Option<i32>,
    /// Why it failed or is unhealthy.
    pub reason: Option<String>,
    /// How many times its worker restarted it.
    pub restarts: u32,
    /// What its health checks and its worker's heartbeats say.
    pub health: InstanceHealth,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A worker's assignments and their version.
#[derive(Object, Debug, Clone)]
pub struct Assignments {
    /// Changes whenever the worker's assignments change; pass it back as `after_version` to wait
    /// for the next change.
    pub version: u64,
    pub instances: Vec<Instance>,
    /// Volumes to fetch from another worker (moves in their copying step).
    #[oai(default)]
    pub volume_transfers: Vec<VolumeTransfer>,
    /// Volume directories to delete: this worker's copy was moved to another worker, whose new
    /// instance is healthy. Delete only while no instance here uses it.
    #[oai(default)]
    pub release_volumes: Vec<String>,
    /// Backups to make of volumes this worker holds.
    #[oai(default)]
    pub backup_jobs: Vec<BackupJob>,
    /// Commands to run in sandboxes on this worker (each once; report with
    /// `POST /api/workers/{id}/sandbox-execs/{exec_id}`).
    #[oai(default)]
    pub sandbox_execs: Vec<ExecAssignment>,
}

/// Back up a volume this worker holds into the backup store of the worker at `store_url`: hold
/// the volume (the service defers deletions), snapshot its SQLite databases online, send the
/// files the store lacks, encrypted, then the manifest; report.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct BackupJob {
    pub backup_id: Uuid,
    pub volume: String,
    pub store_url: String,
    /// Grants writing this volume's backups to that store.
    pub grant: String,
    /// The cluster's backup key (base64, 32 bytes): files are encrypted under it.
    pub key: String,
    /// The backups of this volume the store keeps after this one is stored (this one included);
    /// the others are deleted from it, with the contents only they used.
    #[oai(default)]
    pub keep: Vec<Uuid>,
}

/// Where a restore reads from: a backup in a worker's backup store.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct BackupSource {
    pub backup_id: Uuid,
    pub store_url: String,
    /// Grants reading this volume's backups from that store.
    pub grant: String,
    /// The cluster's backup key (base64).
    pub key: String,
}

/// `running`, `done`, `failed`, or `expired` (deleted from its store: more recent backups of the
/// volume took its place, see `BACKUP_KEEP`).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum BackupState {
    Running,
    Done,
    Failed,
    Expired,
}

/// A backup of a volume: a consistent snapshot (SQLite databases copied online, other files as
/// they were while deletions were held), encrypted, in the backup store of a worker other than
/// the one holding the volume whenever there is one.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Backup {
    pub id: Uuid,
    pub volume: String,
    pub service: String,
    /// The worker whose copy was backed up.
    pub source_worker_id: Uuid,
    /// The worker whose backup store holds it.
    pub store_worker_id: Uuid,
    pub state: BackupState,
    /// Files and bytes in the backup.
    pub files: u64,
    pub bytes: u64,
    /// Bytes sent to the store by this backup (files the store already had are not sent again).
    pub bytes_sent: u64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A worker's report on a backup job.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct BackupReport {
    /// `done` or `failed` (`running` reports progress).
    pub state: BackupState,
    pub files: u64,
    pub bytes: u64,
    pub bytes_sent: u64,
    pub error: Option<String>,
}

/// Restore a stateful service from one of its backups onto a worker: what an admin does when the
/// worker holding its volume is gone for good. The service's current data, if its worker is live,
/// is left where it is (as an unused old copy).
#[derive(Object, Debug, Clone)]
pub struct RestoreRequest {
    pub backup_id: Uuid,
    /// The worker to restore onto (live).
    pub worker_id: Uuid,
}

/// Fetch a volume from the worker holding it (`GET <source_url>/api/worker/volumes/<volume>/export`
/// with `grant` as the bearer token) or, for a restore, from a backup; check it, put it in place,
/// and report.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(skip_serializing_if_is_none)]
pub struct VolumeTransfer {
    pub move_id: Uuid,
    pub volume: String,
    /// The source worker's API, e.g. `http://10.0.0.5:8201` (a move).
    pub source_url: String,
    /// A one-time grant the source worker checks with the conductor's public key (a move).
    pub grant: String,
    /// Restore from this backup instead (a restore).
    pub backup: Option<BackupSource>,
}

/// Move a stateful service, with its data, to another worker.
#[derive(Object, Debug, Clone)]
pub struct MoveRequest {
    /// The worker to move it to (live, not the one holding it now).
    pub worker_id: Uuid,
}

/// The steps of a move, in order: `stopping` (the instance on the holder stops), `copying` (the
/// new worker fetches the volume straight from the holder, streamed and checksummed), `starting`
/// (the volume is recorded on the new worker and the instance starts there), `cleaning` (the new
/// instance is healthy; the old copy is deleted), then `done`. Any step that fails or is
/// interrupted ends in `failed`, with the service on its old worker and its data there intact.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum MoveState {
    Stopping,
    Copying,
    Starting,
    Cleaning,
    Done,
    Failed,
}

/// A move of a stateful service and its volume from one worker to another.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct VolumeMove {
    pub id: Uuid,
    pub service: String,
    pub volume: String,
    /// Set for a restore: the backup the data comes from (the old worker's copy is left alone).
    pub backup_id: Option<Uuid>,
    pub source_worker_id: Uuid,
    pub target_worker_id: Uuid,
    pub state: MoveState,
    /// Bytes the new worker has received so far.
    pub bytes_copied: u64,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a volume transfer is going, as the receiving worker reports it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum TransferOutcome {
    /// Still receiving (a progress report).
    Copying,
    /// Received, checked against the source's checksum, synced to disk and in place.
    Copied,
    /// Given up; `error` says why.
    Failed,
}

/// A receiving worker's report on a volume transfer.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct TransferReport {
    pub outcome: TransferOutcome,
    pub bytes: u64,
    pub error: Option<String>,
}

/// Assign an instance to a worker.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateInstanceRequest {
    /// The catalog service this is an instance of, if any.
    pub service: Option<String>,
    pub spec: InstanceSpec,
}

/// A worker's report on one of its instances.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct InstanceStatusReport {
    pub state: InstanceState,
    pub address: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub restarts: u32,
    /// The final report of a `run_once` instance: how it ended, and the end of its output.
    pub ending: Option<RunEnding>,
}

/// How a `run_once` instance ended, as its worker saw it.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(skip_serializing_if_is_none)]
pub struct RunEnding {
    /// The signal that ended it, when one did (a process's; containers give only codes).
    pub signal: Option<i32>,
    /// Its worker stopped it at `timeout_secs`.
    pub timed_out: bool,
    /// Why its exit status is unknown or it never started, in words.
    pub detail: Option<String>,
    /// The last bytes of its stdout and stderr (at most 16 KiB each), UTF-8 with invalid bytes
    /// replaced.
    pub stdout_tail: String,
    pub stderr_tail: String,
    /// How many bytes each stream had in all, when the driver knows.
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
}

/// A worker's report that secrets an instance started with now name other versions.
#[derive(Object, Debug, Clone)]
pub struct SecretsChangedReport {
    /// The instance's `secret_env` variables (each with `restart_on_change`) whose secret's
    /// version changed since the instance started.
    pub variables: Vec<String>,
}

/// Liveness.
#[derive(Object, Debug, Clone)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
}

/// Readiness: whether the server can serve requests (its database answers).
#[derive(Object, Debug, Clone)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
}

/// The CA bundle that the conductor's certificate chains to, for workers and the CLI to pin.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct TlsCa {
    /// Whether the conductor serves TLS. When false, the other fields are absent.
    pub enabled: bool,
    /// The bundle (PEM): the cluster CA, then the admin's CA when the admin gave the certificate.
    pub pem: Option<String>,
    /// `sha256:<hex>` over the bundle's DER certificates in order: what `CONDUCTOR_CA_PIN` and
    /// `aerekos login --ca-pin` compare against. A client must compute it itself from `pem`,
    /// never take this field's word for it.
    pub fingerprint: Option<String>,
}

/// A server certificate the cluster CA issued, with its private key (sent once, over TLS).
#[derive(Object, Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate, then the CA (PEM).
    pub certificate_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub private_key_pem: String,
    /// The names it is valid for (IP addresses and DNS names).
    pub names: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

// ---- Jobs: run-to-completion work, queued by priority ----

/// A job to run: a command (process driver) or an image (docker driver), run to its end, retried
/// as its policy says.
#[derive(Object, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct JobRequest {
    /// A name for people (1–128 characters); need not be unique.
    pub name: Option<String>,
    /// A Docker image present on the worker (docker driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The program and its arguments; with an image, replaces the image's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[oai(default)]
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What each attempt reserves on its worker; default 100 millicores, 64 MB, 0 MB disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpec>,
    /// The driver to run it with; default `docker` for an image, `process` for a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverKind>,
    /// How long an attempt may run before its worker stops it (1–604800 s; default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// When a failed attempt is tried again; default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// 0 (lowest) to 100 (highest); default 50. Higher starts first; a waiting job gains a level
    /// every `JOB_PRIORITY_AGING` (default 10 s), so none waits for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// The queue it runs in, whose concurrency limit it counts against (see `PUT
    /// /api/job-queues/{name}`); default `default`, which has no limit unless one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Submitting again with the same key (1–128 characters) gives the job the first submit made,
    /// not a new one; with a different request, 409 `idempotency_key_reused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// When a failed attempt is tried again: after an exponential backoff with jitter (each delay is
/// drawn between half and all of `initial_backoff_ms × 2^(retry − 1)`, at most `max_backoff_ms`).
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct RetryPolicy {
    /// How many more attempts after the first (0–100).
    pub max_retries: u32,
    /// Default 1000 (at least 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u32>,
    /// Default 60000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u32>,
    /// The exit codes that are retried; absent: every non-zero exit. A timeout, a lost worker, a
    /// signal and a failure to start are retried whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_exit_codes: Option<Vec<i32>>,
}

/// `queued` (waiting for its turn, room, or a retry's backoff), `running`, then one of
/// `succeeded` (exit 0), `failed` (its last attempt failed and no retry remains) or `cancelled`.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[oai(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// How an attempt ended: `running` (not yet), `exited` (on its own, with its code), `timed_out`
/// (stopped at the job's timeout), `killed` (by a signal from outside, e.g. out of memory),
/// `worker_lost` (its worker stopped heartbeating), `cancelled`, `failed_to_start`.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Running,
    Exited,
    TimedOut,
    Killed,
    WorkerLost,
    Cancelled,
    FailedToStart,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Exited => "exited",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Killed => "killed",
            AttemptOutcome::WorkerLost => "worker_lost",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::FailedToStart => "failed_to_start",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            AttemptOutcome::Running,
            AttemptOutcome::Exited,
            AttemptOutcome::TimedOut,
            AttemptOutcome::Killed,
            AttemptOutcome::WorkerLost,
            AttemptOutcome::Cancelled,
            AttemptOutcome::FailedToStart,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A job and where it stands.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Job {
    pub id: Uuid,
    pub name: Option<String>,
    pub state: JobState,
    pub priority: u8,
    pub queue: String,
    pub idempotency_key: Option<String>,
    /// What was submitted (its defaults filled in).
    pub request: JobRequest,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last attempt, when there is one.
    pub last_attempt: Option<JobAttempt>,
    /// The exit code of the attempt that ended it, when it exited.
    pub exit_code: Option<i32>,
    /// Why it is still queued (no room, its queue is full, a retry's backoff), or why it failed.
    pub reason: Option<String>,
    /// Who submitted it.
    pub submitted_by: String,
    pub submitted_at: DateTime<Utc>,
    /// A queued retry waits until then.
    pub not_before: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One attempt at a job.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct JobAttempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub worker_id: Uuid,
    /// The instance that ran it on the worker (its output is at the worker's
    /// `/instances/{id}/output` while the worker keeps it).
    pub instance_id: Uuid,
    pub driver: DriverKind,
    pub outcome: AttemptOutcome,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The outcome in words.
    pub reason: Option<String>,
    /// The last 16 KiB of its stdout and stderr, once it ended.
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
    /// When it was placed on its worker.
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A page of jobs, newest first.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A job queue: a name and how many of its jobs may run at once.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct JobQueue {
    pub name: String,
    /// At most this many of its jobs run at once; absent: no limit.
    pub concurrency_limit: Option<u32>,
    /// Its jobs running and queued now.
    pub running: u32,
    pub queued: u32,
}

/// A queue's settings.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct JobQueueSettings {
    /// At most this many of its jobs run at once (1–10000); absent: no limit.
    pub concurrency_limit: Option<u32>,
}

// ---- Schedules: jobs submitted, or platform endpoints called, on a clock ----

/// A schedule: when (`cron` or `every_secs`) and what (`job` or `call`, one of them).
#[derive(Object, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleRequest {
    /// 1–64 of a-z, 0-9, `_` and `-`; unique.
    pub name: String,
    /// A cron expression: five fields (minute hour day-of-month month day-of-week) or six (with
    /// seconds first), read in `timezone`; `@hourly`-style aliases too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Or a fixed interval in seconds (1–2678400), counted from the schedule's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u32>,
    /// The IANA time zone a cron expression is read in, e.g. `Europe/Paris`; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Submit this job at each fire (its idempotency key is set by the schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRequest>,
    /// Or call this endpoint of a platform service through the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<ServiceCall>,
    /// What a fire does while the job of the previous one still runs; default `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapPolicy>,
    /// What happens to fires missed while the conductor was down (more than 5 s late); default
    /// `run_once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<MisfirePolicy>,
}

/// An HTTP call a schedule makes: `<method> /api/<service><path>` through the gateway, with a
/// service token of its own (`service:scheduler`), so the service decides what it may do.
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct ServiceCall {
    /// A service of the catalog, e.g. `secrets_manager`.
    pub service: String,
    /// GET, POST, PUT, PATCH or DELETE; default POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path under the service's API, starting with `/`, e.g. `/secrets/db/rotate`.
    pub path: String,
    /// A JSON body (as text), sent with `Content-Type: application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// `skip` the fire; `queue` it until the previous job ends (at most one waits); or
/// `cancel_previous` and submit.
#[derive(
    Enum, Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    #[default]
    Skip,
    Queue,
    CancelPrevious,
}

/// After downtime: `run_once` for all the fires missed, or `skip` them.
#[derive(
    Enum, Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    #[default]
    RunOnce,
    Skip,
}

/// A schedule and its clock.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Schedule {
    pub id: Uuid,
    pub name: String,
    pub request: ScheduleRequest,
    pub paused: bool,
    /// When it fires next (absent while paused).
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The job of the last fire that submitted one.
    pub last_job_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What one fire did: `submitted` a job, `called` the endpoint (2xx), `call_failed`, or skipped
/// (`skipped_overlap`, `skipped_misfire`), or `failed` (the job could not be submitted).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum FireOutcome {
    Submitted,
    Called,
    CallFailed,
    SkippedOverlap,
    SkippedMisfire,
    Queued,
    Failed,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Submitted => "submitted",
            FireOutcome::Called => "called",
            FireOutcome::CallFailed => "call_failed",
            FireOutcome::SkippedOverlap => "skipped_overlap",
            FireOutcome::SkippedMisfire => "skipped_misfire",
            FireOutcome::Queued => "queued",
            FireOutcome::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            FireOutcome::Submitted,
            FireOutcome::Called,
            FireOutcome::CallFailed,
            FireOutcome::SkippedOverlap,
            FireOutcome::SkippedMisfire,
            FireOutcome::Queued,
            FireOutcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One fire of a schedule.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleFire {
    /// Increasing with each fire.
    pub seq: u64,
    /// The time the clock said it was due.
    pub scheduled_for: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub outcome: FireOutcome,
    /// The job it submitted.
    pub job_id: Option<Uuid>,
    /// The endpoint's answer, for a call.
    pub http_status: Option<u16>,
    /// Fires missed while the conductor was down that this one stands for (or skipped).
    pub missed: u32,
    pub detail: Option<String>,
}

// ---- Sandboxes: long-lived isolated environments that run commands ----

/// A sandbox to make: a container from `image` on a worker with the docker driver (or a QEMU guest
/// with `image` as its root filesystem, with `driver: microvm`), kept running by `command`, in
/// which commands then run (`POST /api/sandboxes/{id}/execs`).
#[derive(Object, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct SandboxRequest {
    /// A name for people (1–128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A Docker image present on the workers (with `microvm`: also a directory or a `.tar` on
    /// them).
    pub image: String,
    /// What keeps the container running; default `["sleep", "infinity"]` (give another for
    /// images without `sleep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[oai(default)]
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What it reserves; default 100 millicores, 64 MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpec>,
    /// How long each attempt may take, from its placement, to be running (1–3600 s, default
    /// 300). Waiting for room is not bounded: the sandbox waits in the queue, as a job does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout_secs: Option<u32>,
    /// How many more placements to try when one fails (its container fails to start, is not
    /// running within the ready timeout, or its worker is lost first): 0–10, default 2. Each
    /// retry waits a backoff (1 s doubling, at most 30 s, with jitter) and may land on another
    /// worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_retries: Option<u32>,
    /// `docker` (default) or `microvm`: a guest of its own, a VM boundary for code not trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverKind>,
}

/// `creating` (waiting for room, or its container starting), `ready`, or `failed` (with why).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum SandboxState {
    Creating,
    Ready,
    Failed,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Ready => "ready",
            SandboxState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "ready" => SandboxState::Ready,
            "failed" => SandboxState::Failed,
            _ => SandboxState::Creating,
        }
    }
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Sandbox {
    pub id: Uuid,
    pub request: SandboxRequest,
    pub state: SandboxState,
    pub worker_id: Option<Uuid>,
    /// The instance (container `aerekos-<id>`) it runs as.
    pub instance_id: Option<Uuid>,
    /// Why it is still creating, or failed (what the last failed placement met).
    pub reason: Option<String>,
    /// How many placements were made (1 + the retries used).
    pub create_attempts: u32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
}

/// A command to run in a sandbox.
#[derive(Object, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecRequest {
    /// The program and its arguments.
    pub command: Vec<String>,
    #[oai(default)]
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How long each attempt may run (1–86400 s, default 60); then it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// When a failed attempt runs again, as for jobs. Absent: never. A timeout, a failure to run,
    /// and an attempt lost to a worker restart or loss are retried whatever
    /// `retry_on_exit_codes` says. A retry is a new run of the command, so a command with
    /// retries should be safe to run twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// `queued` (waiting for the sandbox, for a retry's backoff, or running), then how its last
/// attempt ended: `exited` (with its code), `timed_out`, `failed` (could not run, or its worker
/// never reported it), `lost` (its worker restarted, or was lost, while it ran).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ExecState {
    Queued,
    Exited,
    TimedOut,
    Failed,
    Lost,
}

impl ExecState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecState::Queued => "queued",
            ExecState::Exited => "exited",
            ExecState::TimedOut => "timed_out",
            ExecState::Failed => "failed",
            ExecState::Lost => "lost",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "exited" => ExecState::Exited,
            "timed_out" => ExecState::TimedOut,
            "failed" => ExecState::Failed,
            "lost" => ExecState::Lost,
            _ => ExecState::Queued,
        }
    }
}

/// One command run in a sandbox, kept in its history.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct SandboxExec {
    pub id: Uuid,
    pub sandbox_id: Uuid,
    pub request: ExecRequest,
    pub state: ExecState,
    pub exit_code: Option<i32>,
    /// The last 64 KiB of each stream.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub reason: Option<String>,
    /// The attempt running or last run (1 for the first).
    pub attempt: u32,
    /// The attempts that ended, oldest first (the last one's output is in `stdout`/`stderr`).
    pub attempts: Vec<ExecAttempt>,
    /// A retry waits until then.
    pub not_before: Option<DateTime<Utc>>,
    /// When the current attempt was handed to the sandbox's worker: it runs, or is about to.
    pub dispatched_at: Option<DateTime<Utc>>,
    pub submitted_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// How one attempt of an exec ended.
#[derive(Object, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecAttempt {
    pub number: u32,
    pub state: ExecState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub ended_at: DateTime<Utc>,
}

/// A command a worker is to run in a sandbox's container (in its assignments).
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecAssignment {
    pub id: Uuid,
    /// Which attempt this is: the worker runs each (id, attempt) at most once.
    pub attempt: u32,
    /// The sandbox's instance.
    pub instance_id: Uuid,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_secs: u32,
}

/// A worker's report of how an exec's attempt ended.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecReport {
    /// The attempt reported (from its assignment).
    pub attempt: u32,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// It could not run, or ran while the worker restarted: why.
    pub detail: Option<String>,
    pub lost: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A `/metrics` endpoint for metrics_manager to scrape.
#[derive(Object, Debug, Clone)]
pub struct MetricsTarget {
    pub url: String,
    /// The labels its samples get.
    pub labels: BTreeMap<String, String>,
}

/// Every `/metrics` endpoint the registry knows (see `list_metrics_targets`).
#[derive(Object, Debug, Clone)]
pub struct MetricsTargets {
    pub targets: Vec<MetricsTarget>,
}

#[cfg(test)]
mod tests {
    use aerekos_common::direct_json::assert_same_json;

    use super::*;

    /// A worker with every optional field set (`full`) or absent.
    fn worker(full: bool) -> Worker {
        let some = |s: &str| full.then(|| s.to_owned());
        Worker {
            id: Uuid::from_u128(7),
            name: "w7".into(),
            hostname: "h7".into(),
            ip_address: "10.0.0.7".into(),
            labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
            status: if full {
                WorkerStatus::Live
            } else {
                WorkerStatus::Lost
            },
            resources: WorkerResources {
                cpu_cores: 2,
                cpu_usage_percent: 12.5,
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 3 << 30,
                disk_total_bytes: 100 << 30,
                disk_free_bytes: 42 << 30,
                network: vec![NetworkInterface {
                    name: "eth0".into(),
                    addresses: vec!["10.0.0.7".into()],
                    rx_bytes: 1,
                    tx_bytes: 2,
                }],
                os: some("Debian 13"),
                drivers: vec![RuntimeDriver {
                    name: "docker".into(),
                    version: some("28.2"),
                }],
                unavailable_drivers: vec![UnavailableDriver {
                    name: "microvm".into(),
                    reason: "no kernel".into(),
                }],
                volumes: vec![VolumeReport {
                    name: "kv".into(),
                    size_bytes: 10,
                }],
            },
            api_url: some("http://10.0.0.7:8081"),
            registered_at: chrono::DateTime::from_timestamp_millis(1_765_000_000_123).unwrap(),
            last_heartbeat_at: chrono::DateTime::from_timestamp_millis(1_765_000_001_000).unwrap(),
        }
    }

    #[test]
    fn workers_answered_directly_are_the_json_poem_openapi_would_answer() {
        for full in [true, false] {
            assert_same_json(&worker(full));
            assert_same_json(&WorkerPage {
                workers: vec![worker(full), worker(!full)],
                next_cursor: full.then(|| "cursor".to_owned()),
            });
        }
    }
}
