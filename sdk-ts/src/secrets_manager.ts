// The secrets_manager client: the typed openapi-fetch client for openapi/secrets_manager.json
// (secrets under /api/secrets_manager/…, the service itself or the conductor's gateway with the
// same URL shape) plus helpers for the common case of a secret holding a string or a JSON object.
// Re-exported from index.ts.
//
// A secret's name (`apps/shop/db-password`) is ONE path parameter: its `/`s must travel
// percent-encoded (`apps%2Fshop%2Fdb-password`). openapi-fetch's default path serializer encodes
// every path parameter with encodeURIComponent, which encodes `/`, so names are passed to it as
// they are, here and in callers' own `client.GET('/api/secrets_manager/secrets/{name}', …)` calls
// (the tests check the URL sent). Encoding them again would encode the `%`.
//
// Only Web-platform APIs (TextEncoder, TextDecoder, btoa, atob) are used, so this runs in
// browsers as well as in Node.

import { createApiClient, unwrap, type ApiClient, type ClientOptions } from './core.js';
import type { components, paths } from './generated/secrets_manager.js';
import { base64ToBytes, bytesToBase64 } from './key_manager.js';

export type { paths as SecretsManagerPaths, components as SecretsManagerComponents } from './generated/secrets_manager.js';

type Schemas = components['schemas'];
/** A secret's metadata, versions (newest first) and labels; never a value. */
export type Secret = Schemas['Secret'];
/** A secret as listed (metadata only, without versions). */
export type SecretSummary = Schemas['SecretSummary'];
export type SecretList = Schemas['SecretList'];
/** One version of a secret (never its value). */
export type SecretVersion = Schemas['SecretVersion'];
/** A value: exactly one of `bytes` (standard base64) and `json` (an object). */
export type SecretValue = Schemas['SecretValue'];
/** A version's value, as a read answers it. */
export type SecretValueResponse = Schemas['SecretValueResponse'];
export type CreateSecretRequest = Schemas['CreateSecretRequest'];
export type UpdateSecretRequest = Schemas['UpdateSecretRequest'];
export type PutSecretValueRequest = Schemas['PutValueRequest'];
export type SecretRotationSchedule = Schemas['RotationSchedule'];
export type SetSecretRotationRequest = Schemas['SetRotationRequest'];
export type SecretAuditRecord = Schemas['AuditRecord'];
export type SecretAuditPage = Schemas['AuditPage'];

/** The staging label a read without version or label serves; every write moves it to the new version. */
export const AWSCURRENT = 'AWSCURRENT';
/** The staging label of the version AWSCURRENT left. */
export const AWSPREVIOUS = 'AWSPREVIOUS';

/** Options of `createSecretsManagerClient`: the conductor's (or the service's) root URL and a conductor token. */
export type SecretsManagerClientOptions = ClientOptions;

/** The openapi-fetch client (`GET`, `PUT`, ... typed from the secrets_manager spec) plus token handling. */
export type SecretsManagerClient = ApiClient<paths>;

/**
 * A client for secrets_manager. It accepts the conductor's tokens (an admin's, a viewer's for
 * metadata only, or an API key's): log in at the conductor and pass the same token
 * (`createSecretsManagerClient({ baseUrl: conductorUrl, token: conductor.token() })`).
 */
export function createSecretsManagerClient(options: SecretsManagerClientOptions): SecretsManagerClient {
  return createApiClient<paths>(options);
}

/** Options of the `putSecret*` helpers. */
export interface PutSecretOptions {
  /**
   * Check-and-set: write only if the secret's latest version is this one (0: only if it has no
   * version yet); otherwise AerekosApiError 409 `cas_mismatch`, and nothing is written.
   */
  cas?: number;
  /** Custom staging labels to put on the new version besides AWSCURRENT. */
  labels?: string[];
}

/** Which version the `getSecret*` helpers read: by number, by staging label, or (neither) AWSCURRENT. */
export interface GetSecretOptions {
  version?: number;
  label?: string;
}

/** Writes `value` as the next version of secret `name` (which must exist) and returns that version. */
async function putValue(
  client: SecretsManagerClient,
  name: string,
  value: SecretValue,
  options: PutSecretOptions,
): Promise<SecretVersion> {
  const body: PutSecretValueRequest = {
    value,
    ...(options.cas !== undefined ? { cas: options.cas } : {}),
    ...(options.labels ? { labels: options.labels } : {}),
  };
  // `name` as it is: openapi-fetch percent-encodes it, `/` included (see the top of this file).
  return unwrap(client.PUT('/api/secrets_manager/secrets/{name}/value', { params: { path: { name } }, body }));
}

/** Reads a version of secret `name` (every read is audited). */
async function getValue(client: SecretsManagerClient, name: string, options: GetSecretOptions): Promise<SecretValueResponse> {
  const query = {
    ...(options.version !== undefined ? { version: options.version } : {}),
    ...(options.label !== undefined ? { label: options.label } : {}),
  };
  return unwrap(client.GET('/api/secrets_manager/secrets/{name}/value', { params: { path: { name }, query } }));
}

function describeRead(read: SecretValueResponse): string {
  return `version ${read.version} of secret ${JSON.stringify(read.name)}`;
}

/**
 * Writes `text` (as UTF-8 bytes) as the next version of secret `name`, which becomes AWSCURRENT;
 * returns the new version (its number, labels, author). The secret must exist (create it with
 * `POST /api/secrets_manager/secrets`, which can take the first value too). Throws
 * AerekosApiError when the call fails (409 `cas_mismatch` when `cas` is not the latest version;
 * 400 `invalid_value` for an empty string: the service refuses empty values).
 */
export async function putSecretText(
  client: SecretsManagerClient,
  name: string,
  text: string,
  options: PutSecretOptions = {},
): Promise<SecretVersion> {
  return putValue(client, name, { bytes: bytesToBase64(new TextEncoder().encode(text)) }, options);
}

/**
 * The text of a version of secret `name`: AWSCURRENT's, or the `version` or `label` asked for.
 * Throws AerekosApiError when the call fails (403 for a viewer, who never reads values; 404
 * `no_value`, `version_not_found`, `label_not_found`, ...), and a TypeError when the value is a
 * JSON object (use `getSecretJson`) or its bytes are not valid UTF-8.
 */
export async function getSecretText(client: SecretsManagerClient, name: string, options: GetSecretOptions = {}): Promise<string> {
  const read = await getValue(client, name, options);
  if (read.value.bytes === undefined) {
    throw new TypeError(`${describeRead(read)} is a JSON object, not text: read it with getSecretJson`);
  }
  // fatal: refuse invalid UTF-8 rather than silently replace it; ignoreBOM: keep a leading
  // U+FEFF, so that getSecretText after putSecretText gives the string written, whatever it is.
  return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(base64ToBytes(read.value.bytes));
}

/**
 * Writes the JSON object `value` as the next version of secret `name`, which becomes AWSCURRENT;
 * returns the new version. Otherwise as `putSecretText`.
 */
export async function putSecretJson(
  client: SecretsManagerClient,
  name: string,
  value: Record<string, unknown>,
  options: PutSecretOptions = {},
): Promise<SecretVersion> {
  return putValue(client, name, { json: value }, options);
}

/**
 * The JSON object of a version of secret `name` (AWSCURRENT's, or the `version` or `label` asked
 * for). `T` is the caller's word for its shape; nothing checks it. Throws AerekosApiError when the
 * call fails, and a TypeError when the value is bytes (use `getSecretText`).
 */
export async function getSecretJson<T extends Record<string, unknown> = Record<string, unknown>>(
  client: SecretsManagerClient,
  name: string,
  options: GetSecretOptions = {},
): Promise<T> {
  const read = await getValue(client, name, options);
  if (read.value.json === undefined) {
    throw new TypeError(`${describeRead(read)} is bytes, not a JSON object: read it with getSecretText`);
  }
  return read.value.json as T;
}
