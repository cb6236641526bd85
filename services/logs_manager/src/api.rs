//! logs_manager's HTTP surface, under `/api/logs_manager/…` so one SDK client works against the
//! service directly or through the conductor's gateway. Thin: check the token, call the domain.

use std::{sync::Arc, time::Duration};

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    metrics::{write_counter, write_gauge},
    server::blocking,
};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream::BoxStream};
use poem::{Request, web::Data};
use poem_openapi::{
    Enum, OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::Query,
    payload::{EventStream, Json, PlainText},
};

use crate::{
    State,
    domain::{
        log::{DEFAULT_PAGE, LogStore, MAX_PAGE, Order},
        records::{self, Filter, MAX_NAME_CHARS, MAX_REGEX_CHARS},
    },
    model::{Health, IngestRequest, IngestResult, LogLevel, LogPage, LogRecord, LogStats},
};

#[derive(Tags)]
enum ApiTags {
    /// Log records: shipping, querying, tailing.
    Logs,
    /// Health, readiness, metrics.
    System,
}

/// A token from the conductor, as `Authorization: Bearer <token>`: a user's (admins and viewers
/// read every record; only admins write), or an API key's (`logs_manager:write:<source prefix*>`
/// to ship, as workers do; `logs_manager:read:<service>` to read one service's records).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_caller")]
struct CallerAuth(Caller);

async fn check_caller(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req.data::<Arc<State>>().expect("State is attached");
    Ok(state.verifier.caller(&bearer.token)?)
}

fn may_write(caller: &Caller, source: &str) -> ApiResult<()> {
    match caller {
        Caller::User { admin: true, .. } => Ok(()),
        Caller::ApiKey { .. } => caller.require_scope("logs_manager", "write", &[source]),
        _ => Err(ApiError::forbidden(
            "forbidden",
            "shipping logs needs an admin's token or an API key with logs_manager:write on the source",
        )),
    }
}

/// A worker's key writes `worker/<id>/…` sources: their records are that worker's, whatever they
/// say (a record naming another worker is refused), so a key cannot pass lines off as another
/// machine's.
fn stamp_worker(batch: &mut IngestRequest) -> ApiResult<()> {
    let Some(worker) = batch
        .source
        .strip_prefix("worker/")
        .and_then(|rest| rest.split('/').next())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
    else {
        return Ok(());
    };
    for (i, record) in batch.records.iter_mut().enumerate() {
        match &record.worker {
            Some(named) if *named != worker => {
                return Err(ApiError::bad_request(
                    "worker_mismatch",
                    format!(
                        "records[{i}].worker is {named:?}, but the source is worker {worker}'s"
                    ),
                ));
            }
            _ => record.worker = Some(worker.clone()),
        }
    }
    Ok(())
}

fn may_read(caller: &Caller, service: Option<&str>) -> ApiResult<()> {
    match caller {
        Caller::User { .. } => Ok(()),
        Caller::ApiKey { .. } => match service {
            Some(service) => caller.require_scope("logs_manager", "read", &[service]),
            None => Err(ApiError::forbidden(
                "service_required",
                "an API key reads one service's records: give `service` (its scope names which)",
            )),
        },
        Caller::Service { .. } => Err(ApiError::forbidden(
            "forbidden",
            "service tokens do not read logs",
        )),
    }
}

/// The order of a page.
#[derive(Enum, Debug, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum PageOrder {
    /// The most recently stored first (the default).
    Newest,
    /// The earliest stored first.
    Oldest,
}

/// The query parameters every read takes.
struct FilterParams {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    service: Option<String>,
    instance: Option<String>,
    worker: Option<String>,
    level: Option<LogLevel>,
    request_id: Option<String>,
    contains: Option<String>,
    regex: Option<String>,
}

impl FilterParams {
    fn into_filter(self) -> ApiResult<Filter> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(ApiError::bad_request(
                "invalid_time_range",
                "since must be before until",
            ));
        }
        for (name, value) in [
            ("service", &self.service),
            ("instance", &self.instance),
            ("worker", &self.worker),
            ("request_id", &self.request_id),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_NAME_CHARS)
            {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("{name} is longer than {MAX_NAME_CHARS} characters"),
                ));
            }
        }
        let regex = match self.regex.filter(|r| !r.is_empty()) {
            None => None,
            Some(r) if r.chars().count() > MAX_REGEX_CHARS => {
                return Err(ApiError::bad_request(
                    "invalid_regex",
                    format!("regex is longer than {MAX_REGEX_CHARS} characters"),
                ));
            }
            Some(r) => Some(
                regex::RegexBuilder::new(&r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| ApiError::bad_request("invalid_regex", format!("regex: {e}")))?,
            ),
        };
        let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
        Ok(Filter {
            since_t: self.since.map(|t| t.timestamp_millis()),
            until_t: self.until.map(|t| t.timestamp_millis()),
            service: nonempty(self.service),
            instance: nonempty(self.instance),
            worker: nonempty(self.worker),
            min_level: self.level,
            request_id: nonempty(self.request_id),
            contains: nonempty(self.contains),
            regex,
        })
    }
}

fn parse_cursor(cursor: Option<String>) -> ApiResult<Option<u64>> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => c.parse().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "cursor is not one this service gave (pass a page's next_cursor)",
            )
        }),
    }
}

/// The stored records `filter` matches after id `after` (at most `most`), oldest first, and the
/// id they reach (`after` when none).
async fn catch_up(
    logs: Arc<LogStore>,
    filter: Filter,
    after: u64,
    most: u32,
) -> ApiResult<(Vec<LogRecord>, u64)> {
    blocking(move || {
        let mut out = Vec::new();
        let mut cursor = after;
        loop {
            let want = (most as usize)
                .saturating_sub(out.len())
                .min(MAX_PAGE as usize);
            if want == 0 {
                break;
            }
            let page = logs
                .query(&filter, Order::Oldest, Some(cursor), want as u32)
                .map_err(ApiError::internal)?;
            if let Some(last) = page.records.last() {
                cursor = cursor.max(last.id);
            }
            out.extend(page.records);
            match page.next_cursor.and_then(|c| c.parse::<u64>().ok()) {
                Some(next) => cursor = cursor.max(next),
                None => break,
            }
        }
        // Live batches (subscribed to before this ran) bring what comes after `cursor`.
        Ok((out, cursor))
    })
    .await
}

async fn blocking_last_id(logs: Arc<LogStore>) -> ApiResult<Option<u64>> {
    blocking(move || Ok(logs.last_id())).await
}

/// How often a quiet tail sends a comment line, so proxies and clients see it is alive.
const TAIL_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Records a tail sends from before it began (from `after`), at most.
const TAIL_BACKLOG: u32 = 10_000;

pub struct LogsApi;

#[OpenApi(prefix_path = "/api/logs_manager", tag = "ApiTags::Logs")]
impl LogsApi {
    /// Store a batch of lines from one source (workers ship every instance's output and their
    /// own lines this way). A record whose `seq` its source already stored is skipped, so a batch
    /// may be sent again safely. Stored records are on disk before the answer. The body may be
    /// gzip (`Content-Encoding: gzip`); `MAX_BODY_BYTES` holds once it is unpacked.
    #[oai(path = "/ingest", method = "post", operation_id = "ingest_logs")]
    async fn ingest(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        body: Json<IngestRequest>,
    ) -> ApiResult<Json<IngestResult>> {
        may_write(&auth.0, &body.source)?;
        LogStore::validate(&body)?;
        let mut body = body;
        if matches!(auth.0, Caller::ApiKey { .. }) {
            stamp_worker(&mut body.0)?;
        }
        let logs = state.logs.clone();
        blocking(move || logs.ingest(body.0)).await.map(Json)
    }

    /// Records matching every filter given, a page at a time.
    #[oai(path = "/records", method = "get", operation_id = "query_logs")]
    #[allow(clippy::too_many_arguments)]
    async fn query(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        /// Lines written at or after this time.
        since: Query<Option<DateTime<Utc>>>,
        /// Lines written before this time.
        until: Query<Option<DateTime<Utc>>>,
        service: Query<Option<String>>,
        /// An instance id.
        instance: Query<Option<String>>,
        /// A worker id.
        worker: Query<Option<String>>,
        /// This level and above (lines without a level are left out).
        level: Query<Option<LogLevel>>,
        request_id: Query<Option<String>>,
        /// Lines containing this text.
        contains: Query<Option<String>>,
        /// Lines matching this regular expression (Rust `regex` syntax, at most 1024 characters).
        regex: Query<Option<String>>,
        /// `newest` (default) or `oldest` first.
        order: Query<Option<PageOrder>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size, default 100.
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<LogPage>> {
        may_read(&auth.0, service.0.as_deref())?;
        let limit = limit.0.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_page_size",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        let cursor = parse_cursor(cursor.0)?;
        let filter = FilterParams {
            since: since.0,
            until: until.0,
            service: service.0,
            instance: instance.0,
            worker: worker.0,
            level: level.0,
            request_id: request_id.0,
            contains: contains.0,
            regex: regex.0,
        }
        .into_filter()?;
        let order = match order.0 {
            Some(PageOrder::Oldest) => Order::Oldest,
            _ => Order::Newest,
        };
        let logs = state.logs.clone();
        blocking(move || {
            logs.query(&filter, order, cursor, limit)
                .map_err(ApiError::internal)
        })
        .await
        .map(Json)
    }

    /// Records as they are stored, as server-sent events (one `LogRecord` per event), for as
    /// long as the client stays. With `after` (a record id), the stored records after it come
    /// first (at most 10000), so a client that queried first misses nothing in between.
    #[oai(path = "/tail", method = "get", operation_id = "tail_logs")]
    #[allow(clippy::too_many_arguments)]
    async fn tail(
        &self,
        state: Data<&Arc<State>>,
        auth: CallerAuth,
        service: Query<Option<String>>,
        /// An instance id.
        instance: Query<Option<String>>,
        /// A worker id.
        worker: Query<Option<String>>,
        /// This level and above.
        level: Query<Option<LogLevel>>,
        request_id: Query<Option<String>>,
        /// Lines containing this text.
        contains: Query<Option<String>>,
        /// Lines matching this regular expression.
        regex: Query<Option<String>>,
        /// Start after this record id (a query's newest record's `id`).
        after: Query<Option<u64>>,
    ) -> ApiResult<EventStream<BoxStream<'static, LogRecord>>> {
        may_read(&auth.0, service.0.as_deref())?;
        let filter = FilterParams {
            since: None,
            until: None,
            service: service.0,
            instance: instance.0,
            worker: worker.0,
            level: level.0,
            request_id: request_id.0,
            contains: contains.0,
            regex: regex.0,
        }
        .into_filter()?;
        // Subscribe before reading the backlog: a record stored in between is in one or both,
        // and the id check below sends it once.
        let live = state.logs.subscribe();
        let mut backlog = Vec::new();
        let mut last_sent = after.0;
        if let Some(after) = after.0 {
            // Every stored record after `after`, up to TAIL_BACKLOG, through as many pages as
            // the scan budget makes of it.
            let (records, last) =
                catch_up(state.logs.clone(), filter.clone(), after, TAIL_BACKLOG).await?;
            backlog = records;
            last_sent = Some(last);
        } else if let Some(last) = blocking_last_id(state.logs.clone()).await? {
            last_sent = Some(last);
        }
        let logs = state.logs.clone();
        let live = futures_util::stream::unfold(
            (live, filter, last_sent),
            move |(mut live, filter, mut last_sent)| {
                let logs = logs.clone();
                async move {
                    loop {
                        match live.recv().await {
                            Ok(batch) => {
                                let fresh: Vec<LogRecord> = batch
                                    .iter()
                                    .filter(|r| last_sent.is_none_or(|l| r.id > l))
                                    .filter(|r| filter.matches(r))
                                    .cloned()
                                    .map(records::from_stored)
                                    .collect();
                                if let Some(last) = batch.last() {
                                    last_sent = Some(last_sent.map_or(last.id, |l| l.max(last.id)));
                                }
                                if !fresh.is_empty() {
                                    return Some((
                                        futures_util::stream::iter(fresh),
                                        (live, filter, last_sent),
                                    ));
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                // Fell behind the live batches: what it missed is in the store.
                                let from = last_sent.unwrap_or(0);
                                let Ok((missed, last)) =
                                    catch_up(logs.clone(), filter.clone(), from, TAIL_BACKLOG)
                                        .await
                                else {
                                    return None;
                                };
                                last_sent = Some(last);
                                if !missed.is_empty() {
                                    return Some((
                                        futures_util::stream::iter(missed),
                                        (live, filter, last_sent),
                                    ));
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            },
        )
        .flatten();
        let stream = futures_util::stream::iter(backlog).chain(live).boxed();
        Ok(EventStream::new(stream).keep_alive(TAIL_KEEP_ALIVE))
    }

    /// What the store holds: segments, bytes, records, the time span, each source's position and
    /// what it reported dropping.
    #[oai(path = "/stats", method = "get", operation_id = "log_stats")]
    async fn stats(&self, state: Data<&Arc<State>>, auth: CallerAuth) -> ApiResult<Json<LogStats>> {
        match auth.0 {
            Caller::User { .. } => {
                let logs = state.logs.clone();
                blocking(move || Ok(logs.stats())).await.map(Json)
            }
            _ => Err(ApiError::forbidden(
                "forbidden",
                "the store's statistics are for users",
            )),
        }
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

    /// Readiness: the segments are open.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ApiResult<Json<Health>> {
        Ok(Json(Health {
            status: "ready".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&Arc<State>>) -> ApiResult<PlainText<String>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        state.metrics.render_http(&mut out);
        let logs = state.logs.clone();
        let stats = blocking(move || Ok(logs.stats())).await?;
        let counters = [
            (
                "aerekos_logs_ingested_total",
                "Log records stored.",
                state.logs.ingested.load(Relaxed),
            ),
            (
                "aerekos_logs_duplicates_total",
                "Log records skipped as repeats of stored ones.",
                state.logs.duplicates.load(Relaxed),
            ),
            (
                "aerekos_logs_segments_removed_total",
                "Segments removed by retention.",
                state.logs.removed_segments.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            write_counter(&mut out, name, help, value);
        }
        write_gauge(
            &mut out,
            "aerekos_logs_bytes",
            "Bytes of log segments kept.",
            &[(String::new(), stats.bytes as f64)],
        );
        write_gauge(
            &mut out,
            "aerekos_logs_dropped_by_sources",
            "Lines each source reported it dropped unsent (its buffer was full).",
            &stats
                .sources
                .iter()
                .map(|s| {
                    (
                        format!("source=\"{}\"", label_value(&s.source)),
                        s.dropped_total as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Ok(PlainText(out))
    }
}

/// A Prometheus label value: backslash, quote and newline escaped as the exposition format says.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub type LogsManagerApi = (LogsApi, SystemApi);

pub fn service() -> OpenApiService<LogsManagerApi, ()> {
    OpenApiService::new((LogsApi, SystemApi), "aerekos logs_manager", env!("CARGO_PKG_VERSION")).description(
        "The platform's log records: every instance's stdout and stderr and every worker's own lines, shipped by \
         the workers in batches (repeats skipped by each source's sequence numbers), kept in append-only segments \
         with retention by age and size, queried by time, service, instance, worker, level, request id and text, \
         and tailed live.",
    )
}

/// The limits logs_manager's domain enforces, declared in its spec (see `aerekos_common::limits`).
pub fn limits() -> Vec<aerekos_common::limits::Limit> {
    use aerekos_common::limits::Limit;
    use serde_json::json;
    let name = json!({"maxLength": MAX_NAME_CHARS});
    let mut limits = vec![
        Limit::property(
            "IngestRequest",
            "source",
            json!({"minLength": 1, "maxLength": MAX_NAME_CHARS}),
        ),
        Limit::property(
            "IngestRequest",
            "records",
            json!({"maxItems": records::MAX_BATCH}),
        ),
        Limit::property(
            "IngestRecord",
            "message",
            json!({"maxLength": records::MAX_MESSAGE_CHARS}),
        ),
        Limit::param(
            "query_logs",
            "limit",
            json!({"minimum": 1, "maximum": MAX_PAGE}),
        ),
        Limit::param("query_logs", "regex", json!({"maxLength": MAX_REGEX_CHARS})),
        Limit::param("tail_logs", "regex", json!({"maxLength": MAX_REGEX_CHARS})),
    ];
    for field in ["worker", "service", "instance", "request_id"] {
        limits.push(Limit::property("IngestRecord", field, name.clone()));
    }
    for op in ["query_logs", "tail_logs"] {
        for param in ["service", "instance", "worker", "request_id"] {
            limits.push(Limit::param(op, param, name.clone()));
        }
    }
    limits
}
