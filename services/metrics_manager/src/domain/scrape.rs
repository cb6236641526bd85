//! Scraping: the targets come from the conductor's registry (`list_metrics_targets`, refreshed
//! every `targets_refresh`) plus the conductor itself; every target is scraped each interval, at
//! most `concurrency` at once, each scrape timing out at the interval. Every scrape also stores
//! `up` (1 or 0) and `scrape_duration_seconds` with the target's labels. A target answering 404
//! has no metrics and is left alone for a while (not counted as down).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::{
    series::{self, Labels},
    tsdb::Tsdb,
};
use crate::model::{TargetStatus, Targets};

/// A scrape's body past this is refused (a target gone wrong, not metrics).
const MAX_SCRAPE_BYTES: usize = 32 << 20;
/// How far a scraped sample's own timestamp may be from the scrape's.
const OWN_TIMESTAMP_PAST_MS: i64 = 3_600_000;
const OWN_TIMESTAMP_AHEAD_MS: i64 = 600_000;
/// How long a target without `/metrics` (404) is left alone.
const NO_METRICS_PAUSE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, Default)]
struct Status {
    up: bool,
    last_scrape: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_duration_ms: Option<f64>,
    last_samples: u64,
    skip_until: Option<Instant>,
}

/// What the appender thread is asked to do.
enum Append {
    Samples(Vec<(String, i64, f64)>),
    /// Flush the WAL to disk (after a round's samples).
    Sync,
}

/// One thread stores every scrape's samples, in the order they come: scrapes never wait on the
/// store's lock (a cut holds it while it writes), and one thread's allocations are not spread
/// over a malloc arena per blocking-pool thread.
fn start_appender(db: Arc<Tsdb>) -> tokio::sync::mpsc::Sender<Append> {
    // About two rounds of 500 targets: past it, scrapes wait (the store is behind).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Append>(1024);
    std::thread::Builder::new()
        .name("metrics-appender".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                match job {
                    Append::Samples(samples) => {
                        if let Err(e) = db.append(samples, false) {
                            tracing::error!(error = %e, "storing scraped samples failed");
                        }
                    }
                    Append::Sync => {
                        if let Err(e) = db.sync() {
                            tracing::error!(error = %e, "syncing the metrics WAL failed");
                        }
                    }
                }
            }
        })
        .expect("starting the appender thread");
    tx
}

pub struct Scraper {
    appender: tokio::sync::mpsc::Sender<Append>,
    conductor: aerekos_sdk::Conductor,
    conductor_url: String,
    http: reqwest::Client,
    interval: Duration,
    concurrency: usize,
    refresh: Duration,
    /// Scraped besides the registry's (`STATIC_TARGETS`).
    static_targets: Vec<String>,
    targets: Mutex<Vec<Target>>,
    status: Mutex<HashMap<String, Status>>,
    pub rounds: AtomicU64,
    pub rounds_late: AtomicU64,
    last_round_us: AtomicU64,
}

impl Scraper {
    pub fn new(
        db: Arc<Tsdb>,
        conductor_url: &str,
        service_token: Option<&str>,
        interval: Duration,
        concurrency: usize,
        refresh: Duration,
        static_targets: Vec<String>,
    ) -> Scraper {
        let conductor = match service_token {
            Some(token) => aerekos_sdk::Conductor::with_token(conductor_url, token),
            None => aerekos_sdk::Conductor::new(conductor_url),
        };
        let http = aerekos_sdk::tls::Trust::from_env()
            .apply(
                reqwest::Client::builder()
                    .connect_timeout(interval.min(Duration::from_secs(5)))
                    .timeout(interval),
            )
            .build()
            .expect("building the scrape client");
        Scraper {
            appender: start_appender(db),
            conductor,
            conductor_url: conductor_url.trim_end_matches('/').to_owned(),
            http,
            interval,
            concurrency,
            refresh,
            static_targets,
            targets: Mutex::new(Vec::new()),
            status: Mutex::new(HashMap::new()),
            rounds: AtomicU64::new(0),
            rounds_late: AtomicU64::new(0),
            last_round_us: AtomicU64::new(0),
        }
    }

    /// Scrapes for ever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut refreshed: Option<Instant> = None;
        loop {
            tick.tick().await;
            if refreshed.is_none_or(|at| at.elapsed() >= self.refresh)
                && self.refresh_targets().await
            {
                refreshed = Some(Instant::now());
            }
            self.round().await;
        }
    }

    /// Asks the conductor for the targets; the previous list stays when it cannot answer.
    async fn refresh_targets(&self) -> bool {
        let mut targets = vec![Target {
            url: format!("{}/metrics", self.conductor_url),
            labels: [("job".to_owned(), "conductor".to_owned())].into(),
        }];
        targets.extend(self.static_targets.iter().map(|url| {
            Target {
                url: url.clone(),
                labels: [
                    ("job".to_owned(), "static".to_owned()),
                    ("target".to_owned(), url.clone()),
                ]
                .into(),
            }
        }));
        match self.conductor.list_metrics_targets().send().await {
            Ok(answer) => {
                targets.extend(answer.into_inner().targets.into_iter().map(|t| Target {
                    url: t.url,
                    labels: t.labels.into_iter().collect(),
                }));
            }
            Err(e) => {
                tracing::warn!(error = %aerekos_sdk::SdkError::from(e), "the conductor did not list the scrape targets");
                // The previous list stays; at the start there is the conductor (and the static
                // targets) alone.
                let mut known = self.targets.lock().expect("targets lock");
                if known.is_empty() {
                    *known = targets;
                }
                return false;
            }
        }
        let urls: std::collections::HashSet<&str> =
            targets.iter().map(|t| t.url.as_str()).collect();
        self.status
            .lock()
            .expect("status lock")
            .retain(|url, _| urls.contains(url.as_str()));
        *self.targets.lock().expect("targets lock") = targets;
        true
    }

    /// Scrapes every target once.
    pub async fn round(&self) {
        let started = Instant::now();
        let targets = self.targets.lock().expect("targets lock").clone();
        futures_util::stream::iter(targets)
            .map(|t| self.scrape(t))
            .buffer_unordered(self.concurrency)
            .collect::<Vec<()>>()
            .await;
        // The round's samples go to disk once the appender has stored them; the round does not
        // wait for that (a cut may hold the store meanwhile), but a store that falls behind fills
        // the channel and makes scrapes wait, so the round is late.
        let _ = self.appender.send(Append::Sync).await;
        let took = started.elapsed();
        self.last_round_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.rounds.fetch_add(1, Ordering::Relaxed);
        if took > self.interval {
            self.rounds_late.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn scrape(&self, target: Target) {
        if let Some(until) = self
            .status
            .lock()
            .expect("status lock")
            .get(&target.url)
            .and_then(|s| s.skip_until)
            && Instant::now() < until
        {
            return;
        }
        let started = Instant::now();
        let at = Utc::now();
        let t = at.timestamp_millis();
        let fetched = self.fetch(&target.url).await;
        let elapsed = started.elapsed();
        let mut status = Status {
            last_scrape: Some(at),
            last_duration_ms: Some(elapsed.as_secs_f64() * 1000.0),
            ..Status::default()
        };
        let mut samples: Vec<(String, i64, f64)> = Vec::new();
        let up = match fetched {
            Ok(Some(text)) => {
                let (parsed, bad) = series::parse_exposition(&text, &target.labels);
                if bad > 0 {
                    status.last_error = Some(format!("{bad} lines were not in the text format"));
                }
                // A sample's own timestamp is taken only near the scrape's: one far ahead would
                // make its series refuse every later sample, one far back has no place.
                let taken = t - OWN_TIMESTAMP_PAST_MS..=t + OWN_TIMESTAMP_AHEAD_MS;
                let mut skewed = 0;
                for (labels, v, ts) in parsed {
                    match ts {
                        Some(ts) if !taken.contains(&ts) => skewed += 1,
                        ts => samples.push((series::key(&labels), ts.unwrap_or(t), v)),
                    }
                }
                if skewed > 0 {
                    status.last_error = Some(format!(
                        "{skewed} samples had timestamps over an hour before or 10 minutes after the scrape: skipped"
                    ));
                }
                true
            }
            Ok(None) => {
                status.last_error = Some("no metrics here (404); asking again later".into());
                status.skip_until = Some(Instant::now() + NO_METRICS_PAUSE);
                self.set_status(&target.url, status);
                return;
            }
            Err(e) => {
                status.last_error = Some(e);
                false
            }
        };
        status.up = up;
        status.last_samples = samples.len() as u64;
        for (name, v) in [
            ("up", if up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", elapsed.as_secs_f64()),
        ] {
            let mut labels = target.labels.clone();
            labels.insert(series::NAME.into(), name.into());
            samples.push((series::key(&labels), t, v));
        }
        if self.appender.send(Append::Samples(samples)).await.is_err() {
            status.last_error = Some("the store's appender has stopped".into());
        }
        self.set_status(&target.url, status);
    }

    fn set_status(&self, url: &str, status: Status) {
        self.status
            .lock()
            .expect("status lock")
            .insert(url.to_owned(), status);
    }

    /// The body of a 200; `None` for a 404; the reason otherwise.
    async fn fetch(&self, url: &str) -> Result<Option<String>, String> {
        let response = self
            .http
            .get(url)
            .header("accept", "text/plain;version=0.0.4")
            .send()
            .await
            .map_err(|e| aerekos_sdk::error_chain(&e))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(format!("answered {status}")),
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_SCRAPE_BYTES)
        {
            return Err(format!("over {MAX_SCRAPE_BYTES} bytes"));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| aerekos_sdk::error_chain(&e))?;
        if body.len() > MAX_SCRAPE_BYTES {
            return Err(format!("over {MAX_SCRAPE_BYTES} bytes"));
        }
        String::from_utf8(body.to_vec())
            .map(Some)
            .map_err(|_| "the body is not UTF-8".into())
    }

    pub fn snapshot(&self) -> Targets {
        let targets = self.targets.lock().expect("targets lock").clone();
        let status = self.status.lock().expect("status lock");
        let last_round = self.last_round_us.load(Ordering::Relaxed);
        Targets {
            interval_secs: self.interval.as_secs(),
            targets: targets
                .into_iter()
                .map(|t| {
                    let s = status.get(&t.url).cloned().unwrap_or_default();
                    TargetStatus {
                        url: t.url,
                        labels: t.labels,
                        up: s.up,
                        last_scrape: s.last_scrape,
                        last_error: s.last_error,
                        last_duration_ms: s.last_duration_ms,
                        last_samples: s.last_samples,
                    }
                })
                .collect(),
            rounds_total: self.rounds.load(Ordering::Relaxed),
            rounds_late_total: self.rounds_late.load(Ordering::Relaxed),
            last_round_ms: (last_round > 0).then(|| last_round as f64 / 1000.0),
        }
    }
}
