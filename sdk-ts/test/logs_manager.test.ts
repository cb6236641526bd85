// End-to-end tests of the logs_manager client and its helpers against a real platform (`aerekos
// up`: the conductor and the built-in services on a local worker, which ships every instance's
// output and the platform's own lines to logs_manager), through the conductor's gateway at
// /api/logs_manager/…; and of the helpers' paging and event parsing against scripted answers
// (a short or empty page needs a store larger than a request's scan share).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  REQUEST_ID_HEADER,
  createKeyManagerClient,
  createLogsManagerClient,
  login,
  queryLogs,
  tailLogs,
  unwrap,
  type KeyManagerClient,
  type LogRecord,
  type LogsManagerClient,
} from '../src/index.js';
import { apiError, startPlatform, stopServer, waitForService, type Platform } from './support.js';

/** Polls `probe` every 250 ms until it returns a value, for up to `ms` (shipping takes a second or two). */
async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('logs_manager API through @aerekos/sdk and the gateway', () => {
  let platform: Platform | undefined;
  let logs: LogsManagerClient;
  let km: KeyManagerClient;
  const run = randomBytes(4).toString('hex');

  before(async () => {
    platform = await startPlatform();
    const { client: admin } = await login(platform.baseUrl, 'admin', platform.adminPassword);
    logs = createLogsManagerClient({ baseUrl: platform.baseUrl, token: admin.token() });
    km = createKeyManagerClient({ baseUrl: platform.baseUrl, token: admin.token() });
    // `up` has deployed logs_manager and key_manager; the gateway answers 503 until each is healthy.
    await waitForService('logs_manager behind the gateway', () => queryLogs(logs, { limit: 1 }));
    await waitForService('key_manager behind the gateway', () => unwrap(km.GET('/api/key_manager/keys')));
  });

  after(async () => {
    if (platform) await stopServer(platform);
  });

  it("has key_manager's output, found with service=key_manager, the newest first", async () => {
    const page = await until("key_manager's lines in logs_manager", async () => {
      const p = await queryLogs(logs, { service: 'key_manager', limit: 200 });
      return p.records.some((r) => r.message.includes('key_manager listening')) ? p : undefined;
    });
    assert.ok(page.records.length > 0);
    for (const r of page.records) {
      assert.equal(r.service, 'key_manager', JSON.stringify(r));
      assert.ok(r.instance, 'an instance line names its instance');
      assert.ok(r.worker, 'and the worker it came from');
      assert.ok(r.stream === 'stdout' || r.stream === 'stderr', r.stream);
    }
    const ids = page.records.map((r) => r.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'the newest first');
  });

  it('continues a query where the last one stopped with next_cursor', async () => {
    // Oldest first: lines arriving meanwhile go at the end, so the two halves and the whole agree.
    const first = await queryLogs(logs, { order: 'oldest', limit: 3 });
    assert.equal(first.records.length, 3);
    assert.ok(first.next_cursor, 'there is more');
    const second = await queryLogs(logs, { order: 'oldest', limit: 3, cursor: first.next_cursor });
    const whole = await queryLogs(logs, { order: 'oldest', limit: 6 });
    assert.deepEqual(
      [...first.records, ...second.records].map((r) => r.id),
      whole.records.map((r) => r.id),
    );
    // More than a page's 1000 is the helper's business, not the service's.
    const many = await queryLogs(logs, { order: 'oldest', limit: 1500 });
    assert.ok(many.records.length > 0 && many.records.length <= 1500);
    await assert.rejects(queryLogs(logs, { limit: 0 }), RangeError);
  });

  it("finds a request's lines by its X-Request-Id, the conductor's and key_manager's", async () => {
    const requestId = `sdk-ts-logs-${run}`;
    await unwrap(km.GET('/api/key_manager/keys', { headers: { [REQUEST_ID_HEADER]: requestId } }));
    const records = await until(`the lines of request ${requestId} from the conductor and key_manager`, async () => {
      const page = await queryLogs(logs, { request_id: requestId });
      const services = new Set(page.records.map((r) => r.service));
      return services.has('conductor') && services.has('key_manager') ? page.records : undefined;
    });
    for (const r of records) assert.equal(r.request_id, requestId, JSON.stringify(r));
    const conductor = records.find((r) => r.service === 'conductor')!;
    assert.equal(conductor.stream, 'log', "the conductor's own line");
    assert.match(conductor.message, /\/api\/key_manager\/keys/);
    const service = records.find((r) => r.service === 'key_manager')!;
    assert.match(service.message, /list_keys/);
  });

  it('tails the records stored after it began, and ends when its signal aborts', async () => {
    const newest = (await queryLogs(logs, { limit: 1 })).records[0];
    assert.ok(newest, 'the store has records by now');
    const requestId = `sdk-ts-tail-${run}`;
    const received: LogRecord[] = [];
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 20_000);
    const tail = tailLogs(
      logs,
      { service: 'key_manager', after: newest.id },
      (r) => {
        received.push(r);
        if (r.request_id === requestId) stop.abort();
      },
      stop.signal,
    );
    await unwrap(km.GET('/api/key_manager/keys', { headers: { [REQUEST_ID_HEADER]: requestId } }));
    await tail;
    clearTimeout(timer);
    const mine = received.find((r) => r.request_id === requestId);
    assert.ok(mine, `the tail delivered the line of request ${requestId} within 20 s; got ${JSON.stringify(received.map((r) => r.message))}`);
    assert.match(mine.message, /list_keys/);
    for (const r of received) {
      assert.equal(r.service, 'key_manager');
      assert.ok(r.id > newest.id, 'only records stored after `after`');
    }
    const ids = received.map((r) => r.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in the order stored');
  });

  it('ends a quiet tail at once when its signal aborts', async () => {
    const stop = new AbortController();
    const started = Date.now();
    setTimeout(() => stop.abort(), 500);
    await tailLogs(logs, { contains: `nothing-says-this-${run}` }, () => assert.fail('no line matches'), stop.signal);
    assert.ok(Date.now() - started < 5000, 'the tail ended soon after the abort');
    // An aborted signal: nothing is asked at all.
    await tailLogs(logs, {}, () => assert.fail('not asked'), stop.signal);
  });

  it('answers a bad filter as AerekosApiError, for queries and tails alike', async () => {
    const query = await apiError(queryLogs(logs, { regex: '(' }));
    assert.equal(query.status, 400);
    assert.equal(query.code, 'invalid_regex');
    const tail = await apiError(tailLogs(logs, { regex: '(' }, () => {}));
    assert.equal(tail.status, 400);
    assert.equal(tail.code, 'invalid_regex');
    const stranger = createLogsManagerClient({ baseUrl: platform!.baseUrl });
    assert.equal((await apiError(queryLogs(stranger, {}))).status, 401);
  });
});

describe('logs_manager helpers against scripted answers', () => {
  const record = (id: number): LogRecord => ({ id, time: '2026-01-01T00:00:00Z', source: 's', stream: 'stdout', message: `line ${id}` });
  const json = (body: unknown) => new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json; charset=utf-8' } });

  it('queryLogs follows next_cursor through short and empty pages until it has `limit` records', async () => {
    const pages = [
      { records: [record(9)], next_cursor: 'c1' },
      { records: [], next_cursor: 'c2' },
      { records: [record(7), record(6)], next_cursor: 'c3' },
    ];
    const asked: URL[] = [];
    const client = createLogsManagerClient({
      baseUrl: 'http://logs.invalid',
      token: 't0ken',
      fetch: async (input) => {
        const request = input as Request;
        assert.equal(request.headers.get('Authorization'), 'Bearer t0ken');
        asked.push(new URL(request.url));
        return json(pages[asked.length - 1]);
      },
    });
    const page = await queryLogs(client, { service: 'key_manager', limit: 3 });
    assert.deepEqual(page.records.map((r) => r.id), [9, 7, 6]);
    assert.equal(page.next_cursor, 'c3', 'where the next records begin');
    assert.deepEqual(asked.map((u) => [u.searchParams.get('limit'), u.searchParams.get('cursor'), u.searchParams.get('service')]), [
      ['3', null, 'key_manager'],
      ['2', 'c1', 'key_manager'],
      ['2', 'c2', 'key_manager'],
    ]);

    // The store ends: no next_cursor, fewer records than asked for.
    const ended = createLogsManagerClient({ baseUrl: 'http://logs.invalid', fetch: async () => json({ records: [record(1)] }) });
    assert.deepEqual(await queryLogs(ended, { limit: 10 }), { records: [record(1)] });
  });

  it('tailLogs parses server-sent events split anywhere, skipping comments and other event types', async () => {
    const events = [
      ': keep-alive\n\n',
      `data: ${JSON.stringify(record(1))}\n\n`,
      `data: ${JSON.stringify(record(2))}\r\n\r\n`,
      `event: notice\ndata: {"not":"a record"}\n\n`,
      `id: 3\ndata:${JSON.stringify(record(3))}\n\n`,
    ].join('');
    // Cut into 7-byte chunks, so lines, CRLFs and multi-byte characters are split.
    const bytes = new TextEncoder().encode(events + `data: ${JSON.stringify({ ...record(4), message: 'é ✓ 🔑' })}\n\n`);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
        controller.close();
      },
    });
    let asked: URL | undefined;
    const client = createLogsManagerClient({
      baseUrl: 'http://logs.invalid',
      token: 't0ken',
      fetch: async (input) => {
        const request = input as Request;
        assert.equal(request.headers.get('Authorization'), 'Bearer t0ken');
        asked = new URL(request.url);
        return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
      },
    });
    const received: LogRecord[] = [];
    // The stream ends (the server went away): the tail resolves.
    await tailLogs(client, { service: 'key_manager', after: 41 }, (r) => void received.push(r));
    assert.deepEqual(received.map((r) => r.id), [1, 2, 3, 4]);
    assert.equal(received[3]!.message, 'é ✓ 🔑');
    assert.equal(asked?.pathname, '/api/logs_manager/tail');
    assert.equal(asked?.searchParams.get('after'), '41');
    assert.equal(asked?.searchParams.get('service'), 'key_manager');
  });
});
