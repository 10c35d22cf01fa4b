/**
 * Helpers shared by the output formats: record classification, protocol names and numbers, time
 * rendering, and the options every format takes. Everything here is pure.
 */
import type { ConntrackEvent } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import type { Alert } from '../alerts/types.js';

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

const PROTO_NUMBERS: Record<string, number> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  dccp: 33,
  gre: 47,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
};

/** IANA keywords, lowercased, as ECS `network.transport` wants them. */
const IANA_KEYWORDS: Record<number, string> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  33: 'dccp',
  47: 'gre',
  58: 'ipv6-icmp',
  132: 'sctp',
  136: 'udplite',
};

/** IP protocol number of a ConntrackEvent/FlowEnd `proto` ('tcp', 'icmpv6', or a number as text). */
export function protoNumber(proto: string): number | undefined {
  const known = PROTO_NUMBERS[proto];
  if (known !== undefined) return known;
  if (/^\d{1,3}$/.test(proto)) {
    const n = Number(proto);
    return n <= 255 ? n : undefined;
  }
  return undefined;
}

export function ianaKeyword(num: number | undefined): string | undefined {
  return num === undefined ? undefined : IANA_KEYWORDS[num];
}

/**
 * RFC 3339 UTC with microseconds. Date only keeps milliseconds, and the collector's clocks are µs
 * (event time) or ns (kernel timestamps) — keep the µs, they order events within one millisecond.
 */
let isoSecond = NaN;
let isoPrefix = '';
let isoDay = NaN;
/** `YYYY-MM-DDT` of isoDay, or '' when its year needs the extended (±YYYYYY) form */
let isoDayPrefix = '';
const TWO_DIGITS = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));

function secondPrefix(second: number): string {
  // A flow end asks for three or four different seconds (its time, begin, end, the syslog
  // header), so a one-second cache alone misses on every call, and Date.toISOString costs ~0.7 µs.
  // Only the date needs Date; the time of day is plain arithmetic.
  const day = Math.floor(second / 86_400);
  if (day !== isoDay) {
    const iso = new Date(day * 86_400_000).toISOString();
    isoDay = day;
    isoDayPrefix = iso.length === 24 ? iso.slice(0, 11) : '';
  }
  if (isoDayPrefix === '') return new Date(second * 1000).toISOString().slice(0, 19);
  let s = second - day * 86_400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  return `${isoDayPrefix}${TWO_DIGITS[h]}:${TWO_DIGITS[m]}:${TWO_DIGITS[s - m * 60]}`;
}

export function isoFromMicros(us: number): string {
  const whole = Math.floor(us);
  const second = Math.floor(whole / 1_000_000);
  // Every record of a busy second shares its date and time: format that once per second.
  if (second !== isoSecond) {
    isoPrefix = secondPrefix(second);
    isoSecond = second;
  }
  // the fraction is joined first: under 13 characters V8 copies it into one flat string, so the
  // result is two pieces instead of four for whoever flattens it (a syslog message has four)
  return isoPrefix + ('.' + String(whole - second * 1_000_000).padStart(6, '0') + 'Z');
}

/**
 * Kernel timestamps are ns since epoch but arrive as doubles, which are only exact to ~256 ns at
 * today's epoch: printing nine digits would invent precision, so round to µs.
 */
export function isoFromNanos(ns: number): string {
  return isoFromMicros(Math.round(ns / 1000));
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
