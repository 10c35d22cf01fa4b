/**
 * The engine's periodic view of the table, the contract between the flow engine (producer) and
 * alerting, `top`, `stats` and the metrics endpoint (consumers). Rates are per second.
 *
 * A row's `key` is the map key and the text shown; what the key is made of (a destination's
 * address, port and protocol, a process's pid and command, a unit's name) is carried in the row
 * beside it, written by the layer that made the key, so consumers read fields and never parse keys.
 */
import type { Destination } from '../flow/keys.js';

export type { Destination };

export interface Rates {
  /** new flows per second over the last 1 s, 10 s and 60 s */
  new1: number;
  new10: number;
  new60: number;
  /** destroyed flows per second over the same windows */
  end1: number;
  end10: number;
  end60: number;
}

/** A heavy hitter: a destination ("127.0.0.5:6379/tcp"), a source ("127.0.1.7") or a protocol. */
export interface KeyChurn extends Rates {
  key: string;
  /** flows of this key alive in the table right now (approximate for keys outside the top-K) */
  live: number;
  /** live flows by TCP state, e.g. { TIME_WAIT: 1834, ESTABLISHED: 12 } (destinations only) */
  states?: Record<string, number>;
  /** lifetime quantiles of flows that ended, seconds (destinations only) */
  lifetimeP50?: number;
  lifetimeP99?: number;
  /** share of ended flows that lived < 1 s, 0..1 */
  shortLived?: number;
  /** Space-Saving overestimation bound for this key's count (0 when exact) */
  error?: number;
  /** a DNATed service address (destinations only): the backend most of its new flows were
   * translated to ("127.0.0.5:6379"), and how many distinct backends were seen (up to 8) */
  backend?: string;
  backends?: number;
}

/** A destination row: the key's parts beside it (absent in rows read back from older lines). */
export interface DestinationChurn extends KeyChurn, Partial<Destination> {}

/** Who a process row is: the flow line's `process.pid` and `process.comm`. */
export interface ProcessRef {
  pid: number;
  comm: string;
}

/** A per-process row ("api-worker[4121]") with its pid and command. */
export interface ProcessKeyChurn extends KeyChurn, Partial<ProcessRef> {}

/** What a group row is: one of a systemd unit, a container (its id's first 12 hex digits, as in
 * the key) or a Kubernetes pod and its QoS class: the flow line's `process` fields. */
export interface GroupRef {
  unit?: string;
  container?: string;
  pod?: string;
  qos?: string;
  /** the pod's name and namespace, from the runtime's CRI socket (src/process/cri.ts) once known */
  podName?: string;
  podNamespace?: string;
}

/** A per-unit / per-container / per-pod row with what it is. */
export interface GroupKeyChurn extends KeyChurn, GroupRef {}

export interface TablePressure {
  /** entries in the kernel table (CTA_STATS_GLOBAL_ENTRIES); null when unknown (replay without stats) */
  entries: number | null;
  /** nf_conntrack_max (CTA_STATS_GLOBAL_MAX_ENTRIES) */
  max: number | null;
  /** entries / max, 0..1 */
  fill: number | null;
  /** net growth, entries per second, over the last 10 s */
  growth: number;
  /** seconds until full at the current growth; null when not growing */
  timeToFull: number | null;
  /** kernel per-CPU counters summed (drop, early_drop, insert_failed, error, invalid, ...) */
  kernel: Record<string, number>;
}

/** Live entries that never got a reply, per destination (the stale UDP DNAT class). */
export interface UnrepliedView {
  /** live entries without SEEN_REPLY, whole table */
  total: number;
  /** of them, unreplied for longer than `staleAfter` seconds */
  stale: number;
  staleAfter: number;
  /** top destinations by stale then unreplied entries; `dnat` counts the DNATed ones */
  destinations: { key: string; unreplied: number; stale: number; dnat: number; oldestAge: number }[];
  /** every destination with unreplied entries is in the list */
  complete: boolean;
}

/** Source NAT (masquerade) port use: how many translated source ports are in use per
 * (translated source address, destination address:port), against the range ports come from. */
export interface SnatView {
  /** the ports SNAT can give one pair: the smallest port range of an nft snat/masquerade rule of
   * the NAT namespace (from 'nft rule'), else 1024-65535 (from 'kernel default'); null when unknown */
  range: { low: number; high: number; from?: string } | null;
  /** the busiest pairs first */
  pairs: SnatPair[];
  /** every pair with ports in use is listed */
  complete: boolean;
}

export interface SnatPair {
  /** "192.0.2.1 → 10.0.0.5:80/tcp" */
  key: string;
  /** the translated source address */
  src: string;
  /** the destination the translated flows go to: "10.0.0.5:80/tcp" */
  destination: string;
  /** distinct translated source ports in use (live entries) */
  ports: number;
  /** ports / the range's size, 0..1; null when the range is unknown */
  share: number | null;
}

export interface ChurnSnapshot {
  event: 'churn';
  /** µs since epoch (recorded time on replay) */
  time: number;
  netns?: string;
  overall: Rates;
  /** flows the tracker holds */
  live: number;
  /** live flows by TCP state, whole table */
  states: Record<string, number>;
  /** share of flows ended in the last 60 s that lived < 1 s */
  shortLived: number;
  table: TablePressure;
  /** top keys by new1 rate, descending */
  destinations: DestinationChurn[];
  sources: KeyChurn[];
  protocols: KeyChurn[];
  /** per-process churn ("comm[pid]"), filled once attribution exists */
  processes?: ProcessKeyChurn[];
  /** per conntrack zone ("0", "7"), by live entries; absent until a zone other than 0 is seen */
  zones?: KeyChurn[];
  /** unreplied entries; absent unless UPDATE events arrive (a reply is only seen through one) */
  unreplied?: UnrepliedView;
  /** SNAT / masquerade source port use; absent until a source-translated flow is seen */
  snat?: SnatView;
  /** per systemd unit ("unit:nginx.service") or container ("container:0123456789ab") */
  groups?: GroupKeyChurn[];
  /** flows attribution could not name a process for, one row per reason ("no-stamp", "gone"):
   * beside `processes`, so the per-process rates are not read as the whole */
  unattributed?: KeyChurn[];
}

/** A destination's figures for a rule; `rated` is false when no rate was counted (only live counts). */
export interface DestinationFigure extends DestinationChurn {
  rated: boolean;
}

/**
 * Figures for any destination at a snapshot's time, beyond its top-N list: what alert rules judge,
 * so a rule's candidates are its own and not whatever made the list (ChurnEngine.figures()).
 */
export interface DestinationFigures {
  /** destinations with rate figures: the tracked heavy hitters and the watched keys */
  keys(): string[];
  /** one destination's figures; null when nothing is known of it (no rates, no live flows) */
  get(key: string): DestinationFigure | null;
  /** destinations with more than `above` live flows in TCP state `state` (exact, from the table) */
  inState(state: string, above: number): string[];
}
