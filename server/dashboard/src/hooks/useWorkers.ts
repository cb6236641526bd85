// The worker registry: every worker (all pages), one worker, the instances assigned to it.

import { unwrap, type Instance, type Worker } from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync } from './useAsync';

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
