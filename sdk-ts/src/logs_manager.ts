// The logs_manager client: the typed openapi-fetch client for openapi/logs_manager.json (log
// records under /api/logs_manager/…, the service itself or the conductor's gateway with the same
// URL shape) plus helpers for reading them: `queryLogs` (pages until enough records are found) and
// `tailLogs` (new records as they are stored, from the service's server-sent events). Re-exported
// from index.ts.
//
// A query page can hold fewer records than asked for, even none, while `next_cursor` says there
// is more: logs_manager caps the bytes one request scans, so a selective filter over a large store
// takes several requests. `queryLogs` follows the cursor until it has its records or the store
// ends; one `GET …/records` call does not.
//
// The tail goes through the client's own openapi-fetch call (`parseAs: 'stream'`), so it sends
// the client's token and request id and uses its `fetch`, like every other call. Only Web-platform
// APIs (fetch's streams, TextDecoder, AbortSignal) are used, so this runs in browsers as well as
// in Node.

import { AerekosApiError, createApiClient, unwrap, type ApiClient, type ClientOptions } from './core.js';
import type { components, operations, paths } from './generated/logs_manager.js';

export type { paths as LogsManagerPaths, components as LogsManagerComponents } from './generated/logs_manager.js';

type Schemas = components['schemas'];
/** A stored line: where it came from (service, instance, worker, source), when, its level and request id. */
export type LogRecord = Schemas['LogRecord'];
/** A page of records in the order asked for; `next_cursor` while there may be more (even after a short page). */
export type LogPage = Schemas['LogPage'];
/** What the store holds: segments, bytes, records, the time span, each source's position. */
export type LogStats = Schemas['LogStats'];
/** One source's position in `LogStats`. */
export type LogSourceStats = Schemas['SourceStats'];
/** A batch of lines from one source, as `POST /api/logs_manager/ingest` takes it. */
export type IngestRequest = Schemas['IngestRequest'];
/** One line of an `IngestRequest`. */
export type IngestRecord = Schemas['IngestRecord'];
/** What an ingest stored (and skipped as repeats). */
export type IngestResult = Schemas['IngestResult'];
/** `trace`, `debug`, `info`, `warn`, `error`: a filter on it means this level and above. */
export type LogLevel = Schemas['LogLevel'];
/** `stdout` or `stderr` of an instance, or `log`: a platform process's own lines (a worker's, the conductor's). */
export type LogStream = Schemas['LogStream'];
/** `newest` (the default) or `oldest` first. */
export type LogOrder = Schemas['PageOrder'];

/**
 * What `queryLogs` looks for: the filters of `GET /api/logs_manager/records` (each one given must
 * match), the order, where to start (`cursor`: a previous answer's `next_cursor`) and how many
 * records to collect (`limit`, default 100; more than a page's 1000 is fine, it takes more pages).
 */
export type LogQuery = NonNullable<operations['query_logs']['parameters']['query']>;

/**
 * What `tailLogs` follows: the filters of `GET /api/logs_manager/tail`, and `after` (a record id:
 * the stored records after it come first, so a tail started after a query misses nothing).
 */
export type LogTailFilter = NonNullable<operations['tail_logs']['parameters']['query']>;

/** The most records one `GET …/records` answers with. */
export const LOG_PAGE_MAX = 1000;
/** What `queryLogs` collects when no `limit` is given (the service's own page size). */
export const LOG_QUERY_DEFAULT_LIMIT = 100;

/** Options of `createLogsManagerClient`: the conductor's (or the service's) root URL and a conductor token. */
export type LogsManagerClientOptions = ClientOptions;

/** The openapi-fetch client (`GET`, `POST`, ... typed from the logs_manager spec) plus token handling. */
export type LogsManagerClient = ApiClient<paths>;

/**
 * A client for logs_manager. It accepts the conductor's tokens (an admin's or a viewer's read every
 * record; an API key with `logs_manager:read:<service>` reads that service's, and must name it):
 * log in at the conductor and pass the same token
 * (`createLogsManagerClient({ baseUrl: conductorUrl, token: conductor.token() })`).
 */
export function createLogsManagerClient(options: LogsManagerClientOptions): LogsManagerClient {
  return createApiClient<paths>(options);
}

/**
 * Up to `query.limit` (default 100) records matching `query`, in its `order` (the newest first by
 * default), starting at `query.cursor` when given. Pages are followed through short and empty ones
 * until the records are collected or the store ends; the answer's `next_cursor` is there when more
 * may follow (pass it back as `cursor` for the next records). `signal` stops the paging (the call
 * then rejects). Throws AerekosApiError when a call fails (400 for a bad filter, e.g. an invalid
 * regex; 403 for an API key without the service's read scope), and a RangeError for a `limit`
 * that is not a whole number of 1 or more.
 */
export async function queryLogs(client: LogsManagerClient, query: LogQuery = {}, signal?: AbortSignal): Promise<LogPage> {
  const { limit = LOG_QUERY_DEFAULT_LIMIT, cursor: start, ...filter } = query;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`limit must be a whole number of 1 or more, not ${limit}`);
  }
  const records: LogRecord[] = [];
  let cursor = start;
  for (;;) {
    const page = await unwrap(
      client.GET('/api/logs_manager/records', {
        params: { query: { ...filter, limit: Math.min(LOG_PAGE_MAX, limit - records.length), ...(cursor !== undefined ? { cursor } : {}) } },
        ...(signal ? { signal } : {}),
      }),
    );
    records.push(...page.records);
    // `??`: a field without a value may come as null; the type says only "optional".
    cursor = page.next_cursor ?? undefined;
    if (cursor === undefined || records.length >= limit) break;
  }
  return cursor === undefined ? { records } : { records, next_cursor: cursor };
}

/**
 * Follows the records matching `filter` as logs_manager stores them (its server-sent-event tail):
 * `onRecord` is called with each, in the order stored (awaited, so a slow consumer slows the
 * reading). With `filter.after` (a record id, e.g. the newest a `queryLogs` returned), the stored
 * records after it come first; without it, only those stored after the tail began.
 *
 * Resolves when `signal` aborts (the request is closed) or when the server ends the stream
 * (logs_manager or the conductor went away: `signal.aborted` is false then; resume with `after` =
 * the id of the last record received). Rejects with AerekosApiError when the tail is refused (400
 * for a bad filter, 401, 403, 503 while logs_manager starts) or the connection breaks (status 0),
 * with a TypeError when an event is not a log record, and with what `onRecord` throws; the
 * request is closed in every case.
 */
export async function tailLogs(
  client: LogsManagerClient,
  filter: LogTailFilter,
  onRecord: (record: LogRecord) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return;
  let body: ReadableStream<Uint8Array> | null;
  try {
    body = await unwrap(
      client.GET('/api/logs_manager/tail', { params: { query: filter }, parseAs: 'stream', ...(signal ? { signal } : {}) }),
    );
  } catch (err) {
    if (signal?.aborted) return;
    throw err;
  }
  if (!body) return;

  const reader = body.getReader();
  // Cancelling the reader settles a pending read at once, whatever the fetch does with the abort.
  const stop = () => void reader.cancel().catch(() => {});
  signal?.addEventListener('abort', stop, { once: true });
  const events = new EventParser();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (cause) {
        if (signal?.aborted) return;
        const message = cause instanceof Error ? cause.message : String(cause);
        throw new AerekosApiError({ status: 0, code: 'network_error', message: `the log tail broke off: ${message}`, cause });
      }
      if (chunk.done || signal?.aborted) return;
      for (const data of events.push(decoder.decode(chunk.value, { stream: true }))) {
        let record: LogRecord;
        try {
          record = JSON.parse(data) as LogRecord;
        } catch {
          throw new TypeError(`the log tail sent an event that is not a log record: ${data.slice(0, 200)}`);
        }
        if (typeof record !== 'object' || record === null || typeof record.id !== 'number' || typeof record.message !== 'string') {
          throw new TypeError(`the log tail sent an event that is not a log record: ${data.slice(0, 200)}`);
        }
        await onRecord(record);
        if (signal?.aborted) return;
      }
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    stop();
  }
}

/**
 * Server-sent events (the text/event-stream format) out of text as it arrives: `push` returns the
 * data of each event completed by that text. Lines end with LF or CRLF; `data:` lines are joined
 * with LF; an event is complete at a blank line; `:` comments (keep-alives), `id:`, `retry:` and
 * unknown fields are skipped, and so are events with a type other than `message`.
 */
class EventParser {
  private buffered = '';
  private data: string[] = [];
  private type = '';

  push(text: string): string[] {
    const buffered = this.buffered + text;
    const done: string[] = [];
    let start = 0;
    let end: number;
    while ((end = buffered.indexOf('\n', start)) >= 0) {
      let line = buffered.slice(start, end);
      start = end + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (this.data.length > 0 && (this.type === '' || this.type === 'message')) done.push(this.data.join('\n'));
        this.data = [];
        this.type = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon >= 0 ? line.slice(0, colon) : line;
      let value = colon >= 0 ? line.slice(colon + 1) : '';
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.data.push(value);
      else if (field === 'event') this.type = value;
    }
    this.buffered = buffered.slice(start);
    return done;
  }
}
