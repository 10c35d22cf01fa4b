/** What a DeliverySink (./sink.ts) is told: its batches, its memory bound, its retries, its spool. */
import type { Formatter } from '../formats/index.js';
import type { SinkRecord } from '../formats/common.js';
import type { SpoolOptions } from './spool.js';
import type { OverflowPolicy, SinkLogger } from './types.js';
import type { RetryOptions } from './util.js';

export interface BatchOptions {
  maxRecords: number;
  /** payload size per batch (approximate: UTF-16 length) */
  maxBytes: number;
  /** how long the first record of a partial batch may wait */
  maxWaitMs: number;
}

export interface MemoryOptions {
  /** bound of the in-memory queue; past it the overflow policy applies */
  maxRecords: number;
  maxBytes: number;
  /** with a spool: queue size past which the receiver counts as slow and we spool (default maxBytes/4) */
  spillBytes?: number;
}

export interface SinkOptions {
  name: string;
  format: Formatter;
  /** which records this sink takes (default: all) */
  filter?: (rec: SinkRecord) => boolean;
  batch?: Partial<BatchOptions>;
  retry?: Partial<RetryOptions>;
  memory?: Partial<MemoryOptions>;
  /** what a full memory queue drops when there is no spool (with one, the spool's policy) */
  overflow?: OverflowPolicy;
  spool?: SpoolOptions;
  logger?: SinkLogger;
  /** secrets to scrub from errors before they reach lastError or a log line (the transport's own are added) */
  secrets?: readonly string[];
  /** jitter source for the backoff, 0..1 (tests); default Math.random */
  random?: () => number;
  /** do not open the spool in the constructor: the owner calls start() (after --user) */
  deferSpool?: boolean;
}

export const DEFAULT_BATCH: BatchOptions = { maxRecords: 500, maxBytes: 1 << 20, maxWaitMs: 1000 };
export const DEFAULT_MEMORY: MemoryOptions = { maxRecords: 100_000, maxBytes: 64 << 20 };
