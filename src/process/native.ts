/**
 * The addon's process-attribution half, described with types (native/sockdiag.{h,cc}). Argument
 * checking and defaults live in the TypeScript wrappers (sockdiag.ts, procfs.ts); the addon trusts
 * what it is given.
 */
import { loadAddon } from '../source/native.js';

/** Per-request words in a lookup answer (kResultWidth in sockdiag.cc). */
export const RESULT_WIDTH = 6;

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
}

export interface NativeSockDiag {
  /** enters the namespace on the object's own thread and opens the sockets there; throws a typed error */
  open(): void;
  /** one request per line, "F P LOCAL LPORT REMOTE RPORT" (REMOTE '*' for the listener); the answer
   * holds RESULT_WIDTH words per request: errno, inode, uid, state, remote port, local port */
  lookup(text: string): Promise<Uint32Array>;
  /** "prefix/len" of every RTN_LOCAL route of the namespace */
  localRoutes(): Promise<string[]>;
  close(): void;
  counters(): NativeSockDiagCounters;
}

export interface NativeScanOptions {
  /** only these pids; absent: every process in /proc */
  pids?: Int32Array;
  /** list these (identity and namespace) without reading their descriptors */
  skipFds?: Int32Array;
  /** read descriptors only of processes in these network namespaces (inode numbers) */
  netns?: Float64Array;
}

export interface NativeScanResult {
  /** [pid, starttime, netns inode, n, inode × n] per process; n = -1 when fds were not read */
  records: Float64Array;
  processes: number;
  fdScans: number;
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
  SockDiag: new (options: { netns?: string }) => NativeSockDiag;
  scanProcesses(options: NativeScanOptions): Promise<NativeScanResult>;
  procInfo(pids: Int32Array): Promise<(NativeProcInfo | null)[]>;
}

export function loadProcessAddon(): NativeProcessAddon {
  return loadAddon() as unknown as NativeProcessAddon;
}
