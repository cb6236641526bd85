// End-to-end tests of the metrics_manager client and its helpers against a real platform (`aerekos
// up`: the conductor and the built-in services on a local worker serving its own API, all of which
// metrics_manager scrapes every 10 s), through the conductor's gateway at /api/metrics_manager/…;
// and of how the helpers put their parameters and bodies into requests, against scripted answers.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  createMetricsManagerClient,
  deleteAlertRule,
  listAlertRules,
  listAlerts,
  listMetricNames,
  listScrapeTargets,
  login,
  metricsStats,
  pushSamples,
  putAlertRule,
  queryMetrics,
  type MetricSeries,
  type MetricsManagerClient,
} from '../src/index.js';
import { apiError, startPlatform, stopServer, waitForService, type Platform } from './support.js';

/** Polls `probe` every 500 ms until it returns a value, for up to `ms` (a scrape is every 10 s). */
async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const close = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual}, expected ${expected}`);

describe('metrics_manager API through @aerekos/sdk and the gateway', () => {
  let platform: Platform | undefined;
  let metrics: MetricsManagerClient;
  let viewerMetrics: MetricsManagerClient;
  const run = randomBytes(4).toString('hex');

  before(async () => {
    platform = await startPlatform();
    const { client: admin } = await login(platform.baseUrl, 'admin', platform.adminPassword);
    metrics = createMetricsManagerClient({ baseUrl: platform.baseUrl, token: admin.token() });
    const { client: viewer } = await login(platform.baseUrl, platform.viewer.username, platform.viewer.password);
    viewerMetrics = createMetricsManagerClient({ baseUrl: platform.baseUrl, token: viewer.token() });
    // `up` has deployed metrics_manager; the gateway answers 503 until it is healthy.
    await waitForService('metrics_manager behind the gateway', () => listMetricNames(metrics));
    // Its first scrapes: the conductor's gauge of live workers, twice.
    await until("two points of the conductor's aerekos_workers", async () => {
      const answer = await queryMetrics(metrics, { name: 'aerekos_workers', match: ['status=live'], step_secs: 5 });
      return (answer.series[0]?.points.length ?? 0) >= 2 ? answer : undefined;
    });
  });

  after(async () => {
    if (platform) await stopServer(platform);
  });

  it("has the conductor's gauge of live workers over the last hour, from raw samples", async () => {
    const end = new Date();
    const start = new Date(end.getTime() - 3_600_000);
    const answer = await queryMetrics(metrics, { name: 'aerekos_workers', match: ['status=live', 'job=conductor'], start, end, step_secs: 15 });
    assert.equal(answer.resolution, 'raw', 'the last hour at a 15 s step comes from raw samples');
    assert.equal(answer.step_secs, 15);
    assert.equal(answer.series.length, 1, JSON.stringify(answer));
    const [series] = answer.series as [MetricSeries];
    assert.deepEqual(series.labels, { __name__: 'aerekos_workers', job: 'conductor', status: 'live' });
    assert.ok(series.points.length >= 1);
    for (const p of series.points) {
      assert.ok(p.t >= start.getTime() && p.t <= end.getTime(), `${p.t} in the range`);
      assert.equal((p.t - start.getTime()) % 15_000, 0, 'one point a step from start');
      assert.equal(p.v, 1, 'one live worker');
    }
    // Text times are sent as they are; a range over rollups says so.
    const week = await queryMetrics(metrics, {
      name: 'aerekos_workers',
      match: ['status=live'],
      start: new Date(end.getTime() - 7 * 86_400_000).toISOString(),
      end: end.toISOString(),
      step_secs: 1800,
      function: 'max_over_time',
    });
    assert.equal(week.resolution, 'minute');
    assert.equal(week.step_secs, 1800);
  });

  it("has the worker's CPU, memory and disk, labelled with the worker", async () => {
    const answer = await until("the worker's CPU", async () => {
      const a = await queryMetrics(metrics, { name: 'aerekos_worker_cpu_usage_percent', function: 'avg_over_time', step_secs: 15, window_secs: 15 });
      return a.series.length > 0 ? a : undefined;
    });
    const labels = answer.series[0]!.labels;
    assert.equal(labels.job, 'worker');
    assert.equal(labels.worker_name, 'local', "`up`'s own worker");
    assert.ok(labels.worker, 'the worker id');
    for (const p of answer.series[0]!.points) assert.ok(p.v >= 0 && p.v <= 100, `${p.v} is a percentage`);
    const disk = await queryMetrics(metrics, { name: 'aerekos_worker_disk_used_percent', match: [`worker=${labels.worker}`] });
    assert.equal(disk.series.length, 1);
    const names = (await listMetricNames(metrics)).map((n) => n.name);
    for (const name of ['aerekos_worker_memory_total_bytes', 'aerekos_worker_memory_available_bytes', 'aerekos_worker_cpu_cores', 'aerekos_http_requests_total']) {
      assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
    }
  });

  it('scrapes the conductor, the worker and the service instances', async () => {
    const targets = await until('the service instances among the targets', async () => {
      const t = await listScrapeTargets(metrics);
      return t.targets.some((x) => x.labels.service === 'key_manager' && x.up) ? t : undefined;
    });
    assert.equal(targets.interval_secs, 10);
    assert.ok(targets.rounds_total >= 1);
    const jobs = new Set(targets.targets.map((t) => t.labels.job));
    assert.deepEqual([...jobs].sort(), ['conductor', 'service', 'worker']);
    const conductor = targets.targets.find((t) => t.labels.job === 'conductor')!;
    assert.ok(conductor.up, JSON.stringify(conductor));
    assert.ok(conductor.last_samples > 0);
    const services = new Set(targets.targets.filter((t) => t.labels.job === 'service').map((t) => t.labels.service));
    assert.ok(services.has('metrics_manager'), 'metrics_manager scrapes itself');
    const stats = await metricsStats(metrics);
    assert.ok(stats.samples_stored_total > 0 && stats.head_series > 0, JSON.stringify(stats));
  });

  it('answers a rate, an increase and a sum by label of pushed counters exactly', async () => {
    const name = `sdk_ts_requests_total`;
    const t0 = Date.now() - 60_000;
    // Every 10 s for a minute: kind a grows 5 a second, kind b 2 a second.
    const samples = (perSec: number) => Array.from({ length: 7 }, (_, i) => ({ t: t0 + i * 10_000, v: 1000 + i * 10 * perSec }));
    const pushed = await pushSamples(metrics, [
      { name, labels: { run, kind: 'a' }, samples: samples(5) },
      { name, labels: { run, kind: 'b' }, samples: samples(2) },
    ]);
    assert.deepEqual(pushed, { stored: 14, out_of_order: 0, series_refused: 0 });
    const at = { start: new Date(t0 + 60_000), end: new Date(t0 + 60_000), step_secs: 10, window_secs: 60 };

    const rate = await queryMetrics(metrics, { name, match: [`run=${run}`], function: 'rate', aggregation: 'sum', ...at });
    assert.equal(rate.series.length, 1);
    assert.deepEqual(rate.series[0]!.labels, {}, 'a sum over everything has no labels');
    close(rate.series[0]!.points[0]!.v, 7, 'the summed rate');

    const byKind = await queryMetrics(metrics, { name, match: [`run=${run}`], function: 'increase', aggregation: 'sum', by: ['kind'], ...at });
    const increases = Object.fromEntries(byKind.series.map((s) => [s.labels.kind, s.points[0]!.v]));
    close(increases.a!, 250, 'the increase of a over the last 50 s of the window');
    close(increases.b!, 100, 'the increase of b');

    const onlyA = await queryMetrics(metrics, { name, match: [`run=${run}`, 'kind!~b|c'], function: 'rate', ...at });
    assert.deepEqual(onlyA.series.map((s) => s.labels.kind), ['a']);
    close(onlyA.series[0]!.points[0]!.v, 5, 'the rate of a');
    // Pushed again: not newer than what is stored, skipped.
    assert.equal((await pushSamples(metrics, [{ name, labels: { run, kind: 'a' }, samples: samples(5).slice(0, 2) }])).out_of_order, 2);
  });

  it("answers a service's request rate and latency quantiles from its scraped histogram", async () => {
    const rate = await until("key_manager's request rate", async () => {
      const a = await queryMetrics(metrics, { name: 'aerekos_http_requests_total', match: ['service=key_manager'], function: 'rate', window_secs: 60, aggregation: 'sum', step_secs: 15 });
      return a.series[0]?.points.length ? a : undefined;
    });
    for (const p of rate.series[0]!.points) assert.ok(p.v > 0, 'its health checks and scrapes at least');
    const p99 = await until("key_manager's p99 latency", async () => {
      const a = await queryMetrics(metrics, {
        name: 'aerekos_http_request_duration_seconds_bucket',
        match: ['service=key_manager'],
        function: 'rate',
        window_secs: 60,
        quantile: 0.99,
        step_secs: 15,
      });
      return a.series[0]?.points.length ? a : undefined;
    });
    for (const p of p99.series[0]!.points) assert.ok(p.v > 0 && p.v <= 5, `${p.v} s`);
    const wrong = await apiError(queryMetrics(metrics, { name: 'aerekos_http_requests_total', quantile: 0.5 }));
    assert.equal(wrong.status, 400);
    assert.equal(wrong.code, 'not_a_histogram');
  });

  it('lists the default alert rules; an admin adds one, which fires, and deletes it', async () => {
    const defaults = (await listAlertRules(viewerMetrics)).map((r) => r.name);
    for (const name of ['worker_lost', 'instance_restarting', 'disk_almost_full', 'http_5xx_rate']) assert.ok(defaults.includes(name), defaults.join(', '));

    const rule = `sdk-ts-${run}`;
    const metric = 'sdk_ts_queue_depth';
    const stored = await putAlertRule(metrics, rule, { metric, matchers: [`run=${run}`], op: 'gt', threshold: 10, description: 'A queue is deep.' });
    assert.equal(stored.name, rule);
    assert.equal(stored.for_secs, 0);
    assert.equal(stored.function, 'value');
    assert.ok((await listAlertRules(metrics)).some((r) => r.name === rule));
    await pushSamples(metrics, [{ name: metric, labels: { run }, samples: [{ t: Date.now(), v: 42 }] }]);
    // Rules are evaluated every 15 s; with for_secs 0 the first evaluation fires it.
    const alert = await until('the alert firing', async () => (await listAlerts(viewerMetrics)).find((a) => a.rule === rule && a.state === 'firing'), 45_000);
    assert.equal(alert.value, 42);
    assert.equal(alert.labels.run, run);
    assert.ok(alert.fired_at && Date.parse(alert.fired_at) >= Date.parse(alert.since));

    assert.equal((await apiError(putAlertRule(viewerMetrics, rule, { metric, op: 'lt', threshold: 1 }))).status, 403);
    assert.equal((await apiError(deleteAlertRule(viewerMetrics, rule))).status, 403);
    const invalid = await apiError(putAlertRule(metrics, rule, { metric, matchers: ['run=~('], op: 'gt', threshold: 1 }));
    assert.equal(invalid.status, 400);
    assert.equal(invalid.code, 'invalid_matcher');

    const left = await deleteAlertRule(metrics, rule);
    assert.ok(!left.some((r) => r.name === rule));
    assert.ok(!(await listAlerts(metrics)).some((a) => a.rule === rule), 'its alerts go with it');
    const missing = await apiError(deleteAlertRule(metrics, rule));
    assert.equal(missing.status, 404);
    assert.equal(missing.code, 'rule_not_found');
  });

  it('answers a bad query as AerekosApiError', async () => {
    const matcher = await apiError(queryMetrics(metrics, { name: 'aerekos_workers', match: ['a=~('] }));
    assert.equal(matcher.status, 400);
    assert.equal(matcher.code, 'invalid_matcher');
    assert.match(matcher.message, /a=~\(/);
    assert.ok(matcher.requestId, 'a request id to quote');
    const name = await apiError(queryMetrics(metrics, { name: 'not a name' }));
    assert.equal(name.code, 'invalid_name');
    const range = await apiError(queryMetrics(metrics, { name: 'aerekos_workers', start: new Date(Date.now() + 60_000), end: new Date() }));
    assert.equal(range.code, 'invalid_range');
    await assert.rejects(queryMetrics(metrics, { name: 'aerekos_workers', start: new Date(Number.NaN) }), RangeError);
    // A stranger is refused by metrics_manager itself, through the gateway.
    const stranger = createMetricsManagerClient({ baseUrl: platform!.baseUrl });
    assert.equal((await apiError(queryMetrics(stranger, { name: 'aerekos_workers' }))).status, 401);
    // Users read but do not write.
    assert.equal((await apiError(pushSamples(viewerMetrics, [{ name: 'sdk_ts_refused', samples: [{ t: Date.now(), v: 1 }] }]))).status, 403);
  });
});

describe('metrics_manager helpers against scripted answers', () => {
  const json = (body: unknown) => new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json; charset=utf-8' } });

  it('queryMetrics repeats match and by, and sends Dates as RFC 3339', async () => {
    let asked: URL | undefined;
    const client = createMetricsManagerClient({
      baseUrl: 'http://metrics.invalid',
      token: 't0ken',
      fetch: async (input) => {
        const request = input as Request;
        assert.equal(request.headers.get('Authorization'), 'Bearer t0ken');
        asked = new URL(request.url);
        return json({ resolution: 'raw', step_secs: 15, series: [{ labels: { service: 'x' }, points: [{ t: 1, v: 2 }] }] });
      },
    });
    const answer = await queryMetrics(client, {
      name: 'aerekos_http_requests_total',
      match: ['service=x', 'status=~5..'],
      start: new Date(Date.UTC(2026, 0, 1, 12)),
      end: '2026-01-01T13:00:00Z',
      step_secs: 15,
      function: 'rate',
      window_secs: 60,
      aggregation: 'sum',
      by: ['service', 'operation'],
    });
    assert.deepEqual(answer.series[0]!.points, [{ t: 1, v: 2 }]);
    assert.equal(asked?.pathname, '/api/metrics_manager/query');
    const q = asked!.searchParams;
    assert.deepEqual(q.getAll('match'), ['service=x', 'status=~5..']);
    assert.deepEqual(q.getAll('by'), ['service', 'operation']);
    assert.equal(q.get('start'), '2026-01-01T12:00:00.000Z');
    assert.equal(q.get('end'), '2026-01-01T13:00:00Z');
    assert.equal(q.get('function'), 'rate');
    assert.equal(q.get('window_secs'), '60');
    assert.equal(q.get('aggregation'), 'sum');
    assert.equal(q.get('quantile'), null);
  });

  it('putAlertRule sends the name in the path and the body; the list helpers return the arrays', async () => {
    const asked: { method: string; path: string; body: unknown }[] = [];
    const client = createMetricsManagerClient({
      baseUrl: 'http://metrics.invalid',
      fetch: async (input) => {
        const request = input as Request;
        const path = new URL(request.url).pathname;
        asked.push({ method: request.method, path, body: request.method === 'PUT' ? await request.json() : undefined });
        if (path.endsWith('/alerts')) return json({ alerts: [{ rule: 'r', labels: {}, state: 'pending', value: 1, since: '2026-01-01T00:00:00Z', notified: false }] });
        if (path.endsWith('/names')) return json({ names: [{ name: 'up', series: 3 }] });
        if (request.method === 'DELETE') return json({ rules: [] });
        return json({ name: 'deep-queue', metric: 'q', op: 'gt', threshold: 1 });
      },
    });
    await putAlertRule(client, 'deep-queue', { metric: 'q', op: 'gt', threshold: 1 });
    assert.deepEqual(asked[0], { method: 'PUT', path: '/api/metrics_manager/alert-rules/deep-queue', body: { metric: 'q', op: 'gt', threshold: 1, name: 'deep-queue' } });
    assert.deepEqual(await deleteAlertRule(client, 'deep-queue'), []);
    assert.equal(asked[1]!.path, '/api/metrics_manager/alert-rules/deep-queue');
    assert.equal((await listAlerts(client))[0]!.state, 'pending');
    assert.deepEqual(await listMetricNames(client), [{ name: 'up', series: 3 }]);
  });
});
