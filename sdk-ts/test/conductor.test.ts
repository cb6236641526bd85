// End-to-end tests of the SDK against a real conductor process (no mocks of the API), plus the
// error fallbacks that a real conductor never produces (proxy pages, network failures).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  createConductorClient,
  login,
  unwrap,
  type ConductorClient,
  type WorkerResources,
} from '../src/index.js';
import { apiError, startConductor, stopServer, type Conductor } from './support.js';

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
    if (conductor) await stopServer(conductor);
  });

  it('logs in as admin and `me` returns the admin user', async () => {
    const { client, session } = await login(conductor.baseUrl, 'admin', conductor.adminPassword);
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
