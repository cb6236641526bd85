// The metrics_manager client: the typed openapi-fetch client for openapi/metrics_manager.json
// (time series under /api/metrics_manager/…, the service itself or the conductor's gateway with
// the same URL shape) plus helpers for its calls: `queryMetrics` (a range query: one metric's
// series at every step, through a function, aggregated or turned into a histogram's quantile),
// `listMetricNames`, `listScrapeTargets`, `metricsStats`, `pushSamples`, and the alerts
// (`listAlerts`, `listAlertRules`, `putAlertRule`, `deleteAlertRule`). Re-exported from index.ts.
//
// Each helper is one request; they return the answer's content (an array where the answer only
// wraps one) and throw AerekosApiError when the call fails, like `unwrap`. Only Web-platform APIs
// are used, so this runs in browsers as well as in Node.

import { createApiClient, unwrap, type ApiClient, type ClientOptions } from './core.js';
import type { components, operations, paths } from './generated/metrics_manager.js';

export type { paths as MetricsManagerPaths, components as MetricsManagerComponents } from './generated/metrics_manager.js';

type Schemas = components['schemas'];
/** A query's answer: its series (labels and points), the step and which samples answered (`raw` or `minute`). */
export type MetricsQueryResult = Schemas['QueryResult'];
/** One series of a query's answer: its labels (`__name__` is the metric's, absent after an aggregation) and points. */
export type MetricSeries = Schemas['SeriesPoints'];
/** A value at a time: `t` in Unix milliseconds, `v`. */
export type MetricPoint = Schemas['Point'];
/** `value` (the default), `rate`, `increase`, `avg_over_time`, `max_over_time`, `min_over_time`. */
export type MetricsFunction = Schemas['QueryFunction'];
/** `sum`, `avg`, `max`, `min`, `count`: how series are combined per group of `by` labels. */
export type MetricsAggregation = Schemas['QueryAggregation'];
/** `raw` (every scrape) or `minute` (the 1-minute rollups). */
export type MetricsResolution = Schemas['Resolution'];
/** A stored metric name and how many series it has. */
export type MetricName = Schemas['MetricName'];
/** The scrape targets, how each one's last scrape went, and the scraper's rounds. */
export type ScrapeTargets = Schemas['Targets'];
/** One scrape target of `ScrapeTargets`. */
export type ScrapeTarget = Schemas['TargetStatus'];
/** What the store holds: series and samples in the head, sections, bytes on disk, the oldest times. */
export type MetricsStats = Schemas['MetricsStats'];
/** A series of an alert rule's query for which its condition holds: `pending`, then `firing`. */
export type MetricsAlert = Schemas['Alert'];
/** `pending` (for less than the rule's `for_secs`) or `firing`. */
export type MetricsAlertState = Schemas['AlertState'];
/** An alert rule: a query, a comparison with a threshold, how long it must hold, where to notify. */
export type AlertRule = Schemas['AlertRule'];
/** `gt`, `ge`, `lt`, `le`, `eq`, `ne`: how a rule compares its query's value with its threshold. */
export type AlertComparison = Schemas['Comparison'];
/** Samples to store (`POST /api/metrics_manager/samples`): series of a name, labels and points. */
export type PushSamplesRequest = Schemas['PushRequest'];
/** One series of a `PushSamplesRequest`. */
export type PushSeries = Schemas['PushSeries'];
/** What a push stored, and skipped (out of order, or refused as new series over `MAX_SERIES`). */
export type PushSamplesResult = Schemas['PushResult'];

type QueryParameters = operations['query_metrics']['parameters']['query'];

/**
 * What `queryMetrics` asks for: the parameters of `GET /api/metrics_manager/query`, with `start`
 * and `end` as RFC 3339 text or Dates.
 *
 * - `name`: the metric; `match`: label matchers, each `label=value`, `label!=value`,
 *   `label=~regex` or `label!~regex` (a regex matches the whole value);
 * - `start` (default: an hour before `end`), `end` (default: now), `step_secs` (default: the range
 *   over 240);
 * - `function` of each series over `window_secs` before each step (default `value`; the window
 *   defaults to the step, at least a minute);
 * - `aggregation` of the series per group of `by` labels, or `quantile` (0–1) of a histogram's
 *   `…_bucket` series (summed by `by` and `le`).
 */
export type MetricsQuery = Omit<QueryParameters, 'start' | 'end'> & {
  start?: string | Date;
  end?: string | Date;
};

/** Options of `createMetricsManagerClient`: the conductor's (or the service's) root URL and a conductor token. */
export type MetricsManagerClientOptions = ClientOptions;

/** The openapi-fetch client (`GET`, `PUT`, ... typed from the metrics_manager spec) plus token handling. */
export type MetricsManagerClient = ApiClient<paths>;

/**
 * A client for metrics_manager. It accepts the conductor's tokens (a user's reads everything; only
 * admins push samples and change alert rules; an API key needs `metrics_manager:read:<metric>` to
 * query and `metrics_manager:write:<metric>` to push): log in at the conductor and pass the same
 * token (`createMetricsManagerClient({ baseUrl: conductorUrl, token: conductor.token() })`).
 */
export function createMetricsManagerClient(options: MetricsManagerClientOptions): MetricsManagerClient {
  return createApiClient<paths>(options);
}

function rfc3339(t: string | Date): string {
  if (typeof t === 'string') return t;
  if (Number.isNaN(t.getTime())) throw new RangeError('an invalid Date');
  return t.toISOString();
}

/**
 * One metric's series over a range (`GET /api/metrics_manager/query`): at every step from `start`
 * to `end`, the `function` of each series over the window before it, optionally aggregated by
 * labels or turned into a histogram quantile. A series' points leave out the steps where it has no
 * value; a series without any is left out. Throws AerekosApiError when the call fails (400 with
 * `invalid_matcher`, `invalid_name`, `invalid_range`, `invalid_step`, `invalid_window`,
 * `too_many_points`, `not_a_histogram`, …; 403 for an API key without the metric's read scope;
 * 503 while metrics_manager starts), and a RangeError for an invalid Date.
 */
export async function queryMetrics(client: MetricsManagerClient, query: MetricsQuery, signal?: AbortSignal): Promise<MetricsQueryResult> {
  const { start, end, ...rest } = query;
  const params: QueryParameters = {
    ...rest,
    ...(start !== undefined ? { start: rfc3339(start) } : {}),
    ...(end !== undefined ? { end: rfc3339(end) } : {}),
  };
  return unwrap(client.GET('/api/metrics_manager/query', { params: { query: params }, ...(signal ? { signal } : {}) }));
}

/** Every metric name stored, with how many series each has (`GET …/names`). */
export async function listMetricNames(client: MetricsManagerClient, signal?: AbortSignal): Promise<MetricName[]> {
  return (await unwrap(client.GET('/api/metrics_manager/names', signal ? { signal } : {}))).names;
}

/**
 * The scrape targets (the conductor, every worker serving its API, every running service
 * instance) and how each one's last scrape went, with the scrape interval and rounds (`GET …/targets`).
 */
export async function listScrapeTargets(client: MetricsManagerClient, signal?: AbortSignal): Promise<ScrapeTargets> {
  return unwrap(client.GET('/api/metrics_manager/targets', signal ? { signal } : {}));
}

/** What the store holds (`GET …/stats`). */
export async function metricsStats(client: MetricsManagerClient, signal?: AbortSignal): Promise<MetricsStats> {
  return unwrap(client.GET('/api/metrics_manager/stats', signal ? { signal } : {}));
}

/**
 * Stores samples (`POST …/samples`; admins, or an API key with `metrics_manager:write:<metric>`):
 * each series' points in time order and newer than its newest stored sample (older ones are
 * counted as `out_of_order` and skipped). On disk before the answer.
 */
export async function pushSamples(client: MetricsManagerClient, series: PushSeries[]): Promise<PushSamplesResult> {
  return unwrap(client.POST('/api/metrics_manager/samples', { body: { series } }));
}

/** The alerts whose condition holds now, `pending` and `firing` (`GET …/alerts`). */
export async function listAlerts(client: MetricsManagerClient, signal?: AbortSignal): Promise<MetricsAlert[]> {
  return (await unwrap(client.GET('/api/metrics_manager/alerts', signal ? { signal } : {}))).alerts;
}

/** Every alert rule (`GET …/alert-rules`; a new store has four: `worker_lost`, `instance_restarting`, `disk_almost_full`, `http_5xx_rate`). */
export async function listAlertRules(client: MetricsManagerClient, signal?: AbortSignal): Promise<AlertRule[]> {
  return (await unwrap(client.GET('/api/metrics_manager/alert-rules', signal ? { signal } : {}))).rules;
}

/**
 * Creates or replaces the rule `name` (`PUT …/alert-rules/{name}`; admins) and returns it as
 * stored, its defaults filled in; its alerts start over. `rule.name`, if given, must be `name`.
 * Throws AerekosApiError 400 for a rule that is not valid (the message says what to fix), 403 for
 * anyone but an admin.
 */
export async function putAlertRule(client: MetricsManagerClient, name: string, rule: AlertRule): Promise<AlertRule> {
  return unwrap(client.PUT('/api/metrics_manager/alert-rules/{name}', { params: { path: { name } }, body: { ...rule, name } }));
}

/** Deletes the rule `name` and its alerts (`DELETE …/alert-rules/{name}`; admins); returns the rules left. 404 `rule_not_found` if there is none. */
export async function deleteAlertRule(client: MetricsManagerClient, name: string): Promise<AlertRule[]> {
  return (await unwrap(client.DELETE('/api/metrics_manager/alert-rules/{name}', { params: { path: { name } } }))).rules;
}
