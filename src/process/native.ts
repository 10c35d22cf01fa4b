/**
 * The addon's process-attribution half, described with types (native/attribution/sockdiag.{h,cc}). Argument
 * checking and defaults live in the TypeScript wrappers (sockdiag.ts, procfs.ts); the addon trusts
 * what it is given.
 */
import { requireAddon } from '../util/addon.js';

/** Per-request words in a lookup answer (kResultWidth in sockdiag.cc): errno, inode, uid, state,
 * remote port, local port, flags (FROM_CAPTURE), owner pid, owner start time (low 32 bits). */
export const RESULT_WIDTH = 9;
/** flags: the answer is what the NEW-time capture saw, not a lookup made now */
export const FROM_CAPTURE = 1;

export interface NativeSockDiagCounters {
  requests: number;
  found: number;
  notFound: number;
  /** requests sent again because their answer was lost (receive queue overflow) */
  retried: number;
  batches: number;
  sends: number;
  /** time the namespace thread spent on lookups, µs */
  busyUs: number;
  /** jobs handed to the thread and not yet settled */
  pending: number;
  capture: {
    enabled: boolean;
    /** NEW events the capture read */
    events: number;
    /** of them, sockets found with a file */
    sockets: number;
    /** of them, with the owner known at once */
    owned: number;
    /** lookups answered from what the capture saw */
    hits: number;
    /** ENOBUFS on the capture's own subscription (those flows fall back to a lookup from JS) */
    overflows: number;
    hotScans: number;
    /** processes read in those scans (the likely owner first: ideally one read per scan) */
    hotReads: number;
    /** captured sockets closed before their owner was found (dropped from the next read) */
    closedUnowned: number;
    discoveries: number;
    evicted: number;
    /** µs on the namespace thread: all capture work, reading hot processes, discoveries */
    busyUs: number;
    hotScanUs: number;
    discoveryUs: number;
    /** processes currently hot */
    hotPids: number;
  };
}

export interface NativeSockDiag {
  /** enters the namespace on the object's own thread and opens the sockets there; throws a typed error */
  open(): void;
  /** one request per line, "F P LOCAL LPORT REMOTE RPORT" (REMOTE '*' for the listener); the answer
   * holds RESULT_WIDTH words per request */
  lookup(text: string): Promise<Uint32Array>;
  /** "prefix/len" of every RTN_LOCAL route of the namespace */
  localRoutes(): Promise<string[]>;
  close(): void;
  counters(): NativeSockDiagCounters;
}

export interface NativeScanOptions {
  /** only these pids; absent: every process in /proc */
  pids?: Int32Array;
  /** only say whether these are alive ([pid, -1, -1, -1]): nothing of them is read */
  skipFds?: Int32Array;
  /** read descriptors only of processes in these network namespaces (inode numbers) */
  netns?: Float64Array;
}

export interface NativeScanResult {
  /** [pid, starttime, netns inode, n, inode × n] per process; n = -1 when fds were not read
   * (another namespace); starttime = -1 for a pid in skipFds (alive, not read) */
  records: Float64Array;
  processes: number;
  fdScans: number;
  /** processes whose namespace or descriptors could not be read (EACCES/EPERM) */
  denied?: number;
  us: number;
}

export interface NativeProcInfo {
  pid: number;
  ppid: number;
  /** clock ticks after boot: with the pid, the identity of the process */
  starttime: number;
  comm: string;
  exe?: string;
  uid?: number;
  /** /proc/PID/cgroup as read */
  cgroup: string;
}

export interface NativeProcessAddon {
  SockDiag: new (options: { netns?: string; capture?: boolean }) => NativeSockDiag;
  scanProcesses(options: NativeScanOptions): Promise<NativeScanResult>;
  procInfo(pids: Int32Array): Promise<(NativeProcInfo | null)[]>;
}

export function loadProcessAddon(): NativeProcessAddon {
  return requireAddon<NativeProcessAddon>();
}
