/**
 * Alert rules: built-in defaults that are useful with no file at all, and a YAML file that tunes them,
 * adds more, and names where alerts go. A bad file is rejected as a whole, with `file:line: field:
 * reason` for every problem, because a half-loaded rule set fails silently at 3 a.m.
 */
import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode, type Pair } from 'yaml';
import type { Alert } from './types.js';
import { parseDuration, ValueError, type Range } from '../config/units.js';

export type Severity = Alert['severity'];
export const SEVERITIES: readonly Severity[] = ['info', 'warning', 'critical'];

/** Which of the snapshot's rate windows a rule reads. */
export type RateWindow = 'new1' | 'new10' | 'new60';
const RATE_WINDOWS: readonly RateWindow[] = ['new1', 'new10', 'new60'];

export type RuleKind =
  | 'churn_per_destination'
  | 'table_fill'
  | 'time_to_full'
  | 'kernel_drops'
  | 'time_wait_pileup'
  | 'churn_baseline';
export const RULE_KINDS: readonly RuleKind[] = [
  'churn_per_destination',
  'table_fill',
  'time_to_full',
  'kernel_drops',
  'time_wait_pileup',
  'churn_baseline',
];

/** Fields every rule has. Durations are seconds. */
export interface RuleBase {
  /** unique; the alert's `rule` field. Built-in rules are named after their kind. */
  name: string;
  kind: RuleKind;
  enabled: boolean;
  severity: Severity;
  /** the condition must hold this long before the alert fires */
  for: number;
  /** the resolve condition must hold this long before the alert resolves (stops flapping) */
  resolveFor: number;
  /** after resolving, the same rule+subject does not fire again for this long */
  cooldown: number;
  /** template for the resolved line; placeholders in RESOLVED_PLACEHOLDERS */
  resolvedMessage?: string;
}

/** Destination rules can be narrowed to, or kept away from, some destinations (globs on the key). */
export interface DestinationFilter {
  /** globs on the destination key ("*:6379/tcp"); empty = all */
  match: string[];
  ignore: string[];
}

export interface ChurnPerDestinationRule extends RuleBase, DestinationFilter {
  kind: 'churn_per_destination';
  rate: RateWindow;
  /** new flows/s; fires above */
  threshold: number;
  /** resolves at or below */
  resolve: number;
}

export interface TableFillRule extends RuleBase {
  kind: 'table_fill';
  /** percent of nf_conntrack_max; fires above */
  threshold: number;
  resolve: number;
}

export interface TimeToFullRule extends RuleBase {
  kind: 'time_to_full';
  /** seconds; fires when the table would be full sooner than this */
  threshold: number;
  /** seconds; resolves when full no sooner than this, or not growing */
  resolve: number;
}

export interface KernelDropsRule extends RuleBase {
  kind: 'kernel_drops';
  /** kernel counter names whose increase counts */
  counters: string[];
  /** increase per second; fires above (0: any increase) */
  threshold: number;
  resolve: number;
}

export interface TimeWaitPileupRule extends RuleBase, DestinationFilter {
  kind: 'time_wait_pileup';
  /** the TCP state counted; TIME_WAIT unless a rule watches, say, SYN_SENT */
  state: string;
  /** live flows in that state per destination; fires above */
  threshold: number;
  resolve: number;
}

export interface ChurnBaselineRule extends RuleBase, DestinationFilter {
  kind: 'churn_baseline';
  /** fires when the rate is above factor × the destination's learned median ... */
  factor: number;
  /** ... and at least this many new flows/s, so a quiet destination going 1 -> 10/s stays quiet */
  minRate: number;
  /** resolves when the rate is at or below resolveFactor × median, or below resolveMinRate */
  resolveFactor: number;
  resolveMinRate: number;
}

export type Rule =
  | ChurnPerDestinationRule
  | TableFillRule
  | TimeToFullRule
  | KernelDropsRule
  | TimeWaitPileupRule
  | ChurnBaselineRule;

/** How each destination's normal churn is learned (shared by every rule that quotes "its median"). */
export interface BaselineConfig {
  rate: RateWindow;
  /** history the median covers, seconds: the last window / bucket buckets in which the key was learned */
  window: number;
  /** seconds per bucket; each holds the mean rate over that time */
  bucket: number;
  /** completed slots needed before a destination's baseline counts as learned */
  minSamples: number;
  /** destinations remembered; the least recently seen is forgotten first */
  maxKeys: number;
}

export interface DeliveryCommon {
  /** alerts below this severity are not sent to this delivery */
  minSeverity: Severity;
  /** also send the `resolved` events */
  sendResolved: boolean;
  /** seconds per attempt (webhook) or per run (exec) */
  timeout: number;
  /** bounded queue; the oldest waiting alert is dropped when full */
  queue: number;
}

export interface WebhookSpec extends DeliveryCommon {
  type: 'webhook';
  url: string;
  headers: Record<string, string>;
  /** attempts after the first */
  retries: number;
}

export interface ExecSpec extends DeliveryCommon {
  type: 'exec';
  /** command and arguments; no shell */
  argv: string[];
  /** hooks running at once */
  concurrency: number;
}

export type DeliverySpec = WebhookSpec | ExecSpec;

export interface AlertConfig {
  rules: Rule[];
  baseline: BaselineConfig;
  deliver: DeliverySpec[];
}

/** Placeholders a `resolved_message` template may use. */
export const RESOLVED_PLACEHOLDERS = ['rule', 'subject', 'severity', 'netns', 'value', 'duration'] as const;

export class ConfigError extends Error {
  readonly code = 'ERR_RULES';
  constructor(
    message: string,
    readonly file: string,
    /** 1-based; 0 when the problem has no place in the file */
    readonly line: number,
    /** dotted path, e.g. "rules.table_fill.threshold" */
    readonly field: string,
    /** every problem found, the first of which is `line`/`field` */
    readonly issues: ConfigIssue[] = [],
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ConfigIssue {
  line: number;
  field: string;
  reason: string;
}

const MINUTE = 60;

export const DEFAULT_BASELINE: Readonly<BaselineConfig> = {
  rate: 'new10',
  window: 30 * MINUTE,
  bucket: MINUTE,
  minSamples: 10,
  maxKeys: 1000,
};

/**
 * The rules in force with no file. Thresholds are for a host with the stock 65 536-entry table:
 * 500 new/s to one destination keeps ~60 000 TIME_WAIT entries alive at the default 120 s timeout,
 * which is the table; the rest follow the same arithmetic or the kernel's own "dropping packet".
 */
export function defaultRules(): Rule[] {
  const common = { enabled: true, resolveFor: 10, cooldown: 5 * MINUTE } as const;
  const anyDestination = (): DestinationFilter => ({ match: [], ignore: [] });
  return [
    {
      ...common,
      ...anyDestination(),
      name: 'churn_per_destination',
      kind: 'churn_per_destination',
      severity: 'warning',
      for: 5,
      rate: 'new10',
      threshold: 500,
      resolve: 400,
    },
    {
      ...common,
      name: 'table_fill',
      kind: 'table_fill',
      severity: 'warning',
      for: 10,
      threshold: 80,
      resolve: 70,
    },
    {
      ...common,
      name: 'time_to_full',
      kind: 'time_to_full',
      severity: 'critical',
      for: 30,
      threshold: 5 * MINUTE,
      resolve: 10 * MINUTE,
    },
    {
      ...common,
      name: 'kernel_drops',
      kind: 'kernel_drops',
      severity: 'critical',
      for: 0,
      // drops come in bursts; a minute without any before calling it over
      resolveFor: MINUTE,
      counters: ['drop', 'early_drop', 'insert_failed'],
      threshold: 0,
      resolve: 0,
    },
    {
      ...common,
      ...anyDestination(),
      name: 'time_wait_pileup',
      kind: 'time_wait_pileup',
      severity: 'warning',
      for: 30,
      state: 'TIME_WAIT',
      threshold: 2000,
      resolve: 1500,
    },
    {
      ...common,
      ...anyDestination(),
      name: 'churn_baseline',
      kind: 'churn_baseline',
      severity: 'warning',
      // longer than a cron burst's 10 s window, shorter than a leak takes to fill the table
      for: 30,
      factor: 5,
      minRate: 100,
      resolveFactor: 2.5,
      resolveMinRate: 50,
    },
  ];
}

export function defaultConfig(): AlertConfig {
  return { rules: defaultRules(), baseline: { ...DEFAULT_BASELINE }, deliver: [] };
}

// ---------------------------------------------------------------------------------------------
// YAML loading

export async function loadAlertConfig(path: string): Promise<AlertConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(`${path}: cannot read: ${reason}`, path, 0, '', [{ line: 0, field: '', reason }]);
  }
  return parseAlertConfig(text, path);
}

/** Parses a rules file. `file` only names it in error messages. */
export function parseAlertConfig(text: string, file = '<rules>'): AlertConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  const issues: ConfigIssue[] = [];
  for (const e of doc.errors) {
    // the library appends "at line N, column M:" and a code excerpt; our prefix already says where
    const reason = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    issues.push({ line: e.linePos?.[0].line ?? 0, field: 'yaml', reason });
  }
  if (issues.length === 0) {
    const p = new Parser(lc, issues);
    const config = p.config(doc.contents);
    if (issues.length === 0) return config;
  }
  const first = issues[0];
  const lines = issues.map((i) => `${file}:${i.line}: ${i.field}: ${i.reason}`);
  throw new ConfigError(lines.join('\n'), file, first.line, first.field, issues);
}

const COMMON_FIELDS = ['kind', 'enabled', 'severity', 'for', 'resolve_for', 'cooldown', 'resolved_message'];
const FILTER_FIELDS = ['match', 'ignore'];
const KIND_FIELDS: Record<RuleKind, string[]> = {
  churn_per_destination: ['rate', 'threshold', 'resolve', ...FILTER_FIELDS],
  table_fill: ['threshold', 'resolve'],
  time_to_full: ['threshold', 'resolve'],
  kernel_drops: ['counters', 'threshold', 'resolve'],
  time_wait_pileup: ['state', 'threshold', 'resolve', ...FILTER_FIELDS],
  churn_baseline: ['factor', 'min_rate', 'resolve_factor', 'resolve_min_rate', ...FILTER_FIELDS],
};

/** Walks the document, recording every problem instead of stopping at the first. */
class Parser {
  constructor(
    private readonly lc: LineCounter,
    private readonly issues: ConfigIssue[],
  ) {}

  private lineOf(node: unknown): number {
    const range = (node as YamlNode | null)?.range;
    return range ? this.lc.linePos(range[0]).line : 0;
  }

  private fail(node: unknown, field: string, reason: string): undefined {
    this.issues.push({ line: this.lineOf(node), field, reason });
    return undefined;
  }

  /** The pairs of a mapping, rejecting keys outside `allowed` with a did-you-mean. */
  private pairs(node: unknown, field: string, allowed?: readonly string[]): Map<string, Pair<unknown, unknown>> {
    const out = new Map<string, Pair<unknown, unknown>>();
    if (!isMap(node)) {
      this.fail(node, field, 'expected a mapping');
      return out;
    }
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      const path = field ? `${field}.${key}` : key;
      if (allowed && !allowed.includes(key)) {
        const near = closest(key, allowed);
        this.fail(pair.key, path, `unknown field${near ? ` (did you mean ${near}?)` : ''}`);
        continue;
      }
      out.set(key, pair);
    }
    return out;
  }

  config(root: unknown): AlertConfig {
    const config = defaultConfig();
    // an empty file is a valid "defaults only" file
    if (root === null || (isScalar(root) && root.value === null)) return config;
    const top = this.pairs(root, '', ['rules', 'baseline', 'deliver']);
    const b = top.get('baseline');
    if (b) config.baseline = this.baseline(b.value, config.baseline);
    const r = top.get('rules');
    if (r) config.rules = this.rules(r.value, config.rules);
    const d = top.get('deliver');
    if (d) config.deliver = this.deliveries(d.value);
    return config;
  }

  private baseline(node: unknown, base: BaselineConfig): BaselineConfig {
    const out = { ...base };
    const f = this.pairs(node, 'baseline', ['rate', 'window', 'bucket', 'min_samples', 'max_keys']);
    const rate = f.get('rate');
    if (rate) out.rate = this.oneOf(rate.value, 'baseline.rate', RATE_WINDOWS) ?? out.rate;
    out.window = this.durationField(f, 'window', 'baseline', out.window, true);
    out.bucket = this.durationField(f, 'bucket', 'baseline', out.bucket, true);
    out.minSamples = this.intField(f, 'min_samples', 'baseline', out.minSamples, 1);
    out.maxKeys = this.intField(f, 'max_keys', 'baseline', out.maxKeys, 1);
    const slots = Math.floor(out.window / out.bucket);
    const at = f.get('window') ?? f.get('bucket') ?? f.get('min_samples');
    if (slots < 1 || slots > 10_000) this.fail(at?.value ?? node, 'baseline.window', `window / bucket must give 1..10000 slots, not ${slots}`);
    else if (out.minSamples > slots) {
      this.fail(at?.value ?? node, 'baseline.min_samples', `needs ${out.minSamples} slots but window / bucket holds ${slots}`);
    }
    return out;
  }

  private rules(node: unknown, defaults: Rule[]): Rule[] {
    const byName = new Map(defaults.map((r) => [r.name, r] as const));
    const seen = this.pairs(node, 'rules');
    for (const [name, pair] of seen) {
      const field = `rules.${name}`;
      if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
        this.fail(pair.key, field, 'rule names may use letters, digits, _ . -');
        continue;
      }
      // `table_fill: false` is the short way to switch a built-in off
      if (isScalar(pair.value) && typeof pair.value.value === 'boolean') {
        const builtin = byName.get(name);
        if (!builtin) this.fail(pair.value, field, 'only built-in rules can be switched with true/false');
        else byName.set(name, { ...builtin, enabled: pair.value.value });
        continue;
      }
      const builtin = byName.get(name);
      // `churn_per_destination:` with nothing under it keeps the built-in as it is
      const empty = pair.value === null || (isScalar(pair.value) && pair.value.value === null);
      const f = empty ? new Map<string, Pair<unknown, unknown>>() : this.pairs(pair.value, field);
      let kind: RuleKind | undefined = builtin?.kind;
      const kindPair = f.get('kind');
      if (kindPair) {
        const k = this.oneOf(kindPair.value, `${field}.kind`, RULE_KINDS);
        if (k && builtin && k !== builtin.kind) {
          this.fail(kindPair.value, `${field}.kind`, `${name} is the built-in ${builtin.kind} rule; pick another name`);
          continue;
        }
        kind = k;
      } else if (!builtin) {
        this.fail(pair.key, `${field}.kind`, `required for a rule that is not built in (one of ${RULE_KINDS.join(', ')})`);
        continue;
      }
      if (!kind) continue;
      const allowed = [...COMMON_FIELDS, ...KIND_FIELDS[kind]];
      for (const [key, p] of f) {
        if (!allowed.includes(key)) {
          const near = closest(key, allowed);
          this.fail(p.key, `${field}.${key}`, `unknown field for ${kind}${near ? ` (did you mean ${near}?)` : ''}`);
          f.delete(key);
        }
      }
      const base = builtin ?? defaultRules().find((r) => r.kind === kind)!;
      byName.set(name, this.rule(field, f, { ...base, name }, pair.key));
    }
    return [...byName.values()];
  }

  private rule(field: string, f: Map<string, Pair<unknown, unknown>>, base: Rule, at: unknown): Rule {
    const r = { ...base } as Rule;
    const e = f.get('enabled');
    if (e) r.enabled = this.bool(e.value, `${field}.enabled`) ?? r.enabled;
    const s = f.get('severity');
    if (s) r.severity = this.oneOf(s.value, `${field}.severity`, SEVERITIES) ?? r.severity;
    r.for = this.durationField(f, 'for', field, r.for);
    r.resolveFor = this.durationField(f, 'resolve_for', field, r.resolveFor);
    r.cooldown = this.durationField(f, 'cooldown', field, r.cooldown);
    const m = f.get('resolved_message');
    if (m) r.resolvedMessage = this.template(m.value, `${field}.resolved_message`) ?? r.resolvedMessage;

    // resolve follows threshold when only threshold is given, so raising one never inverts the pair
    const hysteresis = (derive: (t: number) => number, direction: 'above' | 'below', read: (k: string, d: number) => number): void => {
      const t = f.get('threshold');
      const rs = f.get('resolve');
      const rr = r as { threshold: number; resolve: number };
      const threshold = read('threshold', rr.threshold);
      const resolve = rs ? read('resolve', rr.resolve) : t ? derive(threshold) : rr.resolve;
      if (direction === 'above' ? resolve > threshold : resolve < threshold) {
        this.fail((rs ?? t)?.value ?? at, `${field}.resolve`, direction === 'above'
          ? `resolve (${resolve}) must not be above threshold (${threshold}), or the alert would flap`
          : `resolve (${resolve}) must not be below threshold (${threshold}), or the alert would flap`);
      }
      rr.threshold = threshold;
      rr.resolve = resolve;
    };
    const num = (k: string, d: number): number => this.numberField(f, k, field, d, 0);

    switch (r.kind) {
      case 'churn_per_destination': {
        const rate = f.get('rate');
        if (rate) r.rate = this.oneOf(rate.value, `${field}.rate`, RATE_WINDOWS) ?? r.rate;
        hysteresis((t) => t * 0.8, 'above', num);
        this.filter(f, field, r);
        break;
      }
      case 'table_fill':
        hysteresis((t) => Math.max(t - 10, t / 2), 'above', (k, d) => this.percentField(f, k, field, d));
        break;
      case 'time_to_full':
        hysteresis((t) => t * 2, 'below', (k, d) => this.durationField(f, k, field, d, true));
        break;
      case 'kernel_drops': {
        const c = f.get('counters');
        if (c) r.counters = this.stringList(c.value, `${field}.counters`, false) ?? r.counters;
        if (r.counters.length === 0) this.fail(c?.value ?? at, `${field}.counters`, 'needs at least one counter');
        hysteresis((t) => t, 'above', num);
        break;
      }
      case 'time_wait_pileup': {
        const st = f.get('state');
        if (st) {
          const v = this.string(st.value, `${field}.state`);
          if (v !== undefined) r.state = v.toUpperCase();
        }
        hysteresis((t) => t * 0.75, 'above', num);
        this.filter(f, field, r);
        break;
      }
      case 'churn_baseline': {
        r.factor = this.numberField(f, 'factor', field, r.factor, 1);
        r.minRate = this.numberField(f, 'min_rate', field, r.minRate, 0);
        r.resolveFactor = f.has('resolve_factor')
          ? this.numberField(f, 'resolve_factor', field, r.resolveFactor, 0)
          : f.has('factor') ? r.factor / 2 : r.resolveFactor;
        r.resolveMinRate = f.has('resolve_min_rate')
          ? this.numberField(f, 'resolve_min_rate', field, r.resolveMinRate, 0)
          : f.has('min_rate') ? r.minRate / 2 : r.resolveMinRate;
        if (r.resolveFactor > r.factor) {
          this.fail(f.get('resolve_factor')?.value ?? at, `${field}.resolve_factor`, 'must not be above factor, or the alert would flap');
        }
        if (r.resolveMinRate > r.minRate) {
          this.fail(f.get('resolve_min_rate')?.value ?? at, `${field}.resolve_min_rate`, 'must not be above min_rate, or the alert would flap');
        }
        this.filter(f, field, r);
        break;
      }
    }
    return r;
  }

  private filter(f: Map<string, Pair<unknown, unknown>>, field: string, r: DestinationFilter): void {
    for (const key of ['match', 'ignore'] as const) {
      const p = f.get(key);
      if (p) r[key] = this.stringList(p.value, `${field}.${key}`, true) ?? r[key];
    }
  }

  private deliveries(node: unknown): DeliverySpec[] {
    const out: DeliverySpec[] = [];
    if (!isSeq(node)) {
      this.fail(node, 'deliver', 'expected a list of deliveries (- webhook: URL, or - exec: [argv])');
      return out;
    }
    node.items.forEach((item, i) => {
      const field = `deliver[${i}]`;
      const common = ['min_severity', 'send_resolved', 'timeout', 'queue'];
      const probe = isMap(item) ? item.items.map((p) => (isScalar(p.key) ? String(p.key.value) : '')) : [];
      const isWebhook = probe.includes('webhook');
      const isExec = probe.includes('exec');
      if (isWebhook === isExec) {
        this.fail(item, field, 'each delivery needs exactly one of webhook: URL or exec: [argv]');
        return;
      }
      const f = this.pairs(item, field, isWebhook ? ['webhook', 'headers', 'retries', ...common] : ['exec', 'concurrency', ...common]);
      const base: DeliveryCommon = {
        minSeverity: 'info',
        sendResolved: true,
        timeout: isWebhook ? 5 : 10,
        queue: isWebhook ? 1000 : 100,
      };
      const ms = f.get('min_severity');
      if (ms) base.minSeverity = this.oneOf(ms.value, `${field}.min_severity`, SEVERITIES) ?? base.minSeverity;
      const sr = f.get('send_resolved');
      if (sr) base.sendResolved = this.bool(sr.value, `${field}.send_resolved`) ?? base.sendResolved;
      base.timeout = this.durationField(f, 'timeout', field, base.timeout, true);
      base.queue = this.intField(f, 'queue', field, base.queue, 1);
      if (isWebhook) {
        const u = f.get('webhook')!;
        const url = this.string(u.value, `${field}.webhook`);
        if (url !== undefined) {
          let ok = false;
          try {
            ok = ['http:', 'https:'].includes(new URL(url).protocol);
          } catch {
            // reported below
          }
          if (!ok) this.fail(u.value, `${field}.webhook`, 'expected an http:// or https:// URL');
        }
        const headers: Record<string, string> = {};
        const h = f.get('headers');
        if (h) {
          for (const [k, p] of this.pairs(h.value, `${field}.headers`)) {
            const v = isScalar(p.value) ? p.value.value : undefined;
            if (typeof v === 'string' || typeof v === 'number') headers[k] = String(v);
            else this.fail(p.value, `${field}.headers.${k}`, 'expected a string');
          }
        }
        out.push({ ...base, type: 'webhook', url: url ?? '', headers, retries: this.intField(f, 'retries', field, 5, 0) });
      } else {
        const x = f.get('exec')!;
        if (isScalar(x.value) && typeof x.value.value === 'string') {
          this.fail(x.value, `${field}.exec`, 'give the command as a list, e.g. [/usr/local/bin/page, --team, infra]; no shell is used');
          return;
        }
        const argv = this.stringList(x.value, `${field}.exec`, false);
        if (argv && argv.length === 0) this.fail(x.value, `${field}.exec`, 'needs the command to run');
        out.push({ ...base, type: 'exec', argv: argv ?? [], concurrency: this.intField(f, 'concurrency', field, 2, 1) });
      }
    });
    return out;
  }

  // --- scalar readers: each reports its own problem and returns undefined (or the default)

  private scalar(node: unknown): unknown {
    return isScalar(node) ? node.value : undefined;
  }

  private string(node: unknown, field: string): string | undefined {
    const v = this.scalar(node);
    if (typeof v === 'string' && v.length > 0) return v;
    return this.fail(node, field, 'expected a non-empty string');
  }

  private bool(node: unknown, field: string): boolean | undefined {
    const v = this.scalar(node);
    if (typeof v === 'boolean') return v;
    return this.fail(node, field, 'expected true or false');
  }

  private oneOf<T extends string>(node: unknown, field: string, options: readonly T[]): T | undefined {
    const v = this.scalar(node);
    if (typeof v === 'string' && (options as readonly string[]).includes(v)) return v as T;
    return this.fail(node, field, `expected one of ${options.join(', ')}`);
  }

  private stringList(node: unknown, field: string, allowSingle: boolean): string[] | undefined {
    if (allowSingle && isScalar(node)) {
      const s = this.string(node, field);
      return s === undefined ? undefined : [s];
    }
    if (!isSeq(node)) return this.fail(node, field, 'expected a list of strings');
    const out: string[] = [];
    node.items.forEach((item, i) => {
      const v = this.scalar(item);
      // numbers are allowed because YAML reads an argv entry such as 30 as a number
      if (typeof v === 'string' || typeof v === 'number') out.push(String(v));
      else this.fail(item, `${field}[${i}]`, 'expected a string');
    });
    return out;
  }

  private numberField(f: Map<string, Pair<unknown, unknown>>, key: string, field: string, d: number, min: number): number {
    const p = f.get(key);
    if (!p) return d;
    const v = this.scalar(p.value);
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.fail(p.value, `${field}.${key}`, 'expected a number') ?? d;
    if (v < min) return this.fail(p.value, `${field}.${key}`, `must be at least ${min}`) ?? d;
    return v;
  }

  private intField(f: Map<string, Pair<unknown, unknown>>, key: string, field: string, d: number, min: number): number {
    const v = this.numberField(f, key, field, d, min);
    if (!Number.isInteger(v)) return this.fail(f.get(key)?.value, `${field}.${key}`, 'expected a whole number') ?? d;
    return v;
  }

  private percentField(f: Map<string, Pair<unknown, unknown>>, key: string, field: string, d: number): number {
    const p = f.get(key);
    if (!p) return d;
    const raw = this.scalar(p.value);
    const v = typeof raw === 'string' && /^\s*\d+(\.\d+)?\s*%\s*$/.test(raw) ? parseFloat(raw) : raw;
    if (typeof v !== 'number' || !(v > 0 && v <= 100)) {
      return this.fail(p.value, `${field}.${key}`, 'expected a percentage of the table, 0 < x <= 100 (e.g. 80 or "80%")') ?? d;
    }
    return v;
  }

  private durationField(
    f: Map<string, Pair<unknown, unknown>>,
    key: string,
    field: string,
    d: number,
    positive = false,
  ): number {
    const p = f.get(key);
    if (!p) return d;
    const raw = this.scalar(p.value);
    const range: Range = positive ? { positive: true } : {};
    try {
      if (typeof raw === 'string' || typeof raw === 'number') return parseDuration(raw, range);
      return this.fail(p.value, `${field}.${key}`, 'expected a duration: write e.g. 500ms, 10s, 5m, 1h30m') ?? d;
    } catch (err) {
      if (!(err instanceof ValueError)) throw err;
      return this.fail(p.value, `${field}.${key}`, err.reason) ?? d;
    }
  }

  private template(node: unknown, field: string): string | undefined {
    const s = this.string(node, field);
    if (s === undefined) return undefined;
    for (const m of s.matchAll(/\{([^{}]*)\}/g)) {
      if (!(RESOLVED_PLACEHOLDERS as readonly string[]).includes(m[1])) {
        return this.fail(node, field, `unknown placeholder {${m[1]}} (use ${RESOLVED_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`);
      }
    }
    return s;
  }
}

/** The allowed word within two edits of a typo, so "thresold" points at "threshold". */
function closest(word: string, options: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const o of options) {
    const d = editDistance(word, o);
    if (d < bestD) {
      best = o;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * A destination filter as one predicate, compiled once per rule set rather than per snapshot.
 * Globs: `*` any run of characters, `?` one.
 */
export function compileFilter(filter: DestinationFilter): (key: string) => boolean {
  const toRe = (globs: string[]): RegExp | null =>
    globs.length === 0
      ? null
      : new RegExp(`^(?:${globs.map((g) => g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')).join('|')})$`);
  const match = toRe(filter.match);
  const ignore = toRe(filter.ignore);
  return (key) => (match === null || match.test(key)) && (ignore === null || !ignore.test(key));
}
