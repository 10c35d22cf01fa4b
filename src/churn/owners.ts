/**
 * Churn per owner, with process attribution on: per process ("api-worker[4121]"), per unit /
 * container / pod, and the flows no process could be named for, by reason (the honest rest, so
 * the per-process rates are not read as the whole). The engine calls it for every NEW that opened
 * a flow and for every flow end, whatever ended it (DESTROY, a reused id, a resync, the shutdown),
 * so the live counts per owner never drift from the table. What the owner is comes from the event
 * and the flow end themselves (attribution named it before the engine, the table kept it).
 */
import type { ConntrackEvent, ProcessInfo, Unattributed } from '../source/types.js';
import type { FlowOwner } from '../flow/table.js';
import type { FlowEnd } from '../flow/types.js';
import { groupKey, groupParts, processKey, processParts } from '../flow/keys.js';
import type { ChurnSnapshot, GroupKeyChurn, GroupRef, ProcessRef } from './snapshot.js';
import { ProcessChurn } from './processes.js';

export interface OwnerChurnOptions {
  /** group rows gain what is known of them beyond their key (a pod's name, from the runtime) */
  nameGroups?: (rows: GroupKeyChurn[]) => void;
}

/** A process's keys, built once per process object (attribution shares one per settled thread). */
interface Keys {
  process: string | null;
  group: string | null;
}

export class OwnerChurn {
  readonly processes = new ProcessChurn<ProcessInfo, ProcessRef>(256, 10, processParts);
  readonly groups = new ProcessChurn<ProcessInfo, GroupRef>(256, 10, groupParts);
  readonly unattributed = new ProcessChurn(32, 16);
  private readonly keys = new WeakMap<ProcessInfo, Keys>();

  constructor(private readonly options: OwnerChurnOptions = {}) {}

  /** A NEW that opened a flow. */
  opened(ev: ConntrackEvent): void {
    const p = ev.process;
    if (p !== undefined) {
      const k = this.keysOf(p);
      if (k.process !== null) this.processes.opened(k.process, ev.time, p);
      if (k.group !== null) this.groups.opened(k.group, ev.time, p);
    } else if (ev.unattributed !== undefined) {
      this.unattributed.opened(ev.unattributed, ev.time);
    }
  }

  /** A flow a table dump found (live, not opened now): in its owner's live count, not its rates. */
  dumped(ev: ConntrackEvent): void {
    const k = this.keyOf(ev.process, ev.unattributed);
    if (k.process !== null) this.processes.present(k.process);
    if (k.group !== null) this.groups.present(k.group);
    if (k.reason !== null) this.unattributed.present(k.reason);
  }

  /**
   * A NEW for a flow the dump had found (the dump and the event socket raced): the flow opened now,
   * under the NEW's owner, and leaves the count of the owner the dump named. A NEW without an
   * owner leaves the dump's in place (the table keeps it), counted as it was.
   */
  joined(ev: ConntrackEvent, dumpedAs: FlowOwner | undefined): void {
    if (ev.process === undefined && ev.unattributed === undefined) return;
    if (dumpedAs !== undefined) {
      const k = typeof dumpedAs === 'object' ? this.keyOf(dumpedAs, undefined) : this.keyOf(undefined, dumpedAs);
      if (k.process !== null) this.processes.absent(k.process);
      if (k.group !== null) this.groups.absent(k.group);
      if (k.reason !== null) this.unattributed.absent(k.reason);
    }
    this.opened(ev);
  }

  /** A flow end, as records.ts named its owner; 'unseen' ones were never counted (no owner was held). */
  ended(end: FlowEnd): void {
    const p = end.process;
    if (p) {
      const k = this.keysOf(p);
      if (k.process !== null) this.processes.closed(k.process, end.time, p);
      if (k.group !== null) this.groups.closed(k.group, end.time, p);
    } else if (end.unattributed !== undefined && end.unattributed !== 'unseen') {
      this.unattributed.closed(end.unattributed, end.time);
    }
  }

  /** The snapshot's top processes, groups and unattributed reasons (each list only when not empty). */
  rows(time: number): Pick<ChurnSnapshot, 'processes' | 'groups' | 'unattributed'> {
    const out: Pick<ChurnSnapshot, 'processes' | 'groups' | 'unattributed'> = {};
    const processes = this.processes.top(time);
    if (processes.length > 0) out.processes = processes;
    const groups = this.groups.top(time);
    if (groups.length > 0) {
      this.options.nameGroups?.(groups);
      out.groups = groups;
    }
    const misses = this.unattributed.top(time);
    if (misses.length > 0) out.unattributed = misses;
    return out;
  }

  /**
   * The keys are built when a process is first counted. A process object still being enriched
   * when its NEW was counted (attribution completes it later) is keyed as it was then, so its
   * flow end is counted under the same keys as its NEW.
   */
  private keyOf(p: ProcessInfo | undefined, reason: Unattributed | undefined): Keys & { reason: string | null } {
    if (p !== undefined) return { ...this.keysOf(p), reason: null };
    return { process: null, group: null, reason: reason ?? null };
  }

  private keysOf(p: ProcessInfo): Keys {
    let k = this.keys.get(p);
    if (k === undefined) {
      k = { process: processKey(p), group: groupKey(p) };
      this.keys.set(p, k);
    }
    return k;
  }
}
