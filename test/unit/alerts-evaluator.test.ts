import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ChurnSnapshot, DestinationFigures, KeyChurn, Rates, TablePressure } from '../../src/churn/snapshot.js';
import type { Alert } from '../../src/alerts/types.js';
import { AlertEvaluator, type RuleSet } from '../../src/alerts/evaluator.js';
import { BaselineTracker } from '../../src/alerts/baseline.js';
import { LeakRuns } from '../../src/alerts/leak-fill.js';
import { QUIET, type Context, type Observation } from '../../src/alerts/observation.js';
import { observeDestination } from '../../src/alerts/observe-destination.js';
import { DEFAULT_BASELINE, defaultRules, type BaselineConfig, type Rule, type RuleKind } from '../../src/alerts/rules.js';
import { conntrackHint, topOf, topSourceText } from '../../src/alerts/describe.js';
import { destinationOf, destinationParts, type Destination } from '../../src/flow/keys.js';
import { processKey, processParts } from '../../src/flow/keys.js';

// --- synthetic snapshots -------------------------------------------------------------------

const T0 = 1_700_000_000; // seconds; snapshots are one second apart like the engine's
const us = (sec: number): number => (T0 + sec) * 1e6;

const rates = (n: number): Rates => ({ new1: n, new10: n, new60: n, end1: n, end10: n, end60: n });

/** What the fixtures' keys are made of: the fields the engine and attribution write beside a key. */
const PARTS: Record<string, object> = {
  '127.0.0.5:6379/tcp': { family: 'ipv4', dst: '127.0.0.5', dport: 6379, proto: 'tcp' },
  '[2001:db8::1]:443/tcp': { family: 'ipv6', dst: '2001:db8::1', dport: 443, proto: 'tcp' },
  'api-worker[4121]': { pid: 4121, comm: 'api-worker' },
  '4200 sidekiq': { pid: 4200, comm: 'sidekiq' },
  'unit:api.service': { unit: 'api.service' },
};

function dest(key: string, rate: number, extra: Partial<KeyChurn> = {}): KeyChurn {
  return { key, ...PARTS[key], ...rates(rate), live: 5, ...extra };
}

interface SnapOpts {
  dests?: KeyChurn[];
  table?: Partial<TablePressure>;
  sources?: KeyChurn[];
  processes?: KeyChurn[];
  netns?: string;
}

function snap(sec: number, o: SnapOpts = {}): ChurnSnapshot {
  const entries = o.table?.entries === undefined ? 1000 : o.table.entries;
  const max = o.table?.max === undefined ? 65536 : o.table.max;
  const s: ChurnSnapshot = {
    event: 'churn',
    time: us(sec),
    overall: rates(0),
    live: entries ?? 0,
    states: {},
    shortLived: 0,
    table: {
      entries,
      max,
      fill: entries !== null && max !== null ? entries / max : null,
      growth: 0,
      timeToFull: null,
      kernel: { drop: 0, early_drop: 0, insert_failed: 0 },
      ...o.table,
    },
    destinations: o.dests ?? [],
    sources: o.sources ?? [],
    protocols: [],
  };
  if (o.processes) s.processes = o.processes;
  if (o.netns !== undefined) s.netns = o.netns;
  return s;
}

/** One rule of a kind, from the built-ins, with overrides; the baseline can be shrunk for speed. */
function only(kind: RuleKind, over: Partial<Rule> = {}, baseline: Partial<BaselineConfig> = {}): RuleSet {
  const base = defaultRules().find((r) => r.kind === kind)!;
  return { rules: [{ ...base, ...over } as Rule], baseline: { ...DEFAULT_BASELINE, ...baseline } };
}

/** Feeds snapshots for seconds [from, to) and returns what came out, each with its second. */
function feed(ev: AlertEvaluator, from: number, to: number, make: (sec: number) => ChurnSnapshot): (Alert & { at: number })[] {
  const out: (Alert & { at: number })[] = [];
  for (let sec = from; sec < to; sec++) for (const a of ev.evaluate(make(sec))) out.push({ ...a, at: sec });
  return out;
}

const REDIS = '127.0.0.5:6379/tcp';

afterEach(() => {
  vi.restoreAllMocks();
});

// --- the state machine, through churn_per_destination ---------------------------------------

describe('for, hysteresis, cooldown, dedup', () => {
  it('fires once the condition has held for `for`, not before', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 5 }));
    const out = feed(ev, 0, 20, (s) => snap(s, { dests: [dest(REDIS, 600)] }));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ at: 5, event: 'alert', rule: 'churn_per_destination', subject: REDIS, since: us(0), time: us(5) });
  });

  it('restarts the `for` clock when the condition lapses before firing', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 5 }));
    // 450 is above resolve but below threshold: not firing, so pending is reset
    const out = feed(ev, 0, 20, (s) => snap(s, { dests: [dest(REDIS, s === 3 ? 450 : 600)] }));
    expect(out.map((a) => [a.at, a.since])).toEqual([[9, us(4)]]);
  });

  it('does not re-fire while active, and keeps one alert per subject', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0 }));
    const out = feed(ev, 0, 30, (s) => snap(s, { dests: [dest(REDIS, 900), dest('10.0.0.1:443/tcp', s >= 10 ? 700 : 10)] }));
    expect(out.map((a) => [a.at, a.subject])).toEqual([
      [0, REDIS],
      [10, '10.0.0.1:443/tcp'],
    ]);
    expect(ev.active().map((a) => a.subject).sort()).toEqual(['10.0.0.1:443/tcp', REDIS]);
  });

  it('resolves only below the resolve threshold (hysteresis), after resolve_for', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0, resolveFor: 3 }), { grouping: 'space' });
    const rate = (s: number): number => (s < 10 ? 600 : s < 20 ? 450 : 350);
    const out = feed(ev, 0, 40, (s) => snap(s, { dests: [dest(REDIS, rate(s))] }));
    expect(out.map((a) => [a.at, a.event])).toEqual([
      [0, 'alert'],
      [23, 'resolved'],
    ]);
    const resolved = out[1];
    expect(resolved.since).toBe(us(0));
    expect(resolved.time).toBe(us(23));
    expect(resolved.message).toBe(`resolved: churn to ${REDIS} back to 350 new/s (≤ 400) after 23 s`);
    expect(resolved.values.value).toBe(350);
    expect(ev.active()).toEqual([]);
  });

  it('a brief dip below resolve does not resolve when resolve_for is longer', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0, resolveFor: 5 }));
    const out = feed(ev, 0, 30, (s) => snap(s, { dests: [dest(REDIS, s === 10 || s === 11 ? 100 : 600)] }));
    expect(out.map((a) => a.event)).toEqual(['alert']);
  });

  it('waits out the cooldown before firing again for the same subject', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 2, resolveFor: 0, cooldown: 60 }));
    // high 0..9, low 10..11, high again from 12 on
    const out = feed(ev, 0, 120, (s) => snap(s, { dests: [dest(REDIS, s >= 10 && s < 12 ? 100 : 600)] }));
    expect(out.map((a) => [a.at, a.event])).toEqual([
      [2, 'alert'],
      [10, 'resolved'],
      // cooldown until 70; the condition has held since 12, longer than `for`
      [70, 'alert'],
    ]);
    expect(out[2].since).toBe(us(12));
  });

  it('never resolves a destination that left the top list without figures: unknown is not over', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0, resolveFor: 5 }));
    const out = feed(ev, 0, 30, (s) => snap(s, { dests: s < 10 ? [dest(REDIS, 600)] : [dest('10.9.9.9:80/tcp', 5)] }));
    expect(out.map((a) => [a.at, a.event])).toEqual([[0, 'alert']]);
    expect(ev.active().map((a) => a.subject)).toEqual([REDIS]);
    expect(ev.watching()).toEqual([REDIS]);
  });

  it('keeps judging a firing destination on its own figures when decoys fill the top list', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0, resolveFor: 5 }));
    const decoys = Array.from({ length: 12 }, (_, i) => dest(`127.0.0.${20 + i}:53/udp`, 750));
    // decoys ignored by nothing: they fire too, but the leak's own figures keep it firing
    let leakRate = 700;
    const view = (all: KeyChurn[]): DestinationFigures => ({
      keys: () => all.map((d) => d.key),
      get: (key) => {
        const d = all.find((x) => x.key === key);
        return d ? { ...d, rated: true } : null;
      },
      inState: () => [],
    });
    const out: Alert[] = [];
    for (let sec = 0; sec < 60; sec++) {
      if (sec === 40) leakRate = 10;
      const all = [...(sec >= 5 ? decoys : []), dest(REDIS, leakRate)];
      // the snapshot's list is the ten fastest: from second 5 the leak is not in it
      const s = snap(sec, { dests: [...all].sort((a, b) => b.new1 - a.new1).slice(0, 10) });
      out.push(...ev.evaluate(s, view(all)).filter((a) => a.subject === REDIS));
    }
    expect(out.map((a) => [(a.time - us(0)) / 1e6, a.event])).toEqual([
      [0, 'alert'],
      // only once its own rate has been at or below `resolve` for resolve_for
      [45, 'resolved'],
    ]);
    expect(out[1].message).toMatch(/^resolved: churn to 127\.0\.0\.5:6379\/tcp back to 10 new\/s/);
  });

  it('ignores before ranking: ignored destinations are not candidates, the rest are judged whatever their rank', () => {
    const rs = only('churn_per_destination', { for: 0, ignore: ['*:53/udp'] } as Partial<Rule>);
    const ev = new AlertEvaluator(rs);
    const all = [...Array.from({ length: 12 }, (_, i) => dest(`127.0.0.${20 + i}:53/udp`, 5000)), dest(REDIS, 600)];
    const figures: DestinationFigures = {
      keys: () => all.map((d) => d.key),
      get: (key) => ({ ...all.find((x) => x.key === key)!, rated: true }),
      inState: () => [],
    };
    const out = ev.evaluate(snap(0, { dests: all.slice(0, 10) }), figures);
    expect(out.map((a) => a.subject)).toEqual([REDIS]);
  });

  it('judges time_wait_pileup by TIME_WAIT count, not by new-flow rank, and an unrated figure is enough', () => {
    const ev = new AlertEvaluator(only('time_wait_pileup', { for: 0 }));
    const quiet = '127.0.0.9:5432/tcp';
    const figures: DestinationFigures = {
      keys: () => [],
      get: (key) => (key === quiet ? { ...dest(quiet, 0, { live: 3000, states: { TIME_WAIT: 2900 } }), rated: false } : null),
      inState: (state, above) => (state === 'TIME_WAIT' && 2900 > above ? [quiet] : []),
    };
    const out = ev.evaluate(snap(0, { dests: [dest(REDIS, 900, { states: { ESTABLISHED: 3 } })] }), figures);
    expect(out.map((a) => [a.rule, a.subject])).toEqual([['time_wait_pileup', quiet]]);
    expect(out[0].message).toContain('2 900 TIME_WAIT flows to 127.0.0.9:5432/tcp'.replace(/ /, '\u202f'));
  });

  it('an unrated churn subject is unknown: neither fires nor resolves', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0, resolveFor: 0 }));
    let rated = true;
    const figures = (rate: number): DestinationFigures => ({
      keys: () => [REDIS],
      get: () => ({ ...dest(REDIS, rate), rated }),
      inState: () => [],
    });
    expect(ev.evaluate(snap(0), figures(900)).map((a) => a.event)).toEqual(['alert']);
    rated = false;
    expect(ev.evaluate(snap(1), figures(0))).toEqual([]);
    expect(ev.active()).toHaveLength(1);
    rated = true;
    expect(ev.evaluate(snap(2), figures(0)).map((a) => a.event)).toEqual(['resolved']);
  });

  it('honours match and ignore', () => {
    const rs = only('churn_per_destination', { for: 0, match: ['*:6379/tcp', '*:53/udp'], ignore: ['*:53/udp'] } as Partial<Rule>);
    const ev = new AlertEvaluator(rs);
    const out = feed(ev, 0, 3, (s) => snap(s, { dests: [dest('10.0.0.53:53/udp', 5000), dest('10.0.0.1:443/tcp', 5000), dest(REDIS, 600)] }));
    expect(out.map((a) => a.subject)).toEqual([REDIS]);
  });

  it('uses a resolved_message template', () => {
    const ev = new AlertEvaluator(
      only('churn_per_destination', { for: 0, resolveFor: 0, resolvedMessage: '{subject} calm again ({value}) after {duration}, rule {rule}' }),
      { grouping: 'space' },
    );
    const out = feed(ev, 0, 200, (s) => snap(s, { dests: [dest(REDIS, s < 125 ? 600 : 120)] }));
    expect(out[1].message).toBe(`${REDIS} calm again (120 new/s) after 2 min 5 s, rule churn_per_destination`);
  });
});

// --- message text ---------------------------------------------------------------------------

describe('the one-line message', () => {
  const learned: Partial<BaselineConfig> = { bucket: 1, window: 30, minSamples: 5 };

  /** The story's incident: a Redis pool opening a connection per request. */
  function incident(sec: number, withProcesses: boolean): ChurnSnapshot {
    const hot = sec >= 20;
    return snap(sec, {
      dests: [
        dest(REDIS, hot ? 2340 : 58.5, { live: hot ? 24_400 : 300, states: { TIME_WAIT: hot ? 23_900 : 250 }, lifetimeP50: 0.02 }),
        dest('10.0.0.9:5432/tcp', 12),
      ],
      sources: [dest('127.0.1.7', hot ? 2340 : 58)],
      processes: withProcesses ? [dest('api-worker[4121]', hot ? 2340 : 58), dest('4200 sidekiq', 3)] : undefined,
      table: hot ? { entries: 40_000, fill: 40_000 / 65_536, growth: 142, timeToFull: 180 } : {},
    });
  }

  it('says who, how much, against what, and how long the table has', () => {
    const ev = new AlertEvaluator({ rules: defaultRules(), baseline: { ...DEFAULT_BASELINE, ...learned } }, { grouping: 'space' });
    const out = feed(ev, 0, 30, (s) => incident(s, true));
    const churn = out.find((a) => a.rule === 'churn_per_destination')!;
    expect(churn.message).toBe(
      'churn to 127.0.0.5:6379/tcp 2 340 new/s (×40 its median), holds 61 % of all entries, table 61 % full, full in ~3 min; top source 127.0.1.7 (pid 4121 api-worker)',
    );
    expect(churn.at).toBe(25);
    expect(churn.hint).toBe('conntrack -L -p tcp -d 127.0.0.5 --dport 6379');
    expect(churn.values).toMatchObject({ value: 2340, threshold: 500, resolve: 400, rate: 'new10', median: 58.5, factor: 40, share: 61, timeWait: 23_900 });
    expect(churn.top).toEqual({
      destinations: [
        { key: REDIS, rate: 2340 },
        { key: '10.0.0.9:5432/tcp', rate: 12 },
      ],
      sources: [{ key: '127.0.1.7', rate: 2340 }],
      processes: [
        { key: 'api-worker[4121]', rate: 2340, pid: 4121, comm: 'api-worker' },
        { key: '4200 sidekiq', rate: 3, pid: 4200, comm: 'sidekiq' },
      ],
    });
  });

  it('leaves the process out when the snapshot has no attribution', () => {
    const ev = new AlertEvaluator({ rules: defaultRules(), baseline: { ...DEFAULT_BASELINE, ...learned } }, { grouping: 'space' });
    const out = feed(ev, 0, 60, (s) => incident(s, false));
    const byRule = new Map(out.map((a) => [a.rule, a]));
    expect(byRule.get('churn_per_destination')!.message).toMatch(/; top source 127\.0\.1\.7$/);
    expect(byRule.get('churn_per_destination')!.top.processes).toBeUndefined();
    expect(byRule.get('churn_baseline')!.message).toBe(
      'churn to 127.0.0.5:6379/tcp 2 340 new/s, ×40 its median of 59/s over 30 s, holds 61 % of all entries, table 61 % full, full in ~3 min; top source 127.0.1.7',
    );
    expect(byRule.get('time_to_full')!.message).toBe(
      'conntrack table full in ~3 min at +142/s, now 61 % full (40 000 / 65 536); top destination 127.0.0.5:6379/tcp 2 340 new/s (23 900 TIME_WAIT); top source 127.0.1.7',
    );
    expect(byRule.get('time_to_full')!.hint).toBe('ctwatch top');
    const tw = byRule.get('time_wait_pileup')!;
    expect(tw.message).toBe(
      '23 900 TIME_WAIT flows to 127.0.0.5:6379/tcp (of 24 400 live, 61 % of all entries), 2 340 new/s, lifetime p50 0.02 s: connections are not being reused; top source 127.0.1.7',
    );
    expect(tw.hint).toBe('conntrack -L -p tcp -d 127.0.0.5 --dport 6379 --state TIME_WAIT');
  });

  it('groups with a narrow no-break space by default', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0 }));
    const [a] = ev.evaluate(snap(0, { dests: [dest(REDIS, 2340)] }));
    expect(a.message).toBe(`churn to ${REDIS} 2\u202f340 new/s, table 1.5 % full`);
  });

  it('names the netns and runs the hint inside it', () => {
    const ev = new AlertEvaluator(only('churn_per_destination', { for: 0 }));
    const [a] = ev.evaluate(snap(0, { netns: 'blue', dests: [dest('[2001:db8::1]:443/tcp', 900)] }));
    expect(a.message).toBe('netns blue: churn to [2001:db8::1]:443/tcp 900 new/s, table 1.5 % full');
    expect(a.netns).toBe('blue');
    expect(a.hint).toBe('ip netns exec blue conntrack -L -f ipv6 -p tcp -d 2001:db8::1 --dport 443');
    const [b] = new AlertEvaluator(only('table_fill', { for: 0 })).evaluate(snap(0, { netns: '/proc/42/ns/net', table: { entries: 60_000 } }));
    expect(b.hint).toBe('ctwatch top --netns /proc/42/ns/net');
  });
});

// --- table rules ----------------------------------------------------------------------------

describe('table rules', () => {
  it('table_fill fires above 80 %, holds between 70 and 80 %, resolves at 70 %', () => {
    const ev = new AlertEvaluator(only('table_fill'), { grouping: 'space' });
    const entries = (s: number): number => Math.round(65536 * (s < 20 ? 0.85 : s < 40 ? 0.75 : 0.65));
    const out = feed(ev, 0, 80, (s) => snap(s, { table: { entries: entries(s) }, dests: [dest(REDIS, 900)], sources: [dest('127.0.1.7', 900)] }));
    expect(out.map((a) => [a.at, a.event, a.subject])).toEqual([
      [10, 'alert', 'table'],
      [50, 'resolved', 'table'],
    ]);
    expect(out[0].message).toBe('conntrack table 85 % full (55 706 / 65 536); top destination 127.0.0.5:6379/tcp 900 new/s; top source 127.0.1.7');
    expect(out[0].values).toMatchObject({ value: 85, threshold: 80, resolve: 70, entries: 55_706, max: 65_536 });
    expect(out[1].message).toBe('resolved: conntrack table back to 65 % full (≤ 70 %) after 50 s');
  });

  it('table_fill keeps its state while the table size is unknown', () => {
    const ev = new AlertEvaluator(only('table_fill', { for: 0, resolveFor: 0 }));
    const out = feed(ev, 0, 20, (s) => snap(s, { table: s < 5 ? { entries: 60_000 } : { entries: null, max: null } }));
    expect(out.map((a) => a.event)).toEqual(['alert']);
    expect(ev.active()).toHaveLength(1);
  });

  it('time_to_full fires when the projection is under 5 min and resolves when growth stops', () => {
    const ev = new AlertEvaluator(only('time_to_full'), { grouping: 'space' });
    const out = feed(ev, 0, 100, (s) =>
      snap(s, { table: s < 50 ? { entries: 30_000, growth: 300, timeToFull: 118 } : { entries: 30_000, growth: -5, timeToFull: null } }),
    );
    expect(out.map((a) => [a.at, a.event])).toEqual([
      [30, 'alert'],
      [60, 'resolved'],
    ]);
    expect(out[0].severity).toBe('critical');
    expect(out[0].message).toBe('conntrack table full in ~2 min at +300/s, now 46 % full (30 000 / 65 536)');
    expect(out[1].message).toBe('resolved: conntrack table no longer filling (46 % full (30 000 / 65 536)) after 1 min');
  });

  it('kernel_drops fires on an increase, ignores counter resets, resolves after a quiet minute', () => {
    const ev = new AlertEvaluator(only('kernel_drops'), { grouping: 'space' });
    const drop = (s: number): number => (s < 5 ? 100 : s < 10 ? 100 + (s - 4) * 1234 : s < 15 ? 6270 : 3);
    const out = feed(ev, 0, 120, (s) => snap(s, { table: { entries: 65_536, kernel: { drop: drop(s), early_drop: s >= 5 ? 56 : 0, insert_failed: 0, found: s } } }));
    expect(out.map((a) => [a.at, a.event])).toEqual([
      [5, 'alert'],
      // last increase at 9; the drop at 15 is a reset, not an increase; a quiet minute from 10
      [70, 'resolved'],
    ]);
    expect(out[0].message).toBe('kernel conntrack dropping: +1 234 drop, +56 early_drop in 1 s, table 100 % full (65 536 / 65 536)');
    expect(out[0].values).toMatchObject({ value: 1290, drop: 1234, early_drop: 56, insert_failed: 0 });
    expect(out[1].message).toBe('resolved: no kernel conntrack drops for 1 min after 1 min 5 s');
  });

  it('keeps kernel counters apart per netns', () => {
    const ev = new AlertEvaluator(only('kernel_drops'));
    const out: Alert[] = [];
    // two namespaces with very different absolute counters, interleaved: no increase in either
    for (let s = 0; s < 10; s++) {
      out.push(...ev.evaluate(snap(s, { netns: 'a', table: { kernel: { drop: 5, early_drop: 0, insert_failed: 0 } } })));
      out.push(...ev.evaluate(snap(s, { netns: 'b', table: { kernel: { drop: 9000, early_drop: 0, insert_failed: 0 } } })));
    }
    expect(out).toEqual([]);
    const [a] = ev.evaluate(snap(10, { netns: 'b', table: { kernel: { drop: 9001, early_drop: 0, insert_failed: 0 } } }));
    expect(a).toMatchObject({ netns: 'b', subject: 'table', rule: 'kernel_drops' });
  });
});

// --- baseline -------------------------------------------------------------------------------

describe('churn_baseline', () => {
  const fast: Partial<BaselineConfig> = { bucket: 1, window: 60, minSamples: 20 };

  it('does not fire on a high but stable rate once learned (no false positive)', () => {
    const ev = new AlertEvaluator(only('churn_baseline', {}, fast));
    // 3 000/s with ±10 % wobble and a 2× spike for 5 s every 40 s: busy, but normal for it
    const rate = (s: number): number => 3000 * (1 + 0.1 * Math.sin(s / 3)) * (s % 40 < 5 ? 2 : 1);
    expect(feed(ev, 0, 600, (s) => snap(s, { dests: [dest(REDIS, rate(s))] }))).toEqual([]);
  });

  it('says nothing before it has learned, however high the rate', () => {
    const ev = new AlertEvaluator(only('churn_baseline', { for: 0 }, fast));
    expect(feed(ev, 0, 20, (s) => snap(s, { dests: [dest(REDIS, s < 10 ? 50 : 5000)] }))).toEqual([]);
  });

  it('fires on a jump against the learned median, after `for`', () => {
    const ev = new AlertEvaluator(only('churn_baseline', { for: 10 }, fast));
    const out = feed(ev, 0, 100, (s) => snap(s, { dests: [dest(REDIS, s < 60 ? 60 : 2400)] }));
    expect(out.map((a) => [a.at, a.event, a.values.factor])).toEqual([[70, 'alert', 40]]);
  });

  it('needs the minimum absolute rate too', () => {
    const ev = new AlertEvaluator(only('churn_baseline', { for: 0 }, fast));
    // ×20, but only 40 new/s
    expect(feed(ev, 0, 100, (s) => snap(s, { dests: [dest(REDIS, s < 60 ? 2 : 40)] }))).toEqual([]);
  });

  it('does not learn the anomaly while alerting, but accepts a step that lasts a whole window', () => {
    const ev = new AlertEvaluator(only('churn_baseline', { for: 0, resolveFor: 0 }, fast));
    const out = feed(ev, 0, 300, (s) => snap(s, { dests: [dest(REDIS, s < 60 ? 100 : 1000)] }));
    expect(out.map((a) => a.event)).toEqual(['alert', 'resolved']);
    // frozen for the 60 s window, then about half a window of learning moves the median
    expect(out[1].at).toBeGreaterThan(120);
    expect(out[1].at).toBeLessThan(200);
  });
});

describe('BaselineTracker', () => {
  it('keeps a bounded number of keys, forgetting the least recently seen', () => {
    const b = new BaselineTracker({ ...DEFAULT_BASELINE, maxKeys: 10, bucket: 1, window: 10, minSamples: 1 });
    for (let i = 0; i < 50; i++) b.observe(`k${i}`, us(0), i);
    b.observe('k45', us(1), 1); // refreshed: now the most recent
    for (let i = 50; i < 59; i++) b.observe(`k${i}`, us(1), i);
    expect(b.size).toBe(10);
    expect(b.median('k45', us(2))).toBe(23);
    expect(b.median('k40', us(2))).toBeNull();
  });

  it('medians the last window / bucket completed buckets, never the one being filled', () => {
    const b = new BaselineTracker({ ...DEFAULT_BASELINE, bucket: 1, window: 5, minSamples: 3 });
    for (let s = 0; s < 5; s++) b.observe('k', us(s), 1000);
    expect(b.median('k', us(4))).toBe(1000);
    for (let s = 5; s < 10; s++) b.observe('k', us(s), 10);
    // buckets 5..9 fill the ring; the bucket being filled at 10 does not count
    b.observe('k', us(10), 99_999);
    expect(b.median('k', us(10))).toBe(10);
    // once its time is over it does (replacing bucket 5): 10 10 10 10 99 999
    expect(b.median('k', us(11))).toBe(10);
  });

  it('keeps what it learned through a pause instead of letting it expire', () => {
    const b = new BaselineTracker({ ...DEFAULT_BASELINE, bucket: 1, window: 5, minSamples: 3 });
    for (let s = 0; s < 5; s++) b.observe('k', us(s), 40);
    for (let s = 5; s < 500; s++) b.observe('k', us(s), 9000, false);
    expect(b.median('k', us(500))).toBe(40);
  });

  it('needs minSamples buckets before it has an opinion', () => {
    const b = new BaselineTracker({ ...DEFAULT_BASELINE, bucket: 1, window: 10, minSamples: 2 });
    b.observe('k', us(0), 5);
    b.observe('k', us(1), 5);
    expect(b.median('k', us(1))).toBeNull();
    expect(b.median('k', us(2))).toBe(5);
    expect(b.median('other', us(2))).toBeNull();
  });
});

// --- reload and determinism ------------------------------------------------------------------

describe('reload', () => {
  it('keeps active alerts of rules still defined, and resolves those of removed rules', () => {
    const rules = defaultRules().map((r) => ({ ...r, for: 0 }));
    const ev = new AlertEvaluator({ rules, baseline: DEFAULT_BASELINE });
    const hot = (s: number): ChurnSnapshot => snap(s, { dests: [dest(REDIS, 900)], table: { entries: 60_000 } });
    expect(feed(ev, 0, 1, hot).map((a) => a.rule).sort()).toEqual(['churn_per_destination', 'table_fill']);

    const kept = rules.filter((r) => r.kind !== 'table_fill').map((r) => (r.kind === 'churn_per_destination' ? { ...r, threshold: 800, resolve: 700 } : r));
    const resolved = ev.reload({ rules: kept, baseline: DEFAULT_BASELINE });
    expect(resolved).toHaveLength(1);
    expect(resolved[0]).toMatchObject({ event: 'resolved', rule: 'table_fill', time: us(0), since: us(0) });
    expect(resolved[0].message).toMatch(/^resolved: rule table_fill removed or disabled by a reload; it said: conntrack table 92 % full/);

    // still above the new threshold: stays active without firing again
    expect(feed(ev, 1, 10, hot)).toEqual([]);
    expect(ev.active().map((a) => a.rule)).toEqual(['churn_per_destination']);
    // the new resolve threshold applies
    const out = feed(ev, 10, 30, (s) => snap(s, { dests: [dest(REDIS, 650)] }));
    expect(out.map((a) => [a.event, a.at])).toEqual([['resolved', 20]]);
  });
});

describe('determinism', () => {
  it('replaying the same snapshots gives the same alerts, without reading the clock', () => {
    const make = (s: number): ChurnSnapshot =>
      snap(s, {
        dests: [dest(REDIS, s < 100 ? 60 : s < 200 ? 3000 : 50, { states: { TIME_WAIT: s < 100 ? 100 : 4000 } })],
        sources: [dest('127.0.1.7', 60)],
        table: { entries: s < 150 ? 20_000 : 60_000, growth: s < 150 ? 0 : 100, timeToFull: s < 150 ? null : 55, kernel: { drop: Math.max(0, s - 180), early_drop: 0, insert_failed: 0 } },
      });
    const rs: RuleSet = { rules: defaultRules(), baseline: { ...DEFAULT_BASELINE, bucket: 1, window: 60, minSamples: 20 } };
    const nowSpy = vi.spyOn(Date, 'now').mockImplementation(() => {
      throw new Error('the evaluator read the wall clock');
    });
    const first = feed(new AlertEvaluator(rs), 0, 400, make);
    const second = feed(new AlertEvaluator(rs), 0, 400, make);
    const clockReads = nowSpy.mock.calls.length;
    nowSpy.mockRestore();
    expect(clockReads).toBe(0);
    expect(first.length).toBeGreaterThanOrEqual(8);
    expect(new Set(first.map((a) => a.rule)).size).toBe(6);
    expect(second).toEqual(first);
  });
});

describe('describe helpers', () => {
  it('builds hints from the parts written beside destination keys, never from the key', () => {
    const pairs: [string, Destination, string][] = [
      ['127.0.0.5:6379/tcp', { family: 'ipv4', dst: '127.0.0.5', dport: 6379, proto: 'tcp' }, 'conntrack -L -p tcp -d 127.0.0.5 --dport 6379'],
      ['[2001:db8::1]:443/tcp', { family: 'ipv6', dst: '2001:db8::1', dport: 443, proto: 'tcp' }, 'conntrack -L -f ipv6 -p tcp -d 2001:db8::1 --dport 443'],
      ['10.0.0.1/icmp', { family: 'ipv4', dst: '10.0.0.1', proto: 'icmp' }, 'conntrack -L -p icmp -d 10.0.0.1'],
      ['2001:db8::1/icmpv6', { family: 'ipv6', dst: '2001:db8::1', proto: 'icmpv6' }, 'conntrack -L -f ipv6 -p icmpv6 -d 2001:db8::1'],
    ];
    for (const [key, parts, hint] of pairs) {
      expect(destinationOf(parts)).toBe(key);
      expect(destinationParts({ ...parts, dport: parts.dport })).toEqual(parts);
      expect(conntrackHint(parts, undefined)).toBe(hint);
    }
    // a row with its key only (read back from an older line): the live view, not a guess
    expect(conntrackHint({ key: 'tcp' } as Partial<Destination>, undefined)).toBe('ctwatch top');
  });

  it('names processes by the pid and command written beside their key', () => {
    const p = { pid: 4121, comm: 'api-worker' };
    expect(processKey(p)).toBe('api-worker[4121]');
    expect(processParts(p)).toEqual({ pid: 4121, comm: 'api-worker' });
    const s = snap(0, { processes: [dest('api-worker[4121]', 10), { key: '4121 api-worker', ...rates(2), live: 1 }] });
    // a key spelled otherwise, without fields beside it, is shown as it is: nothing is read from it
    expect(topOf(s, 5).processes).toEqual([
      { key: 'api-worker[4121]', rate: 10, pid: 4121, comm: 'api-worker' },
      { key: '4121 api-worker', rate: 2 },
    ]);
    expect(topSourceText(s)).toBe('top process pid 4121 api-worker');
  });
});

describe('leak_fill (issue 16: the first alert within 2 s of a leak that would fill the table)', () => {
  const leakRule = () => only('leak_fill');
  const processes = [dest('api-worker[4121]', 2000)];
  const groups = [dest('unit:api.service', 2000)];
  const tableAt = (entries: number) => ({ entries, max: 262_144 });

  it('fires on the first whole second of a 2000/s leak, leading with who, the table fill and the time to full', () => {
    const ev = new AlertEvaluator(leakRule(), { grouping: 'space' });
    // second 0 first sees the destination (300 flows into the leak); second 1 has 2000 more live
    const live = (s: number) => (s === 0 ? 300 : 300 + s * 2000);
    const out = feed(ev, 0, 4, (s) =>
      snap(s, {
        dests: [dest(REDIS, 2000, { end1: 0, live: live(s) })],
        table: tableAt(52_000 + live(s)),
        sources: [dest('127.0.1.7', 2000)],
        processes,
      }),
    );
    const withGroups = new AlertEvaluator(leakRule(), { grouping: 'space' });
    const [a] = feed(withGroups, 0, 2, (s) => {
      const x = snap(s, { dests: [dest(REDIS, 2000, { end1: 0, live: live(s) })], table: tableAt(52_000 + live(s)), processes });
      x.groups = groups;
      return x;
    });
    expect(out.map((x) => [x.at, x.rule, x.event])).toEqual([[1, 'leak_fill', 'alert']]);
    expect(out[0].severity).toBe('critical');
    expect(out[0].values).toMatchObject({ growth: 2000, stayed: 2000, burst: 1500, minRate: 500 });
    expect(a.message).toBe('api-worker (pid 4121, api.service) opens 2 000 new connections/s to 127.0.0.5:6379/tcp — table 21 % full, full in ~2 min');
    expect(a.values.value).toBe(104);
  });

  it('a slower leak fires once what it added passes the burst; a refill below the burst never does', () => {
    const ev = new AlertEvaluator(leakRule());
    // 600/s: 600, 1200, 1800 added: the third whole second
    const out = feed(ev, 0, 6, (s) => snap(s, { dests: [dest(REDIS, 600, { end1: 0, live: 10 + s * 600 })], table: tableAt(10_000 + s * 600) }));
    expect(out.map((x) => [x.at, x.event])).toEqual([[3, 'alert']]);
    // a pool of 1200 refilling at 4000/s as its rate reads (first seen 0.3 s before the window
    // ended), split over two snapshots, then held: 1200 stayed, under the burst
    const pool = [0, 500, 1200, 1200, 1200, 1200];
    expect(feed(ev, 10, 16, (s) => snap(s, { dests: [dest('10.0.0.9:5432/tcp', 4000, { end1: 0, live: pool[s - 10] })], table: tableAt(20_000) }))).toEqual([]);
    // the same pool refilling again after it closed into TIME_WAIT: each refill is its own run
    const again = [1200, 1800, 2400, 2400, 2400, 3000, 3600, 3600];
    expect(feed(ev, 20, 28, (s) => snap(s, { dests: [dest('10.0.0.9:5432/tcp', 4000, { end1: 0, live: again[s - 20] })], table: tableAt(20_000) }))).toEqual([]);
  });

  it('does not fire on pooled traffic or churn that ends as fast as it opens, and resolves when the flows stop staying', () => {
    const ev = new AlertEvaluator(leakRule());
    // pooled: a high request rate on 4 connections opens next to nothing
    expect(feed(ev, 0, 10, (s) => snap(s, { dests: [dest(REDIS, 3, { end1: 3, live: 4 })], table: tableAt(10_000) }))).toEqual([]);
    // churn that ends as fast as it opens does not fill the table, whatever its rate
    expect(feed(ev, 20, 30, (s) => snap(s, { dests: [dest('10.0.0.9:443/tcp', 3000, { end1: 3000, live: 900 })], table: tableAt(10_000) }))).toEqual([]);
    // a leak of 1000/s, then its flows end as fast as new ones come (live stops growing at second 40)
    const live = (s: number) => 100 + Math.min(s, 40) * 1000 - 30 * 1000;
    const out = feed(ev, 30, 60, (s) => snap(s, { dests: [dest(REDIS, 1000, { end1: s < 40 ? 0 : 1000, live: live(s) })], table: tableAt(30_000) }));
    expect(out.map((x) => [x.at, x.event])).toEqual([
      [32, 'alert'],
      [51, 'resolved'],
    ]);
    expect(out[0].message).toMatch(/^something opens 1.000 new connections\/s to 127\.0\.0\.5:6379\/tcp — table 11 % full, full in ~4 min$/);
  });

  it('a snapshot time far from the last starts the destination afresh; a growing destination near a full table', () => {
    const ev = new AlertEvaluator(leakRule());
    // 2000 a second, but snapshots 20 s apart: each is the first to see it again, no verdict
    expect(feed(ev, 0, 3, (s) => snap(s * 20, { dests: [dest(REDIS, 2000, { end1: 0, live: s * 40_000 })], table: tableAt(1000) }))).toEqual([]);
    // growing 500/s for 4 s, 2000 added, but the table has room for 2 h of it: quiet
    expect(feed(ev, 100, 106, (s) => snap(s, { dests: [dest('10.1.0.1:80/tcp', 500, { end1: 0, live: (s - 100) * 500 })], table: { entries: 1000, max: 4_000_000 } }))).toEqual([]);
  });

  it('gives no verdict without the table size', () => {
    const ev = new AlertEvaluator(leakRule());
    expect(feed(ev, 0, 5, (s) => snap(s, { dests: [dest(REDIS, 5000, { end1: 0, live: s * 5000 })], table: { entries: null, max: null } }))).toEqual([]);
  });
});

describe('snat_port_exhaustion', () => {
  const KEY = '192.0.2.1 → 10.0.0.5:80/tcp';
  const withPorts = (sec: number, ports: number | null): ChurnSnapshot => {
    const s = snap(sec);
    s.snat = {
      range: { low: 40000, high: 40099, from: 'nft rule' },
      pairs: ports === null ? [] : [{ key: KEY, src: '192.0.2.1', destination: '10.0.0.5:80/tcp', ports, share: ports / 100 }],
      complete: true,
    };
    return s;
  };

  it('fires above 80 % of the port range for one pair and resolves when its entries go', () => {
    const ev = new AlertEvaluator(only('snat_port_exhaustion', { for: 0, resolveFor: 0 }));
    const out = feed(ev, 0, 6, (sec) => withPorts(sec, sec < 2 ? 50 : sec < 4 ? 85 : null));
    expect(out.map((a) => [a.event, a.at])).toEqual([['alert', 2], ['resolved', 4]]);
    expect(out[0].subject).toBe(KEY);
    expect(out[0].message).toContain(`SNAT ${KEY} uses 85 of 100 source ports (85 % of the SNAT port range 40000-40099, nft rule)`);
  });

  it('cannot judge without the port range', () => {
    const ev = new AlertEvaluator(only('snat_port_exhaustion', { for: 0 }));
    const out = feed(ev, 0, 3, (sec) => ({ ...withPorts(sec, 99), snat: { ...withPorts(sec, 99).snat!, range: null } }));
    expect(out).toEqual([]);
  });
});

// --- QUIET: the firing condition alone decides a subject nothing is remembered of ---------------

describe('a destination nothing is remembered of is judged on its firing condition alone', () => {
  const kinds: RuleKind[] = ['churn_per_destination', 'churn_baseline', 'time_wait_pileup', 'leak_fill'];
  for (const kind of kinds) {
    it(`${kind}: QUIET exactly when the full judgement does not fire, the same observation when it does`, () => {
      const rule = defaultRules().find((r) => r.kind === kind)!;
      // two of everything a judgement remembers, so the quiet and the full one see the same history
      const learned: BaselineConfig = { ...DEFAULT_BASELINE, bucket: 1, window: 30, minSamples: 5 };
      const baselines = [new BaselineTracker(learned), new BaselineTracker(learned)];
      const leaks = [new LeakRuns(), new LeakRuns()];
      let fired = 0;
      let quietSeen = 0;
      for (let sec = 0; sec < 30; sec++) {
        // a destination learned at a low rate whose rate, live entries and TIME_WAIT count then
        // climb, and collapse
        const n = sec < 12 ? 10 : sec < 22 ? (sec - 10) * (sec - 10) * 40 : 5;
        const d = dest(REDIS, n, { live: n * 3, states: { TIME_WAIT: n * 2 } });
        const s = snap(sec, { dests: [d], table: { entries: 1000 + n * 3, max: 65536 } });
        const [full, quiet] = [0, 1].map((i) => {
          const ctx: Context = { s, ns: '', t: s.time, median: (key) => baselines[i].median(`\0${key}`, s.time), kernel: null };
          const o = observeDestination(rule, d, ctx, { grouping: 'thin', baseline: baselines[i].config, leakRuns: () => leaks[i] }, i === 1);
          baselines[i].observe(`\0${REDIS}`, s.time, d.new10);
          return o;
        });
        if (full?.fire) {
          fired++;
          expect(quiet).not.toBe(QUIET);
          const words = (o: Observation) => ({ fire: o.fire, clear: o.clear, values: o.values, value: o.value(), message: o.message(), resolved: o.resolved(), hint: o.hint });
          expect(words(quiet!)).toEqual(words(full));
        } else {
          if (quiet === QUIET) quietSeen++;
          expect(quiet === QUIET || quiet === null).toBe(true);
          if (quiet === null) expect(full).toBeNull();
        }
      }
      expect(fired).toBeGreaterThan(0);
      expect(quietSeen).toBeGreaterThan(0);
    });
  }
});
