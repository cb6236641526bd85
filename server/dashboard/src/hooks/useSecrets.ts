// secrets_manager, through the conductor's gateway (/api/secrets_manager/…): secrets and their
// metadata (polled), and what admins do: create a secret, write a new value, reveal one version's
// value. Values are read only when asked for (each read is audited by the service) and are never
// kept beyond the component that revealed them.

import {
  base64ToBytes,
  bytesToBase64,
  putSecretText,
  unwrap,
  type Secret,
  type SecretSummary,
  type SecretValue,
  type SecretsManagerClient,
} from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync } from './useAsync';

export type { Secret, SecretSummary, SecretVersion } from '@aerekos/sdk';

/** How many secrets the list shows at most (pages of PAGE, followed in one load). */
export const MAX_LISTED = 2000;
const PAGE = 500;

export interface SecretListing {
  secrets: SecretSummary[];
  /** More secrets exist than MAX_LISTED. */
  truncated: boolean;
}

async function listAll(secrets: SecretsManagerClient): Promise<SecretListing> {
  const out: SecretSummary[] = [];
  let cursor: string | undefined;
  do {
    const page = await unwrap(secrets.GET('/api/secrets_manager/secrets', { params: { query: { limit: PAGE, ...(cursor ? { cursor } : {}) } } }));
    out.push(...page.secrets);
    cursor = page.next_cursor;
  } while (cursor && out.length < MAX_LISTED);
  return { secrets: out.slice(0, MAX_LISTED), truncated: Boolean(cursor) || out.length > MAX_LISTED };
}

/** Every secret's name and metadata (never a value), by name. */
export function useSecrets(intervalMs = 10000) {
  const { secrets } = useClients();
  return useAsync<SecretListing>(() => listAll(secrets), [secrets], intervalMs);
}

/** One secret's metadata, versions and labels (never a value). */
export function useSecret(name: string, intervalMs = 5000) {
  const { secrets } = useClients();
  return useAsync<Secret>(
    () => unwrap(secrets.GET('/api/secrets_manager/secrets/{name}', { params: { path: { name } } })),
    [secrets, name],
    intervalMs,
  );
}

/** A value as the screen shows it once revealed. */
export interface RevealedValue {
  version: number;
  /** `text`: UTF-8 bytes; `json`: an object, shown indented; `binary`: bytes that are not UTF-8, shown as base64. */
  kind: 'text' | 'json' | 'binary';
  text: string;
}

export function showValue(version: number, value: SecretValue): RevealedValue {
  if (value.json !== undefined) return { version, kind: 'json', text: JSON.stringify(value.json, null, 2) };
  const b64 = value.bytes ?? '';
  try {
    return { version, kind: 'text', text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(base64ToBytes(b64)) };
  } catch {
    return { version, kind: 'binary', text: b64 };
  }
}

export function useSecretActions() {
  const { secrets } = useClients();
  return {
    /** A new secret; with `text`, its version 1. */
    create: (name: string, description: string, text: string) =>
      unwrap(
        secrets.POST('/api/secrets_manager/secrets', {
          body: {
            name,
            ...(description ? { description } : {}),
            ...(text ? { value: { bytes: bytesToBase64(new TextEncoder().encode(text)) } } : {}),
          },
        }),
      ),
    /** The next version, only if `latest` is still the latest one (409 `cas_mismatch` otherwise). */
    putText: (name: string, text: string, latest: number) => putSecretText(secrets, name, text, { cas: latest }),
    /** Reads one version's value: a read the service audits. */
    reveal: async (name: string, version: number): Promise<RevealedValue> => {
      const read = await unwrap(secrets.GET('/api/secrets_manager/secrets/{name}/value', { params: { path: { name }, query: { version } } }));
      return showValue(read.version, read.value);
    },
    restore: (name: string) => unwrap(secrets.POST('/api/secrets_manager/secrets/{name}/restore', { params: { path: { name } } })),
  };
}
