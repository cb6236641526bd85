use std::sync::Arc;

use aerekos_common::{ApiError, ApiResult, metrics::write_gauge};
use poem::web::Data;
use poem_openapi::{
    OpenApi,
    payload::{Json, PlainText},
};

use super::{ApiTags, CallerAuth};
use crate::{
    AppState,
    model::{Health, InstanceState, MetricsTarget, MetricsTargets, Readiness, TlsCa},
};

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness: the process is up.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> ApiResult<Json<Health>> {
        Ok(Json(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Readiness: the database answers. 503 otherwise.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&Arc<AppState>>) -> ApiResult<Json<Readiness>> {
        match state.db.ping().await {
            Ok(()) => Ok(Json(Readiness {
                status: "ready".into(),
            })),
            Err(e) => Err(ApiError::unavailable(
                "database_unavailable",
                format!("the database does not answer: {e}"),
            )),
        }
    }

    /// The CA bundle the conductor's certificate chains to, and its fingerprint. Public: clients
    /// fetch it before they trust the connection, and accept it only if its fingerprint matches
    /// the pin they were given (`CONDUCTOR_CA_PIN`, `aerekos login --ca-pin`).
    #[oai(path = "/api/tls/ca", method = "get", operation_id = "get_tls_ca")]
    async fn tls_ca(&self, state: Data<&Arc<AppState>>) -> ApiResult<Json<TlsCa>> {
        Ok(Json(match &state.tls {
            Some(tls) => TlsCa {
                enabled: true,
                pem: Some(tls.bundle_pem.clone()),
                fingerprint: Some(tls.fingerprint.clone()),
            },
            None => TlsCa {
                enabled: false,
                pem: None,
                fingerprint: None,
            },
        }))
    }

    /// Prometheus metrics (text exposition format).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&Arc<AppState>>) -> ApiResult<PlainText<String>> {
        let mut out = String::new();
        state.metrics.render_http(&mut out);
        let resources = state.workers.resources().await?;
        write_gauge(
            &mut out,
            "aerekos_workers",
            "Registered workers by status.",
            &[
                ("status=\"live\"".into(), resources.live_workers as f64),
                ("status=\"lost\"".into(), resources.lost_workers as f64),
            ],
        );
        write_gauge(
            &mut out,
            "aerekos_cluster_cpu_cores",
            "CPU cores of live workers.",
            &[(String::new(), resources.cpu_cores as f64)],
        );
        write_gauge(
            &mut out,
            "aerekos_cluster_memory_available_bytes",
            "Available memory on live workers.",
            &[(String::new(), resources.memory_available_bytes as f64)],
        );
        Ok(PlainText(out))
    }

    /// What metrics_manager scrapes, from the registry: every worker's `/metrics`, and every
    /// running catalog service instance's (user or service token). Each comes with the labels its
    /// samples get: `job` (`worker` or `service`), `worker`, and for instances `service` and
    /// `instance_id`. The conductor's own `/metrics` is at the address the caller already uses.
    #[oai(
        path = "/api/metrics/targets",
        method = "get",
        operation_id = "list_metrics_targets"
    )]
    async fn metrics_targets(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: CallerAuth,
    ) -> ApiResult<Json<MetricsTargets>> {
        let mut targets = Vec::new();
        let mut cursor = None;
        loop {
            let page = state.workers.list(None, Some(1000), cursor).await?;
            for w in page.workers {
                let Some(api) = w.api_url else { continue };
                targets.push(MetricsTarget {
                    url: format!("{}/metrics", api.trim_end_matches('/')),
                    labels: [
                        ("job".to_owned(), "worker".to_owned()),
                        ("worker".to_owned(), w.id.to_string()),
                        ("worker_name".to_owned(), w.name),
                    ]
                    .into(),
                });
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // Instances serve HTTPS when the conductor does (their workers give them certificates).
        let scheme = if state.tls.is_some() { "https" } else { "http" };
        for i in state.instances.all().await? {
            let (Some(service), Some(address)) = (i.service, i.address) else {
                continue;
            };
            if !matches!(i.state, InstanceState::Running | InstanceState::Unhealthy) {
                continue;
            }
            targets.push(MetricsTarget {
                url: format!("{scheme}://{address}/metrics"),
                labels: [
                    ("job".to_owned(), "service".to_owned()),
                    ("service".to_owned(), service),
                    ("instance_id".to_owned(), i.id.to_string()),
                    ("worker".to_owned(), i.worker_id.to_string()),
                ]
                .into(),
            });
        }
        Ok(Json(MetricsTargets { targets }))
    }
}
