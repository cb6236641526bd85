// The SDK clients the screens use, all made from one session. The platform is reached only
// through @aerekos/sdk: the conductor's API, key_manager, storage_manager, secrets_manager,
// logs_manager and metrics_manager through the conductor's gateway at the same origin, and a
// worker's own API at its `api_url`.

import {
  createConductorClient,
  createKeyManagerClient,
  createLogsManagerClient,
  createMetricsManagerClient,
  createSecretsManagerClient,
  createStorageManagerClient,
  createWorkerClient,
  type ConductorClient,
  type KeyManagerClient,
  type LogsManagerClient,
  type MetricsManagerClient,
  type SecretsManagerClient,
  type StorageManagerClient,
  type WorkerClient,
} from '@aerekos/sdk';

export interface Clients {
  baseUrl: string;
  conductor: ConductorClient;
  keyManager: KeyManagerClient;
  storage: StorageManagerClient;
  secrets: SecretsManagerClient;
  logs: LogsManagerClient;
  metrics: MetricsManagerClient;
  worker(apiUrl: string): WorkerClient;
  token: string;
}

/** Where the conductor is: the origin that served the dashboard. */
export function conductorUrl(): string {
  return window.location.origin;
}

/**
 * Clients that send `token`; any 401 answer (an expired or revoked token) calls `onUnauthorized`,
 * which signs the user out.
 */
export function createClients(token: string, onUnauthorized: () => void): Clients {
  const baseUrl = conductorUrl();
  const guarded: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (response.status === 401) onUnauthorized();
    return response;
  };
  const options = { baseUrl, token, fetch: guarded };
  const workers = new Map<string, WorkerClient>();
  return {
    baseUrl,
    token,
    conductor: createConductorClient(options),
    keyManager: createKeyManagerClient(options),
    storage: createStorageManagerClient(options),
    secrets: createSecretsManagerClient(options),
    logs: createLogsManagerClient(options),
    metrics: createMetricsManagerClient(options),
    worker(apiUrl: string) {
      let c = workers.get(apiUrl);
      if (!c) {
        c = createWorkerClient({ ...options, baseUrl: apiUrl });
        workers.set(apiUrl, c);
      }
      return c;
    },
  };
}
