// The dashboard under its Content-Security-Policy, in headless Chromium against a real platform
// (`aerekos up`): the conductor sends a strict policy with every file of the bundle (scripts only
// from the bundle: no inline script, no eval; API calls to this origin and the workers' APIs), and
// no screen breaks it. Chromium reports every violation as a console error and as a
// `securitypolicyviolation` event; both are collected while every screen is opened.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ADMIN_PASSWORD, BIN, VIEWER, eventually, staleBundleFiles, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
let page;
/** Every CSP violation seen: console messages and DOM events, with where they happened. */
const violations = [];
/** Every console error and uncaught exception, to explain a failure. */
const errors = [];
/** Where the page is, for the reports above. */
let where = '(start)';

/**
 * A console message reporting a violation. Chromium words them "Refused to …" (older versions, and
 * some fetches) or "… violates the following Content Security Policy directive … The action has
 * been blocked." (inline script, eval, images, connections). A warning about the policy's own
 * wording (e.g. "contains an invalid source") blocks nothing and is not one.
 */
function isViolation(text) {
  return /Refused to|violates the (following|document's) Content Security Policy/i.test(text);
}

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
  } catch (e) {
    await platform.stop();
    throw e;
  }
  const stale = await staleBundleFiles(platform.url);
  if (stale.length > 0) {
    await browser.close();
    await platform.stop();
    throw new Error(`${BIN} serves an older dashboard than dist/ (${stale.join(', ')} differ): rebuild it (cargo build -p aerekos)`);
  }
  // Injected by the browser itself (DevTools), not by the page: the policy does not apply to it.
  await browser.context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile || '?'}:${e.lineNumber}`);
    });
  });
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('console', (msg) => {
    const text = msg.text();
    if (isViolation(text)) violations.push(`${where}: console ${msg.type()}: ${text}`);
    if (msg.type() === 'error') errors.push(`${where}: ${text}`);
  });
  page.on('pageerror', (e) => errors.push(`${where}: uncaught ${e.message}`));
});

after(async () => {
  await browser?.close();
  await platform?.stop();
});

const byTestId = (id) => page.getByTestId(id);
const dialog = () => page.getByRole('alertdialog');

/** The violations the page's document saw since it loaded (before leaving it). */
async function collectDomViolations() {
  const seen = await page.evaluate(() => window.__cspViolations ?? []).catch(() => []);
  for (const v of seen) violations.push(`${where}: event: ${v}`);
  await page.evaluate(() => {
    window.__cspViolations = [];
  }).catch(() => {});
}

/**
 * Loads `path` as a new document (a deep link, a reload: the bundle runs again under the policy),
 * waits for what shows the screen did its work, and collects the violations.
 */
async function visit(path, ready) {
  await collectDomViolations();
  where = path;
  await page.goto(`${platform.url}${path}`);
  await ready();
  // Late requests and styles of the screen.
  await page.waitForTimeout(750);
  await collectDomViolations();
}

function assertNoViolations() {
  assert.deepEqual(violations, [], `CSP violations:\n${violations.join('\n')}\nconsole errors:\n${errors.join('\n')}`);
}

describe('content security policy', { concurrency: false }, () => {
  test('every file of the dashboard comes with the strict policy; the API calls it allows include the worker\'s API', async () => {
    const token = (await (await fetch(`${platform.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    })).json()).token;
    const { workers } = await (await fetch(`${platform.url}/api/workers`, { headers: { authorization: `Bearer ${token}` } })).json();
    const apiUrl = workers[0]?.api_url;
    assert.ok(apiUrl, JSON.stringify(workers));

    for (const path of ['/', '/users', '/audit?failed=1', '/assets/index.js']) {
      const res = await fetch(`${platform.url}${path}`);
      assert.equal(res.status, 200, path);
      const csp = res.headers.get('content-security-policy') ?? '';
      const directives = Object.fromEntries(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values]));
      assert.deepEqual(directives['script-src'], ["'self'"], `${path}: ${csp}`);
      assert.deepEqual(directives['style-src'], ["'self'", "'unsafe-inline'"], `${path}: ${csp}`);
      assert.ok(directives['connect-src']?.includes("'self'"), `${path}: ${csp}`);
      assert.ok(directives['connect-src']?.includes(new URL(apiUrl).origin), `${path}: the worker's API (${apiUrl}) in ${csp}`);
      assert.doesNotMatch(csp, /unsafe-eval/);
    }
    // The page itself holds no inline script for the policy to refuse.
    const html = await (await fetch(`${platform.url}/`)).text();
    for (const tag of html.match(/<script\b[^>]*>/g) ?? []) assert.match(tag, /\bsrc="/, `an inline script: ${tag}`);
  });

  test('no CSP violation while every screen is used, as an admin and as a viewer', async () => {
    // Signed out: the login screen, and a wrong password's error.
    await visit('/login', async () => {
      await byTestId('login-screen').waitFor();
      await byTestId('login-username').fill('admin');
      await byTestId('login-password').fill('not-the-password');
      await byTestId('login-submit').click();
      await byTestId('login-error').waitFor();
      await byTestId('login-password').fill(ADMIN_PASSWORD);
      await byTestId('login-submit').click();
      await byTestId('overview-screen').waitFor();
    });

    await visit('/', async () => {
      await byTestId('overview-screen').waitFor();
      await eventually('one live worker', 20_000, async () => /1 live/.test(await byTestId('stat-workers').innerText()));
      await byTestId('chart-cpu').waitFor();
    });
    await visit('/workers', async () => {
      await byTestId('workers-table').getByRole('row').filter({ hasText: 'local' }).waitFor();
    });
    const { workers } = await (await page.request.get(`${platform.url}/api/workers`, { headers: await authHeader() })).json();
    await visit(`/workers/${workers[0].id}`, async () => {
      await byTestId('worker-detail-screen').waitFor();
      await byTestId('worker-status').waitFor();
    });
    await visit('/services', async () => {
      await byTestId('services-table').getByText('key_manager', { exact: true }).waitFor();
    });
    // A service's detail, and its instance's output read from the worker's own API (another
    // origin: connect-src must name it).
    await visit('/services/key_manager', async () => {
      await byTestId('service-detail').waitFor();
      await eventually('key_manager healthy', 90_000, async () => (await byTestId('service-healthy').innerText()).trim() === '1 / 1');
      await byTestId('service-instances').getByRole('button', { name: 'Logs' }).first().click();
      await eventually('the instance output', 20_000, async () => (await byTestId('instance-logs-text').innerText()).trim().length > 0);
    });
    // The kept lines of a service, and following them (a server-sent-event stream from this origin).
    await visit('/logs?service=key_manager', async () => {
      await byTestId('logs-table').waitFor({ timeout: 30_000 });
      await byTestId('logs-follow').click();
      await eventually('the tail live', 10_000, async () => /live/i.test(await byTestId('logs-tail-state').innerText()));
    });
    // Metrics_manager's alerts, rules and scrape targets; a worker's and a service's charts over a day.
    await visit('/alerts', async () => {
      await byTestId('alerts-table').waitFor({ timeout: 90_000 });
      await byTestId('scrape-targets-table').waitFor();
    });
    await visit(`/workers/${workers[0].id}?range=24h`, async () => {
      await byTestId('worker-history').waitFor();
      await byTestId('range-7d').click();
      await eventually('the range in the address', 5_000, async () => new URL(page.url()).searchParams.get('range') === '7d');
    });
    await visit('/services/key_manager?range=24h', async () => {
      await byTestId('service-history').waitFor();
    });
    await visit('/volumes', async () => {
      await byTestId('volume-worker-key_manager').waitFor();
    });
    await visit('/volumes/key_manager', async () => {
      await byTestId('backups-card').waitFor();
      await byTestId('volume-move-key_manager').click();
      await dialog().waitFor();
      await dialog().getByRole('button', { name: 'Cancel' }).click();
      await dialog().waitFor({ state: 'detached' });
    });
    await visit('/keys', async () => {
      await byTestId('keys-screen').waitFor();
      await byTestId('keys-table').waitFor({ timeout: 30_000 });
    });
    await visit('/storage', async () => {
      await byTestId('storage-screen').waitFor();
      await page.waitForTimeout(1000);
    });
    // A secret's versions, one value revealed (secrets_manager may still be starting: the list waits).
    await visit('/secrets', async () => {
      await byTestId('secrets-screen').waitFor();
      await byTestId('secrets-table').waitFor({ timeout: 90_000 });
    });
    const made = await page.request.post(`${platform.url}/api/secrets_manager/secrets`, {
      headers: await authHeader(),
      data: { name: 'csp/probe', value: { bytes: Buffer.from('a value for the CSP test').toString('base64') } },
    });
    assert.equal(made.status(), 200, await made.text());
    await visit(`/secrets/${encodeURIComponent('csp/probe')}`, async () => {
      await byTestId('secret-reveal-1').click();
      await byTestId('secret-value-1').waitFor();
    });
    await visit('/users', async () => {
      await byTestId('users-table').waitFor();
      await byTestId('user-name-admin').click();
      await byTestId('session-current').waitFor();
      await byTestId('new-user-password').fill('short');
      await byTestId('user-reset-password-ann').click();
      await dialog().waitFor();
      await dialog().getByRole('button', { name: 'Cancel' }).click();
      await dialog().waitFor({ state: 'detached' });
    });
    await visit('/audit', async () => {
      await byTestId('audit-table').waitFor();
      await byTestId('audit-failed').click();
      await eventually('failed only', 5_000, async () => new URL(page.url()).searchParams.get('failed') === '1');
      await byTestId('audit-table').waitFor();
    });
    await visit('/settings', async () => {
      await byTestId('registration-token').waitFor();
      await byTestId('me-username').waitFor();
    });
    await visit('/no-such-screen', async () => {
      await page.getByText('Nothing lives at /no-such-screen.').waitFor();
    });

    // In-app navigation through the sidebar, in one document.
    where = 'sidebar navigation';
    await page.goto(`${platform.url}/`);
    await byTestId('overview-screen').waitFor();
    for (const [nav, screen] of [
      ['nav-workers', 'workers-screen'],
      ['nav-services', 'services-screen'],
      ['nav-jobs', 'jobs-screen'],
      ['nav-logs', 'logs-screen'],
      ['nav-alerts', 'alerts-screen'],
      ['nav-volumes', 'volumes-screen'],
      ['nav-keys', 'keys-screen'],
      ['nav-storage', 'storage-screen'],
      ['nav-secrets', 'secrets-screen'],
      ['nav-users', 'users-screen'],
      ['nav-audit', 'audit-screen'],
      ['nav-settings', 'settings-screen'],
      ['nav-overview', 'overview-screen'],
    ]) {
      await byTestId(nav).click();
      await byTestId(screen).waitFor();
      await page.waitForTimeout(300);
    }
    // The user menu: changing one's password (opened, then cancelled), signing out.
    await byTestId('change-password').click();
    await dialog().waitFor();
    await byTestId('new-password').fill('a new password');
    await dialog().getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'detached' });
    await byTestId('sign-out').click();
    await byTestId('login-screen').waitFor();
    await collectDomViolations();

    // A viewer: the screens for admins say so.
    where = 'viewer';
    await byTestId('login-username').fill(VIEWER.username);
    await byTestId('login-password').fill(VIEWER.password);
    await byTestId('login-submit').click();
    await byTestId('overview-screen').waitFor();
    await visit('/users', async () => {
      await byTestId('users-admins-only').waitFor();
    });
    await visit('/audit', async () => {
      await byTestId('audit-admins-only').waitFor();
    });
    await visit(`/secrets/${encodeURIComponent('csp/probe')}`, async () => {
      await byTestId('secret-viewer-note').waitFor();
    });

    assertNoViolations();
  });
});

/** The signed-in page's bearer token, for a request made beside the page. */
async function authHeader() {
  const session = await page.evaluate(() => JSON.parse(sessionStorage.getItem('aerekos.session')));
  return { authorization: `Bearer ${session.token}` };
}
