// The charts drawn from metrics_manager's history, in headless Chromium against a real platform
// (`aerekos up`, which deploys metrics_manager; every 10 s it scrapes the conductor, the local
// worker, which serves its own API here (a free WORKER_API_PORT; with `off` it would have no
// /metrics to scrape), and every service instance): a worker's page draws its CPU, memory and
// disk, a service's page its requests and latency; reloaded, each draws at once every point it had
// (they come from the history, not from sampling in the browser); the range is kept in the
// address; the Alerts screen and the overview list a firing alert; while metrics_manager does not
// answer, the charts say so. Screenshotted into docs/screenshots/metrics.png.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { createMetricsManagerClient, deleteAlertRule, listAlerts, login, pushSamples, putAlertRule, queryMetrics, unwrap } from '@aerekos/sdk';

import { ADMIN_PASSWORD, BIN, VIEWER, eventually, screenshot, staleBundleFiles, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
let page;
/** The conductor and metrics_manager through the SDK, as the admin. */
let conductor;
let metrics;
/** The local worker's id. */
let workerId;
/** The metrics_manager queries the page sent (their URLs), to see where the charts came from. */
const queries = [];

const run = randomBytes(4).toString('hex');
const RULE = `dashboard-test-${run}`;

/** The points of the first series `query` answers over the last hour at a 15 s step. */
async function points(query) {
  const answer = await queryMetrics(metrics, { step_secs: 15, window_secs: 60, ...query });
  return answer.series[0]?.points.length ?? 0;
}

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
  } catch (e) {
    await platform.stop();
    throw e;
  }
  // The executable embeds dist/ when it is compiled: one built before the last `npm run build`
  // serves an older dashboard, without these charts.
  const stale = await staleBundleFiles(platform.url);
  if (stale.length > 0) {
    await browser.close();
    await platform.stop();
    throw new Error(`${BIN} serves an older dashboard than dist/ (${stale.join(', ')} differ): rebuild it (cargo build -p aerekos)`);
  }
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/api/metrics_manager/query') queries.push(r.url());
  });

  ({ client: conductor } = await login(platform.url, 'admin', ADMIN_PASSWORD));
  metrics = createMetricsManagerClient({ baseUrl: platform.url, token: conductor.token() });
  ({ workers: [{ id: workerId }] } = await unwrap(conductor.GET('/api/workers')));
  // `up` deployed metrics_manager; the gateway answers 503 until it is healthy. Then some history:
  // three scrapes of the worker, and enough of key_manager's for a rate and a latency (a rate needs
  // two samples in its window).
  await eventually("three points of the worker's CPU in metrics_manager", 120_000, async () =>
    (await points({ name: 'aerekos_worker_cpu_usage_percent', match: [`worker=${workerId}`], function: 'avg_over_time', window_secs: 15 })) >= 3,
  );
  await eventually("three points of key_manager's p50 latency", 60_000, async () =>
    (await points({ name: 'aerekos_http_request_duration_seconds_bucket', match: ['service=key_manager'], function: 'rate', quantile: 0.5 })) >= 3,
  );
});

after(async () => {
  if (metrics) await deleteAlertRule(metrics, RULE).catch(() => {});
  await browser?.close();
  await platform?.stop();
});

const byTestId = (id) => page.getByTestId(id);

/** What chart `id` draws: its points (0 while it shows a message instead) and bars, from its plot's label. */
async function drawn(id) {
  const label = (await byTestId(id).getByRole('img').getAttribute('aria-label')) ?? '';
  const m = /: (\d+) points? in (\d+) of (\d+) bars/.exec(label);
  assert.ok(m, `the plot of ${id} says what it draws: ${label}`);
  return { points: Number(m[1]), bars: Number(m[2]), label };
}

/** Waits until every chart of `ids` draws at least `min` points (not its empty state), for up to `ms`. */
async function charted(ids, min, ms) {
  const seen = {};
  await eventually(`${ids.join(', ')} drawn with at least ${min} points`, ms, async () => {
    for (const id of ids) {
      const d = await drawn(id);
      seen[id] = d.points;
      if (d.points < min || d.bars < 1) return false;
      if ((await byTestId(`${id}-empty`).count()) > 0) return false;
    }
    return true;
  });
  return seen;
}

async function signIn(username, password) {
  await page.goto(`${platform.url}/`);
  await byTestId('login-username').fill(username);
  await byTestId('login-password').fill(password);
  await byTestId('login-submit').click();
  await byTestId('overview-screen').waitFor();
}

describe('metrics', { concurrency: false }, () => {
  const WORKER_CHARTS = ['worker-chart-cpu', 'worker-chart-memory', 'worker-chart-disk'];
  const SERVICE_CHARTS = ['service-chart-requests', 'service-chart-p50', 'service-chart-p99'];

  test("a worker's page draws its CPU, memory and disk from the history, and again at once after a reload", async () => {
    await signIn('admin', ADMIN_PASSWORD);
    await page.goto(`${platform.url}/workers/${workerId}`);
    await byTestId('worker-history').waitFor();
    const before = await charted(WORKER_CHARTS, 3, 30_000);
    assert.match(await byTestId('worker-chart-cpu-value').innerText(), /\d%/);
    assert.match(await byTestId('worker-chart-memory-value').innerText(), /\d (B|KiB|MiB|GiB|TiB)/i);
    assert.ok(queries.some((q) => new URL(q).searchParams.get('match') === 'job=worker'), 'asked metrics_manager');

    // Reloaded: a new document, with nothing sampled yet. The charts have every point they had
    // (3 or more, which took over 20 s of scrapes to gather), from metrics_manager's history.
    const asked = queries.length;
    await page.reload();
    await byTestId('worker-history').waitFor();
    const after = await charted(WORKER_CHARTS, 3, 15_000);
    for (const id of WORKER_CHARTS) assert.ok(after[id] >= before[id], `${id}: ${after[id]} points after the reload, ${before[id]} before`);
    const fresh = queries.slice(asked).map((q) => new URL(q).searchParams);
    assert.ok(fresh.some((q) => q.get('name') === 'aerekos_worker_cpu_usage_percent' && q.getAll('match').includes(`worker=${workerId}`)), 'the reload asked metrics_manager for the history');
    for (const q of fresh) {
      assert.equal(q.get('step_secs'), '15', 'the last hour at a 15 s step');
      assert.equal(Date.parse(q.get('end')) - Date.parse(q.get('start')), 3_600_000);
    }
  });

  test('the range picker asks for the last day (5 min steps) and keeps it in the address, across a reload', async () => {
    const asked = queries.length;
    await byTestId('range-24h').click();
    await eventually('the range in the address', 5_000, async () => new URL(page.url()).searchParams.get('range') === '24h');
    // The 1-minute rollups hold the minutes scraped so far: a point at the range's end.
    await charted(['worker-chart-cpu', 'worker-chart-disk'], 1, 75_000);
    // (A query of the last hour may have left just before the click.)
    const day = queries.slice(asked).map((q) => new URL(q).searchParams).filter((q) => q.get('step_secs') !== '15');
    assert.ok(day.length >= 4, 'the four queries of the worker\'s charts');
    for (const q of day) {
      assert.equal(q.get('step_secs'), '300', String(q));
      assert.equal(q.get('window_secs'), '300', String(q));
      assert.equal(Date.parse(q.get('end')) - Date.parse(q.get('start')), 86_400_000);
    }
    assert.equal(await byTestId('worker-chart-cpu').getByText('24 h ago').count(), 1);

    await page.reload();
    await byTestId('worker-history').waitFor();
    assert.equal(new URL(page.url()).searchParams.get('range'), '24h');
    await charted(['worker-chart-cpu'], 1, 10_000);
    await byTestId('range-1h').click();
    await eventually('the default range, left out of the address', 5_000, async () => new URL(page.url()).search === '');
    await charted(WORKER_CHARTS, 3, 10_000);
  });

  test("a service's page draws its requests and latency; reloaded, at once again", async () => {
    await page.goto(`${platform.url}/services/key_manager`);
    await byTestId('service-history').waitFor();
    const before = await charted(SERVICE_CHARTS, 3, 30_000);
    assert.match(await byTestId('service-chart-requests-value').innerText(), /\/s$/i);
    assert.match(await byTestId('service-chart-p99-value').innerText(), /\d (ms|s)$/i);
    // No 5xx answer: the chart says so rather than drawing nothing silently.
    assert.match(await byTestId('service-chart-errors-empty').innerText(), /No 5xx answer/);

    await page.reload();
    await byTestId('service-history').waitFor();
    const after = await charted(SERVICE_CHARTS, 3, 15_000);
    for (const id of SERVICE_CHARTS) assert.ok(after[id] >= before[id], `${id}: ${after[id]} points after the reload, ${before[id]} before`);
  });

  test('the Alerts screen and the overview list a firing alert; a viewer sees it too', async () => {
    const metric = 'dashboard_test_queue_depth';
    await putAlertRule(metrics, RULE, { metric, matchers: [`run=${run}`], op: 'gt', threshold: 10, description: 'The test queue is deep.' });
    await pushSamples(metrics, [{ name: metric, labels: { run }, samples: [{ t: Date.now(), v: 42 }] }]);
    // Rules are evaluated every 15 s.
    await eventually('the alert firing', 45_000, async () => (await listAlerts(metrics)).some((a) => a.rule === RULE && a.state === 'firing'));

    await byTestId('nav-alerts').click();
    await byTestId('alerts-screen').waitFor();
    assert.equal(new URL(page.url()).pathname, '/alerts');
    const row = byTestId('alerts-table').getByRole('row').filter({ hasText: RULE });
    await row.waitFor();
    assert.match(await row.innerText(), /firing/i);
    assert.match(await row.innerText(), new RegExp(`run=${run}`));
    assert.match(await row.innerText(), /\b42\b/);
    const rule = byTestId('alert-rules-table').getByRole('row').filter({ hasText: RULE });
    assert.match(await rule.innerText(), new RegExp(`${metric}\\{run=${run}\\} > 10`));
    for (const name of ['worker_lost', 'disk_almost_full', 'http_5xx_rate', 'instance_restarting']) {
      await byTestId('alert-rules-table').getByText(name, { exact: true }).waitFor();
    }
    const target = byTestId('scrape-targets-table').getByRole('row').filter({ hasText: 'key_manager' });
    assert.match(await target.innerText(), /up/i);

    await byTestId('nav-overview').click();
    await byTestId('overview-screen').waitFor();
    await byTestId('overview-alerts-table').getByText(RULE, { exact: true }).waitFor();
    // The overview's charts come from the history too.
    await charted(['chart-cpu', 'chart-memory', 'chart-disk', 'chart-workers'], 3, 30_000);
    await byTestId('overview-alerts-open').click();
    await byTestId('alerts-screen').waitFor();

    await byTestId('sign-out').click();
    await byTestId('login-screen').waitFor();
    await signIn(VIEWER.username, VIEWER.password);
    await page.goto(`${platform.url}/alerts`);
    await byTestId('alerts-table').getByRole('row').filter({ hasText: RULE }).waitFor();
    await page.goto(`${platform.url}/workers/${workerId}`);
    await charted(WORKER_CHARTS, 3, 15_000);

    await deleteAlertRule(metrics, RULE);
  });

  test('while metrics_manager does not answer, the charts and the Alerts screen say so', async () => {
    // The gateway's answer while metrics_manager has no healthy instance, stubbed in the browser.
    await page.route(
      (u) => u.pathname.startsWith('/api/metrics_manager/'),
      (route) =>
        route.fulfill({
          status: 503,
          json: { code: 'service_unavailable', message: 'no healthy instance of metrics_manager; see GET /api/services/metrics_manager/deployments', request_id: 'stub-request' },
        }),
    );
    try {
      await page.reload();
      await byTestId('worker-history').waitFor();
      // (Each says it is reading the history until the answer comes.)
      for (const id of WORKER_CHARTS) {
        await eventually(`${id} saying metrics_manager is not running`, 10_000, async () => (await byTestId(`${id}-empty`).innerText()).trim() === 'metrics_manager is not running');
      }
      assert.match(await byTestId('history-error').innerText(), /metrics_manager is not running[\s\S]*no healthy instance of metrics_manager/);
      await page.goto(`${platform.url}/alerts`);
      assert.match(await byTestId('alerts-error').innerText(), /metrics_manager is not running/);
      await page.goto(`${platform.url}/`);
      await byTestId('overview-alerts-unavailable').waitFor();
      await eventually('the CPU chart saying metrics_manager is not running', 10_000, async () => (await byTestId('chart-cpu-empty').innerText()).trim() === 'metrics_manager is not running');
    } finally {
      await page.unrouteAll({ behavior: 'wait' });
    }
    // Answering again: the charts come back with the next ask (a reload here).
    await page.reload();
    await charted(['chart-cpu'], 3, 15_000);
  });

  test("the service's page, screenshotted with the platform's history so far", async () => {
    await page.goto(`${platform.url}/services/key_manager`);
    await charted(SERVICE_CHARTS, 3, 30_000);
    await byTestId('service-history').scrollIntoViewIfNeeded();
    await screenshot(page, 'metrics');
  });
});
