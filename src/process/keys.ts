/** The keys attribution counts and remembers flows under. */
import type { ProcessInfo } from '../flow/types.js';

/** Enough of a flow to find what is remembered of it: a ConntrackEvent or a FlowEnd. */
export interface FlowRef {
  netns?: string;
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

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

/** Flow identity while it is live: two live conntrack entries never share an original tuple. */
export function flowKey(f: FlowRef): string {
  return `${f.netns ?? ''}|${f.proto}|${f.src}|${f.sport ?? ''}|${f.dst}|${f.dport ?? ''}`;
}
