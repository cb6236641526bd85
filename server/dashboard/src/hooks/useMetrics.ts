// History from metrics_manager (through the conductor's gateway), for the charts of the overview,
// a worker's page and a service's page: queries over the last hour, day or week, asked again
// while shown, so the charts hold what metrics_manager kept (a reload draws them at once) and
// move on with it. Also its alerts, alert rules and scrape targets.
//
// A range has its own step: 15 s over an hour (raw samples), 5 min over a day and 30 min over a
// week (1-minute rollups). Gauges are averaged over each step (`avg_over_time`, the window the
// step); counters are rates (`rate`, over the step, at least a minute, so each window holds
// several scrapes 10 s apart).

import {
  AerekosApiError,
  listAlertRules,
  listAlerts,
  listScrapeTargets,
  queryMetrics,
  type AlertRule,
  type MetricPoint,
  type MetricSeries,
  type MetricsAlert,
  type MetricsQuery,
  type ScrapeTargets,
} from '@aerekos/sdk';

import { useAsync } from './useAsync';
import { useClients } from './useSession';

export type { AlertRule, MetricPoint, MetricSeries, MetricsAlert, ScrapeTargets };

export type MetricsRange = '1h' | '24h' | '7d';

export interface RangeSpec {
  /** On the range picker. */
  label: string;
  seconds: number;
  /** Seconds between points. */
  step: number;
  /** How often the history is asked for again while shown. */
  refreshMs: number;
  /** Under the chart's left end. */
  since: string;
}

export const METRICS_RANGES: Record<MetricsRange, RangeSpec> = {
  '1h': { label: '1 h', seconds: 3600, step: 15, refreshMs: 15_000, since: '1 h ago' },
  '24h': { label: '24 h', seconds: 86_400, step: 300, refreshMs: 60_000, since: '24 h ago' },
  '7d': { label: '7 d', seconds: 7 * 86_400, step: 1800, refreshMs: 60_000, since: '7 d ago' },
};

export const METRICS_RANGE_NAMES = Object.keys(METRICS_RANGES) as MetricsRange[];

/** What the charts show when the address names no range. */
export const DEFAULT_RANGE: MetricsRange = '1h';

export function isMetricsRange(s: string | undefined): s is MetricsRange {
  return s !== undefined && Object.hasOwn(METRICS_RANGES, s);
}

/** The range an address names, or the default (an unknown one too: the picker shows which is used). */
export function rangeOf(s: string | undefined): MetricsRange {
  return isMetricsRange(s) ? s : DEFAULT_RANGE;
}

/** A query of the charts, without its time range (which the range picker gives). */
export type MetricSpec = Omit<MetricsQuery, 'start' | 'end' | 'step_secs' | 'window_secs' | 'function'> & {
  /** `gauge`: averaged over each step; `counter`: its rate a second (with `quantile`, of a histogram's buckets). */
  kind: 'gauge' | 'counter';
};

export function gauge(name: string, match: string[] = [], rest: Omit<MetricSpec, 'kind' | 'name' | 'match'> = {}): MetricSpec {
  return { kind: 'gauge', name, match, ...rest };
}

export function counter(name: string, match: string[] = [], rest: Omit<MetricSpec, 'kind' | 'name' | 'match'> = {}): MetricSpec {
  return { kind: 'counter', name, match, ...rest };
}

/** The query of `spec` over `range`, ending at `end`. */
export function queryOf(spec: MetricSpec, range: MetricsRange, end: number): MetricsQuery {
  const r = METRICS_RANGES[range];
  const { kind, ...rest } = spec;
  return {
    ...rest,
    start: new Date(end - r.seconds * 1000),
    end: new Date(end),
    step_secs: r.step,
    function: kind === 'gauge' ? 'avg_over_time' : 'rate',
    window_secs: kind === 'gauge' ? r.step : Math.max(r.step, 60),
  };
}

/** The answers of a set of queries over one range: each query's series, and the range's ends (Unix ms). */
export interface MetricHistory<K extends string> {
  start: number;
  end: number;
  series: Record<K, MetricSeries[]>;
}

/**
 * The queries `specs` over the last `range`, each answer's series under its key; asked for again
 * every so often (the range's `refreshMs`) and at once when the range or the queries change.
 */
export function useMetricHistory<K extends string>(specs: Record<K, MetricSpec>, range: MetricsRange) {
  const { metrics } = useClients();
  const key = JSON.stringify(specs);
  return useAsync<MetricHistory<K>>(
    async () => {
      const end = Date.now();
      const entries = Object.entries(specs) as [K, MetricSpec][];
      const answers = await Promise.all(entries.map(([, spec]) => queryMetrics(metrics, queryOf(spec, range, end))));
      const series = Object.fromEntries(entries.map(([k], i) => [k, answers[i]!.series])) as Record<K, MetricSeries[]>;
      return { start: end - METRICS_RANGES[range].seconds * 1000, end, series };
    },
    [metrics, range, key],
    METRICS_RANGES[range].refreshMs,
  );
}

/** The points of the first series (one is expected: a query of one series, or summed into one). */
export function pointsOf(series: MetricSeries[] | undefined): MetricPoint[] | undefined {
  if (!series) return undefined;
  return series[0]?.points ?? [];
}

/**
 * Per step, `f` of the values the series of `parts` have there, grouped by their `label` (e.g.
 * each worker's CPU and cores): only groups with a value of every part at that step count, and a
 * step without any is left out, as is one where `f` gives undefined.
 */
export function combineBy<P extends string>(
  parts: Record<P, MetricSeries[] | undefined>,
  label: string,
  f: (groups: Record<P, number>[]) => number | undefined,
): MetricPoint[] | undefined {
  const names = Object.keys(parts) as P[];
  if (names.some((n) => parts[n] === undefined)) return undefined;
  // step → group → part → value
  const steps = new Map<number, Map<string, Partial<Record<P, number>>>>();
  for (const part of names) {
    for (const s of parts[part]!) {
      const group = s.labels[label] ?? '';
      for (const p of s.points) {
        let groups = steps.get(p.t);
        if (!groups) steps.set(p.t, (groups = new Map()));
        let values = groups.get(group);
        if (!values) groups.set(group, (values = {}));
        values[part] = p.v;
      }
    }
  }
  const out: MetricPoint[] = [];
  for (const [t, groups] of [...steps.entries()].sort((a, b) => a[0] - b[0])) {
    const complete = [...groups.values()].filter((g): g is Record<P, number> => names.every((n) => g[n] !== undefined));
    if (complete.length === 0) continue;
    const v = f(complete);
    if (v !== undefined && Number.isFinite(v)) out.push({ t, v });
  }
  return out;
}

/** The answers the gateway gives while metrics_manager is not there (not deployed, not healthy, unreachable). */
export function metricsUnavailable(error: unknown): boolean {
  return error instanceof AerekosApiError && [404, 502, 503].includes(error.status);
}

/** What a chart says instead of bars while its history is not there. */
export function historyMessage(error: unknown): string | undefined {
  if (error === undefined) return undefined;
  return metricsUnavailable(error) ? 'metrics_manager is not running' : 'The history could not be read.';
}

/** The alerts whose condition holds now, firing first, then pending; the newest first within each. */
export function useAlerts(intervalMs = 15_000) {
  const { metrics } = useClients();
  return useAsync<MetricsAlert[]>(
    async () => {
      const alerts = await listAlerts(metrics);
      const rank = (a: MetricsAlert) => (a.state === 'firing' ? 0 : 1);
      return alerts.sort((a, b) => rank(a) - rank(b) || Date.parse(b.since) - Date.parse(a.since));
    },
    [metrics],
    intervalMs,
  );
}

export function useAlertRules(intervalMs = 60_000) {
  const { metrics } = useClients();
  return useAsync<AlertRule[]>(async () => (await listAlertRules(metrics)).sort((a, b) => (a.name ?? '').localeCompare(b.name ?? '')), [metrics], intervalMs);
}

export function useScrapeTargets(intervalMs = 10_000) {
  const { metrics } = useClients();
  return useAsync<ScrapeTargets>(() => listScrapeTargets(metrics), [metrics], intervalMs);
}
