/**
 * The inode -> process index, from /proc/PID/fd ("socket:[INODE]"). Built lazily and refreshed
 * only when a looked-up socket inode is not in it (a miss), in three steps of rising cost:
 *
 *   1. hot:  re-read the descriptors of the few processes that owned sockets most recently
 *            (a leaky client opens its next connection from the same process);
 *   2. new:  list /proc and read the descriptors of processes not seen before, and only their
 *            identity (start time, namespace) for the rest: new processes are found and dead ones
 *            forgotten; at most every `newScanMinMs`;
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
}

export interface ProcIndexStats {
  processes: number;
  inodes: number;
  scans: { hot: number; new: number; full: number };
  /** µs the addon spent reading /proc */
  scanUs: number;
  /** processes whose descriptors were read */
  fdScans: number;
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
  stage: 0 | 1 | 2 | 3;
  done: (o: Owner) => void;
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
  private waiting: Waiter[] = [];
  private running = false;
  private wake: (() => void) | null = null;
  private nextNewScan = 0;
  private nextFullScan = 0;
  private closed = false;
  /** the last failure to read /proc */
  lastError: unknown = null;
  readonly stats: ProcIndexStats = {
    processes: 0,
    inodes: 0,
    scans: { hot: 0, new: 0, full: 0 },
    scanUs: 0,
    fdScans: 0,
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
      this.waiting.push({ inode, netns, stage: 0, done });
      this.kick();
    });
  }

  /** Pending resolutions (for settled() and the stats). */
  get pending(): number {
    return this.waiting.length;
  }

  close(): void {
    this.closed = true;
    const w = this.waiting;
    this.waiting = [];
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
      if (this.waiting.length === 0 || this.closed) {
        this.running = false;
        return;
      }
      try {
        await this.step();
      } catch (err) {
        // /proc unreadable (hidepid, a seccomp filter...): say so, answer what waits, go on.
        this.lastError = err;
        const w = this.waiting;
        this.waiting = [];
        for (const x of w) x.done({ process: null, reason: 'no-pid' });
      }
    }
  }

  /** One round: settle from the index, or run the next scan that is allowed, or wait for one. */
  private async step(): Promise<void> {
    // Whatever the index already knows needs no scan.
    await this.settle();
    if (this.waiting.length === 0) return;
    const now = this.now();
    const fresh = this.waiting.filter((w) => w.stage === 0);
    if (fresh.length > 0) {
      for (const w of fresh) w.stage = 1;
      const ns = new Set(fresh.map((w) => w.netns));
      const hot = this.hot.filter((pid) => ns.has(this.procs.get(pid)?.netns ?? -1));
      if (hot.length > 0) {
        this.stats.scans.hot++;
        await this.scan({ pids: Int32Array.from(hot) }, 'pids', hot);
        return;
      }
    }
    const stage1 = this.waiting.filter((w) => w.stage === 1);
    if (stage1.length > 0 && now >= this.nextNewScan) {
      for (const w of stage1) w.stage = 2;
      this.stats.scans.new++;
      this.nextNewScan = now + this.newScanMinMs;
      await this.scan({ skipFds: Int32Array.from(this.procs.keys()), netns: this.filter() }, 'list');
      return;
    }
    const stage2 = this.waiting.filter((w) => w.stage === 2);
    if (stage2.length > 0 && now >= this.nextFullScan) {
      for (const w of stage2) w.stage = 3;
      this.stats.scans.full++;
      const started = this.now();
      await this.scan({ netns: this.filter() }, 'list');
      const took = this.now() - started;
      this.nextFullScan = this.now() + Math.max(this.fullScanMinMs, took * this.costFactor);
      await this.settle();
      // A full scan that began after these misses did not find them: nobody we can see holds
      // the socket (the process exited or closed it, or lives in a namespace we do not watch).
      const left: Waiter[] = [];
      for (const w of this.waiting) {
        if (w.stage === 3) w.done({ process: null, reason: 'no-pid' });
        else left.push(w);
      }
      this.waiting = left;
      return;
    }
    // Nothing may run yet: sleep until the next scan is allowed or a new miss arrives.
    const until = stage1.length > 0 ? this.nextNewScan : this.nextFullScan;
    await new Promise<void>((resolve) => {
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

  /** Answers every waiter whose inode the index holds, reading process details first if needed. */
  private async settle(): Promise<void> {
    const needInfo = new Set<number>();
    for (const w of this.waiting) {
      const o = this.owners.get(w.inode);
      if (typeof o === 'number') {
        const p = this.procs.get(o);
        if (p && !p.info && !p.vanished) needInfo.add(o);
      }
    }
    if (needInfo.size > 0) await this.readInfo([...needInfo]);
    const left: Waiter[] = [];
    for (const w of this.waiting) {
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
    this.waiting = left;
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

  private async scan(options: NativeScanOptions, mode: 'pids' | 'list', asked: number[] = []): Promise<void> {
    const r = await this.source.scan(options);
    this.stats.scanUs += r.us;
    this.stats.fdScans += r.fdScans;
    const seen = new Set<number>();
    const reused: number[] = [];
    const rec = r.records;
    for (let i = 0; i + 3 < rec.length; ) {
      const pid = rec[i];
      const start = rec[i + 1];
      const netns = rec[i + 2];
      const n = rec[i + 3];
      const inodes = n > 0 ? Array.from(rec.subarray(i + 4, i + 4 + n)) : [];
      i += 4 + Math.max(0, n);
      seen.add(pid);
      let p = this.procs.get(pid);
      if (p && p.start !== start) {
        this.stats.pidReuse++;
        this.forget(p);
        p = undefined;
        if (n < 0 && this.watched.has(netns)) reused.push(pid);
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
    // A reused pid was listed as known, so its descriptors were skipped: read them now.
    if (reused.length > 0) await this.scan({ pids: Int32Array.from(reused) }, 'pids', reused);
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
