/**
 * Process attribution wired into the pipeline: owners count against per-process churn, flow ends
 * carry their process, and snapshots gain the top processes — which is how alerts come to name a
 * pid. Both modes (src/process/attribution.ts chooses) reach here the same way: the reader thread
 * joined the owner into each NEW record (native/attribution/: eBPF stamps, or sock_diag and /proc),
 * so this stage only enriches and remembers it.
 */
import { ProcessChurn } from '../churn/processes.js';
import type { ChurnSnapshot, GroupKeyChurn, GroupRef, ProcessRef } from '../churn/snapshot.js';
import type { FlowEnd, ProcessInfo } from '../flow/types.js';
import { flowKey, groupKey, groupParts, processKey, processParts, Users, type FlowRef } from '../process/index.js';
import { Cgroupfs, type CgroupfsStats } from '../process/cgroupfs.js';
import { Executables, type ExeStats } from '../process/exe.js';
import type { CriStats, PodNames } from '../process/cri.js';
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
  readonly churn: ProcessChurn<ProcessInfo, ProcessRef>;
  readonly groups: ProcessChurn<ProcessInfo, GroupRef>;
  /** flows no process could be named for, keyed by the reason (the honest rest of `churn`) */
  readonly unattributed: ProcessChurn;
  readonly stats: AttributionCounts & { cri?: CriStats };
  /** before the engine: cheap and synchronous */
  before(part: readonly SourceEvent[]): void;
  /** flow ends get `process` (null when unknown, with `unattributed` saying why) */
  flows(ends: FlowEnd[]): void;
  decorate(snap: ChurnSnapshot): void;
  close(deadlineMs?: number): Promise<void>;
}

/** Per-process churn: rows carry the pid and command beside "comm[pid]". */
const newProcessChurn = () => new ProcessChurn<ProcessInfo, ProcessRef>(256, 10, processParts);
/** Per unit / container / pod: rows carry which one beside "unit:NAME". */
const newGroupChurn = () => new ProcessChurn<ProcessInfo, GroupRef>(256, 10, groupParts);

/** Snapshots gain the top processes and units / containers (both modes). */
function topRows(a: Pick<FlowAttribution, 'churn' | 'groups' | 'unattributed'>, snap: ChurnSnapshot): void {
  const rows = a.churn.top(snap.time);
  if (rows.length > 0) snap.processes = rows;
  const groups = a.groups.top(snap.time);
  if (groups.length > 0) snap.groups = groups;
  const misses = a.unattributed.top(snap.time);
  if (misses.length > 0) snap.unattributed = misses;
}

/** What is remembered of a live flow, with the tuple that tells it from a later flow of its id. */
interface Held extends FlowRef {
  r: Remembered;
}

/** Two live conntrack entries never share an original tuple (nor an id). */
function sameFlow(a: FlowRef, b: FlowRef): boolean {
  return a.src === b.src && a.dst === b.dst && a.sport === b.sport && a.dport === b.dport && a.proto === b.proto && a.netns === b.netns;
}

/** Flows displaced by a reused id, remembered at most (OwnerAttribution.displaced). */
const MAX_DISPLACED = 4096;

/** Pod rows gain the pod's name and namespace once the runtime told them (never waiting: an
 * unknown UID starts a rate-limited lookup, and a later snapshot has the name). */
function namePods(pods: PodNames, rows: GroupKeyChurn[]): void {
  for (const row of rows) {
    if (row.pod === undefined) continue;
    const p = pods.name(row.pod);
    if (p) {
      row.podName = p.name;
      row.podNamespace = p.namespace;
    }
  }
}

/** Owning threads whose process object is shared (OwnerAttribution.owned), at most. */
const MAX_OWNERS = 4096;

interface Remembered {
  process: ProcessInfo | null;
  /** what the reader joined, for what enrichment finds after the NEW (exe, unit, user) */
  owner?: NativeOwner;
  reason?: Unattributed;
  /** the per-process and per-group keys the NEW was counted under */
  key: string | null;
  group: string | null;
}

/**
 * Every NEW (and snapshot) already carries its owner, or the reason there is none,
 * joined on the reader thread. Here it is only enriched and remembered by conntrack id (with its tuple) until
 * the flow ends, so a flow end names the process even after it exited. Enrichment never waits: the
 * user name (/etc/passwd), the cgroup path with its unit / container / pod (the cgroup id resolved
 * in cgroupfs, src/process/cgroupfs.ts) and the executable (/proc/TGID/exe checked against the
 * stamp's start time, src/process/exe.ts) are cached; what is still being read when the NEW is
 * counted is filled in when the flow ends.
 */
export class OwnerAttribution implements FlowAttribution {
  readonly mode: 'ebpf' | 'sockdiag';
  /** called once, the first time a flow is unattributed because /proc was closed to us (sockdiag) */
  onDenied?: () => void;
  private deniedSaid = false;
  readonly churn = newProcessChurn();
  readonly groups = newGroupChurn();
  readonly unattributed = new ProcessChurn(32, 16);
  // every reason at 0 until it happens, so rate(...{reason="gone"}) is 0 rather than no data
  private readonly counts: AttributionCounts & { remembered: number; evicted: number } = { flows: 0, attributed: 0, reasons: Object.fromEntries(UNATTRIBUTED_REASONS.map((r) => [r, 0])), remembered: 0, evicted: 0 };
  /** live flows by conntrack id (a number: no key string per flow), with their tuple */
  private readonly recent = new Map<number, Held>();
  /** flows whose id the kernel reused while we held them (their DESTROY was lost), by tuple,
   * until a resync or the shutdown ends them; bounded */
  private readonly displaced = new Map<string, Remembered>();
  /** the counts, with what enrichment read: exe (read, gone, reused, denied), cgroups */
  get stats(): AttributionCounts & { remembered: number; evicted: number; exe: ExeStats; cgroups: CgroupfsStats; cri?: CriStats } {
    const s = { ...this.counts, exe: { ...this.executables.stats }, cgroups: { ...this.cgroups.stats } };
    return this.pods && !this.pods.off ? { ...s, cri: this.pods.stats } : s;
  }
  /** pod UID -> name and namespace through the CRI socket, when one is present */
  readonly pods?: PodNames;
  private readonly users = new Users();
  readonly cgroups: Cgroupfs;
  readonly executables: Executables;
  /** thread id -> its last owner and what was remembered for it (see owned()) */
  private readonly owners = new Map<number, Pick<NativeOwner, 'pid' | 'uid' | 'side' | 'cgroupId' | 'comm' | 'startNs'> & { r: Remembered }>();
  /** unattributed flows share one record per reason */
  private readonly missed = new Map<Unattributed, Remembered>();

  constructor(private readonly maxFlows = 262_144, o: { mode?: 'ebpf' | 'sockdiag'; cgroups?: Cgroupfs; executables?: Executables; pods?: PodNames } = {}) {
    this.mode = o.mode ?? 'ebpf';
    this.pods = o.pods;
    this.cgroups = o.cgroups ?? new Cgroupfs();
    this.executables = o.executables ?? new Executables();
  }

  before(part: readonly SourceEvent[]): void {
    for (const e of part) {
      if (e.event !== 'new' && e.event !== 'snapshot') continue;
      const ev = e as ConntrackEvent;
      if (!ev.owner && !ev.unattributed) continue;
      this.counts.flows++;
      let r: Remembered;
      if (ev.owner) {
        r = this.owned(ev.owner);
        ev.process = r.process!;
        this.counts.attributed++;
      } else {
        const reason = ev.unattributed!;
        this.counts.reasons[reason] = (this.counts.reasons[reason] ?? 0) + 1;
        r = this.missed.get(reason) ?? { process: null, reason, key: null, group: null };
        this.missed.set(reason, r);
        if (ev.event === 'new') this.unattributed.opened(reason, ev.time);
        if (reason === 'denied' && !this.deniedSaid) {
          this.deniedSaid = true;
          this.onDenied?.();
        }
      }
      const held = this.recent.get(ev.id);
      if (held !== undefined) {
        this.recent.delete(ev.id);
        if (!sameFlow(held, ev)) this.displace(held);
      }
      this.recent.set(ev.id, { r, netns: ev.netns, proto: ev.proto, src: ev.src, dst: ev.dst, sport: ev.sport, dport: ev.dport });
      if (this.recent.size > this.maxFlows) {
        // the oldest first: a flow whose DESTROY was lost
        this.recent.delete(this.recent.keys().next().value!);
        this.counts.evicted++;
      }
      if (ev.event === 'snapshot') continue;
      if (r.key) this.churn.opened(r.key, ev.time, r.process!);
      if (r.group) this.groups.opened(r.group, ev.time, r.process!);
    }
    this.counts.remembered = this.recent.size + this.displaced.size;
  }

  flows(ends: FlowEnd[]): void {
    for (const end of ends) {
      let r: Remembered | undefined;
      const held = this.recent.get(end.id);
      if (held !== undefined && sameFlow(held, end)) {
        r = held.r;
        this.recent.delete(end.id);
      } else if (this.displaced.size > 0) {
        const k = flowKey(end);
        r = this.displaced.get(k);
        if (r !== undefined) this.displaced.delete(k);
      }
      end.process = r?.process ?? null;
      if (r?.process && r.owner) this.complete(r.process, r.owner);
      if (!end.process) end.unattributed = r?.reason ?? 'unseen';
      if (r && !r.process && r.reason) this.unattributed.closed(r.reason, end.time);
      if (r?.key) this.churn.closed(r.key, end.time, r.process!);
      if (r?.group) this.groups.closed(r.group, end.time, r.process!);
    }
    this.counts.remembered = this.recent.size + this.displaced.size;
  }

  private displace(held: Held): void {
    this.displaced.set(flowKey(held), held.r);
    if (this.displaced.size > MAX_DISPLACED) {
      this.displaced.delete(this.displaced.keys().next().value!);
      this.counts.evicted++;
    }
  }

  decorate(snap: ChurnSnapshot): void {
    topRows(this, snap);
    if (this.pods && snap.groups) namePods(this.pods, snap.groups);
  }

  async close(): Promise<void> {
    this.recent.clear();
    this.displaced.clear();
    await this.pods?.close();
  }

  /**
   * The owner's process, shared by its flows while nothing about it changes: a flow line writes a
   * shared object's JSON once (LineBuffer.object caches by identity), and the keys it is counted
   * under are built once. Only settled ones are shared (user name, executable and cgroup read, or
   * known not to be there): complete() then adds nothing, and one still being enriched stays one
   * object per flow, as before, so what is read later shows up in its own flow's line.
   */
  private owned(o: NativeOwner): Remembered {
    const c = this.owners.get(o.tid);
    if (c !== undefined && c.pid === o.pid && c.startNs === o.startNs && c.uid === o.uid && c.side === o.side && c.cgroupId === o.cgroupId && c.comm === o.comm) return c.r;
    const process = this.processInfo(o);
    const r: Remembered = { process, owner: o, key: processKey(process), group: groupKey(process) };
    // settled: each cache has its answer, the name or that there is none (a root cgroup has no
    // facts; another user's exe may be unreadable)
    const settled =
      process.user !== undefined &&
      (o.startNs <= 0 || this.executables.known(o.pid, o.startNs)) &&
      (!o.cgroupId || this.cgroups.facts(o.cgroupId, o.pid) !== undefined);
    if (settled) {
      if (this.owners.size >= MAX_OWNERS) this.owners.clear();
      this.owners.set(o.tid, { pid: o.pid, startNs: o.startNs, uid: o.uid, side: o.side, cgroupId: o.cgroupId, comm: o.comm, r });
    }
    return r;
  }

  private processInfo(o: NativeOwner): ProcessInfo {
    const p: ProcessInfo = { pid: o.pid, comm: o.comm, tid: o.tid, uid: o.uid, side: o.side };
    this.complete(p, o);
    return p;
  }

  /** Fills what the caches know by now (without waiting); starts the reads of what they do not. */
  private complete(p: ProcessInfo, o: NativeOwner): void {
    if (p.user === undefined) {
      const user = this.users.cached(o.uid);
      if (user !== undefined) p.user = user;
      else void this.users.name(o.uid);
    }
    if (p.exe === undefined && o.startNs > 0) {
      const exe = this.executables.exe(o.pid, o.startNs);
      if (exe !== undefined) p.exe = exe;
    }
    if (p.cgroup === undefined && o.cgroupId) {
      const facts = this.cgroups.facts(o.cgroupId, o.pid);
      if (facts) Object.assign(p, facts);
    }
  }
}
