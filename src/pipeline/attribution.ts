/**
 * Process attribution wired into the pipeline: NEW events go to the Attributor (socket lookups off
 * the hot path), answers count against per-process churn, flow ends carry their process, and
 * snapshots gain the top processes — which is how alerts come to name a pid.
 */
import { ProcessChurn } from '../churn/processes.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import type { FlowEnd } from '../flow/types.js';
import { Attributor, groupKey, processKey, type AttributorOptions } from '../process/index.js';
import type { SourceEvent } from '../source/types.js';

export class ProcessAttribution {
  readonly attributor: Attributor;
  readonly churn = new ProcessChurn();
  /** the same per systemd unit or container */
  readonly groups = new ProcessChurn();

  constructor(options: Omit<AttributorOptions, 'onResult'> = {}) {
    this.attributor = new Attributor({
      ...options,
      onResult: (event, result) => {
        if (event.event === 'snapshot') return;
        const key = processKey(result.process);
        if (key) this.churn.opened(key, event.time);
        const group = groupKey(result.process);
        if (group) this.groups.opened(group, event.time);
      },
    });
  }

  /** Opens a namespace's lookups now (before giving up root: see Attributor.prepare). */
  prepare(netns: string | undefined): void {
    this.attributor.prepare(netns);
  }

  /** Before the engine: queue lookups for new flows (cheap, synchronous). */
  before(part: readonly SourceEvent[]): void {
    this.attributor.attribute(part);
  }

  /** Flow ends get `process` (null when unknown: the reason is in the attributor's stats). */
  flows(ends: FlowEnd[]): void {
    for (const end of ends) {
      const process = this.attributor.processOf(end);
      end.process = process;
      // A flow ended by a resync had no DESTROY to retire it in the attributor.
      if (end.reason === 'resync') this.attributor.forget(end);
      const key = processKey(process);
      if (key) this.churn.closed(key, end.time);
      const group = groupKey(process);
      if (group) this.groups.closed(group, end.time);
    }
  }

  decorate(snap: ChurnSnapshot): void {
    const rows = this.churn.top(snap.time);
    if (rows.length > 0) snap.processes = rows;
    const groups = this.groups.top(snap.time);
    if (groups.length > 0) snap.groups = groups;
  }

  /** Stops lookups; bounded, so a lookup that never answers cannot hold up shutdown. */
  async close(deadlineMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.attributor.close().catch(() => {}),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs))),
    ]);
    if (timer) clearTimeout(timer);
  }
}
