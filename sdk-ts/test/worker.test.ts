// The worker API client against real conductor and worker processes: the worker joins with the
// registration token, reports its API address, and shows an assigned instance to a user's token.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createWorkerClient, login, unwrap, type ConductorClient, type WorkerClient } from '../src/index.js';
import { apiError, startConductor, startWorker, stopServer, type Conductor, type Server } from './support.js';

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('worker API through @aerekos/sdk', () => {
  let conductor: Conductor | undefined;
  let worker: Server | undefined;
  let admin: ConductorClient;
  let agent: WorkerClient;
  let workerId: string;

  before(async () => {
    conductor = await startConductor();
    ({ client: admin } = await login(conductor.baseUrl, 'admin', conductor.adminPassword));
    const { token } = await unwrap(admin.GET('/api/token'));
    worker = await startWorker(conductor.baseUrl, token);
    const joined = await until('the worker to join', async () => {
      const page = await unwrap(admin.GET('/api/workers'));
      return page.workers.find((w) => w.name === 'sdk-ts-worker');
    });
    workerId = joined.id;
    assert.equal(joined.api_url, worker.baseUrl, 'the conductor knows where the worker API is');
    agent = createWorkerClient({ baseUrl: joined.api_url!, token: admin.token() });
  });

  after(async () => {
    if (worker) await stopServer(worker);
    if (conductor) await stopServer(conductor);
  });

  it('shows an assigned instance, running, and its id in health', async () => {
    const instance = await unwrap(
      admin.POST('/api/workers/{id}/instances', {
        params: { path: { id: workerId } },
        body: { spec: { command: ['sleep', '120'] } },
      }),
    );
    const seen = await until('the instance to run', async () => {
      const list = await unwrap(agent.GET('/api/worker/instances'));
      return list.find((i) => i.id === instance.id && i.state === 'running');
    });
    assert.equal(seen.restarts, 0);
    const health = await unwrap(agent.GET('/health'));
    assert.equal(health.worker_id, workerId);
    assert.deepEqual(health.drivers, ['process']);

    // Removed at the conductor: the worker stops it and stops listing it.
    await unwrap(admin.DELETE('/api/instances/{instance_id}', { params: { path: { instance_id: instance.id } } }));
    await until('the instance to go', async () => {
      const list = await unwrap(agent.GET('/api/worker/instances'));
      return list.some((i) => i.id === instance.id) ? undefined : true;
    });
  });

  it('refuses callers without a token', async () => {
    const anonymous = createWorkerClient({ baseUrl: worker!.baseUrl });
    const err = await apiError(unwrap(anonymous.GET('/api/worker/instances')));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthorized');
  });
});
