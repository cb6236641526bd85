//! metrics_manager's HTTP surface, under `/api/metrics_manager/…` so one SDK client works against
//! the service directly or through the conductor's gateway. Thin: check the token, call the domain.

use std::sync::Arc;

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    metrics::{write_counter, write_gauge},
    server::blocking,
};
use chrono::{DateTime, TimeZone, Utc};
use poem::{Request, web::Data};
use poem_openapi::{
    OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::{Path, Query},
    payload::{Json, PlainText},
};

use crate::{
    State,
    domain::{
        alerts::MAX_RULES,
        query::{self, QueryError},
        series::{self, Matcher},
    },
    model::{
        AlertRule, AlertRules, Alerts, Health, MetricName, MetricNames, MetricsStats, Point,
        PushRequest, PushResult, QueryAggregation, QueryFunction, QueryResult, SeriesPoints,
        Targets,
    },
};

#[derive(Tags)]
enum ApiTags {
    /// Time series: queries, pushes, federation.
    Metrics,
    /// Alert rules and the alerts they raise.
    Alerts,
    /// Health, readiness, metrics.
    System,
}

/// A token from the conductor, as `Authorization: Bearer <token>`: a user's (everyone reads; only
/// admins push samples and change alert rules), or an API key's (`metrics_manager:read:<metric
/// name*>` to query, `metrics_manager:write:<metric name*>` to push).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
struct CallerAuth(Caller);

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req.data::<Arc<State>>().expect("State is attached");
    Ok(state.verifier.caller(&bearer.token)?)
}

/// Reading `metric` (`*`: everything: names, targets, federation).
fn may_read(caller: &Caller, metric: &str) -> ApiResult<()> {
    match caller {
        Caller::User { .. } => Ok(()),
        Caller::ApiKey { .. } => caller.require_scope("metrics_manager", "read", &[metric]),
        Caller::Service { .. } => Err(ApiError::forbidden(
            "forbidden",
            "service tokens do not read metrics",
        )),
    }
}

fn may_write(caller: &Caller, metric: &str) -> ApiResult<()> {
    match caller {
        Caller::User { admin: true, .. } => Ok(()),
        Caller::ApiKey { .. } => caller.require_scope("metrics_manager", "write", &[metric]),
        _ => Err(ApiError::forbidden(
            "forbidden",
            "pushing samples needs an admin's token or an API key with metrics_manager:write",
        )),
    }
}

fn admin(caller: &Caller) -> ApiResult<()> {
    match caller {
        Caller::User { admin: true, .. } => Ok(()),
        _ => Err(ApiError::forbidden(
            "forbidden",
            "alert rules are changed by admins",
        )),
    }
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Invalid(code, message) => ApiError::bad_request(code, message),
        QueryError::Io(e) => ApiError::internal(e),
    }
}

fn parse_matchers(texts: &[String]) -> ApiResult<Vec<Matcher>> {
    if texts.len() > MAX_MATCHERS {
        return Err(ApiError::bad_request(
            "too_many_matchers",
            format!("at most {MAX_MATCHERS} matchers"),
        ));
    }
    texts
        .iter()
        .map(|m| Matcher::parse(m).map_err(|e| ApiError::bad_request("invalid_matcher", e)))
        .collect()
}

const MAX_MATCHERS: usize = 20;
const MAX_STEP_SECS: u64 = 31 * 86_400;
/// A pushed series' labels: how many, and how long a value.
const MAX_LABELS: usize = 30;
const MAX_LABEL_VALUE: usize = 1024;
const MAX_PUSH_SERIES: usize = 1000;
const MAX_PUSH_SAMPLES: usize = 100_000;
/// Points a query answers by default, when it gives no step.
const DEFAULT_POINTS: i64 = 240;

fn ms(t: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t).single().unwrap_or_default()
}

pub struct MetricsApi;

#[OpenApi(prefix_path = "/api/metrics_manager", tag = "ApiTags::Metrics")]
impl MetricsApi {
    /// Series of one metric over a range: at every `step` from `start` to `end`, the `function` of
    /// each series over the `window` before it, then, optionally, `aggregation` by the `by`
    /// labels, or the `quantile` of a histogram's `…_bucket` series. Raw samples answer ranges
    /// within raw retention at steps under a minute; the 1-minute rollups answer the rest
    /// (`resolution` says which). A point is left out where a series has no value.
    #[oai(path = "/query", method = "get", operation_id = "query_metrics")]
    #[allow(clippy::too_many_arguments)]
    async fn query(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        /// The metric's name.
        name: Query<String>,
        /// Label matchers, each `label=value`, `label!=value`, `label=~regex` or `label!~regex`.
        #[oai(name = "match", default)]
        matchers: Query<Vec<String>>,
        /// Default: an hour before `end`.
        start: Query<Option<DateTime<Utc>>>,
        /// Default: now.
        end: Query<Option<DateTime<Utc>>>,
        /// Seconds between points; default: the range over 240.
        step_secs: Query<Option<u64>>,
        /// Default `value`.
        function: Query<Option<QueryFunction>>,
        /// The function's window in seconds; default: the step (at least a minute).
        window_secs: Query<Option<u64>>,
        aggregation: Query<Option<QueryAggregation>>,
        /// Labels to aggregate by (repeat the parameter or separate with commas).
        #[oai(default)]
        by: Query<Vec<String>>,
        /// 0–1: the quantile of histogram buckets (`name` ends in `_bucket`), summed by `by`.
        quantile: Query<Option<f64>>,
    ) -> ApiResult<Json<QueryResult>> {
        may_read(&auth.0, &name.0)?;
        if !series::valid_metric_name(&name.0) {
            return Err(ApiError::bad_request(
                "invalid_name",
                format!("{:?} is not a metric name", name.0),
            ));
        }
        let now = Utc::now().timestamp_millis();
        let end = end.0.map_or(now, |t| t.timestamp_millis());
        let start = start.0.map_or(end - 3_600_000, |t| t.timestamp_millis());
        if start > end {
            return Err(ApiError::bad_request("invalid_range", "start is after end"));
        }
        let step = match step_secs.0 {
            Some(0) => {
                return Err(ApiError::bad_request(
                    "invalid_step",
                    "step_secs must be at least 1",
                ));
            }
            Some(s) if s > MAX_STEP_SECS => {
                return Err(ApiError::bad_request(
                    "invalid_step",
                    format!("step_secs must be at most {MAX_STEP_SECS}"),
                ));
            }
            Some(s) => s as i64 * 1000,
            None => ((end - start) / DEFAULT_POINTS).max(1000) / 1000 * 1000,
        };
        if window_secs.0.is_some_and(|w| w == 0 || w > 31 * 86_400) {
            return Err(ApiError::bad_request(
                "invalid_window",
                "window_secs must be 1 to 2678400",
            ));
        }
        let by: Vec<String> =
            by.0.iter()
                .flat_map(|b| b.split(','))
                .map(|b| b.trim().to_owned())
                .filter(|b| !b.is_empty())
                .collect();
        let q = query::Query {
            matchers: query::matchers_for(Some(&name.0), parse_matchers(&matchers.0)?),
            start,
            end,
            step,
            window: window_secs.0.map(|w| w as i64 * 1000),
            function: function.0.unwrap_or_default(),
            aggregation: aggregation.0,
            by,
            quantile: quantile.0,
        };
        let db = state.db.clone();
        let raw_horizon = now - state.raw_retention_ms;
        let answer =
            blocking(move || query::evaluate(&db, &q, raw_horizon).map_err(query_error)).await?;
        Ok(Json(QueryResult {
            resolution: answer.resolution,
            step_secs: (step / 1000) as u64,
            series: answer
                .series
                .into_iter()
                .map(|(labels, points)| SeriesPoints {
                    labels,
                    points: points.into_iter().map(|(t, v)| Point { t, v }).collect(),
                })
                .collect(),
        }))
    }

    /// Every metric name stored, with how many series each has.
    #[oai(path = "/names", method = "get", operation_id = "list_metric_names")]
    async fn names(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
    ) -> ApiResult<Json<MetricNames>> {
        may_read(&auth.0, "*")?;
        let db = state.db.clone();
        let names = blocking(move || Ok(db.names())).await?;
        Ok(Json(MetricNames {
            names: names
                .into_iter()
                .map(|(name, series)| MetricName { name, series })
                .collect(),
        }))
    }

    /// Stores samples (for what has no `/metrics` to scrape: batch jobs, backfills). Each
    /// series' samples must be in time order and newer than its newest stored one (older ones are
    /// counted and skipped). On disk before the answer.
    #[oai(path = "/samples", method = "post", operation_id = "push_samples")]
    async fn push(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<PushRequest>,
    ) -> ApiResult<Json<PushResult>> {
        let now = Utc::now().timestamp_millis();
        let oldest = now - state.rollup_retention_ms;
        let newest = now + 600_000;
        if body.0.series.len() > MAX_PUSH_SERIES {
            return Err(ApiError::bad_request(
                "too_many_series",
                format!("at most {MAX_PUSH_SERIES} series a push"),
            ));
        }
        let total: usize = body.0.series.iter().map(|s| s.samples.len()).sum();
        if total > MAX_PUSH_SAMPLES {
            return Err(ApiError::bad_request(
                "too_many_samples",
                format!("at most {MAX_PUSH_SAMPLES} samples a push"),
            ));
        }
        let mut samples = Vec::with_capacity(total);
        for (i, s) in body.0.series.into_iter().enumerate() {
            may_write(&auth.0, &s.name)?;
            if !series::valid_metric_name(&s.name) {
                return Err(ApiError::bad_request(
                    "invalid_series",
                    format!(
                        "series[{i}].name {:?} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, at most 200)",
                        s.name
                    ),
                ));
            }
            let mut labels = s.labels;
            if labels.contains_key(series::NAME) {
                return Err(ApiError::bad_request(
                    "invalid_label",
                    format!("series[{i}].labels: the name goes in `name`, not in __name__"),
                ));
            }
            if labels.len() > MAX_LABELS
                || labels.values().any(|v| v.chars().count() > MAX_LABEL_VALUE)
            {
                return Err(ApiError::bad_request(
                    "invalid_labels",
                    format!(
                        "series[{i}].labels: at most {MAX_LABELS}, each value at most {MAX_LABEL_VALUE} characters"
                    ),
                ));
            }
            labels.insert(series::NAME.into(), s.name.clone());
            let key = series::key(&labels);
            if series::parse_key(&key).as_ref() != Some(&labels) {
                return Err(ApiError::bad_request(
                    "invalid_series",
                    format!(
                        "series[{i}]: names are [a-zA-Z_:][a-zA-Z0-9_:]* (the metric's and its labels')"
                    ),
                ));
            }
            for (j, p) in s.samples.iter().enumerate() {
                if !(oldest..=newest).contains(&p.t) {
                    return Err(ApiError::bad_request(
                        "sample_out_of_range",
                        format!(
                            "series[{i}].samples[{j}].t is outside rollup retention or more than 10 minutes ahead"
                        ),
                    ));
                }
                samples.push((key.clone(), p.t, p.v));
            }
        }
        let db = state.db.clone();
        let outcome =
            blocking(move || db.append(samples, true).map_err(ApiError::internal)).await?;
        Ok(Json(PushResult {
            stored: outcome.stored,
            out_of_order: outcome.out_of_order,
            series_refused: outcome.series_refused,
        }))
    }

    /// The scrape targets (the conductor, every worker, every running service instance) and how
    /// each one's last scrape went.
    #[oai(
        path = "/targets",
        method = "get",
        operation_id = "list_scrape_targets"
    )]
    async fn targets(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
    ) -> ApiResult<Json<Targets>> {
        may_read(&auth.0, "*")?;
        Ok(Json(state.scraper.snapshot()))
    }

    /// What the store holds.
    #[oai(path = "/stats", method = "get", operation_id = "metrics_stats")]
    async fn stats(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
    ) -> ApiResult<Json<MetricsStats>> {
        may_read(&auth.0, "*")?;
        let db = state.db.clone();
        let s = blocking(move || Ok(db.stats())).await?;
        Ok(Json(MetricsStats {
            head_series: s.head_series,
            head_samples: s.head_samples,
            raw_sections: s.raw_sections,
            raw_samples: s.raw_samples,
            raw_bytes: s.raw_bytes,
            rollup_sections: s.rollup_sections,
            disk_bytes: s.disk_bytes,
            samples_stored_total: state
                .db
                .counters
                .samples_stored
                .load(std::sync::atomic::Ordering::Relaxed),
            oldest_raw: s.oldest_raw_ms.map(ms),
            oldest_rollup: s.oldest_rollup_ms.map(ms),
        }))
    }

    /// Prometheus federation: the newest sample (within 5 minutes) of every series a `match[]`
    /// selector selects, in the text exposition format with timestamps. Point a Prometheus at it
    /// with `metrics_path: /api/metrics_manager/federate`, `params: {match[]: [...]}` and an API
    /// key with `metrics_manager:read:*` as its bearer token.
    #[oai(path = "/federate", method = "get", operation_id = "federate")]
    async fn federate(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        /// Series selectors: `name`, `name{label="value",…}` or `{label=~"regex"}`.
        #[oai(name = "match[]")]
        selectors: Query<Vec<String>>,
    ) -> ApiResult<PlainText<String>> {
        may_read(&auth.0, "*")?;
        if selectors.0.is_empty() || selectors.0.len() > MAX_MATCHERS {
            return Err(ApiError::bad_request(
                "invalid_selectors",
                format!("give 1 to {MAX_MATCHERS} match[] selectors"),
            ));
        }
        let sets = selectors
            .0
            .iter()
            .map(|s| {
                series::parse_selector(s).map_err(|e| ApiError::bad_request("invalid_selector", e))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let since = Utc::now().timestamp_millis() - 300_000;
        let db = state.db.clone();
        let text = blocking(move || {
            let mut seen = std::collections::BTreeMap::new();
            for matchers in &sets {
                for (labels, t, v) in db.latest(matchers, since) {
                    seen.insert(series::key(&labels), (t, v));
                }
            }
            let mut out = String::new();
            for (key, (t, v)) in seen {
                out.push_str(&format!("{key} {v} {t}\n"));
            }
            Ok(out)
        })
        .await?;
        Ok(PlainText(text))
    }
}

pub struct AlertsApi;

#[OpenApi(prefix_path = "/api/metrics_manager", tag = "ApiTags::Alerts")]
impl AlertsApi {
    /// The alerts whose condition holds now: `pending` (for less than their rule's `for_secs`)
    /// and `firing`.
    #[oai(path = "/alerts", method = "get", operation_id = "list_alerts")]
    async fn alerts(&self, state: Data<&Arc<State>>, auth: CallerAuth) -> ApiResult<Json<Alerts>> {
        may_read(&auth.0, "*")?;
        Ok(Json(Alerts {
            alerts: state.alerting.alerts(),
        }))
    }

    /// Every alert rule. A new store starts with four: `worker_lost`, `instance_restarting`,
    /// `disk_almost_full` and `http_5xx_rate`. Only admins see a rule's `webhook_url` (it may
    /// carry a credential); others see that there is one.
    #[oai(
        path = "/alert-rules",
        method = "get",
        operation_id = "list_alert_rules"
    )]
    async fn rules(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
    ) -> ApiResult<Json<AlertRules>> {
        may_read(&auth.0, "*")?;
        let mut rules = state.alerting.rules();
        // A webhook URL often carries a credential (a chat hook's token): admins' only.
        if !matches!(auth.0, Caller::User { admin: true, .. }) {
            for rule in &mut rules {
                if rule.webhook_url.is_some() {
                    rule.webhook_url = Some("(hidden: admins see it)".into());
                }
            }
        }
        Ok(Json(AlertRules { rules }))
    }

    /// Creates or replaces a rule (admins). Its alerts start over.
    #[oai(
        path = "/alert-rules/:name",
        method = "put",
        operation_id = "put_alert_rule"
    )]
    async fn put_rule(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
        body: Json<AlertRule>,
    ) -> ApiResult<Json<AlertRule>> {
        admin(&auth.0)?;
        let mut rule = body.0;
        if !rule.name.is_empty() && rule.name != name.0 {
            return Err(ApiError::bad_request(
                "name_mismatch",
                format!("the body names rule {:?}, the path {:?}", rule.name, name.0),
            ));
        }
        rule.name = name.0;
        let alerting = state.alerting.clone();
        blocking(move || alerting.put_rule(rule)).await.map(Json)
    }

    /// Deletes a rule (admins), and its alerts.
    #[oai(
        path = "/alert-rules/:name",
        method = "delete",
        operation_id = "delete_alert_rule"
    )]
    async fn delete_rule(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<AlertRules>> {
        admin(&auth.0)?;
        let alerting = state.alerting.clone();
        blocking(move || {
            alerting.delete_rule(&name.0)?;
            Ok(AlertRules {
                rules: alerting.rules(),
            })
        })
        .await
        .map(Json)
    }
}

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness. 503 from `SERVICE_TOKEN_RENEW_BEFORE` ahead of the service token's expiry.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&Arc<State>>) -> ApiResult<Json<Health>> {
        state.token_renewal.check()?;
        Ok(Json(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Readiness: the store is open.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ApiResult<Json<Health>> {
        Ok(Json(Health {
            status: "ready".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Prometheus metrics (metrics_manager scrapes its own, like everyone's).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&Arc<State>>) -> ApiResult<PlainText<String>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        state.metrics.render_http(&mut out);
        let c = &state.db.counters;
        let counters = [
            (
                "aerekos_metrics_samples_stored_total",
                "Samples stored.",
                c.samples_stored.load(Relaxed),
            ),
            (
                "aerekos_metrics_samples_out_of_order_total",
                "Samples skipped: not newer than their series' newest.",
                c.out_of_order.load(Relaxed),
            ),
            (
                "aerekos_metrics_series_refused_total",
                "Samples of new series refused past MAX_SERIES.",
                c.series_refused.load(Relaxed),
            ),
            (
                "aerekos_metrics_cuts_total",
                "Raw sections cut from the head.",
                c.cuts.load(Relaxed),
            ),
            (
                "aerekos_metrics_sections_removed_total",
                "Sections removed by retention.",
                c.sections_removed.load(Relaxed),
            ),
            (
                "aerekos_metrics_scrape_rounds_total",
                "Scrape rounds.",
                state.scraper.rounds.load(Relaxed),
            ),
            (
                "aerekos_metrics_scrape_rounds_late_total",
                "Scrape rounds that took longer than the interval.",
                state.scraper.rounds_late.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            write_counter(&mut out, name, help, value);
        }
        let db = state.db.clone();
        let s = blocking(move || Ok(db.stats())).await?;
        write_gauge(
            &mut out,
            "aerekos_metrics_head_series",
            "Series in the head.",
            &[(String::new(), s.head_series as f64)],
        );
        write_gauge(
            &mut out,
            "aerekos_metrics_disk_bytes",
            "Bytes of WAL, sections and rollups.",
            &[(String::new(), s.disk_bytes as f64)],
        );
        Ok(PlainText(out))
    }
}

pub type MetricsManagerApi = (MetricsApi, AlertsApi, SystemApi);

pub fn service() -> OpenApiService<MetricsManagerApi, ()> {
    OpenApiService::new(
        (MetricsApi, AlertsApi, SystemApi),
        "aerekos metrics_manager",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "The platform's metrics: every /metrics the registry knows (the conductor, every worker, every service \
         instance) scraped on an interval into a time-series store (raw samples for a day, 1-minute rollups for 30 \
         days, both configurable), queried by name and labels over a range (rate, increase, aggregation by label, \
         histogram quantiles), served to Prometheus by federation, and watched by alert rules that POST to webhooks.",
    )
}

/// The limits metrics_manager's domain enforces, declared in its spec (see `aerekos_common::limits`).
pub fn limits() -> Vec<aerekos_common::limits::Limit> {
    use aerekos_common::limits::Limit;
    use serde_json::json;
    let name =
        json!({"pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$", "maxLength": series::MAX_METRIC_NAME});
    vec![
        Limit::param("query_metrics", "name", name.clone()),
        Limit::property("PushSeries", "name", name.clone()),
        Limit::property("AlertRule", "metric", name),
        Limit::param("query_metrics", "match", json!({"maxItems": MAX_MATCHERS})),
        Limit::param(
            "query_metrics",
            "step_secs",
            json!({"minimum": 1, "maximum": MAX_STEP_SECS}),
        ),
        Limit::property(
            "PushSeries",
            "labels",
            json!({"maxProperties": MAX_LABELS, "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE}}),
        ),
        Limit::param(
            "query_metrics",
            "window_secs",
            json!({"minimum": 1, "maximum": 31 * 86_400}),
        ),
        Limit::param(
            "query_metrics",
            "quantile",
            json!({"minimum": 0, "maximum": 1}),
        ),
        Limit::param(
            "federate",
            "match[]",
            json!({"minItems": 1, "maxItems": MAX_MATCHERS}),
        ),
        Limit::property(
            "PushRequest",
            "series",
            json!({"maxItems": MAX_PUSH_SERIES}),
        ),
        Limit::property(
            "PushSeries",
            "samples",
            json!({"maxItems": MAX_PUSH_SAMPLES}),
        ),
        Limit::param(
            "put_alert_rule",
            "name",
            json!({"pattern": "^[a-z0-9_-]{1,64}$"}),
        ),
        Limit::param(
            "delete_alert_rule",
            "name",
            json!({"pattern": "^[a-z0-9_-]{1,64}$"}),
        ),
        Limit::property("AlertRule", "quantile", json!({"minimum": 0, "maximum": 1})),
        Limit::property(
            "AlertRule",
            "window_secs",
            json!({"minimum": 1, "maximum": 7 * 86_400}),
        ),
        Limit::property("AlertRule", "for_secs", json!({"maximum": 7 * 86_400})),
        Limit::property("AlertRules", "rules", json!({"maxItems": MAX_RULES})),
    ]
}
