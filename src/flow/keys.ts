/**
 * The names flows are grouped under (destinations, processes, units / containers / pods), shared
 * by the tracker and the churn engine. A key is the map
 * key and the text an operator reads; what it is made of travels beside it as a Destination, so
 * no reader ever parses a key back (alerts build `conntrack -L -d ... --dport ...` from the parts).
 */

import type { Family, ProcessInfo } from '../source/types.js';
import { protoName, protoNumber } from '../source/names.js';

/**
 * "127.0.0.5:6379/tcp", "[2001:db8::1]:443/tcp", "10.0.0.1/icmp": what an operator types when
 * asking who is being hammered. Protocols without ports key on the address alone.
 */
export function destinationKey(
  family: Family,
  dst: string,
  dport: number | undefined,
  proto: string,
): string {
  return `${endpointKey(family, dst, dport)}/${proto}`;
}

/** "127.0.0.5:6379", "[2001:db8::1]:443", or the address alone without a port: a destination key
 * without its protocol, as a DNATed service's backend is named. */
export function endpointKey(family: Family, addr: string, port: number | undefined): string {
  if (port === undefined) return addr;
  return family === 'ipv6' ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** What a destination key is made of: the flow line's own fields (docs/schema.md "flow"). */
export interface Destination {
  family: Family;
  dst: string;
  /** absent for protocols without ports (icmp, gre, ...): the key is then the address alone */
  dport?: number;
  proto: string;
}

// Keys repeat (clients come back to the same services), so each is built once per destination
// address and (port, protocol, family): the same string every time also has its hash computed
// already, for each of the maps it is then looked up in (the flow table's, the top-K's). Bounded.
const keyCache = new Map<string, Map<number, string>>();
let cachedKeys = 0;
const MAX_CACHED_KEYS = 65_536;

/**
 * What tells a destination apart from the others on its address, as one integer below 2^26: its
 * port (65 536 for none), protocol and family. -1 for a protocol name that is neither known nor a
 * number (UNKNOWN_PROTO would stand for them all), or a port outside 0..65 535.
 */
export function destinationCode(flow: Destination): number {
  const proto = protoCode(flow.proto);
  if (proto === UNKNOWN_PROTO) return -1;
  // a port the kernel cannot send (the decoder's are 16 bits) would share another one's code
  if (flow.dport !== undefined && !(Number.isInteger(flow.dport) && flow.dport >= 0 && flow.dport <= 65_535)) return -1;
  return ((flow.dport ?? 65_536) * 256 + proto) * 2 + (flow.family === 'ipv6' ? 1 : 0);
}

/** The destination key of an event, a flow record or a Destination. */
export function destinationOf(flow: Destination): string {
  const code = destinationCode(flow);
  // unknown protocol names are built each time, never confused
  if (code < 0) return destinationKey(flow.family, flow.dst, flow.dport, flow.proto);
  let byAddr = keyCache.get(flow.dst);
  if (byAddr === undefined) {
    if (cachedKeys >= MAX_CACHED_KEYS) {
      keyCache.clear();
      cachedKeys = 0;
    }
    byAddr = new Map();
    keyCache.set(flow.dst, byAddr);
  }
  let key = byAddr.get(code);
  if (key === undefined) {
    if (cachedKeys >= MAX_CACHED_KEYS) {
      keyCache.clear();
      cachedKeys = 0;
      keyCache.set(flow.dst, byAddr);
      byAddr.clear();
    }
    key = destinationKey(flow.family, flow.dst, flow.dport, flow.proto);
    byAddr.set(code, key);
    cachedKeys++;
  }
  return key;
}

/** The parts of an event's or flow record's destination, as a record of their own. */
export function destinationParts(flow: Destination): Destination {
  // Two literals, each allocated whole with its fields in the same order: dport added to a
  // three-field literal went to a property array of its own, a second allocation and a shape
  // change for every new destination (~0.7 µs a flow at the ceiling, where refused.c's rotating
  // ports make nearly every flow's destination new).
  if (flow.dport === undefined) return { family: flow.family, dst: flow.dst, proto: flow.proto };
  return { family: flow.family, dst: flow.dst, proto: flow.proto, dport: flow.dport };
}

/** Stands for a protocol name that is neither known nor a number; never produced by the decoder. */
export const UNKNOWN_PROTO = 255;

// Protocol names are a handful, and the tracker converts one per inserted flow.
const protoCodes = new Map<string, number>();

/** Protocol name → IP protocol number (the decoder's names round-trip through protoName). */
export function protoCode(name: string): number {
  let code = protoCodes.get(name);
  if (code === undefined) {
    code = protoNumber(name) ?? UNKNOWN_PROTO;
    if (protoCodes.size < 256) protoCodes.set(name, code);
  }
  return code;
}

export { protoName };

/** The key per-process churn is counted under: "comm[pid]"; its row carries processParts beside it. */
export function processKey(p: ProcessInfo | null | undefined): string | null {
  return p ? `${p.comm}[${p.pid}]` : null;
}

/** What a per-process row says beside its key, for readers that need the pid (alerts, hints). */
export function processParts(p: ProcessInfo): { pid: number; comm: string } {
  return { pid: p.pid, comm: p.comm };
}

/** The key per-unit / per-container churn is counted under, when the process has one: a pod's
 * containers count together under the pod ("pod:<uid> burstable"), not under 64-hex ids. */
export function groupKey(p: ProcessInfo | null | undefined): string | null {
  if (!p) return null;
  if (p.pod) return `pod:${p.pod}${p.qos ? ` ${p.qos}` : ''}`;
  if (p.container) return `container:${p.container.slice(0, 12)}`;
  return p.unit ? `unit:${p.unit}` : null;
}

/** What a per-group row says beside its key: the one of pod (and qos), container, unit it is keyed on. */
export function groupParts(p: ProcessInfo): { unit?: string; container?: string; pod?: string; qos?: string } {
  if (p.pod) return p.qos ? { pod: p.pod, qos: p.qos } : { pod: p.pod };
  if (p.container) return { container: p.container.slice(0, 12) };
  return p.unit ? { unit: p.unit } : {};
}
