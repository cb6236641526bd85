//! The service catalog: the platform's built-in services (defined here, in code) and the services
//! admins define (kept in the database), each with its state: enabled, its deployment, its load
//! balancing. Placing and keeping instances is [`super::deployments`]'s work.

use std::{collections::BTreeMap, sync::Arc};

use aerekos_common::{ApiError, ApiResult};

use tokio::sync::MappedMutexGuard;

use super::{from_ms, memory_table::MemoryTable};
use crate::{
    model::{LoadBalancing, ResourceSpec, Service, ServiceDefinition},
    store::{
        Db, services,
        services::{DeploymentUpdate, ServiceRow},
    },
};

/// The image the docker driver runs built-in services from: the aerekos executable itself, which
/// every worker with a Docker engine builds from its own static executable.
pub fn platform_image() -> String {
    format!("aerekos/aerekos:{}", env!("CARGO_PKG_VERSION"))
}

/// A built-in service: `aerekos service <subcommand>`.
struct Builtin {
    name: &'static str,
    subcommand: &'static str,
    description: &'static str,
    resources: ResourceSpec,
    depends_on: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "key_manager",
        subcommand: "key-manager",
        description: "Key management (KMS): named keys with versions and rotation, encrypt/decrypt, data keys for envelope encryption.",
        resources: ResourceSpec {
            cpu_millicores: 250,
            memory_mb: 128,
            disk_mb: 256,
        },
        depends_on: &[],
    },
    Builtin {
        name: "storage_manager",
        subcommand: "storage-manager",
        description: "Object storage (S3): buckets and objects, streamed and durable, encrypted at rest through key_manager; its own API and the S3 protocol.",
        resources: ResourceSpec {
            cpu_millicores: 500,
            memory_mb: 256,
            disk_mb: 1024,
        },
        depends_on: &["key_manager"],
    },
    Builtin {
        name: "secrets_manager",
        subcommand: "secrets-manager",
        description: "Secrets: versioned values for apps and services, encrypted through key_manager, with staging labels, rotation and an audit record of every read.",
        resources: ResourceSpec {
            cpu_millicores: 250,
            memory_mb: 128,
            disk_mb: 256,
        },
        depends_on: &["key_manager"],
    },
    Builtin {
        name: "logs_manager",
        subcommand: "logs-manager",
        description: "Logs: every instance's output and every worker's own lines, shipped by the workers, kept with retention by age and size, queried by time, service, instance, level, request id and text, and tailed live.",
        resources: ResourceSpec {
            cpu_millicores: 250,
            memory_mb: 128,
            disk_mb: 2048,
        },
        depends_on: &[],
    },
    Builtin {
        name: "metrics_manager",
        subcommand: "metrics-manager",
        description: "Metrics: every /metrics the registry knows scraped into a time-series store (raw for a day, 1-minute rollups for 30 days), queried with rate, aggregation by label and histogram quantiles, federated to Prometheus, and watched by alert rules that post to webhooks.",
        resources: ResourceSpec {
            cpu_millicores: 250,
            memory_mb: 256,
            disk_mb: 4096,
        },
        depends_on: &[],
    },
];

/// Names that are the conductor's own paths under `/api/`, so no service may take them.
const RESERVED: &[&str] = &[
    "auth",
    "token",
    "workers",
    "services",
    "instances",
    "registry",
    "resources",
    "cluster",
    "health",
    "ready",
    "metrics",
    "volumes",
    "backups",
];

fn builtin_service(b: &Builtin) -> Service {
    Service {
        name: b.name.to_owned(),
        description: b.description.to_owned(),
        builtin: true,
        command: Some(vec![
            "aerekos".into(),
            "service".into(),
            b.subcommand.into(),
        ]),
        image: Some(platform_image()),
        image_command: Some(vec!["service".into(), b.subcommand.into()]),
        // The service listens where its worker says (AEREKOS_INSTANCE_HOST, PORT): every interface, or loopback
        // on a worker that serves plain HTTP.
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        health_path: "/health".into(),
        default_resources: b.resources,
        default_replicas: 1,
        // Keys and objects live in one instance's database until replication exists.
        stateful: true,
        depends_on: b.depends_on.iter().map(|d| (*d).to_owned()).collect(),
        load_balancing: LoadBalancing::RoundRobin,
        enabled: false,
        deployment: None,
        updated_at: from_ms(0),
    }
}

pub struct CatalogService {
    db: Db,
    /// Every service by name, with its state; SQLite is the durable copy.
    table: MemoryTable<Vec<Arc<Service>>>,
}

impl CatalogService {
    pub async fn start(db: Db) -> Result<Self, sqlx::Error> {
        let names: Vec<_> = BUILTINS.iter().map(|b| b.name).collect();
        services::ensure(&db, &names).await?;
        Ok(Self {
            db,
            table: MemoryTable::default(),
        })
    }

    /// The catalog, read from SQLite first if it is not in memory or changed. Placement holds it
    /// across the commit of a deployment ([`super::instances::InstanceService::apply`]).
    pub(crate) async fn table(&self) -> ApiResult<MappedMutexGuard<'_, Vec<Arc<Service>>>> {
        self.table
            .lock(|| async {
                let rows = services::all(&self.db).await.map_err(ApiError::internal)?;
                Ok(rows
                    .iter()
                    .filter_map(|row| with_state(row).ok().map(Arc::new))
                    .collect())
            })
            .await
    }

    /// Every service, shared rather than copied (placement reads them all at each deploy).
    pub async fn snapshot(&self) -> ApiResult<Vec<Arc<Service>>> {
        Ok(self.table().await?.clone())
    }

    /// Brings `table` up to deployment `updates` just committed.
    pub(crate) fn updated(
        &self,
        table: &mut [Arc<Service>],
        updates: &[DeploymentUpdate<'_>],
        at: i64,
    ) {
        let now = from_ms(at);
        for u in updates {
            let Some(service) = table.iter_mut().find(|s| s.name == u.name) else {
                continue;
            };
            let service = Arc::make_mut(service);
            match u.deployment.map(serde_json::from_str).transpose() {
                Ok(deployment) => service.deployment = deployment,
                Err(_) => {
                    // Written by serde_json a moment ago, so not expected: read the file again.
                    self.table.invalidate();
                    return;
                }
            }
            service.enabled = u.enabled;
            service.load_balancing = parse_lb(u.load_balancing);
            service.updated_at = now;
        }
    }

    pub async fn list(&self) -> ApiResult<Vec<Service>> {
        Ok(self
            .table()
            .await?
            .iter()
            .map(|s| Service::clone(s))
            .collect())
    }

    pub async fn get(&self, name: &str) -> ApiResult<Service> {
        let found = self
            .table()
            .await?
            .iter()
            .find(|s| s.name == name)
            .map(|s| Service::clone(s));
        match found {
            Some(service) => Ok(service),
            None => Err(self.not_found(name).await),
        }
    }

    async fn not_found(&self, name: &str) -> ApiError {
        let known: Vec<String> = self
            .list()
            .await
            .map(|l| l.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        ApiError::not_found(
            "service_not_found",
            format!(
                "no service {name:?} in the catalog; it has {}",
                known.join(", ")
            ),
        )
    }

    /// Adds a service of an admin's own to the catalog (disabled until enabled or deployed).
    pub async fn define(&self, def: ServiceDefinition) -> ApiResult<Service> {
        let service = validate_definition(def)?;
        for dep in &service.depends_on {
            self.get(dep).await.map_err(|_| {
                ApiError::bad_request(
                    "invalid_service",
                    format!("depends_on names {dep:?}, which is not in the catalog"),
                )
            })?;
        }
        let json = serde_json::to_string(&service).map_err(ApiError::internal)?;
        let lb = lb_name(service.load_balancing);
        let inserted = services::insert_defined(&self.db, &service.name, &json, lb)
            .await
            .map_err(ApiError::internal)?;
        self.table.invalidate();
        if !inserted {
            return Err(ApiError::conflict(
                "service_exists",
                format!("the catalog already has a service {:?}", service.name),
            ));
        }
        tracing::info!(service = %service.name, "service defined");
        self.get(&service.name).await
    }

    /// Removes a service an admin defined; refused for built-ins and while it is enabled or needed.
    pub async fn remove(&self, name: &str) -> ApiResult<()> {
        let service = self.get(name).await?;
        if service.builtin {
            return Err(ApiError::conflict(
                "service_builtin",
                format!("{name} is part of the platform; disable it instead"),
            ));
        }
        if service.enabled {
            return Err(ApiError::conflict(
                "service_enabled",
                format!("{name} is enabled; disable it first"),
            ));
        }
        let dependents: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|s| s.depends_on.iter().any(|d| d == name))
            .map(|s| s.name)
            .collect();
        if !dependents.is_empty() {
            return Err(ApiError::conflict(
                "service_has_dependents",
                format!("{name} is needed by {}", dependents.join(", ")),
            ));
        }
        services::delete_defined(&self.db, name)
            .await
            .map_err(ApiError::internal)?;
        self.table.invalidate();
        tracing::info!(service = name, "service removed from the catalog");
        Ok(())
    }
}

pub fn lb_name(lb: LoadBalancing) -> &'static str {
    match lb {
        LoadBalancing::RoundRobin => "round_robin",
        LoadBalancing::LeastConnections => "least_connections",
        LoadBalancing::IpHash => "ip_hash",
    }
}

fn parse_lb(s: &str) -> LoadBalancing {
    match s {
        "least_connections" => LoadBalancing::LeastConnections,
        "ip_hash" => LoadBalancing::IpHash,
        _ => LoadBalancing::RoundRobin,
    }
}

/// The service a row describes, with its state.
fn with_state(row: &ServiceRow) -> ApiResult<Service> {
    let mut service = match &row.definition {
        Some(json) => serde_json::from_str::<Service>(json).map_err(ApiError::internal)?,
        None => {
            let b = BUILTINS
                .iter()
                .find(|b| b.name == row.name)
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "service row {:?} is neither built in nor defined",
                        row.name
                    ))
                })?;
            builtin_service(b)
        }
    };
    service.enabled = row.enabled;
    service.load_balancing = parse_lb(&row.load_balancing);
    service.deployment = row
        .deployment
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(ApiError::internal)?;
    service.updated_at = from_ms(row.updated_at);
    Ok(service)
}

fn validate_definition(def: ServiceDefinition) -> ApiResult<Service> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_service", m));
    let name = def.name.trim().to_owned();
    let name_ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return bad(format!(
            "name {name:?} must be 1–48 of a–z, 0–9 and '_', starting with a letter"
        ));
    }
    if RESERVED.contains(&name.as_str()) {
        return bad(format!(
            "{name:?} is one of the conductor's own paths (/api/{name}); choose another name"
        ));
    }
    let command = def.command.filter(|c| !c.is_empty());
    let image = def
        .image
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty());
    if command.is_none() && image.is_none() {
        return bad("give a command (process driver), an image (docker driver), or both".into());
    }
    if command.as_ref().is_some_and(|c| c[0].trim().is_empty()) {
        return bad("command must name a program".into());
    }
    if def.image_command.is_some() && image.is_none() {
        return bad("image_command goes with an image".into());
    }
    let health_path = def.health_path.unwrap_or_else(|| "/health".into());
    if !health_path.starts_with('/') {
        return bad("health_path must start with '/'".into());
    }
    let default_replicas = def.default_replicas.unwrap_or(1);
    let stateful = def.stateful.unwrap_or(false);
    if stateful && default_replicas > 1 {
        return bad("a stateful service runs one replica".into());
    }
    let default_resources = def.default_resources.unwrap_or(ResourceSpec {
        cpu_millicores: 100,
        memory_mb: 64,
        disk_mb: 64,
    });
    validate_resources(&default_resources)?;
    let env = def.env.unwrap_or_default();
    let secret_env = def.secret_env.unwrap_or_default();
    super::deployments::check_secret_env(&secret_env, &env, stateful)?;
    let mut depends_on = def.depends_on.unwrap_or_default();
    depends_on.sort();
    depends_on.dedup();
    if depends_on.contains(&name) {
        return bad("a service cannot depend on itself".into());
    }
    Ok(Service {
        description: def.description.unwrap_or_default(),
        builtin: false,
        command,
        image,
        image_command: def.image_command.filter(|c| !c.is_empty()),
        env,
        secret_env,
        health_path,
        default_resources,
        default_replicas,
        stateful,
        depends_on,
        load_balancing: def.load_balancing.unwrap_or_default(),
        enabled: false,
        deployment: None,
        updated_at: from_ms(0),
        name,
    })
}

/// Resources an instance may reserve: something, and not absurd.
pub fn validate_resources(r: &ResourceSpec) -> ApiResult<()> {
    if r.cpu_millicores == 0 || r.memory_mb == 0 {
        return Err(ApiError::bad_request(
            "invalid_resources",
            "resources: cpu_millicores and memory_mb must be at least 1 (disk_mb may be 0)",
        ));
    }
    Ok(())
}
