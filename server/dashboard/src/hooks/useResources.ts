// The cluster's resources now (live and lost workers; cores, CPU use, memory and disk of the live
// ones), asked for every few seconds while shown. Their history is metrics_manager's (useMetrics).

import { unwrap, type ClusterResources } from '@aerekos/sdk';

import { useAsync } from './useAsync';
import { useClients } from './useSession';

export type { ClusterResources };

export function useClusterResources(intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<ClusterResources>(() => unwrap(conductor.GET('/api/resources')), [conductor], intervalMs);
}
