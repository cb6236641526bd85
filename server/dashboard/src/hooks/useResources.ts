// Cluster resources, sampled every few seconds while someone is signed in, so the overview can
// chart the recent past. The samples live in memory for the tab (they survive changing screens,
// not a reload).

import { unwrap, type ClusterResources } from '@aerekos/sdk';
import { useEffect, useSyncExternalStore } from 'react';

import type { Clients } from '../api/clients';
import { useClients } from './useSession';

export interface Sample {
  at: number;
  resources: ClusterResources;
}

export const SAMPLE_EVERY_MS = 3000;
export const MAX_SAMPLES = 40;

interface HistoryState {
  samples: Sample[];
  error: unknown;
}

let state: HistoryState = { samples: [], error: undefined };
const listeners = new Set<() => void>();

function set(next: HistoryState) {
  state = next;
  listeners.forEach((l) => l());
}

function subscribe(listener: () => void) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

async function sample(clients: Clients) {
  try {
    const resources = await unwrap(clients.conductor.GET('/api/resources'));
    const samples = [...state.samples, { at: Date.now(), resources }].slice(-MAX_SAMPLES);
    set({ samples, error: undefined });
  } catch (error) {
    set({ samples: state.samples, error });
  }
}

/** Runs the sampler for as long as the calling component (the signed-in shell) is mounted. */
export function useResourceSampler() {
  const clients = useClients();
  useEffect(() => {
    set({ samples: [], error: undefined });
    void sample(clients);
    const timer = setInterval(() => void sample(clients), SAMPLE_EVERY_MS);
    return () => clearInterval(timer);
  }, [clients]);
}

/** The samples so far (oldest first), the latest, and the last sampling error. */
export function useResourceHistory() {
  const s = useSyncExternalStore(subscribe, () => state);
  return { samples: s.samples, latest: s.samples.at(-1)?.resources, error: s.error, loading: s.samples.length === 0 && !s.error };
}
