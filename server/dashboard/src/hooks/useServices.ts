// The service catalog, deployments, and what admins do with them; an instance's output from its
// worker's own API.

import { unwrap, type Service, type Worker } from '@aerekos/sdk';
import type { ConductorComponents } from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync } from './useAsync';
import { workerApi } from './useWorkers';

export type Deployment = ConductorComponents['schemas']['Deployment'];
/** A stateful service waiting for the worker that holds its volume to come back. */
export type VolumeWait = ConductorComponents['schemas']['VolumeWait'];

export interface ServiceWithDeployment {
  service: Service;
  deployment: Deployment | undefined;
}

/** `healthy`, `degraded` (some replicas missing), `down` (none healthy), `disabled`. */
export type ServiceHealth = 'healthy' | 'degraded' | 'down' | 'disabled';

export function serviceHealth(s: ServiceWithDeployment): ServiceHealth {
  if (!s.service.enabled) return 'disabled';
  const d = s.deployment;
  const want = d?.spec?.replicas ?? s.service.deployment?.replicas ?? s.service.default_replicas;
  const healthy = d?.healthy ?? 0;
  if (want === 0) return 'healthy';
  if (healthy >= want) return 'healthy';
  return healthy > 0 ? 'degraded' : 'down';
}

export function useServices(intervalMs = 3000) {
  const { conductor } = useClients();
  return useAsync<ServiceWithDeployment[]>(
    async () => {
      const services = await unwrap(conductor.GET('/api/services'));
      const deployments = await Promise.all(
        services.map((s) =>
          unwrap(conductor.GET('/api/services/{name}/deployments', { params: { path: { name: s.name } } })).catch(() => undefined),
        ),
      );
      return services.map((service, i) => ({ service, deployment: deployments[i] }));
    },
    [conductor],
    intervalMs,
  );
}

export function useDeployment(name: string, intervalMs = 2000) {
  const { conductor } = useClients();
  return useAsync(
    () => unwrap(conductor.GET('/api/services/{name}/deployments', { params: { path: { name } } })),
    [conductor, name],
    intervalMs,
  );
}

export function useServiceActions() {
  const { conductor } = useClients();
  return {
    enable: (name: string) => unwrap(conductor.POST('/api/services/{name}/enable', { params: { path: { name } } })),
    disable: (name: string) => unwrap(conductor.POST('/api/services/{name}/disable', { params: { path: { name } } })),
    deploy: (name: string, replicas: number) =>
      unwrap(conductor.POST('/api/services/{name}/deploy', { params: { path: { name } }, body: { replicas } })),
  };
}

/** The end of an instance's output, read from the worker that runs it. */
export function useInstanceLogs(worker: Worker | undefined, instanceId: string | undefined, intervalMs = 3000) {
  const clients = useClients();
  return useAsync<string | undefined>(
    async () => {
      if (!worker || !instanceId) return undefined;
      const api = workerApi(clients, worker);
      return unwrap(
        api.GET('/api/worker/instances/{id}/logs', { params: { path: { id: instanceId }, query: { max_bytes: 16384 } }, parseAs: 'text' }),
      ) as Promise<string>;
    },
    [clients, worker?.api_url, instanceId],
    intervalMs,
  );
}
