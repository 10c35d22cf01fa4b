/**
 * What an alert rule set is: the rule kinds and their fields, the deliveries, and the built-in
 * rules that are useful with no file at all. Pure data and one predicate; the rules file is read
 * in ./rules.ts.
 */
import type { Alert } from './types.js';
import type { HttpSinkSpec } from '../sinks/config.js';

export type Severity = Alert['severity'];
export const SEVERITIES: readonly Severity[] = ['info', 'warning', 'critical'];

/** Which of the snapshot's rates a rule reads (new flows per second over 1, 10 or 60 s). */
export type RateName = 'new1' | 'new10' | 'new60';
export const RATE_NAMES: readonly RateName[] = ['new1', 'new10', 'new60'];

export type RuleKind =
  | 'churn_per_destination'
  | 'table_fill'
  | 'time_to_full'
  | 'kernel_drops'
  | 'time_wait_pileup'
  | 'churn_baseline'
  | 'unreplied_pileup'
  | 'leak_fill'
  | 'snat_port_exhaustion';
export const RULE_KINDS: readonly RuleKind[] = [
  'churn_per_destination',
  'table_fill',
  'time_to_full',
  'kernel_drops',
  'time_wait_pileup',
  'churn_baseline',
  'unreplied_pileup',
  'leak_fill',
  'snat_port_exhaustion',
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
  rate: RateName;
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

export interface UnrepliedPileupRule extends RuleBase, DestinationFilter {
  kind: 'unreplied_pileup';
  /** live entries to one destination unreplied for over 5 s (the stale age); fires above */
  threshold: number;
  resolve: number;
}

/**
 * A leak that would fill the table, seen within 2 s (./leak-fill.ts): one destination whose live
 * entries keep growing by at least `minRate` per second, have grown by `burst` since they began to,
 * and at that growth would fill what is left of the table within `threshold`. A pool refilling fewer
 * than `burst` connections cannot reach it; a leak of 2 000/s does on its first whole second.
 */
export interface LeakFillRule extends RuleBase, DestinationFilter {
  kind: 'leak_fill';
  /** live entries gained per second by one destination, at least, every snapshot of the run */
  minRate: number;
  /** live entries the run must have added: more than a pool refills at once */
  burst: number;
  /** seconds; fires when that destination alone would fill the table sooner than this */
  threshold: number;
  /** seconds; resolves when it would take at least this long, or it no longer grows */
  resolve: number;
}

export type Rule =
  | ChurnPerDestinationRule
  | TableFillRule
  | TimeToFullRule
  | KernelDropsRule
  | TimeWaitPileupRule
  | ChurnBaselineRule
  | UnrepliedPileupRule
  | LeakFillRule
  | SnatPortExhaustionRule;

/** SNAT / masquerade: one (translated source, destination) pair uses this share of the port range. */
export interface SnatPortExhaustionRule extends RuleBase {
  kind: 'snat_port_exhaustion';
  /** percent of the local port range in use for one pair; fires above */
  threshold: number;
  resolve: number;
}

/** How each destination's normal churn is learned (shared by every rule that quotes "its median"). */
export interface BaselineConfig {
  rate: RateName;
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
}

/**
 * A webhook is an HTTP sink for alert records (src/sinks/): one JSON alert per POST, with the
 * webhook policy (sinks/config.ts WEBHOOK_POLICY) unless the file says otherwise.
 */
export interface WebhookSpec extends DeliveryCommon {
  type: 'webhook';
  sink: HttpSinkSpec;
}

export interface ExecSpec extends DeliveryCommon {
  type: 'exec';
  /** command and arguments; no shell */
  argv: string[];
  /** seconds per run */
  timeout: number;
  /** bounded queue; the oldest waiting alert is dropped when full */
  queue: number;
  /** hooks running at once */
  concurrency: number;
  /** names of ctwatch's environment variables the hook may see (an allow-list; none by default) */
  env: string[];
}

export type DeliverySpec = WebhookSpec | ExecSpec;

export interface AlertConfig {
  rules: Rule[];
  baseline: BaselineConfig;
  deliver: DeliverySpec[];
}

/** Placeholders a `resolved_message` template may use. */
export const RESOLVED_PLACEHOLDERS = ['rule', 'subject', 'severity', 'netns', 'value', 'duration'] as const;

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
    {
      ...common,
      ...anyDestination(),
      // the stale UDP DNAT class (kubernetes #139628): sends into a backend that is gone, each
      // entry kept alive by the next packet, never a reply
      name: 'unreplied_pileup',
      kind: 'unreplied_pileup',
      severity: 'warning',
      for: 30,
      threshold: 100,
      resolve: 50,
    },
    {
      ...common,
      // masquerade runs out of source ports towards one destination long before the table fills
      name: 'snat_port_exhaustion',
      kind: 'snat_port_exhaustion',
      severity: 'warning',
      for: 10,
      threshold: 80,
      resolve: 70,
    },
    {
      ...common,
      ...anyDestination(),
      name: 'leak_fill',
      kind: 'leak_fill',
      severity: 'critical',
      // the run itself is the confirmation: growth that lasts and adds more than a pool refill
      for: 0,
      minRate: 500,
      burst: 1500,
      threshold: 15 * MINUTE,
      resolve: 30 * MINUTE,
    },
  ];
}

export function defaultConfig(): AlertConfig {
  return { rules: defaultRules(), baseline: { ...DEFAULT_BASELINE }, deliver: [] };
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
