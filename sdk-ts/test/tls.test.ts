// @aerekos/sdk/node against a conductor serving HTTPS with its own cluster CA (CONDUCTOR_TLS=on):
// the CA fetched and pinned, clients believing it, and clients refusing a server they do not
// believe. Plus the fingerprint's definition and fetchCa's refusals, without a conductor.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { createConductorClient as createBrowserClient, unwrap } from '../src/index.js';
import {
  caFingerprint,
  createConductorClient,
  fetchCa,
  fetchPinnedCa,
  login,
  trustingFetch,
  type WorkerResources,
} from '../src/node.js';
import { apiError, startConductor, stopServer, type Conductor } from './support.js';

const resources: WorkerResources = {
  cpu_cores: 2,
  cpu_usage_percent: 1,
  memory_total_bytes: 4 * 1024 ** 3,
  memory_available_bytes: 3 * 1024 ** 3,
  disk_total_bytes: 50 * 1024 ** 3,
  disk_free_bytes: 40 * 1024 ** 3,
  drivers: [],
  network: [],
};

/** The error and its causes, outermost first. */
function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e: unknown = err; e !== undefined && chain.length < 10; e = e instanceof Error ? e.cause : undefined) chain.push(e);
  return chain;
}

describe('HTTPS conductor with its cluster CA through @aerekos/sdk/node', () => {
  let conductor: Conductor;

  before(async () => {
    conductor = await startConductor({ tls: true });
  });

  after(async () => {
    if (conductor) await stopServer(conductor);
  });

  it('computes the fingerprint the conductor serves, logs and keeps in its data directory', async () => {
    assert.match(conductor.baseUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    const { pem, fingerprint } = await fetchCa(conductor.baseUrl);
    assert.match(pem, /^-----BEGIN CERTIFICATE-----/);
    assert.match(fingerprint, /^sha256:[0-9a-f]{64}$/);

    // What the conductor itself says, read over a connection that believes the bundle.
    const trusting = createConductorClient({ baseUrl: conductor.baseUrl, ca: pem });
    const served = await unwrap(trusting.GET('/api/tls/ca'));
    assert.equal(served.enabled, true);
    assert.equal(served.pem, pem);
    assert.equal(served.fingerprint, fingerprint);

    // The pin of the start log, and the CA file in the data directory.
    const logged = /ca_pin=(sha256:[0-9a-f]{64})/.exec(conductor.stdout() + conductor.stderr());
    assert.ok(logged, 'the start log names the CA pin');
    assert.equal(logged[1], fingerprint);
    const onDisk = await readFile(join(conductor.dataDir, 'tls', 'ca.pem'), 'utf8');
    assert.equal(caFingerprint(onDisk), fingerprint);
  });

  it('fetchPinnedCa with the right pin: a client believing the bundle logs in, registers and lists workers', async () => {
    const { fingerprint } = await fetchCa(conductor.baseUrl);
    const ca = await fetchPinnedCa(conductor.baseUrl, fingerprint);
    assert.equal(caFingerprint(ca), fingerprint);
    // A pin is compared case-insensitively, surrounding blanks ignored (as the Rust SDK does).
    assert.equal(await fetchPinnedCa(`${conductor.baseUrl}/`, ` ${fingerprint.toUpperCase()}\n`), ca);

    const { client, session } = await login(conductor.baseUrl, 'admin', conductor.adminPassword, { ca });
    assert.equal(session.user.username, 'admin');
    const me = await unwrap(client.GET('/api/auth/me'));
    assert.equal(me.id, session.user.id);

    const reg = await unwrap(client.GET('/api/token'));
    const anonymous = createConductorClient({ baseUrl: conductor.baseUrl, ca });
    const registered = await unwrap(
      anonymous.POST('/api/workers/register', {
        body: { registration_token: reg.token, hostname: 'sdk-tls-host', ip_address: '10.0.0.9', resources },
      }),
    );
    const page = await unwrap(client.GET('/api/workers'));
    assert.deepEqual(
      page.workers.map((w) => [w.id, w.hostname, w.status]),
      [[registered.worker_id, 'sdk-tls-host', 'live']],
    );
  });

  it('a wrong pin is refused, naming both fingerprints', async () => {
    const { fingerprint } = await fetchCa(conductor.baseUrl);
    const wrong = `sha256:${createHash('sha256').update('another CA').digest('hex')}`;
    await assert.rejects(fetchPinnedCa(conductor.baseUrl, wrong), (err: Error) => {
      assert.equal(
        err.message,
        `the server at ${conductor.baseUrl} presents CA ${fingerprint}, not the pinned ${wrong}: refusing it (another server, or a man in the middle)`,
      );
      return true;
    });
  });

  it('a client without the CA cannot connect: the certificate is refused', async () => {
    // The browser entry with Node's fetch and default roots: a network_error caused by the certificate.
    const plain = createBrowserClient({ baseUrl: conductor.baseUrl });
    const err = await apiError(unwrap(plain.GET('/health')));
    assert.equal(err.status, 0);
    assert.equal(err.code, 'network_error');
    const codes = causes(err).map((e) => (e as { code?: unknown }).code);
    assert.ok(
      codes.some((c) => typeof c === 'string' && /CERT|UNABLE_TO_VERIFY|SELF_SIGNED/.test(c)),
      `a certificate error among the causes: ${JSON.stringify(codes)}`,
    );

    // @aerekos/sdk/node without `ca`: the message says what to do.
    const nodeErr = await apiError(login(conductor.baseUrl, 'admin', conductor.adminPassword));
    assert.equal(nodeErr.code, 'network_error');
    assert.match(nodeErr.message, /certificate is not trusted: give the cluster CA as the `ca` option/);
  });

  it('a client believing another CA cannot connect either', async () => {
    // Any valid certificate that is not the cluster CA: the conductor's own leaf certificate is
    // not a CA, so nothing chains to it.
    const other = createConductorClient({ baseUrl: conductor.baseUrl, ca: await leafCertificate(conductor.baseUrl) });
    const err = await apiError(unwrap(other.GET('/api/auth/me')));
    assert.equal(err.code, 'network_error');
    assert.match(err.message, /does not chain to the given CA bundle/);
  });
});

/** The PEM of the certificate the server at `baseUrl` presents (read without checking it). */
async function leafCertificate(baseUrl: string): Promise<string> {
  const { connect } = await import('node:tls');
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false }, () => {
      const der = socket.getPeerCertificate().raw;
      socket.end();
      const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
      resolve(`-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`);
    });
    socket.on('error', reject);
  });
}

describe('caFingerprint and fetchCa (no conductor involved)', () => {
  const pemOf = (der: Buffer) =>
    `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;

  it('hashes the DER bytes of every certificate, in order, and skips other blocks', () => {
    const a = Buffer.from('first certificate, DER in real life');
    const b = Buffer.from('second one'.repeat(20));
    const want = `sha256:${createHash('sha256').update(Buffer.concat([a, b])).digest('hex')}`;
    const key = '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n';
    assert.equal(caFingerprint(`subject=whatever\n${pemOf(a)}${key}\r\n${pemOf(b).replace(/\n/g, '\r\n')}`), want);
    assert.notEqual(caFingerprint(pemOf(b) + pemOf(a)), want, 'the order counts');
  });

  it('refuses a bundle without certificates or with bad base64', () => {
    assert.throws(() => caFingerprint(''), /holds no certificate/);
    assert.throws(() => caFingerprint('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), /holds no certificate/);
    assert.throws(() => caFingerprint('-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n'), /not valid base64/);
  });

  it('a client refuses a `ca` that is not a certificate bundle at once', () => {
    assert.throws(() => createConductorClient({ baseUrl: 'https://x.invalid', ca: 'nonsense' }), /holds no certificate/);
    assert.throws(() => trustingFetch(pemOf(Buffer.from('not DER'))), /not a PEM certificate bundle/);
  });

  describe('against a plain HTTP server', () => {
    let server: HttpServer;
    let url: string;
    let answer: { status: number; body: unknown };

    before(async () => {
      server = createServer((req, res) => {
        assert.equal(req.url, '/api/tls/ca');
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
      });
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async () => {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    });

    it('a conductor without TLS has no CA to pin', async () => {
      answer = { status: 200, body: { enabled: false } };
      await assert.rejects(fetchCa(url), { message: `${url} does not serve TLS, so there is no CA to pin` });
    });

    it("computes the fingerprint itself, whatever the server's fingerprint field says", async () => {
      const der = Buffer.from('a CA');
      const pem = pemOf(der);
      const real = `sha256:${createHash('sha256').update(der).digest('hex')}`;
      const claimed = `sha256:${'0'.repeat(64)}`;
      answer = { status: 200, body: { enabled: true, pem, fingerprint: claimed } };
      assert.deepEqual(await fetchCa(url), { pem, fingerprint: real });
      await assert.rejects(fetchPinnedCa(url, claimed), { message: new RegExp(`presents CA ${real}, not the pinned ${claimed}`) });
      assert.equal(await fetchPinnedCa(url, real), pem);
    });

    it('an error status is reported with the URL', async () => {
      answer = { status: 404, body: { code: 'not_found' } };
      await assert.rejects(fetchCa(`${url}/`), { message: `GET ${url}/api/tls/ca: status 404` });
    });

    it('an unreachable server is reported with the cause', async () => {
      const closed = createServer();
      await new Promise<void>((done) => closed.listen(0, '127.0.0.1', done));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((done) => closed.close(done));
      await assert.rejects(fetchCa(`http://127.0.0.1:${port}`), /ECONNREFUSED/);
    });
  });
});
