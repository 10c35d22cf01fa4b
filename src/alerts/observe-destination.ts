/**
 * The per-destination rules' judgement of one destination in one snapshot: churn_per_destination,
 * churn_baseline, time_wait_pileup and leak_fill. Which destinations are judged, and what state
 * they are in, is the evaluator's (src/alerts/evaluator.ts).
 */
import type { DestinationChurn } from '../churn/snapshot.js';
import { conntrackHint, topSourceText, whoText } from './describe.js';
import { formatCount, formatDuration, formatFactor, formatLifetime, formatPercent, formatRate } from './format.js';
import type { Rule } from './rules.js';
import { QUIET, round1, round2, type Context, type Judging, type Observation, type Values } from './observation.js';

/**
 * `quiet`: the state machine remembers nothing of this subject for this rule, so unless it fires
 * the answer is QUIET, decided on the firing condition alone before anything else is built.
 */
export function observeDestination(r: Rule, d: DestinationChurn, ctx: Context, j: Judging, quiet = false): Observation | null {
  const g = j.grouping;
  const s = ctx.s;
  const entries = s.table.entries ?? s.live;
  const share = entries > 0 ? d.live / entries : null;
  const contextOf = (median: number | null): Values => ({
    live: d.live,
    timeWait: d.states?.TIME_WAIT ?? null,
    share: share === null ? null : round1(share * 100),
    median: median === null ? null : round1(median),
    fill: s.table.fill === null ? null : round1(s.table.fill * 100),
    timeToFull: s.table.timeToFull === null ? null : Math.round(s.table.timeToFull),
    lifetimeP50: d.lifetimeP50 ?? null,
    shortLived: d.shortLived ?? null,
  });
  // "holds 61 % of all entries, table 48 % full, full in ~3 min": how much of the table
  // this destination holds, how full the table is, and how long it has left. Both percentages
  // are spelled out: "61 % of table" alone was read as the fill.
  const tableTail = (): string => {
    const parts: string[] = [];
    if (share !== null && share >= 0.01) parts.push(`holds ${formatPercent(share)} of all entries`);
    if (s.table.fill !== null) parts.push(`table ${formatPercent(s.table.fill)} full`);
    if (s.table.timeToFull !== null) parts.push(`full in ${formatDuration(s.table.timeToFull)}`);
    return parts.map((p) => `, ${p}`).join('');
  };
  const who = (): string => {
    const w = topSourceText(s);
    return w ? `; ${w}` : '';
  };
  // Words and hints are built only for the alert that is raised or resolved: every destination
  // of the lists is judged by several rules each tick, and building them all cost the tick ms.
  // a DNATed service address: name the backend its flows really go to
  const target = (): string => d.backend !== undefined ? `${d.key} → ${d.backend}${d.backends !== undefined && d.backends > 1 ? ` (+${d.backends - 1} more)` : ''}` : d.key;

  switch (r.kind) {
    case 'churn_per_destination': {
      const v = d[r.rate];
      const fire = v > r.threshold;
      if (quiet && !fire) return QUIET;
      const median = ctx.median(d.key);
      const context = contextOf(median);
      const factor = median !== null && median > 0 ? v / median : null;
      return {
        fire,
        clear: v <= r.resolve,
        values: { value: round1(v), threshold: r.threshold, resolve: r.resolve, rate: r.rate, factor: factor === null ? null : round2(factor), ...context },
        value: () => `${formatRate(v, g)} new/s`,
        message: () =>
          `churn to ${target()} ${formatRate(v, g)} new/s${factor !== null ? ` (${formatFactor(factor, g)} its median)` : ''}${tableTail()}${who()}`,
        resolved: () => `resolved: churn to ${target()} back to ${formatRate(v, g)} new/s (≤ ${formatRate(r.resolve, g)})`,
        get hint() {
          return conntrackHint(d, s.netns);
        },
      };
    }
    case 'churn_baseline': {
      const v = d[j.baseline.rate];
      // below min_rate it cannot fire, whatever its median (which would sort the key's history)
      if (quiet && v < r.minRate) return QUIET;
      const median = ctx.median(d.key);
      // not learned yet: nothing to compare with, so no verdict either way
      if (median === null) return null;
      const fire = v >= r.minRate && v > r.factor * median;
      if (quiet && !fire) return QUIET;
      const context = contextOf(median);
      const factor = median > 0 ? v / median : Infinity;
      const over = `${formatDuration(j.baseline.window, false)}`;
      return {
        fire,
        clear: v <= r.resolveFactor * median || v < r.resolveMinRate,
        values: {
          value: round1(v),
          threshold: r.factor,
          resolve: r.resolveFactor,
          rate: j.baseline.rate,
          factor: Number.isFinite(factor) ? round2(factor) : null,
          minRate: r.minRate,
          ...context,
        },
        value: () => `${formatRate(v, g)} new/s`,
        message: () =>
          `churn to ${target()} ${formatRate(v, g)} new/s, ${formatFactor(factor, g)} its median of ${formatRate(median, g)}/s over ${over}${tableTail()}${who()}`,
        resolved: () =>
          `resolved: churn to ${target()} back to ${formatRate(v, g)} new/s (${formatFactor(factor, g)} its median of ${formatRate(median, g)}/s)`,
        get hint() {
          return conntrackHint(d, s.netns);
        },
      };
    }
    case 'time_wait_pileup': {
      if (!d.states) return null;
      const v = d.states[r.state] ?? 0;
      const fire = v > r.threshold;
      if (quiet && !fire) return QUIET;
      const context = contextOf(ctx.median(d.key));
      const detail = (): string => {
        const parts = [`of ${formatCount(d.live, g)} live`];
        if (share !== null && share >= 0.01) parts.push(`${formatPercent(share)} of all entries`);
        let text = ` (${parts.join(', ')}), ${formatRate(d.new10, g)} new/s`;
        if (d.lifetimeP50 !== undefined) text += `, lifetime p50 ${formatLifetime(d.lifetimeP50)}`;
        // the story's leaky pool: each request a fresh connection, each close a TIME_WAIT entry
        if (r.state === 'TIME_WAIT') text += ': connections are not being reused';
        return text;
      };
      return {
        fire,
        clear: v <= r.resolve,
        values: { value: v, threshold: r.threshold, resolve: r.resolve, state: r.state, new10: round1(d.new10), ...context },
        value: () => formatCount(v, g),
        message: () => `${formatCount(v, g)} ${r.state} flows to ${target()}${detail()}${who()}`,
        resolved: () => `resolved: ${r.state} flows to ${target()} down to ${formatCount(v, g)} (≤ ${formatCount(r.resolve, g)})`,
        get hint() {
          return conntrackHint(d, s.netns, r.state);
        },
      };
    }
    case 'leak_fill': {
      const tp = s.table;
      // the table's size is needed to say when it fills: no verdict without it
      if (tp.entries === null || tp.max === null) return null;
      // judged whether quiet or not: the runs remember every destination's growth
      const run = j.leakRuns(r.name).judge(r, ctx.ns, d.key, ctx.t, d.live, { entries: tp.entries, max: tp.max });
      if (!run) return null;
      if (quiet && !run.fire) return QUIET;
      const context = contextOf(ctx.median(d.key));
      const v = d.new1;
      const ttf = run.timeToFull;
      const who = whoText(s, v);
      return {
        fire: run.fire,
        clear: run.clear,
        values: {
          value: ttf === null ? null : Math.round(ttf),
          threshold: r.threshold,
          resolve: r.resolve,
          minRate: r.minRate,
          burst: r.burst,
          new1: round1(v),
          growth: round1(run.growth),
          stayed: run.stayed,
          ...context,
        },
        value: () => (ttf === null ? 'not filling' : formatDuration(ttf)),
        message: () =>
          `${who ? `${who} opens` : 'something opens'} ${formatRate(v, g)} new connections/s to ${target()} — table ${formatPercent(tp.entries! / tp.max!)} full, full in ${formatDuration(ttf ?? 0)}`,
        resolved: () =>
          ttf === null
            ? `resolved: ${target()} no longer fills the table (${formatRate(v, g)} new/s, ${formatRate(Math.max(0, run.growth), g)}/s stays)`
            : `resolved: ${target()} would fill the table in ${formatDuration(ttf)}, no longer within ${formatDuration(r.threshold, false)}`,
        get hint() {
          return conntrackHint(d, s.netns);
        },
      };
    }
    default:
      return null;
  }
}
