// @aerekos/sdk/node: the SDK for Node.js, with HTTPS servers on the cluster's own CA.
//
// A conductor serving HTTPS presents a certificate from its cluster CA, which no system trusts, so
// a client believes that CA's bundle instead of the default roots: given outright (the `ca` option
// of the factories here), or fetched from the conductor and accepted only if its fingerprint
// matches a pin (`fetchPinnedCa`), as the Rust SDK's `Trust::ca_bundle` and `fetch_pinned_ca` do.
//
// Node-only (node:crypto, and undici for the connection's CA), so it is a separate entry point that
// the browser entry (index.ts) never imports: browsers manage their own trust, and the dashboard
// bundles index.ts. Everything index.ts exports is exported here too; the client factories of this
// module are the same ones with a `ca` option added.

import { createHash, X509Certificate } from 'node:crypto';

import { Agent } from 'undici';

import {
  createConductorClient as createConductorClientBase,
  createKeyManagerClient as createKeyManagerClientBase,
  createSecretsManagerClient as createSecretsManagerClientBase,
  createStorageManagerClient as createStorageManagerClientBase,
  createWorkerClient as createWorkerClientBase,
  login as loginBase,
  type ClientOptions,
  type ConductorClient,
  type ConductorClientOptions,
  type KeyManagerClient,
  type KeyManagerClientOptions,
  type LoginResponse,
  type SecretsManagerClient,
  type SecretsManagerClientOptions,
  type StorageManagerClient,
  type StorageManagerClientOptions,
  type WorkerClient,
} from './index.js';

export * from './index.js';

/** The option every client factory of `@aerekos/sdk/node` adds. */
export interface TrustOptions {
  /**
   * A PEM bundle of the CAs to believe instead of Node's default roots: the cluster CA, from
   * `fetchPinnedCa` (or `<DATA_DIR>/tls/ca.pem` on the conductor's machine). Only certificates
   * chaining to one of them are accepted. Unset: the default roots.
   */
  ca?: string;
}

/** The conductor's CA bundle and its fingerprint, as computed here. */
export interface FetchedCa {
  pem: string;
  /** `sha256:<hex>` over the bundle's DER certificates: compare it with a pin. */
  fingerprint: string;
}

// ---------------------------------------------------------------------------------------------
// Fingerprints

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The DER bytes of each CERTIFICATE block of a PEM bundle, in order (other blocks are skipped). */
function certificates(pem: string): Buffer[] {
  const ders: Buffer[] = [];
  for (const [, label, body] of pem.matchAll(PEM_BLOCK)) {
    if (label !== 'CERTIFICATE') continue;
    const b64 = body!.replace(/\s+/g, '');
    if (b64.length === 0 || b64.length % 4 !== 0 || !BASE64.test(b64)) {
      throw new Error('not a PEM certificate bundle: a CERTIFICATE block is not valid base64');
    }
    ders.push(Buffer.from(b64, 'base64'));
  }
  if (ders.length === 0) throw new Error('the CA bundle holds no certificate');
  return ders;
}

/**
 * `sha256:<lowercase hex>` over the DER bytes of every certificate of the PEM bundle, in order:
 * what a pin names (`CONDUCTOR_CA_PIN`, `aerekos login --ca-pin`, the `ca_pin` of the conductor's
 * start log). Throws if the bundle holds no certificate or one is not valid base64.
 */
export function caFingerprint(pem: string): string {
  const hash = createHash('sha256');
  for (const der of certificates(pem)) hash.update(der);
  return `sha256:${hash.digest('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// Fetching the CA

const CONNECT_TIMEOUT_MS = 5_000;
const FETCH_CA_TIMEOUT_MS = 30_000;

/**
 * The conductor's CA bundle (`GET <baseUrl>/api/tls/ca`, over a connection whose certificate is
 * not checked) and its fingerprint as computed here from the PEM, never the server's word for it.
 * Nothing is trusted yet: show the fingerprint to a person, or use `fetchPinnedCa`.
 * Throws if the server cannot be reached or does not serve TLS.
 */
export async function fetchCa(baseUrl: string): Promise<FetchedCa> {
  const url = `${baseUrl.replace(/\/+$/, '')}/api/tls/ca`;
  // Nothing sent on this connection is secret, and what comes back is checked by its hash.
  const unverified = new Agent({ connect: { rejectUnauthorized: false, timeout: CONNECT_TIMEOUT_MS } });
  try {
    let response: Response;
    try {
      response = await fetch(url, withDispatcher({ signal: AbortSignal.timeout(FETCH_CA_TIMEOUT_MS) }, unverified));
    } catch (err) {
      throw new Error(`GET ${url}: ${errorChain(err)}`, { cause: err });
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`GET ${url}: status ${response.status}`);
    }
    let ca: { enabled?: unknown; pem?: unknown };
    try {
      ca = (await response.json()) as typeof ca;
    } catch (err) {
      throw new Error(`GET ${url}: the answer is not the CA's JSON (${errorChain(err)})`, { cause: err });
    }
    if (ca.enabled !== true || typeof ca.pem !== 'string') {
      throw new Error(`${baseUrl} does not serve TLS, so there is no CA to pin`);
    }
    return { pem: ca.pem, fingerprint: caFingerprint(ca.pem) };
  } finally {
    await unverified.destroy();
  }
}

/**
 * The conductor's CA bundle (PEM), returned only if its fingerprint is `pin` (`sha256:<hex>`, any
 * case): give it as the `ca` option of the clients. A different fingerprint means another server,
 * or someone in the middle, and throws an Error naming both.
 */
export async function fetchPinnedCa(baseUrl: string, pin: string): Promise<string> {
  const { pem, fingerprint } = await fetchCa(baseUrl);
  if (fingerprint.toLowerCase() !== pin.trim().toLowerCase()) {
    throw new Error(
      `the server at ${baseUrl} presents CA ${fingerprint}, not the pinned ${pin}: refusing it (another server, or a man in the middle)`,
    );
  }
  return pem;
}

// ---------------------------------------------------------------------------------------------
// Clients believing a CA

/**
 * A fetch believing only the CAs of the PEM bundle `ca` (undefined: the default roots), for uses
 * the client factories do not cover. It calls `base` (default: the global fetch, looked up per
 * call) with an undici dispatcher in its init; a custom `base` must pass `init.dispatcher` on to
 * Node's fetch. A refused certificate rejects with a TypeError that says so (the original error
 * is its `cause`). Throws at once if `ca` is not a PEM certificate bundle.
 */
export function trustingFetch(ca: string | undefined, base?: typeof fetch): typeof fetch {
  let dispatcher: Agent | undefined;
  if (ca !== undefined) {
    for (const der of certificates(ca)) {
      try {
        new X509Certificate(der);
      } catch (err) {
        throw new Error(`not a PEM certificate bundle: ${errorChain(err)}`, { cause: err });
      }
    }
    dispatcher = new Agent({ connect: { ca } });
  }
  const trusting = async (input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
    const call = base ?? globalThis.fetch;
    try {
      return await call(input, dispatcher ? withDispatcher(init ?? {}, dispatcher) : init);
    } catch (err) {
      throw explainCertificateError(err, ca !== undefined);
    }
  };
  return trusting as typeof fetch;
}

/** `options` with `ca` turned into the `fetch` that believes it. */
function withTrust<T extends Pick<ClientOptions, 'fetch'> & TrustOptions>(options: T): Omit<T, 'ca'> {
  const { ca, ...rest } = options;
  return { ...rest, fetch: trustingFetch(ca, rest.fetch) };
}

/** `createConductorClient` of `@aerekos/sdk`, plus `ca`: the CA bundle to believe. */
export function createConductorClient(options: ConductorClientOptions & TrustOptions): ConductorClient {
  return createConductorClientBase(withTrust(options));
}

/** `login` of `@aerekos/sdk`, plus `ca`: the CA bundle to believe (e.g. from `fetchPinnedCa`). */
export async function login(
  baseUrl: string,
  username: string,
  password: string,
  options: Omit<ConductorClientOptions, 'baseUrl' | 'token'> & TrustOptions = {},
): Promise<{ client: ConductorClient; session: LoginResponse }> {
  return loginBase(baseUrl, username, password, withTrust(options));
}

/** `createKeyManagerClient` of `@aerekos/sdk`, plus `ca`: the CA bundle to believe. */
export function createKeyManagerClient(options: KeyManagerClientOptions & TrustOptions): KeyManagerClient {
  return createKeyManagerClientBase(withTrust(options));
}

/** `createSecretsManagerClient` of `@aerekos/sdk`, plus `ca`: the CA bundle to believe. */
export function createSecretsManagerClient(options: SecretsManagerClientOptions & TrustOptions): SecretsManagerClient {
  return createSecretsManagerClientBase(withTrust(options));
}

/** `createStorageManagerClient` of `@aerekos/sdk`, plus `ca`: the CA bundle to believe. */
export function createStorageManagerClient(options: StorageManagerClientOptions & TrustOptions): StorageManagerClient {
  return createStorageManagerClientBase(withTrust(options));
}

/** `createWorkerClient` of `@aerekos/sdk`, plus `ca`: the CA bundle to believe. */
export function createWorkerClient(options: ClientOptions & TrustOptions): WorkerClient {
  return createWorkerClientBase(withTrust(options));
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** `init` with an undici dispatcher, which Node's fetch takes but the DOM's RequestInit does not name. */
function withDispatcher(init: RequestInit, dispatcher: Agent): RequestInit {
  return { ...init, dispatcher } as RequestInit;
}

/** The messages of an error and its causes, joined: `fetch failed` alone says nothing. */
function errorChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const message = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: unknown }).code;
    const part = typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
    if (part && !parts.includes(part)) parts.push(part);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}

// OpenSSL's verification failures as Node reports them, plus a name that does not match.
const CERTIFICATE_CODES =
  /^(ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_[A-Z_]+)$/;

/** The code of the certificate failure somewhere in `err`'s causes, if it is one. */
function certificateCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; depth++, e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CERTIFICATE_CODES.test(code)) return code;
  }
  return undefined;
}

/** A refused server certificate as a TypeError (what fetch throws) that says what it means. */
function explainCertificateError(err: unknown, trustsCa: boolean): unknown {
  const code = certificateCode(err);
  if (code === undefined) return err;
  const what =
    code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? "the server's certificate does not name this host (the conductor adds names with TLS_SANS)"
      : trustsCa
        ? "the server's certificate does not chain to the given CA bundle (`ca`): this is another server, or someone in the middle"
        : "the server's certificate is not trusted: give the cluster CA as the `ca` option (fetchPinnedCa(url, pin) fetches it and checks its pin)";
  return new TypeError(`fetch failed: ${what} (${errorChain(err).replace(/^fetch failed: /, '')})`, { cause: err });
}
