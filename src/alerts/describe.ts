/**
 * Turning snapshot keys into words and commands: who is churning, and what to type next. The
 * pager's "WARNING: check_conntrack" said neither; every alert line here ends with both.
 */
import type { ChurnSnapshot, KeyChurn } from '../churn/snapshot.js';
import type { Alert } from './types.js';
import { formatRate, round, type Grouping } from './format.js';

export interface Destination {
  addr: string;
  port?: number;
  proto?: string;
  family: 'ipv4' | 'ipv6';
}

/**
 * Parses the engine's destination keys: "127.0.0.5:6379/tcp", "[2001:db8::1]:443/tcp",
 * "10.0.0.1/icmp", "2001:db8::1/icmpv6". Returns null for anything else (a protocol key, say).
 */
export function parseDestination(key: string): Destination | null {
  const slash = key.lastIndexOf('/');
  const proto = slash >= 0 ? key.slice(slash + 1) : undefined;
  const hostPort = slash >= 0 ? key.slice(0, slash) : key;
  let addr: string;
  let port: number | undefined;
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(hostPort);
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d+))?$/.exec(hostPort);
  if (bracketed) {
    addr = bracketed[1];
    port = bracketed[2] === undefined ? undefined : Number(bracketed[2]);
  } else if (v4) {
    addr = v4[1];
    port = v4[2] === undefined ? undefined : Number(v4[2]);
  } else if (/^[0-9A-Fa-f:.]+$/.test(hostPort) && hostPort.includes(':')) {
    addr = hostPort;
  } else {
    return null;
  }
  return { addr, port, proto: proto || undefined, family: addr.includes(':') ? 'ipv6' : 'ipv4' };
}

export interface ProcessRef {
  pid?: number;
  comm?: string;
}

/**
 * Reads a process key back into pid and command. The engine writes one spelling, "api-worker[4121]"
 * (src/process/attributor.ts processKey); "4121 api-worker", "4121/api-worker", "api-worker/4121",
 * "pid 4121" and "4121" are read too, for subjects written by hand or by other tools. Anything else
 * is taken as the command name. (Carrying the pid and command structured would make this go away.)
 */
export function parseProcessKey(key: string): ProcessRef {
  let m = /^(.+?)\[(\d+)\]$/.exec(key);
  if (m) return { comm: m[1], pid: Number(m[2]) };
  m = /^(?:pid[ =:]?)?(\d+)(?:[ /:](.+))?$/.exec(key);
  if (m) return m[2] === undefined ? { pid: Number(m[1]) } : { pid: Number(m[1]), comm: m[2] };
  m = /^(.+?)[ /:](\d+)$/.exec(key);
  if (m) return { comm: m[1], pid: Number(m[2]) };
  return { comm: key };
}

function processText(p: ProcessRef): string {
  if (p.pid !== undefined && p.comm !== undefined) return `pid ${p.pid} ${p.comm}`;
  if (p.pid !== undefined) return `pid ${p.pid}`;
  return p.comm ?? '';
}

/**
 * "top source 127.0.1.7 (pid 4121 api-worker)". The snapshot has no source-by-process join, so the
 * top process is set beside the top source: on a host the sources are its own addresses, and the
 * busiest process is the one to look at either way.
 */
export function topSourceText(s: ChurnSnapshot): string {
  const src = s.sources[0];
  const proc = s.processes?.[0];
  const p = proc ? processText(parseProcessKey(proc.key)) : '';
  if (src) {
    // Several sources at a similar rate (a fleet of workers): name the next ones too.
    const close = s.sources.slice(1, 3).filter((o) => o.new1 >= src.new1 * 0.5).map((o) => o.key);
    const more = s.sources.slice(3).filter((o) => o.new1 >= src.new1 * 0.5).length;
    const others = close.length ? `, ${close.join(', ')}${more ? ` (+${more})` : ''}` : '';
    return `top source${others ? 's' : ''} ${src.key}${p ? ` (${p})` : ''}${others}`;
  }
  return p ? `top process ${p}` : '';
}

/**
 * Who opens a destination's flows, for a line that leads with it: "api-worker (pid 4121,
 * api.service)" when the busiest process (and unit or container) opens at least half of them, else
 * the busiest source address when it does, else ''. The snapshot has no process-by-destination join.
 */
export function whoText(s: ChurnSnapshot, rate: number): string {
  const proc = s.processes?.[0];
  if (proc && proc.new1 >= rate * 0.5) {
    const p = parseProcessKey(proc.key);
    const group = s.groups?.[0];
    const unit = group && group.new1 >= rate * 0.5 ? group.key.replace(/^unit:/, '') : '';
    const inner = [p.pid !== undefined ? `pid ${p.pid}` : '', unit].filter(Boolean).join(', ');
    return `${p.comm ?? 'a process'}${inner ? ` (${inner})` : ''}`;
  }
  const src = s.sources[0];
  return src && src.new1 >= rate * 0.5 ? src.key : '';
}

/** "top destination 127.0.0.5:6379/tcp 2 340 new/s (1 834 TIME_WAIT)" */
export function topDestinationText(s: ChurnSnapshot, g: Grouping): string {
  const d = s.destinations[0];
  if (!d) return '';
  const tw = d.states?.TIME_WAIT;
  return `top destination ${d.key} ${formatRate(d.new1, g)} new/s${tw ? ` (${formatRate(tw, g)} TIME_WAIT)` : ''}`;
}

function topList(keys: KeyChurn[], n: number): { key: string; rate: number }[] {
  return keys.slice(0, n).map((k) => ({ key: k.key, rate: round(k.new1, 1) }));
}

/** The alert's `top`: heavy hitters by new flows/s over the last second, as the snapshot orders them. */
export function topOf(s: ChurnSnapshot, n: number): Alert['top'] {
  const top: Alert['top'] = { destinations: topList(s.destinations, n), sources: topList(s.sources, n) };
  if (s.processes) {
    top.processes = s.processes.slice(0, n).map((p) => ({ key: p.key, rate: round(p.new1, 1), ...parseProcessKey(p.key) }));
  }
  return top;
}

/** Quotes for a shell only when needed, so the usual hint stays copy-pasteable and readable. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Runs a command inside the alert's namespace: a name from `ip netns`, or a path such as /proc/PID/ns/net. */
function inNetns(netns: string | undefined, cmd: string): string {
  if (!netns) return cmd;
  return netns.startsWith('/') ? `nsenter --net=${shellQuote(netns)} ${cmd}` : `ip netns exec ${shellQuote(netns)} ${cmd}`;
}

const CONNTRACK_PROTOS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'gre']);
const PORT_PROTOS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp']);

/**
 * `conntrack -L` narrowed to one destination. `-f ipv6` matters: without it conntrack lists IPv4
 * only, and an operator would see an empty list for an IPv6 alert.
 */
export function conntrackHint(destKey: string, netns: string | undefined, state?: string): string {
  const d = parseDestination(destKey);
  if (!d) return topHint(netns);
  const args = ['conntrack', '-L'];
  if (d.family === 'ipv6') args.push('-f', 'ipv6');
  const proto = d.proto && CONNTRACK_PROTOS.has(d.proto) ? d.proto : undefined;
  if (proto) args.push('-p', proto);
  args.push('-d', d.addr);
  if (proto && PORT_PROTOS.has(proto) && d.port !== undefined) args.push('--dport', String(d.port));
  if (state && proto === 'tcp') args.push('--state', shellQuote(state));
  return inNetns(netns, args.join(' '));
}

/** Table-wide alerts point at the live view of who fills the table. */
export function topHint(netns: string | undefined): string {
  return netns ? `ctwatch top --netns ${shellQuote(netns)}` : 'ctwatch top';
}
