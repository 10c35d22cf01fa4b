/**
 * The table-wide rules' judgement of one snapshot: table_fill, time_to_full and kernel_drops.
 * Their one subject is 'table'.
 */
import { topDestinationText, topHint, topSourceText } from './describe.js';
import { formatCount, formatDuration, formatPercent, formatRate } from './format.js';
import type { Rule } from './rules.js';
import { round1, type Context, type Judging, type Observation, type Values } from './observation.js';

export function observeTable(r: Rule, ctx: Context, j: Judging): Observation | null {
  const g = j.grouping;
  const s = ctx.s;
  const tp = s.table;
  const fillText = (): string => {
    if (tp.fill === null) return `${formatCount(tp.entries ?? s.live, g)} entries`;
    const of = tp.entries !== null && tp.max !== null ? ` (${formatCount(tp.entries, g)} / ${formatCount(tp.max, g)})` : '';
    return `${formatPercent(tp.fill)} full${of}`;
  };
  const who = (): string => {
    const parts = [topDestinationText(s, g), topSourceText(s)].filter((p) => p);
    return parts.map((p) => `; ${p}`).join('');
  };
  const context: Values = {
    entries: tp.entries,
    max: tp.max,
    fill: tp.fill === null ? null : round1(tp.fill * 100),
    growth: round1(tp.growth),
    timeToFull: tp.timeToFull === null ? null : Math.round(tp.timeToFull),
  };
  const hint = topHint(s.netns);

  switch (r.kind) {
    case 'table_fill': {
      if (tp.fill === null) return null;
      const pct = tp.fill * 100;
      const growing = (): string =>
        tp.growth > 0 && tp.timeToFull !== null
          ? `, growing ${formatRate(tp.growth, g)}/s, full in ${formatDuration(tp.timeToFull)}`
          : '';
      return {
        fire: pct > r.threshold,
        clear: pct <= r.resolve,
        values: { value: round1(pct), threshold: r.threshold, resolve: r.resolve, ...context },
        value: () => formatPercent(tp.fill!),
        message: () => `conntrack table ${fillText()}${growing()}${who()}`,
        resolved: () => `resolved: conntrack table back to ${formatPercent(tp.fill!)} full (≤ ${r.resolve} %)`,
        hint,
      };
    }
    case 'time_to_full': {
      if (tp.entries === null || tp.max === null) return null;
      const ttf = tp.timeToFull;
      return {
        fire: ttf !== null && ttf < r.threshold,
        clear: ttf === null || ttf >= r.resolve,
        values: { value: ttf === null ? null : Math.round(ttf), threshold: r.threshold, resolve: r.resolve, ...context },
        value: () => (ttf === null ? 'not filling' : formatDuration(ttf)),
        message: () =>
          `conntrack table full in ${formatDuration(ttf ?? 0)} at +${formatRate(tp.growth, g)}/s, now ${fillText()}${who()}`,
        resolved: () =>
          ttf === null
            ? `resolved: conntrack table no longer filling (${fillText()})`
            : `resolved: conntrack table would fill in ${formatDuration(ttf)}, no longer within ${formatDuration(r.threshold, false)}`,
        hint,
      };
    }
    case 'kernel_drops': {
      if (!ctx.kernel) return null;
      const k = ctx.kernel;
      const counted = r.counters.filter((n) => k.deltas[n] !== undefined);
      if (counted.length === 0) return null;
      const total = counted.reduce((sum, n) => sum + k.deltas[n], 0);
      const perSecond = k.seconds > 0 ? total / k.seconds : total;
      const increases = counted.filter((n) => k.deltas[n] > 0);
      const values: Values = { value: round1(perSecond), threshold: r.threshold, resolve: r.resolve, ...context };
      for (const n of counted) values[n] = k.deltas[n];
      return {
        fire: perSecond > r.threshold,
        clear: perSecond <= r.resolve,
        values,
        value: () => `${formatRate(perSecond, g)}/s`,
        message: () =>
          `kernel conntrack dropping: ${increases.map((n) => `+${formatCount(k.deltas[n], g)} ${n}`).join(', ')} in ${formatDuration(k.seconds, false)}, table ${fillText()}${who()}`,
        resolved: () => `resolved: no kernel conntrack drops for ${formatDuration(r.resolveFor, false)}`,
        hint,
      };
    }
    default:
      return null;
  }
}
