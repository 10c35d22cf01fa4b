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
 * The judgements themselves (what fires, the words, the hint) are in observe-*.ts.
 */
import type { ChurnSnapshot, DestinationChurn, DestinationFigure, DestinationFigures } from '../churn/snapshot.js';
import type { Alert } from './types.js';
import { BaselineTracker } from './baseline.js';
import { LeakRuns } from './leak-fill.js';
import { topOf } from './describe.js';
import { formatDuration, type Grouping } from './format.js';
import { compileFilter, defaultConfig, type AlertConfig, type Rule } from './rules.js';
import { QUIET, US, type Context, type Judging, type Observation, type Remembered } from './observation.js';
import { observeDestination } from './observe-destination.js';
import { observeSnat, observeUnreplied } from './observe-lists.js';
import { observeTable } from './observe-table.js';

export interface EvaluatorOptions {
  /** thousands separator in messages; default 'thin' (U+202F) */
  grouping?: Grouping;
  /** heavy hitters listed in `top`; default 5 */
  topN?: number;
}

export type RuleSet = Pick<AlertConfig, 'rules' | 'baseline'>;

interface State extends Remembered {
  /** µs since the firing condition has held continuously (while not firing) */
  pendingSince?: number;
  firing?: { since: number; clearSince?: number; alert: Alert };
  cooldownUntil?: number;
}

interface Compiled {
  rule: Rule;
  accepts: (key: string) => boolean;
}

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
    const medians = new Map<string, number | null>();
    const ctx: Context = {
      s,
      ns,
      t,
      // once per destination and tick, however many rules ask (a median sorts the key's history)
      median: (key) => {
        let m = medians.get(key);
        if (m === undefined) medians.set(key, (m = this.baseline.median(`${ns}\0${key}`, t)));
        return m;
      },
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

  private judging(): Judging {
    return { grouping: this.grouping, baseline: this.baseline.config, leakRuns: (rule) => this.leakRuns(rule) };
  }

  private leakRuns(rule: string): LeakRuns {
    let runs = this.leaks.get(rule);
    if (!runs) this.leaks.set(rule, (runs = new LeakRuns()));
    return runs;
  }

  /** The subjects a rule remembers (pending, firing, cooling down), in every netns. */
  private remembered(rule: string): Iterable<Remembered> {
    return this.states.get(rule)?.values() ?? [];
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
      out.set('table', observeTable(r, ctx, this.judging()));
      return out;
    }
    if (r.kind === 'unreplied_pileup') return observeUnreplied(r, c.accepts, ctx, this.judging(), this.remembered(r.name));
    if (r.kind === 'snat_port_exhaustion') return observeSnat(r, ctx, this.judging(), this.remembered(r.name));
    // The rule's own candidates, filtered before anything is ranked or judged.
    const candidates = new Set<string>();
    const figures = ctx.figures;
    if (!figures) for (const d of s.destinations) candidates.add(d.key);
    else if (r.kind === 'time_wait_pileup') for (const key of figures.inState(r.state, r.threshold)) candidates.add(key);
    else for (const key of figures.keys()) candidates.add(key);
    // every subject pending or firing is judged again, wherever it ranks now
    const remembered = new Set<string>();
    for (const st of this.states.get(r.name)?.values() ?? []) if (st.ns === ctx.ns) remembered.add(st.subject);
    for (const key of remembered) candidates.add(key);
    const listed = figures ? undefined : new Map(s.destinations.map((d) => [d.key, d] as const));
    const judging = this.judging();
    for (const key of candidates) {
      if (!c.accepts(key)) continue;
      const d: DestinationFigure | DestinationChurn | null | undefined = figures ? figures.get(key) : listed!.get(key);
      // A subject nothing is remembered of changes nothing unless it fires: left out (QUIET).
      const quiet = !remembered.has(key);
      // unknown (no figures at all, or no rate for a churn rule) leaves the state as it is: it
      // never resolves an alert, and never fires one
      if (!d || (r.kind !== 'time_wait_pileup' && 'rated' in d && !d.rated)) {
        if (!quiet) out.set(key, null);
        continue;
      }
      const o = observeDestination(r, d, ctx, judging, quiet);
      if (o !== QUIET && (o !== null || !quiet)) out.set(key, o);
    }
    return out;
  }
}

const DESTINATION_KINDS: ReadonlySet<Rule['kind']> = new Set(['churn_per_destination', 'time_wait_pileup', 'churn_baseline', 'leak_fill']);

function nsPrefix(s: ChurnSnapshot): string {
  return s.netns ? `netns ${s.netns}: ` : '';
}

function fillTemplate(template: string, vars: Record<string, string>): string {
  return template.replace(/\{([a-z]+)\}/g, (whole, name: string) => vars[name] ?? whole);
}
