// End-to-end tests of the SDK against a real conductor process (no mocks of the API), plus the
// error fallbacks that a real conductor never produces (proxy pages, network failures).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  AerekosApiError,
  createConductorClient,
  login,
  unwrap,
  type ConductorClient,
  type WorkerResources,
} from '../src/index.js';

// This file runs from dist-test/test/, so the sdk-ts directory is two levels up.
const SDK_DIR = fileURLToPath(new URL('../../', import.meta.url));
const BIN = resolve(SDK_DIR, process.env.AEREKOS_BIN ?? '../target/debug/aerekos');
const ADMIN_PASSWORD = `sdk-test-${randomUUID()}`;
const STARTUP_TIMEOUT_MS = 30_000;

interface Conductor {
  proc: ChildProcess;
  baseUrl: string;
  dataDir: string;
  stderr: () => string;
}

async function startConductor(): Promise<Conductor> {
  if (!existsSync(BIN)) {
    throw new Error(`conductor binary not found at ${BIN}; build it or set AEREKOS_BIN`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'aerekos-sdk-ts-'));
  const proc = spawn(BIN, ['conductor'], {
    env: {
      ...process.env,
      CONDUCTOR_HOST: '127.0.0.1',
      CONDUCTOR_PORT: '0',
      DATA_DIR: dataDir,
      AEREKOS_ADMIN_PASSWORD: ADMIN_PASSWORD,
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Keep draining both pipes for the whole run: a full pipe would block the conductor's logging.
  let stdout = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout = (stdout + chunk).slice(-64_000);
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-64_000);
  });

  const baseUrl = await new Promise<string>((resolveUrl, reject) => {
    const fail = (why: string) => {
      cleanup();
      reject(new Error(`conductor did not start: ${why}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
    };
    const onData = () => {
      const m = /aerekos conductor listening on (http:\/\/\S+)/.exec(stdout);
      if (m) {
        cleanup();
        resolveUrl(m[1]!);
      }
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited (code ${code}, signal ${signal})`);
    const onError = (err: Error) => fail(err.message);
    const timer = setTimeout(() => fail(`no listening line within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
    const cleanup = () => {
      clearTimeout(timer);
      proc.stdout!.off('data', onData);
      proc.off('exit', onExit);
      proc.off('error', onError);
    };
    proc.stdout!.on('data', onData);
    proc.on('exit', onExit);
    proc.on('error', onError);
  }).catch(async (err: unknown) => {
    proc.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });

  return { proc, baseUrl, dataDir, stderr: () => stderr };
}

async function stopConductor(c: Conductor): Promise<void> {
  if (c.proc.exitCode === null && c.proc.signalCode === null) {
    const exited = new Promise<void>((done) => c.proc.once('exit', () => done()));
    c.proc.kill('SIGTERM');
    const timer = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await rm(c.dataDir, { recursive: true, force: true });
}

/** Asserts that `promise` rejects with an AerekosApiError and returns it for further checks. */
async function apiError(promise: Promise<unknown>): Promise<AerekosApiError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof AerekosApiError, `expected AerekosApiError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

const resources: WorkerResources = {
  cpu_cores: 4,
  cpu_usage_percent: 12.5,
  memory_total_bytes: 8 * 1024 ** 3,
  memory_available_bytes: 6 * 1024 ** 3,
  disk_total_bytes: 100 * 1024 ** 3,
  disk_free_bytes: 80 * 1024 ** 3,
  drivers: [],
  network: [],
};

describe('conductor API through @aerekos/sdk', () => {
  let conductor: Conductor;
  let admin: ConductorClient;

  before(async () => {
    conductor = await startConductor();
  });

  after(async () => {
    if (conductor) await stopConductor(conductor);
  });

  it('logs in as admin and `me` returns the admin user', async () => {
    const { client, session } = await login(conductor.baseUrl, 'admin', ADMIN_PASSWORD);
    admin = client;
    assert.equal(session.token_type, 'Bearer');
    assert.ok(session.token.length > 20, 'token looks like a JWT');
    assert.equal(client.token(), session.token);
    assert.equal(session.user.username, 'admin');
    assert.equal(session.user.role, 'admin');
    assert.ok(session.expires_in_secs > 0);
    assert.ok(Date.parse(session.expires_at) > Date.now(), 'expires in the future');

    const me = await unwrap(client.GET('/api/auth/me'));
    assert.equal(me.username, 'admin');
    assert.equal(me.id, session.user.id);
  });

  it('registers a worker with the registration token and lists it as live', async () => {
    const empty = await unwrap(admin.GET('/api/workers'));
    assert.deepEqual(empty.workers, []);
    assert.equal(empty.next_cursor, undefined);

    const reg = await unwrap(admin.GET('/api/token'));
    assert.ok(reg.token.length > 0);

    // Registration authenticates with the registration token in the body, not a user token.
    const anonymous = createConductorClient({ baseUrl: conductor.baseUrl });
    const registered = await unwrap(
      anonymous.POST('/api/workers/register', {
        body: {
          registration_token: reg.token,
          hostname: 'sdk-test-host',
          ip_address: '10.0.0.7',
          labels: { zone: 'rack-1' },
          resources,
        },
      }),
    );
    assert.equal(registered.created, true);
    assert.match(registered.worker_id, /^[0-9a-f-]{36}$/);
    assert.ok(registered.worker_credential.length > 0);
    assert.ok(registered.heartbeat_interval_secs > 0);

    const page = await unwrap(admin.GET('/api/workers'));
    assert.equal(page.workers.length, 1);
    const worker = page.workers.find((w) => w.id === registered.worker_id);
    assert.ok(worker, 'the registered worker is listed');
    assert.equal(worker.status, 'live');
    assert.equal(worker.hostname, 'sdk-test-host');
    assert.equal(worker.ip_address, '10.0.0.7');
    assert.deepEqual(worker.labels, { zone: 'rack-1' });
    assert.equal(worker.resources.cpu_cores, 4);

    // Query parameters are serialized from the typed `params.query`.
    const live = await unwrap(admin.GET('/api/workers', { params: { query: { status: 'live', limit: 10 } } }));
    assert.deepEqual(live.workers.map((w) => w.id), [registered.worker_id]);
    const lost = await unwrap(admin.GET('/api/workers', { params: { query: { status: 'lost' } } }));
    assert.deepEqual(lost.workers, []);

    const one = await unwrap(admin.GET('/api/workers/{id}', { params: { path: { id: registered.worker_id } } }));
    assert.equal(one.id, registered.worker_id);
    assert.equal(one.status, 'live');
  });

  it('wrong password: 401 invalid_credentials with a request id', async () => {
    const err = await apiError(login(conductor.baseUrl, 'admin', 'definitely-not-the-password'));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_credentials');
    assert.ok(err.requestId && err.requestId.length > 0, 'has a request id');
    assert.ok(err.body, 'body is an ErrorBody');
    assert.equal(err.body.request_id, err.requestId);
    assert.ok(err.body.message.length > 0);
  });

  it('no token: 401 ErrorBody', async () => {
    const anonymous = createConductorClient({ baseUrl: conductor.baseUrl });
    const err = await apiError(unwrap(anonymous.GET('/api/workers')));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthorized');
    assert.ok(err.body);
    assert.equal(typeof err.body.message, 'string');
    assert.ok(err.requestId);

    // setToken(undefined) makes an authorized client anonymous again.
    const client = createConductorClient({ baseUrl: conductor.baseUrl, token: admin.token() });
    await unwrap(client.GET('/api/workers'));
    client.setToken(undefined);
    assert.equal((await apiError(unwrap(client.GET('/api/workers')))).status, 401);
  });

  it('unknown worker: 404 worker_not_found', async () => {
    const id = randomUUID();
    const err = await apiError(unwrap(admin.GET('/api/workers/{id}', { params: { path: { id } } })));
    assert.equal(err.status, 404);
    assert.equal(err.code, 'worker_not_found');
    assert.ok(err.body);
    assert.ok(err.requestId);
  });

  it('sends X-Request-Id and gets it back in the ErrorBody and header', async () => {
    const wanted = `sdk-test-${randomUUID()}`;
    const client = createConductorClient({
      baseUrl: conductor.baseUrl,
      token: admin.token(),
      requestId: () => wanted,
    });
    const err = await apiError(unwrap(client.GET('/api/workers/{id}', { params: { path: { id: randomUUID() } } })));
    assert.equal(err.code, 'worker_not_found');
    assert.equal(err.requestId, wanted);
    assert.equal(err.body?.request_id, wanted);

    // Successful responses carry it too, and a header given on the call wins over requestId().
    const explicit = `explicit-${randomUUID()}`;
    const ok = await client.GET('/api/auth/me', { headers: { 'X-Request-Id': explicit } });
    assert.equal(ok.response.status, 200);
    assert.equal(ok.response.headers.get('x-request-id'), explicit);
  });
});

describe('unwrap fallbacks (no conductor involved)', () => {
  it('a non-ErrorBody error (e.g. a proxy page) becomes http_<status>', async () => {
    const client = createConductorClient({
      baseUrl: 'http://proxy.invalid',
      fetch: async () =>
        new Response('<html>502 Bad Gateway</html>', {
          status: 502,
          headers: { 'content-type': 'text/html', 'x-request-id': 'from-proxy' },
        }),
    });
    const err = await apiError(unwrap(client.GET('/api/workers')));
    assert.equal(err.status, 502);
    assert.equal(err.code, 'http_502');
    assert.equal(err.body, undefined);
    assert.equal(err.requestId, 'from-proxy');
    assert.match(err.message, /502 Bad Gateway/);
  });

  it('a failed fetch becomes status 0 network_error', async () => {
    const cause = new TypeError('fetch failed');
    const client = createConductorClient({
      baseUrl: 'http://down.invalid',
      fetch: async () => {
        throw cause;
      },
    });
    const err = await apiError(unwrap(client.GET('/api/workers')));
    assert.equal(err.status, 0);
    assert.equal(err.code, 'network_error');
    assert.equal(err.requestId, undefined);
    assert.equal(err.cause, cause);
  });

  it('sends the bearer token and request id it is given', async () => {
    let seen: Request | undefined;
    const client = createConductorClient({
      baseUrl: 'http://capture.invalid',
      token: 't0k3n',
      requestId: () => 'rid-1',
      fetch: async (input) => {
        seen = input as Request;
        return Response.json({ workers: [] });
      },
    });
    const page = await unwrap(client.GET('/api/workers', { params: { query: { limit: 5 } } }));
    assert.deepEqual(page.workers, []);
    assert.ok(seen);
    assert.equal(seen.url, 'http://capture.invalid/api/workers?limit=5');
    assert.equal(seen.headers.get('authorization'), 'Bearer t0k3n');
    assert.equal(seen.headers.get('x-request-id'), 'rid-1');
  });
});
