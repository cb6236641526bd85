//! Alert rules: each evaluated every `alert_interval` as a query at the present moment; each of
//! its series for which `value <op> threshold` holds is an alert, `pending` until it has held for
//! the rule's `for_secs`, then `firing`. Firing and resolving are POSTed to the rule's webhook
//! (else `ALERT_WEBHOOK_URL`); a notice the webhook did not take is sent again at the next
//! evaluation. Rules are kept in `alerts.json`, the alerts in `alert_state.json` (both written
//! whole), so a restart neither forgets a firing alert nor notifies it twice.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use chrono::{DateTime, Utc};

use super::{
    query::{self, Query, QueryError},
    series::{self, Matcher},
    tsdb::Tsdb,
};
use crate::model::{
    Alert, AlertNotice, AlertRule, AlertState, Comparison, QueryAggregation, QueryFunction,
};

const RULES_FILE: &str = "alerts.json";
const STATE_FILE: &str = "alert_state.json";
pub const MAX_RULES: usize = 200;
const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

pub struct Alerting {
    dir: PathBuf,
    db: Arc<Tsdb>,
    http: reqwest::Client,
    default_webhook: Option<String>,
    raw_retention_ms: i64,
    rules: Mutex<BTreeMap<String, AlertRule>>,
    /// By rule, then by the series' key.
    alerts: Mutex<BTreeMap<(String, String), Alert>>,
}

/// The rules a new store starts with (an operator may change or delete them).
fn default_rules() -> Vec<AlertRule> {
    let rule = |name: &str, description: &str, metric: &str| AlertRule {
        name: name.into(),
        description: Some(description.into()),
        metric: metric.into(),
        matchers: vec![],
        function: QueryFunction::Value,
        window_secs: None,
        aggregation: None,
        by: vec![],
        quantile: None,
        op: Comparison::Gt,
        threshold: 0.0,
        for_secs: 0,
        webhook_url: None,
    };
    vec![
        AlertRule {
            matchers: vec!["status=lost".into()],
            ..rule(
                "worker_lost",
                "Workers have stopped heartbeating.",
                "aerekos_workers",
            )
        },
        AlertRule {
            function: QueryFunction::Increase,
            window_secs: Some(600),
            threshold: 3.0,
            ..rule(
                "instance_restarting",
                "A worker restarted its instances more than 3 times in 10 minutes.",
                "aerekos_worker_instance_restarts_total",
            )
        },
        AlertRule {
            threshold: 90.0,
            for_secs: 60,
            ..rule(
                "disk_almost_full",
                "A worker's disk is over 90% full.",
                "aerekos_worker_disk_used_percent",
            )
        },
        AlertRule {
            matchers: vec!["status=~5..".into()],
            function: QueryFunction::Rate,
            aggregation: Some(QueryAggregation::Sum),
            by: vec!["job".into(), "service".into()],
            threshold: 1.0,
            for_secs: 60,
            ..rule(
                "http_5xx_rate",
                "A server answers more than one 5xx a second.",
                "aerekos_http_requests_total",
            )
        },
    ]
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    aerekos_common::secrets::write_secret_file(path, &bytes)
}

/// Checks a rule (its name comes from the path); the error says what to fix.
pub fn validate(rule: &AlertRule) -> ApiResult<()> {
    let bad = |code: &'static str, message: String| Err(ApiError::bad_request(code, message));
    if rule.name.is_empty()
        || rule.name.len() > 64
        || !rule
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return bad(
            "invalid_rule_name",
            format!(
                "rule name {:?} must be 1-64 of a-z, 0-9, _ and -",
                rule.name
            ),
        );
    }
    if !series::valid_metric_name(&rule.metric) {
        return bad(
            "invalid_metric",
            format!("metric {:?} is not a metric name", rule.metric),
        );
    }
    for m in &rule.matchers {
        Matcher::parse(m).map_err(|e| ApiError::bad_request("invalid_matcher", e))?;
    }
    if !rule.threshold.is_finite() {
        return bad(
            "invalid_threshold",
            "threshold must be a finite number".into(),
        );
    }
    if let Some(q) = rule.quantile
        && !(0.0..=1.0).contains(&q)
    {
        return bad(
            "invalid_quantile",
            "quantile must be between 0 and 1".into(),
        );
    }
    if rule.window_secs.is_some_and(|w| w == 0 || w > 7 * 86_400) {
        return bad("invalid_window", "window_secs must be 1 to 604800".into());
    }
    if rule.for_secs > 7 * 86_400 {
        return bad("invalid_for", "for_secs must be at most 604800".into());
    }
    if let Some(url) = &rule.webhook_url {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return bad(
                    "invalid_webhook_url",
                    format!("webhook_url {url:?} is not an http:// or https:// URL"),
                );
            }
        }
    }
    Ok(())
}

fn holds(op: Comparison, value: f64, threshold: f64) -> bool {
    match op {
        Comparison::Gt => value > threshold,
        Comparison::Ge => value >= threshold,
        Comparison::Lt => value < threshold,
        Comparison::Le => value <= threshold,
        Comparison::Eq => value == threshold,
        Comparison::Ne => value != threshold,
    }
}

impl Alerting {
    pub fn open(
        dir: &Path,
        db: Arc<Tsdb>,
        default_webhook: Option<String>,
        raw_retention_ms: i64,
    ) -> std::io::Result<Alerting> {
        let rules: Vec<AlertRule> = match read_json(&dir.join(RULES_FILE))? {
            Some(rules) => rules,
            None => {
                let rules = default_rules();
                write_json(&dir.join(RULES_FILE), &rules)?;
                rules
            }
        };
        let mut alerts: Vec<Alert> = read_json(&dir.join(STATE_FILE))?.unwrap_or_default();
        // Alerts of a rule deleted just before a crash go with it.
        alerts.retain(|a| rules.iter().any(|r| r.name == a.rule));
        let http = aerekos_sdk::tls::Trust::from_env()
            .apply(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10)),
            )
            .build()
            .expect("building the webhook client");
        Ok(Alerting {
            dir: dir.to_owned(),
            db,
            http,
            default_webhook,
            raw_retention_ms,
            rules: Mutex::new(rules.into_iter().map(|r| (r.name.clone(), r)).collect()),
            alerts: Mutex::new(
                alerts
                    .into_iter()
                    .map(|a| ((a.rule.clone(), series::key(&a.labels)), a))
                    .collect(),
            ),
        })
    }

    pub fn rules(&self) -> Vec<AlertRule> {
        self.rules
            .lock()
            .expect("rules lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .expect("alerts lock")
            .values()
            .cloned()
            .collect()
    }

    /// Creates or replaces a rule; written to disk before it is answered.
    pub fn put_rule(&self, rule: AlertRule) -> ApiResult<AlertRule> {
        validate(&rule)?;
        let mut rules = self.rules.lock().expect("rules lock");
        if !rules.contains_key(&rule.name) && rules.len() >= MAX_RULES {
            return Err(ApiError::conflict(
                "too_many_rules",
                format!("there are {MAX_RULES} rules already: delete one first"),
            ));
        }
        let mut next = rules.clone();
        next.insert(rule.name.clone(), rule.clone());
        // The rule's alerts start over under its new terms.
        self.replace_rules(&mut rules, next, &rule.name)?;
        Ok(rule)
    }

    pub fn delete_rule(&self, name: &str) -> ApiResult<()> {
        let mut rules = self.rules.lock().expect("rules lock");
        if !rules.contains_key(name) {
            return Err(ApiError::not_found(
                "rule_not_found",
                format!("no alert rule {name:?}"),
            ));
        }
        let mut next = rules.clone();
        next.remove(name);
        self.replace_rules(&mut rules, next, name)
    }

    /// Writes `next` to disk, then makes it the rules (held in `rules`, the rules' lock) and
    /// drops the alerts of rule `changed`.
    fn replace_rules(
        &self,
        rules: &mut BTreeMap<String, AlertRule>,
        next: BTreeMap<String, AlertRule>,
        changed: &str,
    ) -> ApiResult<()> {
        write_json(
            &self.dir.join(RULES_FILE),
            &next.values().collect::<Vec<_>>(),
        )
        .map_err(ApiError::internal)?;
        *rules = next;
        self.alerts
            .lock()
            .expect("alerts lock")
            .retain(|(r, _), _| r != changed);
        Ok(())
    }

    /// The rule's query, evaluated at `now`: each series' value.
    fn values(&self, rule: &AlertRule, now: i64) -> Result<Vec<(series::Labels, f64)>, QueryError> {
        let mut matchers = vec![Matcher::name(&rule.metric)];
        for m in &rule.matchers {
            matchers
                .push(Matcher::parse(m).map_err(|e| QueryError::Invalid("invalid_matcher", e))?);
        }
        let q = Query {
            matchers,
            start: now,
            end: now,
            step: 1000,
            window: Some(
                rule.window_secs
                    .map_or(DEFAULT_WINDOW, Duration::from_secs)
                    .as_millis() as i64,
            ),
            function: rule.function,
            aggregation: rule.aggregation,
            by: rule.by.clone(),
            quantile: rule.quantile,
        };
        let answer = query::evaluate(&self.db, &q, now - self.raw_retention_ms)?;
        Ok(answer
            .series
            .into_iter()
            .filter_map(|(labels, points)| points.last().map(|p| (labels, p.1)))
            .collect())
    }

    /// Evaluates every rule and sends what changed. Blocking work (queries) runs off the async
    /// threads.
    pub async fn evaluate(self: &Arc<Self>) {
        let now = Utc::now();
        let this = self.clone();
        let evaluated = tokio::task::spawn_blocking(move || {
            this.rules()
                .into_iter()
                .map(|rule| {
                    let values = this.values(&rule, now.timestamp_millis());
                    (rule, values)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(evaluated) = evaluated else { return };
        let mut notices: Vec<(Option<String>, AlertNotice, Option<(String, String)>)> = Vec::new();
        {
            // Rules, then alerts: the order put_rule and delete_rule take them in.
            let current = self.rules.lock().expect("rules lock");
            let mut alerts = self.alerts.lock().expect("alerts lock");
            for (rule, values) in evaluated {
                // Deleted or replaced while its query ran: its alerts are not brought back.
                if current
                    .get(&rule.name)
                    .map(|r| serde_json::to_value(r).ok())
                    != Some(serde_json::to_value(&rule).ok())
                {
                    continue;
                }
                let values = match values {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = ?e, "an alert rule's query failed");
                        continue;
                    }
                };
                let webhook = rule
                    .webhook_url
                    .clone()
                    .or_else(|| self.default_webhook.clone());
                let mut holding = std::collections::HashSet::new();
                for (labels, value) in values {
                    if !holds(rule.op, value, rule.threshold) {
                        continue;
                    }
                    let id = (rule.name.clone(), series::key(&labels));
                    holding.insert(id.1.clone());
                    let alert = alerts.entry(id.clone()).or_insert_with(|| Alert {
                        rule: rule.name.clone(),
                        labels: labels.clone(),
                        state: AlertState::Pending,
                        value,
                        since: now,
                        fired_at: None,
                        notified: false,
                    });
                    alert.value = value;
                    if alert.state == AlertState::Pending
                        && (now - alert.since).num_seconds() >= rule.for_secs as i64
                    {
                        alert.state = AlertState::Firing;
                        alert.fired_at = Some(now);
                        tracing::warn!(rule = %rule.name, labels = %id.1, value, "alert firing");
                    }
                    if alert.state == AlertState::Firing && !alert.notified {
                        notices.push((
                            webhook.clone(),
                            notice("firing", &rule, alert, now),
                            Some(id),
                        ));
                    }
                }
                let gone: Vec<(String, String)> = alerts
                    .keys()
                    .filter(|(r, k)| *r == rule.name && !holding.contains(k))
                    .cloned()
                    .collect();
                for id in gone {
                    let alert = alerts.remove(&id).expect("present");
                    if alert.state == AlertState::Firing {
                        tracing::info!(rule = %rule.name, labels = %id.1, "alert resolved");
                        notices.push((
                            webhook.clone(),
                            notice("resolved", &rule, &alert, now),
                            None,
                        ));
                    }
                }
            }
        }
        // All at once: one dead webhook does not hold up the others' notices.
        let sends = notices.into_iter().filter_map(|(webhook, notice, id)| {
            let url = webhook?;
            let http = self.http.clone();
            Some(async move {
                let sent = http.post(&url).json(&notice).send().await;
                let ok = matches!(&sent, Ok(r) if r.status().is_success());
                if !ok {
                    // A firing notice is sent again next time; a resolved one is given up on.
                    tracing::warn!(rule = %notice.rule, url = %url, status = %notice.status, "an alert webhook did not take its notice");
                }
                (ok, id)
            })
        });
        for (ok, id) in futures_util::future::join_all(sends).await {
            if ok
                && let Some(id) = id
                && let Some(alert) = self.alerts.lock().expect("alerts lock").get_mut(&id)
            {
                alert.notified = true;
            }
        }
        let snapshot = self.alerts();
        let path = self.dir.join(STATE_FILE);
        let saved = tokio::task::spawn_blocking(move || write_json(&path, &snapshot)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!("writing the alerts' state failed");
        }
    }
}

fn notice(status: &str, rule: &AlertRule, alert: &Alert, now: DateTime<Utc>) -> AlertNotice {
    AlertNotice {
        status: status.into(),
        rule: rule.name.clone(),
        description: rule.description.clone(),
        labels: alert.labels.clone(),
        value: alert.value,
        since: alert.since,
        at: now,
    }
}
