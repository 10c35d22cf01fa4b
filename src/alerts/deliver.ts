/**
 * Getting alerts out: the Dispatcher routes each alert (by severity, and whether resolutions are
 * wanted) to the deliveries a rules file names. The deliveries themselves are the one way out,
 * src/sinks/: a webhook is an HTTP sink for alert records with the webhook policy, an exec hook
 * runs a command with the same queue and counters. Nothing here can hurt the collector: `send()`
 * returns at once and never throws, every queue is bounded, and a receiver that is down or slow
 * costs retries and counters, not memory or the event loop.
 */
import type { Alert } from './types.js';
import { SEVERITIES, type DeliverySpec, type Severity } from './rules.js';
import { ExecHook } from '../sinks/exec.js';
import { webhookDelivery, type Delivery, type DeliveryLogger, type DeliveryStats } from '../sinks/delivery.js';

export { ExecHook, hookEnv, type ExecHookOptions } from '../sinks/exec.js';
export {
  SinkDelivery,
  WebhookDelivery,
  type Delivery,
  type DeliveryLogger,
  type DeliveryStats,
  type ExecStats,
  type WebhookOptions,
  type WebhookStats,
} from '../sinks/delivery.js';
export { parseRetryAfter } from '../sinks/util.js';

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

/**
 * Builds the deliveries a rules file's `deliver:` section names. A webhook's secrets are read now
 * (loadAlertConfig has checked them already); a missing one throws SinkConfigError.
 */
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
        ? webhookDelivery(spec.sink, { env: options.env, name: unique(spec.sink.name), logger: options.log ? sinkLogger(options.log) : undefined })
        : new ExecHook({
            argv: spec.argv,
            timeoutMs: spec.timeout * 1000,
            concurrency: spec.concurrency,
            queueSize: spec.queue,
            env: options.env,
            passEnv: spec.env,
            name: unique(`exec ${spec.argv[0]}`),
            log: options.log,
          });
    return { delivery, minSeverity: spec.minSeverity, sendResolved: spec.sendResolved };
  });
  return new Dispatcher(routes);
}

/** The daemon's logger as the sinks' (which also log info and errors). */
function sinkLogger(log: DeliveryLogger) {
  const l = log as DeliveryLogger & Partial<Record<'debug' | 'info' | 'error', (o: object, m?: string) => void>>;
  const call = (f: ((o: object, m?: string) => void) | undefined) => (o: object, m?: string) => f?.call(log, o, m);
  return { debug: call(l.debug), info: call(l.info), warn: (o: object, m?: string) => log.warn(o, m ?? ''), error: call(l.error) };
}
