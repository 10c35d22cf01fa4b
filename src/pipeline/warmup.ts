/**
 * Warm-up of the per-event path, before a live engine pipeline takes its first real event.
 *
 * Why: at 50 000 events/s the first second of load decided the kernel → line p99 (bench/README.md,
 * "The tick off the flow lines", "Warm-up before the first event"): the JavaScript of the decoder,
 * the tracker, the churn windows, the heavy hitters, attribution and the flow-line writer started
 * interpreted, and V8 compiled it under load (decodeBatch alone 40–80 ms of a V8 worker, on a
 * 2-core machine shared with the load), so the first 10 000–20 000 lines waited up to 140–200 ms
 * where a warm pipeline writes one within 5–25 ms. Here the same code runs first over synthetic
 * NEW / UPDATE / DESTROY records, a table dump and its end — a native batch buffer laid out as the
 * addon's records (native/conntrack/record.h, through the exported layout) — decoded, recovered,
 * attributed, tracked, counted, snapshotted, judged by the rules and written as flow lines.
 *
 * The records look like the kernel's where V8 can tell: ids spread over 32 bits (half past 2^31,
 * heap numbers rather than small integers), a DESTROY with its timeout, an owner with a start
 * time and a cgroup; and the throwaway pipeline is assembled by the same code as the live one
 * (assemble.ts warmUpLive). Code compiled for other shapes is thrown away at the first real
 * batch ("wrong map", "not a Smi") and compiled again under load, which is what this is for.
 *
 * It leaves no trace: every stateful object is a throwaway of its own (decoder, recovery,
 * attribution, engine, pipeline, rule evaluator, line writer whose bytes are dropped); nothing
 * reaches the real output, sinks, metrics or counters. The throwaway attribution reads
 * /etc/passwd, ctwatch's own /proc entries and its own cgroup's directory (never a walk), between
 * the synthetic batches as a live one reads between the kernel's. The reader keeps reading meanwhile: what the kernel sends waits in its queue of batches, and past
 * that in the socket (an overflow there is counted and resynced as any other).
 * What it shares with the real run are module-level caches that are pure memos of their input
 * (address text, destination keys, status names, the time prefix): the same input gives the same
 * string with or without them, so replay still equals the live run and the first real lines are
 * byte for byte what they would have been (test/unit/warmup.test.ts). Its addresses are from the
 * benchmarking ranges (198.18.0.0/15, 2001:2::/48) and few, and its destination keys a few
 * thousand, so those bounded caches keep room (the destination keys' holds 65 536).
 *
 * Two generations of throwaway instances, the second smaller: the first makes the code hot; the
 * second's fresh instances (an empty tracker and heavy hitters, a new attribution stage's first
 * processes, a decoder's first owner name) take, in that compiled code, the branches that only
 * an instance's first events take. V8 throws the code away there and compiles it again knowing
 * them. With one generation it was the live pipeline's first batch that did so; the code then
 * stayed interpreted until the load came (bench/README.md, "Fresh instances and the compiled
 * per-event path").
 *
 * Bounded: it stops after `budgetMs` (800) of wall time even when the flows are not all done,
 * and once the live source has many events waiting (`busy`, assemble.ts warmUpGivesWay: started
 * under load, where holding them 0.8 s overflowed the socket at 100 000 events/s). Events the
 * kernel sends meanwhile wait in the reader's queue.
 */
import { AlertEvaluator } from '../alerts/evaluator.js';
import type { RuleSet } from '../alerts/evaluator.js';
import type { ChurnEngine, ChurnEngineOptions } from '../churn/engine.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import type { FlowEnd } from '../flow/types.js';
import { OwnerAttribution } from './attribution.js';
import { Users } from '../process/index.js';
import { Cgroupfs } from '../process/cgroupfs.js';
import { Executables, processStartNs } from '../process/exe.js';
import { OverflowRecovery, type Resyncable } from './recovery.js';
import { HAS, KIND, UNATTRIBUTED, makeDecoder } from '../source/decode.js';
import { STATUS_FLAGS, TCP_STATES, protoNumber } from '../source/names.js';
import type { KernelStats, RecordLayout } from '../source/native.js';
import type { EventSource, SourceCounters, SourceEvent } from '../source/types.js';
import { LineBuffer } from '../recording/line-buffer.js';
import { writeRecord, type AnyRecord } from '../recording/schema.js';
import type { PipelineHooks } from './pipeline.js';

export interface WarmUpOptions {
  /** the addon's record layout (loadAddon().layout): the synthetic batches are laid out with it */
  layout: RecordLayout;
  /** the live source's namespace: decoded events carry it as real ones do */
  netns?: string;
  /** the live engine's options (replies, SNAT port range), so the same branches are taken; its
   * owners are the throwaway attribution's */
  engine?: Omit<ChurnEngineOptions, 'owners'>;
  /** UPDATE events are subscribed: the synthetic flows get one between NEW and DESTROY */
  updates?: boolean;
  /** the live pipeline's attribution mode: NEW records carry an owner, and a throwaway
   * attribution stage of that mode names the flows' process */
  attribution?: 'ebpf' | 'sockdiag';
  /** the rules the real run judges its snapshots with, judged here by a throwaway evaluator */
  rules?: RuleSet;
  /** synthetic flows of each generation, each on fresh instances; default 16 000 then 6 000 */
  generations?: readonly number[];
  /** benchmarks (bench/pipeline.mjs --ports): every TCP flow of the generations after the first
   * goes to one of this many ports (on 8 addresses: up to 8 × as many destination keys), as the
   * hot-path benchmark's rotating ports do; by default one in four goes to one of 1 024 */
  spreadPorts?: number;
  /** wall-time bound for all generations; default 800 ms */
  budgetMs?: number;
  /** the clock the budget is read on (tests) */
  now?: () => number;
  /** the live source has many events waiting (the load is already here): stop at once. Warming up
   * longer would only hold them, and past the reader's queue and the socket the kernel drops
   * them; the real events compile the code instead. */
  busy?: () => boolean;
}

export interface WarmUpResult {
  /** synthetic flows begun, over all generations run (a cut one's: those it reached) */
  flows: number;
  events: number;
  lines: number;
  snapshots: number;
  ms: number;
  /** the budget ran out, or events were waiting, before every flow was done */
  cut: boolean;
  /** it stopped because the live source had events waiting (`busy`) */
  busy: boolean;
  /** with attribution, the last generation's: what its throwaway stage read for the synthetic owner (executables read,
   * cgroups found from the owner's /proc entry) and the processes still pending at the end (0:
   * the shared, completed process was what the last flows went through, as under load) */
  attribution?: { exe: number; cgroups: number; pending: number };
}

const RECORDS_PER_BATCH = 1024;
/** synthetic event time between two records: 10 000 events/s, so 16 000 flows cross 3 ticks */
const STEP_US = 100;
/** a flow ends this many flows after it began (a few dozen live at once, as under real load) */
const LIFE = 48;
/** an UPDATE comes this many flows after its NEW */
const REPLY_AFTER = 8;

const AF_INET = 2;
const AF_INET6 = 10;
// the kernel's numbers, from the tables the decoder reads them back with (names.ts, decode.ts)
const TCP = protoNumber('tcp')!;
const UDP = protoNumber('udp')!;
const state = (name: (typeof TCP_STATES)[number]) => TCP_STATES.indexOf(name);
const SYN_SENT = state('SYN_SENT'), ESTABLISHED = state('ESTABLISHED'), TIME_WAIT = state('TIME_WAIT'), CLOSE = state('CLOSE');
const bit = (name: (typeof STATUS_FLAGS)[number]) => 1 << STATUS_FLAGS.indexOf(name);
const SEEN_REPLY = bit('SEEN_REPLY'), ASSURED = bit('ASSURED'), CONFIRMED = bit('CONFIRMED'), DYING = bit('DYING');
const NO_STAMP = UNATTRIBUTED.indexOf('no-stamp');
/**
 * Flow n's conntrack id: distinct for every n, and spread over 32 bits as the kernel's are (half
 * of them past 2^31, which V8 holds as heap numbers, not small integers): code compiled for small
 * ids alone is thrown away at the first real one ("not a Smi"), and compiled again under load.
 */
const idOf = (n: number) => Math.imul(n + 1, 0x9e3779b1) >>> 0;
/**
 * After the first generation, one TCP flow in four goes to one of 1 024 destination ports (a
 * client of many services, a port scan): 4 × the heavy hitters' 256 slots, so they evict, as
 * they do under such load, and that branch is compiled before the live pipeline needs it.
 */
const SPREAD_PORT = 10_000;
const SPREAD_PORTS = 1024;
/** every tenth synthetic NEW has no owner (as a flow from before attribution would) */
const unowned = (id: number) => id % 10 === 9;
const SIDE_ORIGIN = 1;

/** The owner a synthetic NEW names: ctwatch itself, with its own start time and cgroup (see
 * liveLikeAttribution), so its user, executable and cgroup are found as a live owner's are. */
const WARM_COMM = 'ctwatch-warmup';
const WARM_UID = process.getuid?.() ?? 0;
/** flows found by the table dump a live engine source starts with */
const DUMPED = 64;

/** The identity a synthetic owner carries: ctwatch's own process start (ns since boot, past 2^32
 * as every real one is: a heap number, not a small integer) and cgroup id; 0 where not found. */
export interface WarmOwner {
  startNs: number;
  cgroupId: number;
}

function setU64(view: DataView, at: number, v: number): void {
  view.setUint32(at, v % 4294967296, true);
  view.setUint32(at + 4, Math.floor(v / 4294967296), true);
}

/** 198.18+net.0.host+1, or 2001:2::net:host (the record is zero) */
function addressBytes(bytes: Uint8Array, at: number, v6: boolean, host: number, net: number): void {
  if (v6) {
    bytes[at] = 0x20;
    bytes[at + 1] = 0x01;
    bytes[at + 3] = 0x02;
    bytes[at + 13] = net;
    bytes[at + 15] = host + 1;
  } else {
    bytes[at] = 198;
    bytes[at + 1] = 18 + net;
    bytes[at + 3] = host + 1;
  }
}

/** The record that ends a table dump: `id` holds the entries dumped, `status` 0 (complete). */
function writeDumpEnd(L: RecordLayout, view: DataView, bytes: Uint8Array, base: number, timeUs: number): void {
  bytes[base + L.kind] = KIND.snapshotDone;
  view.setUint32(base + L.id, DUMPED, true);
  setU64(view, base + L.time_us, timeUs);
}

/** Writes one synthetic record at `base` of `view`; flow `n`'s tuple is a function of n alone. */
function writeRecordBytes(L: RecordLayout, bytes: Uint8Array, view: DataView, base: number, kind: number, n: number, timeUs: number, o: WarmUpOptions, owner: WarmOwner, spread: boolean): void {
  const v6 = n % 13 === 12;
  const udp = n % 7 === 6;
  bytes[base + L.kind] = kind;
  bytes[base + L.family] = v6 ? AF_INET6 : AF_INET;
  bytes[base + L.proto] = udp ? UDP : TCP;
  // the kernel sends the timeout with a DESTROY too (the one it had)
  let present = HAS.ports | HAS.status | HAS.reply | HAS.timeout;
  if (!udp) {
    present |= HAS.tcpState;
    bytes[base + L.tcp_state] = kind === KIND.new ? SYN_SENT : kind === KIND.destroy ? (n % 2 ? TIME_WAIT : CLOSE) : ESTABLISHED;
  }
  const id = idOf(n);
  view.setUint32(base + L.id, id, true);
  const replied = kind === KIND.snapshot || (kind !== KIND.new && (o.updates ?? false));
  view.setUint32(base + L.status, CONFIRMED | (replied ? SEEN_REPLY | ASSURED : 0) | (kind === KIND.destroy ? DYING : 0), true);
  view.setUint32(base + L.timeout, kind === KIND.update || kind === KIND.snapshot ? 432000 : 120, true);
  const sport = 32768 + (n % 20000);
  const dport = udp ? 53
    : !spread ? [443, 80, 5432, 6379][n % 4]
    : o.spreadPorts !== undefined ? SPREAD_PORT + (n % o.spreadPorts)
    : n % 4 === 3 ? SPREAD_PORT + ((n >> 2) % SPREAD_PORTS) : [443, 80, 5432, 6379][n % 4];
  view.setUint16(base + L.sport, sport, true);
  view.setUint16(base + L.dport, dport, true);
  view.setUint16(base + L.reply_sport, dport, true);
  view.setUint16(base + L.reply_dport, sport, true);
  // 64 sources towards 8 destinations, from the benchmarking ranges
  const src = n % 64, dst = (n >> 6) % 8;
  addressBytes(bytes, base + L.src, v6, src, 0);
  addressBytes(bytes, base + L.dst, v6, dst, 1);
  addressBytes(bytes, base + L.reply_src, v6, dst, 1);
  addressBytes(bytes, base + L.reply_dst, v6, src, 0);
  setU64(view, base + L.time_us, timeUs);
  if ((kind === KIND.new || kind === KIND.snapshot) && o.attribution) {
    present |= HAS.attribution;
    if (unowned(id)) {
      bytes[base + L.unattributed] = NO_STAMP;
    } else {
      present |= HAS.owner;
      view.setUint32(base + L.owner_pid, process.pid, true);
      view.setUint32(base + L.owner_tid, process.pid, true);
      view.setUint32(base + L.owner_uid, WARM_UID, true);
      setU64(view, base + L.owner_cgroup, owner.cgroupId);
      setU64(view, base + L.owner_start_ns, owner.startNs);
      view.setUint32(base + L.owner_age_us, 20, true);
      for (let k = 0; k < WARM_COMM.length; k++) bytes[base + L.owner_comm + k] = WARM_COMM.charCodeAt(k);
      bytes[base + L.owner_side] = SIDE_ORIGIN;
    }
  }
  view.setUint32(base + L.present, present, true);
}

/**
 * The synthetic batches, made one at a time as the pipeline asks: flow n opens at step n, gets
 * its UPDATE REPLY_AFTER steps later, ends LIFE steps later; then the last ones end. It answers
 * what a live source is asked besides its batches (table statistics, a dump, a buffer size) with
 * nothing real.
 */
export class SyntheticSource implements EventSource, Resyncable {
  readonly counters: SourceCounters = { events: 0, batches: 0, overflows: 0, decodeErrors: 0, queueHighWater: 0, rcvbuf: 0 };
  events = 0;
  /** flows whose NEW was made (the dumped ones not counted) */
  flowsStarted = 0;
  cut = false;
  /** cut because the live source had events waiting */
  busy = false;
  /** live synthetic flows, for the table statistics */
  private live = 0;

  constructor(
    private readonly o: WarmUpOptions,
    private readonly owner: WarmOwner,
    private readonly flows: number,
    /** one TCP flow in four to one of SPREAD_PORTS destination ports */
    private readonly spread: boolean,
    private readonly startUs: number,
    private readonly deadline: number,
    private readonly now: () => number,
  ) {}

  async close(): Promise<void> {}
  // never asked: the synthetic stream has no overflow
  dump(): void {}
  setReceiveBuffer(): void {}
  statsEvery(): void {}
  stats(): KernelStats {
    return { entries: this.live, max: 262_144, cpus: [{ found: 0, invalid: 0, insert: 0, insert_failed: 0, drop: 0, early_drop: 0, error: 0, search_restart: 0 }] };
  }
  latestStats(): KernelStats & { ageMs: number } {
    return { ...this.stats(), ageMs: 0 };
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceEvent[]> {
    const L = this.o.layout;
    const decode = makeDecoder(L, this.o.netns);
    // one buffer, zeroed after each batch (the decoder is done with it by then: events hold no
    // view of it): a fresh 224 KiB one per batch would stay in memory until a GC, ~10 MiB of
    // the peak. Records past `at` stay zero (kind 0), which the decoder skips.
    const buffer = new ArrayBuffer(RECORDS_PER_BATCH * L.size);
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    let at = 0;
    let t = this.startUs;
    const flush = (): SourceEvent[] => {
      const events = decode(buffer).events;
      bytes.fill(0);
      at = 0;
      this.events += events.length;
      return events;
    };
    const put = (kind: number, n: number) => {
      writeRecordBytes(L, bytes, view, at * L.size, kind, n, t, this.o, this.owner, this.spread);
      t += STEP_US;
      at++;
    };
    // the table dump first (flows numbered past the others), its end, then the flows
    for (let k = 0; k < DUMPED; k++) put(KIND.snapshot, this.flows + k);
    writeDumpEnd(L, view, bytes, at * L.size, t);
    at++;
    for (let step = 0; step < this.flows + LIFE; step++) {
      if (step < this.flows) {
        put(KIND.new, step);
        this.flowsStarted++;
      }
      if (this.o.updates && step >= REPLY_AFTER && step - REPLY_AFTER < this.flows) put(KIND.update, step - REPLY_AFTER);
      if (step >= LIFE) put(KIND.destroy, step - LIFE);
      this.live = Math.min(step + 1, this.flows) - Math.max(0, step + 1 - LIFE);
      if (at + 3 > RECORDS_PER_BATCH) {
        yield flush();
        // a turn of the event loop between batches, as a live source's are: the attribution's
        // reads (passwd, /proc/self/exe and stat, cgroupfs) answer within the first batches, so
        // its first processes are pending ones, completed and then shared, as under load
        await new Promise(setImmediate);
        const busy = this.o.busy?.() ?? false;
        if (this.now() >= this.deadline || busy) {
          this.cut = true;
          this.busy = busy;
          return;
        }
      }
    }
    for (let k = 0; k < DUMPED; k++) {
      if (at === RECORDS_PER_BATCH) yield flush();
      put(KIND.destroy, this.flows + k);
    }
    if (at > 0) yield flush();
  }
}

/**
 * A throwaway attribution stage with caches of its own, and the synthetic owner's identity:
 * ctwatch's own start time and cgroup, so what a live owner's NEWs go through is gone through
 * here — processes pending while the user name, /proc/PID/exe and the cgroup path are read, then
 * one shared process with all three (the same fields in the same order as a live one's: code
 * compiled for a process without an exe or cgroup is thrown away at the first live one).
 */
async function liveLikeAttribution(mode: 'ebpf' | 'sockdiag'): Promise<{ attribution: OwnerAttribution; owner: WarmOwner }> {
  // no walk: an own cgroup its /proc entry does not lead to is left unresolved, rather than walk
  // the whole tree (up to 65 536 directories: seconds on a large node) before the first batch
  const cgroups = new Cgroupfs({ maxWalk: 0 });
  const [startNs, cgroupId] = await Promise.all([processStartNs(process.pid), cgroups.idOf(process.pid)]);
  return { attribution: new OwnerAttribution({ mode, users: new Users(), cgroups, executables: new Executables() }), owner: { startNs: startNs ?? 0, cgroupId: cgroupId ?? 0 } };
}

/** What a warm-up runs: the source and attribution stage, and the hooks that write (given the
 * engine the runner assembled, as the live one is, around that attribution). */
export interface WarmUpParts {
  source: SyntheticSource;
  attribution?: OwnerAttribution;
  hooks: (engine: ChurnEngine) => PipelineHooks;
}

/** Synthetic flows per generation: the first crosses 3 ticks (≈ 32 000–48 000 events); the
 * second is long enough for code thrown away at its first events to be compiled again. */
const GENERATIONS = [16_000, 6_000];
/** of the budget, what the generations before the last may use */
const EARLIER_SHARE = 0.6;

/**
 * Runs the per-event path over synthetic flows through throwaway instances of the same code, one
 * set per generation, and says what it did. `run` drives the parts through a pipeline assembled
 * as the live one is (assemble.ts warmUpLive): the same stages in the same order, so V8 compiles
 * them for the same shapes. Nothing it makes outlives it.
 */
export async function warmUp(o: WarmUpOptions, run: (parts: WarmUpParts) => Promise<{ snapshots: number }>): Promise<WarmUpResult> {
  const now = o.now ?? (() => performance.now());
  const t0 = now();
  const budget = o.budgetMs ?? 800;
  const generations = o.generations ?? GENERATIONS;
  const total: WarmUpResult = { flows: 0, events: 0, lines: 0, snapshots: 0, ms: 0, cut: false, busy: false };
  for (const [i, flows] of generations.entries()) {
    // the last generation is what the change is for: on a slow or busy host the ones before it
    // are cut to leave it time, rather than take the whole budget and leave it none
    const last = i === generations.length - 1;
    const deadline = t0 + (last ? budget : budget * EARLIER_SHARE);
    const busy = o.busy?.() ?? false;
    if (now() >= deadline || busy) {
      total.cut = true;
      total.busy ||= busy;
      break;
    }
    const g = await generation(o, flows, i > 0, deadline, now, run);
    total.flows += g.flows;
    total.events += g.events;
    total.lines += g.lines;
    total.snapshots += g.snapshots;
    total.cut ||= g.cut;
    total.busy ||= g.busy;
    // the last generation's: what the live pipeline's own first processes will go through
    if (g.attribution) total.attribution = g.attribution;
  }
  total.ms = Math.round((now() - t0) * 10) / 10;
  return total;
}

/** One generation: fresh throwaway instances over `flows` synthetic flows. */
async function generation(
  o: WarmUpOptions,
  flows: number,
  spread: boolean,
  deadline: number,
  now: () => number,
  run: (parts: WarmUpParts) => Promise<{ snapshots: number }>,
): Promise<Omit<WarmUpResult, 'ms'>> {
  // Event time from the wall clock on, as a live pipeline's first ticks are
  const live = o.attribution ? await liveLikeAttribution(o.attribution) : undefined;
  const source = new SyntheticSource(o, live?.owner ?? { startNs: 0, cgroupId: 0 }, flows, spread, Date.now() * 1000, deadline, now);
  const evaluator = o.rules ? new AlertEvaluator(o.rules) : undefined;
  // arenas of 128 KiB, not 1 MiB: the warm-up's are garbage as soon as written
  const lines = new LineBuffer(128 * 1024);
  let written = 0;
  // read after each batch of flow ends: the throwaway run closes the attribution stage on its
  // way out, which empties its pending set, so a count read after run() would always be 0
  let pendingAtLastFlows = 0;
  const write = (records: readonly { event: string; time: number }[]) => {
    for (const r of records) writeRecord(lines, r as AnyRecord);
    written += records.length;
    // the bytes go nowhere: taken, so the arena is reused as a real writer's would be
    lines.take();
  };
  // the keys of Watcher's hooks, in its order (one shape for the pipeline's reads of them)
  const hooks = (engine: ChurnEngine): PipelineHooks => ({
    events: undefined,
    flows: (ends: FlowEnd[]) => {
      write(ends);
      if (live) pendingAtLastFlows = live.attribution.stats.pending;
    },
    snapshot: (snap: ChurnSnapshot) => {
      if (evaluator) {
        evaluator.evaluate(snap, engine.figures(snap.time));
        engine.watch(evaluator.watching(snap.netns), snap.time);
      }
      write([snap]);
    },
    resync: undefined,
  });
  const { snapshots } = await run({ source, attribution: live?.attribution, hooks });
  const read = live?.attribution.stats;
  return {
    flows: source.flowsStarted, events: source.events, lines: written, snapshots, cut: source.cut, busy: source.busy,
    ...(read && { attribution: { exe: read.exe.read, cgroups: read.cgroups.byPid, pending: pendingAtLastFlows } }),
  };
}
