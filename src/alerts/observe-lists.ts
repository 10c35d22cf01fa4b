/**
 * The rules judged on a list the snapshot says is complete or not: unreplied_pileup (per
 * destination, the unreplied view) and snat_port_exhaustion (per translated source and destination
 * pair). A subject the state machine remembers that left a complete list has none; one that left
 * an incomplete list cannot be judged (null).
 */
import type { Destination } from '../churn/snapshot.js';
import { conntrackHint, topHint } from './describe.js';
import { formatCount, formatDuration, formatPercent } from './format.js';
import type { Rule } from './rules.js';
import type { Context, Judging, Observation, Remembered } from './observation.js';

/**
 * snat_port_exhaustion: per (translated source, destination) pair, the share of the local port
 * range its live entries use. A pair pending or firing that is gone from the list uses none when
 * the snapshot's SNAT view lists every pair (fewer than its top N); else it cannot be judged.
 */
export function observeSnat(r: Extract<Rule, { kind: 'snat_port_exhaustion' }>, ctx: Context, j: Judging, remembered: Iterable<Remembered>): Map<string, Observation | null> {
  const out = new Map<string, Observation | null>();
  const s = ctx.s;
  const v = s.snat;
  const known = new Map((v?.pairs ?? []).map((p) => [p.key, p] as const));
  const subjects = new Set<string>(known.keys());
  for (const st of remembered) if (st.ns === ctx.ns) subjects.add(st.subject);
  const g = j.grouping;
  for (const key of subjects) {
    const p = known.get(key);
    const range = v?.range;
    if (!v || !range || (p === undefined && !v.complete)) {
      out.set(key, null);
      continue;
    }
    const size = range.high - range.low + 1;
    const ports = p?.ports ?? 0;
    const pct = (ports / size) * 100;
    out.set(key, {
      fire: pct > r.threshold,
      clear: pct <= r.resolve,
      values: { value: Math.round(pct * 10) / 10, threshold: r.threshold, resolve: r.resolve, ports, range: size },
      value: () => formatPercent(ports / size),
      message: () =>
        `SNAT ${key} uses ${formatCount(ports, g)} of ${formatCount(size, g)} source ports (${formatPercent(ports / size)} of the SNAT port range ${range.low}-${range.high}${range.from ? `, ${range.from}` : ''}): new connections to it will fail once they are gone`,
      resolved: () => `resolved: SNAT ${key} down to ${formatCount(ports, g)} source ports (${formatPercent(ports / size)}, ≤ ${r.resolve} %)`,
      hint: topHint(s.netns),
    });
  }
  return out;
}

/**
 * unreplied_pileup: per destination, the live entries unreplied for over the stale age. A
 * destination pending or firing that is no longer listed has none, when the list is complete;
 * without unreplied figures (no UPDATE events) nothing is judged.
 */
export function observeUnreplied(
  r: Extract<Rule, { kind: 'unreplied_pileup' }>,
  accepts: (key: string) => boolean,
  ctx: Context,
  j: Judging,
  remembered: Iterable<Remembered>,
): Map<string, Observation | null> {
  const out = new Map<string, Observation | null>();
  const s = ctx.s;
  const u = s.unreplied;
  const known = new Map((u?.destinations ?? []).map((d) => [d.key, d] as const));
  const subjects = new Set<string>(known.keys());
  const lastSeen = new Map<string, Partial<Destination> | undefined>();
  for (const st of remembered) {
    if (st.ns !== ctx.ns) continue;
    subjects.add(st.subject);
    lastSeen.set(st.subject, st.destination);
  }
  // the unreplied rows name destinations by key: their parts come from the engine's figures, the
  // snapshot's destination rows, or what this rule saw of them before
  const listed = new Map(s.destinations.map((d) => [d.key, d] as const));
  const g = j.grouping;
  for (const key of subjects) {
    if (!accepts(key)) continue;
    const parts = [ctx.figures?.get(key), listed.get(key), lastSeen.get(key)].find((p) => p?.dst !== undefined) ?? undefined;
    const d = known.get(key) ?? (u?.complete ? { key, unreplied: 0, stale: 0, dnat: 0, oldestAge: 0 } : undefined);
    if (!u || !d) {
      out.set(key, null);
      continue;
    }
    const dnat = d.dnat > 0 ? ` (DNATed: ${formatCount(d.dnat, g)} of them; the backend may be gone)` : '';
    out.set(key, {
      fire: d.stale > r.threshold,
      clear: d.stale <= r.resolve,
      values: { value: d.stale, threshold: r.threshold, resolve: r.resolve, unreplied: d.unreplied, dnat: d.dnat, oldestAge: Math.round(d.oldestAge) },
      value: () => formatCount(d.stale, g),
      message: () => `${formatCount(d.stale, g)} entries to ${key} unreplied for over ${u.staleAfter} s${dnat}, oldest ${formatDuration(d.oldestAge, false)}; ${formatCount(d.unreplied, g)} unreplied in all`,
      resolved: () => `resolved: unreplied entries to ${key} down to ${formatCount(d.stale, g)} (≤ ${formatCount(r.resolve, g)})`,
      hint: conntrackHint(parts, s.netns),
      destination: parts,
    });
  }
  return out;
}
