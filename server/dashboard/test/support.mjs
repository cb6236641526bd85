// What the browser tests share: starting the real platform (`aerekos up` in a fresh directory,
// as a user runs it) and a headless Chromium driven by playwright-core.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const DASHBOARD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = resolve(DASHBOARD_DIR, '../..');
export const BIN = resolve(DASHBOARD_DIR, process.env.AEREKOS_BIN ?? '../../target/debug/aerekos');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Where the screenshots go: the README's images by default; elsewhere with DASHBOARD_SCREENSHOTS
// (e.g. a CI run that should leave the working tree as it was).
export const SCREENSHOTS = resolve(process.env.DASHBOARD_SCREENSHOTS ?? join(REPO_DIR, 'docs/screenshots'));

export const ADMIN_PASSWORD = 'dashboard-test-admin-password';
export const VIEWER = { username: 'ann', password: 'dashboard-test-viewer-password' };

/** A free TCP port on 127.0.0.1 (the OS picks; closed again before use). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value (returned) or `timeoutMs` passes (throws `what`). */
export async function eventually(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/**
 * `aerekos up` in a fresh temporary directory: the conductor on a free port, the local worker's
 * API on another, an admin password and a viewer user of our choosing. Resolves once the
 * platform printed its summary (the "Ctrl-C stops" line) and /health answers. `extraEnv` is laid
 * over the environment it runs with (`{ RUST_LOG: 'info' }`).
 */
export async function startPlatform(extraEnv = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build -p aerekos\` (or set AEREKOS_BIN)`);
  const dir = await mkdtemp(join(tmpdir(), 'aerekos-dashboard-'));
  const usersFile = join(dir, 'users.json');
  await writeFile(usersFile, JSON.stringify([{ username: VIEWER.username, role: 'viewer', password: VIEWER.password }]));
  const port = await freePort();
  const workerPort = await freePort();
  // Instance ports away from the Rust tests' blocks (20000–29549).
  const instancePorts = process.env.AEREKOS_INSTANCE_PORTS ?? '29600-29699';
  const env = {
    ...process.env,
    DATA_DIR: join(dir, 'data'),
    CONDUCTOR_HOST: '127.0.0.1',
    CONDUCTOR_PORT: String(port),
    WORKER_API_HOST: '127.0.0.1',
    WORKER_API_PORT: String(workerPort),
    AEREKOS_ADMIN_PASSWORD: ADMIN_PASSWORD,
    AEREKOS_USERS_FILE: usersFile,
    AEREKOS_INSTANCE_PORTS: instancePorts,
    HEARTBEAT_INTERVAL: '1',
    RUST_LOG: process.env.RUST_LOG ?? 'warn',
    ...extraEnv,
  };
  delete env.DATABASE_PATH;
  // The tests count on the default allow-lists (the conductor: none; the worker: the conductor's origin).
  delete env.CORS_ALLOWED_ORIGINS;
  const proc = spawn(BIN, ['up'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  let exited = null;
  proc.on('exit', (code, signal) => (exited = { code, signal }));

  const platform = {
    dir,
    proc,
    url: `http://127.0.0.1:${port}`,
    workerUrl: `http://127.0.0.1:${workerPort}`,
    output: () => `--- stdout\n${stdout}\n--- stderr\n${stderr.slice(-4000)}`,
    /** Ctrl-C, as a user stops it; then the directory goes. */
    async stop() {
      if (exited === null) {
        proc.kill('SIGINT');
        const stopped = await eventually('aerekos up to stop after SIGINT', 30_000, () => exited !== null).catch(() => false);
        if (!stopped) proc.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
  try {
    await eventually('aerekos up to print its summary', 60_000, () => {
      if (exited !== null) throw new Error(`aerekos up exited early (${JSON.stringify(exited)})\n${platform.output()}`);
      return stdout.includes('Ctrl-C stops');
    });
    const listening = /aerekos conductor listening on (\S+)/.exec(stdout);
    if (!listening || listening[1] !== platform.url) throw new Error(`unexpected listening line\n${platform.output()}`);
    await eventually('/health', 30_000, async () => (await fetch(`${platform.url}/health`)).ok);
  } catch (e) {
    await platform.stop();
    throw e;
  }
  return platform;
}

/** Headless Chromium (Debian's) in a fresh profile; downloads accepted. */
export async function startBrowser() {
  const profile = await mkdtemp(join(tmpdir(), 'aerekos-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

/** Header names in lower case: to read headers as Chromium reports them (in any case), and as SigV4 signs them. */
export const lowerKeys = (headers = {}) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));

/**
 * An HTTP server on 127.0.0.1 (a port of its own: an origin of its own, neither the conductor's
 * nor a worker's) serving `html` at every path.
 */
export async function pageServer(html = '<!doctype html><meta charset="utf-8"><title>elsewhere</title>') {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    // Chromium keeps a connection to the page's server open after the page closes: close()
    // alone waits for Node to time it out (about two minutes).
    close: () => new Promise((r) => {
      server.close(r);
      server.closeAllConnections();
    }),
  };
}

/**
 * Records the requests Chromium sends for `page` (a page of `context`), with their answers or CORS
 * errors, from the DevTools protocol: Playwright leaves preflights out of its own network events.
 * `to(url)` lists those to `url` as `{ method, url, headers, status, responseHeaders, failed,
 * corsError }` (header names in lower case); `preflights(url)` and `actual(url)` split them.
 */
export async function recordRequests(context, page) {
  const cdp = await context.newCDPSession(page);
  const requests = new Map();
  const seen = (id) => requests.get(id) ?? requests.set(id, {}).get(id);
  cdp.on('Network.requestWillBeSent', (e) => Object.assign(seen(e.requestId), { method: e.request.method, url: e.request.url, headers: lowerKeys(e.request.headers) }));
  cdp.on('Network.responseReceived', (e) => Object.assign(seen(e.requestId), { status: e.response.status, responseHeaders: lowerKeys(e.response.headers) }));
  cdp.on('Network.loadingFailed', (e) => Object.assign(seen(e.requestId), { failed: e.errorText, corsError: e.corsErrorStatus?.corsError }));
  await cdp.send('Network.enable');
  const to = (url) => [...requests.values()].filter((r) => r.url === url);
  return {
    to,
    preflights: (url) => to(url).filter((r) => r.method === 'OPTIONS'),
    actual: (url) => to(url).filter((r) => r.method !== 'OPTIONS'),
  };
}

/** Saves a screenshot of the page as docs/screenshots/<name>.png. */
export async function screenshot(page, name) {
  await mkdir(SCREENSHOTS, { recursive: true });
  // Let fonts and the last answers settle so the picture is the screen as people see it.
  await page.evaluate(() => document.fonts.ready);
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: false });
}

const DIST = join(DASHBOARD_DIR, 'dist');

async function distFiles(dir = DIST) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await distFiles(p)));
    else out.push(relative(DIST, p).split('\\').join('/'));
  }
  return out.sort();
}

/**
 * The files of dist/ that the platform at `url` does not serve byte for byte: the executable embeds
 * the bundle at compile time, so one built before the last `npm run build` serves an older one.
 */
export async function staleBundleFiles(url) {
  const stale = [];
  for (const file of await distFiles()) {
    const served = await fetch(`${url}/${file === 'index.html' ? '' : file}`);
    const body = Buffer.from(await served.arrayBuffer());
    if (!served.ok || !body.equals(await readFile(join(DIST, file)))) stale.push(file);
  }
  return stale;
}
