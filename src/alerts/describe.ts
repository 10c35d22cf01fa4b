/**
 * Turning snapshot rows into words and commands: who is churning, and what to type next. The
 * pager's "WARNING: check_conntrack" said neither; every alert line here ends with both. Keys are
 * shown as they are; pids, units, addresses and ports come from the fields the engine and
 * attribution wrote beside them (src/churn/snapshot.ts), never from reading a key back.
 */
import type { ChurnSnapshot, Destination, KeyChurn, ProcessKeyChurn } from '../churn/snapshot.js';
import type { Alert } from './types.js';
import { formatRate, round, type Grouping } from './format.js';
import { inNetnsCommand, shellQuote } from '../util/shell.js';

/** "pid 4121 api-worker"; a row without a pid (read back from an older line) by its key. */
function processText(p: ProcessKeyChurn): string {
  if (p.pid !== undefined && p.comm !== undefined) return `pid ${p.pid} ${p.comm}`;
  if (p.pid !== undefined) return `pid ${p.pid}`;
  return p.comm ?? p.key;
}

/**
 * "top source 127.0.1.7 (pid 4121 api-worker)". The snapshot has no source-by-process join, so the
 * top process is set beside the top source: on a host the sources are its own addresses, and the
 * busiest process is the one to look at either way.
 */
export function topSourceText(s: ChurnSnapshot): string {
  const src = s.sources[0];
  const proc = s.processes?.[0];
  const p = proc ? processText(proc) : '';
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
    const group = s.groups?.[0];
    // a unit by its name ("api.service"); a container or pod by its key, which says which it is
    const unit = group && group.new1 >= rate * 0.5 ? group.unit ?? (group.podName !== undefined ? `pod ${group.podNamespace}/${group.podName}` : group.key) : '';
    const inner = [proc.pid !== undefined ? `pid ${proc.pid}` : '', unit].filter(Boolean).join(', ');
    return `${proc.comm ?? proc.key}${inner ? ` (${inner})` : ''}`;
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
    top.processes = s.processes.slice(0, n).map((p) => {
      const row: NonNullable<Alert['top']['processes']>[number] = { key: p.key, rate: round(p.new1, 1) };
      if (p.pid !== undefined) row.pid = p.pid;
      if (p.comm !== undefined) row.comm = p.comm;
      return row;
    });
  }
  return top;
}

const CONNTRACK_PROTOS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'gre']);
const PORT_PROTOS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp']);

/**
 * `conntrack -L` narrowed to one destination, from its parts. `-f ipv6` matters: without it conntrack lists IPv4
 * only, and an operator would see an empty list for an IPv6 alert.
 */
export function conntrackHint(d: Partial<Destination> | undefined, netns: string | undefined, state?: string): string {
  // a row read back from an older line has only its key: the live view is the next step then
  if (!d || d.dst === undefined || d.family === undefined) return topHint(netns);
  const args = ['conntrack', '-L'];
  if (d.family === 'ipv6') args.push('-f', 'ipv6');
  const proto = d.proto && CONNTRACK_PROTOS.has(d.proto) ? d.proto : undefined;
  if (proto) args.push('-p', proto);
  args.push('-d', d.dst);
  if (proto && PORT_PROTOS.has(proto) && d.dport !== undefined) args.push('--dport', String(d.dport));
  if (state && proto === 'tcp') args.push('--state', shellQuote(state));
  return inNetnsCommand(netns, args.join(' '));
}

/** Table-wide alerts point at the live view of who fills the table. */
export function topHint(netns: string | undefined): string {
  return netns ? `ctwatch top --netns ${shellQuote(netns)}` : 'ctwatch top';
}
