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

const PROTOCOLS: Record<number, string> = {
  1: 'icmp', 2: 'igmp', 6: 'tcp', 17: 'udp', 33: 'dccp', 47: 'gre', 58: 'icmpv6', 132: 'sctp',
  136: 'udplite',
};

export function protoName(n: number): string {
  return PROTOCOLS[n] ?? String(n);
}

export function protoNumber(name: string): number | undefined {
  for (const [k, v] of Object.entries(PROTOCOLS)) if (v === name) return Number(k);
  const n = Number(name);
  return Number.isInteger(n) && n >= 0 && n < 256 ? n : undefined;
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
