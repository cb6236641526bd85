// Numbers and dates as people read them.

export function bytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function percent(part: number, whole: number): number {
  return whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0;
}

export function pct(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '—' : `${n.toFixed(n < 10 ? 1 : 0)}%`;
}

/** A rate: "0.42/s", "3.5/s", "120/s". */
export function perSecond(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)}/s`;
}

/** A latency given in seconds: "0.42 ms", "4.2 ms", "1.25 s" (no µ: the heading font would show it as M). */
export function latency(secs: number | undefined): string {
  if (secs === undefined || !Number.isFinite(secs)) return '—';
  if (secs < 1) return `${(secs * 1000).toFixed(secs < 0.01 ? 2 : secs < 0.1 ? 1 : 0)} ms`;
  return `${secs.toFixed(2)} s`;
}

/** A count that an average may have made fractional: "3", "2.5". */
export function count(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  return String(Math.round(n * 10) / 10);
}

/** "12 s ago", "3 min ago", … relative to now. */
export function ago(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}

/** A length of time for people: "850 ms", "12.3 s", "4 min 5 s", "1 min", "2 h 10 min", "1 h". */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const whole = Math.round(s);
  const m = Math.floor(whole / 60);
  if (m < 60) return whole % 60 ? `${m} min ${whole % 60} s` : `${m} min`;
  return m % 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${Math.floor(m / 60)} h`;
}

/** The time from `from` to `to` (or to now), as `duration` shows it. */
export function between(from: string | undefined, to?: string, now = Date.now()): string {
  if (!from) return '—';
  const start = Date.parse(from);
  const end = to ? Date.parse(to) : now;
  return Number.isNaN(start) || Number.isNaN(end) ? '—' : duration(end - start);
}

export function dateTime(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** The local time of day to the millisecond ("14:03:07.412"), for log lines. */
export function clockTime(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** The local date ("2026-12-07"), for log lines. */
export function localDate(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

export function shortId(id: string | undefined): string {
  return id ? id.slice(0, 8) : '—';
}

/** The message of any error, for an ErrorBanner. */
export function errorMessage(e: unknown): string {
  if (e && typeof e === 'object' && 'status' in e && 'message' in e) {
    const err = e as { status: number; code: string; message: string; body?: { message: string }; requestId?: string };
    if (err.status === 0) return `The conductor cannot be reached (${err.body?.message ?? err.message}).`;
    const msg = err.body?.message ?? err.message;
    return err.requestId ? `${msg} (request id ${err.requestId})` : msg;
  }
  return e instanceof Error ? e.message : String(e);
}

/** The length of `text` in UTF-8 bytes (what the conductor measures passwords in). */
export function utf8Bytes(text: string): number {
  return new TextEncoder().encode(text).length;
}
