/**
 * The event model shared by every layer. Field names are the JSONL schema's (docs/schema.md), so a
 * recording read back and a live event are the same object.
 */

export type Family = 'ipv4' | 'ipv6';

/** What the kernel said happened to a conntrack entry. `snapshot` is an entry found by the start-up
 * (or resync) table dump: it existed before we looked, so its lifetime is only a lower bound. */
export type ConntrackEventKind = 'new' | 'update' | 'destroy' | 'snapshot';

export interface IcmpFields {
  type: number;
  code: number;
  id: number;
}

export interface Counters {
  packets: number;
  bytes: number;
}

/** One direction of a connection, as the kernel tracks it. */
export interface Tuple {
  src: string;
  dst: string;
  /** absent for protocols without ports (ICMP, GRE, ...) */
  sport?: number;
  dport?: number;
  icmp?: IcmpFields;
}

/** Why a flow has no process (docs/attribution.md has what each one means and what to do). */
export type Unattributed =
  | 'not-local'
  | 'unsupported'
  | 'no-stamp'
  | 'preexisting'
  | 'ambiguous'
  | 'no-hook'
  | 'gone'
  | 'no-pid'
  | 'denied'
  | 'shared'
  | 'late'
  | 'overload'
  | 'off'
  | 'unseen';

/** The process that owned a flow's local socket (docs/schema.md, "process"). */
export interface ProcessInfo {
  pid: number;
  comm: string;
  /** the thread that connected, sent or listened */
  tid?: number;
  uid?: number;
  user?: string;
  exe?: string;
  /** cgroup v2 path */
  cgroup?: string;
  /** systemd unit, from the cgroup path */
  unit?: string;
  /** container id (docker, containerd, cri-o, podman), from the cgroup path */
  container?: string;
  /** Kubernetes pod UID and QoS class, from the kubepods cgroup path */
  pod?: string;
  qos?: string;
  /** which socket it holds: the one that started the flow, or the listener that accepted it */
  side?: 'origin' | 'listener';
}

/** The owner as the reader thread joined it (native/attribution/join.h), before enrichment. */
export interface NativeOwner {
  pid: number;
  tid: number;
  uid: number;
  comm: string;
  /** cgroup v2 id (the inode of the cgroup's directory) */
  cgroupId: number;
  /** process start, ns since boot: with the pid, the process's identity */
  startNs: number;
  side: 'origin' | 'listener';
  /** which hook saw the socket used */
  via: 'connect' | 'sendto' | 'send' | 'listen' | 'bind' | 'seeded' | 'sockdiag';
  /** µs between the socket's use and the reader reading the event */
  ageUs: number;
}

export interface ConntrackEvent extends Tuple {
  event: ConntrackEventKind;
  /** microseconds since the Unix epoch, taken by the reader thread when the message was read */
  time: number;
  /** CTA_ID. Not unique over time: ids are reused once an entry is freed (KERNEL-NOTES). */
  id: number;
  family: Family;
  /** 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | 'udplite' | 'dccp' | 'gre' | the number as text */
  proto: string;
  /** reply direction, plus its counters when accounting is on */
  reply: Tuple & Partial<Counters>;
  /** TCP state name ('ESTABLISHED', 'TIME_WAIT', ...); absent for other protocols */
  state?: string;
  /** IPS_* status flag names ('ASSURED', 'SEEN_REPLY', 'CONFIRMED', ...) */
  status: string[];
  mark?: number;
  zone?: number;
  /** seconds until the kernel expires the entry (absent on destroy) */
  timeout?: number;
  /** original-direction counters; absent unless net.netfilter.nf_conntrack_acct=1 when the flow began */
  orig?: Counters;
  /** kernel timestamps in nanoseconds since the epoch; absent unless nf_conntrack_timestamp=1 */
  start?: number;
  end?: number;
  /** name or path of the network namespace the event came from, absent for the collector's own */
  netns?: string;
  /** new / snapshot with attribution on: the owner the reader joined (replaced by `process`) */
  owner?: NativeOwner;
  /** the process that owns the flow's local socket */
  process?: ProcessInfo;
  /** attribution ran and found no owner: why */
  unattributed?: Unattributed;
}

/** The kernel dropped events for us: the socket buffer overflowed (ENOBUFS). */
export interface OverflowEvent {
  event: 'overflow';
  time: number;
  /** overflows seen so far on this source, including this one */
  overflows: number;
  netns?: string;
}

/** Marks the end of a table dump (start-up snapshot or resync). */
export interface SnapshotDoneEvent {
  event: 'snapshot_done';
  time: number;
  entries: number;
  /** the dump failed part way with this errno: `entries` is not the whole table */
  failed?: number;
  netns?: string;
}

export type SourceEvent = ConntrackEvent | OverflowEvent | SnapshotDoneEvent;

/** Counters every source exposes; for live sources they come from the addon. */
export interface SourceCounters {
  events: number;
  batches: number;
  overflows: number;
  decodeErrors: number;
  queueHighWater: number;
  /** bytes the kernel actually gave the receive buffer (it doubles the request) */
  rcvbuf: number;
}

/**
 * Everything downstream consumes this: an async iterable of batches. Live sources and recordings
 * have the same shape, so the engine runs offline on a recording.
 */
export interface EventSource extends AsyncIterable<SourceEvent[]> {
  readonly counters: SourceCounters;
  close(): Promise<void>;
}
