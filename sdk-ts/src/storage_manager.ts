// The storage_manager client: the typed openapi-fetch client for openapi/storage_manager.json
// (buckets and objects under /api/storage_manager/…, the service itself or the conductor's gateway
// with the same URL shape) plus helpers for what the generated types cannot say well: object
// bodies as bytes, uploads with progress, HEAD's metadata headers. Re-exported from index.ts.
//
// Only Web-platform APIs are used (fetch, Blob, and XMLHttpRequest where a browser has it), so this
// runs in browsers as well as in Node.

import { AerekosApiError, REQUEST_ID_HEADER, createApiClient, unwrap, type ApiClient, type ClientOptions } from './core.js';
import type { components, paths } from './generated/storage_manager.js';

export type { paths as StorageManagerPaths, components as StorageManagerComponents } from './generated/storage_manager.js';

type Schemas = components['schemas'];
export type Bucket = Schemas['Bucket'];
export type CreateBucketRequest = Schemas['CreateBucketRequest'];
export type ObjectInfo = Schemas['ObjectInfo'];
export type ObjectList = Schemas['ObjectList'];
export type StorageAccessKey = Schemas['AccessKey'];
export type CreateAccessKeyRequest = Schemas['CreateAccessKeyRequest'];

/** Options of `createStorageManagerClient`: the conductor's (or the service's) root URL and a conductor token. */
export type StorageManagerClientOptions = ClientOptions;

/** The openapi-fetch client (`GET`, `POST`, ... typed from the storage_manager spec) plus token handling. */
export type StorageManagerClient = ApiClient<paths>;

// Uploads with progress go around openapi-fetch (XMLHttpRequest), so they need the base URL and
// the options the client was made with.
const created = new WeakMap<StorageManagerClient, StorageManagerClientOptions>();

/**
 * A client for storage_manager. It accepts the conductor's tokens: log in at the conductor and pass
 * the same token (`createStorageManagerClient({ baseUrl: conductorUrl, token: conductor.token() })`).
 */
export function createStorageManagerClient(options: StorageManagerClientOptions): StorageManagerClient {
  const client = createApiClient<paths>(options);
  created.set(client, options);
  return client;
}

/** The body types an upload accepts. */
export type ObjectBody = Blob | ArrayBuffer | Uint8Array | string;

export interface PutObjectOptions {
  /** Stored and served back as the object's Content-Type (default: the Blob's type, else application/octet-stream). */
  contentType?: string;
  /** User metadata (S3's x-amz-meta-*). */
  metadata?: Record<string, string>;
  /** A key_manager key to encrypt the object with (default: the bucket's). */
  encryptionKey?: string;
  /**
   * Called as the body is sent: bytes sent so far and the total. In a browser this sends the
   * upload with XMLHttpRequest (fetch cannot report request progress); elsewhere it is called
   * once, when the upload is complete.
   */
  onProgress?: (sent: number, total: number) => void;
  /** Cancels an upload with progress. */
  signal?: AbortSignal;
}

/** What `HEAD` tells about an object. */
export interface ObjectHead {
  size: number;
  etag: string;
  lastModified: string;
  contentType: string;
  metadata: Record<string, string>;
  encryptionKey?: string;
}

/** The part of a browser's XMLHttpRequest used for uploads (the SDK's lib has no DOM types). */
interface Xhr {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  readonly upload: { onprogress: ((e: { loaded: number; total: number; lengthComputable: boolean }) => void) | null };
  onerror: (() => void) | null;
  onabort: (() => void) | null;
  onload: (() => void) | null;
  readonly status: number;
  readonly responseText: string;
  getResponseHeader(name: string): string | null;
  abort(): void;
  send(body: unknown): void;
}

function byteLength(body: ObjectBody): number {
  if (typeof body === 'string') return new TextEncoder().encode(body).length;
  if (body instanceof Blob) return body.size;
  return body.byteLength;
}

/**
 * Uploads `body` as object `key` of `bucket` (any UTF-8 key, `/` included) and returns its
 * metadata. Throws AerekosApiError when the call fails.
 */
export async function putObject(
  client: StorageManagerClient,
  bucket: string,
  key: string,
  body: ObjectBody,
  options: PutObjectOptions = {},
): Promise<ObjectInfo> {
  const contentType = options.contentType || (body instanceof Blob && body.type) || 'application/octet-stream';
  const query = {
    key,
    content_type: contentType,
    ...(options.metadata ? { metadata: JSON.stringify(options.metadata) } : {}),
    ...(options.encryptionKey ? { encryption_key: options.encryptionKey } : {}),
  };
  const XhrImpl = (globalThis as { XMLHttpRequest?: new () => Xhr }).XMLHttpRequest;
  const made = created.get(client);
  if (options.onProgress && XhrImpl && made) {
    const url = new URL(`${made.baseUrl.replace(/\/+$/, '')}/api/storage_manager/buckets/${encodeURIComponent(bucket)}/objects`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return uploadWithProgress(XhrImpl, url.toString(), client.token(), made.requestId?.(), body, options);
  }
  const info = await unwrap(
    client.POST('/api/storage_manager/buckets/{bucket}/objects', {
      params: { path: { bucket }, query },
      // The bytes as they are: openapi-fetch would JSON-encode anything but FormData.
      body: body as unknown as string,
      bodySerializer: (b: unknown) => b as string,
      headers: { 'Content-Type': 'application/octet-stream' },
    }),
  );
  const size = byteLength(body);
  options.onProgress?.(size, size);
  return info;
}

function uploadWithProgress(
  XhrImpl: new () => Xhr,
  url: string,
  token: string | undefined,
  requestId: string | undefined,
  body: ObjectBody,
  options: PutObjectOptions,
): Promise<ObjectInfo> {
  return new Promise((resolve, reject) => {
    const xhr = new XhrImpl();
    xhr.open('POST', url);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    if (token !== undefined) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    if (requestId) xhr.setRequestHeader(REQUEST_ID_HEADER, requestId);
    const total = byteLength(body);
    xhr.upload.onprogress = (e) => options.onProgress?.(e.loaded, e.lengthComputable ? e.total : total);
    xhr.onerror = () => reject(new AerekosApiError({ status: 0, code: 'network_error', message: 'the upload could not be sent' }));
    xhr.onabort = () => reject(new AerekosApiError({ status: 0, code: 'aborted', message: 'the upload was cancelled' }));
    xhr.onload = () => {
      let parsed: unknown = xhr.responseText;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        // not JSON: kept as text for the error message
      }
      // The answer as a Response, so errors get `unwrap`'s one shape.
      const response = new Response(null, { status: xhr.status, headers: { [REQUEST_ID_HEADER]: xhr.getResponseHeader(REQUEST_ID_HEADER) ?? '' } });
      unwrap<ObjectInfo>(response.ok ? { data: parsed as ObjectInfo, response } : { error: parsed, response }).then((info) => {
        options.onProgress?.(total, total);
        resolve(info);
      }, reject);
    };
    options.signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(body);
  });
}

/** The object's bytes, as a Blob. Throws AerekosApiError when the call fails (404 `object_not_found`, …). */
export async function getObject(client: StorageManagerClient, bucket: string, key: string): Promise<Blob> {
  return unwrap(
    client.GET('/api/storage_manager/buckets/{bucket}/objects/{key}', { params: { path: { bucket, key } }, parseAs: 'blob' }),
  ) as Promise<Blob>;
}

/** The object's metadata, from `HEAD` (no body is sent). */
export async function headObject(client: StorageManagerClient, bucket: string, key: string): Promise<ObjectHead> {
  const result = await client.HEAD('/api/storage_manager/buckets/{bucket}/objects/{key}', { params: { path: { bucket, key } }, parseAs: 'stream' });
  await unwrap({ ...result, data: undefined });
  const h = result.response.headers;
  let metadata: Record<string, string> = {};
  try {
    metadata = JSON.parse(h.get('X-Object-Metadata') ?? '{}') as Record<string, string>;
  } catch {
    // left empty
  }
  const encryptionKey = h.get('X-Object-Encryption-Key') ?? undefined;
  return {
    size: Number(h.get('Content-Length') ?? 0),
    etag: h.get('ETag') ?? '',
    lastModified: h.get('Last-Modified') ?? '',
    contentType: h.get('X-Object-Content-Type') ?? 'application/octet-stream',
    metadata,
    ...(encryptionKey ? { encryptionKey } : {}),
  };
}
