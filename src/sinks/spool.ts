/**
 * A bounded on-disk FIFO of payloads for at-least-once delivery.
 *
 * Layout of the spool directory (SECURITY.md: private, 0700, owned by the account ctwatch runs as):
 *   seg-000000000001.log ...  segments, appended to in order; a record is `LEN:PAYLOAD\n`, LEN the
 *                             payload's UTF-8 byte length, so payloads may contain anything
 *   state.json                the committed read position {seq, offset}, rewritten in place
 *   lock                      flock(2)ed for the life of the spool; holds the pid, for people only
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
import { close, closeSync, fdatasync, ftruncate, ftruncateSync, read, readSync, write, writeSync } from 'node:fs';
import { readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FileRefused, lockFd, openFile, privateDirectory } from '../util/safe-file.js';
import type { OverflowPolicy, SinkLogger } from './types.js';

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

/** A spool that cannot be used, in one line (the reason names the path; the code says the kind). */
export class SpoolError extends Error {
  constructor(
    message: string,
    /** ERR_SPOOL_BUSY, ERR_UNSAFE_PATH, ERR_UNSAFE_FILE, or an errno name */
    readonly code: string,
  ) {
    super(message);
    this.name = 'SpoolError';
  }
}

interface Segment {
  seq: number;
  /** bytes of whole records; a torn tail past it (a write that could not be cut back) is ignored */
  bytes: number;
  records: number;
}

interface State {
  seq: number;
  offset: number;
}

const SEG_RE = /^seg-(\d{12})\.log$/;
const NL = 0x0a;
const COLON = 0x3a;
/** state.json is rewritten in place at this fixed size: no new block is needed, even on a full disk */
const STATE_BYTES = 64;
const openInProcess = new Set<string>();

function segName(seq: number): string {
  return `seg-${String(seq).padStart(12, '0')}.log`;
}

function frame(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}:`), body, Buffer.from('\n')]);
}

type FrameAt = { kind: 'frame'; body: number; end: number } | { kind: 'partial' } | { kind: 'bad' };

/** What starts at buf[pos]: a whole record (`end` past its newline), the start of one cut off by the buffer's end, or not a record. */
function frameAt(buf: Buffer, pos: number): FrameAt {
  let i = pos;
  while (i < buf.length && i - pos <= 12 && buf[i] >= 0x30 && buf[i] <= 0x39) i++;
  if (i - pos > 12) return { kind: 'bad' };
  if (i === buf.length) return { kind: 'partial' };
  if (i === pos || buf[i] !== COLON) return { kind: 'bad' };
  const newline = i + 1 + Number(buf.toString('latin1', pos, i));
  if (newline >= buf.length) return { kind: 'partial' };
  return buf[newline] === NL ? { kind: 'frame', body: i + 1, end: newline + 1 } : { kind: 'bad' };
}

/**
 * The next place after `pos` where a whole record starts (or, not `final`, may start past the
 * buffer). Every byte is a candidate, not only those after a newline: a torn record is followed by
 * the next one without a newline between them.
 */
function resync(buf: Buffer, pos: number, final: boolean): number {
  for (let i = pos + 1; i < buf.length; i++) {
    const c = buf[i];
    if (c < 0x30 || c > 0x39) continue;
    const p = buf[i - 1];
    if (p >= 0x30 && p <= 0x39) continue; // inside a number: its start was tried
    const f = frameAt(buf, i);
    if (f.kind === 'frame' || (f.kind === 'partial' && !final)) return i;
  }
  return buf.length;
}

interface Parsed {
  records: string[];
  /** where parsing stopped */
  end: number;
  /** corrupt bytes stepped over */
  skipped: number;
  /** end of the last whole record (0 when none) */
  lastFrameEnd: number;
  /** end of each whole record, when asked for */
  ends?: number[];
}

/**
 * Records from buf[start..]; corruption is stepped over to the next whole record and counted.
 * `final`: the buffer ends where the data ends, so a record cut off at its end is torn, not partial.
 */
export function parseFrames(buf: Buffer, start: number, maxRecords: number, maxBytes: number, final = false, keepEnds = false, decode = true): Parsed {
  const records: string[] = [];
  const ends: number[] | undefined = keepEnds ? [] : undefined;
  let pos = start;
  let bytes = 0;
  let skipped = 0;
  let lastFrameEnd = 0;
  let count = 0;
  while (pos < buf.length && count < maxRecords) {
    const f = frameAt(buf, pos);
    if (f.kind === 'frame') {
      const len = f.end - 1 - f.body;
      if (count > 0 && bytes + len > maxBytes) break;
      if (decode) records.push(buf.toString('utf8', f.body, f.end - 1));
      ends?.push(f.end);
      count++;
      bytes += len;
      pos = lastFrameEnd = f.end;
      continue;
    }
    if (f.kind === 'partial' && !final) break;
    const next = resync(buf, pos, final);
    skipped += next - pos;
    pos = next;
  }
  return { records, end: pos, skipped, lastFrameEnd, ends };
}

function message(err: unknown): string {
  if (err instanceof FileRefused) return err.message;
  const e = err as NodeJS.ErrnoException;
  return e.code === 'ENOSPC' ? 'the disk is full (ENOSPC)' : e.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
}

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
    try {
      const p = JSON.parse(text) as Partial<State>;
      if (Number.isSafeInteger(p.seq) && Number.isSafeInteger(p.offset) && p.seq! >= 0 && p.offset! >= 0) return { seq: p.seq!, offset: p.offset! };
    } catch {
      /* reported below */
    }
    this.log?.warn({ spool: this.dir, state: text.slice(0, 80) }, 'spool state.json is not a read position: replaying the spool from its oldest record');
    return undefined;
  }

  private async recover(): Promise<void> {
    let state = this.readState();
    const seqs = (await readdir(this.dir)).map((n) => SEG_RE.exec(n)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
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
        const buf = Buffer.allocUnsafe(f.size);
        let off = 0;
        while (off < f.size) {
          const n = readSync(f.fd, buf, off, f.size - off, off);
          if (n === 0) break;
          off += n;
        }
        const scan = parseFrames(buf.subarray(0, off), 0, Infinity, Infinity, true, true, false);
        ends = scan.ends!;
        const tail = off - scan.lastFrameEnd;
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
          // the last whole record at or before the committed offset (inside a record: it comes again)
          let index = 0;
          while (index < ends.length && ends[index] <= state.offset) index++;
          this.head = { offset: index > 0 ? ends[index - 1] : 0, index };
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
        r.error = message(err);
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
    const text = JSON.stringify({ seq: this.segments[0]?.seq ?? this.nextSeq, offset: this.head.offset });
    const buf = Buffer.from(text.padEnd(STATE_BYTES - 1, ' ') + '\n');
    try {
      let off = 0;
      while (off < buf.length) off += await writeAsync(this.stateFd, buf, off, buf.length - off, off);
      ftruncateSync(this.stateFd, buf.length);
      if (this.o.fsync) await fdatasyncAsync(this.stateFd);
      this.stateError_ = null;
    } catch (err) {
      this.stateError_ = `cannot write ${this.path('state.json')}: ${message(err)}`;
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

/** flock on `dir/lock`, kept for the life of the spool (the descriptor is returned, open). */
function takeLock(dir: string): number {
  let fd: number;
  try {
    fd = openFile(join(dir, 'lock'), { access: 'read-write', create: true, mode: 0o600 }).fd;
  } catch (err) {
    throw refused(dir, err);
  }
  let held: boolean;
  try {
    held = lockFd(fd);
  } catch (err) {
    closeSync(fd);
    throw refused(dir, err);
  }
  if (!held) {
    const buf = Buffer.alloc(32);
    let pid = '';
    try {
      pid = buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, 0)).trim();
    } catch {
      /* the pid is only a hint */
    }
    closeSync(fd);
    throw new SpoolError(`spool ${dir} is in use by another ctwatch${/^\d+$/.test(pid) ? ` (pid ${pid})` : ''}: stop it, or give this sink its own spool dir`, 'ERR_SPOOL_BUSY');
  }
  try {
    // for people reading the directory; the lock itself is the flock
    const text = Buffer.from(`${process.pid}\n`);
    ftruncateSync(fd, 0);
    writeSync(fd, text, 0, text.length, 0);
  } catch {
    /* a full disk: the lock is held all the same */
  }
  return fd;
}

function refused(dir: string, err: unknown): SpoolError {
  if (err instanceof SpoolError) return err;
  if (err instanceof FileRefused) return new SpoolError(`spool ${dir}: ${err.message}`, err.code);
  const e = err as NodeJS.ErrnoException;
  return new SpoolError(`spool ${dir}: ${message(err)}`, e?.code ?? 'EIO');
}
