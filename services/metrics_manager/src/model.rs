//! metrics_manager's API data shapes. Doc comments are spec text. Alert rules and their state are
//! also what `alerts.json` and `alert_state.json` hold.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

pub use aerekos_common::ErrorBody;

#[derive(Object, Debug, Clone)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// A value at a time (`t`: Unix milliseconds).
#[derive(Object, Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// One series of a query's answer: its labels (the metric's name is `__name__`, absent after an
/// aggregation) and its points, one per step where it has a value.
#[derive(Object, Debug, Clone)]
pub struct SeriesPoints {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<Point>,
}

/// Which samples answered: `raw` (every scrape), or `minute` (1-minute rollups: min, max, sum,
/// count and last of each minute). Raw answers ranges within raw retention at steps under a
/// minute; everything else is answered from rollups.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum Resolution {
    Raw,
    Minute,
}

#[derive(Object, Debug, Clone)]
pub struct QueryResult {
    pub resolution: Resolution,
    pub step_secs: u64,
    pub series: Vec<SeriesPoints>,
}

/// What each step's value is, over the window before it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum QueryFunction {
    /// The newest sample at or before the step (within 5 minutes).
    #[default]
    Value,
    /// A counter's per-second increase over the window; a drop counts as a restart from 0.
    Rate,
    /// A counter's increase over the window (not extrapolated to its edges).
    Increase,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
}

/// How series are combined, per group of `by` labels.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum QueryAggregation {
    Sum,
    Avg,
    Max,
    Min,
    Count,
}

#[derive(Object, Debug, Clone)]
pub struct MetricName {
    pub name: String,
    /// Series with this name in the store.
    pub series: u64,
}

#[derive(Object, Debug, Clone)]
pub struct MetricNames {
    pub names: Vec<MetricName>,
}

/// Samples of one series, pushed (for what has no `/metrics` to scrape: batch jobs, backfills).
#[derive(Object, Debug, Clone)]
pub struct PushSeries {
    /// The metric's name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub name: String,
    #[oai(default)]
    pub labels: BTreeMap<String, String>,
    /// In time order, each newer than the series' newest stored sample.
    pub samples: Vec<Point>,
}

#[derive(Object, Debug, Clone)]
pub struct PushRequest {
    pub series: Vec<PushSeries>,
}

#[derive(Object, Debug, Clone)]
pub struct PushResult {
    pub stored: u64,
    /// Samples not newer than their series' newest, skipped.
    pub out_of_order: u64,
    /// Samples of new series refused because the store holds `MAX_SERIES` already.
    pub series_refused: u64,
}

/// A scrape target and how its last scrape went.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct TargetStatus {
    pub url: String,
    pub labels: BTreeMap<String, String>,
    pub up: bool,
    pub last_scrape: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<f64>,
    /// Samples its last scrape stored.
    pub last_samples: u64,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Targets {
    pub interval_secs: u64,
    pub targets: Vec<TargetStatus>,
    /// Scrape rounds done, and those that took longer than the interval (falling behind).
    pub rounds_total: u64,
    pub rounds_late_total: u64,
    pub last_round_ms: Option<f64>,
}

#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct MetricsStats {
    pub head_series: u64,
    pub head_samples: u64,
    pub raw_sections: u64,
    /// Samples in the raw sections, and their files' bytes: `raw_bytes / raw_samples` is what a
    /// sample costs on disk (Gorilla chunks and the series directories).
    pub raw_samples: u64,
    pub raw_bytes: u64,
    pub rollup_sections: u64,
    /// The WAL's, the raw sections' and the rollups' bytes.
    pub disk_bytes: u64,
    pub samples_stored_total: u64,
    pub oldest_raw: Option<DateTime<Utc>>,
    pub oldest_rollup: Option<DateTime<Utc>>,
}

/// How an alert rule compares its query's value with its threshold.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

/// An alert rule: a query evaluated now, each of its series an alert while `value <op>
/// threshold` holds; it fires once that has held for `for_secs`, and resolves when it stops.
/// Firing and resolving are POSTed to `webhook_url` (else `ALERT_WEBHOOK_URL`).
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertRule {
    /// `[a-z0-9_-]`, 1–64 characters: the path's (a body may leave it out, or must agree).
    #[oai(default)]
    #[serde(default)]
    pub name: String,
    pub description: Option<String>,
    /// The metric's name.
    pub metric: String,
    /// Label matchers: `label=value`, `label!=value`, `label=~regex`, `label!~regex`.
    #[oai(default)]
    #[serde(default)]
    pub matchers: Vec<String>,
    #[oai(default)]
    #[serde(default)]
    pub function: QueryFunction,
    /// The function's window (default 5 minutes).
    pub window_secs: Option<u64>,
    pub aggregation: Option<QueryAggregation>,
    #[oai(default)]
    #[serde(default)]
    pub by: Vec<String>,
    /// Turns histogram buckets (`…_bucket`) into this quantile, 0–1.
    pub quantile: Option<f64>,
    pub op: Comparison,
    pub threshold: f64,
    #[oai(default)]
    #[serde(default)]
    pub for_secs: u64,
    /// An `http://` or `https://` URL.
    pub webhook_url: Option<String>,
}

#[derive(Object, Debug, Clone)]
pub struct AlertRules {
    pub rules: Vec<AlertRule>,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, for less than the rule's `for_secs` so far.
    Pending,
    Firing,
}

/// A series of a rule's query for which the condition holds.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct Alert {
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    /// Since when the condition has held.
    pub since: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    /// Whether the webhook took the firing notice (it is sent again until it does).
    pub notified: bool,
}

#[derive(Object, Debug, Clone)]
pub struct Alerts {
    pub alerts: Vec<Alert>,
}

/// What a webhook receives.
#[derive(Object, Debug, Clone, Serialize)]
pub struct AlertNotice {
    /// `firing` or `resolved`.
    pub status: String,
    pub rule: String,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub since: DateTime<Utc>,
    pub at: DateTime<Utc>,
}
