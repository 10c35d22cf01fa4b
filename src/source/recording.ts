/**
 * A JSONL recording read back as an event source: the same shape as the live source, so the whole
 * pipeline runs offline. Derived records in the file (flow, churn, alert, ...) are not events and
 * are handed to `onOther` instead (or skipped).
 */
import { createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createInterface } from 'node:readline';
import { CtwatchError, EXIT } from '../util/errors.js';
import { parseLine, RecordingError, type AnyRecord } from '../recording/schema.js';
import type { EventSource, SourceCounters, SourceEvent } from './types.js';

export interface RecordingSourceOptions {
  batchSize?: number;
  /** on a malformed line: 'stop' (default) throws RecordingError; 'skip' counts it and goes on */
  onError?: 'stop' | 'skip';
  onOther?: (rec: AnyRecord) => void;
}

const SOURCE_KINDS = new Set(['new', 'update', 'destroy', 'snapshot', 'overflow', 'snapshot_done']);

export class RecordingSource implements EventSource {
  readonly file: string;
  private readonly options: RecordingSourceOptions;
  private closed = false;
  readonly counters: SourceCounters = { events: 0, batches: 0, overflows: 0, decodeErrors: 0, queueHighWater: 0, rcvbuf: 0 };
  /** lines that were not conntrack events (flow, churn, alert, ...) */
  otherRecords = 0;

  constructor(file: string, options: RecordingSourceOptions = {}) {
    this.file = file;
    this.options = options;
  }

  /** Fails early, with a clear message, when the file cannot be read. */
  async check(): Promise<void> {
    let isDir = false;
    try {
      await access(this.file, constants.R_OK);
      isDir = (await stat(this.file)).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CtwatchError('ERR_RECORDING', `cannot read recording ${this.file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code}`, { exitCode: EXIT.noInput });
    }
    if (isDir) throw new CtwatchError('ERR_RECORDING', `cannot read recording ${this.file}: it is a directory (give a .jsonl file written by ctwatch record)`, { exitCode: EXIT.noInput });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceEvent[]> {
    await this.check();
    const size = this.options.batchSize ?? 1024;
    const lines = createInterface({ input: createReadStream(this.file), crlfDelay: Infinity });
    let batch: SourceEvent[] = [];
    let n = 0;
    try {
      for await (const text of lines) {
        n++;
        if (this.closed) break;
        if (text.trim() === '') continue;
        let rec: SourceEvent | AnyRecord;
        try {
          rec = parseLine(text, this.file, n);
        } catch (err) {
          if (this.options.onError === 'skip' && err instanceof RecordingError) {
            this.counters.decodeErrors++;
            continue;
          }
          throw err;
        }
        if (!SOURCE_KINDS.has(rec.event)) {
          this.otherRecords++;
          this.options.onOther?.(rec as AnyRecord);
          continue;
        }
        if (rec.event === 'overflow') this.counters.overflows++;
        else this.counters.events++;
        batch.push(rec as SourceEvent);
        if (batch.length >= size) {
          this.counters.batches++;
          yield batch;
          batch = [];
        }
      }
      if (batch.length > 0) {
        this.counters.batches++;
        yield batch;
      }
    } finally {
      lines.close();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
