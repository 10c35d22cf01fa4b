/**
 * The Prometheus view of the collector: table pressure, churn, source health, alerts and delivery,
 * refreshed by `update()` (once a second, from the engine's snapshot) and read by scrapes.
 *
 * Choices, documented for operators in docs/metrics.md:
 * - Unknown is absent, not 0 and not NaN. A replay without kernel statistics has no table size,
 *   and a table that is not growing has no time to full; a 0 would be a lie an alert could fire on,
 *   and a NaN poisons sum()/avg() across instances. An absent sample simply goes stale.
 * - Figures the producers keep as running totals (events read, alerts fired, kernel drops, records
 *   sent) are Counters. They arrive as absolute values, and prom-client's Counter has only inc(),
 *   so each update removes the sample and increments from nothing by the absolute value. A Gauge
 *   named `_total` would say `# TYPE gauge`, which promtool flags and which tells readers that
 *   rate() does not apply. A value that goes down (a restart, a reloaded dispatcher) is a counter
 *   reset, which rate() and increase() already handle.
 * - Rates are gauges per window because the engine computes them (1, 10, 60 s). They are a
 *   convenience for dashboards; `ctwatch_source_events_total` is the count to rate() over.
 * - Label values that name hosts or ports appear only in the top-N metrics, and only for the
 *   current top N: each update removes the label sets that dropped out, so the series count stays
 *   at most N per metric and window.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { Alert } from '../alerts/types.js';
import type { ChurnSnapshot, KeyChurn, Rates } from '../churn/snapshot.js';
import type { SourceCounters } from '../source/types.js';
import type { NativeJoinCounters } from '../source/native.js';
import { TCP_STATES } from '../source/names.js';
import { serveMetrics, type MetricsServer } from './server.js';

export interface MetricsInput {
  snapshot?: ChurnSnapshot;
  source?: SourceCounters;
  /** the alerts active now (what AlertEvaluator.active() returns); [] clears them */
  activeAlerts?: readonly Alert[];
  /** alerts fired since start */
  firedTotal?: number;
  /** Dispatcher.stats(): DeliveryStats (WebhookStats, ExecStats) by delivery name */
  deliveries?: Record<string, object>;
  /** SinkSet.counters(): SinkCounters by sink name */
  sinks?: Record<string, object>;
  /** OwnerAttribution.stats (process attribution): flows taken, attributed, misses by reason */
  attribution?: { flows: number; attributed: number; reasons: Record<string, number>; incomplete?: number; cri?: { lookups: number; pods: number; failures: Record<string, number> } };
  /** LiveSource.attribution: the reader thread's join, and in eBPF mode the programs' stamps */
  join?: NativeJoinCounters;
  /** the namespace the collector watches; becomes a `netns` label on every series */
  netns?: string;
}

export interface MetricsExporterOptions {
  /** destinations and sources exported per list; default 10 */
  topN?: number;
}

export const PREFIX = 'ctwatch_';

/** The eBPF programs' flow-stamping hooks, as BpfStamps::Counters names them (native/attribution/bpf_stamps.cc). */
const STAMP_HOOKS = ['connect', 'sendto', 'send'] as const;

type TopLabel = 'destination' | 'source' | 'process' | 'group' | 'zone';
interface TopList {
  label: TopLabel;
  newRate: Gauge;
  endRate: Gauge;
  live: Gauge;
}

const WINDOWS = [
  ['1', 'new1', 'end1'],
  ['10', 'new10', 'end10'],
  ['60', 'new60', 'end60'],
] as const satisfies readonly (readonly [string, keyof Rates, keyof Rates])[];

/**
 * What each kernel statistic means (CTA_STATS_*, as `conntrack -S` names them). Newer kernels no
 * longer report some (searched, new, delete, ...); the ones absent from a reading are not exported.
 */
export const KERNEL_STATS: Record<string, string> = {
  searched: 'hash table lookups (no longer reported by recent kernels)',
  found: 'lookups that found an existing entry',
  new: 'entries added (no longer reported by recent kernels)',
  invalid: 'packets conntrack could not track (malformed, out of window, no protocol state)',
  ignore: 'packets that already had an entry attached or were untracked (notrack)',
  delete: 'entries deleted (no longer reported by recent kernels)',
  delete_list: 'entries removed from the dying list (no longer reported by recent kernels)',
  insert: 'entries inserted into the table',
  insert_failed: 'entries that could not be inserted (a clash with an existing entry); the packet was dropped',
  drop: 'packets dropped because no entry could be allocated: the table was full and nothing could be evicted',
  early_drop: 'unassured entries evicted to make room because the table was full',
  error: 'packets rejected by the protocol error check (a subset of invalid)',
  search_restart: 'lookups restarted because the hash table changed under them',
  clash_resolve: 'insertion clashes resolved by reusing the existing entry (no drop)',
  chaintoolong: 'entries refused because their hash chain was too long; the packet was dropped',
};

const DELIVERY_COUNTERS = [
  ['sent', 'alerts delivered (2xx from a webhook, exit 0 from a hook)'],
  ['failed', 'alerts given up on after the last retry, or refused by the receiver'],
  ['dropped', 'alerts never tried: the queue was full, or left over at shutdown'],
  ['retried', 'webhook attempts that were retried; one alert can count several times'],
  ['timedOut', 'exec hook runs killed at the timeout'],
] as const;

const SINK_COUNTERS = [
  ['sent', 'records the receiver accepted (at least once: a replay after a failure can count twice)'],
  ['retried', 'record sends that failed transiently and were tried again'],
  ['spooled', 'records written to the disk spool because the receiver was down or slow'],
  ['dropped', 'records lost for good: spool or memory full, rejected by the receiver, unencodable'],
  ['truncated', 'messages cut to the transport size limit (syslog)'],
] as const;

const SINK_GAUGES = [
  ['queued', 'queued_records', 'records waiting in memory'],
  ['spoolRecords', 'spool_records', 'records waiting in the disk spool'],
  ['spoolBytes', 'spool_bytes', 'bytes waiting in the disk spool'],
] as const;

type Labels = Record<string, string>;

const kernelHelp = (what: string): string => `Kernel conntrack, summed over CPUs (conntrack -S): ${what}.`;

/** camelCase → snake_case, and anything else Prometheus would refuse → '_'. */
function snake(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_');
}

function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Sets (or, for an unknown value, removes) the sample of a gauge. */
function setGauge(g: Gauge, value: unknown, labels?: Labels): void {
  if (finite(value)) {
    if (labels) g.set(labels, value);
    else g.set(value);
  } else if (labels) g.remove(labels);
  else g.remove();
}

/** Sets a counter to an absolute total; see the header for why a Counter and not a Gauge. */
function setTotal(c: Counter, value: unknown, labels?: Labels): void {
  if (labels) c.remove(labels);
  else c.remove();
  if (!finite(value) || value < 0) return;
  if (labels) c.inc(labels, value);
  else c.inc(value);
}

export class MetricsExporter {
  /** Its own registry, so an embedding program's global metrics never mix with ours. */
  readonly registry = new Registry();
  private readonly topN: number;
  private netns: string | undefined;

  private readonly g = (name: string, help: string, labelNames: string[] = []): Gauge => {
    const m = new Gauge({ name: PREFIX + name, help, labelNames, registers: [this.registry] });
    // no sample until the first update provides one: a fresh 0 would claim an empty table
    if (labelNames.length === 0) m.remove();
    return m;
  };

  private readonly c = (name: string, help: string, labelNames: string[] = []): Counter => {
    const m = new Counter({ name: PREFIX + name, help, labelNames, registers: [this.registry] });
    if (labelNames.length === 0) m.remove();
    return m;
  };

  // table
  private readonly entries = this.g('conntrack_entries', 'Entries in the kernel conntrack table.');
  private readonly limit = this.g('conntrack_entries_limit', 'Size limit of the conntrack table (nf_conntrack_max).');
  private readonly fill = this.g('conntrack_fill_ratio', 'conntrack_entries / conntrack_entries_limit, 0..1.');
  private readonly toFull = this.g(
    'conntrack_time_to_full_seconds',
    'Estimated seconds until the table is full at its growth over the last 10 s; 0 when full, absent when not growing.',
  );
  // known statistics registered up front, so HELP text and output order do not depend on what the
  // kernel happens to send; unknown ones are added when first seen
  private readonly kernel = new Map<string, Counter>(
    Object.entries(KERNEL_STATS).map(([name, what]) => [name, this.c(`conntrack_stat_${name}_total`, kernelHelp(what))]),
  );

  // flows
  private readonly newRate = this.g('flows_new_per_second', 'New flows per second, averaged over window_seconds.', ['window_seconds']);
  private readonly endRate = this.g(
    'flows_destroyed_per_second',
    'Destroyed flows per second, averaged over window_seconds.',
    ['window_seconds'],
  );
  private readonly live = this.g('flows_live', 'Flows ctwatch tracks as alive, all protocols.');
  private readonly tcpLive = this.g('tcp_flows_live', 'Live TCP flows by conntrack TCP state.', ['state']);
  private readonly shortLived = this.g(
    'flows_short_lived_ratio',
    'Share of the flows that ended in the last 60 s which lived less than 1 s, 0..1.',
  );
  // entries that never got a reply (only with UPDATE events: a reply is seen through one)
  private readonly unreplied = this.g('flows_unreplied', 'Live flows that never saw a reply (no SEEN_REPLY); stale: unreplied for over 5 s.', ['age']);
  private readonly topUnreplied = this.g(
    'top_destination_flows_unreplied',
    'Unreplied live flows to each destination with most stale ones; dnat="true" counts those whose destination was DNATed.',
    ['destination', 'age', 'dnat'],
  );
  private readonly topUnrepliedAge = this.g('top_destination_unreplied_oldest_seconds', 'Age of the oldest unreplied live flow to each destination listed in top_destination_flows_unreplied.', ['destination']);
  // SNAT / masquerade source ports (only once a source-translated flow is seen)
  private readonly snatPorts = this.g(
    'snat_ports_in_use',
    'Distinct translated source ports in use by live entries per (translated source address, destination).',
    ['source', 'destination'],
  );
  private readonly snatRange = this.g('snat_port_range_size', 'Ports SNAT / masquerade can give one pair: the smallest port range of an nft snat or masquerade rule of the namespace doing SNAT, else the kernel default 1024-65535; what snat_ports_in_use is judged against.');
  private readonly snapshotTime = this.g(
    'snapshot_timestamp_seconds',
    'Time of the churn snapshot behind these figures (recorded time on replay), Unix seconds.',
  );

  // top N: the same three families for every list, labelled with what the list ranks
  private readonly topList = (label: TopLabel, what: string): TopList => ({
    label,
    newRate: this.g(`top_${label}_flows_new_per_second`, `New flows per second ${what}.`, [label, 'window_seconds']),
    endRate: this.g(`top_${label}_flows_destroyed_per_second`, `Destroyed flows per second ${what}.`, [label, 'window_seconds']),
    live: this.g(`top_${label}_flows_live`, `Live flows ${what}.`, [label]),
  });
  private readonly top = {
    destination: this.topList('destination', 'to each of the current top destinations (address:port/protocol)'),
    source: this.topList('source', 'from each of the current top source addresses'),
    process: this.topList('process', 'of each of the current top local processes (comm[pid]), attributed flows only'),
    group: this.topList('group', 'of each of the current top systemd units / containers (unit:NAME, container:ID), attributed flows only'),
    zone: this.topList('zone', 'in each conntrack zone (present once a zone other than 0 is seen)'),
  };

  // process attribution
  private readonly attrFlows = this.c('attribution_flows_total', 'Flows taken for process attribution (new flows with a socket to look up, and the start-up snapshot).');
  private readonly attrAttributed = this.c('attribution_attributed_total', 'Flows whose local process was found.');
  private readonly attrMisses = this.c(
    'attribution_misses_total',
    'Flows left without a process, by reason (not-local, unsupported, gone, no-socket, no-pid, shared, error, overload).',
    ['reason'],
  );
  private readonly attrIncomplete = this.c(
    'attribution_incomplete_total',
    'Processes named without all of their user, executable and cgroup: more were being read at once than are kept (4096).',
  );
  private readonly criLookups = this.c('attribution_cri_lookups_total', 'Pod lists read from the container runtime\'s CRI socket (ListPodSandbox), for pod names.');
  private readonly criFailures = this.c(
    'attribution_cri_failures_total',
    'CRI pod-name lookups that failed, by reason (refused: the socket failed the ownership checks, deadline, unavailable, invalid, error); pods keep their UID.',
    ['reason'],
  );
  private readonly criPods = this.g('attribution_cri_pods', 'Pods whose name and namespace the CRI socket gave, cached.');
  // the reader thread's join and, in eBPF mode, the stamps it joins with
  private readonly joinLookups = this.c(
    'attribution_kernel_lookups_total',
    'Owner lookups the reader thread made in the kernel, a syscall each (ebpf: the listener map for flows to a local listener, and the stamp map for a tuple its copy did not hold; sockdiag: sock_diag queries).',
  );
  private readonly joinFromCopy = this.c('attribution_copy_answers_total', 'Stamp lookups the reader thread\'s copy of the eBPF stamp map answered, without a syscall (ebpf mode).');
  private readonly joinBusy = this.c('attribution_join_busy_seconds_total', 'Reader-thread time spent joining new flows with their owners.');
  private readonly stampsByHook = this.c(
    'attribution_stamps_total',
    'Flow stamps the eBPF programs made on the whole host since they loaded, by hook (connect: TCP; sendto: UDP to an address; send: connected UDP), datagrams not written again included (attribution_stamps_unchanged_total).',
    ['hook'],
  );
  private readonly stampsUnchanged = this.c(
    'attribution_stamps_unchanged_total',
    'Datagrams (hook sendto or send) from the process that stamped their tuple less than a second before: the stamp is not written again.',
    ['hook'],
  );
  private readonly listeners = this.c(
    'attribution_listeners_total',
    'Listening sockets the eBPF programs recorded on the whole host (listen: TCP; bind: UDP) and forgot (close: the socket closed).',
    ['change'],
  );
  private readonly ringCopied = this.c('attribution_stamp_ring_copied_total', 'Stamps the reader threads took from the stamp ring into their copy of the map.');
  private readonly ringLost = this.c(
    'attribution_stamp_ring_lost_total',
    'Stamps the stamp ring had no room for. Nothing is misattributed: the copy of the map is dropped and the kernel\'s map answers (a syscall a new flow) until the copy is whole again.',
  );
  private readonly ringPassedOver = this.c(
    'attribution_stamp_ring_passed_over_total',
    'Stamps read from the ring but not copied, because they were written before a loss was seen or before the copy resumed after an overrun (the kernel\'s map still has them).',
  );
  private readonly copyResets = this.c(
    'attribution_stamp_copy_resets_total',
    'Times the copy of the stamp map was dropped: after a loss of the ring, at an overrun and again when it resumes, or at a record the ring should not hold.',
  );
  private readonly copyOverruns = this.c(
    'attribution_stamp_copy_overruns_total',
    'Times stamps came faster than the reader threads copy them (100 000 per 100 ms): the copy was switched off for a second and the kernel\'s map answered.',
  );

  // source
  private readonly events = this.c('source_events_total', 'Conntrack events received from the kernel.');
  private readonly batches = this.c('source_batches_total', 'Batches of events handed from the reader thread.');
  private readonly overflows = this.c(
    'source_overflows_total',
    'Netlink receive buffer overflows (ENOBUFS): events were lost and the table was re-read.',
  );
  private readonly decodeErrors = this.c('source_decode_errors_total', 'Netlink messages that could not be decoded, or that another socket sent (only the kernel\'s are read).');
  private readonly highWater = this.g(
    'source_queue_high_water_batches',
    'Most batches ever waiting between the reader thread and JavaScript.',
  );
  private readonly rcvbuf = this.g(
    'source_receive_buffer_bytes',
    'Netlink socket receive buffer the kernel granted (it doubles the request).',
  );

  // alerts
  private readonly alertsActive = this.g('alerts_active', 'Alerts firing now, by rule and severity.', ['rule', 'severity']);
  private readonly alertKeys = new Map<string, Labels>();
  private readonly fired = this.c('alerts_fired_total', 'Alerts fired since start (resolutions not counted).');

  // delivery
  private readonly delivery = DELIVERY_COUNTERS.map(
    ([key, help]) => [key, this.c(`alert_delivery_${snake(key)}_total`, `Per alert delivery: ${help}.`, ['delivery'])] as const,
  );
  private readonly deliveryQueued = this.g(
    'alert_delivery_queued',
    'Per alert delivery: alerts waiting or in progress.',
    ['delivery'],
  );
  private readonly sink = [
    ...SINK_COUNTERS.map(([key, help]) => [key, this.c(`sink_records_${key}_total`, `Per SIEM sink: ${help}.`, ['sink'])] as const),
    ['spoolCorruptBytes', this.c('sink_spool_corrupt_bytes_total', 'Per SIEM sink: spool bytes skipped as corrupt (torn records cut at start-up, damage stepped over when reading).', ['sink'])] as const,
  ];
  private readonly sinkGauges = SINK_GAUGES.map(
    ([key, name, help]) => [key, this.g(`sink_${name}`, `Per SIEM sink: ${help}.`, ['sink'])] as const,
  );

  constructor(options: MetricsExporterOptions = {}) {
    this.topN = Math.max(0, Math.floor(options.topN ?? 10));
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text, as GET /metrics serves it. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Takes the newest figures. Each part is optional and replaces only what it covers, so the
   * snapshot, source counters and delivery stats can arrive on their own schedules.
   */
  update(input: MetricsInput): void {
    const netns = input.netns ?? input.snapshot?.netns;
    if (netns !== undefined && netns !== this.netns) {
      this.netns = netns;
      this.registry.setDefaultLabels({ netns });
    }
    if (input.snapshot) this.applySnapshot(input.snapshot);
    if (input.source) this.applySource(input.source);
    if (input.activeAlerts) this.applyAlerts(input.activeAlerts);
    if (input.firedTotal !== undefined) setTotal(this.fired, input.firedTotal);
    if (input.deliveries) this.applyDeliveries(input.deliveries);
    if (input.sinks) this.applySinks(input.sinks);
    if (input.attribution) this.applyAttribution(input.attribution);
    if (input.join) this.applyJoin(input.join);
  }

  /** Serves GET /metrics and GET /healthz on `address` ("127.0.0.1:9477", ":9477", "[::1]:9477"). */
  listen(address: string): Promise<MetricsServer> {
    return serveMetrics(this, address);
  }

  /** The counter for a kernel statistic; undefined when its name collides with another's. */
  private kernelCounter(name: string): Counter | undefined {
    let m = this.kernel.get(name);
    if (!m) {
      const metric = `${PREFIX}conntrack_stat_${snake(name)}_total`;
      // two spellings that snake() maps to one name would fight over one series: the first wins
      if (this.registry.getSingleMetric(metric)) return undefined;
      m = this.c(metric.slice(PREFIX.length), kernelHelp(`the statistic the kernel calls "${name}"`));
      this.kernel.set(name, m);
    }
    return m;
  }

  private applySnapshot(s: ChurnSnapshot): void {
    const t = s.table;
    setGauge(this.entries, t.entries);
    setGauge(this.limit, t.max);
    setGauge(this.fill, t.fill);
    setGauge(this.toFull, t.timeToFull);
    for (const [name, counter] of this.kernel) if (!(name in t.kernel)) counter.remove();
    for (const [name, value] of Object.entries(t.kernel)) {
      const m = this.kernelCounter(name);
      if (m) setTotal(m, value);
    }

    for (const [w, n, e] of WINDOWS) {
      setGauge(this.newRate, s.overall[n], { window_seconds: w });
      setGauge(this.endRate, s.overall[e], { window_seconds: w });
    }
    setGauge(this.live, s.live);
    this.tcpLive.reset();
    // every state, 0 when none: a state that appears only when non-zero leaves gaps in graphs
    for (const state of TCP_STATES) this.tcpLive.set({ state }, 0);
    for (const [state, n] of Object.entries(s.states)) setGauge(this.tcpLive, n, { state });
    setGauge(this.shortLived, s.shortLived);
    setGauge(this.snapshotTime, s.time / 1e6);
    this.unreplied.reset();
    this.topUnreplied.reset();
    this.topUnrepliedAge.reset();
    if (s.unreplied) {
      const u = s.unreplied;
      this.unreplied.set({ age: 'any' }, u.total);
      this.unreplied.set({ age: 'stale' }, u.stale);
      for (const d of u.destinations.slice(0, this.topN)) {
        this.topUnreplied.set({ destination: d.key, age: 'any', dnat: 'false' }, d.unreplied - d.dnat);
        this.topUnreplied.set({ destination: d.key, age: 'any', dnat: 'true' }, d.dnat);
        this.topUnreplied.set({ destination: d.key, age: 'stale', dnat: 'any' }, d.stale);
        this.topUnrepliedAge.set({ destination: d.key }, Math.round(d.oldestAge * 1000) / 1000);
      }
    }

    this.snatPorts.reset();
    if (s.snat) {
      for (const p of s.snat.pairs.slice(0, this.topN)) this.snatPorts.set({ source: p.src, destination: p.destination }, p.ports);
      if (s.snat.range) setGauge(this.snatRange, s.snat.range.high - s.snat.range.low + 1);
    }

    this.applyTop(this.top.destination, s.destinations);
    this.applyTop(this.top.source, s.sources);
    this.applyTop(this.top.process, s.processes ?? []);
    this.applyTop(this.top.group, s.groups ?? []);
    this.applyTop(this.top.zone, s.zones ?? []);
  }

  private applyTop(m: TopList, keys: readonly KeyChurn[]): void {
    const label = m.label;
    m.newRate.reset();
    m.endRate.reset();
    m.live.reset();
    for (const k of keys.slice(0, this.topN)) {
      for (const [w, n, e] of WINDOWS) {
        setGauge(m.newRate, k[n], { [label]: k.key, window_seconds: w });
        setGauge(m.endRate, k[e], { [label]: k.key, window_seconds: w });
      }
      setGauge(m.live, k.live, { [label]: k.key });
    }
  }

  private applySource(c: SourceCounters): void {
    setTotal(this.events, c.events);
    setTotal(this.batches, c.batches);
    setTotal(this.overflows, c.overflows);
    setTotal(this.decodeErrors, c.decodeErrors);
    setGauge(this.highWater, c.queueHighWater);
    setGauge(this.rcvbuf, c.rcvbuf);
  }

  private applyAlerts(alerts: readonly Alert[]): void {
    const counts = new Map<string, number>();
    for (const a of alerts) {
      if (a.event !== 'alert') continue;
      const key = `${a.rule}\u0000${a.severity}`;
      if (!this.alertKeys.has(key)) this.alertKeys.set(key, { rule: a.rule, severity: a.severity });
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    // a rule that stops firing reads 0 rather than vanishing, so `sum(ctwatch_alerts_active)` is
    // 0 and not "no data"; the set is bounded by the rules configured
    for (const [key, labels] of this.alertKeys) this.alertsActive.set(labels, counts.get(key) ?? 0);
  }

  private applyDeliveries(stats: Record<string, object>): void {
    for (const [, counter] of this.delivery) counter.reset();
    this.deliveryQueued.reset();
    for (const [name, s] of Object.entries(stats)) {
      const values = s as Record<string, unknown>;
      const labels = { delivery: name };
      // retried exists for webhooks only, timedOut for exec hooks only: absent stays absent
      for (const [key, counter] of this.delivery) if (key in values) setTotal(counter, values[key], labels);
      setGauge(this.deliveryQueued, values.queued, labels);
    }
  }

  private applyAttribution(a: NonNullable<MetricsInput['attribution']>): void {
    setTotal(this.attrFlows, a.flows);
    setTotal(this.attrAttributed, a.attributed);
    // every reason, 0 until it happens: `rate(..{reason="gone"}[5m])` should not be "no data"
    for (const [reason, n] of Object.entries(a.reasons)) setTotal(this.attrMisses, n, { reason });
    if (a.incomplete !== undefined) setTotal(this.attrIncomplete, a.incomplete);
    if (a.cri) {
      setTotal(this.criLookups, a.cri.lookups);
      for (const [reason, n] of Object.entries(a.cri.failures)) setTotal(this.criFailures, n, { reason });
      setGauge(this.criPods, a.cri.pods);
    }
  }

  private applyJoin(j: NativeJoinCounters): void {
    setTotal(this.joinLookups, j.lookups);
    if (j.mode === 'ebpf') setTotal(this.joinFromCopy, j.fromCopy);
    setTotal(this.joinBusy, j.busyUs / 1e6);
    const s = j.stamps;
    if (!s) return;
    for (const hook of STAMP_HOOKS) setTotal(this.stampsByHook, s[hook], { hook });
    setTotal(this.stampsUnchanged, s.sendtoSkipped, { hook: 'sendto' });
    setTotal(this.stampsUnchanged, s.sendSkipped, { hook: 'send' });
    setTotal(this.listeners, s.listen, { change: 'listen' });
    setTotal(this.listeners, s.bind, { change: 'bind' });
    setTotal(this.listeners, s.unlisten, { change: 'close' });
    setTotal(this.ringCopied, s.ringCopied);
    setTotal(this.ringLost, s.ringLost);
    setTotal(this.ringPassedOver, s.ringPassedOver);
    setTotal(this.copyResets, s.copyResets);
    setTotal(this.copyOverruns, s.copyOverruns);
  }

  private applySinks(counters: Record<string, object>): void {
    for (const [, counter] of this.sink) counter.reset();
    for (const [, gauge] of this.sinkGauges) gauge.reset();
    for (const [name, s] of Object.entries(counters)) {
      const values = s as Record<string, unknown>;
      const labels = { sink: name };
      for (const [key, counter] of this.sink) if (key in values) setTotal(counter, values[key], labels);
      for (const [key, gauge] of this.sinkGauges) setGauge(gauge, values[key], labels);
    }
  }
}
