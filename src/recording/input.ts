/**
 * A JSONL recording read back as an event source: the same shape as the live source, so the whole
 * pipeline runs offline. Derived records in the file (flow, churn, alert, ...) are not events and
 * are handed to `onOther` instead (or skipped).
 *
 * The file is input like any other, so reading it is bounded: it is opened without blocking (a
 * FIFO nobody writes to must not hang us in open(2)), devices and directories are refused after
 * fstat, a FIFO's writer gets a few seconds to show up, and a line longer than MAX_LINE is an
 * error (one without a newline, e.g. a stream of zeros, would otherwise grow until V8 gives up).
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { CtwatchError, EXIT } from '../util/errors.js';
import { parseLine, RecordingError, type AnyRecord } from './schema.js';
import type { EventSource, SourceCounters, SourceEvent } from '../source/types.js';

export interface RecordingSourceOptions {
  batchSize?: number;
  /** on a malformed line: 'stop' (default) throws RecordingError; 'skip' counts it and goes on */
  onError?: 'stop' | 'skip';
  onOther?: (rec: AnyRecord) => void;
  /** how long a FIFO may go without a writer before we give up (ms) */
  writerWaitMs?: number;
}

const SOURCE_KINDS = new Set(['new', 'update', 'destroy', 'snapshot', 'overflow', 'snapshot_done']);

/** The longest line we read: ctwatch writes events of a few hundred bytes, churn lines of tens of KiB. */
export const MAX_LINE = 1 << 20;
const CHUNK = 1 << 16;
const WRITER_WAIT_MS = 5000;

export class RecordingSource implements EventSource {
  readonly file: string;
  private readonly options: RecordingSourceOptions;
  private closed = false;
  private handle: FileHandle | undefined;
  private fifo = false;
  readonly counters: SourceCounters = { events: 0, batches: 0, overflows: 0, decodeErrors: 0, queueHighWater: 0, rcvbuf: 0 };
  /** lines that were not conntrack events (flow, churn, alert, ...) */
  otherRecords = 0;

  constructor(file: string, options: RecordingSourceOptions = {}) {
    this.file = file;
    this.options = options;
  }

  private refuse(why: string): CtwatchError {
    return new CtwatchError('ERR_RECORDING', `cannot read recording ${this.file}: ${why}`, { exitCode: EXIT.noInput });
  }

  /** Opens the file and fails early, with a clear message, when it cannot be a recording. */
  async check(): Promise<void> {
    if (this.handle) return;
    let h: FileHandle;
    try {
      h = await open(this.file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why: Record<string, string> = {
        ENOENT: 'no such file',
        EACCES: 'permission denied',
        ELOOP: 'too many levels of symbolic links',
        ENXIO: 'it is a socket or a device without a driver, not a file',
        ENOTDIR: 'a component of the path is not a directory',
      };
      throw this.refuse(why[code ?? ''] ?? String(code));
    }
    try {
      const st = await h.stat();
      const kind = st.isDirectory() ? 'a directory' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : undefined;
      if (kind) throw this.refuse(`it is ${kind} (give a .jsonl file written by ctwatch record, or a pipe)`);
      this.fifo = st.isFIFO();
    } catch (err) {
      await h.close();
      throw err;
    }
    this.handle = h;
  }

  /**
   * Chunks of text. On a FIFO opened without blocking, read(2) says EAGAIN while a writer is there
   * with nothing to say, and end of file while there is no writer: before the first writer that
   * means "wait for one" (bounded), after it the end.
   */
  private async *chunks(h: FileHandle): AsyncGenerator<string> {
    const buf = Buffer.allocUnsafe(CHUNK);
    const decoder = new StringDecoder('utf8');
    let writerSeen = !this.fifo;
    const waitUntil = Date.now() + (this.options.writerWaitMs ?? WRITER_WAIT_MS);
    let pause = 1;
    while (!this.closed) {
      let n: number;
      try {
        ({ bytesRead: n } = await h.read(buf, 0, CHUNK, null));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw new CtwatchError('ERR_RECORDING', `reading recording ${this.file} failed: ${code ?? (err as Error).message}`, { exitCode: EXIT.ioErr, cause: err });
        writerSeen = true;
        await sleep(pause);
        pause = Math.min(pause * 2, 50);
        continue;
      }
      if (n === 0) {
        if (writerSeen) break;
        if (Date.now() >= waitUntil) {
          throw this.refuse(`it is a FIFO and no process opened it for writing within ${Math.round((this.options.writerWaitMs ?? WRITER_WAIT_MS) / 1000)} s (start the writer first, or read a pipe: ctwatch replay <(zcat rec.jsonl.gz))`);
        }
        await sleep(pause);
        pause = Math.min(pause * 2, 50);
        continue;
      }
      writerSeen = true;
      pause = 1;
      yield decoder.write(buf.subarray(0, n));
    }
    const rest = decoder.end();
    if (rest) yield rest;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceEvent[]> {
    await this.check();
    const h = this.handle!;
    const size = this.options.batchSize ?? 1024;
    const skip = this.options.onError === 'skip';
    let batch: SourceEvent[] = [];
    let n = 0;
    let carry = '';
    /** the current line is over MAX_LINE: its text is dropped until its newline */
    let tooLong = false;
    const bad = (err: unknown) => {
      if (skip && err instanceof RecordingError) {
        this.counters.decodeErrors++;
        return;
      }
      throw err;
    };
    const take = (text: string): void => {
      if (text.trim() === '') return;
      let rec: SourceEvent | AnyRecord;
      try {
        rec = parseLine(text, this.file, n);
      } catch (err) {
        bad(err);
        return;
      }
      if (!SOURCE_KINDS.has(rec.event)) {
        this.otherRecords++;
        this.options.onOther?.(rec as AnyRecord);
        return;
      }
      if (rec.event === 'overflow') this.counters.overflows++;
      else this.counters.events++;
      batch.push(rec as SourceEvent);
    };
    const longLine = () => new RecordingError(this.file, n, `line is longer than ${MAX_LINE / 1024 / 1024} MiB: not a ctwatch recording (or a damaged one)`);
    try {
      for await (const chunk of this.chunks(h)) {
        let start = 0;
        for (;;) {
          const nl = chunk.indexOf('\n', start);
          if (nl < 0) break;
          n++;
          if (tooLong) tooLong = false;
          else if (carry.length + nl - start > MAX_LINE) bad(longLine());
          else take(carry + chunk.slice(start, nl));
          carry = '';
          start = nl + 1;
          if (batch.length >= size) {
            this.counters.batches++;
            yield batch;
            batch = [];
            if (this.closed) return;
          }
        }
        if (!tooLong) {
          carry += chunk.slice(start);
          if (carry.length > MAX_LINE) {
            n++;
            bad(longLine());
            // skipping: the rest of this line is dropped as it comes, and it counts once
            tooLong = true;
            carry = '';
            n--;
          }
        }
      }
      if (!tooLong && carry !== '') {
        n++;
        take(carry);
      }
      if (batch.length > 0) {
        this.counters.batches++;
        yield batch;
      }
    } finally {
      this.handle = undefined;
      await h.close();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
