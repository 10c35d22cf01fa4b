/** Kernel numbers → the names operators know from conntrack(8). */

// include/uapi/linux/netfilter/nf_conntrack_tcp.h, in enum order
export const TCP_STATES = [
  'NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT',
  'CLOSE', 'SYN_SENT2',
] as const;

// include/uapi/linux/netfilter/nf_conntrack_common.h, IPS_*_BIT order
export const STATUS_FLAGS = [
  'EXPECTED', 'SEEN_REPLY', 'ASSURED', 'CONFIRMED', 'SRC_NAT', 'DST_NAT', 'SEQ_ADJUST',
  'SRC_NAT_DONE', 'DST_NAT_DONE', 'DYING', 'FIXED_TIMEOUT', 'TEMPLATE', 'UNTRACKED', 'HELPER',
  'OFFLOAD', 'HW_OFFLOAD',
] as const;

// IP protocol numbers (IANA), the name conntrack(8) prints for each (the `proto` of events and
// flows), and the IANA keyword where it differs (ECS `network.transport` wants the keyword). The
// one table: the decoder, the filter, the flow keys and every SIEM format read it.
const PROTOCOLS: readonly (readonly [number, string, string?])[] = [
  [1, 'icmp'], [2, 'igmp'], [6, 'tcp'], [17, 'udp'], [33, 'dccp'], [47, 'gre'], [58, 'icmpv6', 'ipv6-icmp'],
  [132, 'sctp'], [136, 'udplite'],
];
const NAMES: readonly string[] = Array.from({ length: 256 }, (_, n) => PROTOCOLS.find((p) => p[0] === n)?.[1] ?? String(n));
const NUMBERS = new Map(PROTOCOLS.map(([n, name]) => [name, n]));
const KEYWORDS = new Map(PROTOCOLS.map(([n, name, keyword]) => [n, keyword ?? name]));

/** IP protocol number → its name ('tcp', 'icmpv6', ...), or the number as text when it has none. */
export function protoName(n: number): string {
  return NAMES[n] ?? String(n);
}

/** A protocol name or a number as text (0-255) → the number; undefined for anything else. */
export function protoNumber(name: string): number | undefined {
  const known = NUMBERS.get(name);
  if (known !== undefined) return known;
  if (/^\d{1,3}$/.test(name)) {
    const n = Number(name);
    return n <= 255 ? n : undefined;
  }
  return undefined;
}

/** IANA keyword of a protocol number ('tcp', 'ipv6-icmp', ...), for the protocols named above. */
export function ianaKeyword(num: number | undefined): string | undefined {
  return num === undefined ? undefined : KEYWORDS.get(num);
}

export function tcpStateName(n: number): string {
  return TCP_STATES[n] ?? `STATE_${n}`;
}

// Status words repeat endlessly (a handful of combinations per table), so each distinct word is
// turned into names once and the frozen array is shared.
const statusCache = new Map<number, readonly string[]>();

export function statusNames(status: number): string[] {
  let names = statusCache.get(status);
  if (names === undefined) {
    const list: string[] = [];
    for (let bit = 0; bit < STATUS_FLAGS.length; bit++) if (status & (1 << bit)) list.push(STATUS_FLAGS[bit]);
    names = Object.freeze(list);
    if (statusCache.size < 4096) statusCache.set(status, names);
  }
  return names as string[];
}
