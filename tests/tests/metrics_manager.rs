//! metrics_manager end to end: a real `aerekos up` platform with a second worker process, its
//! targets found in the registry and scraped, a counter's rate against the load the test made, and
//! the history kept across a SIGKILL of metrics_manager; a metrics_manager process of its own
//! answering a 7-day query from rollups once the raw samples are gone (and after a SIGKILL); alert
//! rules firing and resolving to a local HTTP receiver that refuses its first notice.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_sdk::{
    Conductor, MetricsManager,
    metrics_manager::types::{
        AlertRule, AlertState, Comparison, Point, PushRequest, PushSeries, QueryAggregation,
        QueryFunction, QueryResult, Resolution,
    },
};
use aerekos_tests::*;
use chrono::{DateTime, Utc};

fn labels(r: &QueryResult, i: usize) -> &HashMap<String, String> {
    &r.series[i].labels
}

#[tokio::test]
async fn the_registry_is_scraped_and_a_counters_rate_and_increase_match_the_load_across_a_kill() {
    let dir = WorkerDir::new();
    let ports = instance_port_block();
    let platform = up_with(dir.path(), &ports, &[("WORKER_API_PORT", "0")]);
    let admin = Conductor::login(&platform.url, "admin", PASSWORD)
        .await
        .unwrap();
    let second = join_worker_with(
        &admin,
        &platform.url,
        "metrics-second",
        &[("WORKER_API_PORT", "0")],
    )
    .await;
    let metrics = MetricsManager::with_token(&platform.url, admin.token().unwrap());

    // Every target comes from the registry: the conductor, both workers, every service instance.
    let builtins: BTreeSet<&str> = [
        "key_manager",
        "storage_manager",
        "secrets_manager",
        "logs_manager",
        "metrics_manager",
    ]
    .into();
    eventually(
        180,
        "the conductor, both workers and every service scraped",
        || async {
            let t = metrics
                .list_scrape_targets()
                .send()
                .await
                .ok()?
                .into_inner();
            let up = |job: &str| {
                t.targets
                    .iter()
                    .filter(|t| t.up && t.labels.get("job").map(String::as_str) == Some(job))
                    .collect::<Vec<_>>()
            };
            let workers: BTreeSet<String> = up("worker")
                .iter()
                .filter_map(|t| t.labels.get("worker").cloned())
                .collect();
            let services: BTreeSet<&str> = up("service")
                .iter()
                .filter_map(|t| t.labels.get("service").map(String::as_str))
                .collect();
            (up("conductor").len() == 1
                && workers.contains(&second.id.to_string())
                && workers.len() == 2
                && builtins.iter().all(|b| services.contains(b)))
            .then_some(())
        },
    )
    .await;

    // Each worker's resources are there, labelled with the worker.
    let memory = eventually(60, "both workers' memory", || async {
        let r = metrics
            .query_metrics()
            .name("aerekos_worker_memory_available_bytes")
            .start(Utc::now() - chrono::Duration::minutes(5))
            .send()
            .await
            .ok()?
            .into_inner();
        (r.series.len() == 2).then_some(r)
    })
    .await;
    let ids: BTreeSet<&str> = (0..2)
        .map(|i| labels(&memory, i)["worker"].as_str())
        .collect();
    assert!(ids.contains(second.id.to_string().as_str()), "{ids:?}");
    assert!(
        memory
            .series
            .iter()
            .all(|s| s.points.iter().all(|p| p.v > 0.0))
    );

    // The load: one call, scraped, as the baseline; then 300 more at 10 a second.
    let calls = |_| async {
        admin.list_services().send().await.unwrap();
    };
    calls(0).await;
    let selector = || {
        vec![
            "job=conductor".to_owned(),
            "operation=list_services".to_owned(),
        ]
    };
    eventually(60, "the baseline call is scraped", || async {
        let r = metrics
            .query_metrics()
            .name("aerekos_http_requests_total")
            .match_(selector())
            .start(Utc::now() - chrono::Duration::minutes(1))
            .send()
            .await
            .ok()?
            .into_inner();
        (!r.series.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let load_start = Utc::now();
    for i in 0..300u32 {
        let due = load_start + chrono::Duration::milliseconds(i64::from(i) * 100);
        if let Ok(wait) = (due - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        calls(i).await;
    }
    let load_end = Utc::now();
    let load_secs = (load_end - load_start).num_milliseconds() as f64 / 1000.0;
    let actual_rate = 300.0 / load_secs;
    // Two scrapes (10 s apart) after the load.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let at = Utc::now();
    let window = (at - load_start).num_seconds() as u64 + 15;

    let increase = |at: DateTime<Utc>| {
        let metrics = metrics.clone();
        async move {
            metrics
                .query_metrics()
                .name("aerekos_http_requests_total")
                .match_(selector())
                .function(QueryFunction::Increase)
                .aggregation(QueryAggregation::Sum)
                .window_secs(window)
                .start(at)
                .end(at)
                .step_secs(1u64)
                .send()
                .await
                .map(|r| r.into_inner())
        }
    };
    let answer = increase(at).await.unwrap();
    assert_eq!(answer.resolution, Resolution::Raw);
    assert_eq!(answer.series.len(), 1, "{answer:?}");
    assert_eq!(answer.series[0].points[0].v, 300.0, "{answer:?}");

    // The rate in the middle of the load, over 20 s, is the load's.
    let mid = load_start + chrono::Duration::milliseconds((load_secs * 600.0) as i64);
    let rate = metrics
        .query_metrics()
        .name("aerekos_http_requests_total")
        .match_(selector())
        .function(QueryFunction::Rate)
        .aggregation(QueryAggregation::Sum)
        .window_secs(20u64)
        .start(mid)
        .end(mid)
        .step_secs(1u64)
        .send()
        .await
        .unwrap()
        .into_inner();
    let measured = rate.series[0].points[0].v;
    let scraped = metrics
        .query_metrics()
        .name("aerekos_http_requests_total")
        .match_(selector())
        .aggregation(QueryAggregation::Sum)
        .start(load_start - chrono::Duration::seconds(20))
        .end(load_end)
        .step_secs(1u64)
        .send()
        .await
        .unwrap()
        .into_inner();
    let mut seen: Vec<(i64, f64)> = scraped.series[0]
        .points
        .iter()
        .map(|p| (p.t - load_start.timestamp_millis(), p.v))
        .collect();
    seen.dedup_by_key(|p| p.1);
    assert!(
        (measured - actual_rate).abs() / actual_rate < 0.25,
        "rate {measured} at {} ms against the load's {actual_rate}; the counter by ms from the load's start: {seen:?}",
        mid.timestamp_millis() - load_start.timestamp_millis()
    );

    // metrics_manager killed outright: its worker starts it again, and the history is whole.
    // Placement may have put it on either worker.
    let workers = [platform.worker_dir.as_path(), second.data_dir()];
    let pid = instance_pid(&admin, &workers, "metrics_manager").await;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = eventually(120, "metrics_manager answers again", || async {
        increase(at).await.ok()
    })
    .await;
    assert_eq!(again.series[0].points[0].v, 300.0, "{again:?}");
    // And it scrapes again.
    eventually(60, "scraping resumes", || async {
        let t = metrics
            .list_scrape_targets()
            .send()
            .await
            .ok()?
            .into_inner();
        (t.rounds_total > 0 && t.targets.iter().any(|t| t.up)).then_some(())
    })
    .await;
    drop(second);
}

/// The hour of the day of `t` (ms): the value the backfill stores at every minute of that hour.
fn hour_of(t: i64) -> f64 {
    ((t / 3_600_000) % 24) as f64
}

#[tokio::test]
async fn a_seven_day_query_is_answered_from_rollups_after_raw_retention_and_a_kill() {
    let conductor = TestConductor::start().await;
    let mut service = TestService::start_with(
        &METRICS_MANAGER,
        &conductor,
        "",
        None,
        &[("BLOCK_SECS", "60"), ("SCRAPE_INTERVAL_SECS", "5")],
    )
    .await;
    let admin = conductor.admin().await;
    let metrics = MetricsManager::with_token(&service.url, admin.token().unwrap());

    // Seven days of one sample a minute, ending two days ago (past the one day of raw retention).
    let minute = 60_000i64;
    let end = (Utc::now().timestamp_millis() - 2 * 86_400_000) / 3_600_000 * 3_600_000;
    let start = end - 7 * 86_400_000;
    let samples: Vec<Point> = (0..7 * 1440)
        .map(|i| {
            let t = start + i * minute;
            Point { t, v: hour_of(t) }
        })
        .collect();
    let pushed = metrics
        .push_samples()
        .body(PushRequest {
            series: vec![PushSeries {
                name: "backfill_temperature".into(),
                labels: [("site".to_owned(), "north".to_owned())].into(),
                samples: samples.clone(),
            }],
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pushed.stored, 7 * 1440);
    // Sent again: every sample is a repeat.
    let again = metrics
        .push_samples()
        .body(PushRequest {
            series: vec![PushSeries {
                name: "backfill_temperature".into(),
                labels: [("site".to_owned(), "north".to_owned())].into(),
                samples: samples[..10].to_vec(),
            }],
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.stored, again.out_of_order), (0, 10));

    // Cut into a raw section, rolled up, and the raw section removed by retention.
    let stats = eventually(150, "the raw samples are rolled up and removed", || async {
        let s = metrics.metrics_stats().send().await.ok()?.into_inner();
        let old_raw = s.oldest_raw.is_some_and(|t| t.timestamp_millis() <= end);
        (s.rollup_sections > 0 && !old_raw).then_some(s)
    })
    .await;
    assert!(
        stats.oldest_rollup.unwrap().timestamp_millis() <= start,
        "{stats:?}"
    );

    let seven_days = || {
        let metrics = metrics.clone();
        async move {
            metrics
                .query_metrics()
                .name("backfill_temperature")
                .match_(vec!["site=north".to_owned()])
                .function(QueryFunction::AvgOverTime)
                .window_secs(3600u64)
                .start(DateTime::from_timestamp_millis(start + 3_600_000).unwrap())
                .end(DateTime::from_timestamp_millis(end).unwrap())
                .step_secs(3600u64)
                .send()
                .await
                .map(|r| r.into_inner())
        }
    };
    let check = |r: &QueryResult| {
        assert_eq!(r.resolution, Resolution::Minute);
        assert_eq!(r.series.len(), 1);
        let points = &r.series[0].points;
        assert_eq!(points.len(), 7 * 24, "one point an hour");
        for p in points {
            // The hour before each step holds the previous hour's 60 samples.
            assert_eq!(p.v, hour_of(p.t - 1), "at {}", p.t);
        }
    };
    let before = seven_days().await.unwrap();
    check(&before);
    // The maximum over the whole week: 23.
    let max = metrics
        .query_metrics()
        .name("backfill_temperature")
        .function(QueryFunction::MaxOverTime)
        .window_secs(7 * 86_400u64)
        .start(DateTime::from_timestamp_millis(end).unwrap())
        .end(DateTime::from_timestamp_millis(end).unwrap())
        .step_secs(60u64)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(max.series[0].points[0].v, 23.0);

    // Killed outright and started again: the same answer.
    service.kill();
    service.start_again().await;
    let after = eventually(30, "the query after the restart", || async {
        seven_days().await.ok()
    })
    .await;
    check(&after);
    assert_eq!(
        serde_json::to_value(&before.series).unwrap(),
        serde_json::to_value(&after.series).unwrap()
    );

    // Bad input is refused with what to fix.
    let refused = |r: Result<_, aerekos_sdk::ClientError<aerekos_sdk::ErrorBody>>| match r {
        Err(aerekos_sdk::ClientError::ErrorResponse(e)) => (e.status().as_u16(), e.code.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let push = |name: &str, t: i64| {
        metrics.push_samples().body(PushRequest {
            series: vec![PushSeries {
                name: name.into(),
                labels: Default::default(),
                samples: vec![Point { t, v: 1.0 }],
            }],
        })
    };
    let now = Utc::now().timestamp_millis();
    assert_eq!(
        refused(push("bad name", now).send().await.map(|_| ())),
        (400, "invalid_series".into())
    );
    assert_eq!(
        refused(
            push("ancient", now - 40 * 86_400_000)
                .send()
                .await
                .map(|_| ())
        ),
        (400, "sample_out_of_range".into())
    );
    assert_eq!(
        refused(
            metrics
                .query_metrics()
                .name("backfill_temperature")
                .match_(vec!["site=~(".to_owned()])
                .send()
                .await
                .map(|_| ())
        ),
        (400, "invalid_matcher".into())
    );
    assert_eq!(
        refused(
            metrics
                .query_metrics()
                .name("backfill_temperature")
                .start(DateTime::from_timestamp_millis(start).unwrap())
                .step_secs(1u64)
                .send()
                .await
                .map(|_| ())
        ),
        (400, "too_many_points".into())
    );
    // A viewer reads but does not push.
    let viewer = conductor.viewer().await;
    let as_viewer = MetricsManager::with_token(&service.url, viewer.token().unwrap());
    assert!(as_viewer.list_metric_names().send().await.is_ok());
    let pushed = as_viewer
        .push_samples()
        .body(PushRequest {
            series: vec![PushSeries {
                name: "x".into(),
                labels: Default::default(),
                samples: vec![Point { t: now, v: 1.0 }],
            }],
        })
        .send()
        .await;
    assert_eq!(refused(pushed.map(|_| ())).0, 403);
}

/// A webhook receiver on 127.0.0.1:0 that refuses its first notice (500) and keeps the rest.
async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>, Arc<Mutex<u32>>) {
    use poem::{EndpointExt as _, handler, http::StatusCode, post, web::Json};
    let received = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0u32));
    #[handler]
    fn take(
        body: Json<serde_json::Value>,
        received: poem::web::Data<&Arc<Mutex<Vec<serde_json::Value>>>>,
        attempts: poem::web::Data<&Arc<Mutex<u32>>>,
    ) -> StatusCode {
        let mut n = attempts.lock().unwrap();
        *n += 1;
        if *n == 1 {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        received.lock().unwrap().push(body.0);
        StatusCode::OK
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = poem::Route::new()
        .at("/hook", post(take))
        .data(received.clone())
        .data(attempts.clone());
    tokio::spawn(async move {
        poem::Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
            .run(app)
            .await
    });
    (format!("http://{addr}/hook"), received, attempts)
}

#[tokio::test]
async fn an_alert_fires_to_a_webhook_once_delivered_and_resolves() {
    let conductor = TestConductor::start().await;
    let service = TestService::start_with(
        &METRICS_MANAGER,
        &conductor,
        "",
        None,
        &[("ALERT_INTERVAL_SECS", "1"), ("SCRAPE_INTERVAL_SECS", "5")],
    )
    .await;
    let admin = conductor.admin().await;
    let metrics = MetricsManager::with_token(&service.url, admin.token().unwrap());
    let (hook, received, attempts) = receiver().await;

    // The default rules are there; a queue-depth rule of our own joins them.
    let rules = metrics
        .list_alert_rules()
        .send()
        .await
        .unwrap()
        .into_inner();
    let names: BTreeSet<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.is_superset(
            &[
                "worker_lost",
                "instance_restarting",
                "disk_almost_full",
                "http_5xx_rate"
            ]
            .into()
        ),
        "{names:?}"
    );
    metrics
        .put_alert_rule()
        .name("queue_deep")
        .body(AlertRule {
            name: "queue_deep".into(),
            description: Some("The queue is over 100 deep.".into()),
            metric: "queue_depth".into(),
            matchers: vec!["queue=~orders|refunds".into()],
            function: Some(QueryFunction::Value),
            window_secs: None,
            aggregation: Some(QueryAggregation::Max),
            by: vec!["queue".into()],
            quantile: None,
            op: Comparison::Gt,
            threshold: 100.0,
            for_secs: 2,
            webhook_url: Some(hook.clone()),
        })
        .send()
        .await
        .unwrap();
    // A bad rule is refused.
    let bad = metrics
        .put_alert_rule()
        .name("bad")
        .body(AlertRule {
            name: "bad".into(),
            description: None,
            metric: "queue_depth".into(),
            matchers: vec![],
            function: None,
            window_secs: None,
            aggregation: None,
            by: vec![],
            quantile: None,
            op: Comparison::Gt,
            threshold: 1.0,
            for_secs: 0,
            webhook_url: Some("ftp://nowhere".into()),
        })
        .send()
        .await;
    assert!(
        matches!(&bad, Err(aerekos_sdk::ClientError::ErrorResponse(e)) if e.status() == 400 && e.code == "invalid_webhook_url"),
        "{bad:?}"
    );

    let depth = |queue: &str, v: f64| {
        let metrics = metrics.clone();
        let queue = queue.to_owned();
        async move {
            metrics
                .push_samples()
                .body(PushRequest {
                    series: vec![PushSeries {
                        name: "queue_depth".into(),
                        labels: [("queue".to_owned(), queue)].into(),
                        samples: vec![Point {
                            t: Utc::now().timestamp_millis(),
                            v,
                        }],
                    }],
                })
                .send()
                .await
                .unwrap();
        }
    };
    // Shallow: nothing.
    depth("orders", 10.0).await;
    depth("emails", 500.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        metrics
            .list_alerts()
            .send()
            .await
            .unwrap()
            .into_inner()
            .alerts
            .iter()
            .all(|a| a.rule != "queue_deep")
    );

    // Deep: pending, then firing after 2 s; the first notice is refused and sent again.
    depth("orders", 150.0).await;
    let pending = eventually(10, "the alert is pending", || async {
        let alerts = metrics.list_alerts().send().await.ok()?.into_inner().alerts;
        alerts.into_iter().find(|a| a.rule == "queue_deep")
    })
    .await;
    assert_eq!(pending.labels["queue"], "orders");
    let notice = eventually(30, "the firing notice is delivered", || async {
        received.lock().unwrap().first().cloned()
    })
    .await;
    assert!(
        *attempts.lock().unwrap() >= 2,
        "the refused notice was sent again"
    );
    assert_eq!(notice["status"], "firing");
    assert_eq!(notice["rule"], "queue_deep");
    assert_eq!(notice["labels"]["queue"], "orders");
    assert_eq!(notice["value"], 150.0);
    let firing = metrics
        .list_alerts()
        .send()
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let firing = firing.iter().find(|a| a.rule == "queue_deep").unwrap();
    assert_eq!(firing.state, AlertState::Firing);
    assert!(firing.notified);
    // Delivered once: more evaluations send nothing new.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(received.lock().unwrap().len(), 1);

    // Back to shallow: resolved.
    depth("orders", 20.0).await;
    let resolved = eventually(15, "the resolved notice", || async {
        received.lock().unwrap().get(1).cloned()
    })
    .await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["labels"]["queue"], "orders");
    assert!(
        metrics
            .list_alerts()
            .send()
            .await
            .unwrap()
            .into_inner()
            .alerts
            .iter()
            .all(|a| a.rule != "queue_deep")
    );
}
