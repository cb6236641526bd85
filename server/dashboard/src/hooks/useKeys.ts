// key_manager's keys, reached through the conductor's gateway (/api/key_manager/…).

import { decryptText, encryptText, unwrap, type KeyManagerTypes } from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync } from './useAsync';

export type Key = KeyManagerTypes.Key;

export function useKeys(intervalMs = 5000) {
  const { keyManager } = useClients();
  return useAsync<Key[]>(() => unwrap(keyManager.GET('/api/key_manager/keys')), [keyManager], intervalMs);
}

export function useKeyActions() {
  const { keyManager } = useClients();
  const path = (key: string) => ({ params: { path: { key } } });
  return {
    create: (name: string, description: string) =>
      unwrap(keyManager.POST('/api/key_manager/keys', { body: { name, ...(description ? { description } : {}) } })),
    rotate: (key: string) => unwrap(keyManager.POST('/api/key_manager/keys/{key}/rotate', path(key))),
    disable: (key: string) => unwrap(keyManager.POST('/api/key_manager/keys/{key}/disable', path(key))),
    enable: (key: string) => unwrap(keyManager.POST('/api/key_manager/keys/{key}/enable', path(key))),
    encrypt: (key: string, text: string) => encryptText(keyManager, key, text),
    decrypt: (key: string, ciphertext: string) => decryptText(keyManager, key, ciphertext),
  };
}
