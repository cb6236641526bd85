// storage_manager's S3 CORS support in headless Chromium against a real platform (`aerekos up`): a
// page on another origin uploads with a presigned PUT, which the browser sends only after a
// preflight the bucket's CORS rule answers; a page from an origin the rule does not name is
// stopped at the preflight. SigV4 is done here with node:crypto, as any S3 client does it.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { ADMIN_PASSWORD, eventually, lowerKeys, pageServer, recordRequests, startBrowser, startPlatform } from './support.mjs';

const REGION = 'us-east-1';
const BODY = 'uploaded from the browser';

let platform;
let browser;

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
  } catch (e) {
    await platform.stop();
    throw e;
  }
});

after(async () => {
  await browser?.close();
  await platform?.stop();
});

// ---- SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html)

const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => createHmac('sha256', key).update(data).digest();
/** RFC 3986 encoding, as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
const uriEncode = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const objectPath = (bucket, key) => `/${bucket}${key === undefined ? '' : `/${key.split('/').map(uriEncode).join('/')}`}`;

/** `[name, value]` pairs encoded and sorted: the canonical query string, also used as the URL's. */
const canonicalQuery = (params) =>
  params
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');

/** 20250101T000000Z */
const amzDate = (now = new Date()) => now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

function signature(secret, date, canonicalRequest) {
  const day = date.slice(0, 8);
  let key = hmac(`AWS4${secret}`, day);
  for (const part of [REGION, 's3', 'aws4_request']) key = hmac(key, part);
  const toSign = ['AWS4-HMAC-SHA256', date, `${day}/${REGION}/s3/aws4_request`, sha256(canonicalRequest)].join('\n');
  return createHmac('sha256', key).update(toSign).digest('hex');
}

/** An S3 client of the endpoint at `endpoint`, signing with the access key `{ id, secret }`. */
function s3Client(endpoint, { id, secret }) {
  const host = new URL(endpoint).host;
  return {
    /** A request signed in its headers (the payload's hash signed too). */
    async request(method, bucket, key, { query = [], body = '', headers = {} } = {}) {
      const date = amzDate();
      const all = { ...lowerKeys(headers), host, 'x-amz-content-sha256': sha256(body), 'x-amz-date': date };
      const names = Object.keys(all).sort();
      const path = objectPath(bucket, key);
      const q = canonicalQuery(query);
      const canonical = [method, path, q, ...names.map((n) => `${n}:${String(all[n]).trim()}`), '', names.join(';'), all['x-amz-content-sha256']].join('\n');
      const credential = `${id}/${date.slice(0, 8)}/${REGION}/s3/aws4_request`;
      all.authorization = `AWS4-HMAC-SHA256 Credential=${credential}, SignedHeaders=${names.join(';')}, Signature=${signature(secret, date, canonical)}`;
      delete all.host; // fetch sets it, to the same value
      return fetch(`${endpoint}${path}${q ? `?${q}` : ''}`, { method, headers: all, body: method === 'GET' || method === 'HEAD' ? undefined : body });
    },
    /** A presigned URL (query-string SigV4, only `host` signed, the payload not). */
    presign(method, bucket, key, expires = 300) {
      const date = amzDate();
      const path = objectPath(bucket, key);
      const params = [
        ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
        ['X-Amz-Credential', `${id}/${date.slice(0, 8)}/${REGION}/s3/aws4_request`],
        ['X-Amz-Date', date],
        ['X-Amz-Expires', String(expires)],
        ['X-Amz-SignedHeaders', 'host'],
      ];
      const q = canonicalQuery(params);
      const canonical = [method, path, q, `host:${host}`, '', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
      return `${endpoint}${path}?${q}&X-Amz-Signature=${signature(secret, date, canonical)}`;
    },
  };
}

/** A response's status, headers and body, for a failure's message. */
async function described(res) {
  return `${res.status} ${JSON.stringify(Object.fromEntries(res.headers))} ${await res.text()}`;
}

// ---- the pages

/**
 * The page: it PUTs BODY to the presigned URL in its `put` query parameter and keeps the outcome
 * (the status and the ETag as the page's script reads it, or the error) in `window.upload`.
 */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>upload</title>
<pre id="result">uploading</pre>
<script>
  const put = new URLSearchParams(location.search).get('put');
  fetch(put, { method: 'PUT', body: ${JSON.stringify(BODY)}, headers: { 'content-type': 'text/plain' } })
    .then(
      async (r) => ({ status: r.status, etag: r.headers.get('etag'), body: await r.text() }),
      (e) => ({ error: e.name + ': ' + e.message }),
    )
    .then((result) => {
      window.upload = result;
      document.getElementById('result').textContent = JSON.stringify(result);
    });
</script>
`;

/**
 * Opens PAGE from `origin` to PUT to `url`. Resolves to what its script saw, with the requests
 * Chromium sent to the S3 endpoint and their answers or CORS errors (see recordRequests).
 */
async function uploadFrom(origin, url) {
  const page = await browser.context.newPage();
  const requests = await recordRequests(browser.context, page);
  try {
    await page.goto(`${origin}/?put=${encodeURIComponent(url)}`);
    const result = await (await page.waitForFunction(() => window.upload, null, { timeout: 15_000 })).jsonValue();
    const toS3 = requests.to(url);
    const report = JSON.stringify({ result, toS3 }, null, 2);
    return { ...result, preflights: toS3.filter((r) => r.method === 'OPTIONS'), puts: toS3.filter((r) => r.method === 'PUT'), report };
  } finally {
    await page.close();
  }
}

test('a page on an origin the bucket\'s CORS rule allows uploads with a presigned PUT in Chromium once its preflight is answered, and reads the exposed ETag; another origin is stopped at the preflight', async (t) => {
  const login = await fetch(`${platform.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  assert.equal(login.status, 200);
  const auth = { authorization: `Bearer ${(await login.json()).token}` };

  const registry = await fetch(`${platform.url}/api/registry/storage_manager`, { headers: auth });
  if (registry.status === 404) {
    t.skip('storage_manager is not in the catalog of this build');
    return;
  }
  // `aerekos up` deploys it at first start; the registry lists its instance once healthy. The
  // instance's own address is the S3 endpoint (README: "Any S3 client works against ...").
  const endpoint = await eventually('storage_manager in the registry', 120_000, async () => {
    const res = await fetch(`${platform.url}/api/registry/storage_manager`, { headers: auth });
    return res.ok && (await res.json()).endpoints[0]?.url;
  });
  const created = await fetch(`${platform.url}/api/storage_manager/access-keys`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ description: 'browser CORS test' }),
  });
  assert.equal(created.status, 200, await described(created.clone()));
  const key = await created.json();
  assert.ok(key.id && key.secret, JSON.stringify(key));
  const s3 = s3Client(endpoint, key);

  // Two origins: 127.0.0.1 on two ports, neither the S3 endpoint's.
  const allowed = await pageServer(PAGE);
  const other = await pageServer(PAGE);
  const bucket = `cors-${randomBytes(6).toString('hex')}`;
  try {
    const made = await s3.request('PUT', bucket);
    assert.equal(made.status, 200, await described(made));
    const cors = `<CORSConfiguration><CORSRule><AllowedOrigin>${allowed.origin}</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>`;
    const configured = await s3.request('PUT', bucket, undefined, {
      query: [['cors', '']],
      body: cors,
      // AWS refuses a PutBucketCors without an integrity check; this server does not ask for one.
      headers: { 'content-md5': createHash('md5').update(cors).digest('base64'), 'content-type': 'application/xml' },
    });
    assert.equal(configured.status, 200, await described(configured));

    await t.test('the allowed origin\'s preflight is answered, its PUT stores the object, and its script reads the ETag', async () => {
      const url = s3.presign('PUT', bucket, 'from-browser.txt');
      const upload = await uploadFrom(allowed.origin, url);
      // A PUT is never a simple request: Chromium asked first, and was told yes.
      assert.equal(upload.preflights.length, 1, upload.report);
      const [preflight] = upload.preflights;
      assert.equal(preflight.headers.origin, allowed.origin, upload.report);
      assert.equal(preflight.headers['access-control-request-method'], 'PUT', upload.report);
      assert.equal(preflight.status, 200, upload.report);
      assert.equal(preflight.responseHeaders['access-control-allow-origin'], allowed.origin, upload.report);
      assert.match(preflight.responseHeaders['access-control-allow-methods'] ?? '', /\bPUT\b/, upload.report);
      assert.equal(preflight.responseHeaders['access-control-max-age'], '600', upload.report);
      // The script sees the answer, and the ETag only because the rule exposes it.
      assert.equal(upload.status, 200, upload.report);
      assert.equal(upload.etag, `"${createHash('md5').update(BODY).digest('hex')}"`, upload.report);

      const back = await s3.request('GET', bucket, 'from-browser.txt');
      assert.equal(back.status, 200, await described(back.clone()));
      assert.equal(back.headers.get('content-type'), 'text/plain');
      assert.equal(await back.text(), BODY);
    });

    await t.test('another origin\'s preflight is refused: the fetch fails in the page and nothing is stored', async () => {
      const url = s3.presign('PUT', bucket, 'from-elsewhere.txt');
      const upload = await uploadFrom(other.origin, url);
      assert.equal(upload.error, 'TypeError: Failed to fetch', upload.report);
      assert.equal(upload.preflights.length, 1, upload.report);
      const [preflight] = upload.preflights;
      assert.equal(preflight.headers.origin, other.origin, upload.report);
      assert.equal(preflight.status, 403, upload.report);
      assert.equal(preflight.responseHeaders['access-control-allow-origin'], undefined, upload.report);
      // Chromium blamed the preflight, and the PUT itself was never answered.
      assert.equal(upload.puts.length, 1, upload.report);
      assert.match(upload.puts[0].corsError ?? '', /^Preflight/, upload.report);
      assert.equal(upload.puts[0].status, undefined, upload.report);
      // A presigned URL is good for anyone who has it: only the browser kept this one from use.
      const head = await s3.request('HEAD', bucket, 'from-elsewhere.txt');
      assert.equal(head.status, 404, await described(head));
    });
  } finally {
    await allowed.close();
    await other.close();
    // Whatever failed (without hiding why): the object if stored, the bucket, the access key.
    const quietly = (p) => p.catch(() => {});
    await quietly(s3.request('DELETE', bucket, 'from-browser.txt'));
    await quietly(s3.request('DELETE', bucket));
    await quietly(fetch(`${platform.url}/api/storage_manager/access-keys/${key.id}`, { method: 'DELETE', headers: auth }));
  }
});
