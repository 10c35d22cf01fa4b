/**
 * The inode -> process index, from /proc/PID/fd ("socket:[INODE]"). Built lazily and refreshed
 * only when a looked-up socket inode is not in it (a miss), in three steps of rising cost:
 *
 *   1. hot:  re-read the descriptors of the few processes that owned sockets most recently
 *            (a leaky client opens its next connection from the same process);
 *   2. new:  list /proc and read the processes not seen before (the others are only checked to
 *            be alive): new processes are found and dead ones forgotten; at most every
 *            `newScanMinMs`. A pid reused by a new process is found by a hot or a full scan, which
 *            read every start time;
 *   3. full: re-read every process in the watched namespaces; at most every `fullScanMinMs`, and
 *            never more than 1/`fullScanCostFactor` of a core (the interval stretches with the
 *            last full scan's duration).
 *
 * A miss still unresolved after a full scan that began after it arrived is answered `no-pid`.
 * Processes are identified by (pid, start time): a pid that comes back with another start time is
 * a new process, and the old one's entry and sockets are dropped. ProcessInfo objects are made
 * once per process and never changed, so a flow attributed while its process lived keeps it after
 * the pid is reused.
 */
import type { ProcessInfo } from '../flow/types.js';
import { cgroupFacts, cgroupPath, Users } from './enrich.js';
import { loadProcessAddon, type NativeProcInfo, type NativeScanOptions, type NativeScanResult } from './native.js';

/** The I/O the index needs (the addon; a stand-in in unit tests). */
export interface ProcSource {
  scan(options: NativeScanOptions): Promise<NativeScanResult>;
  info(pids: Int32Array): Promise<(NativeProcInfo | null)[]>;
}

export function nativeProcSource(): ProcSource {
  const addon = loadProcessAddon();
  return { scan: (o) => addon.scanProcesses(o), info: (p) => addon.procInfo(p) };
}

export type OwnerMiss = 'no-pid' | 'shared' | 'gone';

export type Owner = { process: ProcessInfo; pid: number } | { process: null; reason: OwnerMiss };

export interface ProcIndexOptions {
  source?: ProcSource;
  users?: Pick<Users, 'name'>;
  /** monotonic milliseconds */
  now?: () => number;
  /** processes re-read first on a miss; default 16 */
  hotPids?: number;
  /** default 10 ms */
  newScanMinMs?: number;
  /** default 200 ms */
  fullScanMinMs?: number;
  /** a full scan taking T ms is followed by at least T × this of rest; default 20 (≤ 5 % of a core) */
  fullScanCostFactor?: number;
  /** a miss not resolved after this long is answered no-pid; default 2000 ms */
  maxWaitMs?: number;
  /** a hot re-read taking T ms is followed by at least T × this of rest; default 4 (≤ 20 %) */
  hotScanCostFactor?: number;
}

export interface ProcIndexStats {
  processes: number;
  inodes: number;
  /** hot: on a miss; prefetch: beside a lookup (see prefetch); new; full */
  scans: { hot: number; prefetch: number; new: number; full: number };
  /** µs the addon spent reading /proc */
  scanUs: number;
  /** processes whose descriptors were read */
  fdScans: number;
  /** processes the last full listing could not read (another user's, without CAP_SYS_PTRACE and
   * CAP_DAC_READ_SEARCH): their sockets cannot be matched */
  denied: number;
  infoReads: number;
  /** pids seen again with another start time */
  pidReuse: number;
  forgotten: number;
}

interface Proc {
  pid: number;
  start: number;
  netns: number;
  inodes: number[];
  info: ProcessInfo | null;
  /** the process was gone when its details were read */
  vanished: boolean;
}

interface Waiter {
  inode: number;
  netns: number;
  /** monotonic ms when it arrived */
  at: number;
  done: (o: Owner) => void;
}

function low32(v: number): number {
  return v % 4294967296;
}

export function toProcessInfo(raw: NativeProcInfo, user: string | undefined): ProcessInfo {
  const facts = cgroupFacts(cgroupPath(raw.cgroup));
  const p: ProcessInfo = { pid: raw.pid, comm: raw.comm };
  if (raw.exe !== undefined) p.exe = raw.exe;
  if (raw.uid !== undefined) p.uid = raw.uid;
  if (user !== undefined) p.user = user;
  if (facts.cgroup !== undefined) p.cgroup = facts.cgroup;
  if (facts.unit !== undefined) p.unit = facts.unit;
  if (facts.container !== undefined) p.container = facts.container;
  if (facts.pod !== undefined) {
    p.pod = facts.pod;
    p.qos = facts.qos;
  }
  return Object.freeze(p);
}

export class ProcIndex {
  private readonly source: ProcSource;
  private readonly users: Pick<Users, 'name'>;
  private readonly now: () => number;
  private readonly hotMax: number;
  private readonly newScanMinMs: number;
  private readonly fullScanMinMs: number;
  private readonly costFactor: number;

  private readonly procs = new Map<number, Proc>();
  /** inode -> pid, or the pids when several processes hold it */
  private readonly owners = new Map<number, number | number[]>();
  private readonly watched = new Set<number>();
  private hot: number[] = [];
  // Misses by how far they got: just arrived, after a hot read, after a listing. Each step works on
  // one list, so a flood of misses costs in proportion to what is new, not to all that waits.
  private fresh: Waiter[] = [];
  private listed: Waiter[] = [];
  private unlisted: Waiter[] = [];
  private readonly maxWaitMs: number;
  private running = false;
  private wake: (() => void) | null = null;
  private nextNewScan = 0;
  private nextFullScan = 0;
  private nextHotScan = 0;
  private readonly hotCostFactor: number;
  private scanning: Promise<void> = Promise.resolve();
  private readonly pidReads = new Map<string, Promise<Owner>>();
  private closed = false;
  /** the last failure to read /proc */
  lastError: unknown = null;
  readonly stats: ProcIndexStats = {
    processes: 0,
    inodes: 0,
    scans: { hot: 0, prefetch: 0, new: 0, full: 0 },
    scanUs: 0,
    fdScans: 0,
    denied: 0,
    infoReads: 0,
    pidReuse: 0,
    forgotten: 0,
  };

  constructor(options: ProcIndexOptions = {}) {
    this.source = options.source ?? nativeProcSource();
    this.users = options.users ?? new Users();
    this.now = options.now ?? (() => performance.now());
    this.hotMax = options.hotPids ?? 16;
    this.newScanMinMs = options.newScanMinMs ?? 10;
    this.fullScanMinMs = options.fullScanMinMs ?? 200;
    this.costFactor = options.fullScanCostFactor ?? 20;
    this.maxWaitMs = options.maxWaitMs ?? 2000;
    this.hotCostFactor = options.hotScanCostFactor ?? 4;
  }

  /** Processes in this network namespace (by inode) are indexed; others are not read. */
  watch(netnsInode: number): void {
    this.watched.add(netnsInode);
  }

  /** Who holds `inode`, a socket of namespace `netns`. Resolves once the index can tell. */
  resolve(inode: number, netns: number): Promise<Owner> {
    // A hit needs no trip through the scan loop.
    const o = this.owners.get(inode);
    if (typeof o === 'number') {
      const p = this.procs.get(o);
      if (p?.info && !p.vanished) {
        this.touch(p.pid);
        return Promise.resolve({ process: p.info, pid: p.pid });
      }
    }
    return new Promise((done) => {
      this.fresh.push({ inode, netns, at: this.now(), done });
      this.kick();
    });
  }

  /**
   * Re-reads the hot processes of a namespace now, in the background of a lookup: when the
   * lookup's answers come back, the sockets a busy process opened since the last scan are already
   * indexed, and resolve() finds them without a scan of its own. Returns false (and does nothing)
   * when no hot process lives in that namespace.
   */
  prefetch(netns: number): Promise<boolean> {
    const hot = this.hot.filter((pid) => this.procs.get(pid)?.netns === netns);
    if (hot.length === 0 || this.closed) return Promise.resolve(false);
    this.stats.scans.prefetch++;
    return this.scan({ pids: Int32Array.from(hot) }, 'pids', hot).then(
      () => true,
      () => false,
    );
  }

  /**
   * The process a namespace thread saw holding a socket: `pid` whose start time has these low 32
   * bits. Read from /proc if not known yet; `gone` if that process no longer runs (the pid may
   * belong to another process by now: the start time tells).
   */
  resolvePid(pid: number, start32: number, netns: number): Promise<Owner> {
    const p = this.procs.get(pid);
    if (p && low32(p.start) === start32) {
      if (p.info) {
        this.touch(pid);
        return Promise.resolve({ process: p.info, pid });
      }
      if (p.vanished) return Promise.resolve({ process: null, reason: 'gone' });
    }
    const key = `${pid}:${start32}`;
    let pending = this.pidReads.get(key);
    if (!pending) {
      pending = this.readPid(pid, start32, netns).finally(() => this.pidReads.delete(key));
      this.pidReads.set(key, pending);
    }
    return pending;
  }

  private async readPid(pid: number, start32: number, netns: number): Promise<Owner> {
    this.stats.infoReads++;
    const [raw] = await this.source.info(Int32Array.of(pid));
    if (!raw || low32(raw.starttime) !== start32) return { process: null, reason: 'gone' };
    let p = this.procs.get(pid);
    if (p && p.start !== raw.starttime) {
      this.stats.pidReuse++;
      this.forget(p);
      p = undefined;
    }
    if (!p) {
      p = { pid, start: raw.starttime, netns, inodes: [], info: null, vanished: false };
      this.procs.set(pid, p);
      this.stats.processes = this.procs.size;
    }
    if (!p.info) {
      const user = raw.uid === undefined ? undefined : await this.users.name(raw.uid);
      p.info = toProcessInfo(raw, user);
    }
    this.touch(pid);
    return { process: p.info, pid };
  }

  /** Whether the index already knows who holds `inode` (a resolve() without a scan). */
  known(inode: number): boolean {
    return this.owners.has(inode);
  }

  /** Pending resolutions (for settled() and the stats). */
  get pending(): number {
    return this.fresh.length + this.unlisted.length + this.listed.length;
  }

  close(): void {
    this.closed = true;
    const w = [...this.fresh, ...this.unlisted, ...this.listed];
    this.fresh = [];
    this.unlisted = [];
    this.listed = [];
    for (const x of w) x.done({ process: null, reason: 'no-pid' });
    this.wake?.();
  }

  private kick(): void {
    if (this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    for (;;) {
      // Checked and cleared in one synchronous step: a miss queued after it starts a new loop.
      if (this.pending === 0 || this.closed) {
        this.running = false;
        return;
      }
      try {
        await this.step();
      } catch (err) {
        // /proc unreadable (hidepid, a seccomp filter...): say so, answer what waits, go on.
        this.lastError = err;
        const w = [...this.fresh, ...this.unlisted, ...this.listed];
        this.fresh = [];
        this.unlisted = [];
        this.listed = [];
        for (const x of w) x.done({ process: null, reason: 'no-pid' });
      }
    }
  }

  /** One round: the next scan that is allowed, or a wait for one. */
  private async step(): Promise<void> {
    const now = this.now();
    if (this.fresh.length > 0) {
      // New misses: what the index knows now, then the hot processes re-read.
      let batch = this.fresh;
      this.fresh = [];
      batch = await this.settle(batch);
      const ns = new Set(batch.map((w) => w.netns));
      const hot = this.hot.filter((pid) => ns.has(this.procs.get(pid)?.netns ?? -1));
      if (batch.length > 0 && hot.length > 0) {
        if (now < this.nextHotScan) {
          // Within the budget only: wait (the misses stay fresh) rather than read /proc nonstop.
          this.fresh = batch.concat(this.fresh);
          await this.sleepUntil(this.nextHotScan, now);
          return;
        }
        this.stats.scans.hot++;
        const started = this.now();
        await this.scan({ pids: Int32Array.from(hot) }, 'pids', hot);
        this.nextHotScan = this.now() + (this.now() - started) * this.hotCostFactor;
        batch = await this.settle(batch);
      }
      for (const w of batch) this.unlisted.push(w);
      return;
    }
    if (this.unlisted.length > 0 && now >= this.nextNewScan) {
      const batch = this.unlisted;
      this.unlisted = [];
      this.stats.scans.new++;
      this.nextNewScan = now + this.newScanMinMs;
      await this.scan({ skipFds: Int32Array.from(this.procs.keys()), netns: this.filter() }, 'list');
      for (const w of await this.settle(batch)) this.listed.push(w);
      return;
    }
    if (this.listed.length > 0 && now >= this.nextFullScan) {
      const batch = this.listed;
      this.listed = [];
      this.stats.scans.full++;
      const started = this.now();
      await this.scan({ netns: this.filter() }, 'list');
      const took = this.now() - started;
      this.nextFullScan = this.now() + Math.max(this.fullScanMinMs, took * this.costFactor);
      // A full scan that began after these misses did not find them: nobody we can see holds
      // the socket (the process exited or closed it, or lives in a namespace we do not watch).
      for (const w of await this.settle(batch)) w.done({ process: null, reason: 'no-pid' });
      this.unlisted = await this.settle(this.unlisted);
      return;
    }
    // Misses that waited too long (scans held back by their rate limits under a flood).
    const old = now - this.maxWaitMs;
    for (const list of [this.unlisted, this.listed]) {
      if (list.length > 0 && list[0].at < old) {
        const keep = list.filter((w) => w.at >= old);
        for (const w of list) if (w.at < old) w.done({ process: null, reason: 'no-pid' });
        list.length = 0;
        list.push(...keep);
      }
    }
    if (this.pending === 0) return;
    // Nothing may run yet: sleep until the next scan is allowed or a new miss arrives.
    await this.sleepUntil(this.unlisted.length > 0 ? this.nextNewScan : this.nextFullScan, now);
  }

  private sleepUntil(until: number, now: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, Math.max(1, until - now));
      t.unref();
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private filter(): Float64Array | undefined {
    return this.watched.size > 0 ? Float64Array.from(this.watched) : undefined;
  }

  /** Answers the waiters whose inode the index holds (reading process details first if needed);
   * returns the others. */
  private async settle(list: Waiter[]): Promise<Waiter[]> {
    if (list.length === 0) return list;
    const needInfo = new Set<number>();
    for (const w of list) {
      const o = this.owners.get(w.inode);
      if (typeof o === 'number') {
        const p = this.procs.get(o);
        if (p && !p.info && !p.vanished) needInfo.add(o);
      }
    }
    if (needInfo.size > 0) await this.readInfo([...needInfo]);
    const left: Waiter[] = [];
    for (const w of list) {
      const o = this.owners.get(w.inode);
      if (o === undefined) {
        left.push(w);
        continue;
      }
      if (typeof o !== 'number') {
        w.done({ process: null, reason: 'shared' });
        continue;
      }
      const p = this.procs.get(o);
      if (!p || p.vanished || !p.info) {
        w.done({ process: null, reason: 'gone' });
        continue;
      }
      this.touch(p.pid);
      w.done({ process: p.info, pid: p.pid });
    }
    return left;
  }

  private async readInfo(pids: number[]): Promise<void> {
    this.stats.infoReads += pids.length;
    const infos = await this.source.info(Int32Array.from(pids));
    for (let i = 0; i < pids.length; i++) {
      const p = this.procs.get(pids[i]);
      if (!p) continue;
      const raw = infos[i];
      if (!raw || raw.starttime !== p.start) {
        // Exited (or exited and the pid was taken) between the scan and now: what it was is lost.
        p.vanished = true;
        continue;
      }
      const user = raw.uid === undefined ? undefined : await this.users.name(raw.uid);
      p.info = toProcessInfo(raw, user);
    }
  }

  private touch(pid: number): void {
    const i = this.hot.indexOf(pid);
    if (i === 0) return;
    if (i > 0) this.hot.splice(i, 1);
    this.hot.unshift(pid);
    if (this.hot.length > this.hotMax) this.hot.length = this.hotMax;
  }

  /** Scans run one at a time, in the order asked, so an older scan never overwrites a newer one. */
  private scan(options: NativeScanOptions, mode: 'pids' | 'list', asked: number[] = []): Promise<void> {
    const next = this.scanning.then(() => this.scanNow(options, mode, asked));
    this.scanning = next.catch(() => {});
    return next;
  }

  private async scanNow(options: NativeScanOptions, mode: 'pids' | 'list', asked: number[]): Promise<void> {
    const r = await this.source.scan(options);
    this.stats.scanUs += r.us;
    this.stats.fdScans += r.fdScans;
    if (mode === 'list') this.stats.denied = r.denied ?? 0;
    const seen = new Set<number>();
    const rec = r.records;
    for (let i = 0; i + 3 < rec.length; ) {
      const pid = rec[i];
      const start = rec[i + 1];
      const netns = rec[i + 2];
      const n = rec[i + 3];
      const inodes = n > 0 ? Array.from(rec.subarray(i + 4, i + 4 + n)) : [];
      i += 4 + Math.max(0, n);
      seen.add(pid);
      // Listed as alive only (skipFds): nothing read, nothing to change.
      if (start === -1) continue;
      let p = this.procs.get(pid);
      if (p && p.start !== start) {
        this.stats.pidReuse++;
        this.forget(p);
        p = undefined;
      }
      if (!p) {
        p = { pid, start, netns, inodes: [], info: null, vanished: false };
        this.procs.set(pid, p);
      }
      p.netns = netns;
      if (n >= 0) this.setInodes(p, inodes);
    }
    const dead = mode === 'list' ? [...this.procs.keys()].filter((pid) => !seen.has(pid)) : asked.filter((pid) => !seen.has(pid));
    for (const pid of dead) this.forget(this.procs.get(pid)!);
    this.stats.processes = this.procs.size;
    this.stats.inodes = this.owners.size;
  }

  private setInodes(p: Proc, inodes: number[]): void {
    for (const ino of p.inodes) this.removeOwner(ino, p.pid);
    p.inodes = inodes;
    for (const ino of inodes) this.addOwner(ino, p.pid);
  }

  private addOwner(ino: number, pid: number): void {
    const v = this.owners.get(ino);
    if (v === undefined) this.owners.set(ino, pid);
    else if (typeof v === 'number') {
      if (v !== pid) this.owners.set(ino, [v, pid]);
    } else if (!v.includes(pid)) v.push(pid);
  }

  private removeOwner(ino: number, pid: number): void {
    const v = this.owners.get(ino);
    if (v === pid) this.owners.delete(ino);
    else if (Array.isArray(v)) {
      const rest = v.filter((x) => x !== pid);
      if (rest.length === 0) this.owners.delete(ino);
      else this.owners.set(ino, rest.length === 1 ? rest[0] : rest);
    }
  }

  private forget(p: Proc): void {
    for (const ino of p.inodes) this.removeOwner(ino, p.pid);
    p.inodes = [];
    if (this.procs.get(p.pid) === p) this.procs.delete(p.pid);
    const h = this.hot.indexOf(p.pid);
    if (h >= 0) this.hot.splice(h, 1);
    this.stats.forgotten++;
  }
}
