/**
 * What alert rules hand the evaluator's state machine (src/alerts/evaluator.ts): per subject, an
 * Observation of one snapshot. The rules' judgements live beside this file by what they judge:
 * observe-destination.ts (per destination), observe-table.ts (the whole table), observe-lists.ts
 * (the unreplied and SNAT lists). All are pure: they read the snapshot and its context only.
 */
import type { BaselineConfig } from './rules.js';
import type { LeakRuns } from './leak-fill.js';
import type { ChurnSnapshot, Destination, DestinationFigures } from '../churn/snapshot.js';
import type { Alert } from './types.js';
import { round, type Grouping } from './format.js';

export type Values = Alert['values'];

/** What one rule sees for one subject in one snapshot. Texts are built only when needed. */
export interface Observation {
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

/**
 * A subject that does not fire and that the state machine remembers nothing of: nothing would
 * change, so its figures, words and values are not built (about 250 destinations, several rules
 * each, every second: building them all held the collector for milliseconds a tick). The
 * evaluator drops it; nothing of it is ever read. Should it ever be read, it neither fires nor
 * clears: a subject judged quiet by mistake keeps whatever alert it has.
 */
export const QUIET: Observation = Object.freeze({
  fire: false,
  clear: false,
  values: Object.freeze({}) as Values,
  value: () => '',
  message: () => '',
  resolved: () => '',
  hint: '',
});

/** What every rule may need from one snapshot, computed once. */
export interface Context {
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

/** The evaluator's settings a judgement reads. */
export interface Judging {
  grouping: Grouping;
  baseline: BaselineConfig;
  /** leak_fill's memory of a rule's growth runs (the evaluator keeps it, per rule) */
  leakRuns: (rule: string) => LeakRuns;
}

/** A subject the state machine remembers for a rule (pending, firing or cooling down). */
export interface Remembered {
  ns: string;
  subject: string;
  /** the subject's parts as last seen (a destination), for its hint once it left the lists */
  destination?: Partial<Destination>;
}

export const US = 1e6;
export const round1 = (n: number): number => round(n, 1);
// factors below 1 (a collapse) need the second decimal
export const round2 = (n: number): number => round(n, 2);
