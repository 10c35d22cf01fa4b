/**
 * Community ID v1 (corelight/community-id-spec): a direction-free flow hash that Zeek, Suricata,
 * Elastic, Arkime, Wireshark... compute identically, so a SIEM can join our flows with theirs.
 */
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { protoNumber } from './common.js';

export interface CommunityIdTuple {
  /** 'tcp', 'udp', 'icmp', 'icmpv6', 'sctp', ... or the protocol number */
  proto: string | number;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmp?: { type: number; code: number };
}

const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_ICMP6 = 58;
const PROTO_SCTP = 132;

/*
 * Request/reply pairs, from the reference implementation (pycommunityid, itself from Zeek's
 * ICMP4_counterpart/ICMP6_counterpart). The ICMPv6 table includes MLD query/report (130/131),
 * who-are-you (139/140) and home agent discovery (144/145) as the reference does: leaving them out
 * would give those flows ids that no other tool produces.
 */
const ICMP4_PAIRS: Record<number, number> = {
  8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17,
};
const ICMP6_PAIRS: Record<number, number> = {
  128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
  130: 131, 131: 130, 139: 140, 140: 139, 144: 145, 145: 144,
};

function parseIPv4(s: string, out: Uint8Array, at: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p)) return false;
    const n = Number(p);
    if (n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

function parseIPv6(input: string): Uint8Array | undefined {
  const zone = input.indexOf('%');
  const s = zone >= 0 ? input.slice(0, zone) : input;
  if (!isIPv6(s)) return undefined;
  const out = new Uint8Array(16);
  const halves = s.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  // an embedded dotted quad takes the last two groups
  const groups = (list: string[]): number => list.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const fill = (list: string[], start: number): boolean => {
    let pos = start;
    for (const g of list) {
      if (g.includes('.')) {
        if (!parseIPv4(g, out, pos)) return false;
        pos += 4;
      } else {
        const v = parseInt(g, 16);
        out[pos] = v >> 8;
        out[pos + 1] = v & 0xff;
        pos += 2;
      }
    }
    return true;
  };
  if (!fill(head, 0)) return undefined;
  if (!fill(tail, 16 - groups(tail) * 2)) return undefined;
  return out;
}

/** Network-order bytes of an address (4 for IPv4, 16 for IPv6), or undefined if it is not one. */
export function addressBytes(addr: string): Uint8Array | undefined {
  if (!addr.includes(':')) {
    // parseIPv4 validates as it goes: cheaper than net.isIPv4's regex on the per-record path
    const out = new Uint8Array(4);
    return parseIPv4(addr, out, 0) ? out : undefined;
  }
  return parseIPv6(addr);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}

/**
 * The Community ID v1 string, or undefined when the tuple cannot be hashed (addresses that do not
 * parse, mixed families, a port protocol without ports). Pass the pre-NAT original tuple: that is
 * what a sensor on the client side sees.
 */
// A record goes through several formats (ECS body, syslog structured data) and each wants its
// community_id: hash once per record. Records are never changed in their tuple after creation.
const memo = new WeakMap<object, string | undefined>();

export function communityId(t: CommunityIdTuple, seed = 0): string | undefined {
  if (seed !== 0) return computeCommunityId(t, seed);
  if (memo.has(t)) return memo.get(t);
  const id = computeCommunityId(t, 0);
  memo.set(t, id);
  return id;
}

function computeCommunityId(t: CommunityIdTuple, seed: number): string | undefined {
  const proto = typeof t.proto === 'number' ? t.proto : protoNumber(t.proto);
  if (proto === undefined || proto < 0 || proto > 255) return undefined;
  let saddr = addressBytes(t.src);
  let daddr = addressBytes(t.dst);
  if (!saddr || !daddr || saddr.length !== daddr.length) return undefined;

  let sport: number | undefined;
  let dport: number | undefined;
  let oneWay = false;
  if (proto === PROTO_TCP || proto === PROTO_UDP || proto === PROTO_SCTP) {
    if (t.sport === undefined || t.dport === undefined) return undefined;
    sport = t.sport;
    dport = t.dport;
  } else if (proto === PROTO_ICMP || proto === PROTO_ICMP6) {
    if (!t.icmp) return undefined;
    const pairs = proto === PROTO_ICMP ? ICMP4_PAIRS : ICMP6_PAIRS;
    const counterpart = pairs[t.icmp.type];
    sport = t.icmp.type;
    if (counterpart === undefined) {
      dport = t.icmp.code;
      oneWay = true;
    } else {
      dport = counterpart;
    }
  }

  if (!oneWay) {
    const c = compareBytes(saddr, daddr);
    const swap = c > 0 || (c === 0 && sport !== undefined && dport !== undefined && sport > dport);
    if (swap) {
      [saddr, daddr] = [daddr, saddr];
      [sport, dport] = [dport, sport];
    }
  }

  const hasPorts = sport !== undefined && dport !== undefined;
  const buf = Buffer.alloc(2 + saddr.length * 2 + 2 + (hasPorts ? 4 : 0));
  let o = buf.writeUInt16BE(seed & 0xffff, 0);
  buf.set(saddr, o);
  o += saddr.length;
  buf.set(daddr, o);
  o += daddr.length;
  buf[o++] = proto;
  buf[o++] = 0;
  if (hasPorts) {
    o = buf.writeUInt16BE(sport! & 0xffff, o);
    buf.writeUInt16BE(dport! & 0xffff, o);
  }
  return '1:' + createHash('sha1').update(buf).digest('base64');
}
