//! A small Prometheus text-format registry: HTTP request counts and latency by operation id.
//! Servers append their own gauges at scrape time with [`write_gauge`].

use std::{collections::HashMap, fmt::Write as _, sync::Mutex, time::Duration};

const LATENCY_BUCKETS_SECS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum_secs: f64,
    buckets: [u64; LATENCY_BUCKETS_SECS.len()],
}

#[derive(Default)]
pub struct Metrics {
    // (operation id, status) → series. One lock per request is cheap next to the request itself.
    http: Mutex<HashMap<(&'static str, u16), Series>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe_http(&self, operation: &'static str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut http = self.http.lock().expect("metrics lock");
        let series = http.entry((operation, status)).or_default();
        series.count += 1;
        series.sum_secs += secs;
        for (bucket, bound) in series.buckets.iter_mut().zip(LATENCY_BUCKETS_SECS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
    }

    /// The HTTP series in Prometheus text format.
    pub fn render_http(&self, out: &mut String) {
        let http = self.http.lock().expect("metrics lock");
        let mut keys: Vec<_> = http.keys().copied().collect();
        keys.sort();
        out.push_str(
            "# HELP aerekos_http_requests_total HTTP requests served, by operation and status.\n",
        );
        out.push_str("# TYPE aerekos_http_requests_total counter\n");
        for key in &keys {
            let s = &http[key];
            let _ = writeln!(
                out,
                "aerekos_http_requests_total{{operation=\"{}\",status=\"{}\"}} {}",
                key.0, key.1, s.count
            );
        }
        out.push_str(
            "# HELP aerekos_http_request_duration_seconds HTTP request latency, by operation.\n",
        );
        out.push_str("# TYPE aerekos_http_request_duration_seconds histogram\n");
        let mut by_op: HashMap<&'static str, Series> = HashMap::new();
        for key in &keys {
            let s = &http[key];
            let agg = by_op.entry(key.0).or_default();
            agg.count += s.count;
            agg.sum_secs += s.sum_secs;
            for (a, b) in agg.buckets.iter_mut().zip(s.buckets) {
                *a += b;
            }
        }
        let mut ops: Vec<_> = by_op.into_iter().collect();
        ops.sort_by_key(|(op, _)| *op);
        for (op, s) in ops {
            for (bound, count) in LATENCY_BUCKETS_SECS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "aerekos_http_request_duration_seconds_bucket{{operation=\"{op}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "aerekos_http_request_duration_seconds_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "aerekos_http_request_duration_seconds_sum{{operation=\"{op}\"}} {}",
                s.sum_secs
            );
            let _ = writeln!(
                out,
                "aerekos_http_request_duration_seconds_count{{operation=\"{op}\"}} {}",
                s.count
            );
        }
    }
}

/// Appends one counter without labels (`name` ends in `_total`).
pub fn write_counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// Appends one gauge family with its samples (`labels` is the inside of `{…}`, may be empty).
pub fn write_gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
