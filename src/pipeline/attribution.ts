/**
 * Process attribution wired into the pipeline: owners count against per-process churn, flow ends
 * carry their process, and snapshots gain the top processes — which is how alerts come to name a
 * pid. Two modes behind one face (src/process/attribution.ts chooses): OwnerAttribution takes the
 * owner the reader thread joined into each NEW (eBPF), ProcessAttribution asks the sockdiag
 * Attributor (socket lookups off the hot path).
 */
import { readFile } from 'node:fs/promises';
import { ProcessChurn } from '../churn/processes.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import type { FlowEnd, ProcessInfo } from '../flow/types.js';
import { Attributor, cgroupFacts, cgroupPath, flowKey, groupKey, processKey, Users, type AttributorOptions, type CgroupFacts } from '../process/index.js';
import type { ConntrackEvent, NativeOwner, SourceEvent, Unattributed } from '../source/types.js';
import { UNATTRIBUTED_REASONS } from '../source/decode.js';

/** Flows taken, attributed, and the misses by reason (the metrics' attribution_* series). */
export interface AttributionCounts {
  flows: number;
  attributed: number;
  reasons: Record<string, number>;
}

/** What the pipeline needs from an attribution mode. */
export interface FlowAttribution {
  readonly mode: 'ebpf' | 'sockdiag';
  readonly churn: ProcessChurn;
  readonly groups: ProcessChurn;
  /** flows no process could be named for, keyed by the reason (the honest rest of `churn`) */
  readonly unattributed: ProcessChurn;
  readonly stats: AttributionCounts;
  /** opens a namespace's lookups now, before giving up root */
  prepare(netns: string | undefined): void;
  /** before the engine: cheap and synchronous */
  before(part: readonly SourceEvent[]): void;
  /** flow ends get `process` (null when unknown, with `unattributed` saying why) */
  flows(ends: FlowEnd[]): void;
  decorate(snap: ChurnSnapshot): void;
  close(deadlineMs?: number): Promise<void>;
}

/** The sockdiag Attributor's miss reasons in the flow line's words (docs/schema.md). */
const MISS_AS_UNATTRIBUTED: Record<string, Unattributed> = {
  'not-local': 'not-local', unsupported: 'unsupported', gone: 'gone', 'no-socket': 'gone', 'no-pid': 'no-pid',
  denied: 'denied', shared: 'shared', error: 'unseen', overload: 'overload', pending: 'late', unseen: 'unseen',
};

/** Snapshots gain the top processes and units / containers (both modes). */
function topRows(a: Pick<FlowAttribution, 'churn' | 'groups' | 'unattributed'>, snap: ChurnSnapshot): void {
  const rows = a.churn.top(snap.time);
  if (rows.length > 0) snap.processes = rows;
  const groups = a.groups.top(snap.time);
  if (groups.length > 0) snap.groups = groups;
  const misses = a.unattributed.top(snap.time);
  if (misses.length > 0) snap.unattributed = misses;
}

export class ProcessAttribution implements FlowAttribution {
  readonly mode = 'sockdiag' as const;
  readonly attributor: Attributor;
  /** called once, the first time a flow is unattributed because /proc was closed to us */
  onDenied?: (processes: number) => void;
  private deniedSaid = false;
  readonly churn = new ProcessChurn();
  /** the same per systemd unit or container */
  readonly groups = new ProcessChurn();
  readonly unattributed = new ProcessChurn(32, 16);

  constructor(options: Omit<AttributorOptions, 'onResult'> = {}) {
    this.attributor = new Attributor({
      ...options,
      onResult: (event, result) => {
        if (event.event === 'snapshot') return;
        const key = processKey(result.process);
        if (key) this.churn.opened(key, event.time);
        const group = groupKey(result.process);
        if (group) this.groups.opened(group, event.time);
        if (!key && result.reason) this.unattributed.opened(MISS_AS_UNATTRIBUTED[result.reason] ?? 'unseen', event.time);
        if (result.reason === 'denied' && !this.deniedSaid) {
          this.deniedSaid = true;
          this.onDenied?.(this.attributor.stats.index.denied);
        }
      },
    });
  }

  get stats(): AttributionCounts {
    return this.attributor.stats;
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
      const found = this.attributor.lookup(end);
      const process = found.process;
      end.process = process;
      if (!process && found.reason) {
        end.unattributed = MISS_AS_UNATTRIBUTED[found.reason] ?? 'unseen';
        this.unattributed.closed(end.unattributed, end.time);
      }
      // A flow ended by a resync had no DESTROY to retire it in the attributor.
      if (end.reason === 'resync') this.attributor.forget(end);
      const key = processKey(process);
      if (key) this.churn.closed(key, end.time);
      const group = groupKey(process);
      if (group) this.groups.closed(group, end.time);
    }
  }

  decorate(snap: ChurnSnapshot): void {
    topRows(this, snap);
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

interface Remembered {
  process: ProcessInfo | null;
  reason?: Unattributed;
  /** the per-process and per-group keys the NEW was counted under */
  key: string | null;
  group: string | null;
}

/**
 * eBPF mode: every NEW (and snapshot) already carries its owner, or the reason there is none,
 * joined on the reader thread. Here it is only enriched (user name; unit and container from the
 * cgroup, read once per cgroup id from /proc/PID/cgroup, which anyone may read) and remembered by
 * flow tuple until the flow ends, so a flow end names the process even after it exited.
 */
export class OwnerAttribution implements FlowAttribution {
  readonly mode = 'ebpf' as const;
  readonly churn = new ProcessChurn();
  readonly groups = new ProcessChurn();
  readonly unattributed = new ProcessChurn(32, 16);
  // every reason at 0 until it happens, so rate(...{reason="gone"}) is 0 rather than no data
  readonly stats: AttributionCounts & { remembered: number; evicted: number } = { flows: 0, attributed: 0, reasons: Object.fromEntries(UNATTRIBUTED_REASONS.map((r) => [r, 0])), remembered: 0, evicted: 0 };
  private readonly recent = new Map<string, Remembered>();
  private readonly users = new Users();
  /** cgroup id -> what its path says; null while being read */
  private readonly cgroups = new Map<number, CgroupFacts | null>();

  constructor(private readonly maxFlows = 262_144, private readonly maxCgroups = 4096) {}

  prepare(): void {
    // The programs were loaded and the reader opened before any switch of user.
  }

  before(part: readonly SourceEvent[]): void {
    for (const e of part) {
      if (e.event !== 'new' && e.event !== 'snapshot') continue;
      const ev = e as ConntrackEvent;
      if (!ev.owner && !ev.unattributed) continue;
      this.stats.flows++;
      let r: Remembered;
      if (ev.owner) {
        const process = this.processInfo(ev.owner);
        ev.process = process;
        this.stats.attributed++;
        r = { process, key: processKey(process), group: groupKey(process) };
      } else {
        const reason = ev.unattributed!;
        this.stats.reasons[reason] = (this.stats.reasons[reason] ?? 0) + 1;
        r = { process: null, reason, key: null, group: null };
        if (ev.event === 'new') this.unattributed.opened(reason, ev.time);
      }
      const k = flowKey(ev);
      this.recent.delete(k);
      this.recent.set(k, r);
      if (this.recent.size > this.maxFlows) {
        // the oldest first: a flow whose DESTROY was lost
        this.recent.delete(this.recent.keys().next().value!);
        this.stats.evicted++;
      }
      if (ev.event === 'snapshot') continue;
      if (r.key) this.churn.opened(r.key, ev.time);
      if (r.group) this.groups.opened(r.group, ev.time);
    }
    this.stats.remembered = this.recent.size;
  }

  flows(ends: FlowEnd[]): void {
    for (const end of ends) {
      const k = flowKey(end);
      const r = this.recent.get(k);
      this.recent.delete(k);
      end.process = r?.process ?? null;
      if (!end.process) end.unattributed = r?.reason ?? 'unseen';
      if (r && !r.process && r.reason) this.unattributed.closed(r.reason, end.time);
      if (r?.key) this.churn.closed(r.key, end.time);
      if (r?.group) this.groups.closed(r.group, end.time);
    }
    this.stats.remembered = this.recent.size;
  }

  decorate(snap: ChurnSnapshot): void {
    topRows(this, snap);
  }

  async close(): Promise<void> {
    this.recent.clear();
  }

  private processInfo(o: NativeOwner): ProcessInfo {
    const p: ProcessInfo = { pid: o.pid, comm: o.comm, tid: o.tid, uid: o.uid, side: o.side };
    const user = this.users.cached(o.uid);
    if (user !== undefined) p.user = user;
    else void this.users.name(o.uid);
    if (o.cgroupId) {
      const facts = this.cgroups.get(o.cgroupId);
      if (facts) Object.assign(p, facts);
      else if (facts === undefined) this.readCgroup(o.cgroupId, o.pid);
    }
    return p;
  }

  private readCgroup(id: number, pid: number): void {
    if (this.cgroups.size >= this.maxCgroups) this.cgroups.clear();
    this.cgroups.set(id, null);
    readFile(`/proc/${pid}/cgroup`, 'utf8').then(
      (text) => this.cgroups.set(id, cgroupFacts(cgroupPath(text))),
      // the process is gone already: the next owner in this cgroup tries again
      () => this.cgroups.delete(id),
    );
  }
}
