// End-to-end tests of the secrets_manager client and its helpers against a real platform
// (`aerekos up`: the conductor, key_manager and secrets_manager on a local worker, with the service
// token the worker fetches for it), through the conductor's gateway at /api/secrets_manager/…

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  AWSCURRENT,
  AWSPREVIOUS,
  bytesToBase64,
  createSecretsManagerClient,
  getSecretJson,
  getSecretText,
  login,
  putSecretJson,
  putSecretText,
  unwrap,
  type SecretsManagerClient,
} from '../src/index.js';
import { apiError, startPlatform, stopServer, waitForService, type Platform } from './support.js';

describe('secrets_manager API through @aerekos/sdk and the gateway', () => {
  let platform: Platform | undefined;
  let sm: SecretsManagerClient;
  let viewer: SecretsManagerClient;
  /** Every URL `sm` requested. */
  const sent: string[] = [];

  const run = randomBytes(4).toString('hex');
  // Slashes on purpose: one path parameter, sent as apps%2Fsdk-ts-…%2Fdb-password.
  const name = `apps/sdk-ts-${run}/db-password`;
  const jsonName = `apps/sdk-ts-${run}/settings`;
  // Non-ASCII on purpose (and a leading BOM, which a default TextDecoder would drop).
  const first = '\uFEFFfirst pässwörd ✓ 🔑';
  const second = 'second password';

  before(async () => {
    platform = await startPlatform();
    const { client: admin } = await login(platform.baseUrl, 'admin', platform.adminPassword);
    const recording: typeof fetch = (input, init) => {
      sent.push(input instanceof Request ? input.url : String(input));
      return fetch(input, init);
    };
    sm = createSecretsManagerClient({ baseUrl: platform.baseUrl, token: admin.token(), fetch: recording });
    const { client: viewerLogin } = await login(platform.baseUrl, platform.viewer.username, platform.viewer.password);
    viewer = createSecretsManagerClient({ baseUrl: platform.baseUrl, token: viewerLogin.token() });
    // `up` has deployed secrets_manager; the gateway answers 503 until its instance is healthy.
    await waitForService('secrets_manager behind the gateway', () => unwrap(sm.GET('/api/secrets_manager/secrets')));
  });

  after(async () => {
    if (platform) await stopServer(platform);
  });

  it('creates a secret with a text value and reads it back, current and by version', async () => {
    const created = await unwrap(
      sm.POST('/api/secrets_manager/secrets', {
        body: { name, description: 'made by the TS SDK tests', value: { bytes: bytesToBase64(new TextEncoder().encode(first)) } },
      }),
    );
    assert.equal(created.name, name);
    assert.equal(created.description, 'made by the TS SDK tests');
    assert.equal(created.current_version, 1);
    assert.equal(created.latest_version, 1);
    assert.deepEqual(created.versions.map((v) => [v.version, v.labels, v.created_by]), [[1, [AWSCURRENT], 'user:admin']]);

    assert.equal(await getSecretText(sm, name), first);
    assert.equal(await getSecretText(sm, name, { version: 1 }), first);
    assert.equal(await getSecretText(sm, name, { label: AWSCURRENT }), first);
  });

  it('sends a name with slashes as one percent-encoded path parameter', async () => {
    const url = [...sent].reverse().find((u) => u.includes('/value'));
    assert.ok(url, 'a value read was sent');
    assert.ok(url.includes(`/api/secrets_manager/secrets/apps%2Fsdk-ts-${run}%2Fdb-password/value`), url);

    const described = await unwrap(sm.GET('/api/secrets_manager/secrets/{name}', { params: { path: { name } } }));
    assert.equal(described.name, name);
    const listed = await unwrap(sm.GET('/api/secrets_manager/secrets', { params: { query: { prefix: `apps/sdk-ts-${run}/` } } }));
    assert.deepEqual(listed.secrets.map((s) => s.name), [name]);
    // The same name unencoded is another path: the gateway and the service do not take it for the secret.
    const unencoded = await fetch(`${platform!.baseUrl}/api/secrets_manager/secrets/${name}/value`, {
      headers: { Authorization: `Bearer ${sm.token()}` },
    });
    assert.equal(unencoded.status, 404);
    await unencoded.body?.cancel();
  });

  it('writes a second version with check-and-set; a stale cas is refused with 409 cas_mismatch', async () => {
    const v2 = await putSecretText(sm, name, second, { cas: 1 });
    assert.equal(v2.version, 2);
    assert.deepEqual(v2.labels, [AWSCURRENT]);

    const stale = await apiError(putSecretText(sm, name, 'lost update', { cas: 1 }));
    assert.equal(stale.status, 409);
    assert.equal(stale.code, 'cas_mismatch');
    // cas 0: only if the secret has no version yet.
    assert.equal((await apiError(putSecretText(sm, name, 'lost update', { cas: 0 }))).code, 'cas_mismatch');

    const described = await unwrap(sm.GET('/api/secrets_manager/secrets/{name}', { params: { path: { name } } }));
    assert.equal(described.latest_version, 2, 'nothing was written by the refused writes');
    assert.equal(await getSecretText(sm, name), second);
  });

  it('moves AWSPREVIOUS to the version AWSCURRENT left', async () => {
    const described = await unwrap(sm.GET('/api/secrets_manager/secrets/{name}', { params: { path: { name } } }));
    assert.equal(described.current_version, 2);
    assert.deepEqual(
      described.versions.map((v) => [v.version, v.labels]),
      [
        [2, [AWSCURRENT]],
        [1, [AWSPREVIOUS]],
      ],
    );
    assert.equal(await getSecretText(sm, name, { label: AWSPREVIOUS }), first);
    assert.equal(await getSecretText(sm, name, { version: 2 }), second);

    // A custom label goes on with the write, and reads by it.
    const v3 = await putSecretText(sm, name, 'third', { labels: ['staging'] });
    assert.deepEqual([...v3.labels].sort(), [AWSCURRENT, 'staging']);
    assert.equal(await getSecretText(sm, name, { label: 'staging' }), 'third');
    assert.equal(await getSecretText(sm, name, { label: AWSPREVIOUS }), second);
  });

  it('keeps a JSON object as a value', async () => {
    await unwrap(sm.POST('/api/secrets_manager/secrets', { body: { name: jsonName } }));
    assert.equal((await apiError(getSecretJson(sm, jsonName))).code, 'no_value');

    const settings = { host: 'db.internal', port: 5432, tls: true, replicas: ['a', 'b'], nested: { user: 'shop' } };
    const v1 = await putSecretJson(sm, jsonName, settings, { cas: 0 });
    assert.equal(v1.version, 1);
    assert.deepEqual(await getSecretJson(sm, jsonName), settings);
    assert.deepEqual(await getSecretJson<typeof settings>(sm, jsonName, { version: 1 }), settings);

    // Each helper refuses the other kind of value rather than guess.
    await assert.rejects(getSecretText(sm, jsonName), TypeError);
    await assert.rejects(getSecretJson(sm, name), TypeError);
  });

  it('refuses bytes that are not UTF-8 as text, and answers errors as AerekosApiError', async () => {
    const binaryName = `apps/sdk-ts-${run}/binary`;
    await unwrap(sm.POST('/api/secrets_manager/secrets', { body: { name: binaryName, value: { bytes: bytesToBase64(new Uint8Array([0xff, 0xfe, 0x00])) } } }));
    await assert.rejects(getSecretText(sm, binaryName), TypeError);
    const raw = await unwrap(sm.GET('/api/secrets_manager/secrets/{name}/value', { params: { path: { name: binaryName } } }));
    assert.equal(raw.value.bytes, bytesToBase64(new Uint8Array([0xff, 0xfe, 0x00])));

    const missing = await apiError(getSecretText(sm, `apps/sdk-ts-${run}/nope`));
    assert.equal(missing.status, 404);
    assert.equal(missing.code, 'secret_not_found');
    assert.equal((await apiError(getSecretText(sm, name, { version: 99 }))).code, 'version_not_found');
    assert.equal((await apiError(putSecretText(sm, `apps/sdk-ts-${run}/nope`, 'x'))).status, 404);
  });

  it('shows a viewer names and metadata, never values, and lets a viewer write nothing', async () => {
    const listed = await unwrap(viewer.GET('/api/secrets_manager/secrets', { params: { query: { prefix: `apps/sdk-ts-${run}/` } } }));
    assert.ok(listed.secrets.some((s) => s.name === name && s.current_version === 3));
    const described = await unwrap(viewer.GET('/api/secrets_manager/secrets/{name}', { params: { path: { name } } }));
    assert.equal(described.versions.length, 3);

    const read = await apiError(getSecretText(viewer, name));
    assert.equal(read.status, 403);
    assert.equal(read.code, 'forbidden');
    assert.equal((await apiError(getSecretText(viewer, name, { version: 1 }))).status, 403);
    assert.equal((await apiError(getSecretJson(viewer, jsonName))).status, 403);
    assert.equal((await apiError(putSecretText(viewer, name, 'from a viewer'))).status, 403);
    const create = await apiError(unwrap(viewer.POST('/api/secrets_manager/secrets', { body: { name: `apps/sdk-ts-${run}/viewer` } })));
    assert.equal(create.status, 403);
    // The viewer's audit trail is not theirs to read either.
    assert.equal((await apiError(unwrap(viewer.GET('/api/secrets_manager/audit')))).status, 403);
  });

  it('audits every value read, refused ones included, and never shows a value there', async () => {
    const page = await unwrap(sm.GET('/api/secrets_manager/audit', { params: { query: { secret: name, limit: 1000 } } }));
    const reads = page.records.filter((r) => r.action === 'read_value');
    assert.ok(reads.filter((r) => r.actor === 'user:admin' && r.outcome === 'ok').length >= 8, JSON.stringify(reads));
    assert.ok(reads.some((r) => r.actor === `user:${platform!.viewer.username}` && r.outcome === 'forbidden'), JSON.stringify(reads));
    assert.ok(page.records.some((r) => r.action === 'put_value' && r.outcome === 'cas_mismatch'));
    const text = JSON.stringify(page);
    assert.ok(!text.includes('pässwörd') && !text.includes(second), 'no value in the audit log');
  });
});
