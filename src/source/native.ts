/**
 * The addon's conntrack half, described with types (native/conntrack/, native/addon.cc). Argument
 * checking and defaults live in live.ts; the addon trusts what it is given.
 */
import { requireAddon } from '../util/addon.js';
import type { NativeFilter } from './filter.js';

export interface ReaderOptions {
  netns?: string;
  /** NF_NETLINK_CONNTRACK_* bitmask: NEW=1, UPDATE=2, DESTROY=4 */
  groups: number;
  rcvbuf: number;
  reliable: boolean;
  batchSize: number;
  maxBatches: number;
  /** longest a partial batch waits for more events before it is handed over */
  flushMs: number;
  /** kernel-side event filter (src/source/filter.ts) */
  filter?: NativeFilter;
  /** an opened attribution handle: the reader joins every NEW with its owner */
  attribution?: NativeAttribution;
}

/** native/attribution/attribution.h */
export interface NativeAttribution {
  /** loads what the mode needs; throws a typed error (ERR_BPF_*, ...) when it cannot run here */
  open(): void;
  info(): NativeAttributionInfo;
  /** lets go of this handle; programs stay attached while a reader still uses them */
  close(): void;
}

export interface NativeAttributionInfo {
  mode: string;
  open: boolean;
  /** ebpf: connected UDP is covered (sock:sock_send_length exists) */
  sendsCovered?: boolean;
  cgroupRoot?: string;
  /** ebpf: ids of the attached programs (bpftool prog show id N) */
  programIds?: number[];
  /** ebpf: stamps written by hook (connect, sendto, send; and how many of sendto's and send's left
   * the map unchanged), listener changes (listen, bind, unlisten: not stamps); then ringCopied
   * (stamps the reader took from the ring into its copy of the map), ringLost (stamps the ring had
   * no room for), ringPassedOver (read, not copied: written before a seen loss or a resume, or not
   * a record of ours), copyResets (times the copy was dropped: a loss, a malformed record, an
   * overrun), copyOverruns (times stamps came faster than the copy's bound and it was switched off
   * for a second) */
  stamps?: Record<string, number>;
  /** ebpf: the stamp ring's size */
  stampRingBytes?: number;
}

/** A reader's join (native/attribution/join.h JoinCounters). */
export interface NativeJoinCounters {
  mode: string;
  records: number;
  origin: number;
  listener: number;
  reasons: Record<string, number>;
  waited: number;
  /** lookups in the kernel (a syscall each) */
  lookups: number;
  /** ebpf: stamps found in the reader's copy of the stamp map, without a syscall */
  fromCopy: number;
  busyUs: number;
  seeded: number;
  seedDenied: number;
  /** ebpf: what the programs and the stamp ring count for all readers (NativeAttributionInfo.stamps) */
  stamps?: Record<string, number>;
}

export interface KernelStats {
  entries: number | null;
  max: number | null;
  cpus: Record<string, number>[];
}

export interface NativeCounters {
  events: number;
  batches: number;
  overflows: number;
  decodeErrors: number;
  queueHighWater: number;
  dumps: number;
  rcvbuf: number;
  attribution?: NativeJoinCounters;
}

export interface NativeReader {
  open(): void;
  close(): void;
  /** give back one batch credit: JavaScript has taken a batch off its queue */
  release(): void;
  dump(): void;
  stats(): KernelStats;
  /** the reading the reader thread took last on its own clock (no wait), null before the first */
  latestStats(): (KernelStats & { ageMs: number }) | null;
  /** how often the reader thread takes a table stats reading; 0 stops */
  statsEvery(ms: number): void;
  counters(): NativeCounters;
  setRcvbuf(bytes: number): void;
  ref(): void;
  unref(): void;
  /** null, or the typed error that ended the reader thread (the stream then ended early) */
  failure(): Error | null;
}

export type RecordLayout = Record<string, number> & { size: number };

export interface NativeAddon {
  Reader: new (options: ReaderOptions, onBatch: (batch: ArrayBuffer) => void) => NativeReader;
  /** `stampRingBytes` (ebpf): the stamp ring's size for the programs this handle loads (default
   * 4 MiB; a power of two of at least a page); programs already loaded in the process are shared
   * as they are. */
  Attribution: new (options: { mode: string; stampRingBytes?: number }) => NativeAttribution;
  layout: RecordLayout;
}

/** The addon, seen as the conntrack reader's half (the loading is src/util/addon.ts). */
export function loadAddon(): NativeAddon {
  return requireAddon<NativeAddon>();
}
