// Loading data: the latest value, the error of the last attempt, whether a load is running, and
// `reload`. With `intervalMs` it polls (and keeps showing the last value while it reloads).

import { useCallback, useEffect, useRef, useState } from 'react';

export interface AsyncState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload(): Promise<void>;
}

export function useAsync<T>(load: () => Promise<T>, deps: unknown[], intervalMs?: number): AsyncState<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(async () => {
    const mine = ++generation.current;
    setLoading(true);
    try {
      const value = await loadRef.current();
      if (mine === generation.current) {
        setData(value);
        setError(undefined);
      }
    } catch (e) {
      if (mine === generation.current) setError(e);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
    // `deps` are the caller's: a new load function is picked up through the ref.
  }, deps);

  useEffect(() => {
    setData(undefined);
    setError(undefined);
    void run();
    const timer = intervalMs ? setInterval(() => void run(), intervalMs) : undefined;
    return () => {
      if (timer) clearInterval(timer);
      // An answer arriving after the screen changed is dropped.
      generation.current++;
    };
  }, [run, intervalMs]);

  return { data, error, loading, reload: run };
}

/** An action's state: running, its error; `run` returns whether it succeeded. */
export interface ActionState<A extends unknown[]> {
  running: boolean;
  error: unknown;
  run(...args: A): Promise<boolean>;
  clear(): void;
}

export function useAction<A extends unknown[]>(action: (...args: A) => Promise<unknown>): ActionState<A> {
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const ref = useRef(action);
  ref.current = action;
  const run = useCallback(async (...args: A) => {
    setRunning(true);
    setError(undefined);
    try {
      await ref.current(...args);
      return true;
    } catch (e) {
      setError(e);
      return false;
    } finally {
      setRunning(false);
    }
  }, []);
  const clear = useCallback(() => setError(undefined), []);
  return { running, error, run, clear };
}

/**
 * Follows something that runs on the platform (a move, a backup): asks for it every `intervalMs`
 * until `ended` says it is over, then stops. `started` is what the call that began it answered
 * (shown until the first poll answers). A failed poll is shown as `error` and polling goes on (the
 * conductor may answer again). A new `started` (a new id) starts a new poll.
 */
export function useFollow<T extends { id: string }>(
  started: T | undefined,
  load: (id: string) => Promise<T>,
  ended: (value: T) => boolean,
  deps: unknown[],
  intervalMs = 1000,
): { value: T | undefined; error: unknown } {
  const [value, setValue] = useState<T | undefined>(started);
  const [error, setError] = useState<unknown>(undefined);
  const loadRef = useRef(load);
  loadRef.current = load;
  const endedRef = useRef(ended);
  endedRef.current = ended;
  const id = started?.id;

  useEffect(() => {
    setValue(started);
    setError(undefined);
    if (!started || endedRef.current(started)) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const v = await loadRef.current(started.id);
        if (stopped) return;
        setValue(v);
        setError(undefined);
        if (endedRef.current(v)) return;
      } catch (e) {
        if (stopped) return;
        setError(e);
      }
      timer = setTimeout(() => void poll(), intervalMs);
    };
    timer = setTimeout(() => void poll(), intervalMs);
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
    // The same thing's object changing does not restart the poll; `deps` are the caller's (the client).
  }, [id, intervalMs, ...deps]);

  // Until the first poll of a new one answers, what began it.
  return { value: value && value.id === id ? value : started, error };
}
