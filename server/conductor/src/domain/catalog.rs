//! The service catalog: which services the platform offers (defined here, in code) and whether each
//! is enabled (kept in the database). Placement of instances is the scheduler's; this keeps the
//! records it writes.

use aerekos_common::{ApiError, ApiResult};
use super::from_ms;
use crate::{
    model::{ResourceSpec, Service},
    store::{Db, services, services::ServiceStateRow},
};

/// One service the platform can run.
pub struct CatalogEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub port: u16,
    pub health_path: &'static str,
    pub cpu_millicores: u32,
    pub memory_mb: u32,
    pub disk_mb: u32,
    pub replicas: u32,
    pub depends_on: &'static [&'static str],
}

pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "key_manager",
        description: "Key management (KMS): named keys with versions and rotation, encrypt/decrypt, data keys for envelope encryption.",
        port: 8301,
        health_path: "/health",
        cpu_millicores: 250,
        memory_mb: 128,
        disk_mb: 256,
        replicas: 1,
        depends_on: &[],
    },
    CatalogEntry {
        name: "storage_manager",
        description: "S3-compatible object storage: buckets and objects, encrypted at rest through key_manager.",
        port: 8302,
        health_path: "/health",
        cpu_millicores: 500,
        memory_mb: 256,
        disk_mb: 10240,
        replicas: 1,
        depends_on: &["key_manager"],
    },
];

pub fn entry(name: &str) -> ApiResult<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
        let known: Vec<_> = CATALOG.iter().map(|e| e.name).collect();
        ApiError::not_found("service_not_found", format!("no service {name:?} in the catalog; it has {}", known.join(", ")))
    })
}

pub struct CatalogService {
    db: Db,
}

impl CatalogService {
    pub async fn start(db: Db) -> Result<Self, sqlx::Error> {
        let names: Vec<_> = CATALOG.iter().map(|e| e.name).collect();
        services::ensure(&db, &names).await?;
        Ok(Self { db })
    }

    pub async fn list(&self) -> ApiResult<Vec<Service>> {
        let states = services::all(&self.db).await.map_err(ApiError::internal)?;
        CATALOG
            .iter()
            .map(|e| {
                let state = states.iter().find(|s| s.name == e.name);
                Ok(to_model(e, state))
            })
            .collect()
    }

    pub async fn get(&self, name: &str) -> ApiResult<Service> {
        let entry = entry(name)?;
        let state = services::get(&self.db, name).await.map_err(ApiError::internal)?;
        Ok(to_model(entry, state.as_ref()))
    }

    /// Enables the service and, in the same transaction, everything it depends on.
    pub async fn enable(&self, name: &str) -> ApiResult<Service> {
        let mut names = vec![];
        collect_dependencies(entry(name)?, &mut names);
        services::set_enabled(&self.db, &names, true).await.map_err(ApiError::internal)?;
        tracing::info!(service = name, with = ?names, "service enabled");
        self.get(name).await
    }

    /// Disables the service; refused while an enabled service depends on it.
    pub async fn disable(&self, name: &str) -> ApiResult<Service> {
        entry(name)?;
        let states = services::all(&self.db).await.map_err(ApiError::internal)?;
        let dependents: Vec<_> = CATALOG
            .iter()
            .filter(|e| e.depends_on.contains(&name))
            .filter(|e| states.iter().any(|s| s.name == e.name && s.enabled))
            .map(|e| e.name)
            .collect();
        if !dependents.is_empty() {
            return Err(ApiError::conflict(
                "service_has_dependents",
                format!("{name} is needed by {}; disable {} first", dependents.join(", "), dependents.join(" and ")),
            ));
        }
        services::set_enabled(&self.db, &[name], false).await.map_err(ApiError::internal)?;
        tracing::info!(service = name, "service disabled");
        self.get(name).await
    }
}

fn collect_dependencies(entry: &'static CatalogEntry, out: &mut Vec<&'static str>) {
    if out.contains(&entry.name) {
        return;
    }
    out.push(entry.name);
    for dep in entry.depends_on {
        if let Ok(dep) = self::entry(dep) {
            collect_dependencies(dep, out);
        }
    }
}

fn to_model(e: &CatalogEntry, state: Option<&ServiceStateRow>) -> Service {
    Service {
        name: e.name.to_owned(),
        description: e.description.to_owned(),
        port: e.port,
        health_path: e.health_path.to_owned(),
        default_resources: ResourceSpec { cpu_millicores: e.cpu_millicores, memory_mb: e.memory_mb, disk_mb: e.disk_mb },
        default_replicas: e.replicas,
        depends_on: e.depends_on.iter().map(|d| (*d).to_owned()).collect(),
        enabled: state.is_some_and(|s| s.enabled),
        updated_at: from_ms(state.map_or(0, |s| s.updated_at)),
    }
}
