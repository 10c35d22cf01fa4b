/**
 * Process attribution: which process owns a flow's local socket.
 *
 * `attribute(batch)` only queues (O(1) per event, no I/O, no await): it is safe on the collection
 * path. Lookups start in a microtask right after it, batched per network namespace: one trip to
 * that namespace's sock_diag thread for every NEW queued meanwhile (one trip in flight per
 * namespace, so the queue itself is the batching), then the inode -> pid index (procfs.ts), which
 * reads /proc only on a miss, and re-reads the busiest processes beside the next trip when the
 * last one found sockets it did not know.
 *
 * Which socket is the flow's. A conntrack entry has two directions. If the original source is one
 * of the namespace's own addresses the flow was originated here and its socket is (orig.src:sport ->
 * orig.dst:dport): the `origin` side. Otherwise, if the reply source is ours, the flow ends here and
 * its socket is (reply.src:sport -> reply.dst:dport), which after DNAT is the real server address:
 * the `reply` side; if that accepted socket is already gone but the port still has a listener, the
 * listener's process, which accepted the flow, is taken (`listener`). A flow local at both ends
 * (loopback, a container talking to itself) belongs to its originator. The side is fixed by the
 * addresses, never by which lookup happened to succeed, so a gone client is never replaced by its
 * server.
 *
 * Never a guess: whatever is not known is `process: null` with a reason, counted in `stats`:
 *   not-local    neither end is an address of the namespace (forwarded, bridged traffic)
 *   unsupported  no socket to look up (ICMP, GRE, SCTP...)
 *   gone         the socket was closed before the lookup (TIME_WAIT, orphaned), or its process
 *                exited before it could be read
 *   no-socket    the kernel has no socket for the tuple (closed and freed, e.g. a RST)
 *   no-pid       a socket with a file, but no process we can see holds it
 *   denied       the same, while some processes' /proc/PID/fd could not be read (another user's,
 *                without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH): the owner is probably one of them
 *   shared       several processes hold the socket (inherited across fork): which one is a guess
 *   error        the lookup itself failed (the namespace went away...), see lastError
 *   overload     dropped from a full queue before lookup (maxQueue)
 *   pending      (processOf only) the lookup has not finished
 *   unseen       (processOf only) the flow's NEW never went through attribute()
 *
 * Short flows. A lookup driven from here comes 5-50 ms after the kernel event (the reader's batch,
 * this thread, a trip to the namespace thread), and a socket held a few ms is gone by then. So by
 * default (`capture`) the namespace thread subscribes to NEW events itself and looks each flow's
 * original-direction socket up at once, with its owner when one of the recently seen owners holds
 * it (native/attribution/sockdiag.h); lookups from here then get what it saw, checked against /proc by pid and
 * start time. A captured socket whose owner was not found yet is asked about again (20, 80 ms),
 * then looked up live: if it is gone, so is the chance to find its owner (`gone`), without reading
 * /proc for nothing. bench/README-attribution.md has the rates this reaches.
 *
 * What is learned at NEW time is kept per flow tuple until the flow's DESTROY has gone
 * through attribute() once more (then the engine has had its chance to call processOf), so a
 * DESTROY long after the socket closed, or after its process exited and the pid was reused, still
 * gets the process seen at NEW time. This "recent" map is keyed by the full tuple, not by the local
 * port alone: at 50 k connections/s the 28 k ephemeral ports come round within a second, so a
 * port-only key would hand an old flow's DESTROY the process of a newer flow on the same port.
 * The share of flows whose socket was gone before the lookup is in stats.reasons.gone/no-socket,
 * and the delay between the kernel event and the answer in stats.latency.
 */
import { statSync } from 'node:fs';
import type { ProcessInfo } from '../flow/types.js';
import type { ConntrackEvent, SourceEvent } from '../source/types.js';
import { netnsPath } from '../util/netns.js';
import { CtwatchError, fromNativeError } from '../util/errors.js';
import { LocalAddresses } from './local.js';
import { FROM_CAPTURE, RESULT_WIDTH } from './native.js';
import { ProcIndex, type ProcIndexOptions, type ProcIndexStats } from './procfs.js';
import { EAGAIN, ENOENT, SockDiag, SOCKET_STATE } from './sockdiag.js';
import type { NativeSockDiagCounters } from './native.js';

export type Side = 'origin' | 'reply' | 'listener';

export type MissReason =
  | 'not-local'
  | 'unsupported'
  | 'gone'
  | 'no-socket'
  | 'no-pid'
  | 'denied'
  | 'shared'
  | 'error'
  | 'overload'
  | 'pending'
  | 'unseen';

export interface Attribution {
  process: ProcessInfo | null;
  /** why `process` is null */
  reason?: MissReason;
  /** which of the flow's sockets was found (see the module comment) */
  side?: Side;
}

/** Enough of a flow to find its attribution: a ConntrackEvent or a FlowEnd. */
export interface FlowRef {
  netns?: string;
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

/** What the attributor needs from a namespace's sock_diag handle (SockDiag; a stand-in in tests). */
export interface DiagHandle {
  lookupEncoded(lines: readonly string[]): Promise<Uint32Array>;
  localRoutes(): Promise<string[]>;
  close(): void;
  readonly counters?: { busyUs: number; retried: number; capture?: NativeSockDiagCounters['capture'] };
}

export interface AttributorOptions {
  /** look each NEW flow's socket up on the namespace thread the moment the kernel reports it, so
   * that sockets living a few ms are still seen (native/attribution/sockdiag.h); default true. Costs a second
   * NEW subscription per namespace; needs CAP_NET_ADMIN (as the collector does anyway). */
  capture?: boolean;
  /** queries per trip to a namespace's thread; default 4096 */
  batch?: number;
  /** NEW events waiting for lookup before the oldest are dropped (`overload`); default 200 000 */
  maxQueue?: number;
  /** flows remembered (live flows waiting for their DESTROY); the oldest go first; default 262 144 */
  maxFlows?: number;
  /** a socket accepted by the kernel but not yet by the server is asked again after these delays
   * (ms), then its listener is taken; default [5, 25, 100] */
  acceptRetriesMs?: number[];
  /** a captured socket whose owner the namespace thread has not found yet is asked about again
   * after these delays (ms) before /proc is read from here; default [20, 80] */
  captureOwnerWaitsMs?: number[];
  /** the namespace's local routes are read again after this long (ms); default 30 000 */
  routesMaxAgeMs?: number;
  /** called once per attributed NEW (or snapshot) when its answer is known: the hook for
   * per-process churn (count the NEW against processKey(result.process) at event.time) */
  onResult?: (event: ConntrackEvent, result: Readonly<Attribution>) => void;
  /** options of the inode -> pid index */
  index?: ProcIndexOptions;
  /** stand-ins for tests */
  openDiag?: (netns: string | undefined) => DiagHandle;
  netnsInode?: (netns: string | undefined) => number;
  /** wall clock in µs (the events' clock), for the latency figures */
  nowUs?: () => number;
}

export interface AttributorStats {
  /** NEW / snapshot (and first-seen UPDATE) events taken for attribution */
  flows: number;
  attributed: number;
  reasons: Record<Exclude<MissReason, 'pending' | 'unseen'>, number>;
  /** by side, of the attributed */
  sides: Record<Side, number>;
  /** socket queries sent to the namespace threads */
  queries: number;
  /** of them, answered by what the NEW-time capture saw */
  captured: number;
  trips: number;
  /** event time -> answer known: how late attribution is, i.e. how long a socket must live */
  latency: { le1ms: number; le5ms: number; le10ms: number; le50ms: number; le100ms: number; le1s: number; gt1s: number };
  queued: number;
  remembered: number;
  evicted: number;
  index: ProcIndexStats;
  /** the namespace threads: time spent on lookups (µs), answers asked again after a loss */
  sockdiag: { busyUs: number; retried: number; capture: NonNullable<DiagHandle['counters']>['capture'] | null };
}

type Entry = Attribution;

interface Job {
  entry: Entry;
  event: ConntrackEvent;
  key: string;
  side: 'origin' | 'reply';
  /** asking for the listener on the local endpoint, after accept retries ran out */
  listener: boolean;
  tries: number;
  /** times the job waited for the namespace thread to find the owner of a captured socket */
  ownerWaits: number;
  /** ask the kernel now, not what the capture saw (is the captured socket still there?) */
  live: boolean;
  due: number;
}

interface Ns {
  netns: string | undefined;
  diag: DiagHandle | null;
  error: CtwatchError | null;
  inode: number;
  local: LocalAddresses;
  routesAt: number;
  routesLoading: boolean;
  queue: Job[];
  head: number;
  delayed: Job[];
  timer: NodeJS.Timeout | null;
  busy: boolean;
  /** the last trip found sockets the index did not know: re-read hot processes beside the next */
  missed: boolean;
}

const LOOKUP_PROTO: Record<string, number> = { tcp: 6, udp: 17 };
const NOT_YET_ACCEPTED = new Set<number>([SOCKET_STATE.ESTABLISHED, SOCKET_STATE.SYN_RECV, SOCKET_STATE.NEW_SYN_RECV, SOCKET_STATE.CLOSE_WAIT]);

const UNSUPPORTED: Readonly<Attribution> = Object.freeze({ process: null, reason: 'unsupported' });
const NOT_LOCAL: Readonly<Attribution> = Object.freeze({ process: null, reason: 'not-local' });
const UNSEEN: Readonly<Attribution> = Object.freeze({ process: null, reason: 'unseen' });

function lookable(e: ConntrackEvent): boolean {
  return e.proto in LOOKUP_PROTO && e.sport !== undefined && e.dport !== undefined;
}

/** The key per-process churn is counted under: "comm[pid]"; its row carries processParts beside it. */
export function processKey(p: ProcessInfo | null | undefined): string | null {
  return p ? `${p.comm}[${p.pid}]` : null;
}

/** What a per-process row says beside its key, for readers that need the pid (alerts, hints). */
export function processParts(p: ProcessInfo): { pid: number; comm: string } {
  return { pid: p.pid, comm: p.comm };
}

/** The key per-unit / per-container churn is counted under, when the process has one: a pod's
 * containers count together under the pod ("pod:<uid> burstable"), not under 64-hex ids. */
export function groupKey(p: ProcessInfo | null | undefined): string | null {
  if (!p) return null;
  if (p.pod) return `pod:${p.pod}${p.qos ? ` ${p.qos}` : ''}`;
  if (p.container) return `container:${p.container.slice(0, 12)}`;
  return p.unit ? `unit:${p.unit}` : null;
}

/** What a per-group row says beside its key: the one of pod (and qos), container, unit it is keyed on. */
export function groupParts(p: ProcessInfo): { unit?: string; container?: string; pod?: string; qos?: string } {
  if (p.pod) return p.qos ? { pod: p.pod, qos: p.qos } : { pod: p.pod };
  if (p.container) return { container: p.container.slice(0, 12) };
  return p.unit ? { unit: p.unit } : {};
}

/** Flow identity while it is live: two live conntrack entries never share an original tuple. */
export function flowKey(f: FlowRef): string {
  return `${f.netns ?? ''}|${f.proto}|${f.src}|${f.sport ?? ''}|${f.dst}|${f.dport ?? ''}`;
}

export class Attributor {
  private readonly batch: number;
  private readonly maxQueue: number;
  private readonly maxFlows: number;
  private readonly retries: number[];
  private readonly ownerWaitsMs: number[];
  private readonly routesMaxAgeMs: number;
  private readonly onResult?: AttributorOptions['onResult'];
  private readonly openDiag: (netns: string | undefined) => DiagHandle;
  private readonly netnsInode: (netns: string | undefined) => number;
  private readonly nowUs: () => number;
  readonly index: ProcIndex;

  private readonly namespaces = new Map<string, Ns>();
  private readonly flows = new Map<string, Entry>();
  private dying: [string, Entry][] = [];
  private outstanding = 0;
  private idle: (() => void)[] = [];
  private closed = false;
  /** the last lookup failure, for the operator */
  lastError: CtwatchError | null = null;
  private readonly counts = {
    flows: 0,
    attributed: 0,
    queries: 0,
    captured: 0,
    trips: 0,
    evicted: 0,
    reasons: { 'not-local': 0, unsupported: 0, gone: 0, 'no-socket': 0, 'no-pid': 0, denied: 0, shared: 0, error: 0, overload: 0 },
    sides: { origin: 0, reply: 0, listener: 0 },
    latency: { le1ms: 0, le5ms: 0, le10ms: 0, le50ms: 0, le100ms: 0, le1s: 0, gt1s: 0 },
  };

  constructor(options: AttributorOptions = {}) {
    this.batch = options.batch ?? 4096;
    this.maxQueue = options.maxQueue ?? 200_000;
    this.maxFlows = options.maxFlows ?? 262_144;
    this.retries = options.acceptRetriesMs ?? [5, 25, 100];
    this.ownerWaitsMs = options.captureOwnerWaitsMs ?? [20, 80];
    this.routesMaxAgeMs = options.routesMaxAgeMs ?? 30_000;
    this.onResult = options.onResult;
    const capture = options.capture ?? true;
    this.openDiag =
      options.openDiag ??
      ((netns) => {
        if (!capture) return new SockDiag({ netns });
        try {
          return new SockDiag({ netns, capture: true });
        } catch (err) {
          // No conntrack subscription for the capture (no CAP_NET_ADMIN, no ctnetlink): attribute
          // without it (short flows suffer), and say why.
          const e = fromNativeError(err);
          if (e.code !== 'ERR_NO_CAP_NET_ADMIN' && e.code !== 'ERR_NO_CTNETLINK') throw err;
          this.lastError = e;
          return new SockDiag({ netns });
        }
      });
    this.netnsInode = options.netnsInode ?? ((netns) => statSync(netns === undefined ? '/proc/self/ns/net' : netnsPath(netns)).ino);
    this.nowUs = options.nowUs ?? (() => Date.now() * 1000);
    this.index = new ProcIndex(options.index);
  }

  /**
   * Takes a batch as it comes from the source. NEW and snapshot events (and an UPDATE for a flow
   * never seen) are queued for lookup; DESTROY events mark their flow to be forgotten at the next
   * call. Cheap and synchronous: call it before handing the batch to the engine.
   */
  attribute(events: readonly SourceEvent[]): void {
    if (this.closed) return;
    if (this.dying.length > 0) {
      for (const [key, entry] of this.dying) if (this.flows.get(key) === entry) this.flows.delete(key);
      this.dying = [];
    }
    const touched = new Set<Ns>();
    for (const e of events) {
      if (e.event === 'destroy') {
        const key = flowKey(e);
        const entry = this.flows.get(key);
        if (entry) this.dying.push([key, entry]);
        continue;
      }
      if (e.event !== 'new' && e.event !== 'snapshot' && e.event !== 'update') continue;
      const key = flowKey(e);
      if (e.event === 'update' && this.flows.has(key)) continue;
      this.counts.flows++;
      if (!lookable(e)) {
        // Nothing is remembered: lookup() tells these apart by their protocol.
        this.finish({ process: null }, e, null, 'unsupported');
        continue;
      }
      const entry: Entry = { process: null, reason: 'pending' };
      this.flows.set(key, entry);
      if (this.flows.size > this.maxFlows) {
        const oldest = this.flows.keys().next().value as string;
        this.flows.delete(oldest);
        this.counts.evicted++;
      }
      const ns = this.ns(e.netns);
      ns.queue.push({ entry, event: e, key, side: 'origin', listener: false, tries: 0, ownerWaits: 0, live: false, due: 0 });
      this.outstanding++;
      touched.add(ns);
    }
    for (const ns of touched) {
      this.shed(ns);
      this.pump(ns);
    }
  }

  /** The flow's process, or null (see `lookup` for why). */
  processOf(flow: FlowRef): ProcessInfo | null {
    return this.flows.get(flowKey(flow))?.process ?? null;
  }

  /** The flow's attribution: the process, or null and the reason. */
  lookup(flow: FlowRef): Readonly<Attribution> {
    const e = this.flows.get(flowKey(flow));
    if (e) return e;
    // Flows answered without a lookup are not remembered: say why from the flow itself.
    if (!(flow.proto in LOOKUP_PROTO) || flow.sport === undefined || flow.dport === undefined) return UNSUPPORTED;
    const ns = this.namespaces.get(flow.netns ?? '');
    if (ns && ns.local.known && !ns.local.isLocal(flow.src) && !ns.local.isLocal(flow.dst)) return NOT_LOCAL;
    return UNSEEN;
  }

  /** processKey(processOf(flow)): "comm[pid]", or null when the process is not known. */
  keyOf(flow: FlowRef): string | null {
    return processKey(this.processOf(flow));
  }

  /** Drops what is remembered of a flow that will get no DESTROY (ended by a resync). */
  forget(flow: FlowRef): void {
    this.flows.delete(flowKey(flow));
  }

  /** Resolves when every event given so far has its answer (tests, shutdown, benchmarks). */
  settled(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  get stats(): AttributorStats {
    let queued = 0;
    for (const ns of this.namespaces.values()) queued += ns.queue.length - ns.head + ns.delayed.length;
    const c = this.counts;
    return {
      flows: c.flows,
      attributed: c.attributed,
      reasons: { ...c.reasons },
      sides: { ...c.sides },
      queries: c.queries,
      captured: c.captured,
      trips: c.trips,
      latency: { ...c.latency },
      queued,
      remembered: this.flows.size,
      evicted: c.evicted,
      index: { ...this.index.stats, scans: { ...this.index.stats.scans } },
      sockdiag: this.diagCounters(),
    };
  }

  private diagCounters(): AttributorStats['sockdiag'] {
    const out: AttributorStats['sockdiag'] = { busyUs: 0, retried: 0, capture: null };
    for (const ns of this.namespaces.values()) {
      const c = ns.diag?.counters;
      if (!c) continue;
      out.busyUs += c.busyUs;
      out.retried += c.retried;
      if (c.capture?.enabled) {
        if (!out.capture) out.capture = { ...c.capture };
        else for (const [k, v] of Object.entries(c.capture)) if (typeof v === 'number') (out.capture as unknown as Record<string, number>)[k] += v;
      }
    }
    return out;
  }

  /** Closes every namespace handle; what is remembered stays readable. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ns of this.namespaces.values()) {
      if (ns.timer) clearTimeout(ns.timer);
      ns.diag?.close();
    }
    this.index.close();
    // Whatever was still queued will never be answered.
    for (const ns of this.namespaces.values()) {
      for (let i = ns.head; i < ns.queue.length; i++) this.done(ns.queue[i], null, 'error');
      for (const j of ns.delayed) this.done(j, null, 'error');
      ns.queue = [];
      ns.head = 0;
      ns.delayed = [];
    }
    await this.settled();
  }

  /**
   * Opens the lookups for a namespace now rather than at its first event: before `--user`, so
   * their thread starts with the privileges it needs (the NEW-time capture subscribes to
   * conntrack events: CAP_NET_ADMIN), which the JavaScript thread no longer has afterwards.
   */
  prepare(netns: string | undefined): void {
    if (!this.closed) this.ns(netns);
  }

  // --- per namespace ------------------------------------------------------------------------

  private ns(netns: string | undefined): Ns {
    const key = netns ?? '';
    let ns = this.namespaces.get(key);
    if (ns) return ns;
    ns = { netns, diag: null, error: null, inode: -1, local: new LocalAddresses(), routesAt: -Infinity, routesLoading: false, queue: [], head: 0, delayed: [], timer: null, busy: false, missed: false };
    this.namespaces.set(key, ns);
    try {
      ns.inode = this.netnsInode(netns);
      this.index.watch(ns.inode);
      ns.diag = this.openDiag(netns);
    } catch (err) {
      ns.error = fromNativeError(err);
      this.lastError = ns.error;
    }
    return ns;
  }

  /** Keeps the queue within maxQueue by answering the oldest `overload`. */
  private shed(ns: Ns): void {
    const excess = ns.queue.length - ns.head - this.maxQueue;
    for (let i = 0; i < excess; i++) this.done(ns.queue[ns.head++], null, 'overload');
  }

  private pump(ns: Ns): void {
    if (ns.busy || this.closed || ns.head >= ns.queue.length) return;
    ns.busy = true;
    // Right after attribute() returns (a microtask, not inside the caller's loop): the lookups then
    // run on the namespace thread while the engine works through the same batch. Every ms counts:
    // a socket closed before its lookup is lost.
    queueMicrotask(() => {
      void this.trip(ns).finally(() => {
        ns.busy = false;
        this.pump(ns);
      });
    });
  }

  private refreshRoutes(ns: Ns): Promise<void> | null {
    if (!ns.diag || ns.routesLoading || performance.now() - ns.routesAt < this.routesMaxAgeMs) return null;
    ns.routesLoading = true;
    return ns.diag
      .localRoutes()
      .then((routes) => {
        ns.local.setRoutes(routes);
        ns.routesAt = performance.now();
      })
      .catch((err) => {
        this.lastError = fromNativeError(err);
        ns.routesAt = performance.now();
      })
      .finally(() => (ns.routesLoading = false));
  }

  /** One trip: classify the queued jobs, send the lookups, hand inodes to the index. */
  private async trip(ns: Ns): Promise<void> {
    const refresh = this.refreshRoutes(ns);
    // The first trip waits for the routes; later refreshes run beside the lookups.
    if (refresh && !ns.local.known) await refresh;
    const end = Math.min(ns.queue.length, ns.head + this.batch);
    const jobs = ns.queue.slice(ns.head, end);
    ns.head = end;
    if (ns.head === ns.queue.length || ns.head > 65_536) {
      ns.queue = ns.queue.slice(ns.head);
      ns.head = 0;
    }
    if (ns.error || !ns.diag) {
      for (const j of jobs) this.done(j, null, 'error');
      return;
    }
    const sent: Job[] = [];
    const lines: string[] = [];
    for (const j of jobs) {
      const line = this.query(ns, j);
      if (line === null) continue;
      sent.push(j);
      lines.push(line);
    }
    if (lines.length === 0) return;
    let words: Uint32Array;
    try {
      this.counts.trips++;
      this.counts.queries += lines.length;
      const lookup = ns.diag.lookupEncoded(lines);
      // A busy process's new sockets: read its descriptors while the kernel answers.
      const prefetch = ns.missed ? this.index.prefetch(ns.inode) : null;
      words = await lookup;
      if (prefetch) await prefetch;
    } catch (err) {
      this.lastError = fromNativeError(err);
      for (const j of sent) this.done(j, null, 'error');
      return;
    }
    ns.missed = false;
    for (let i = 0; i < sent.length; i++) {
      const b = i * RESULT_WIDTH;
      // A socket neither the namespace thread nor the index can place: a busy process the index
      // does not know yet. (With capture on, the thread places most: pid in word 7.)
      if (words[b] === 0 && words[b + 1] !== 0 && words[b + 7] === 0 && !(words[b + 6] & FROM_CAPTURE) && !this.index.known(words[b + 1])) ns.missed = true;
      this.answer(ns, sent[i], words, b);
    }
  }

  /** The socket query for a job, or null when the job was answered without one. */
  private query(ns: Ns, j: Job): string | null {
    const e = j.event;
    if (j.tries === 0 && !j.listener) {
      if (ns.local.isLocal(e.src)) j.side = 'origin';
      else if (ns.local.isLocal(e.reply.src)) j.side = 'reply';
      else {
        this.done(j, null, 'not-local');
        return null;
      }
    }
    const f = (e.family === 'ipv6' ? 6 : 4) + (j.live ? 10 : 0);
    const p = LOOKUP_PROTO[e.proto];
    if (j.side === 'origin') return `${f} ${p} ${e.src} ${e.sport} ${e.dst} ${e.dport}`;
    const r = e.reply;
    if (r.sport === undefined || r.dport === undefined) {
      this.done(j, null, 'unsupported');
      return null;
    }
    return j.listener ? `${f} ${p} ${r.src} ${r.sport} * 0` : `${f} ${p} ${r.src} ${r.sport} ${r.dst} ${r.dport}`;
  }

  private answer(ns: Ns, j: Job, w: Uint32Array, b: number): void {
    const errno = w[b];
    const inode = w[b + 1];
    const state = w[b + 3];
    if (w[b + 6] & FROM_CAPTURE) this.counts.captured++;
    const tcp = j.event.proto === 'tcp';
    // Gone since the capture saw it (a live re-ask), or since the listener was found.
    if (errno === ENOENT) return this.done(j, null, j.listener || j.live ? 'gone' : 'no-socket');
    if (errno !== 0) {
      if (errno !== EAGAIN) this.lastError = new CtwatchError('ERR_SOCKDIAG_LOOKUP', `socket lookup failed with errno ${errno}`, { errno });
      return this.done(j, null, 'error');
    }
    if (tcp && state === SOCKET_STATE.LISTEN) {
      // No connected socket: the kernel fell back to the port's listener. The listener accepted a
      // flow that ends here; a flow that began here has lost its socket.
      if (j.side === 'origin') return this.done(j, null, 'no-socket');
      return this.resolve(ns, j, inode, 'listener', w[b + 7], w[b + 8]);
    }
    if (inode === 0) {
      if (tcp && j.side === 'reply' && !j.listener && NOT_YET_ACCEPTED.has(state)) {
        // In the accept queue, no file yet: ask again a little later, then take the listener.
        if (j.tries < this.retries.length) return this.delay(ns, j, this.retries[j.tries]);
        j.listener = true;
        return this.delay(ns, j, 0);
      }
      // TCP: closed by its process (TIME_WAIT, orphaned in FIN_WAIT...). UDP: a kernel socket
      // (a tunnel's), which no process holds.
      return this.done(j, null, tcp ? 'gone' : 'no-pid');
    }
    if (w[b + 6] & FROM_CAPTURE && w[b + 7] === 0 && j.ownerWaits < this.ownerWaitsMs.length) {
      // Captured while alive, owner not found yet: the namespace thread is still on it (its reads
      // of /proc are budgeted). Asking it again soon is cheaper than reading /proc from here.
      j.ownerWaits++;
      j.tries--; // delay() counts a try; this is not one
      return this.delay(ns, j, this.ownerWaitsMs[j.ownerWaits - 1]);
    }
    if (w[b + 6] & FROM_CAPTURE && w[b + 7] === 0) {
      // Still no owner: read /proc from here only if the socket is still there to be found.
      j.live = true;
      j.tries--;
      return this.delay(ns, j, 0);
    }
    this.resolve(ns, j, inode, j.listener ? 'listener' : j.side, w[b + 7], w[b + 8]);
  }

  private resolve(ns: Ns, j: Job, inode: number, side: Side, pid = 0, start32 = 0): void {
    // The namespace thread saw who held it (at NEW time, or among its hot processes): check that
    // process is still the one with that pid and read what it is; else ask the /proc index.
    const owner = pid !== 0 ? this.index.resolvePid(pid, start32, ns.inode) : this.index.resolve(inode, ns.inode);
    void owner.then((o) => {
      if (o.process) this.done(j, o.process, undefined, side);
      else this.done(j, null, o.reason);
    });
  }

  private delay(ns: Ns, j: Job, ms: number): void {
    j.tries++;
    j.due = performance.now() + ms;
    ns.delayed.push(j);
    if (ns.timer) return;
    const fire = () => {
      ns.timer = null;
      const now = performance.now();
      const still: Job[] = [];
      for (const d of ns.delayed) (d.due <= now ? ns.queue : still).push(d);
      ns.delayed = still;
      if (still.length > 0) {
        ns.timer = setTimeout(fire, Math.max(1, Math.min(...still.map((d) => d.due)) - now));
        ns.timer.unref();
      }
      this.pump(ns);
    };
    ns.timer = setTimeout(fire, Math.max(1, ms));
    ns.timer.unref();
  }

  private done(j: Job, process: ProcessInfo | null, reason?: Exclude<MissReason, 'pending' | 'unseen'>, side?: Side): void {
    this.finish(j.entry, j.event, process, reason, side);
    // A forwarded flow has nothing to remember; lookup() recognises it from its addresses.
    if (reason === 'not-local' && this.flows.get(j.key) === j.entry) this.flows.delete(j.key);
    this.outstanding--;
    if (this.outstanding === 0 && this.idle.length > 0) {
      const idle = this.idle;
      this.idle = [];
      for (const f of idle) f();
    }
  }

  private finish(entry: Entry, event: ConntrackEvent, process: ProcessInfo | null, reason?: Exclude<MissReason, 'pending' | 'unseen'>, side?: Side): void {
    entry.process = process;
    if (process) {
      delete entry.reason;
      entry.side = side;
      this.counts.attributed++;
      this.counts.sides[side ?? 'origin']++;
    } else {
      entry.reason = reason ?? 'no-pid';
      // A socket with a file and no owner we can see, while some processes' /proc is closed to us:
      // say so rather than "nobody holds it".
      if (entry.reason === 'no-pid' && this.index.stats.denied > 0) entry.reason = 'denied';
      this.counts.reasons[entry.reason as keyof typeof this.counts.reasons]++;
    }
    const lat = this.nowUs() - event.time;
    const l = this.counts.latency;
    if (lat <= 1_000) l.le1ms++;
    else if (lat <= 5_000) l.le5ms++;
    else if (lat <= 10_000) l.le10ms++;
    else if (lat <= 50_000) l.le50ms++;
    else if (lat <= 100_000) l.le100ms++;
    else if (lat <= 1_000_000) l.le1s++;
    else l.gt1s++;
    this.onResult?.(event, entry);
  }
}
