// End-to-end tests of the key_manager client against real conductor and key_manager processes:
// key_manager trusts the conductor's tokens, so the admin logs in at the conductor and sends the
// same token to key_manager.

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  base64ToBytes,
  bytesToBase64,
  createKeyManagerClient,
  decryptText,
  encryptText,
  login,
  unwrap,
  type KeyManagerClient,
  type KeyManagerTypes,
} from '../src/index.js';
import { apiError, startConductor, startKeyManager, stopServer, type Conductor, type Server } from './support.js';

describe('key_manager API through @aerekos/sdk', () => {
  let conductor: Conductor | undefined;
  let keyManager: Server | undefined;
  let km: KeyManagerClient;
  let key: KeyManagerTypes.Key;

  const keyName = `sdk-test-${randomUUID()}`;
  // Non-ASCII on purpose (and a leading BOM, which a default TextDecoder would drop).
  const secret = '\uFEFFsecret: pässwörd ✓ 🔑';
  const context: KeyManagerTypes.EncryptionContext = { tenant: 'acme', purpose: 'sdk-test' };
  let v1Ciphertext: string;

  before(async () => {
    conductor = await startConductor();
    keyManager = await startKeyManager(conductor.baseUrl);
    const { client } = await login(conductor.baseUrl, 'admin', conductor.adminPassword);
    km = createKeyManagerClient({ baseUrl: keyManager.baseUrl, token: client.token() });
  });

  after(async () => {
    // key_manager first (it depends on the conductor); both are stopped even if one fails.
    const results = await Promise.allSettled([keyManager && stopServer(keyManager)]);
    results.push(...(await Promise.allSettled([conductor && stopServer(conductor)])));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('creates a key and finds it by name and by id', async () => {
    key = await unwrap(
      km.POST('/api/key_manager/keys', { body: { name: keyName, description: 'made by the TS SDK tests' } }),
    );
    assert.equal(key.name, keyName);
    assert.equal(key.description, 'made by the TS SDK tests');
    assert.equal(key.state, 'enabled');
    assert.equal(key.usage, 'encrypt_decrypt');
    assert.equal(key.latest_version, 1);
    assert.deepEqual(key.versions.map((v) => v.version), [1]);
    assert.equal(key.deletion_allowed, false);

    const byName = await unwrap(km.GET('/api/key_manager/keys/{key}', { params: { path: { key: keyName } } }));
    const byId = await unwrap(km.GET('/api/key_manager/keys/{key}', { params: { path: { key: key.id } } }));
    assert.equal(byName.id, key.id);
    assert.equal(byId.name, keyName);

    const all = await unwrap(km.GET('/api/key_manager/keys'));
    assert.ok(all.some((k) => k.id === key.id), 'the new key is listed');
  });

  it('encryptText / decryptText round-trip a string with a context', async () => {
    v1Ciphertext = await encryptText(km, keyName, secret, context);
    assert.match(v1Ciphertext, /^aerekos:v1:/);
    assert.ok(!v1Ciphertext.includes('pässwörd'));

    assert.equal(await decryptText(km, keyName, v1Ciphertext, context), secret);
    // The key id works as well as the name; the context's order does not matter.
    assert.equal(await decryptText(km, key.id, v1Ciphertext, { purpose: 'sdk-test', tenant: 'acme' }), secret);

    // Without a context, too.
    const plain = await encryptText(km, keyName, '');
    assert.equal(await decryptText(km, keyName, plain), '');
  });

  it('a wrong or missing context: 400 decryption_failed', async () => {
    const wrong = await apiError(decryptText(km, keyName, v1Ciphertext, { ...context, tenant: 'someone-else' }));
    assert.equal(wrong.status, 400);
    assert.equal(wrong.code, 'decryption_failed');
    assert.ok(wrong.body, 'body is an ErrorBody');
    assert.ok(wrong.requestId);

    const missing = await apiError(decryptText(km, keyName, v1Ciphertext));
    assert.equal(missing.status, 400);
    assert.equal(missing.code, 'decryption_failed');
  });

  it('after a rotation new ciphertexts use v2 and v1 ones still decrypt', async () => {
    const rotated = await unwrap(
      km.POST('/api/key_manager/keys/{key}/rotate', { params: { path: { key: keyName } } }),
    );
    assert.equal(rotated.latest_version, 2);
    assert.deepEqual(rotated.versions.map((v) => v.version).sort(), [1, 2]);

    const v2Ciphertext = await encryptText(km, keyName, secret, context);
    assert.match(v2Ciphertext, /^aerekos:v2:/);
    assert.equal(await decryptText(km, keyName, v2Ciphertext, context), secret);

    // The raw call reports which version decrypted.
    const old = await unwrap(
      km.POST('/api/key_manager/keys/{key}/decrypt', {
        params: { path: { key: keyName } },
        body: { ciphertext: v1Ciphertext, context },
      }),
    );
    assert.equal(old.key_version, 1);
    assert.equal(new TextDecoder('utf-8', { ignoreBOM: true }).decode(base64ToBytes(old.plaintext)), secret);
  });

  it("a data key's plaintext equals the decryption of its wrapped copy", async () => {
    const dataKey: KeyManagerTypes.DataKeyResponse = await unwrap(
      km.POST('/api/key_manager/keys/{key}/datakey', { params: { path: { key: keyName } }, body: { bits: 256 } }),
    );
    assert.equal(dataKey.bits, 256);
    assert.equal(dataKey.key_version, 2);
    assert.match(dataKey.ciphertext, /^aerekos:v2:/);
    assert.ok(dataKey.plaintext, 'plaintext is included by default');
    assert.equal(base64ToBytes(dataKey.plaintext).length, 32);

    const unwrapped = await unwrap(
      km.POST('/api/key_manager/keys/{key}/decrypt', {
        params: { path: { key: keyName } },
        body: { ciphertext: dataKey.ciphertext },
      }),
    );
    assert.equal(unwrapped.plaintext, dataKey.plaintext);

    // include_plaintext: false returns only the wrapped copy.
    const wrappedOnly = await unwrap(
      km.POST('/api/key_manager/keys/{key}/datakey', {
        params: { path: { key: keyName } },
        body: { bits: 128, include_plaintext: false },
      }),
    );
    assert.equal(wrappedOnly.plaintext, undefined);
    const opened = await unwrap(
      km.POST('/api/key_manager/keys/{key}/decrypt', {
        params: { path: { key: keyName } },
        body: { ciphertext: wrappedOnly.ciphertext },
      }),
    );
    assert.equal(base64ToBytes(opened.plaintext).length, 16);
  });

  it('unknown key and no token are ErrorBody errors', async () => {
    const unknown = await apiError(encryptText(km, `no-such-key-${randomUUID()}`, 'x'));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'key_not_found');
    assert.ok(unknown.body);

    const anonymous = createKeyManagerClient({ baseUrl: keyManager!.baseUrl });
    const err = await apiError(unwrap(anonymous.GET('/api/key_manager/keys')));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthorized');
  });
});

describe('base64 helpers (no server involved)', () => {
  it('match Node’s Buffer for empty, small and large inputs', () => {
    for (const n of [0, 1, 2, 3, 255, 0x8000, 0x8000 * 3 + 7]) {
      const bytes = new Uint8Array(randomBytes(n));
      const b64 = bytesToBase64(bytes);
      assert.equal(b64, Buffer.from(bytes).toString('base64'), `encode ${n} bytes`);
      assert.deepEqual(base64ToBytes(b64), bytes, `decode ${n} bytes`);
    }
  });
});
