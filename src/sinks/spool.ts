/**
 * A bounded on-disk FIFO of payloads for at-least-once delivery.
 *
 * Layout of the spool directory (created 0700):
 *   seg-000000000001.log ...  segments, appended to in order; a record is `LEN:PAYLOAD\n`, LEN the
 *                             payload's UTF-8 byte length, so payloads may contain anything
 *   state.json                the committed read position {seq, offset, index}, replaced atomically
 *   lock                      the pid of the process using the spool
 *
 * A record is removed (its read position committed) only after the receiver accepted it, so after
 * a crash or restart everything uncommitted is sent again: at least once, in order. Segments are
 * written with plain write(2): a kill -9 loses nothing that append() resolved (it is in the page
 * cache); a power cut can, unless `fsync` is on. A torn record at the end of a segment (killed in
 * the middle of a write) is cut off when the spool is reopened.
 */
import { mkdir, open, readFile, readdir, rename, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { OverflowPolicy } from './types.js';

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
}

export interface AppendResult {
  appended: number;
  /** records dropped by the policy: new ones (drop-newest) or older ones (drop-oldest) */
  dropped: number;
}

interface Segment {
  seq: number;
  bytes: number;
  records: number;
}

interface State {
  seq: number;
  offset: number;
}

const SEG_RE = /^seg-(\d{12})\.log$/;
const NL = Buffer.from('\n');
const COLON = 0x3a;
const openInProcess = new Set<string>();

function segName(seq: number): string {
  return `seg-${String(seq).padStart(12, '0')}.log`;
}

function frame(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}:`), body, NL]);
}

/** Parse complete frames from buf[start..]; returns the payloads and where parsing stopped. */
function parseFrames(
  buf: Buffer,
  start: number,
  maxRecords: number,
  maxBytes: number,
): { records: string[]; end: number; torn: boolean } {
  const records: string[] = [];
  let pos = start;
  let bytes = 0;
  let torn = false;
  while (pos < buf.length && records.length < maxRecords) {
    const colon = buf.indexOf(COLON, pos);
    if (colon < 0 || colon - pos > 12) {
      torn = true;
      break;
    }
    const lenText = buf.toString('latin1', pos, colon);
    if (!/^\d+$/.test(lenText)) {
      torn = true;
      break;
    }
    const len = Number(lenText);
    const end = colon + 1 + len;
    if (end + 1 > buf.length || buf[end] !== 0x0a) {
      torn = true;
      break;
    }
    if (records.length > 0 && bytes + len > maxBytes) break;
    records.push(buf.toString('utf8', colon + 1, end));
    bytes += len;
    pos = end + 1;
  }
  return { records, end: pos, torn };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Spool {
  private segments: Segment[] = [];
  /** committed read position: always inside segments[0] when there is one */
  private head = { offset: 0, index: 0 };
  private nextSeq = 1;
  private active: { seg: Segment; fh: FileHandle } | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private generation_ = 0;
  private closed = false;
  private readonly segmentBytes: number;

  private constructor(private readonly o: SpoolOptions) {
    this.segmentBytes = Math.max(4096, o.segmentBytes ?? Math.min(8 << 20, Math.floor(o.maxBytes / 8)));
  }

  get dir(): string {
    return this.o.dir;
  }

  /** Bumped whenever drop-oldest removes undelivered records; a batch read before is void. */
  get generation(): number {
    return this.generation_;
  }

  static async open(o: SpoolOptions): Promise<Spool> {
    if (!(o.maxBytes > 0)) throw new RangeError('spool maxBytes must be > 0');
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    const s = new Spool(o);
    await s.lock();
    try {
      await s.recover();
    } catch (err) {
      await s.unlock();
      throw err;
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
    return join(this.o.dir, name);
  }

  private async lock(): Promise<void> {
    const key = this.o.dir;
    if (openInProcess.has(key)) throw new Error(`spool ${key} is already open in this process`);
    const lockPath = this.path('lock');
    try {
      const text = await readFile(lockPath, 'utf8');
      const pid = Number(text.trim());
      if (pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new Error(`spool ${key} is in use by pid ${pid}`);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await writeFile(lockPath, `${process.pid}\n`, { mode: 0o600 });
    openInProcess.add(key);
  }

  private async unlock(): Promise<void> {
    openInProcess.delete(this.o.dir);
    await unlink(this.path('lock')).catch(() => {});
  }

  private async recover(): Promise<void> {
    let state: State = { seq: 0, offset: 0 };
    try {
      const parsed = JSON.parse(await readFile(this.path('state.json'), 'utf8')) as State;
      if (Number.isInteger(parsed.seq) && Number.isInteger(parsed.offset)) state = parsed;
    } catch {
      // no state yet (or unreadable): start from the oldest segment, replaying is the safe side
    }
    const names = (await readdir(this.o.dir)).filter((n) => SEG_RE.test(n)).sort();
    for (const name of names) {
      const seq = Number(SEG_RE.exec(name)![1]);
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
      if (seq < state.seq) {
        await unlink(this.path(name));
        continue;
      }
      const buf = await readFile(this.path(name));
      const scan = parseFrames(buf, 0, Infinity, Infinity);
      if (scan.end < buf.length) await truncate(this.path(name), scan.end);
      if (scan.records.length === 0) {
        await unlink(this.path(name));
        continue;
      }
      const seg: Segment = { seq, bytes: scan.end, records: scan.records.length };
      if (seq === state.seq && state.offset > 0) {
        // count the records before the committed offset
        const before = parseFrames(buf.subarray(0, Math.min(state.offset, scan.end)), 0, Infinity, Infinity);
        this.head = { offset: before.end, index: before.records.length };
      }
      this.segments.push(seg);
    }
    const first = this.segments[0];
    if (first && first.seq !== state.seq) this.head = { offset: 0, index: 0 };
    if (first && this.head.offset >= first.bytes) {
      await unlink(this.path(segName(first.seq)));
      this.segments.shift();
      this.head = { offset: 0, index: 0 };
    }
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
    let appended = 0;
    let dropped = 0;
    let bufs: Buffer[] = [];
    let bufLen = 0;
    const flush = async () => {
      if (bufs.length === 0) return;
      await this.writeActive(Buffer.concat(bufs, bufLen), bufs.length);
      appended += bufs.length;
      bufs = [];
      bufLen = 0;
    };
    for (const p of payloads) {
      const f = frame(p);
      if (f.length > this.o.maxBytes) {
        dropped++;
        continue;
      }
      if (this.pendingBytes + bufLen + f.length > this.o.maxBytes) {
        if (this.o.policy === 'drop-newest') {
          dropped++;
          continue;
        }
        await flush();
        while (this.segments.length > 0 && this.pendingBytes + f.length > this.o.maxBytes) {
          dropped += await this.dropOldest();
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
    return { appended, dropped };
  }

  private async writeActive(buf: Buffer, count: number): Promise<void> {
    if (!this.active) {
      const seg: Segment = { seq: this.nextSeq++, bytes: 0, records: 0 };
      const fh = await open(this.path(segName(seg.seq)), 'a', 0o600);
      this.active = { seg, fh };
      this.segments.push(seg);
    }
    const { seg, fh } = this.active;
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off);
      off += bytesWritten;
    }
    if (this.o.fsync) await fh.datasync();
    seg.bytes += buf.length;
    seg.records += count;
  }

  private async roll(): Promise<void> {
    if (!this.active) return;
    const { fh } = this.active;
    this.active = null;
    await fh.close();
  }

  /** Remove the oldest segment; returns how many undelivered records went with it. */
  private async dropOldest(): Promise<number> {
    const seg = this.segments[0];
    if (!seg) return 0;
    const lost = seg.records - this.head.index;
    if (this.active?.seg === seg) await this.roll();
    await unlink(this.path(segName(seg.seq))).catch(() => {});
    this.segments.shift();
    this.head = { offset: 0, index: 0 };
    this.generation_++;
    await this.saveState();
    return lost;
  }

  /** The oldest uncommitted records, without removing them; null when the spool is empty. */
  read(maxRecords: number, maxBytes: number): Promise<SpoolBatch | null> {
    return this.run(async () => {
      const seg = this.segments[0];
      if (!seg || this.head.offset >= seg.bytes) return null;
      const avail = seg.bytes - this.head.offset;
      let want = Math.min(avail, Math.max(maxBytes + 64, 64 * 1024));
      const fh = await open(this.path(segName(seg.seq)), 'r');
      try {
        for (;;) {
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(buf, 0, want, this.head.offset);
          const r = parseFrames(buf.subarray(0, bytesRead), 0, maxRecords, maxBytes);
          if (r.records.length > 0) {
            return {
              records: r.records,
              seq: seg.seq,
              endOffset: this.head.offset + r.end,
              generation: this.generation_,
            };
          }
          if (want >= avail) throw new Error(`spool segment ${segName(seg.seq)} is corrupt at ${this.head.offset}`);
          // a single record larger than the read size: read more
          want = Math.min(avail, want * 4);
        }
      } finally {
        await fh.close();
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
      this.head = { offset: batch.endOffset, index: this.head.index + batch.records.length };
      if (this.head.offset >= seg.bytes) {
        if (this.active?.seg === seg) await this.roll();
        await unlink(this.path(segName(seg.seq))).catch(() => {});
        this.segments.shift();
        this.head = { offset: 0, index: 0 };
      }
      await this.saveState();
      return true;
    });
  }

  private async saveState(): Promise<void> {
    const state: State = { seq: this.segments[0]?.seq ?? this.nextSeq, offset: this.head.offset };
    const tmp = this.path('state.json.tmp');
    await writeFile(tmp, JSON.stringify(state), { mode: 0o600 });
    await rename(tmp, this.path('state.json'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.run(async () => {
      this.closed = true;
      await this.roll();
      await this.saveState();
    });
    await this.unlock();
  }

  /** Remove everything (tests, `ctwatch spool --purge`). */
  static async purge(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }
}
