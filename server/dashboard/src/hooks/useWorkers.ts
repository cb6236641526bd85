// The worker registry: every worker (all pages), one worker, the instances assigned to it; a
// worker's own API (at its `api_url`), where its instances' output is read.

import { unwrap, type Instance, type Worker, type WorkerClient } from '@aerekos/sdk';

import type { Clients } from '../api/clients';
import { useClients } from './useSession';
import { useAsync } from './useAsync';

/** The client of `worker`'s own API; throws, saying so, when the worker serves none. */
export function workerApi(clients: Clients, worker: Worker): WorkerClient {
  if (!worker.api_url) throw new Error(`Worker ${worker.name} serves no API, so its instances' output cannot be read.`);
  return clients.worker(worker.api_url);
}

export function useWorkers(intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync(
    async () => {
      const all: Worker[] = [];
      let cursor: string | undefined;
      do {
        const page = await unwrap(conductor.GET('/api/workers', { params: { query: { limit: 500, ...(cursor ? { cursor } : {}) } } }));
        all.push(...page.workers);
        cursor = page.next_cursor;
      } while (cursor);
      return all;
    },
    [conductor],
    intervalMs,
  );
}

export function useWorker(id: string, intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync(() => unwrap(conductor.GET('/api/workers/{id}', { params: { path: { id } } })), [conductor, id], intervalMs);
}

export function useWorkerInstances(id: string, intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<Instance[]>(
    () => unwrap(conductor.GET('/api/workers/{id}/instances', { params: { path: { id } } })),
    [conductor, id],
    intervalMs,
  );
}
