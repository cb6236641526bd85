// The key_manager client: the typed openapi-fetch client for openapi/key_manager.json plus
// helpers for the common case of encrypting a string. Re-exported from index.ts.
//
// Only Web-platform APIs (TextEncoder, TextDecoder, btoa, atob) are used, so this runs in
// browsers as well as in Node.

import { createApiClient, unwrap, type ApiClient, type ClientOptions } from './core.js';
import type { paths } from './generated/key_manager.js';
import type { EncryptionContext } from './key_manager_types.js';

export type { paths as KeyManagerPaths, components as KeyManagerComponents } from './generated/key_manager.js';
export type * as KeyManagerTypes from './key_manager_types.js';

/** Options of `createKeyManagerClient`: key_manager's root URL (no `/api`) and the conductor token. */
export type KeyManagerClientOptions = ClientOptions;

/** The openapi-fetch client (`GET`, `POST`, ... typed from the key_manager spec) plus token handling. */
export type KeyManagerClient = ApiClient<paths>;

/**
 * A client for key_manager. It accepts the conductor's tokens: log in at the conductor and pass
 * the same token here (`createKeyManagerClient({ baseUrl, token: conductor.token() })`).
 */
export function createKeyManagerClient(options: KeyManagerClientOptions): KeyManagerClient {
  return createApiClient<paths>(options);
}

/**
 * Encrypts `text` (as UTF-8) with `key` (its id or name) and returns the ciphertext
 * (`aerekos:v<version>:...`). The same `context` must be given to decrypt it.
 * Throws AerekosApiError when the call fails.
 */
export async function encryptText(
  client: KeyManagerClient,
  key: string,
  text: string,
  context?: EncryptionContext,
): Promise<string> {
  const body = { plaintext: bytesToBase64(new TextEncoder().encode(text)), ...(context ? { context } : {}) };
  const res = await unwrap(client.POST('/api/key_manager/keys/{key}/encrypt', { params: { path: { key } }, body }));
  return res.ciphertext;
}

/**
 * Decrypts a ciphertext of `key` made by `encryptText` (or any UTF-8 plaintext) and returns the
 * text. Throws AerekosApiError when the call fails (a wrong context or key gives status 400,
 * code `decryption_failed`), and a TypeError when the plaintext is not valid UTF-8.
 */
export async function decryptText(
  client: KeyManagerClient,
  key: string,
  ciphertext: string,
  context?: EncryptionContext,
): Promise<string> {
  const body = { ciphertext, ...(context ? { context } : {}) };
  const res = await unwrap(client.POST('/api/key_manager/keys/{key}/decrypt', { params: { path: { key } }, body }));
  // fatal: refuse invalid UTF-8 rather than silently replace it; ignoreBOM: keep a leading
  // U+FEFF, so that decryptText(encryptText(s)) === s for every string.
  return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(base64ToBytes(res.plaintext));
}

/** Standard base64 (with padding) of `bytes`, as key_manager expects for plaintexts. */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = '';
  // In chunks: String.fromCharCode with one argument per byte would overflow the stack on
  // large inputs.
  const CHUNK = 0x8000;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/** The bytes of a base64 string, e.g. a decrypted plaintext or a data key. */
export function base64ToBytes(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
