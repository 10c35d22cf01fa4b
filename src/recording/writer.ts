/**
 * Records to an output as JSON lines: every command that writes lines (record, replay, watch -o)
 * writes them here, through the schema's one encoder (schema.ts writeRecord) into a LineBuffer, so
 * a batch is one write of bytes that are never touched again. A full output buffer is
 * backpressure: write() then returns the promise to wait on.
 */
import { LineBuffer } from './line-buffer.js';
import type { Output } from './output.js';
import { writeRecord, type AnyRecord } from './schema.js';

/** Any record of the schema: a conntrack event, a flow end, or a derived record (churn, alert,
 * resync, ...); writeRecord picks the encoding by `event`. */
export interface WritableRecord {
  readonly event: string;
  readonly time: number;
}

export class RecordWriter {
  private readonly lines = new LineBuffer();

  constructor(readonly output: Output) {}

  /** One line per record, in order, as one write. */
  write(records: readonly WritableRecord[]): void | Promise<void> {
    for (const r of records) writeRecord(this.lines, r as AnyRecord);
    if (this.lines.length === 0) return;
    return this.output.write(this.lines.take()) ? undefined : this.output.drained();
  }
}
