/**
 * The `ctwatch top` screen, as a pure function of a snapshot: table fill and time to full first
 * (the page-worthy facts), then churn, then who: destinations, sources, processes.
 */
import type { ChurnSnapshot, KeyChurn } from '../churn/snapshot.js';
import type { Alert } from '../alerts/types.js';
import { formatMicros } from '../recording/time.js';
import { printable } from '../util/printable.js';
import { History, sparkline } from './sparkline.js';

export interface ViewExtras {
  /** source counters line */
  source?: { events: number; overflows: number };
  alerts?: Alert[];
  width?: number;
  rows?: number;
  /** the last minute, drawn as sparklines under the figures */
  history?: TopHistory;
}

/**
 * The last minute of table fill and churn, one value per snapshot, for the sparklines. Fill is the
 * kernel's entries / max; without kernel figures (a replay of a recording without churn lines) it
 * is the flows the engine tracks, scaled to their own peak, and says so.
 */
export class TopHistory {
  readonly fill = new History(60);
  readonly tracked = new History(60);
  readonly opened = new History(60);
  readonly ended = new History(60);

  push(s: ChurnSnapshot): void {
    this.fill.push(s.table.fill);
    this.tracked.push(s.live);
    this.opened.push(s.overall.new1);
    this.ended.push(s.overall.end1);
  }

  /** The two sparkline lines. */
  lines(width = 60): string[] {
    const w = Math.min(60, Math.max(10, width));
    const anyFill = this.fill.all.some((v) => v !== null);
    const peak = (vs: readonly (number | null)[]) => vs.reduce<number>((m, v) => (v !== null && v > m ? v : m), 0);
    const fillLine = anyFill
      ? `fill 1m ${sparkline(this.fill.all, { width: w, max: 1 })}  (0–100 %)`
      : `live 1m ${sparkline(this.tracked.all, { width: w })}  (peak ${n(peak(this.tracked.all))} tracked)`;
    const churnPeak = Math.max(peak(this.opened.all), peak(this.ended.all));
    const churnLine = `new  1m ${sparkline(this.opened.all, { width: w, max: churnPeak })}  (peak ${n(peak(this.opened.all), 1)}/s; ended peak ${n(peak(this.ended.all), 1)}/s)`;
    return [fillLine, churnLine];
  }
}

const n = (x: number | null | undefined, digits = 0): string => {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 }).replace(/,/g, ' ');
};
const pct = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`);
const secs = (x: number | undefined): string => (x === undefined ? '-' : x < 1 ? `${(x * 1000).toFixed(0)} ms` : x < 120 ? `${x.toFixed(1)} s` : `${(x / 60).toFixed(0)} min`);
const pad = (s: string, w: number, right = false) => (s.length >= w ? s.slice(0, w) : right ? s.padStart(w) : s.padEnd(w));

export function timeToFullText(s: number | null): string {
  if (s === null) return 'not growing';
  if (s < 90) return `full in ~${Math.round(s)} s`;
  if (s < 5400) return `full in ~${Math.round(s / 60)} min`;
  return `full in ~${(s / 3600).toFixed(1)} h`;
}

function bar(fill: number, width: number): string {
  const full = Math.max(0, Math.min(width, Math.round(fill * width)));
  return `${'#'.repeat(full)}${'.'.repeat(width - full)}`;
}

/** "127.0.0.100:6379/tcp → 127.0.0.5:6379": a DNATed service address and the backend behind it. */
function rowName(r: KeyChurn & { podName?: string; podNamespace?: string; qos?: string }): string {
  // a pod the runtime named: "pod:shop/cart-7d9f burstable" rather than its UID
  if (r.podName !== undefined) return printable(`pod:${r.podNamespace}/${r.podName}${r.qos ? ` ${r.qos}` : ''}`);
  if (r.backend === undefined) return printable(r.key);
  const more = r.backends !== undefined && r.backends > 1 ? ` +${r.backends - 1}` : '';
  return `${printable(r.key)} → ${printable(r.backend)}${more}`;
}

function table(title: string, rows: KeyChurn[], withStates: boolean, limit: number): string[] {
  const shown = rows.slice(0, limit);
  // the name column grows (up to 52) for service → backend names, which do not fit 28
  const w = Math.max(28, Math.min(52, ...shown.map((r) => rowName(r).length + 2)));
  const head = withStates
    ? `${pad(title, w)}${pad('NEW/s', 9, true)}${pad('10s', 9, true)}${pad('END/s', 9, true)}${pad('LIVE', 10, true)}${pad('TIME_WAIT', 11, true)}${pad('p50 life', 10, true)}${pad('p99 life', 10, true)}${pad('<1s', 7, true)}`
    : `${pad(title, w)}${pad('NEW/s', 9, true)}${pad('10s', 9, true)}${pad('END/s', 9, true)}${pad('LIVE', 10, true)}`;
  const out = [head];
  for (const r of shown) {
    let line = `${pad(rowName(r), w)}${pad(n(r.new1, 1), 9, true)}${pad(n(r.new10, 1), 9, true)}${pad(n(r.end1, 1), 9, true)}${pad(n(r.live), 10, true)}`;
    if (withStates) {
      line += `${pad(n(r.states?.TIME_WAIT ?? 0), 11, true)}${pad(secs(r.lifetimeP50), 10, true)}${pad(secs(r.lifetimeP99), 10, true)}${pad(r.shortLived === undefined ? '-' : pct(r.shortLived), 7, true)}`;
    }
    out.push(line);
  }
  if (rows.length === 0) out.push('  (none yet)');
  return out;
}

/** Live entries that never got a reply: a backend gone, a stale DNAT, a one-way sender. */
function unrepliedTable(s: ChurnSnapshot, limit: number): string[] {
  const u = s.unreplied!;
  const out = [`${pad(`UNREPLIED (${n(u.total)}, ${n(u.stale)} over ${u.staleAfter} s)`, 40)}${pad('LIVE', 10, true)}${pad('STALE', 10, true)}${pad('OLDEST', 10, true)}  DNAT`];
  for (const d of u.destinations.slice(0, limit)) {
    out.push(`${pad(printable(d.key), 40)}${pad(n(d.unreplied), 10, true)}${pad(n(d.stale), 10, true)}${pad(secs(d.oldestAge), 10, true)}  ${d.dnat > 0 ? `yes (${n(d.dnat)})` : '-'}`);
  }
  return out;
}

/** SNAT / masquerade: source ports in use per (translated source, destination), against the range. */
function snatTable(s: ChurnSnapshot, limit: number): string[] {
  const v = s.snat!;
  const range = v.range ? `ports ${v.range.low}-${v.range.high}${v.range.from ? `, ${v.range.from}` : ''}` : 'port range unknown';
  const out = [`${pad(`SNAT (${range})`, 48)}${pad('PORTS', 10, true)}${pad('USED', 8, true)}`];
  for (const p of v.pairs.slice(0, limit)) {
    out.push(`${pad(printable(p.key), 48)}${pad(n(p.ports), 10, true)}${pad(p.share === null ? '-' : pct(p.share), 8, true)}`);
  }
  return out;
}

export function renderTop(s: ChurnSnapshot, extras: ViewExtras = {}): string {
  const lines: string[] = [];
  const where = s.netns ? `netns ${s.netns}` : 'this host';
  const src = extras.source ? `   source ${n(extras.source.events)} events, ${n(extras.source.overflows)} overflows` : '';
  lines.push(`ctwatch top — ${where} — ${formatMicros(s.time).slice(0, 19).replace('T', ' ')} UTC${src}`);
  const t = s.table;
  if (t.fill !== null && t.entries !== null && t.max !== null) {
    lines.push(`table   ${pad(pct(t.fill), 6, true)} [${bar(t.fill, 30)}] ${n(t.entries)} / ${n(t.max)} entries   growth ${t.growth >= 0 ? '+' : ''}${n(t.growth)}/s   ${timeToFullText(t.timeToFull)}`);
  } else {
    lines.push(`table   (kernel figures unavailable)   tracked ${n(s.live)}   growth ${n(s.table.growth)}/s`);
  }
  const k = t.kernel;
  if (Object.keys(k).length > 0) {
    lines.push(`kernel  drop ${n(k.drop ?? 0)}   early_drop ${n(k.early_drop ?? 0)}   insert_failed ${n(k.insert_failed ?? 0)}   error ${n(k.error ?? 0)}   invalid ${n(k.invalid ?? 0)}`);
  }
  const o = s.overall;
  lines.push(`churn   new ${n(o.new1, 1)}/s (10s ${n(o.new10, 1)}/s, 60s ${n(o.new60, 1)}/s)   ended ${n(o.end1, 1)}/s   live ${n(s.live)}   short-lived ${pct(s.shortLived)}`);
  if (extras.history) lines.push(...extras.history.lines((extras.width ?? 120) - 40));
  const states = Object.entries(s.states).sort((a, b) => b[1] - a[1]);
  if (states.length > 0) lines.push(`states  ${states.map(([name, c]) => `${name} ${n(c)}`).join('   ')}`);
  if (extras.alerts && extras.alerts.length > 0) {
    lines.push('');
    for (const a of extras.alerts) lines.push(`ALERT ${a.severity.toUpperCase()} ${a.message}`);
  }
  const rows = extras.rows ?? 40;
  const each = Math.max(3, Math.floor((rows - lines.length - 8) / 3));
  lines.push('', ...table('DESTINATION', s.destinations, true, each));
  lines.push('', ...table('SOURCE', s.sources, false, each));
  // Attributed rows, then what could not be attributed, by reason: the rest of the churn.
  const misses = (s.unattributed ?? []).map((r) => ({ ...r, key: `(unattributed: ${r.key})` }));
  if ((s.processes?.length ?? 0) + misses.length > 0) {
    lines.push('', ...table('PROCESS', s.processes ?? [], false, each), ...(misses.length > 0 ? table('', misses, false, 4).slice(1) : []));
  }
  if (s.groups && s.groups.length > 0) lines.push('', ...table('UNIT / CONTAINER', s.groups, false, 4));
  if (s.unreplied && s.unreplied.total > 0) lines.push('', ...unrepliedTable(s, 4));
  if (s.snat && s.snat.pairs.length > 0) lines.push('', ...snatTable(s, 4));
  lines.push('', ...table('PROTOCOL', s.protocols, false, 4));
  if (s.zones && s.zones.length > 0) lines.push('', ...table('ZONE', s.zones, false, 4));
  const width = extras.width ?? 120;
  // Process and unit names are chosen by whoever runs the process: never let them drive the terminal.
  return lines.map((l) => {
    const safe = printable(l);
    return safe.length > width ? safe.slice(0, width) : safe;
  }).join('\n');
}
