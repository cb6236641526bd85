// A small router on the History API: the conductor answers every non-/api path with the app,
// so each screen has its own address (reload and deep links work).

import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';

// `range` (the overview, a worker's page, a service's page): the charts' range, `1h` (the default,
// left out of the address), `24h` or `7d`.
export type Route =
  | { name: 'overview'; range?: string }
  | { name: 'workers' }
  | { name: 'worker'; id: string; range?: string }
  | { name: 'services' }
  | { name: 'service'; service: string; range?: string }
  | { name: 'volumes'; volume?: string }
  | { name: 'keys' }
  | { name: 'storage'; bucket?: string; prefix?: string }
  | { name: 'secrets'; secret?: string }
  | { name: 'jobs'; job?: string; state?: string }
  | { name: 'logs'; service?: string; instance?: string; worker?: string; level?: string; contains?: string; request_id?: string }
  | { name: 'alerts' }
  | { name: 'users'; user?: string }
  | { name: 'audit'; actor?: string; action?: string; failed?: boolean }
  | { name: 'settings' }
  | { name: 'login' }
  | { name: 'not_found'; path: string };

export type LogsRoute = Extract<Route, { name: 'logs' }>;

/** The Logs screen's filters, in the order its address gives them. */
const LOG_FILTERS = ['service', 'instance', 'worker', 'level', 'contains', 'request_id'] as const;

/** The charts' range in an address (`?range=24h`), as given. */
function rangeParam(search: string): { range?: string } {
  const range = new URLSearchParams(search).get('range');
  return range ? { range } : {};
}

/** `path` with the charts' range, unless it is the default. */
function withRange(path: string, range: string | undefined): string {
  return range && range !== '1h' ? `${path}?range=${encodeURIComponent(range)}` : path;
}

export function parse(pathname: string, search = ''): Route {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  switch (first) {
    case undefined:
      return { name: 'overview', ...rangeParam(search) };
    case 'login':
      return { name: 'login' };
    case 'workers':
      return second ? { name: 'worker', id: second, ...rangeParam(search) } : { name: 'workers' };
    case 'services':
      return second ? { name: 'service', service: second, ...rangeParam(search) } : { name: 'services' };
    case 'volumes':
      return second ? { name: 'volumes', volume: second } : { name: 'volumes' };
    case 'keys':
      return { name: 'keys' };
    case 'storage': {
      const prefix = new URLSearchParams(search).get('prefix') ?? undefined;
      return second ? { name: 'storage', bucket: second, ...(prefix ? { prefix } : {}) } : { name: 'storage' };
    }
    case 'secrets': {
      // A secret's name has `/`s: one encoded segment (as href makes it), or typed out as segments.
      const secret = parts.slice(1).join('/');
      return secret ? { name: 'secrets', secret } : { name: 'secrets' };
    }
    case 'jobs': {
      // The list's state filter is kept in the address (`?state=failed`), the selected job too.
      const state = new URLSearchParams(search).get('state') || undefined;
      return { name: 'jobs', ...(second ? { job: second } : {}), ...(state ? { state } : {}) };
    }
    case 'logs': {
      // The filters are kept in the address (`/logs?service=key_manager&level=warn`).
      const q = new URLSearchParams(search);
      const route: LogsRoute = { name: 'logs' };
      for (const key of LOG_FILTERS) {
        const value = q.get(key);
        if (value) route[key] = value;
      }
      return route;
    }
    case 'alerts':
      return { name: 'alerts' };
    case 'users':
      return second ? { name: 'users', user: second } : { name: 'users' };
    case 'audit': {
      const q = new URLSearchParams(search);
      const actor = q.get('actor') || undefined;
      const action = q.get('action') || undefined;
      const failed = q.get('failed') === '1' || q.get('failed') === 'true';
      return { name: 'audit', ...(actor ? { actor } : {}), ...(action ? { action } : {}), ...(failed ? { failed } : {}) };
    }
    case 'settings':
      return { name: 'settings' };
    default:
      return { name: 'not_found', path: pathname };
  }
}

export function href(route: Route): string {
  switch (route.name) {
    case 'overview':
      return withRange('/', route.range);
    case 'worker':
      return withRange(`/workers/${encodeURIComponent(route.id)}`, route.range);
    case 'service':
      return withRange(`/services/${encodeURIComponent(route.service)}`, route.range);
    case 'volumes':
      return route.volume ? `/volumes/${encodeURIComponent(route.volume)}` : '/volumes';
    case 'storage':
      if (!route.bucket) return '/storage';
      return `/storage/${encodeURIComponent(route.bucket)}${route.prefix ? `?prefix=${encodeURIComponent(route.prefix)}` : ''}`;
    case 'secrets':
      // One segment (`/` as %2F), so that no `.` or `..` segment of a name is taken for a path step.
      return route.secret ? `/secrets/${encodeURIComponent(route.secret)}` : '/secrets';
    case 'jobs': {
      const path = route.job ? `/jobs/${encodeURIComponent(route.job)}` : '/jobs';
      return route.state ? `${path}?state=${encodeURIComponent(route.state)}` : path;
    }
    case 'logs': {
      const q = new URLSearchParams();
      for (const key of LOG_FILTERS) {
        const value = route[key];
        if (value) q.set(key, value);
      }
      const query = q.toString();
      return query ? `/logs?${query}` : '/logs';
    }
    case 'users':
      return route.user ? `/users/${encodeURIComponent(route.user)}` : '/users';
    case 'audit': {
      const q = new URLSearchParams();
      if (route.actor) q.set('actor', route.actor);
      if (route.action) q.set('action', route.action);
      if (route.failed) q.set('failed', '1');
      const query = q.toString();
      return query ? `/audit?${query}` : '/audit';
    }
    case 'not_found':
      return route.path;
    default:
      return `/${route.name}`;
  }
}

interface RouterState {
  route: Route;
  navigate(to: Route, options?: { replace?: boolean }): void;
}

const RouterContext = createContext<RouterState | null>(null);

export function RouterProvider({ children }: { children: ReactNode }) {
  const [route, setRoute] = useState<Route>(() => parse(window.location.pathname, window.location.search));
  useEffect(() => {
    const onPop = () => setRoute(parse(window.location.pathname, window.location.search));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  const navigate = useCallback((to: Route, options?: { replace?: boolean }) => {
    const url = href(to);
    if (options?.replace) window.history.replaceState(null, '', url);
    else window.history.pushState(null, '', url);
    setRoute(parse(window.location.pathname, window.location.search));
    window.scrollTo?.(0, 0);
  }, []);
  const value = useMemo(() => ({ route, navigate }), [route, navigate]);
  return <RouterContext.Provider value={value}>{children}</RouterContext.Provider>;
}

export function useRouter(): RouterState {
  const r = useContext(RouterContext);
  if (!r) throw new Error('useRouter outside RouterProvider');
  return r;
}
