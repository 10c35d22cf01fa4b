/**
 * A bounded on-disk FIFO of payloads for at-least-once delivery.
 *
 * The directory's layout and the record format: ./spool-format.ts; its lock: ./spool-lock.ts.
 *
 * A record is removed (its read position committed) only after the receiver accepted it, so after
 * a crash or restart everything uncommitted is sent again: at least once, in order. Segments are
 * written with plain write(2): a kill -9 loses nothing that append() resolved (it is in the page
 * cache); a power cut can, unless `fsync` is on.
 *
 * Root is dangerous here (SECURITY.md T2): the directory must be ctwatch's own and reached by a
 * way only root can change (src/util/safe-file.ts privateDirectory), every file in it is opened
 * with O_NOFOLLOW and checked on its descriptor (regular, one link, ours), and truncation and
 * locking act on descriptors, never on paths.
 *
 * A full disk (or any failed write) never leaves a torn record for later writes to pile up behind:
 * the segment is cut back to where the write began (ftruncate on the descriptor), or, when even
 * that fails, closed and a new segment begun. The records of the failed write are reported lost.
 * Whatever corruption a segment holds anyway (an older version, a crash mid-write, a disk error) is
 * skipped to the next whole record and counted (`corruptBytes`); a torn tail is cut at open, counted
 * and logged. A state.json that parses but points nowhere (an offset past the end, a segment past
 * the newest) is ignored with a log line: the spool is replayed, never deleted.
 */
import { close, closeSync, fdatasync, ftruncate, ftruncateSync, read, readSync, write } from 'node:fs';
import { readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openFile, privateDirectory, readWhole } from '../util/safe-file.js';
import type { OverflowPolicy, SinkLogger } from './types.js';
import { frame, headAt, parseFrames, parseState, segName, segmentSeqs, stateBytes, type Segment, type State } from './spool-format.js';
import { SpoolError, describeError, refused, takeLock } from './spool-lock.js';

export { SpoolError } from './spool-lock.js';
export { parseFrames } from './spool-format.js';

const writeAsync = (fd: number, buf: Buffer, off: number, len: number, pos: number | null): Promise<number> =>
  new Promise((resolve, reject) => write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
const readAsync = (fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
const ftruncateAsync = promisify(ftruncate);
const fdatasyncAsync = promisify(fdatasync);
const closeAsync = promisify(close);

export interface SpoolOptions {
  dir: string;
  /** undelivered bytes the spool may hold (records are framed: a few bytes more than payloads) */
  maxBytes: number;
  /** what goes when it is full: the oldest segment, or the records being appended */
  policy: OverflowPolicy;
  /** segment size; drop-oldest drops one segment at a time (default min(8 MiB, maxBytes/8)) */
  segmentBytes?: number;
  /** fsync after each append: survives power loss, costs a disk flush per batch */
  fsync?: boolean;
}

export interface SpoolBatch {
  readonly records: string[];
  readonly seq: number;
  readonly endOffset: number;
  readonly generation: number;
  /** corrupt bytes this batch steps over (counted when it is committed) */
  readonly skippedBytes: number;
}

export interface AppendResult {
  appended: number;
  /** records dropped by the policy: new ones (drop-newest) or older ones (drop-oldest) */
  dropped: number;
  /** records whose write failed (a full disk): lost, with `error` saying why */
  failed: number;
  error?: string;
}

const openInProcess = new Set<string>();

export class Spool {
  private segments: Segment[] = [];
  /** committed read position: always inside segments[0] when there is one */
  private head = { offset: 0, index: 0 };
  private nextSeq = 1;
  private active: { seg: Segment; fd: number } | null = null;
  private reader: { seq: number; fd: number } | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private generation_ = 0;
  private closed = false;
  private corrupt = 0;
  private stateError_: string | null = null;
  private readonly segmentBytes: number;

  private constructor(
    private readonly o: SpoolOptions,
    /** the real path of the directory */
    readonly dir: string,
    private readonly lockFd: number,
    private readonly stateFd: number,
    private readonly log: SinkLogger | undefined,
  ) {
    this.segmentBytes = Math.max(4096, o.segmentBytes ?? Math.min(8 << 20, Math.floor(o.maxBytes / 8)));
  }

  /** Bumped whenever drop-oldest removes undelivered records; a batch read before is void. */
  get generation(): number {
    return this.generation_;
  }

  /** corrupt bytes skipped by reads and cut at open (each a record, or part of one, lost) */
  get corruptBytes(): number {
    return this.corrupt;
  }

  /** the last failure to write state.json (delivery goes on; a restart replays a little more), or null */
  get stateError(): string | null {
    return this.stateError_;
  }

  /**
   * Opens (creating it private when missing) and locks the spool, and recovers what a previous run
   * left. Throws SpoolError, in one line, when the directory or a file in it is not safe to use or
   * another process holds the lock.
   */
  static async open(o: SpoolOptions, log?: SinkLogger): Promise<Spool> {
    if (!(o.maxBytes > 0)) throw new RangeError('spool maxBytes must be > 0');
    let dir: string;
    try {
      dir = privateDirectory(o.dir);
    } catch (err) {
      throw refused(o.dir, err);
    }
    if (openInProcess.has(dir)) throw new SpoolError(`spool ${dir} is already open in this process (give each sink its own spool dir)`, 'ERR_SPOOL_BUSY');
    const lock = takeLock(dir);
    let stateFd: number;
    try {
      stateFd = openFile(join(dir, 'state.json'), { access: 'read-write', create: true, mode: 0o600 }).fd;
    } catch (err) {
      closeSync(lock);
      throw refused(dir, err);
    }
    const s = new Spool(o, dir, lock, stateFd, log);
    openInProcess.add(dir);
    try {
      await s.recover();
    } catch (err) {
      s.release();
      throw refused(dir, err);
    }
    return s;
  }

  /** records not yet committed (delivered) */
  get pendingRecords(): number {
    let n = 0;
    for (const s of this.segments) n += s.records;
    return n - this.head.index;
  }

  get pendingBytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.bytes;
    return n - this.head.offset;
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  private release(): void {
    openInProcess.delete(this.dir);
    for (const fd of [this.stateFd, this.lockFd]) {
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
    }
  }

  private readState(): State | undefined {
    const buf = Buffer.alloc(4096);
    const n = readSync(this.stateFd, buf, 0, buf.length, 0);
    const text = buf.toString('utf8', 0, n).trim();
    if (text === '') return undefined;
    const state = parseState(text);
    if (state) return state;
    this.log?.warn({ spool: this.dir, state: text.slice(0, 80) }, 'spool state.json is not a read position: replaying the spool from its oldest record');
    return undefined;
  }

  private async recover(): Promise<void> {
    let state = this.readState();
    const seqs = segmentSeqs(await readdir(this.dir));
    const newest = seqs.length ? seqs[seqs.length - 1] : 0;
    this.nextSeq = newest + 1;
    if (state && seqs.length && state.seq > newest) {
      // garbage that parses: believing it would delete every segment as "already delivered"
      this.log?.warn({ spool: this.dir, stateSeq: state.seq, newestSegment: newest }, 'spool state.json points past the newest segment: replaying the spool from its oldest record');
      state = undefined;
    }
    let cut = 0;
    for (const seq of seqs) {
      const name = segName(seq);
      if (state && seq < state.seq) {
        await unlink(this.path(name)); // delivered and committed
        continue;
      }
      const f = openFile(this.path(name), { access: 'read-write', create: false });
      let seg: Segment;
      let ends: number[];
      try {
        const buf = readWhole(f.fd, f.size);
        const scan = parseFrames(buf, 0, Infinity, Infinity, true, true, false);
        ends = scan.ends!;
        const tail = buf.length - scan.lastFrameEnd;
        if (tail > 0) {
          // a write that ended half way (killed, or an older version on a full disk): cut through the descriptor
          ftruncateSync(f.fd, scan.lastFrameEnd);
          cut += tail;
          this.log?.warn({ spool: this.dir, segment: name, bytes: tail, at: scan.lastFrameEnd }, 'spool segment ends in a torn record: cut it off');
        }
        const inside = scan.skipped - tail;
        if (inside > 0) this.log?.warn({ spool: this.dir, segment: name, bytes: inside }, 'spool segment has corrupt bytes between records: they will be skipped and counted');
        seg = { seq, bytes: scan.lastFrameEnd, records: ends.length };
      } finally {
        closeSync(f.fd);
      }
      if (seg.records === 0) {
        await unlink(this.path(name));
        continue;
      }
      if (this.segments.length === 0 && state && seq === state.seq && state.offset > 0) {
        if (state.offset > seg.bytes) {
          this.log?.warn({ spool: this.dir, segment: name, stateOffset: state.offset, bytes: seg.bytes }, 'spool state.json offset is past the end of its segment: replaying the segment');
        } else {
          this.head = headAt(ends, state.offset);
        }
      }
      this.segments.push(seg);
    }
    this.corrupt += cut;
    const first = this.segments[0];
    if (first && this.head.offset >= first.bytes) {
      await unlink(this.path(segName(first.seq)));
      this.segments.shift();
      this.head = { offset: 0, index: 0 };
    }
    await this.saveState();
  }

  /** Serialise every mutation (and reads, which must not see a segment being deleted). */
  private run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }

  append(payloads: readonly string[]): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new Error('spool is closed'));
    return this.run(() => this.doAppend(payloads));
  }

  private async doAppend(payloads: readonly string[]): Promise<AppendResult> {
    const r: AppendResult = { appended: 0, dropped: 0, failed: 0 };
    let bufs: Buffer[] = [];
    let bufLen = 0;
    const flush = async () => {
      if (bufs.length === 0) return;
      try {
        await this.writeActive(Buffer.concat(bufs, bufLen), bufs.length);
        r.appended += bufs.length;
      } catch (err) {
        r.failed += bufs.length;
        r.error = describeError(err);
      }
      bufs = [];
      bufLen = 0;
    };
    for (const p of payloads) {
      const f = frame(p);
      if (f.length > this.o.maxBytes) {
        r.dropped++;
        continue;
      }
      if (this.pendingBytes + bufLen + f.length > this.o.maxBytes) {
        if (this.o.policy === 'drop-newest') {
          r.dropped++;
          continue;
        }
        await flush();
        while (this.segments.length > 0 && this.pendingBytes + f.length > this.o.maxBytes) {
          r.dropped += await this.dropOldest();
        }
      }
      const activeBytes = this.active ? this.active.seg.bytes : 0;
      if (activeBytes + bufLen > 0 && activeBytes + bufLen + f.length > this.segmentBytes) {
        await flush();
        await this.roll();
      }
      bufs.push(f);
      bufLen += f.length;
    }
    await flush();
    return r;
  }

  private async writeActive(buf: Buffer, count: number): Promise<void> {
    if (!this.active) {
      const seg: Segment = { seq: this.nextSeq++, bytes: 0, records: 0 };
      const { fd } = openFile(this.path(segName(seg.seq)), { access: 'append', exclusive: true, mode: 0o600 });
      this.active = { seg, fd };
      this.segments.push(seg);
    }
    const { seg, fd } = this.active;
    const start = seg.bytes;
    try {
      let off = 0;
      while (off < buf.length) off += await writeAsync(fd, buf, off, buf.length - off, null);
      if (this.o.fsync) await fdatasyncAsync(fd);
    } catch (err) {
      // nothing may follow a torn record: cut it back, or begin a new segment when even that fails
      try {
        await ftruncateAsync(fd, start);
      } catch {
        await this.roll();
      }
      throw err;
    }
    seg.bytes += buf.length;
    seg.records += count;
  }

  private async roll(): Promise<void> {
    if (!this.active) return;
    const { fd } = this.active;
    this.active = null;
    await closeAsync(fd).catch(() => {});
  }

  private async closeReader(): Promise<void> {
    const r = this.reader;
    this.reader = null;
    if (r) await closeAsync(r.fd).catch(() => {});
  }

  /** Removes the head segment (delivered, dropped, or never written to). */
  private async removeHead(): Promise<void> {
    const seg = this.segments.shift();
    if (!seg) return;
    if (this.active?.seg === seg) await this.roll();
    if (this.reader?.seq === seg.seq) await this.closeReader();
    await unlink(this.path(segName(seg.seq))).catch(() => {});
    this.head = { offset: 0, index: 0 };
  }

  /** Remove the oldest segment; returns how many undelivered records went with it. */
  private async dropOldest(): Promise<number> {
    const seg = this.segments[0];
    if (!seg) return 0;
    const lost = seg.records - this.head.index;
    await this.removeHead();
    this.generation_++;
    await this.saveState();
    return lost;
  }

  /** The oldest uncommitted records, without removing them; null when the spool is empty. */
  read(maxRecords: number, maxBytes: number): Promise<SpoolBatch | null> {
    return this.run(async () => {
      let seg = this.segments[0];
      // a segment whose every write failed holds nothing: step over it
      while (seg && this.head.offset >= seg.bytes && this.segments.length > 1) {
        await this.removeHead();
        seg = this.segments[0];
      }
      if (!seg || this.head.offset >= seg.bytes) return null;
      if (this.reader?.seq !== seg.seq) {
        await this.closeReader();
        this.reader = { seq: seg.seq, fd: openFile(this.path(segName(seg.seq)), { access: 'read', create: false }).fd };
      }
      const avail = seg.bytes - this.head.offset;
      let want = Math.min(avail, Math.max(maxBytes + 64, 64 * 1024));
      for (;;) {
        const buf = Buffer.allocUnsafe(want);
        let got = 0;
        while (got < want) {
          const n = await readAsync(this.reader.fd, buf, got, want - got, this.head.offset + got);
          if (n === 0) break;
          got += n;
        }
        // shorter than what was written to it (cut by someone): what is missing is skipped, and counted
        const short = got < want;
        const r = parseFrames(buf.subarray(0, got), 0, maxRecords, maxBytes, short || want >= avail);
        if (r.end > 0 || short) {
          const nothing = r.end === 0;
          return {
            records: r.records,
            seq: seg.seq,
            endOffset: this.head.offset + (nothing ? avail : r.end),
            generation: this.generation_,
            skippedBytes: nothing ? avail : r.skipped,
          };
        }
        // a single record larger than the read size: read more
        want = Math.min(avail, want * 4);
      }
    });
  }

  /**
   * Mark a batch delivered. Returns false when the batch's records were dropped (drop-oldest)
   * while it was out: they were already counted as dropped.
   */
  commit(batch: SpoolBatch): Promise<boolean> {
    return this.run(async () => {
      const seg = this.segments[0];
      if (batch.generation !== this.generation_ || !seg || seg.seq !== batch.seq) return false;
      this.corrupt += batch.skippedBytes;
      this.head = { offset: batch.endOffset, index: this.head.index + batch.records.length };
      if (this.head.offset >= seg.bytes) await this.removeHead();
      await this.saveState();
      return true;
    });
  }

  /**
   * Writes the read position over state.json through its descriptor, at a fixed size, so it needs
   * no new disk block. A failure is kept in `stateError`, not thrown: delivery goes on, and a
   * restart replays from the last position that was written (at least once).
   */
  private async saveState(): Promise<void> {
    const buf = stateBytes({ seq: this.segments[0]?.seq ?? this.nextSeq, offset: this.head.offset });
    try {
      let off = 0;
      while (off < buf.length) off += await writeAsync(this.stateFd, buf, off, buf.length - off, off);
      ftruncateSync(this.stateFd, buf.length);
      if (this.o.fsync) await fdatasyncAsync(this.stateFd);
      this.stateError_ = null;
    } catch (err) {
      this.stateError_ = `cannot write ${this.path('state.json')}: ${describeError(err)}`;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.run(async () => {
      this.closed = true;
      await this.roll();
      await this.closeReader();
      await this.saveState();
    });
    this.release();
  }

  /** Remove everything (tests, `ctwatch spool --purge`). */
  static async purge(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }
}
