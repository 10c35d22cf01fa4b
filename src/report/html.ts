/**
 * The incident report as one self-contained HTML page: inline SVG charts, inline CSS, no script,
 * nothing fetched (a Content-Security-Policy of default-src 'none' says so to the browser). A pure
 * function of the collected figures. Every plotted line carries the values it draws in
 * `data-values`, so what the page shows can be checked against a replay.
 *
 * Destination keys and process names come from the traffic and from whoever named the process:
 * they are escaped everywhere they appear.
 */
import type { Alert } from '../alerts/types.js';
import { formatMicros } from '../recording/time.js';
import { printable } from '../util/printable.js';
import type { KeySeries, ReportData, ReportPoint } from './collect.js';

/** More points than this are drawn as the maximum of each bucket (a day is 86 400 seconds). */
export const MAX_PLOTTED = 1440;

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const W = 960;
const H = 200;
const LEFT = 64;
const RIGHT = 16;
const TOP = 12;
const BOTTOM = 26;

export function escapeHtml(s: string): string {
  return printable(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const clock = (us: number) => formatMicros(us).slice(11, 19);
const stamp = (us: number) => `${formatMicros(us).slice(0, 19).replace('T', ' ')} UTC`;
const num = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits }).replace(/,/g, ' ');
const pct = (x: number) => `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`;
/** a share of all new connections; a sum of rates may overshoot the count a little */
const share = (part: number, whole: number) => (whole > 0 ? pct(Math.min(1, part / whole)) : '-');

export function durationText(us: number): string {
  const s = Math.round(us / 1e6);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Bucket maxima, so a spike in a long recording still shows. Returns the bucket size too. */
export function downsample(values: readonly (number | null)[], max = MAX_PLOTTED): { values: (number | null)[]; step: number } {
  if (values.length <= max) return { values: [...values], step: 1 };
  const step = Math.ceil(values.length / max);
  const out: (number | null)[] = [];
  for (let i = 0; i < values.length; i += step) {
    let m: number | null = null;
    for (let j = i; j < Math.min(values.length, i + step); j++) {
      const v = values[j];
      if (v !== null && (m === null || v > m)) m = v;
    }
    out.push(m);
  }
  return { values: out, step };
}

/** A y-axis top that reads well: 1, 2 or 5 times a power of ten. */
export function niceMax(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

interface Line {
  name: string;
  values: (number | null)[];
}

interface Marker {
  time: number;
  label: string;
  severity: string;
}

interface ChartSpec {
  id: string;
  title: string;
  times: number[];
  lines: Line[];
  /** fixed top of the y axis (1 for a fill) */
  yMax?: number;
  yLabel: (v: number) => string;
  markers: Marker[];
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Math.round(v * 1e6) / 1e6);
}

export function chart(spec: ChartSpec): string {
  const { times } = spec;
  const t0 = times[0] ?? 0;
  const t1 = times[times.length - 1] ?? t0;
  const span = Math.max(1, t1 - t0);
  const plotW = W - LEFT - RIGHT;
  const plotH = H - TOP - BOTTOM;
  const peak = Math.max(0, ...spec.lines.flatMap((l) => l.values.filter((v): v is number => v !== null)));
  const yMax = spec.yMax ?? niceMax(peak);
  const x = (t: number) => LEFT + ((t - t0) / span) * plotW;
  const y = (v: number) => TOP + plotH - (Math.min(v, yMax) / yMax) * plotH;
  const out: string[] = [];
  out.push(`<figure id="${spec.id}"><figcaption>${escapeHtml(spec.title)}</figcaption>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(spec.title)}">`);
  // grid and axes
  for (const f of [0, 0.5, 1]) {
    const gy = TOP + plotH - f * plotH;
    out.push(`<line class="grid" x1="${LEFT}" y1="${gy}" x2="${W - RIGHT}" y2="${gy}"/><text class="axis" x="${LEFT - 6}" y="${gy + 4}" text-anchor="end">${escapeHtml(spec.yLabel(f * yMax))}</text>`);
  }
  const ticks = Math.min(6, Math.max(1, times.length - 1));
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + (span * i) / ticks;
    out.push(`<text class="axis" x="${x(t).toFixed(1)}" y="${H - 8}" text-anchor="${i === 0 ? 'start' : i === ticks ? 'end' : 'middle'}">${clock(t)}</text>`);
  }
  for (const m of spec.markers) {
    const mx = x(m.time).toFixed(1);
    out.push(`<line class="marker ${escapeHtml(m.severity)}" x1="${mx}" y1="${TOP}" x2="${mx}" y2="${TOP + plotH}"><title>${escapeHtml(`${clock(m.time)} ${m.label}`)}</title></line>`);
  }
  spec.lines.forEach((l, i) => {
    let d = '';
    let pen = false;
    l.values.forEach((v, j) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(times[j]).toFixed(1)} ${y(v).toFixed(1)}`;
      pen = true;
    });
    const values = l.values.map((v) => (v === null ? '' : fmt(v))).join(',');
    out.push(`<path class="series" data-series="${escapeHtml(l.name)}" data-values="${values}" d="${d || `M${LEFT} ${TOP + plotH}`}" stroke="${COLORS[i % COLORS.length]}"><title>${escapeHtml(l.name)}</title></path>`);
  });
  out.push('</svg>');
  if (spec.lines.length > 1) {
    out.push(`<div class="legend">${spec.lines.map((l, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${escapeHtml(l.name)}</span>`).join('')}</div>`);
  }
  out.push('</figure>');
  return out.join('\n');
}

function firstAlert(alerts: Alert[]): Alert | undefined {
  return alerts.find((a) => a.event === 'alert');
}

/** The lines an operator pastes into a postmortem. */
export function summaryText(d: ReportData): string[] {
  const p = d.points;
  if (p.length === 0) return [`${d.file}: no conntrack events to replay (${d.events} events)`];
  const start = p[0].time;
  const end = p[p.length - 1].time;
  const lines: string[] = [];
  lines.push(`Recording ${d.file}${d.netns ? ` (netns ${d.netns})` : ''}: ${stamp(start)} → ${clock(end)} (${durationText(end - start)}), ${num(d.events)} conntrack events.`);
  const withFill = p.filter((x) => x.fill !== null);
  if (withFill.length > 0) {
    const top = withFill.reduce((a, b) => (b.fill! > a.fill! ? b : a));
    lines.push(`Table: peak ${pct(top.fill!)} full (${num(top.entries!)} of ${num(top.max!)} entries) at ${clock(top.time)}.`);
    const ttf = p.filter((x) => x.timeToFull !== null);
    if (ttf.length > 0) {
      const soonest = ttf.reduce((a, b) => (b.timeToFull! < a.timeToFull! ? b : a));
      lines.push(`Time to full: shortest ~${num(soonest.timeToFull!)} s at ${clock(soonest.time)} (growing ${num(soonest.growth)} entries/s).`);
    }
  } else {
    const top = p.reduce((a, b) => (b.live > a.live ? b : a));
    lines.push(`Table: the recording has no kernel table figures (record with --churn 1s); tracked flows peaked at ${num(top.live)} at ${clock(top.time)}.`);
  }
  const dropPoints = p.filter((x) => x.drops !== null);
  if (dropPoints.length > 1) {
    const lost = dropPoints[dropPoints.length - 1].drops! - dropPoints[0].drops!;
    const first = dropPoints.find((x) => x.drops! > dropPoints[0].drops!);
    lines.push(lost > 0 ? `Kernel: ${num(lost)} packets dropped or entries refused (drop, early_drop, insert_failed), first at ${clock(first!.time)}.` : 'Kernel: no drops during the recording.');
  }
  const unreplied = p.filter((x) => (x.unrepliedStale ?? 0) > 0);
  if (unreplied.length > 0) {
    const worst = unreplied.reduce((a, b) => (b.unrepliedStale! > a.unrepliedStale! ? b : a));
    const top = worst.unrepliedTop;
    lines.push(`Unreplied: peak ${num(worst.unrepliedStale!)} entries unreplied for over 5 s at ${clock(worst.time)}${top ? `, most to ${top.key} (${num(top.stale)}${top.dnat > 0 ? `, ${num(top.dnat)} DNATed` : ''})` : ''}.`);
  }
  const busiest = p.reduce((a, b) => (b.new1 > a.new1 ? b : a));
  const totalNew = d.newConnections;
  lines.push(`Churn: peak ${num(busiest.new1, 1)} new connections/s at ${clock(busiest.time)}; ${num(totalNew)} new connections in all.`);
  const who = (label: string, s: KeySeries | undefined) => {
    if (!s) return;
    lines.push(`${label}: ${s.key}, peak ${num(s.peak, 1)} new/s at ${clock(s.peakAt)}, ${s.approximate ? '~' : ''}${num(s.total)} new connections (${share(s.total, totalNew)}).`);
  };
  who('Top destination', d.destinations[0]);
  who('Top source', d.sources[0]);
  who('Top process', d.processes[0]);
  const fired = d.alerts.filter((a) => a.event === 'alert');
  const first = firstAlert(d.alerts);
  if (first) {
    lines.push(`Alerts: ${fired.length} raised, ${d.alerts.length - fired.length} resolved; first at ${clock(first.time)} (${durationText(first.time - start)} into the recording): ${first.message}`);
  } else {
    lines.push('Alerts: none raised by the rules on this recording.');
  }
  if (d.overflows > 0) lines.push(`Loss: the kernel dropped events ${d.overflows} time(s) while recording (overflow lines): figures after them are low.`);
  if (d.skippedLines > 0) lines.push(`Skipped: ${d.skippedLines} malformed line(s).`);
  return lines;
}

function keyTable(title: string, rows: KeySeries[], totalNew: number): string {
  if (rows.length === 0) return '';
  const body = rows
    .map((r) => `<tr><td>${escapeHtml(r.key)}</td><td class="n">${r.approximate ? '~' : ''}${num(r.total)}</td><td class="n">${share(r.total, totalNew)}</td><td class="n">${num(r.peak, 1)}</td><td>${clock(r.peakAt)}</td></tr>`)
    .join('\n');
  return `<table><thead><tr><th>${escapeHtml(title)}</th><th>new connections</th><th>share</th><th>peak new/s</th><th>peak at</th></tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function alertTable(alerts: Alert[], start: number): string {
  if (alerts.length === 0) return '<p>No alert raised by the rules on this recording.</p>';
  const body = alerts
    .map((a) => `<tr class="${a.event === 'alert' ? escapeHtml(a.severity) : 'resolved'}"><td>${clock(a.time)}</td><td class="n">+${durationText(a.time - start)}</td><td>${a.event === 'alert' ? escapeHtml(a.severity.toUpperCase()) : 'RESOLVED'}</td><td>${escapeHtml(a.rule)}</td><td>${escapeHtml(a.message)}</td></tr>`)
    .join('\n');
  return `<table class="alerts"><thead><tr><th>time</th><th>into</th><th>event</th><th>rule</th><th>message</th></tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const CSS = `
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1000px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;border:1px solid #ddd;padding:10px;white-space:pre-wrap;font:13px/1.45 ui-monospace,"DejaVu Sans Mono",monospace}
figure{margin:12px 0}figcaption{font-weight:600;margin-bottom:2px}
svg{display:block;max-width:100%;height:auto}
.grid{stroke:#e4e4e4}.axis{font:11px "DejaVu Sans Mono",monospace;fill:#666}
.series{fill:none;stroke-width:1.6}
.marker{stroke:#b00;stroke-dasharray:3 3}.marker.warning{stroke:#d80}.marker.info{stroke:#888}.marker.resolved{stroke:#2a2}
.legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee;vertical-align:top}
td.n{text-align:right;white-space:nowrap}tr.critical td{color:#a00}tr.warning td{color:#a60}tr.resolved td{color:#272}
.muted{color:#777;font-size:12px}`;

export function renderReport(d: ReportData, generatedBy = 'ctwatch report'): string {
  const p = d.points;
  const start = p[0]?.time ?? 0;
  const end = p[p.length - 1]?.time ?? start;
  const plot = (f: (x: ReportPoint) => number | null) => downsample(p.map(f)).values;
  const { step } = downsample(p.map(() => 0));
  // a bucket's time is its first second
  const times = Array.from({ length: Math.ceil(p.length / step) }, (_, i) => p[i * step].time);
  const markers: Marker[] = d.alerts.map((a) => ({ time: a.time, label: `${a.event === 'alert' ? a.severity.toUpperCase() : 'RESOLVED'} ${a.rule}: ${a.message}`, severity: a.event === 'alert' ? a.severity : 'resolved' }));
  const hasFill = p.some((x) => x.fill !== null);
  const totalNew = d.newConnections;
  const charts: string[] = [];
  if (hasFill) {
    // A table that stayed under half full is drawn to its own scale, so its growth shows.
    const peakFill = Math.max(...p.map((x) => x.fill ?? 0));
    charts.push(chart({ id: 'fill', title: `Table fill (entries / nf_conntrack_max)${peakFill < 0.5 ? ', scaled to its peak' : ''}`, times, lines: [{ name: 'fill', values: plot((x) => x.fill) }], yMax: peakFill < 0.5 ? niceMax(peakFill) : 1, yLabel: (v) => `${num(v * 100, 2)} %`, markers }));
    if (p.some((x) => x.timeToFull !== null)) {
      charts.push(chart({ id: 'time-to-full', title: 'Time to full at the current growth (seconds; gaps: not growing)', times, lines: [{ name: 'time_to_full', values: plot((x) => x.timeToFull) }], yLabel: (v) => `${num(v)} s`, markers }));
    }
  } else {
    charts.push(chart({ id: 'fill', title: 'Tracked flows (the recording has no kernel table figures: record with --churn 1s)', times, lines: [{ name: 'live', values: plot((x) => x.live) }], yLabel: (v) => num(v), markers }));
  }
  charts.push(chart({ id: 'churn', title: 'Churn: new and ended connections per second', times, lines: [{ name: 'new/s', values: plot((x) => x.new1) }, { name: 'ended/s', values: plot((x) => x.end1) }], yLabel: (v) => num(v), markers }));
  if (p.some((x) => (x.unrepliedStale ?? 0) > 0)) {
    charts.push(chart({ id: 'unreplied', title: 'Entries unreplied for over 5 s (a backend gone, a stale DNAT)', times, lines: [{ name: 'unreplied_stale', values: plot((x) => x.unrepliedStale) }], yLabel: (v) => num(v), markers }));
  }
  if (p.some((x) => x.timeWait > 0)) {
    charts.push(chart({ id: 'time-wait', title: 'Entries in TIME_WAIT', times, lines: [{ name: 'TIME_WAIT', values: plot((x) => x.timeWait) }], yLabel: (v) => num(v), markers }));
  }
  const keyChart = (id: string, title: string, rows: KeySeries[]) =>
    rows.length === 0 ? '' : chart({ id, title, times, lines: rows.map((r) => ({ name: r.key, values: downsample(r.values).values })), yLabel: (v) => num(v), markers });
  const summary = summaryText(d);
  const title = `Conntrack incident report${d.netns ? ` — netns ${d.netns}` : ''} — ${p.length > 0 ? `${stamp(start)} → ${clock(end)}` : 'empty recording'}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="generator" content="${escapeHtml(generatedBy)}">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="muted">${escapeHtml(`From ${d.file}, replayed by ${generatedBy}: one point per second of recorded time${step > 1 ? ` (each plotted point is the maximum of ${step} s)` : ''}. Dashed lines are alerts; hover for their text.`)}</p>
<h2>Summary</h2>
<pre id="summary">${summary.map(escapeHtml).join('\n')}</pre>
<h2>Table</h2>
${charts.join('\n')}
<h2>Who</h2>
${keyChart('destinations', 'New connections per second, top destinations', d.destinations)}
${keyTable('destination', d.destinations, totalNew)}
${keyChart('processes', 'New connections per second, top processes', d.processes)}
${keyTable('process', d.processes, totalNew)}
${keyTable('source', d.sources, totalNew)}
<h2>Alerts</h2>
${alertTable(d.alerts, start)}
${d.recordedAlerts.length > 0 ? `<p class="muted">${d.recordedAlerts.length} alert line(s) were also in the recording as written live (ctwatch watch -o).</p>` : ''}
<p class="muted">${escapeHtml(`${num(d.events)} events, ${d.overflows} overflow(s), ${d.skippedLines} skipped line(s). Times are UTC.`)}</p>
</body>
</html>
`;
}
