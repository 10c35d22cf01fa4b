/**
 * Getting alerts out: webhooks and exec hooks, fanned out by a Dispatcher. This is the I/O edge of
 * alerting, and it must never hurt the collector: `send()` returns at once and never throws, every
 * queue is bounded (the oldest waiting alert is dropped, and counted), and a receiver that is down
 * or slow costs retries and counters, not memory or the event loop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'undici';
import type { Alert } from './types.js';
import { readFileSync } from 'node:fs';
import { SEVERITIES, type DeliverySpec, type Severity, type WebhookSpec } from './rules.js';
import { resolveSecret, type SecretRef } from '../config/secrets.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { setLongTimeout } from '../util/timers.js';

export interface DeliveryStats {
  /** delivered: 2xx from the webhook, exit 0 from the hook */
  sent: number;
  /** given up on */
  failed: number;
  /** never tried: queue full, or left over at close */
  dropped: number;
  /** waiting or in progress right now */
  queued: number;
  lastError: string | null;
}

export interface WebhookStats extends DeliveryStats {
  /** attempts that were retried (one alert may count several times) */
  retried: number;
}

export interface ExecStats extends DeliveryStats {
  /** runs killed at the timeout (not counted in `failed`) */
  timedOut: number;
}

export interface Delivery {
  readonly name: string;
  /** Queues the alert; returns at once and never throws. */
  send(alert: Alert): void;
  stats(): DeliveryStats;
  /**
   * Stops taking alerts and delivers what is queued until `deadlineMs` has passed; whatever is left
   * then is abandoned and counted as dropped. Resolves true when everything was delivered or given
   * up on in time.
   */
  close(deadlineMs?: number): Promise<boolean>;
}

/** The subset of a pino logger deliveries use. */
export interface DeliveryLogger {
  warn(obj: object, msg: string): void;
}

/** A FIFO with a cap that makes room by dropping the oldest entry: fresh alerts matter more. */
class BoundedQueue<T> {
  private items: T[] = [];
  constructor(private readonly cap: number) {}

  get length(): number {
    return this.items.length;
  }

  /** Returns true when the oldest entry was dropped to make room. */
  push(item: T): boolean {
    this.items.push(item);
    if (this.items.length <= this.cap) return false;
    this.items.shift();
    return true;
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  /** Empties the queue, returning how many were in it. */
  clear(): number {
    const n = this.items.length;
    this.items = [];
    return n;
  }
}

/** Resolves the promises of close() once a delivery has nothing queued or running. */
class IdleWaiters {
  private waiters: (() => void)[] = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Waits for `idle` or the deadline, whichever comes first; true when idle came first. */
async function untilIdleOr(idle: Promise<void>, deadlineMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    // deliberately ref'd: close() is what keeps a shutting-down process alive to drain
    timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs));
  });
  try {
    return await Promise.race([idle.then(() => true as const), expired]);
  } finally {
    clearTimeout(timer);
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    // AggregateError (several addresses tried) has an empty message but a code
    return err.message || code || err.name;
  }
  return String(err);
}

// ---------------------------------------------------------------------------------------------
// Exec hook

export interface ExecHookOptions {
  /** the command and its arguments; run without a shell, so nothing in an alert is ever parsed */
  argv: readonly string[];
  /** a run still going after this is killed; default 10 000 */
  timeoutMs?: number;
  /** after SIGTERM, how long before SIGKILL; default 2 000 */
  killGraceMs?: number;
  /** runs at once; default 2 */
  concurrency?: number;
  /** waiting alerts kept; default 100 */
  queueSize?: number;
  /** where PATH and CTWATCH_* are taken from; default process.env */
  env?: NodeJS.ProcessEnv;
  name?: string;
  log?: DeliveryLogger;
}

/**
 * The environment a hook sees: PATH, the operator's CTWATCH_* variables, and the alert's main
 * fields, so a one-line hook (`notify-send "$CTWATCH_MESSAGE"`) needs no JSON parser. Nothing else
 * from the collector's environment leaks into a script someone else wrote.
 */
export function hookEnv(source: NodeJS.ProcessEnv, alert: Alert): Record<string, string> {
  const env: Record<string, string> = { PATH: source.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  for (const [k, v] of Object.entries(source)) {
    if (k.startsWith('CTWATCH_') && v !== undefined) env[k] = v;
  }
  env.CTWATCH_EVENT = alert.event;
  env.CTWATCH_RULE = alert.rule;
  env.CTWATCH_SEVERITY = alert.severity;
  env.CTWATCH_SUBJECT = alert.subject;
  env.CTWATCH_MESSAGE = alert.message;
  env.CTWATCH_HINT = alert.hint;
  env.CTWATCH_TIME = String(alert.time);
  if (alert.netns !== undefined) env.CTWATCH_NETNS = alert.netns;
  return env;
}

/** Runs a command per alert with the alert's JSON on stdin. */
export class ExecHook implements Delivery {
  readonly name: string;
  private readonly argv: readonly string[];
  private readonly timeoutMs: number;
  private readonly killGraceMs: number;
  private readonly concurrency: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly log: DeliveryLogger | undefined;
  private readonly queue: BoundedQueue<Alert>;
  private readonly running = new Set<ChildProcess>();
  /** runs started and not finished, including ones whose spawn failed and is being reported */
  private busy = 0;
  private scheduled = false;
  private closed = false;
  private readonly idle = new IdleWaiters();
  private counts = { sent: 0, failed: 0, timedOut: 0, dropped: 0 };
  private lastError: string | null = null;

  constructor(options: ExecHookOptions) {
    if (options.argv.length === 0) throw new TypeError('ExecHook: argv needs the command to run');
    this.argv = [...options.argv];
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.killGraceMs = options.killGraceMs ?? 2_000;
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.queue = new BoundedQueue(Math.max(1, options.queueSize ?? 100));
    this.env = options.env ?? process.env;
    this.log = options.log;
    this.name = options.name ?? `exec ${this.argv[0]}`;
  }

  send(alert: Alert): void {
    if (this.closed) {
      this.counts.dropped++;
      return;
    }
    if (this.queue.push(alert)) {
      this.counts.dropped++;
      this.lastError = 'queue full: oldest alert dropped';
    }
    // spawning costs a fork; do it after the caller's turn, not inside it
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.pump();
      });
    }
  }

  stats(): ExecStats {
    return { ...this.counts, queued: this.queue.length + this.busy, lastError: this.lastError };
  }

  async close(deadlineMs = 5_000): Promise<boolean> {
    this.closed = true;
    this.pump();
    if (this.busy === 0 && this.queue.length === 0) return true;
    const drained = await untilIdleOr(this.idle.wait(), deadlineMs);
    if (!drained) {
      this.counts.dropped += this.queue.clear();
      for (const child of this.running) killGroup(child, 'SIGKILL');
    }
    return drained;
  }

  private pump(): void {
    while (this.busy < this.concurrency && this.queue.length > 0) this.run(this.queue.shift()!);
    if (this.busy === 0 && this.queue.length === 0) this.idle.wake();
  }

  private run(alert: Alert): void {
    this.busy++;
    let child: ChildProcess;
    let finished = false;
    let timedOut = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let stderr = '';
    const timers: NodeJS.Timeout[] = [];
    const cancels: (() => void)[] = [];

    const finish = (spawnError?: unknown): void => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      for (const c of cancels) c();
      this.running.delete(child);
      child?.stderr?.destroy();
      this.busy--;
      if (timedOut) {
        this.counts.timedOut++;
        this.lastError = `timed out after ${this.timeoutMs} ms`;
      } else if (spawnError === undefined && exit?.code === 0) {
        this.counts.sent++;
      } else {
        this.counts.failed++;
        const why =
          spawnError !== undefined
            ? errorText(spawnError)
            : exit?.signal
              ? `killed by ${exit.signal}`
              : `exit status ${exit?.code ?? 'unknown'}`;
        const tail = stderr.trim().split('\n').pop();
        this.lastError = tail ? `${why}: ${tail}` : why;
      }
      if (timedOut || spawnError !== undefined || exit?.code !== 0) {
        this.log?.warn({ hook: this.name, rule: alert.rule, error: this.lastError }, 'alert exec hook failed');
      }
      this.pump();
    };

    try {
      child = spawn(this.argv[0], this.argv.slice(1), {
        stdio: ['pipe', 'ignore', 'pipe'],
        env: hookEnv(this.env, alert),
        // its own process group, so a timeout kills the whole pipeline a shell script started,
        // not just the shell (whose children would keep running and keep our pipes open)
        detached: true,
      });
    } catch (err) {
      // spawn throws synchronously for bad arguments (e.g. a NUL byte); report like a failed run
      child = undefined as unknown as ChildProcess;
      finish(err);
      return;
    }
    this.running.add(child);
    child.on('error', (err) => finish(err));
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // a background grandchild may hold stderr open; do not wait for it past a moment
      timers.push(setTimeout(() => finish(), 100));
    });
    child.on('close', () => finish());
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-1024);
    });
    // a hook that does not read stdin closes it early: EPIPE then is not a failure of the hook
    child.stdin?.on('error', () => {});
    child.stdin?.end(`${JSON.stringify(alert)}\n`);
    // the operator's timeout may be longer than one Node timer holds (24.8 days)
    const timeout = setLongTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGTERM');
      timers.push(setTimeout(() => killGroup(child, 'SIGKILL'), this.killGraceMs));
    }, this.timeoutMs);
    cancels.push(() => timeout.clear());
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: already gone
  }
}

// ---------------------------------------------------------------------------------------------
// Webhook

export interface WebhookOptions {
  url: string;
  /** extra request headers, e.g. Authorization */
  headers?: Record<string, string>;
  /** per attempt, for connecting and for each of headers and body; default 5 000 */
  timeoutMs?: number;
  /** attempts after the first; default 5 */
  retries?: number;
  /** first backoff; doubles per attempt; default 500 */
  backoffMs?: number;
  /** backoff cap; default 30 000 */
  maxBackoffMs?: number;
  /** a Retry-After longer than this gives up on the alert instead of waiting; default 120 000 */
  maxRetryAfterMs?: number;
  /** waiting alerts kept; default 1 000 */
  queueSize?: number;
  /** jitter source, 0..1; default Math.random */
  random?: () => number;
  name?: string;
  log?: DeliveryLogger;
}

/**
 * Seconds ("120") or an HTTP date, as milliseconds from now; undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const text = v.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * POSTs each alert's JSON to a URL, one at a time so a receiver sees an alert before its
 * resolution. Retries network errors, 5xx and 429 with exponential backoff and jitter, or after
 * the receiver's Retry-After; other 4xx are the request's fault and are not retried.
 */
export class WebhookDelivery implements Delivery {
  readonly name: string;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly random: () => number;
  private readonly log: DeliveryLogger | undefined;
  private readonly agent: Agent;
  /** bodies, serialised at send() so later changes to the alert object cannot leak in */
  private readonly queue: BoundedQueue<string>;
  private readonly abort = new AbortController();
  private readonly idle = new IdleWaiters();
  private working = false;
  private inFlight = 0;
  private closed = false;
  private counts = { sent: 0, retried: 0, failed: 0, dropped: 0 };
  private lastError: string | null = null;

  constructor(options: WebhookOptions) {
    const u = new URL(options.url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`webhook URL must be http(s): ${u.protocol}`);
    this.url = options.url;
    // the origin only: webhook URLs often carry a token in their path
    this.name = options.name ?? `webhook ${u.origin}`;
    this.headers = { 'content-type': 'application/json', 'user-agent': 'ctwatch', ...options.headers };
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.retries = Math.max(0, options.retries ?? 5);
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 120_000;
    this.random = options.random ?? Math.random;
    this.log = options.log;
    this.queue = new BoundedQueue(Math.max(1, options.queueSize ?? 1000));
    this.agent = new Agent({ connect: { timeout: this.timeoutMs }, keepAliveTimeout: 4_000 });
  }

  send(alert: Alert): void {
    try {
      if (this.closed) {
        this.counts.dropped++;
        return;
      }
      if (this.queue.push(JSON.stringify(alert))) {
        this.counts.dropped++;
        this.lastError = 'queue full: oldest alert dropped';
      }
      if (!this.working) {
        this.working = true;
        setImmediate(() => void this.work());
      }
    } catch (err) {
      // JSON.stringify can throw (a BigInt in values); count it rather than hurt the caller
      this.counts.failed++;
      this.lastError = errorText(err);
    }
  }

  stats(): WebhookStats {
    return { ...this.counts, queued: this.queue.length + this.inFlight, lastError: this.lastError };
  }

  async close(deadlineMs = 5_000): Promise<boolean> {
    this.closed = true;
    const drained = !this.working || (await untilIdleOr(this.idle.wait(), deadlineMs));
    if (!drained) {
      this.counts.dropped += this.queue.clear() + this.inFlight;
      this.inFlight = 0;
      this.abort.abort();
    }
    await (drained ? this.agent.close() : this.agent.destroy()).catch(() => {});
    return drained;
  }

  private async work(): Promise<void> {
    try {
      let body: string | undefined;
      while (!this.abort.signal.aborted && (body = this.queue.shift()) !== undefined) {
        this.inFlight = 1;
        await this.deliver(body);
        this.inFlight = 0;
      }
    } catch (err) {
      this.lastError = errorText(err);
    } finally {
      this.working = false;
      this.idle.wake();
    }
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt);
    // "equal jitter": at least half the step, so retries neither synchronise nor fire at once
    return ceiling / 2 + (ceiling / 2) * this.random();
  }

  private async deliver(body: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let error: string;
      let retryAfterMs: number | undefined;
      try {
        const res = await request(this.url, {
          method: 'POST',
          headers: this.headers,
          body,
          dispatcher: this.agent,
          signal: this.abort.signal,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
        });
        // read the body out, or the connection cannot be reused
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) {
          this.counts.sent++;
          return;
        }
        error = `HTTP ${res.statusCode}`;
        if (res.statusCode !== 429 && res.statusCode < 500) {
          this.giveUp(error);
          return;
        }
        retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      } catch (err) {
        if (this.abort.signal.aborted) return; // close() has counted it
        error = errorText(err);
      }
      if (attempt >= this.retries) {
        this.giveUp(`${error} after ${attempt + 1} attempts`);
        return;
      }
      if (retryAfterMs !== undefined && retryAfterMs > this.maxRetryAfterMs) {
        this.giveUp(`${error} with Retry-After ${Math.round(retryAfterMs / 1000)} s, over the ${Math.round(this.maxRetryAfterMs / 1000)} s limit`);
        return;
      }
      this.lastError = error;
      this.counts.retried++;
      await sleep(retryAfterMs ?? this.backoff(attempt), this.abort.signal);
      if (this.abort.signal.aborted) return;
    }
  }

  private giveUp(error: string): void {
    this.counts.failed++;
    this.lastError = error;
    this.log?.warn({ webhook: this.name, error }, 'alert webhook delivery failed');
  }
}

/** A timer that ends early on abort and does not by itself keep the process alive. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Dispatcher

export interface Route {
  delivery: Delivery;
  /** default 'info': everything */
  minSeverity?: Severity;
  /** default true */
  sendResolved?: boolean;
}

/** Fans each alert out to every delivery whose filter takes it. */
export class Dispatcher {
  private readonly routes: Required<Route>[];

  constructor(routes: readonly (Delivery | Route)[] = []) {
    this.routes = routes.map((r) =>
      'delivery' in r
        ? { delivery: r.delivery, minSeverity: r.minSeverity ?? 'info', sendResolved: r.sendResolved ?? true }
        : { delivery: r, minSeverity: 'info', sendResolved: true },
    );
  }

  get deliveries(): Delivery[] {
    return this.routes.map((r) => r.delivery);
  }

  dispatch(alerts: Alert | readonly Alert[]): void {
    const list: readonly Alert[] = Array.isArray(alerts) ? alerts : [alerts as Alert];
    for (const alert of list) {
      for (const r of this.routes) {
        if (SEVERITIES.indexOf(alert.severity) < SEVERITIES.indexOf(r.minSeverity)) continue;
        if (alert.event === 'resolved' && !r.sendResolved) continue;
        try {
          r.delivery.send(alert);
        } catch {
          // Delivery.send promises not to throw; a third-party one that does must not stop the others
        }
      }
    }
  }

  /** Counters per delivery name. */
  stats(): Record<string, DeliveryStats> {
    const out: Record<string, DeliveryStats> = {};
    for (const r of this.routes) out[r.delivery.name] = r.delivery.stats();
    return out;
  }

  /** Closes every delivery in parallel under one deadline. */
  async close(deadlineMs = 5_000): Promise<boolean> {
    const results = await Promise.all(this.routes.map((r) => r.delivery.close(deadlineMs).catch(() => false)));
    return results.every(Boolean);
  }
}

/** A webhook's headers with its secrets read (loadAlertConfig has done so already). */
function resolvedHeaders(spec: WebhookSpec, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  const read = (ref: SecretRef): string => {
    const r = resolveSecret(ref, env, (p) => readFileSync(p));
    if (r.reason) throw new CtwatchError('ERR_RULES', `webhook ${new URL(spec.url).origin}: ${r.reason}`, { exitCode: EXIT.config });
    return r.value!;
  };
  for (const [name, v] of Object.entries(spec.headers)) out[name] = typeof v === 'string' ? v : read(v);
  if (spec.token) out.Authorization = `Bearer ${read(spec.token)}`;
  return out;
}

/** Builds the deliveries a rules file's `deliver:` section names. */
export function createDispatcher(
  specs: readonly DeliverySpec[],
  options: { env?: NodeJS.ProcessEnv; log?: DeliveryLogger } = {},
): Dispatcher {
  const names = new Map<string, number>();
  const unique = (name: string): string => {
    const n = (names.get(name) ?? 0) + 1;
    names.set(name, n);
    return n === 1 ? name : `${name} #${n}`;
  };
  const routes: Route[] = specs.map((spec) => {
    const delivery: Delivery =
      spec.type === 'webhook'
        ? new WebhookDelivery({
            url: spec.url,
            headers: resolvedHeaders(spec, options.env ?? process.env),
            timeoutMs: spec.timeout * 1000,
            retries: spec.retries,
            queueSize: spec.queue,
            name: unique(`webhook ${new URL(spec.url).origin}`),
            log: options.log,
          })
        : new ExecHook({
            argv: spec.argv,
            timeoutMs: spec.timeout * 1000,
            concurrency: spec.concurrency,
            queueSize: spec.queue,
            env: options.env,
            name: unique(`exec ${spec.argv[0]}`),
            log: options.log,
          });
    return { delivery, minSeverity: spec.minSeverity, sendResolved: spec.sendResolved };
  });
  return new Dispatcher(routes);
}
