/**
 * The alerts a daemon has raised and resolved, for status views: bounded by count and by age (event
 * time, as alerts carry it), so a daemon that runs for months, or a flapping rule, holds a fixed
 * amount of memory. The oldest go first; how many went is counted.
 */
import type { Alert } from './types.js';

export interface AlertHistoryOptions {
  /** alerts kept at most; default 1000 */
  max?: number;
  /** seconds of event time kept behind the newest alert; default 24 h */
  maxAge?: number;
}

export class AlertHistory {
  readonly max: number;
  readonly maxAgeUs: number;
  private items: Alert[] = [];
  /** alerts let go to keep within the bounds */
  dropped = 0;

  constructor(options: AlertHistoryOptions = {}) {
    this.max = options.max ?? 1000;
    this.maxAgeUs = (options.maxAge ?? 86_400) * 1e6;
    if (!(this.max >= 1)) throw new RangeError(`alert history must hold at least 1 alert, not ${this.max}`);
  }

  push(...alerts: Alert[]): void {
    if (alerts.length === 0) return;
    this.items.push(...alerts);
    const newest = alerts.reduce((t, a) => Math.max(t, a.time), -Infinity);
    let cut = Math.max(0, this.items.length - this.max);
    while (cut < this.items.length && this.items[cut].time < newest - this.maxAgeUs) cut++;
    if (cut > 0) {
      // one copy per push that overflows, not one shift per alert
      this.items = this.items.slice(cut);
      this.dropped += cut;
    }
  }

  /** Oldest first. */
  all(): readonly Alert[] {
    return this.items;
  }

  get length(): number {
    return this.items.length;
  }
}
