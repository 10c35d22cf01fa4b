/**
 * Helpers shared by the output formats: record classification, protocol names and numbers, time
 * rendering, and the options every format takes. Everything here is pure.
 */
import type { ConntrackEvent } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import type { Alert } from '../recording/alert.js';
import { formatMicros } from '../recording/time.js';

/** Any other record the collector emits (overflow, snapshot_done, churn summaries, ...). */
export interface OtherRecord {
  event: string;
  /** µs since epoch, when the record has one */
  time?: number;
  [key: string]: unknown;
}

export type SinkRecord = ConntrackEvent | FlowEnd | Alert | OtherRecord;

export type RecordKind = 'conntrack' | 'flow' | 'alert' | 'other';

/** The machine the collector runs on, gathered at the edge (os.hostname(), ...) and passed in. */
export interface HostInfo {
  name: string;
  hostname?: string;
  id?: string;
  ip?: string[];
}

/** Set when this host forwards traffic (router, NAT gateway): the flows are not its own. */
export interface ObserverInfo {
  hostname?: string;
  ip?: string[];
  type?: string;
  vendor?: string;
  product?: string;
}

export interface ProductInfo {
  vendor: string;
  name: string;
  version: string;
}

export interface FormatOptions {
  host?: HostInfo;
  observer?: ObserverInfo;
  product?: ProductInfo;
  /** community_id seed, 0 unless every tool you correlate with uses another one */
  communityIdSeed?: number;
  /**
   * Addresses of this host. With them, formats can say whether a flow went in or out; without
   * them direction is unknown, which is better than a guess.
   */
  localAddresses?: readonly string[];
}

export const DEFAULT_PRODUCT: ProductInfo = { vendor: 'ctwatch', name: 'ctwatch', version: '0.1.0' };

const CONNTRACK_KINDS = new Set(['new', 'update', 'destroy', 'snapshot']);

export function recordKind(rec: SinkRecord): RecordKind {
  const e = rec.event;
  if (e === 'flow') return 'flow';
  if (e === 'alert' || e === 'resolved') return 'alert';
  if (CONNTRACK_KINDS.has(e) && typeof (rec as ConntrackEvent).src === 'string') return 'conntrack';
  return 'other';
}

export function isConntrack(rec: SinkRecord): rec is ConntrackEvent {
  return recordKind(rec) === 'conntrack';
}
export function isFlow(rec: SinkRecord): rec is FlowEnd {
  return rec.event === 'flow';
}
export function isAlert(rec: SinkRecord): rec is Alert {
  return rec.event === 'alert' || rec.event === 'resolved';
}

/** Protocol numbers and keywords: the one table, in src/source/names.ts. */
export { ianaKeyword, protoNumber } from '../source/names.js';

/**
 * RFC 3339 UTC with microseconds (src/recording/time.ts renders every time ctwatch writes). Date
 * only keeps milliseconds, and the collector's clocks are µs (event time) or ns (kernel
 * timestamps) — keep the µs, they order events within one millisecond.
 */
export const isoFromMicros = formatMicros;

/**
 * Kernel timestamps are ns since epoch but arrive as doubles, which are only exact to ~256 ns at
 * today's epoch. The native schema keeps all nine digits (it is what the kernel sent); the SIEM
 * formats say µs, the precision their date fields and every other time in them have.
 */
export function isoFromNanos(ns: number): string {
  return formatMicros(Math.round(ns / 1000));
}

export function msFromMicros(us: number): number {
  return Math.floor(us / 1000);
}

/** Same set semantics as the addresses the kernel prints (IPv6 compared in any spelling). */
const localSets = new WeakMap<readonly string[], Set<string>>();

export function makeLocalSet(addresses: readonly string[] | undefined): Set<string> | undefined {
  if (!addresses || addresses.length === 0) return undefined;
  // built once per options object: formats call this for every record
  let set = localSets.get(addresses);
  if (!set) {
    set = new Set(addresses.map((a) => a.toLowerCase()));
    localSets.set(addresses, set);
  }
  return set;
}

export type Direction = 'in' | 'out' | 'local' | 'unknown';

export function direction(src: string, dst: string, local: Set<string> | undefined): Direction {
  if (!local) return 'unknown';
  const s = local.has(src.toLowerCase());
  const d = local.has(dst.toLowerCase());
  if (s && d) return 'local';
  if (s) return 'out';
  if (d) return 'in';
  return 'unknown';
}

/** Both directions' count added up (bytes, packets), where both are known: one alone is not a total. */
export function bothWays(orig: number | undefined, reply: number | undefined): number | undefined {
  return orig !== undefined && reply !== undefined ? orig + reply : undefined;
}

/**
 * The kernel entry's fields of a conntrack event that the SIEM schemas have no place for (ECS
 * `conntrack.*`, OCSF `unmapped.conntrack`), in the order both write them.
 */
export function conntrackOwnFields(ev: ConntrackEvent): Record<string, unknown> {
  return {
    event: ev.event,
    state: ev.state,
    status: [...ev.status],
    mark: ev.mark,
    zone: ev.zone,
    timeout: ev.timeout,
    netns: ev.netns,
    icmp: ev.icmp ? { ...ev.icmp } : undefined,
  };
}

/**
 * ctwatch's own fields of a flow end that the SIEM schemas have no place for (ECS `conntrack.*`,
 * OCSF `unmapped.conntrack`), in the order both write them, after the id where ECS puts it first.
 * Per format: open_duration, how long the TCP connection was open (to its first FIN/RST), is in
 * the unit of the format's own duration (`openPerSecond`: ECS ns, OCSF ms); the reason the flow
 * ended goes here only where the format has no field of its own for it (OCSF; ECS has
 * event.reason).
 */
export function flowOwnFields(
  f: FlowEnd,
  per: { openPerSecond: number; withReason?: boolean },
): Record<string, unknown> {
  const p = f.process;
  return {
    state: f.state,
    assured: f.assured,
    replied: f.replied,
    reason: per.withReason ? f.reason : undefined,
    clock: f.clock,
    preexisting: f.preexisting,
    mark: f.mark,
    zone: f.zone,
    netns: f.netns,
    icmp: f.icmp ? { ...f.icmp } : undefined,
    cgroup: p?.cgroup,
    unit: p?.unit,
    open_duration: f.open === undefined ? undefined : Math.round(f.open * per.openPerSecond),
  };
}

/**
 * An alert's own fields that the SIEM schemas have no place for (ECS `ctwatch.alert`, OCSF
 * `unmapped.ctwatch`), in the order both write them, after the members each puts first.
 */
export function alertOwnFields(a: Alert): Record<string, unknown> {
  return {
    subject: a.subject,
    values: { ...a.values },
    top: a.top,
    hint: a.hint,
    netns: a.netns,
  };
}

/** Alert severity on the 0-10 scale CEF uses; ECS event.severity reuses it so both agree. */
export function alertSeverity10(alert: Alert): number {
  if (alert.event === 'resolved') return 1;
  return alert.severity === 'critical' ? 9 : alert.severity === 'warning' ? 6 : 3;
}

/**
 * Marks objects whose undefined members are meant as "absent": JSON.stringify leaves them out.
 * Deleting the keys instead would turn the objects into slow dictionaries on the hot path.
 */
export function compact<T extends Record<string, unknown>>(obj: T): T {
  return obj;
}
