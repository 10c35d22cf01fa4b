/**
 * Timers for delays an operator chose. Node keeps a timer's delay in a signed 32-bit millisecond
 * count: anything over 2^31 - 1 ms (24.8 days) fires after 1 ms instead, so `--duration 30d` would
 * end at once and an exec hook with `timeout: 30d` would be killed at its start. Every timer that
 * takes a user duration goes through here, which waits in steps that fit and measures what is left
 * on the monotonic clock (a wall-clock step neither shortens nor stretches the wait).
 */

/** The longest delay one Node timer holds. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LongTimer {
  clear(): void;
  /** let the process exit while only this timer is pending */
  unref(): LongTimer;
  ref(): LongTimer;
}

/** setTimeout for any delay. `maxStepMs` exists for tests of the stepping. */
export function setLongTimeout(fn: () => void, ms: number, maxStepMs = MAX_TIMER_MS): LongTimer {
  const due = performance.now() + Math.max(0, ms);
  let referenced = true;
  let cleared = false;
  let timer: NodeJS.Timeout;
  const arm = (): void => {
    const left = due - performance.now();
    if (left <= 0) return fn();
    timer = setTimeout(arm, Math.min(Math.ceil(left), maxStepMs));
    if (!referenced) timer.unref();
  };
  // the first step is armed synchronously, like setTimeout, so clear() right after works
  timer = setTimeout(arm, Math.min(Math.max(0, Math.ceil(ms)), maxStepMs));
  const handle: LongTimer = {
    clear() {
      cleared = true;
      clearTimeout(timer);
    },
    unref() {
      referenced = false;
      if (!cleared) timer.unref();
      return handle;
    },
    ref() {
      referenced = true;
      if (!cleared) timer.ref();
      return handle;
    },
  };
  return handle;
}

/** setInterval for any period: the next run is scheduled when the previous one starts. */
export function setLongInterval(fn: () => void, ms: number): LongTimer {
  let current: LongTimer;
  let referenced = true;
  const schedule = (): void => {
    current = setLongTimeout(() => {
      schedule();
      fn();
    }, ms);
    if (!referenced) current.unref();
  };
  schedule();
  const handle: LongTimer = {
    clear: () => current.clear(),
    unref() {
      referenced = false;
      current.unref();
      return handle;
    },
    ref() {
      referenced = true;
      current.ref();
      return handle;
    },
  };
  return handle;
}

/**
 * Resolves after `ms`, or early (never rejecting) when the signal aborts. Does not by itself keep
 * the process alive unless `keepAlive`: a retry backoff must not hold up an exit.
 */
export function sleep(ms: number, signal?: AbortSignal, keepAlive = true): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      timer.clear();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setLongTimeout(done, ms);
    if (!keepAlive) timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** An AbortSignal that aborts after `ms` (any length), or when `parent` aborts; `clear` stops it. */
export function deadlineSignal(ms: number, parent?: AbortSignal): { signal: AbortSignal; clear(): void; expired(): boolean } {
  const ctl = new AbortController();
  let expired = false;
  const onParent = (): void => ctl.abort(parent?.reason);
  const timer = setLongTimeout(() => {
    expired = true;
    ctl.abort(new Error(`deadline of ${ms} ms passed`));
  }, ms).unref();
  if (parent?.aborted) onParent();
  else parent?.addEventListener('abort', onParent, { once: true });
  return {
    signal: ctl.signal,
    expired: () => expired,
    clear() {
      timer.clear();
      parent?.removeEventListener('abort', onParent);
    },
  };
}
