/**
 * Collection + engine + alerting, as one unit: what `ctwatch watch` runs as a daemon and what the
 * demo runs in front of the operator. I/O stays at the edges: the caller gives hooks for what to
 * do with snapshots, alerts and flow ends.
 */
import { AlertEvaluator, createDispatcher, defaultConfig, type AlertConfig, type Dispatcher } from '../alerts/index.js';
import type { Alert } from '../alerts/types.js';
import { AlertHistory, type AlertHistoryOptions } from '../alerts/history.js';
import type { ChurnEngine } from '../churn/engine.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import type { FlowEnd } from '../flow/types.js';
import type { LiveSource } from '../source/live.js';
import type { SourceEvent } from '../source/types.js';
import type { Logger } from '../util/log.js';
import { assembleLive, type Assembly } from './assemble.js';
import type { ResyncRecord } from './recovery.js';
import type { FlowAttribution } from './attribution.js';

export interface WatcherHooks {
  events?(batch: SourceEvent[]): void | Promise<void>;
  flows?(flows: FlowEnd[]): void | Promise<void>;
  snapshot?(snap: ChurnSnapshot, active: Alert[]): void | Promise<void>;
  alerts?(alerts: Alert[]): void | Promise<void>;
  resync?(record: ResyncRecord): void | Promise<void>;
}

export class Watcher {
  readonly engine: ChurnEngine;
  private evaluator: AlertEvaluator;
  private dispatcher: Dispatcher;
  private readonly assembly: Assembly;
  /** the latest alerts and resolutions, in order: bounded by count and age (AlertHistory) */
  readonly history: AlertHistory;
  /** process attribution, unless turned off */
  attribution?: FlowAttribution;
  last?: ChurnSnapshot;

  constructor(
    readonly source: LiveSource,
    private config: AlertConfig = defaultConfig(),
    private readonly hooks: WatcherHooks = {},
    private readonly log?: Logger,
    /** `attribution`: the mode's (src/process/attribution.ts), whose handle the source was opened with */
    options: { attribution?: FlowAttribution; history?: AlertHistoryOptions } = {},
  ) {
    this.history = new AlertHistory(options.history);
    this.evaluator = new AlertEvaluator(config);
    this.dispatcher = createDispatcher(config.deliver, { log });
    this.assembly = assembleLive(source, { attribution: options.attribution, log });
    this.engine = this.assembly.engine;
    this.attribution = this.assembly.attribution;
  }

  run(): Promise<void> {
    return this.assembly.run({
      events: this.hooks.events,
      flows: this.hooks.flows,
      snapshot: (snap) => this.onSnapshot(snap),
      resync: this.hooks.resync,
    }, this.config);
  }

  activeAlerts(): Alert[] {
    return this.evaluator.active();
  }

  private async onSnapshot(snap: ChurnSnapshot): Promise<void> {
    this.last = snap;
    // rules judge their own candidates on the engine's figures, not only the snapshot's top-N,
    // and the subjects they are judging are counted on their own from now on
    const alerts = this.evaluator.evaluate(snap, this.engine.figures(snap.time));
    this.engine.watch(this.evaluator.watching(snap.netns), snap.time);
    if (alerts.length > 0) await this.emit(alerts);
    if (this.hooks.snapshot) await this.hooks.snapshot(snap, this.evaluator.active());
  }

  private async emit(alerts: Alert[]): Promise<void> {
    this.history.push(...alerts);
    for (const a of alerts) {
      if (a.event === 'alert') this.log?.warn({ rule: a.rule, severity: a.severity }, a.message);
      else this.log?.info({ rule: a.rule }, a.message);
    }
    this.dispatcher.dispatch(alerts);
    if (this.hooks.alerts) await this.hooks.alerts(alerts);
  }

  /** New rules and deliveries (SIGHUP). Alerts whose rule is gone resolve; the rest carry on. */
  async reload(config: AlertConfig): Promise<void> {
    const resolved = this.evaluator.reload(config);
    const old = this.dispatcher;
    this.dispatcher = createDispatcher(config.deliver, { log: this.log });
    this.config = config;
    if (resolved.length > 0) await this.emit(resolved);
    await old.close(5000);
  }

  /** Delivery counters, for the final summary and metrics. */
  deliveryStats() {
    return this.dispatcher.stats();
  }

  /** Drains deliveries (bounded by `deadlineMs`) after the source has ended. */
  async close(deadlineMs = 5000): Promise<boolean> {
    return this.dispatcher.close(deadlineMs);
  }
}
