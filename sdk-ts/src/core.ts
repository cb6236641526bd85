// What every aerekos API client shares, whichever service it talks to: an openapi-fetch client
// with bearer auth and request ids, and one error type for every failure (`unwrap`).
//
// Everything public here is re-exported from index.ts; import from '@aerekos/sdk', not this file.

import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components } from './generated/conductor.js';

/** The body of every error response of every aerekos API (identical in all the specs). */
export type ErrorBody = components['schemas']['ErrorBody'];

export const REQUEST_ID_HEADER = 'X-Request-Id';

/** Options of every `create*Client` function. */
export interface ClientOptions {
  /** The service's root URL, e.g. `http://127.0.0.1:8080` (no `/api`). */
  baseUrl: string;
  /** A bearer token (from `login`); can be changed later with `setToken`. */
  token?: string;
  /** Called per request; a returned id is sent as `X-Request-Id` so server logs can be correlated. */
  requestId?: () => string | undefined;
  /** A custom fetch (tests, proxies); defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** Token handling added to every openapi-fetch client of the SDK. */
export interface TokenControl {
  /** Use `token` for the following requests; `undefined` makes them anonymous. */
  setToken(token: string | undefined): void;
  token(): string | undefined;
}

/**
 * The openapi-fetch client (`GET`, `POST`, ... typed from the spec `Paths`) plus token handling.
 * (`Paths extends {}` is openapi-fetch's own bound.)
 */
export type ApiClient<Paths extends {}> = Client<Paths> & TokenControl;

/** An openapi-fetch client for `Paths` with the SDK's auth and request-id middleware. */
export function createApiClient<Paths extends {}>(options: ClientOptions): ApiClient<Paths> {
  let current = options.token;
  const client = createClient<Paths>({ baseUrl: options.baseUrl, fetch: options.fetch });

  // Headers given explicitly on a call win: e.g. a worker credential on a heartbeat, or a
  // request id the caller already has.
  const auth: Middleware = {
    onRequest({ request }) {
      if (current !== undefined && !request.headers.has('Authorization')) {
        request.headers.set('Authorization', `Bearer ${current}`);
      }
      const id = options.requestId?.();
      if (id && !request.headers.has(REQUEST_ID_HEADER)) {
        request.headers.set(REQUEST_ID_HEADER, id);
      }
      return request;
    },
  };
  client.use(auth);

  // openapi-fetch's methods are closures (no `this`), so extending the client object is safe.
  return Object.assign(client, {
    setToken(token: string | undefined) {
      current = token;
    },
    token() {
      return current;
    },
  });
}

/** Any failed call: an HTTP error answer, or no answer at all (`status` 0). */
export class AerekosApiError extends Error {
  override readonly name = 'AerekosApiError';
  /** The HTTP status, or 0 when no response arrived (connection refused, DNS, ...). */
  readonly status: number;
  /** The ErrorBody `code`; `http_<status>` when the body was not an ErrorBody; `network_error` without a response. */
  readonly code: string;
  /** The request id to quote in a bug report: from the body, else the `X-Request-Id` header. */
  readonly requestId: string | undefined;
  /** The server's ErrorBody; undefined when the body was something else (e.g. a proxy's HTML page). */
  readonly body: ErrorBody | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    requestId?: string | undefined;
    body?: ErrorBody | undefined;
    cause?: unknown;
  }) {
    const where = init.requestId ? ` (request id ${init.requestId})` : '';
    super(`${init.status ? `${init.status} ` : ''}${init.code}: ${init.message}${where}`, { cause: init.cause });
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.body = init.body;
  }
}

export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.code === 'string' && typeof v.message === 'string' && typeof v.request_id === 'string';
}

/** The shape of an openapi-fetch result, whatever the operation. */
export type FetchResult<T> = { data?: T; error?: unknown; response: Response };

/**
 * Awaits an openapi-fetch call and returns its `data`, or throws an AerekosApiError.
 * openapi-fetch itself returns errors as values and rejects only when fetch does; this turns
 * both into one exception type so callers can write straight-line code.
 */
export async function unwrap<T>(result: Promise<FetchResult<T>> | FetchResult<T>): Promise<T> {
  let settled: FetchResult<T>;
  try {
    settled = await result;
  } catch (cause) {
    if (cause instanceof AerekosApiError) throw cause;
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new AerekosApiError({ status: 0, code: 'network_error', message, cause });
  }
  const { response } = settled;
  // Decide on the status, not on `error`: openapi-fetch leaves `error` undefined for an empty
  // error body.
  if (response.ok) return settled.data as T;

  const headerId = response.headers.get(REQUEST_ID_HEADER) ?? undefined;
  if (isErrorBody(settled.error)) {
    const body = settled.error;
    throw new AerekosApiError({
      status: response.status,
      code: body.code,
      message: body.message,
      requestId: body.request_id || headerId,
      body,
    });
  }
  // Not from an aerekos server (or not JSON): keep a bit of the body for the message.
  const text = typeof settled.error === 'string' ? settled.error : JSON.stringify(settled.error ?? '');
  throw new AerekosApiError({
    status: response.status,
    code: `http_${response.status}`,
    message: text.trim().slice(0, 200) || response.statusText || 'no body',
    requestId: headerId,
  });
}
