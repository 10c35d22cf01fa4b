/**
 * Process attribution as one stage, before the engine: each NEW (and dumped entry) comes from the
 * reader thread with its owner joined, or the reason there is none (native/attribution/: eBPF
 * stamps, or sock_diag and /proc, in both modes alike); here its owner becomes the process an
 * operator reads — user name, executable, cgroup with its unit / container / pod — set on the
 * event as `process`. Nothing else happens here: the flow table keeps each flow's owner until the
 * flow ends (src/flow/records.ts names it on the flow end, even after the process exited), and the
 * churn engine counts per process, group and reason (src/churn/owners.ts).
 *
 * Enrichment never waits: the user name (/etc/passwd), the cgroup path (src/process/cgroupfs.ts)
 * and the executable (/proc/TGID/exe checked against the stamp's start time, src/process/exe.ts)
 * are cached; what is still being read when a NEW passes is filled into its process object at a
 * later batch, so the flow end shows it.
 */
import type { GroupKeyChurn } from '../churn/snapshot.js';
import type { ProcessInfo } from '../flow/types.js';
import { Users } from '../process/index.js';
import { Cgroupfs, type CgroupfsStats } from '../process/cgroupfs.js';
import { Executables, type ExeStats } from '../process/exe.js';
import type { CriStats, PodNames } from '../process/cri.js';
import type { ConntrackEvent, NativeOwner, SourceEvent } from '../source/types.js';
import { UNATTRIBUTED_REASONS } from '../source/decode.js';

/** Flows taken, attributed, and the misses by reason (the metrics' attribution_* series). */
export interface AttributionCounts {
  flows: number;
  attributed: number;
  reasons: Record<string, number>;
}

/** What the pipeline needs from an attribution mode: one stage, events in, the same events out with their process. */
export interface FlowAttribution {
  readonly mode: 'ebpf' | 'sockdiag';
  readonly stats: AttributionCounts & { cri?: CriStats };
  /** sets `process` on each NEW and dumped event whose owner the reader joined (cheap, synchronous) */
  enrich(batch: readonly SourceEvent[]): void;
  /** group rows gain a pod's name and namespace once the runtime told them */
  nameGroups(rows: GroupKeyChurn[]): void;
  close(): Promise<void>;
}

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
/** Process objects still being enriched (OwnerAttribution.pending), at most: past it the oldest
 * stays as it is (its flow end then lacks what was read too late), counted as `incomplete`. */
const MAX_PENDING = 4096;
/** µs of event time a process is completed for: a read answers within milliseconds (or says
 * there is nothing to read), so one still unanswered then is stuck; it is completed once more and
 * let go. */
const PENDING_US = 10_000_000;

/** A process whose enrichment had not answered yet, with the owner it is completed from. */
interface Pending {
  process: ProcessInfo;
  owner: NativeOwner;
  /** event time of its NEW */
  time: number;
}

export class OwnerAttribution implements FlowAttribution {
  readonly mode: 'ebpf' | 'sockdiag';
  /** called once, the first time a flow is unattributed because /proc was closed to us (sockdiag) */
  onDenied?: () => void;
  private deniedSaid = false;
  // every reason at 0 until it happens, so rate(...{reason="gone"}) is 0 rather than no data
  private readonly counts: AttributionCounts & { incomplete: number; pending: number } = { flows: 0, attributed: 0, reasons: Object.fromEntries(UNATTRIBUTED_REASONS.map((r) => [r, 0])), incomplete: 0, pending: 0 };
  /** the counts, with what enrichment read: exe (read, gone, reused, denied), cgroups */
  get stats(): AttributionCounts & { incomplete: number; pending: number; exe: ExeStats; cgroups: CgroupfsStats; cri?: CriStats } {
    const s = { ...this.counts, pending: this.pending.size, exe: { ...this.executables.stats }, cgroups: { ...this.cgroups.stats } };
    return this.pods && !this.pods.off ? { ...s, cri: this.pods.stats } : s;
  }
  /** pod UID -> name and namespace through the CRI socket, when one is present */
  readonly pods?: PodNames;
  private readonly users: Users;
  readonly cgroups: Cgroupfs;
  readonly executables: Executables;
  /** thread id -> its last owner and the process object shared for it (see owned()) */
  private readonly owners = new Map<number, Pick<NativeOwner, 'pid' | 'uid' | 'side' | 'cgroupId' | 'comm' | 'startNs'> & { process: ProcessInfo }>();
  /** processes given out before their enrichment answered, completed at each batch until it has */
  private readonly pending = new Set<Pending>();

  constructor(o: { mode?: 'ebpf' | 'sockdiag'; cgroups?: Cgroupfs; executables?: Executables; pods?: PodNames; users?: Users } = {}) {
    this.mode = o.mode ?? 'ebpf';
    this.users = o.users ?? new Users();
    this.pods = o.pods;
    this.cgroups = o.cgroups ?? new Cgroupfs();
    this.executables = o.executables ?? new Executables();
  }

  enrich(batch: readonly SourceEvent[]): void {
    if (this.pending.size > 0 && batch.length > 0) this.completePending(batch[0].time);
    for (const e of batch) {
      if (e.event !== 'new' && e.event !== 'snapshot') continue;
      const ev = e as ConntrackEvent;
      if (ev.owner) {
        this.counts.flows++;
        this.counts.attributed++;
        ev.process = this.owned(ev.owner, ev.time);
      } else if (ev.unattributed) {
        this.counts.flows++;
        const reason = ev.unattributed;
        this.counts.reasons[reason] = (this.counts.reasons[reason] ?? 0) + 1;
        if (reason === 'denied' && !this.deniedSaid) {
          this.deniedSaid = true;
          this.onDenied?.();
        }
      }
    }
  }

  nameGroups(rows: GroupKeyChurn[]): void {
    if (this.pods) namePods(this.pods, rows);
  }

  async close(): Promise<void> {
    this.pending.clear();
    await this.pods?.close();
  }

  /**
   * The owner's process, shared by its flows while nothing about it changes: a flow line writes a
   * shared object's JSON once (LineBuffer.object caches by identity), and the keys it is counted
   * under are built once (src/churn/owners.ts). Only settled ones are shared (user name,
   * executable and cgroup read, or known not to be there); one still being enriched is one object
   * per flow, completed at the next batches (completePending), so what is read later shows up in
   * its own flow's end.
   */
  private owned(o: NativeOwner, time: number): ProcessInfo {
    const c = this.owners.get(o.tid);
    if (c !== undefined && c.pid === o.pid && c.startNs === o.startNs && c.uid === o.uid && c.side === o.side && c.cgroupId === o.cgroupId && c.comm === o.comm) return c.process;
    const process = this.processInfo(o);
    if (this.settled(process, o)) {
      if (this.owners.size >= MAX_OWNERS) this.owners.clear();
      this.owners.set(o.tid, { pid: o.pid, startNs: o.startNs, uid: o.uid, side: o.side, cgroupId: o.cgroupId, comm: o.comm, process });
    } else {
      if (this.pending.size >= MAX_PENDING) {
        this.pending.delete(this.pending.values().next().value!);
        this.counts.incomplete++;
      }
      this.pending.add({ process, owner: o, time });
    }
    return process;
  }

  /** Each cache has its answer, the name or that there is none (a uid not in /etc/passwd, a
   * cgroup not found, another user's exe unreadable): reading again would add nothing. */
  private settled(p: ProcessInfo, o: NativeOwner): boolean {
    return (
      (p.user !== undefined || this.users.known(o.uid)) &&
      (o.startNs <= 0 || this.executables.known(o.pid, o.startNs)) &&
      (!o.cgroupId || this.cgroups.answered(o.cgroupId))
    );
  }

  /** What enrichment read since, into the processes given out before it answered (oldest first). */
  private completePending(now: number): void {
    for (const x of this.pending) {
      this.complete(x.process, x.owner);
      if (this.settled(x.process, x.owner) || now - x.time > PENDING_US) this.pending.delete(x);
    }
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
