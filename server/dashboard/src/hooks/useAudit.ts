// The audit trail (admins only): the newest events matching a filter, polled, and older pages
// loaded on demand with `next_before`. A poll merges the newest page into what is shown, keeping
// the older pages already loaded.

import { unwrap, type ConductorComponents } from '@aerekos/sdk';
import { useCallback, useEffect, useRef, useState } from 'react';

import { useClients } from './useSession';

export type AuditEvent = ConductorComponents['schemas']['AuditEvent'];
export type AuditPage = ConductorComponents['schemas']['AuditPage'];

export interface AuditFilter {
  /** Exactly this actor, e.g. `user:alice`. */
  actor?: string;
  /** Exactly this operation id, e.g. `create_user`. */
  action?: string;
  /** Only refused and failed requests (status 400 and up). */
  failed?: boolean;
}

/** Events asked for at a time. */
export const AUDIT_PAGE = 50;

/** What is shown: events newest first, and where the next older page begins (none: the end). */
export interface AuditView {
  events: AuditEvent[];
  nextBefore?: number;
}

function query(filter: AuditFilter, before?: number) {
  return {
    ...(filter.actor ? { actor: filter.actor } : {}),
    ...(filter.action ? { action: filter.action } : {}),
    ...(filter.failed ? { failed: true } : {}),
    ...(before !== undefined ? { before } : {}),
    limit: AUDIT_PAGE,
  };
}

/**
 * The newest page merged into what is shown. When the page reaches back into the events shown
 * (or holds every event there is), the older events already loaded stay below it; when it does not
 * (more events arrived than a page holds), they would leave a gap, so the page replaces them.
 */
export function mergeNewest(shown: AuditView | undefined, page: AuditPage): AuditView {
  const fresh: AuditView = { events: page.events, nextBefore: page.next_before };
  const oldestNew = page.events.at(-1)?.id;
  const newestShown = shown?.events[0]?.id;
  if (!shown || page.next_before === undefined || oldestNew === undefined || newestShown === undefined || oldestNew > newestShown) {
    return fresh;
  }
  const older = shown.events.filter((e) => e.id < oldestNew);
  return older.length > 0 ? { events: [...page.events, ...older], nextBefore: shown.nextBefore } : fresh;
}

/** An older page (asked for with `before`) appended, unless what is shown changed meanwhile. */
export function appendOlder(shown: AuditView | undefined, before: number, page: AuditPage): AuditView | undefined {
  if (!shown || shown.nextBefore !== before) return shown;
  const oldest = shown.events.at(-1)?.id ?? Number.POSITIVE_INFINITY;
  return { events: [...shown.events, ...page.events.filter((e) => e.id < oldest)], nextBefore: page.next_before };
}

export function useAudit(filter: AuditFilter, intervalMs = 5000) {
  const { conductor } = useClients();
  const [view, setView] = useState<AuditView | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const viewRef = useRef(view);
  viewRef.current = view;
  // Answers for an earlier filter (or client) are dropped.
  const generation = useRef(0);
  const { actor, action, failed } = filter;

  const fetchPage = useCallback(
    (before?: number) => unwrap(conductor.GET('/api/audit', { params: { query: query({ actor, action, failed }, before) } })),
    [conductor, actor, action, failed],
  );

  const refresh = useCallback(async () => {
    const mine = generation.current;
    try {
      const page = await fetchPage();
      if (mine !== generation.current) return;
      setView((shown) => mergeNewest(shown, page));
      setError(undefined);
    } catch (e) {
      if (mine === generation.current) setError(e);
    }
  }, [fetchPage]);

  const loadOlder = useCallback(async () => {
    const before = viewRef.current?.nextBefore;
    if (before === undefined) return;
    const mine = generation.current;
    setLoadingOlder(true);
    try {
      const page = await fetchPage(before);
      if (mine !== generation.current) return;
      setView((shown) => appendOlder(shown, before, page));
      setError(undefined);
    } catch (e) {
      if (mine === generation.current) setError(e);
    } finally {
      if (mine === generation.current) setLoadingOlder(false);
    }
  }, [fetchPage]);

  useEffect(() => {
    generation.current++;
    setView(undefined);
    setError(undefined);
    setLoadingOlder(false);
    void refresh();
    const timer = setInterval(() => void refresh(), intervalMs);
    return () => {
      clearInterval(timer);
      generation.current++;
    };
  }, [refresh, intervalMs]);

  return { view, error, loadingOlder, loadOlder, refresh };
}
