// End-to-end tests of the storage_manager helpers (putObject with and without progress, getObject,
// headObject) and the typed client against real conductor and storage_manager processes.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  createStorageManagerClient,
  getObject,
  headObject,
  login,
  putObject,
  unwrap,
  type StorageManagerClient,
} from '../src/index.js';
import { apiError, startConductor, startServer, stopServer, type Conductor, type Server } from './support.js';

describe('storage_manager API through @aerekos/sdk', () => {
  let conductor: Conductor | undefined;
  let storage: Server | undefined;
  let sm: StorageManagerClient;
  const bucket = `sdk-ts-${randomBytes(4).toString('hex')}`;

  before(async () => {
    conductor = await startConductor();
    storage = await startServer({
      name: 'storage_manager',
      args: ['service', 'storage-manager'],
      env: { CONDUCTOR_URL: conductor.baseUrl, STORAGE_MANAGER_HOST: '127.0.0.1', STORAGE_MANAGER_PORT: '0' },
      listening: /storage_manager listening on (http:\/\/\S+)/,
    });
    const { client } = await login(conductor.baseUrl, 'admin', conductor.adminPassword);
    sm = createStorageManagerClient({ baseUrl: storage.baseUrl, token: client.token() });
  });

  after(async () => {
    const results = await Promise.allSettled([storage && stopServer(storage)]);
    results.push(...(await Promise.allSettled([conductor && stopServer(conductor)])));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('creates a bucket and lists it', async () => {
    const created = await unwrap(sm.POST('/api/storage_manager/buckets', { body: { name: bucket } }));
    assert.equal(created.name, bucket);
    const all = await unwrap(sm.GET('/api/storage_manager/buckets'));
    assert.ok(all.some((b) => b.name === bucket));
  });

  it('uploads bytes under a key with slashes, reads them back, and tells their metadata', async () => {
    const bytes = randomBytes(70_000);
    const progress: [number, number][] = [];
    const info = await putObject(sm, bucket, 'a/b c/ü.bin', bytes, {
      contentType: 'application/x-test',
      metadata: { owner: 'sdk-ts' },
      onProgress: (sent, total) => progress.push([sent, total]),
    });
    assert.equal(info.key, 'a/b c/ü.bin');
    assert.equal(info.size, bytes.length);
    assert.equal(info.content_type, 'application/x-test');
    // Without XMLHttpRequest (Node), progress is reported once, at the end.
    assert.deepEqual(progress.at(-1), [bytes.length, bytes.length]);

    const blob = await getObject(sm, bucket, 'a/b c/ü.bin');
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), bytes);

    const head = await headObject(sm, bucket, 'a/b c/ü.bin');
    assert.equal(head.size, bytes.length);
    assert.equal(head.contentType, 'application/x-test');
    assert.deepEqual(head.metadata, { owner: 'sdk-ts' });
  });

  it('lists one folder level with a delimiter', async () => {
    await putObject(sm, bucket, 'top.txt', 'at the top');
    const list = await unwrap(
      sm.GET('/api/storage_manager/buckets/{bucket}/objects', { params: { path: { bucket }, query: { prefix: '', delimiter: '/' } } }),
    );
    assert.deepEqual(list.common_prefixes, ['a/']);
    assert.deepEqual(list.objects.map((o) => o.key), ['top.txt']);
  });

  it('answers a missing object with AerekosApiError 404 from every helper', async () => {
    assert.equal((await apiError(getObject(sm, bucket, 'nope'))).status, 404);
    assert.equal((await apiError(headObject(sm, bucket, 'nope'))).status, 404);
    assert.equal((await apiError(putObject(sm, 'no-such-bucket', 'k', 'x'))).status, 404);
  });
});
