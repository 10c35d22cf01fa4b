/** The `ctwatch fleet` screen, as a pure function of the merged view (the `top` layout, per host). */
import { printable } from '../util/printable.js';
import { timeToFullText } from '../cli/top-view.js';
import type { FleetKey, FleetView } from './merge.js';

// host names and process titles come from the hosts: escaped before they are measured, so an
// escape sequence neither drives the terminal nor pushes the columns after it out of line
const pad = (raw: string, w: number, right = false) => {
  const s = printable(raw);
  return s.length >= w ? s.slice(0, w - 1) + ' ' : right ? s.padStart(w) : s.padEnd(w);
};
const num = (x: number) => (Math.round(x * 10) / 10).toLocaleString('en-US').replace(/,/g, ' ');
const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`);

function keys(title: string, rows: FleetKey[]): string[] {
  const out = [`${pad(title, 30)}${pad('NEW/s', 10, true)}${pad('LIVE', 10, true)}  HOSTS`];
  for (const r of rows) out.push(`${pad(r.key, 30)}${pad(num(r.newPerS), 10, true)}${pad(num(r.live), 10, true)}  ${r.hosts.map((h) => `${h.host} ${num(h.newPerS)}/s`).join(', ')}`);
  if (rows.length === 0) out.push('  (none yet)');
  return out;
}

export function renderFleet(v: FleetView, clock: string, width = 120): string {
  const silent = v.hosts.filter((h) => h.silent).length;
  const lines = [`ctwatch fleet — ${v.hosts.length} hosts${silent ? ` (${silent} silent)` : ''} — ${clock}   ${num(v.messages)} messages`];
  for (const a of v.alerts) lines.push(`ALERT ${a.severity.toUpperCase()} ${a.message}`);
  lines.push('', `${pad('HOST', 20)}${pad('FILL', 8, true)}${pad('ENTRIES', 12, true)}  ${pad('TIME TO FULL', 20)}${pad('NEW/s', 9, true)}  ${pad('TOP DESTINATION', 26)}${pad('TOP PROCESS', 20)}${pad('FLOWS', 9, true)}`);
  for (const h of v.hosts) {
    const ttf = h.silent ? `silent ${Math.round(h.silentFor)} s` : timeToFullText(h.timeToFull);
    lines.push(`${pad(h.host, 20)}${pad(pct(h.fill), 8, true)}${pad(h.entries === null ? '-' : num(h.entries), 12, true)}  ${pad(ttf, 20)}${pad(num(h.newPerS), 9, true)}  ${pad(h.topDestination ?? '-', 26)}${pad(h.topProcess ?? '-', 20)}${pad(num(h.flows), 9, true)}`);
  }
  if (v.hosts.length === 0) lines.push('  (no host has published yet)');
  lines.push('', ...keys('DESTINATION', v.destinations), '', ...keys('PROCESS', v.processes));
  // and whatever else reached a line unpadded (alert messages, hosts lists): never let it drive the terminal
  return lines.map((l) => {
    const safe = printable(l);
    return safe.length > width ? safe.slice(0, width) : safe;
  }).join('\n');
}
