// Log records from logs_manager (through the conductor's gateway): the newest lines matching a
// filter, older pages on demand (`next_cursor`), and, while following, new lines as logs_manager
// stores them (its server-sent-event tail, picked up after the newest line shown, so nothing is
// missed or shown twice). A tail that ends or breaks is picked up again after a pause.

import { queryLogs, tailLogs, unwrap, type LogLevel, type LogRecord, type LogStream } from '@aerekos/sdk';
import { useCallback, useEffect, useRef, useState } from 'react';

import { useAsync } from './useAsync';
import { useClients } from './useSession';

export type { LogLevel, LogRecord, LogStream };

/** Every level, the lowest first; a filter on one means that level and above. */
export const LOG_LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];

export function isLogLevel(s: string | undefined): s is LogLevel {
  return s !== undefined && (LOG_LEVELS as string[]).includes(s);
}

/** The lines sent by the platform's own processes, which no catalog service names. */
export const PLATFORM_SOURCES = ['conductor', 'worker'];

/** What the log view shows: every filter given must match. */
export interface LogFilter {
  /** A service's name (`conductor` and `worker` are the platform's own lines). */
  service?: string;
  /** An instance id. */
  instance?: string;
  /** A worker id. */
  worker?: string;
  /** This level and above (lines without a level are left out). */
  level?: LogLevel;
  /** Lines containing this text. */
  contains?: string;
  /** Lines about this request (its `X-Request-Id`). */
  request_id?: string;
}

/** Lines asked for at first, by Refresh, and by each "Load older". */
export const LOGS_PAGE = 200;
/** The most lines kept while following: the oldest go beyond it. */
export const LOGS_KEPT = 1000;
/** The pause before a tail that ended or broke is picked up again. */
const TAIL_RETRY_MS = 2000;
/** Lines from the tail are shown together every so often, not one render each. */
const TAIL_FLUSH_MS = 200;

/** What is shown: lines newest first, where older ones begin (none: the end), and whether old ones were let go. */
export interface LogView {
  records: LogRecord[];
  nextCursor?: string;
  /** Lines were dropped at the bottom to keep LOGS_KEPT: the older pages no longer join on. */
  trimmed: boolean;
}

/** `off`; `live` (the tail is asked for, lines come as they are stored); `retrying` (it ended or broke; asked again soon). */
export type TailState = 'off' | 'live' | 'retrying';

/** New lines (oldest first, as the tail sends them) put on top of what is shown, at most LOGS_KEPT kept. */
export function prependNewer(shown: LogView | undefined, fresh: LogRecord[]): LogView {
  const view = shown ?? { records: [], trimmed: false };
  const newest = view.records[0]?.id ?? -1;
  const newer = fresh.filter((r) => r.id > newest).reverse();
  if (newer.length === 0) return view;
  const records = [...newer, ...view.records];
  if (records.length <= LOGS_KEPT) return { ...view, records };
  return { records: records.slice(0, LOGS_KEPT), trimmed: true };
}

function pruned(filter: LogFilter): LogFilter {
  const out: LogFilter = {};
  for (const [k, v] of Object.entries(filter) as [keyof LogFilter, string | undefined][]) {
    if (v) (out as Record<string, string>)[k] = v;
  }
  return out;
}

/**
 * The lines matching `filter`, newest first: the newest page at once (and again on `refresh`),
 * older pages with `loadOlder`, and with `follow` the lines stored from then on, on top.
 */
export function useLogs(filter: LogFilter, follow: boolean) {
  const { logs } = useClients();
  const { service, instance, worker, level, contains, request_id } = filter;
  const [view, setView] = useState<LogView | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [tail, setTail] = useState<TailState>('off');
  const [tailError, setTailError] = useState<unknown>(undefined);
  // The filter the lines shown were loaded for (the tail waits for the new filter's first page).
  const [loadedFor, setLoadedFor] = useState<string | undefined>(undefined);
  const viewRef = useRef(view);
  viewRef.current = view;
  // Answers for an earlier filter (or client) are dropped.
  const generation = useRef(0);

  const query = useCallback(
    () => pruned({ service, instance, worker, level, contains, request_id }),
    [service, instance, worker, level, contains, request_id],
  );
  const key = JSON.stringify(query());

  const refresh = useCallback(async () => {
    const mine = generation.current;
    setLoading(true);
    try {
      const page = await queryLogs(logs, { ...query(), limit: LOGS_PAGE });
      if (mine !== generation.current) return;
      setView({ records: page.records, nextCursor: page.next_cursor, trimmed: false });
      setLoadedFor(JSON.stringify(query()));
      setError(undefined);
    } catch (e) {
      if (mine === generation.current) setError(e);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }, [logs, query]);

  const loadOlder = useCallback(async () => {
    const cursor = viewRef.current?.nextCursor;
    if (cursor === undefined) return;
    const mine = generation.current;
    setLoadingOlder(true);
    try {
      const page = await queryLogs(logs, { ...query(), limit: LOGS_PAGE, cursor });
      if (mine !== generation.current) return;
      setView((shown) => {
        if (!shown || shown.nextCursor !== cursor) return shown;
        const oldest = shown.records.at(-1)?.id ?? Number.POSITIVE_INFINITY;
        return { ...shown, records: [...shown.records, ...page.records.filter((r) => r.id < oldest)], nextCursor: page.next_cursor };
      });
      setError(undefined);
    } catch (e) {
      if (mine === generation.current) setError(e);
    } finally {
      if (mine === generation.current) setLoadingOlder(false);
    }
  }, [logs, query]);

  // A new filter: start again from its newest page.
  useEffect(() => {
    generation.current++;
    setView(undefined);
    setLoadedFor(undefined);
    setError(undefined);
    setLoadingOlder(false);
    void refresh();
    return () => {
      generation.current++;
    };
  }, [refresh]);

  // Following: once the first page is there, the tail after its newest line.
  const loaded = view !== undefined && loadedFor === key;
  useEffect(() => {
    if (!follow || !loaded) {
      setTail('off');
      setTailError(undefined);
      return;
    }
    const stop = new AbortController();
    let pending: LogRecord[] = [];
    let flushTimer: ReturnType<typeof setTimeout> | undefined;
    let failed = false;
    const flush = () => {
      flushTimer = undefined;
      const fresh = pending;
      pending = [];
      if (!stop.signal.aborted && fresh.length > 0) setView((shown) => prependNewer(shown, fresh));
    };
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          stop.signal.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, ms);
        stop.signal.addEventListener('abort', done, { once: true });
      });
    const run = async () => {
      while (!stop.signal.aborted) {
        // After the newest line shown or received: nothing is missed or shown twice.
        const after = pending.at(-1)?.id ?? viewRef.current?.records[0]?.id;
        setTail('live');
        try {
          await tailLogs(
            logs,
            { ...query(), ...(after !== undefined ? { after } : {}) },
            (record) => {
              // Lines come again: a failure shown is over.
              if (failed) {
                failed = false;
                setTailError(undefined);
              }
              pending.push(record);
              flushTimer ??= setTimeout(flush, TAIL_FLUSH_MS);
            },
            stop.signal,
          );
          if (stop.signal.aborted) return;
        } catch (e) {
          if (stop.signal.aborted) return;
          failed = true;
          setTailError(e);
          // A refused filter (400) or access (403) is not going to change by asking again.
          const status = (e as { status?: number }).status;
          if (status === 400 || status === 401 || status === 403) {
            setTail('off');
            return;
          }
        }
        setTail('retrying');
        await pause(TAIL_RETRY_MS);
      }
    };
    void run();
    return () => {
      stop.abort();
      if (flushTimer) clearTimeout(flushTimer);
    };
  }, [follow, loaded, logs, query]);

  return { view, error, loading, loadingOlder, loadOlder, refresh, tail, tailError };
}

/** The services whose lines there may be: the platform's own and the catalog's. */
export function useLogServices() {
  const { conductor } = useClients();
  return useAsync<string[]>(
    async () => {
      const services = await unwrap(conductor.GET('/api/services'));
      return [...PLATFORM_SOURCES, ...services.map((s) => s.name).filter((n) => !PLATFORM_SOURCES.includes(n)).sort()];
    },
    [conductor],
  );
}
