/**
 * The fleet, as a pure function of what the hosts published: each host's last churn snapshot and
 * its active alerts, merged into hosts by table fill and time to full, destinations and processes
 * across hosts (with which hosts), and the fleet's own alerts: one destination churning from many
 * hosts, a host whose collector went silent. No I/O; the caller passes the monotonic time a
 * message arrived (silence is measured on the consumer's clock: a silent host has no clock to ask).
 */

/** The `ctwatch fleet --json` line (docs/fleet.md). */
export const FLEET_VIEW_VERSION = 1;

export interface FleetOptions {
  /** a host with nothing published for this long is silent (ms) */
  silentAfterMs: number;
  /** a destination churning on at least this many hosts ... */
  minHosts: number;
  /** ... at at least this many new flows per second on each */
  minRate: number;
  /** rows per table */
  top: number;
}

export const DEFAULT_FLEET: FleetOptions = { silentAfterMs: 30_000, minHosts: 3, minRate: 50, top: 10 };

interface KeyRow {
  key: string;
  new1?: number;
  new10?: number;
  live?: number;
}

/** The part of a churn line (docs/schema.md) the fleet reads. */
interface ChurnLine {
  time?: string;
  live?: number;
  overall?: { new1?: number; new10?: number; end1?: number };
  table?: { entries?: number | null; max?: number | null; fill?: number | null; growth?: number; timeToFull?: number | null };
  destinations?: KeyRow[];
  processes?: KeyRow[];
}

interface AlertLine {
  event: 'alert' | 'resolved';
  rule?: string;
  subject?: string;
  severity?: string;
  message?: string;
  time?: string;
}

interface HostState {
  host: string;
  seenAt: number;
  snapshot?: ChurnLine;
  alerts: Map<string, AlertLine>;
  flows: number;
  messages: number;
}

export interface FleetHost {
  host: string;
  /** table fill 0..1, null when the host's kernel figures are unknown */
  fill: number | null;
  entries: number | null;
  max: number | null;
  timeToFull: number | null;
  newPerS: number;
  live: number;
  topDestination: string | null;
  topProcess: string | null;
  flows: number;
  alerts: number;
  /** seconds since anything arrived from it */
  silentFor: number;
  silent: boolean;
  /** the host's time of its last snapshot */
  time: string | null;
}

export interface FleetKey {
  key: string;
  newPerS: number;
  live: number;
  hosts: { host: string; newPerS: number }[];
}

export interface FleetAlert {
  rule: 'fleet_destination_churn' | 'host_silent' | 'host_alert';
  severity: string;
  subject: string;
  message: string;
  hosts: string[];
}

export interface FleetView {
  v: number;
  event: 'fleet';
  hosts: FleetHost[];
  destinations: FleetKey[];
  processes: FleetKey[];
  alerts: FleetAlert[];
  messages: number;
}

/** `ctwatch.<host>.<kind>` → host and kind (undefined for another subject). */
export function parseSubject(subject: string, prefix = 'ctwatch'): { host: string; kind: string } | undefined {
  if (!subject.startsWith(`${prefix}.`)) return undefined;
  const rest = subject.slice(prefix.length + 1).split('.');
  if (rest.length !== 2 || !rest[0] || !rest[1]) return undefined;
  return { host: rest[0], kind: rest[1] };
}

function merge(rows: Map<string, FleetKey>, host: string, list: KeyRow[] | undefined): void {
  for (const r of list ?? []) {
    if (typeof r?.key !== 'string') continue;
    const rate = Number(r.new1 ?? 0) || 0;
    let k = rows.get(r.key);
    if (!k) rows.set(r.key, (k = { key: r.key, newPerS: 0, live: 0, hosts: [] }));
    k.newPerS += rate;
    k.live += Number(r.live ?? 0) || 0;
    k.hosts.push({ host, newPerS: rate });
  }
}

const byRate = (a: FleetKey, b: FleetKey) => b.newPerS - a.newPerS || b.live - a.live || a.key.localeCompare(b.key);
/** the key with the most new flows per second; among equals, the most live entries */
function topKey(list: KeyRow[] | undefined): string | null {
  let best: KeyRow | undefined;
  for (const r of list ?? []) {
    if (!best || (r.new10 ?? r.new1 ?? 0) > (best.new10 ?? best.new1 ?? 0) || ((r.new10 ?? r.new1 ?? 0) === (best.new10 ?? best.new1 ?? 0) && (r.live ?? 0) > (best.live ?? 0))) best = r;
  }
  return best?.key ?? null;
}

/**
 * Bounds on what publishers can make the consumer hold: anyone with publish rights on ctwatch.>
 * names hosts and alert subjects, so both are capped (what does not fit is counted in `dropped`),
 * and hosts silent for FORGET_AFTER × --silent-after make room first.
 */
export const FLEET_LIMITS = { hosts: 10_000, alertsPerHost: 1_000, forgetAfter: 10 };
const KNOWN_KINDS = new Set(['flow', 'alert', 'resolved', 'churn', 'overflow', 'new', 'update', 'destroy', 'snapshot', 'snapshot_done']);

export class FleetState {
  private readonly hosts = new Map<string, HostState>();
  /** messages not kept because a bound was reached: a host past FLEET_LIMITS.hosts, an alert past alertsPerHost */
  readonly dropped = { hosts: 0, alerts: 0 };
  private messages = 0;
  readonly o: FleetOptions;
  /** messages by kind, for metrics */
  readonly byKind = new Map<string, number>();
  /** messages that were not JSON or not ours */
  malformed = 0;

  constructor(o: Partial<FleetOptions> = {}) {
    this.o = { ...DEFAULT_FLEET, ...o };
  }

  /** One message from the stream. `now`: monotonic ms. */
  ingest(subject: string, data: string, now: number): void {
    const s = parseSubject(subject);
    if (!s) {
      this.malformed++;
      return;
    }
    this.messages++;
    const kind = KNOWN_KINDS.has(s.kind) ? s.kind : 'other';
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    let h = this.hosts.get(s.host);
    if (!h) {
      if (this.hosts.size >= FLEET_LIMITS.hosts) this.forgetSilent(now);
      if (this.hosts.size >= FLEET_LIMITS.hosts) {
        this.dropped.hosts++;
        return;
      }
      this.hosts.set(s.host, (h = { host: s.host, seenAt: now, alerts: new Map(), flows: 0, messages: 0 }));
    }
    h.seenAt = Math.max(h.seenAt, now);
    h.messages++;
    if (s.kind === 'flow') {
      // flows are counted, not parsed: at 20 000/s parsing them is the consumer's whole budget
      h.flows++;
      return;
    }
    if (s.kind !== 'churn' && s.kind !== 'alert' && s.kind !== 'resolved') return;
    let rec: unknown;
    try {
      rec = JSON.parse(data);
    } catch {
      this.malformed++;
      return;
    }
    if (rec === null || typeof rec !== 'object') {
      this.malformed++;
      return;
    }
    if (s.kind === 'churn') {
      const c = rec as ChurnLine;
      // replayed or reordered snapshots: keep the newest (RFC 3339 UTC strings sort as times)
      if (!h.snapshot || !h.snapshot.time || !c.time || c.time >= h.snapshot.time) h.snapshot = c;
      return;
    }
    const a = rec as AlertLine;
    const key = `${a.rule ?? ''}\u0000${a.subject ?? ''}`;
    if (s.kind === 'alert') {
      if (!h.alerts.has(key) && h.alerts.size >= FLEET_LIMITS.alertsPerHost) {
        this.dropped.alerts++;
        return;
      }
      h.alerts.set(key, a);
    } else h.alerts.delete(key);
  }

  /** Forgets hosts silent for FLEET_LIMITS.forgetAfter × silentAfterMs (they are reported silent long before). */
  private forgetSilent(now: number): void {
    const limit = FLEET_LIMITS.forgetAfter * this.o.silentAfterMs;
    for (const [name, h] of this.hosts) if (now - h.seenAt > limit) this.hosts.delete(name);
  }

  view(now: number): FleetView {
    const hosts: FleetHost[] = [];
    const dests = new Map<string, FleetKey>();
    const procs = new Map<string, FleetKey>();
    const alerts: FleetAlert[] = [];
    for (const h of this.hosts.values()) {
      const s = h.snapshot;
      const t = s?.table;
      const silentFor = Math.max(0, (now - h.seenAt) / 1000);
      const silent = now - h.seenAt > this.o.silentAfterMs;
      hosts.push({
        host: h.host,
        fill: t?.fill ?? null,
        entries: t?.entries ?? null,
        max: t?.max ?? null,
        timeToFull: t?.timeToFull ?? null,
        newPerS: s?.overall?.new1 ?? 0,
        live: s?.live ?? 0,
        topDestination: topKey(s?.destinations),
        topProcess: topKey(s?.processes),
        flows: h.flows,
        alerts: h.alerts.size,
        silentFor: Math.round(silentFor * 10) / 10,
        silent,
        time: s?.time ?? null,
      });
      if (silent) {
        alerts.push({
          rule: 'host_silent',
          severity: 'warning',
          subject: h.host,
          message: `${h.host}: nothing published for ${Math.round(silentFor)} s (collector stopped, host down, or its sink is spooling)`,
          hosts: [h.host],
        });
        // a silent host's last figures are not what its table does now
        continue;
      }
      merge(dests, h.host, s?.destinations);
      merge(procs, h.host, s?.processes);
      for (const a of h.alerts.values()) {
        alerts.push({ rule: 'host_alert', severity: a.severity ?? 'warning', subject: `${h.host} ${a.subject ?? ''}`.trim(), message: `${h.host}: ${a.message ?? a.rule ?? 'alert'}`, hosts: [h.host] });
      }
    }
    for (const d of dests.values()) {
      const churning = d.hosts.filter((x) => x.newPerS >= this.o.minRate);
      if (churning.length >= this.o.minHosts) {
        alerts.push({
          rule: 'fleet_destination_churn',
          severity: 'warning',
          subject: d.key,
          message: `churn to ${d.key} from ${churning.length} hosts, ${Math.round(d.newPerS)} new/s in all (${churning.map((x) => x.host).sort().join(', ')})`,
          hosts: churning.map((x) => x.host).sort(),
        });
      }
    }
    for (const k of [...dests.values(), ...procs.values()]) k.hosts.sort((a, b) => b.newPerS - a.newPerS || a.host.localeCompare(b.host));
    // hosts by table fill (the page-worthy fact), then by time to full
    hosts.sort((a, b) => (b.fill ?? -1) - (a.fill ?? -1) || (a.timeToFull ?? Infinity) - (b.timeToFull ?? Infinity) || a.host.localeCompare(b.host));
    const order = { fleet_destination_churn: 0, host_silent: 1, host_alert: 2 };
    alerts.sort((a, b) => order[a.rule] - order[b.rule] || a.subject.localeCompare(b.subject));
    return {
      v: FLEET_VIEW_VERSION,
      event: 'fleet',
      hosts,
      destinations: [...dests.values()].sort(byRate).slice(0, this.o.top),
      processes: [...procs.values()].sort(byRate).slice(0, this.o.top),
      alerts,
      messages: this.messages,
    };
  }
}
