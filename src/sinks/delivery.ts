/**
 * What alerting sees of the way out: a Delivery takes alerts (`send` returns at once and never
 * throws), counts them, and drains at close. Webhooks are sinks (./sink.ts with the HTTP transport
 * and the webhook policy) seen through SinkDelivery; exec hooks (./exec.ts) are their own kind
 * with the same queue and counters.
 */
import type { Alert } from '../recording/alert.js';
import type { SinkRecord } from '../formats/common.js';
import type { ConfigIssue } from '../config/reader.js';
import { SinkConfigError } from './errors.js';
import { buildSink, prepareSink, type CreateOptions } from './build.js';
import { WEBHOOK_POLICY, type HttpSinkSpec } from './config.js';
import type { DeliverySink } from './sink.js';

export interface DeliveryStats {
  /** delivered: 2xx from the webhook, exit 0 from the hook */
  sent: number;
  /** given up on after trying */
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

/** A sink (a webhook) as a Delivery: the sink's counters in the words of alert delivery. */
export class SinkDelivery implements Delivery {
  readonly name: string;
  constructor(
    readonly sink: DeliverySink,
    name?: string,
  ) {
    this.name = name ?? sink.name;
  }

  send(alert: Alert): void {
    try {
      this.sink.write(alert as unknown as SinkRecord);
    } catch {
      // write() does not throw; a delivery must not hurt the evaluator even if it did
    }
  }

  stats(): WebhookStats {
    const c = this.sink.counters;
    // the sink counts every lost record in `dropped`; alert delivery keeps "tried and given up" apart
    return { sent: c.sent, retried: c.retried, failed: c.failed, dropped: c.dropped - c.failed, queued: c.queued + this.sink.inFlight, lastError: c.lastError };
  }

  async close(deadlineMs = 5_000): Promise<boolean> {
    return (await this.sink.close(deadlineMs)) ?? true;
  }
}

export interface WebhookOptions {
  url: string;
  /** extra request headers, e.g. Authorization (credential headers are scrubbed from errors) */
  headers?: Record<string, string>;
  /** deadline for each attempt, the whole request; default 5 000 */
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

/** The spec of a webhook given in code: the webhook policy, with these options over it. */
export function webhookSpec(o: WebhookOptions): HttpSinkSpec {
  const u = new URL(o.url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`webhook URL must be http(s): ${u.protocol}`);
  const p = WEBHOOK_POLICY;
  return {
    type: 'webhook',
    // the origin only: webhook URLs often carry a token in their path
    name: o.name ?? `webhook ${u.origin}`,
    at: 'webhook',
    url: o.url,
    format: 'jsonl',
    events: p.events,
    batch: { ...p.batch },
    retry: {
      ...p.retry,
      ...(o.retries !== undefined ? { maxAttempts: Math.max(0, o.retries) + 1 } : {}),
      ...(o.backoffMs !== undefined ? { initialMs: o.backoffMs } : {}),
      ...(o.maxBackoffMs !== undefined ? { maxMs: o.maxBackoffMs } : {}),
      ...(o.maxRetryAfterMs !== undefined ? { maxRetryAfterMs: o.maxRetryAfterMs } : {}),
    },
    memory: { maxRecords: Math.max(1, o.queueSize ?? p.memory.maxRecords) },
    overflow: p.overflow,
    headers: { ...o.headers },
    gzip: false,
    timeoutMs: o.timeoutMs ?? p.timeoutMs,
  };
}

/** Builds the delivery of a webhook spec, reading the secrets it names (SinkConfigError if missing). */
export function webhookDelivery(spec: HttpSinkSpec, opts: CreateOptions & { name?: string; random?: () => number } = {}): SinkDelivery {
  const issues: ConfigIssue[] = [];
  const prepared = prepareSink(spec, issues, opts);
  if (!prepared) throw new SinkConfigError(issues);
  return new SinkDelivery(buildSink(prepared, opts, { random: opts.random }), opts.name);
}

/**
 * POSTs each alert's JSON to a URL, one at a time so a receiver sees an alert before its
 * resolution: an HTTP sink with the webhook policy (src/sinks/config.ts WEBHOOK_POLICY).
 */
export class WebhookDelivery extends SinkDelivery {
  constructor(o: WebhookOptions) {
    const spec = webhookSpec(o);
    super(webhookDelivery(spec, { random: o.random }).sink, spec.name);
  }
}

/** Resolves the promises of close() once a delivery has nothing queued or running. */
export class IdleWaiters {
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
export async function untilIdleOr(idle: Promise<void>, deadlineMs: number): Promise<boolean> {
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

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    // AggregateError (several addresses tried) has an empty message but a code
    return err.message || code || err.name;
  }
  return String(err);
}

