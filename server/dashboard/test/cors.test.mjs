// CORS of the platform's own APIs in headless Chromium against a real platform (`aerekos up`): a
// page on a foreign origin that calls the conductor's API or the worker's API with a bearer token
// is stopped at the preflight (the conductor allows no other origin by default; the worker only
// the conductor's), while the dashboard's own origin reads the worker API's instances, as the
// dashboard does for an instance's output.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ADMIN_PASSWORD, eventually, pageServer, recordRequests, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
/** A page server on 127.0.0.1 at a port of its own: an origin neither the conductor's nor the worker's. */
let foreign;
let token;
/** The local worker's API, as the conductor lists it. */
let workerApi;

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
    foreign = await pageServer();
    const login = await fetch(`${platform.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    });
    assert.equal(login.status, 200);
    token = (await login.json()).token;
    workerApi = await eventually('the local worker listed with its api_url', 30_000, async () => {
      const res = await fetch(`${platform.url}/api/workers`, { headers: { authorization: `Bearer ${token}` } });
      return res.ok && (await res.json()).workers.find((w) => w.api_url)?.api_url.replace(/\/$/, '');
    });
  } catch (e) {
    await foreign?.close();
    await browser?.close();
    await platform.stop();
    throw e;
  }
});

after(async () => {
  await foreign?.close();
  await browser?.close();
  await platform?.stop();
});

/**
 * Opens `pageUrl` and, from its document, GETs `url` with the bearer token (a header no simple
 * request carries: Chromium asks with a preflight first). Resolves to what the page's script saw
 * (`{ status, body }` or `{ error }`), the preflights and GETs Chromium sent to `url`, and a report
 * of all of it for a failure's message.
 */
async function fetchFrom(pageUrl, url) {
  const page = await browser.context.newPage();
  const requests = await recordRequests(browser.context, page);
  try {
    await page.goto(pageUrl);
    const result = await page.evaluate(
      ([u, t]) =>
        fetch(u, { headers: { authorization: `Bearer ${t}` } }).then(
          async (r) => ({ status: r.status, body: await r.text() }),
          (e) => ({ error: `${e.name}: ${e.message}` }),
        ),
      [url, token],
    );
    // The DevTools events of the failed or answered requests arrive beside the page's promise.
    await eventually(`the requests to ${url} settled`, 5_000, () => requests.to(url).length > 0 && requests.to(url).every((r) => r.status !== undefined || r.failed !== undefined));
    // The token stays out of a failure's message.
    const shown = requests.to(url).map((r) => ({ ...r, headers: { ...r.headers, ...(r.headers?.authorization && { authorization: 'Bearer (token)' }) } }));
    const report = JSON.stringify({ page: pageUrl, result, requests: shown }, null, 2);
    return { ...result, preflights: requests.preflights(url), gets: requests.actual(url), report };
  } finally {
    await page.close();
  }
}

/** A foreign origin's call to `url` stopped at its preflight: refused, and the GET never answered. */
async function assertRefusedAtPreflight(url) {
  const seen = await fetchFrom(`${foreign.origin}/`, url);
  assert.equal(seen.error, 'TypeError: Failed to fetch', seen.report);
  assert.equal(seen.preflights.length, 1, seen.report);
  const [preflight] = seen.preflights;
  assert.equal(preflight.headers.origin, foreign.origin, seen.report);
  assert.equal(preflight.headers['access-control-request-method'], 'GET', seen.report);
  assert.match(preflight.headers['access-control-request-headers'] ?? '', /\bauthorization\b/, seen.report);
  // Whatever its status, the answer allows no origin (and so not this one).
  const allowOrigin = preflight.responseHeaders?.['access-control-allow-origin'];
  assert.equal(allowOrigin, undefined, `preflight answered ${preflight.status} allowing ${allowOrigin}\n${seen.report}`);
  // Chromium blamed the preflight, and the GET itself was never answered.
  assert.equal(seen.gets.length, 1, seen.report);
  assert.match(seen.gets[0].corsError ?? '', /^Preflight/, seen.report);
  assert.equal(seen.gets[0].status, undefined, seen.report);
}

describe('CORS of the platform\'s APIs', { concurrency: false }, () => {
  test('a foreign origin\'s preflight to the conductor\'s API is refused: the fetch fails in the page', async () => {
    await assertRefusedAtPreflight(`${platform.url}/api/workers`);
  });

  test('a foreign origin\'s preflight to the worker\'s API is refused: the fetch fails in the page', async () => {
    await assertRefusedAtPreflight(`${workerApi}/api/worker/instances`);
  });

  test('the dashboard\'s own origin (the conductor\'s) reads the worker API\'s instances, under the dashboard\'s CSP', async () => {
    const url = `${workerApi}/api/worker/instances`;
    const conductorOrigin = new URL(platform.url).origin;
    const seen = await fetchFrom(`${platform.url}/`, url);
    assert.equal(seen.status, 200, seen.report);
    assert.ok(Array.isArray(JSON.parse(seen.body)), seen.report);
    assert.equal(seen.preflights.length, 1, seen.report);
    const [preflight] = seen.preflights;
    assert.equal(preflight.headers.origin, conductorOrigin, seen.report);
    assert.equal(preflight.responseHeaders?.['access-control-allow-origin'], conductorOrigin, seen.report);
    assert.equal(seen.gets.length, 1, seen.report);
    assert.equal(seen.gets[0].status, 200, seen.report);
    assert.equal(seen.gets[0].responseHeaders?.['access-control-allow-origin'], conductorOrigin, seen.report);
  });
});
