/**
 * Turns the engine's once-a-second snapshots into alerts. Pure apart from its own memory: time is
 * the snapshot's `time`, never the wall clock, so replaying a recording gives the same alerts.
 *
 * Each rule looks at a snapshot and says, per subject (a destination, or 'table'), whether its
 * firing condition holds and whether its resolve condition holds. One state machine, shared by all
 * rules, adds `for`, hysteresis (the two conditions differ), `resolve_for`, cooldown and dedup.
 * Snapshots from several network namespaces may be interleaved: all memory is kept per netns.
 *
 * Each destination rule judges its own candidates, not the snapshot's top-N list (which decoys
 * churning a little faster could fill): given the engine's figures (ChurnEngine.figures), every
 * destination with rate figures, or for a pile-up every destination with that many flows in the
 * state, and every subject pending or firing, on its exact figures. `ignore`/`match` apply before
 * anything else. A subject the figures say nothing about is unknown, and unknown never resolves.
 */
import type { ChurnSnapshot, Destination, DestinationChurn, DestinationFigure, DestinationFigures } from '../churn/snapshot.js';
import type { Alert } from './types.js';
import { BaselineTracker } from './baseline.js';
import { LeakRuns } from './leak-fill.js';
import {
  conntrackHint,
  topDestinationText,
  topHint,
  topOf,
  topSourceText,
  whoText,
} from './describe.js';
import {
  formatCount,
  formatDuration,
  formatFactor,
  formatLifetime,
  formatPercent,
  formatRate,
  round,
  type Grouping,
} from './format.js';
import { compileFilter, defaultConfig, type AlertConfig, type Rule } from './rules.js';

export interface EvaluatorOptions {
  /** thousands separator in messages; default 'thin' (U+202F) */
  grouping?: Grouping;
  /** heavy hitters listed in `top`; default 5 */
  topN?: number;
}

export type RuleSet = Pick<AlertConfig, 'rules' | 'baseline'>;

type Values = Alert['values'];

/** What one rule sees for one subject in one snapshot. Texts are built only when needed. */
interface Observation {
  fire: boolean;
  clear: boolean;
  values: Values;
  /** the primary figure, for the `{value}` placeholder */
  value: () => string;
  message: () => string;
  /** the resolved line without the "after ..." tail */
  resolved: () => string;
  hint: string;
  /** a destination subject's parts, kept for when it is gone from the snapshot (unreplied_pileup) */
  destination?: Partial<Destination>;
}

interface State {
  ns: string;
  subject: string;
  /** µs since the firing condition has held continuously (while not firing) */
  pendingSince?: number;
  firing?: { since: number; clearSince?: number; alert: Alert };
  cooldownUntil?: number;
  /** the subject's parts as last seen (a destination), for its hint once it left the lists */
  destination?: Partial<Destination>;
}

interface Compiled {
  rule: Rule;
  accepts: (key: string) => boolean;
}

/** What every rule may need from one snapshot, computed once. */
interface Context {
  s: ChurnSnapshot;
  ns: string;
  t: number;
  /** the destination's learned median rate, null while unknown */
  median: (key: string) => number | null;
  /** kernel counter increases since the previous snapshot of this netns, and over how long */
  kernel: { deltas: Record<string, number>; seconds: number } | null;
  /** figures beyond the snapshot's top-N; absent (unit tests, old callers): the snapshot's list only */
  figures?: DestinationFigures;
}

const US = 1e6;
const round1 = (n: number): number => round(n, 1);
// factors below 1 (a collapse) need the second decimal
const round2 = (n: number): number => round(n, 2);

export class AlertEvaluator {
  private compiled: Compiled[] = [];
  // set by install(), which the constructor calls
  private baseline!: BaselineTracker;
  /** rule name -> (netns \0 subject) -> state; only subjects with something to remember */
  private readonly states = new Map<string, Map<string, State>>();
  private readonly lastKernel = new Map<string, { time: number; kernel: Record<string, number> }>();
  private readonly lastTime = new Map<string, number>();
  /** leak_fill rule name -> its runs (./leak-fill.ts) */
  private readonly leaks = new Map<string, LeakRuns>();
  private readonly grouping: Grouping;
  private readonly topN: number;

  constructor(config: RuleSet = defaultConfig(), options: EvaluatorOptions = {}) {
    this.grouping = options.grouping ?? 'thin';
    this.topN = options.topN ?? 5;
    this.install(config);
  }

  private install(config: RuleSet): void {
    this.compiled = config.rules
      .filter((r) => r.enabled)
      .map((rule) => ({ rule, accepts: 'match' in rule ? compileFilter(rule) : () => true }));
    // undefined on the first install
    if (!this.baseline?.reconfigure(config.baseline)) this.baseline = new BaselineTracker(config.baseline);
  }

  /**
   * Alerts fired or resolved by this snapshot, in rule order. `figures` are the engine's figures
   * at the snapshot's time (ChurnEngine.figures), so rules see beyond the top-N list.
   */
  evaluate(s: ChurnSnapshot, figures?: DestinationFigures): Alert[] {
    const ns = s.netns ?? '';
    const t = s.time;
    const ctx: Context = {
      s,
      ns,
      t,
      median: (key) => this.baseline.median(`${ns}\0${key}`, t),
      kernel: this.kernelDeltas(ns, s),
      figures,
    };
    const out: Alert[] = [];
    for (const c of this.compiled) {
      const seen = this.observe(c, ctx);
      let states = this.states.get(c.rule.name);
      for (const [subject, o] of seen) {
        const id = `${ns}\0${subject}`;
        let st = states?.get(id);
        if (!st) {
          if (!o?.fire) continue;
          st = { ns, subject };
          if (!states) this.states.set(c.rule.name, (states = new Map()));
          states.set(id, st);
        }
        if (o) this.step(c.rule, st, o, ctx, out);
        if (st.pendingSince === undefined && !st.firing && (st.cooldownUntil ?? 0) <= t) states!.delete(id);
      }
    }
    this.learn(ctx);
    this.lastTime.set(ns, t);
    return out;
  }

  /**
   * Swaps the rule set. Alerts of rules that keep their name and kind keep their state (a firing
   * alert stays firing, without firing again). Firing alerts of rules that are gone or disabled are
   * resolved, so a receiver is not left with an incident nobody will close.
   */
  reload(config: RuleSet): Alert[] {
    const next = new Map(config.rules.filter((r) => r.enabled).map((r) => [r.name, r] as const));
    const out: Alert[] = [];
    for (const c of this.compiled) {
      if (next.get(c.rule.name)?.kind === c.rule.kind) continue;
      for (const st of this.states.get(c.rule.name)?.values() ?? []) {
        if (!st.firing) continue;
        const a = st.firing.alert;
        out.push({
          ...a,
          event: 'resolved',
          time: this.lastTime.get(st.ns) ?? a.time,
          message: `resolved: rule ${c.rule.name} removed or disabled by a reload; it said: ${a.message}`,
        });
      }
      this.states.delete(c.rule.name);
      this.leaks.delete(c.rule.name);
    }
    this.install(config);
    return out;
  }

  /**
   * Destinations some rule is judging in this netns (pending or firing): the engine counts them on
   * their own (ChurnEngine.watch) so their figures stay exact when they leave the top-K.
   */
  watching(netns?: string): string[] {
    const ns = netns ?? '';
    const out = new Set<string>();
    for (const c of this.compiled) {
      if (!DESTINATION_KINDS.has(c.rule.kind)) continue;
      for (const st of this.states.get(c.rule.name)?.values() ?? []) {
        if (st.ns === ns && (st.firing || st.pendingSince !== undefined)) out.add(st.subject);
      }
    }
    return [...out];
  }

  /** Alerts firing now, for a status view. */
  active(): Alert[] {
    const out: Alert[] = [];
    for (const states of this.states.values()) {
      for (const st of states.values()) if (st.firing) out.push(st.firing.alert);
    }
    return out;
  }

  private step(rule: Rule, st: State, o: Observation, ctx: Context, out: Alert[]): void {
    const t = ctx.t;
    if (o.destination) st.destination = o.destination;
    if (st.firing) {
      if (!o.clear) {
        st.firing.clearSince = undefined;
        return;
      }
      st.firing.clearSince ??= t;
      if (t - st.firing.clearSince < rule.resolveFor * US) return;
      const since = st.firing.since;
      const lasted = formatDuration((t - since) / US, false);
      const message = rule.resolvedMessage
        ? fillTemplate(rule.resolvedMessage, {
            rule: rule.name,
            subject: st.subject,
            severity: rule.severity,
            netns: ctx.s.netns ?? '',
            value: o.value(),
            duration: lasted,
          })
        : `${nsPrefix(ctx.s)}${o.resolved()} after ${lasted}`;
      out.push(this.alert('resolved', rule, st, since, message, o, ctx));
      st.firing = undefined;
      st.pendingSince = undefined;
      st.cooldownUntil = t + rule.cooldown * US;
      return;
    }
    if (!o.fire) {
      st.pendingSince = undefined;
      return;
    }
    st.pendingSince ??= t;
    if (t - st.pendingSince < rule.for * US || t < (st.cooldownUntil ?? 0)) return;
    const alert = this.alert('alert', rule, st, st.pendingSince, nsPrefix(ctx.s) + o.message(), o, ctx);
    st.firing = { since: st.pendingSince, alert };
    st.pendingSince = undefined;
    st.cooldownUntil = undefined;
    out.push(alert);
  }

  private alert(
    event: Alert['event'],
    rule: Rule,
    st: State,
    since: number,
    message: string,
    o: Observation,
    ctx: Context,
  ): Alert {
    const a: Alert = {
      event,
      time: ctx.t,
      rule: rule.name,
      severity: rule.severity,
      subject: st.subject,
      since,
      message,
      values: o.values,
      top: topOf(ctx.s, this.topN),
      hint: o.hint,
    };
    if (ctx.s.netns !== undefined) a.netns = ctx.s.netns;
    return a;
  }

  private leakRuns(rule: string): LeakRuns {
    let runs = this.leaks.get(rule);
    if (!runs) this.leaks.set(rule, (runs = new LeakRuns()));
    return runs;
  }

  private kernelDeltas(ns: string, s: ChurnSnapshot): Context['kernel'] {
    const prev = this.lastKernel.get(ns);
    const kernel = s.table.kernel ?? {};
    if (Object.keys(kernel).length === 0) return null;
    this.lastKernel.set(ns, { time: s.time, kernel });
    if (!prev || s.time <= prev.time) return null;
    const deltas: Record<string, number> = {};
    for (const [name, v] of Object.entries(kernel)) {
      const before = prev.kernel[name];
      // a counter that went down was reset (collector or source restarted): no increase to report
      if (before !== undefined && v >= before) deltas[name] = v - before;
    }
    return { deltas, seconds: (s.time - prev.time) / US };
  }

  private learn(ctx: Context): void {
    const windowUs = this.baseline.config.window * US;
    const rate = this.baseline.config.rate;
    const frozen = new Set<string>();
    for (const c of this.compiled) {
      if (c.rule.kind !== 'churn_baseline') continue;
      for (const st of this.states.get(c.rule.name)?.values() ?? []) {
        const since = st.firing?.since ?? st.pendingSince;
        // a step change that lasts a whole window is the new normal: learn it, and let the alert resolve
        if (st.ns === ctx.ns && since !== undefined && ctx.t - since < windowUs) frozen.add(st.subject);
      }
    }
    for (const d of ctx.s.destinations) {
      this.baseline.observe(`${ctx.ns}\0${d.key}`, ctx.t, d[rate], !frozen.has(d.key));
    }
  }

  /**
   * Per subject: an observation, or null when the snapshot cannot say (table stats missing), which
   * leaves that subject's state as it is.
   */
  private observe(c: Compiled, ctx: Context): Map<string, Observation | null> {
    const out = new Map<string, Observation | null>();
    const r = c.rule;
    const s = ctx.s;
    if (r.kind === 'table_fill' || r.kind === 'time_to_full' || r.kind === 'kernel_drops') {
      out.set('table', this.observeTable(r, ctx));
      return out;
    }
    if (r.kind === 'unreplied_pileup') return this.observeUnreplied(c, r, ctx);
    if (r.kind === 'snat_port_exhaustion') return this.observeSnat(r, ctx);
    // The rule's own candidates, filtered before anything is ranked or judged.
    const candidates = new Set<string>();
    const figures = ctx.figures;
    if (!figures) for (const d of s.destinations) candidates.add(d.key);
    else if (r.kind === 'time_wait_pileup') for (const key of figures.inState(r.state, r.threshold)) candidates.add(key);
    else for (const key of figures.keys()) candidates.add(key);
    // every subject pending or firing is judged again, wherever it ranks now
    for (const st of this.states.get(r.name)?.values() ?? []) if (st.ns === ctx.ns) candidates.add(st.subject);
    const listed = figures ? undefined : new Map(s.destinations.map((d) => [d.key, d] as const));
    for (const key of candidates) {
      if (!c.accepts(key)) continue;
      const d: DestinationFigure | DestinationChurn | null | undefined = figures ? figures.get(key) : listed!.get(key);
      // unknown (no figures at all, or no rate for a churn rule) leaves the state as it is: it
      // never resolves an alert, and never fires one
      if (!d || (r.kind !== 'time_wait_pileup' && 'rated' in d && !d.rated)) out.set(key, null);
      else out.set(key, this.observeDestination(r, d, ctx));
    }
    return out;
  }

  /**
   * snat_port_exhaustion: per (translated source, destination) pair, the share of the local port
   * range its live entries use. A pair pending or firing that is gone from the list uses none when
   * the snapshot's SNAT view lists every pair (fewer than its top N); else it cannot be judged.
   */
  private observeSnat(r: Extract<Rule, { kind: 'snat_port_exhaustion' }>, ctx: Context): Map<string, Observation | null> {
    const out = new Map<string, Observation | null>();
    const s = ctx.s;
    const v = s.snat;
    const known = new Map((v?.pairs ?? []).map((p) => [p.key, p] as const));
    const subjects = new Set<string>(known.keys());
    for (const st of this.states.get(r.name)?.values() ?? []) if (st.ns === ctx.ns) subjects.add(st.subject);
    const g = this.grouping;
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
          `SNAT ${key} uses ${formatCount(ports, g)} of ${formatCount(size, g)} source ports (${formatPercent(ports / size)} of ip_local_port_range ${range.low}-${range.high}): new connections to it will fail once they are gone`,
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
  private observeUnreplied(c: Compiled, r: Extract<Rule, { kind: 'unreplied_pileup' }>, ctx: Context): Map<string, Observation | null> {
    const out = new Map<string, Observation | null>();
    const s = ctx.s;
    const u = s.unreplied;
    const known = new Map((u?.destinations ?? []).map((d) => [d.key, d] as const));
    const subjects = new Set<string>(known.keys());
    const remembered = new Map<string, Partial<Destination> | undefined>();
    for (const st of this.states.get(r.name)?.values() ?? []) {
      if (st.ns !== ctx.ns) continue;
      subjects.add(st.subject);
      remembered.set(st.subject, st.destination);
    }
    // the unreplied rows name destinations by key: their parts come from the engine's figures, the
    // snapshot's destination rows, or what this rule saw of them before
    const listed = new Map(s.destinations.map((d) => [d.key, d] as const));
    const g = this.grouping;
    for (const key of subjects) {
      if (!c.accepts(key)) continue;
      const parts = [ctx.figures?.get(key), listed.get(key), remembered.get(key)].find((p) => p?.dst !== undefined) ?? undefined;
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

  private observeDestination(r: Rule, d: DestinationChurn, ctx: Context): Observation | null {
    const g = this.grouping;
    const s = ctx.s;
    const median = ctx.median(d.key);
    const entries = s.table.entries ?? s.live;
    const share = entries > 0 ? d.live / entries : null;
    const context: Values = {
      live: d.live,
      timeWait: d.states?.TIME_WAIT ?? null,
      share: share === null ? null : round1(share * 100),
      median: median === null ? null : round1(median),
      fill: s.table.fill === null ? null : round1(s.table.fill * 100),
      timeToFull: s.table.timeToFull === null ? null : Math.round(s.table.timeToFull),
      lifetimeP50: d.lifetimeP50 ?? null,
      shortLived: d.shortLived ?? null,
    };
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
    const hint = conntrackHint(d, s.netns);
    // a DNATed service address: name the backend its flows really go to
    const target = d.backend !== undefined ? `${d.key} → ${d.backend}${d.backends !== undefined && d.backends > 1 ? ` (+${d.backends - 1} more)` : ''}` : d.key;

    switch (r.kind) {
      case 'churn_per_destination': {
        const v = d[r.rate];
        const factor = median !== null && median > 0 ? v / median : null;
        return {
          fire: v > r.threshold,
          clear: v <= r.resolve,
          values: { value: round1(v), threshold: r.threshold, resolve: r.resolve, rate: r.rate, factor: factor === null ? null : round2(factor), ...context },
          value: () => `${formatRate(v, g)} new/s`,
          message: () =>
            `churn to ${target} ${formatRate(v, g)} new/s${factor !== null ? ` (${formatFactor(factor, g)} its median)` : ''}${tableTail()}${who()}`,
          resolved: () => `resolved: churn to ${target} back to ${formatRate(v, g)} new/s (≤ ${formatRate(r.resolve, g)})`,
          hint,
        };
      }
      case 'churn_baseline': {
        const v = d[this.baseline.config.rate];
        // not learned yet: nothing to compare with, so no verdict either way
        if (median === null) return null;
        const factor = median > 0 ? v / median : Infinity;
        const over = `${formatDuration(this.baseline.config.window, false)}`;
        return {
          fire: v >= r.minRate && v > r.factor * median,
          clear: v <= r.resolveFactor * median || v < r.resolveMinRate,
          values: {
            value: round1(v),
            threshold: r.factor,
            resolve: r.resolveFactor,
            rate: this.baseline.config.rate,
            factor: Number.isFinite(factor) ? round2(factor) : null,
            minRate: r.minRate,
            ...context,
          },
          value: () => `${formatRate(v, g)} new/s`,
          message: () =>
            `churn to ${target} ${formatRate(v, g)} new/s, ${formatFactor(factor, g)} its median of ${formatRate(median, g)}/s over ${over}${tableTail()}${who()}`,
          resolved: () =>
            `resolved: churn to ${target} back to ${formatRate(v, g)} new/s (${formatFactor(factor, g)} its median of ${formatRate(median, g)}/s)`,
          hint,
        };
      }
      case 'time_wait_pileup': {
        if (!d.states) return null;
        const v = d.states[r.state] ?? 0;
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
          fire: v > r.threshold,
          clear: v <= r.resolve,
          values: { value: v, threshold: r.threshold, resolve: r.resolve, state: r.state, new10: round1(d.new10), ...context },
          value: () => formatCount(v, g),
          message: () => `${formatCount(v, g)} ${r.state} flows to ${target}${detail()}${who()}`,
          resolved: () => `resolved: ${r.state} flows to ${target} down to ${formatCount(v, g)} (≤ ${formatCount(r.resolve, g)})`,
          hint: conntrackHint(d, s.netns, r.state),
        };
      }
      case 'leak_fill': {
        const tp = s.table;
        // the table's size is needed to say when it fills: no verdict without it
        if (tp.entries === null || tp.max === null) return null;
        const j = this.leakRuns(r.name).judge(r, ctx.ns, d.key, ctx.t, d.live, { entries: tp.entries, max: tp.max });
        if (!j) return null;
        const v = d.new1;
        const ttf = j.timeToFull;
        const who = whoText(s, v);
        return {
          fire: j.fire,
          clear: j.clear,
          values: {
            value: ttf === null ? null : Math.round(ttf),
            threshold: r.threshold,
            resolve: r.resolve,
            minRate: r.minRate,
            burst: r.burst,
            new1: round1(v),
            growth: round1(j.growth),
            stayed: j.stayed,
            ...context,
          },
          value: () => (ttf === null ? 'not filling' : formatDuration(ttf)),
          message: () =>
            `${who ? `${who} opens` : 'something opens'} ${formatRate(v, g)} new connections/s to ${target} — table ${formatPercent(tp.entries! / tp.max!)} full, full in ${formatDuration(ttf ?? 0)}`,
          resolved: () =>
            ttf === null
              ? `resolved: ${target} no longer fills the table (${formatRate(v, g)} new/s, ${formatRate(Math.max(0, j.growth), g)}/s stays)`
              : `resolved: ${target} would fill the table in ${formatDuration(ttf)}, no longer within ${formatDuration(r.threshold, false)}`,
          hint,
        };
      }
      default:
        return null;
    }
  }

  private observeTable(r: Rule, ctx: Context): Observation | null {
    const g = this.grouping;
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
}

const DESTINATION_KINDS: ReadonlySet<Rule['kind']> = new Set(['churn_per_destination', 'time_wait_pileup', 'churn_baseline', 'leak_fill']);

function nsPrefix(s: ChurnSnapshot): string {
  return s.netns ? `netns ${s.netns}: ` : '';
}

function fillTemplate(template: string, vars: Record<string, string>): string {
  return template.replace(/\{([a-z]+)\}/g, (whole, name: string) => vars[name] ?? whole);
}
