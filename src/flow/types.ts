import type { Counters, Family, ProcessInfo, Tuple, Unattributed } from '../source/types.js';

export type { ProcessInfo } from '../source/types.js';

/** How a flow's duration was measured. */
export type DurationClock = 'kernel' | 'collector';

/** Why a flow ended. `destroy`: the kernel said so; `resync`: it vanished from the table while we
 * were not listening (overflow); `shutdown`: the collector stopped while it was live (not emitted
 * by default). */
export type FlowEndReason = 'destroy' | 'resync' | 'shutdown';

/** Emitted once per flow when it leaves the table: the record a SIEM or an operator wants. */
export interface FlowEnd {
  event: 'flow';
  /** µs since epoch when the end was observed */
  time: number;
  id: number;
  family: Family;
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmp?: Tuple['icmp'];
  /** µs since epoch when the flow began (kernel start timestamp, or when we first saw it) */
  begin: number;
  /** seconds the entry was in the table, float (includes TIME_WAIT and other timeouts) */
  duration: number;
  /** seconds the TCP connection was open: from its start to the first FIN or RST the kernel saw.
   * Needs update events; absent when unknown or for pre-existing flows */
  open?: number;
  clock: DurationClock;
  /** true when the flow existed before the collector started (duration is a lower bound) */
  preexisting: boolean;
  /** last TCP state seen before the end */
  state?: string;
  assured: boolean;
  replied: boolean;
  orig?: Counters;
  reply?: Counters;
  reason: FlowEndReason;
  mark?: number;
  zone?: number;
  netns?: string;
  /** the process that owned the flow's local socket, when known */
  process?: ProcessInfo | null;
  /** attribution ran and found no owner: why */
  unattributed?: Unattributed;
  /** the kernel translated the flow (DNAT, SNAT/masquerade): where the packets really went and
   * from where, taken from the reply tuple. Only the translated side is present; absent when the
   * flow was not translated or ended without a DESTROY (resync, shutdown). */
  nat?: NatTuple;
}

/** The translated addresses of a flow: `dst`/`dport` after DNAT (the backend), `src`/`sport`
 * after SNAT or masquerade (the address and port the peer saw). */
export interface NatTuple {
  src?: string;
  sport?: number;
  dst?: string;
  dport?: number;
}

/**
 * What NAT did to a connection, from its two tuples: the reply comes from the real destination
 * (reply.src:reply.sport) and goes to the real source (reply.dst:reply.dport). Undefined when
 * neither side was translated (or the reply tuple is unknown).
 */
export function natOf(ev: Tuple & { reply: Tuple }): NatTuple | undefined {
  const r = ev.reply;
  if (r.src === '' || r.src === undefined) return undefined;
  let nat: NatTuple | undefined;
  if (r.src !== ev.dst || r.sport !== ev.dport) {
    nat = { dst: r.src };
    if (r.sport !== undefined) nat.dport = r.sport;
  }
  if (r.dst !== ev.src || r.dport !== ev.sport) {
    nat ??= {};
    nat.src = r.dst;
    if (r.dport !== undefined) nat.sport = r.dport;
  }
  return nat;
}
