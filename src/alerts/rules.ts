/**
 * The rules file: a YAML file that tunes the built-in rules (./rule-set.ts), adds more, and names
 * where alerts go. A bad file is rejected as a whole, with `file:line: field: reason` for every
 * problem (the config reader's model, src/config/reader.ts), because a half-loaded rule set fails
 * silently at 3 a.m.
 */
import { isScalar } from 'yaml';
import { ConfigError, ConfigReader, parseConfigText, readConfigFile, type ConfigIssue, type Fields } from '../config/reader.js';
import { readWebhookDelivery } from '../sinks/config.js';
import { prepareSink } from '../sinks/build.js';

export { ConfigError, type ConfigIssue } from '../config/reader.js';

import {
  defaultConfig,
  defaultRules,
  RATE_NAMES,
  RESOLVED_PLACEHOLDERS,
  RULE_KINDS,
  SEVERITIES,
  type AlertConfig,
  type BaselineConfig,
  type DeliveryCommon,
  type DeliverySpec,
  type DestinationFilter,
  type ExecSpec,
  type Rule,
  type RuleKind,
  type WebhookSpec,
} from './rule-set.js';

export * from './rule-set.js';

// ---------------------------------------------------------------------------------------------
// YAML loading (src/config/reader.ts: one reader and one error model for every config file)

/** Rules in one file: each is judged on every snapshot, and a list this long is a mistake. */
export const MAX_RULES = 1000;
/** Deliveries in one file. */
export const MAX_DELIVERIES = 32;

/**
 * Reads a rules file, and checks the secrets its webhooks name (now, so a missing token file refuses
 * the file at start-up or at SIGHUP, not at the first alert).
 */
export async function loadAlertConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<AlertConfig> {
  const config = parseAlertConfig(await readConfigFile(path, 'rules file', 'ERR_RULES'), path);
  const issues: ConfigIssue[] = [];
  for (const d of config.deliver) if (d.type === 'webhook') prepareSink(d.sink, issues, { env });
  if (issues.length) throw new ConfigError('ERR_RULES', path, issues);
  return config;
}

/** Parses a rules file. `file` only names it in error messages. */
export function parseAlertConfig(text: string, file = '<rules>'): AlertConfig {
  const doc = parseConfigText(text);
  if (doc.issues.length) throw new ConfigError('ERR_RULES', file, doc.issues);
  const reader = new ConfigReader(doc.lines);
  const config = new Parser(reader).config(doc.root);
  if (reader.issues.length) throw new ConfigError('ERR_RULES', file, reader.sorted());
  return config;
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
  unreplied_pileup: ['threshold', 'resolve', ...FILTER_FIELDS],
  leak_fill: ['min_rate', 'burst', 'threshold', 'resolve', ...FILTER_FIELDS],
  snat_port_exhaustion: ['threshold', 'resolve'],
};

function isEmpty(node: unknown): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/** Walks a rules document with the shared reader, recording every problem instead of stopping. */
class Parser {
  constructor(private readonly reader: ConfigReader) {}

  config(root: unknown): AlertConfig {
    const config = defaultConfig();
    // an empty file is a valid "defaults only" file
    if (isEmpty(root)) return config;
    const top = this.reader.fields(root, '');
    if (!top) return config;
    top.unknown('', ['rules', 'baseline', 'deliver']);
    const b = top.obj('baseline');
    if (b) config.baseline = this.baseline(b, config.baseline);
    if (top.has('rules')) config.rules = this.rules(top.value('rules'), config.rules);
    if (top.has('deliver')) config.deliver = this.deliveries(top.value('deliver'));
    return config;
  }

  private baseline(f: Fields, base: BaselineConfig): BaselineConfig {
    f.unknown('', ['rate', 'window', 'bucket', 'min_samples', 'max_keys']);
    const out = { ...base };
    out.rate = f.oneOf('rate', RATE_NAMES, out.rate)!;
    out.window = f.seconds('window', { positive: true }) ?? out.window;
    out.bucket = f.seconds('bucket', { positive: true }) ?? out.bucket;
    out.minSamples = f.int('min_samples', 1, 1_000_000) ?? out.minSamples;
    out.maxKeys = f.int('max_keys', 1, 1_000_000) ?? out.maxKeys;
    const slots = Math.floor(out.window / out.bucket);
    const at = f.value('window') ?? f.value('bucket') ?? f.value('min_samples') ?? f.node;
    if (slots < 1 || slots > 10_000) this.reader.fail(at, 'baseline.window', `window / bucket must give 1..10000 slots, not ${slots}`);
    else if (out.minSamples > slots) {
      this.reader.fail(at, 'baseline.min_samples', `needs ${out.minSamples} slots but window / bucket holds ${slots}`);
    }
    return out;
  }

  private rules(node: unknown, defaults: Rule[]): Rule[] {
    const byName = new Map(defaults.map((r) => [r.name, r] as const));
    const all = this.reader.fields(node, 'rules');
    if (!all) return defaults;
    const names = all.keys();
    if (names.length > MAX_RULES) {
      this.reader.fail(node, 'rules', `${names.length} rules: at most ${MAX_RULES} (one rule's match: can cover many destinations)`);
      return defaults;
    }
    for (const name of names) {
      const field = `rules.${name}`;
      const value = all.value(name);
      if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
        this.reader.fail(all.keyNode(name), field, 'rule names may use letters, digits, _ . -');
        continue;
      }
      const builtin = byName.get(name);
      // `table_fill: false` is the short way to switch a built-in off
      if (isScalar(value) && typeof value.value === 'boolean') {
        if (!builtin) this.reader.fail(value, field, 'only built-in rules can be switched with true/false');
        else byName.set(name, { ...builtin, enabled: value.value });
        continue;
      }
      const required = `required for a rule that is not built in (one of ${RULE_KINDS.join(', ')})`;
      // `churn_per_destination:` with nothing under it keeps the built-in as it is
      if (value === undefined) {
        if (!builtin) this.reader.fail(all.keyNode(name), `${field}.kind`, required);
        continue;
      }
      const f = this.reader.fields(value, field);
      if (!f) continue;
      let kind: RuleKind | undefined = builtin?.kind;
      if (f.has('kind')) {
        const k = f.oneOf('kind', RULE_KINDS);
        if (k && builtin && k !== builtin.kind) {
          f.issue('kind', `${name} is the built-in ${builtin.kind} rule; pick another name`);
          continue;
        }
        kind = k;
      } else if (!builtin) {
        this.reader.fail(all.keyNode(name), `${field}.kind`, required);
        continue;
      }
      if (!kind) continue;
      f.unknown(`for ${kind}`, [...COMMON_FIELDS, ...KIND_FIELDS[kind]]);
      const base = builtin ?? defaultRules().find((r) => r.kind === kind)!;
      byName.set(name, this.rule(f, { ...base, name }));
    }
    return [...byName.values()];
  }

  private rule(f: Fields, base: Rule): Rule {
    const r = { ...base } as Rule;
    r.enabled = f.bool('enabled', r.enabled);
    r.severity = f.oneOf('severity', SEVERITIES, r.severity)!;
    r.for = f.seconds('for') ?? r.for;
    r.resolveFor = f.seconds('resolve_for') ?? r.resolveFor;
    r.cooldown = f.seconds('cooldown') ?? r.cooldown;
    if (f.has('resolved_message')) r.resolvedMessage = this.template(f, 'resolved_message') ?? r.resolvedMessage;

    // resolve follows threshold when only threshold is given, so raising one never inverts the pair
    const hysteresis = (derive: (t: number) => number, direction: 'above' | 'below', read: (k: string) => number | undefined): void => {
      const rr = r as { threshold: number; resolve: number };
      const threshold = read('threshold') ?? rr.threshold;
      const resolve = f.has('resolve') ? (read('resolve') ?? rr.resolve) : f.has('threshold') ? derive(threshold) : rr.resolve;
      if (direction === 'above' ? resolve > threshold : resolve < threshold) {
        this.reader.fail(
          f.value('resolve') ?? f.value('threshold') ?? f.node,
          f.at('resolve'),
          `resolve (${resolve}) must not be ${direction} threshold (${threshold}), or the alert would flap`,
        );
      }
      rr.threshold = threshold;
      rr.resolve = resolve;
    };
    const num = (k: string): number | undefined => f.number(k, 0);

    switch (r.kind) {
      case 'churn_per_destination':
        r.rate = f.oneOf('rate', RATE_NAMES, r.rate)!;
        hysteresis((t) => t * 0.8, 'above', num);
        this.filter(f, r);
        break;
      case 'table_fill':
      case 'snat_port_exhaustion':
        hysteresis((t) => Math.max(t - 10, t / 2), 'above', (k) => this.percent(f, k));
        break;
      case 'time_to_full':
        hysteresis((t) => t * 2, 'below', (k) => f.seconds(k, { positive: true }));
        break;
      case 'kernel_drops':
        r.counters = f.stringList('counters') ?? r.counters;
        if (r.counters.length === 0) f.issue('counters', 'needs at least one counter');
        hysteresis((t) => t, 'above', num);
        break;
      case 'time_wait_pileup': {
        const st = f.str('state');
        if (st !== undefined) r.state = st.toUpperCase();
        hysteresis((t) => t * 0.75, 'above', num);
        this.filter(f, r);
        break;
      }
      case 'unreplied_pileup':
        hysteresis((t) => t / 2, 'above', num);
        this.filter(f, r);
        break;
      case 'churn_baseline':
        r.factor = f.number('factor', 1) ?? r.factor;
        r.minRate = f.number('min_rate', 0) ?? r.minRate;
        r.resolveFactor = f.has('resolve_factor') ? (f.number('resolve_factor', 0) ?? r.resolveFactor) : f.has('factor') ? r.factor / 2 : r.resolveFactor;
        r.resolveMinRate = f.has('resolve_min_rate') ? (f.number('resolve_min_rate', 0) ?? r.resolveMinRate) : f.has('min_rate') ? r.minRate / 2 : r.resolveMinRate;
        if (r.resolveFactor > r.factor) f.issue('resolve_factor', 'must not be above factor, or the alert would flap');
        if (r.resolveMinRate > r.minRate) f.issue('resolve_min_rate', 'must not be above min_rate, or the alert would flap');
        this.filter(f, r);
        break;
      case 'leak_fill':
        r.minRate = f.number('min_rate', 1) ?? r.minRate;
        r.burst = f.int('burst', 1, 100_000_000) ?? r.burst;
        hysteresis((t) => t * 2, 'below', (k) => f.seconds(k, { positive: true }));
        this.filter(f, r);
        break;
    }
    return r;
  }

  private filter(f: Fields, r: DestinationFilter): void {
    for (const key of ['match', 'ignore'] as const) r[key] = f.stringList(key, true) ?? r[key];
  }

  /** 80 or "80%" */
  private percent(f: Fields, key: string): number | undefined {
    const raw = f.raw(key);
    if (raw === undefined) return undefined;
    const v = typeof raw === 'string' && /^\s*\d+(\.\d+)?\s*%\s*$/.test(raw) ? parseFloat(raw) : raw;
    if (typeof v !== 'number' || !(v > 0 && v <= 100)) {
      return f.issue(key, 'expected a percentage of the table, 0 < x <= 100 (e.g. 80 or "80%")');
    }
    return v;
  }

  private template(f: Fields, key: string): string | undefined {
    const s = f.str(key);
    if (s === undefined) return undefined;
    for (const m of s.matchAll(/\{([^{}]*)\}/g)) {
      if (!(RESOLVED_PLACEHOLDERS as readonly string[]).includes(m[1])) {
        return f.issue(key, `unknown placeholder {${m[1]}} (use ${RESOLVED_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`);
      }
    }
    return s;
  }

  private deliveries(node: unknown): DeliverySpec[] {
    const out: DeliverySpec[] = [];
    const items = this.reader.list(node, 'deliver', 'a list of deliveries (- webhook: URL, or - exec: [argv])');
    if (!items) return out;
    if (items.length > MAX_DELIVERIES) {
      this.reader.fail(node, 'deliver', `${items.length} deliveries: at most ${MAX_DELIVERIES}`);
      return out;
    }
    items.forEach((item, i) => {
      const f = this.reader.fields(item, `deliver[${i}]`);
      if (!f) return;
      const isWebhook = f.keys().includes('webhook');
      const isExec = f.keys().includes('exec');
      if (isWebhook === isExec) {
        f.issue('', 'each delivery needs exactly one of webhook: URL or exec: [argv]');
        return;
      }
      const spec = isWebhook ? this.webhook(f) : this.exec(f);
      if (spec) out.push(spec);
    });
    return out;
  }

  private route(f: Fields): DeliveryCommon {
    return { minSeverity: f.oneOf('min_severity', SEVERITIES, 'info')!, sendResolved: f.bool('send_resolved', true) };
  }

  private webhook(f: Fields): WebhookSpec | undefined {
    const sink = readWebhookDelivery(f, ROUTE_FIELDS);
    const route = this.route(f);
    return sink ? { ...route, type: 'webhook', sink } : undefined;
  }

  private exec(f: Fields): ExecSpec | undefined {
    f.unknown('for an exec hook', ['exec', 'timeout', 'queue', 'concurrency', 'env', ...ROUTE_FIELDS]);
    const x = f.value('exec');
    if (isScalar(x) && typeof x.value === 'string') {
      f.issue('exec', 'give the command as a list, e.g. [/usr/local/bin/page, --team, infra]; no shell is used');
      return undefined;
    }
    const argv = f.stringList('exec');
    if (argv && argv.length === 0) f.issue('exec', 'needs the command to run');
    const env = f.stringList('env') ?? [];
    for (const name of env) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) f.issue('env', `${JSON.stringify(name)} is not an environment variable name`);
    return {
      ...this.route(f),
      type: 'exec',
      argv: argv ?? [],
      // a hook may run up to a day; past that it is stuck
      timeout: f.seconds('timeout', { positive: true, max: 86_400 }) ?? 10,
      queue: f.int('queue', 1, 1_000_000) ?? 100,
      concurrency: f.int('concurrency', 1, 64) ?? 2,
      env,
    };
  }
}

const ROUTE_FIELDS = ['min_severity', 'send_resolved'];

