import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KERNEL_STATS, MetricsExporter } from '../../src/metrics/exporter.js';
import type { ChurnSnapshot, KeyChurn } from '../../src/churn/snapshot.js';
import type { Alert } from '../../src/alerts/types.js';
import type { SourceCounters } from '../../src/source/types.js';

const S = 1_000_000;

function key(k: string, n: number, extra: Partial<KeyChurn> = {}): KeyChurn {
  return { key: k, new1: n, new10: n / 2, new60: n / 4, end1: n - 1, end10: n / 2 - 1, end60: 0.5, live: n * 10, ...extra };
}

function snapshot(over: Partial<ChurnSnapshot> = {}): ChurnSnapshot {
  return {
    event: 'churn',
    time: 1_700_000_000 * S + 250_000,
    overall: { new1: 2340, new10: 2100.5, new60: 1800.25, end1: 2200, end10: 2000, end60: 1750 },
    live: 52_345,
    states: { ESTABLISHED: 120, TIME_WAIT: 48_000, SYN_SENT: 3 },
    shortLived: 0.875,
    table: {
      entries: 52_400,
      max: 65_536,
      fill: 52_400 / 65_536,
      growth: 131.2,
      timeToFull: 100,
      kernel: { drop: 7, early_drop: 12, insert_failed: 2, invalid: 40, found: 1_000 },
    },
    destinations: [key('127.0.0.5:6379/tcp', 2300, { states: { TIME_WAIT: 47_000 } }), key('10.0.0.9:443/tcp', 20)],
    sources: [key('127.0.1.7', 2300)],
    protocols: [key('tcp', 2320)],
    ...over,
  };
}

const source: SourceCounters = { events: 9_876_543, batches: 40_000, overflows: 2, decodeErrors: 0, queueHighWater: 17, rcvbuf: 8_388_608 };

function alert(rule: string, severity: Alert['severity'], subject: string, event: Alert['event'] = 'alert'): Alert {
  return {
    event, time: 1_700_000_000 * S, rule, severity, subject, since: 1_700_000_000 * S, message: 'm', values: {},
    top: { destinations: [], sources: [] }, hint: 'ctwatch top',
  };
}

/** The sample lines (no HELP/TYPE, no blank lines), in output order. */
async function samples(x: MetricsExporter): Promise<string[]> {
  return (await x.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

/** Sample lines of one metric family. */
async function family(x: MetricsExporter, name: string): Promise<string[]> {
  return (await samples(x)).filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('MetricsExporter', () => {
  it('has no samples before the first update (unknown is absent, not 0)', async () => {
    const x = new MetricsExporter();
    expect(await samples(x)).toEqual([]);
    const text = await x.metrics();
    expect(text).toContain('# TYPE ctwatch_conntrack_entries gauge\n');
    expect(text).toContain('# TYPE ctwatch_source_events_total counter\n');
  });

  it('exposes a fixed snapshot as exactly these lines', async () => {
    const x = new MetricsExporter();
    x.update({
      snapshot: snapshot(),
      source,
      activeAlerts: [
        alert('churn_per_destination', 'warning', '127.0.0.5:6379/tcp'),
        alert('churn_per_destination', 'warning', '10.0.0.9:443/tcp'),
        alert('table_fill', 'critical', 'table'),
        alert('table_fill', 'info', 'table', 'resolved'),
      ],
      firedTotal: 5,
      deliveries: {
        'webhook http://127.0.0.1:9000': { sent: 4, retried: 3, failed: 1, dropped: 0, queued: 2, lastError: 'HTTP 503' },
        'exec /usr/local/bin/page': { sent: 5, failed: 0, dropped: 1, queued: 0, timedOut: 1, lastError: null },
      },
      sinks: {
        'siem-tls': {
          sent: 1_000_000, retried: 12, spooled: 300, dropped: 4, lastError: null, queued: 5, spoolRecords: 100,
          spoolBytes: 65_536, truncated: 1,
        },
      },
    });
    expect(await samples(x)).toEqual([
      'ctwatch_conntrack_entries 52400',
      'ctwatch_conntrack_entries_limit 65536',
      'ctwatch_conntrack_fill_ratio 0.799560546875',
      'ctwatch_conntrack_time_to_full_seconds 100',
      'ctwatch_conntrack_stat_found_total 1000',
      'ctwatch_conntrack_stat_invalid_total 40',
      'ctwatch_conntrack_stat_insert_failed_total 2',
      'ctwatch_conntrack_stat_drop_total 7',
      'ctwatch_conntrack_stat_early_drop_total 12',
      'ctwatch_flows_new_per_second{window_seconds="1"} 2340',
      'ctwatch_flows_new_per_second{window_seconds="10"} 2100.5',
      'ctwatch_flows_new_per_second{window_seconds="60"} 1800.25',
      'ctwatch_flows_destroyed_per_second{window_seconds="1"} 2200',
      'ctwatch_flows_destroyed_per_second{window_seconds="10"} 2000',
      'ctwatch_flows_destroyed_per_second{window_seconds="60"} 1750',
      'ctwatch_flows_live 52345',
      'ctwatch_tcp_flows_live{state="NONE"} 0',
      'ctwatch_tcp_flows_live{state="SYN_SENT"} 3',
      'ctwatch_tcp_flows_live{state="SYN_RECV"} 0',
      'ctwatch_tcp_flows_live{state="ESTABLISHED"} 120',
      'ctwatch_tcp_flows_live{state="FIN_WAIT"} 0',
      'ctwatch_tcp_flows_live{state="CLOSE_WAIT"} 0',
      'ctwatch_tcp_flows_live{state="LAST_ACK"} 0',
      'ctwatch_tcp_flows_live{state="TIME_WAIT"} 48000',
      'ctwatch_tcp_flows_live{state="CLOSE"} 0',
      'ctwatch_tcp_flows_live{state="SYN_SENT2"} 0',
      'ctwatch_flows_short_lived_ratio 0.875',
      'ctwatch_snapshot_timestamp_seconds 1700000000.25',
      'ctwatch_top_destination_flows_new_per_second{destination="127.0.0.5:6379/tcp",window_seconds="1"} 2300',
      'ctwatch_top_destination_flows_new_per_second{destination="127.0.0.5:6379/tcp",window_seconds="10"} 1150',
      'ctwatch_top_destination_flows_new_per_second{destination="127.0.0.5:6379/tcp",window_seconds="60"} 575',
      'ctwatch_top_destination_flows_new_per_second{destination="10.0.0.9:443/tcp",window_seconds="1"} 20',
      'ctwatch_top_destination_flows_new_per_second{destination="10.0.0.9:443/tcp",window_seconds="10"} 10',
      'ctwatch_top_destination_flows_new_per_second{destination="10.0.0.9:443/tcp",window_seconds="60"} 5',
      'ctwatch_top_destination_flows_destroyed_per_second{destination="127.0.0.5:6379/tcp",window_seconds="1"} 2299',
      'ctwatch_top_destination_flows_destroyed_per_second{destination="127.0.0.5:6379/tcp",window_seconds="10"} 1149',
      'ctwatch_top_destination_flows_destroyed_per_second{destination="127.0.0.5:6379/tcp",window_seconds="60"} 0.5',
      'ctwatch_top_destination_flows_destroyed_per_second{destination="10.0.0.9:443/tcp",window_seconds="1"} 19',
      'ctwatch_top_destination_flows_destroyed_per_second{destination="10.0.0.9:443/tcp",window_seconds="10"} 9',
      'ctwatch_top_destination_flows_destroyed_per_second{destination="10.0.0.9:443/tcp",window_seconds="60"} 0.5',
      'ctwatch_top_destination_flows_live{destination="127.0.0.5:6379/tcp"} 23000',
      'ctwatch_top_destination_flows_live{destination="10.0.0.9:443/tcp"} 200',
      'ctwatch_top_source_flows_new_per_second{source="127.0.1.7",window_seconds="1"} 2300',
      'ctwatch_top_source_flows_new_per_second{source="127.0.1.7",window_seconds="10"} 1150',
      'ctwatch_top_source_flows_new_per_second{source="127.0.1.7",window_seconds="60"} 575',
      'ctwatch_top_source_flows_destroyed_per_second{source="127.0.1.7",window_seconds="1"} 2299',
      'ctwatch_top_source_flows_destroyed_per_second{source="127.0.1.7",window_seconds="10"} 1149',
      'ctwatch_top_source_flows_destroyed_per_second{source="127.0.1.7",window_seconds="60"} 0.5',
      'ctwatch_top_source_flows_live{source="127.0.1.7"} 23000',
      'ctwatch_source_events_total 9876543',
      'ctwatch_source_batches_total 40000',
      'ctwatch_source_overflows_total 2',
      'ctwatch_source_decode_errors_total 0',
      'ctwatch_source_queue_high_water_batches 17',
      'ctwatch_source_receive_buffer_bytes 8388608',
      'ctwatch_alerts_active{rule="churn_per_destination",severity="warning"} 2',
      'ctwatch_alerts_active{rule="table_fill",severity="critical"} 1',
      'ctwatch_alerts_fired_total 5',
      'ctwatch_alert_delivery_sent_total{delivery="webhook http://127.0.0.1:9000"} 4',
      'ctwatch_alert_delivery_sent_total{delivery="exec /usr/local/bin/page"} 5',
      'ctwatch_alert_delivery_failed_total{delivery="webhook http://127.0.0.1:9000"} 1',
      'ctwatch_alert_delivery_failed_total{delivery="exec /usr/local/bin/page"} 0',
      'ctwatch_alert_delivery_dropped_total{delivery="webhook http://127.0.0.1:9000"} 0',
      'ctwatch_alert_delivery_dropped_total{delivery="exec /usr/local/bin/page"} 1',
      'ctwatch_alert_delivery_retried_total{delivery="webhook http://127.0.0.1:9000"} 3',
      'ctwatch_alert_delivery_timed_out_total{delivery="exec /usr/local/bin/page"} 1',
      'ctwatch_alert_delivery_queued{delivery="webhook http://127.0.0.1:9000"} 2',
      'ctwatch_alert_delivery_queued{delivery="exec /usr/local/bin/page"} 0',
      'ctwatch_sink_records_sent_total{sink="siem-tls"} 1000000',
      'ctwatch_sink_records_retried_total{sink="siem-tls"} 12',
      'ctwatch_sink_records_spooled_total{sink="siem-tls"} 300',
      'ctwatch_sink_records_dropped_total{sink="siem-tls"} 4',
      'ctwatch_sink_records_truncated_total{sink="siem-tls"} 1',
      'ctwatch_sink_queued_records{sink="siem-tls"} 5',
      'ctwatch_sink_spool_records{sink="siem-tls"} 100',
      'ctwatch_sink_spool_bytes{sink="siem-tls"} 65536',
    ]);
  });

  it('writes HELP and TYPE for every family, counters as counter', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot() });
    const text = await x.metrics();
    expect(text).toContain(
      '# HELP ctwatch_conntrack_stat_drop_total Kernel conntrack, summed over CPUs (conntrack -S): packets dropped because no entry could be allocated: the table was full and nothing could be evicted.\n' +
        '# TYPE ctwatch_conntrack_stat_drop_total counter\n' +
        'ctwatch_conntrack_stat_drop_total 7\n',
    );
    expect(text).toContain(
      '# HELP ctwatch_conntrack_fill_ratio conntrack_entries / conntrack_entries_limit, 0..1.\n' +
        '# TYPE ctwatch_conntrack_fill_ratio gauge\n' +
        'ctwatch_conntrack_fill_ratio 0.799560546875\n',
    );
  });

  it('follows the naming conventions: one prefix, _total on counters only, snake_case labels', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot({ table: { ...snapshot().table, kernel: { 'oddName-x': 1 } } }), netns: 'lab' });
    for (const m of x.registry.getMetricsAsArray()) {
      const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames: string[] };
      expect(name).toMatch(/^ctwatch_[a-z0-9_]+$/);
      expect(name.endsWith('_total'), name).toBe(type === 'counter');
      for (const l of labelNames) expect(l).toMatch(/^[a-z][a-z0-9_]*$/);
      // node_exporter's names are node_nf_conntrack_*; ours must not look like them
      expect(name).not.toMatch(/^node_/);
    }
    expect(await family(x, 'ctwatch_conntrack_stat_odd_name_x_total')).toEqual(['ctwatch_conntrack_stat_odd_name_x_total{netns="lab"} 1']);
  });

  it('omits table figures that are unknown instead of writing 0 or NaN', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot() });
    // a table that stops growing has no time to full; a replay without stats has no table at all
    x.update({ snapshot: snapshot({ table: { ...snapshot().table, timeToFull: null } }) });
    expect(await family(x, 'ctwatch_conntrack_time_to_full_seconds')).toEqual([]);
    expect(await family(x, 'ctwatch_conntrack_entries')).toEqual(['ctwatch_conntrack_entries 52400']);
    x.update({ snapshot: snapshot({ table: { entries: null, max: null, fill: null, growth: 0, timeToFull: null, kernel: {} } }) });
    const text = (await samples(x)).join('\n');
    expect(text).not.toMatch(/^ctwatch_conntrack_/m);
    expect(text).not.toMatch(/NaN|Nan|Inf/);
    // the rest of the snapshot is still there
    expect(await family(x, 'ctwatch_flows_live')).toEqual(['ctwatch_flows_live 52345']);
  });

  it('writes 0 when the table is full', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot({ table: { entries: 100, max: 100, fill: 1, growth: 0, timeToFull: 0, kernel: {} } }) });
    expect(await family(x, 'ctwatch_conntrack_time_to_full_seconds')).toEqual(['ctwatch_conntrack_time_to_full_seconds 0']);
    expect(await family(x, 'ctwatch_conntrack_fill_ratio')).toEqual(['ctwatch_conntrack_fill_ratio 1']);
  });

  it('keeps only the current top N label sets', async () => {
    const x = new MetricsExporter({ topN: 2 });
    x.update({ snapshot: snapshot({ destinations: [key('a:1/tcp', 30), key('b:1/tcp', 20), key('c:1/tcp', 10)] }) });
    expect(await family(x, 'ctwatch_top_destination_flows_live')).toEqual([
      'ctwatch_top_destination_flows_live{destination="a:1/tcp"} 300',
      'ctwatch_top_destination_flows_live{destination="b:1/tcp"} 200',
    ]);
    x.update({ snapshot: snapshot({ destinations: [key('d:1/tcp', 50), key('a:1/tcp', 5)] }) });
    expect(await family(x, 'ctwatch_top_destination_flows_live')).toEqual([
      'ctwatch_top_destination_flows_live{destination="d:1/tcp"} 500',
      'ctwatch_top_destination_flows_live{destination="a:1/tcp"} 50',
    ]);
    const rates = await family(x, 'ctwatch_top_destination_flows_new_per_second');
    expect(rates).toHaveLength(2 * 3);
    expect(rates.join('\n')).not.toContain('b:1/tcp');
    // a thousand distinct keys over time still leave at most N per family
    for (let i = 0; i < 1000; i++) x.update({ snapshot: snapshot({ destinations: [key(`10.0.${i >> 8}.${i & 255}:80/tcp`, 1), key(`x${i}`, 1)] }) });
    expect(await family(x, 'ctwatch_top_destination_flows_live')).toHaveLength(2);
    expect((await samples(x)).length).toBeLessThan(100);
  });

  it('replaces only the parts an update carries', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot() });
    x.update({ source });
    x.update({ firedTotal: 1 });
    expect(await family(x, 'ctwatch_conntrack_entries')).toEqual(['ctwatch_conntrack_entries 52400']);
    expect(await family(x, 'ctwatch_source_events_total')).toEqual(['ctwatch_source_events_total 9876543']);
    expect(await family(x, 'ctwatch_alerts_fired_total')).toEqual(['ctwatch_alerts_fired_total 1']);
  });

  it('sets counters to the absolute value each time, including after a reset', async () => {
    const x = new MetricsExporter();
    x.update({ source });
    x.update({ source: { ...source, events: 9_876_600 } });
    expect(await family(x, 'ctwatch_source_events_total')).toEqual(['ctwatch_source_events_total 9876600']);
    // a restarted source (or a dispatcher rebuilt on reload) starts again from 0: a counter reset
    x.update({ source: { ...source, events: 3 } });
    expect(await family(x, 'ctwatch_source_events_total')).toEqual(['ctwatch_source_events_total 3']);
  });

  it('drops a kernel statistic the kernel stops reporting', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot() });
    x.update({ snapshot: snapshot({ table: { ...snapshot().table, kernel: { drop: 9 } } }) });
    expect((await samples(x)).filter((l) => l.startsWith('ctwatch_conntrack_stat_'))).toEqual(['ctwatch_conntrack_stat_drop_total 9']);
  });

  it('reads 0 for a rule that stopped firing, and ignores resolutions', async () => {
    const x = new MetricsExporter();
    x.update({ activeAlerts: [alert('table_fill', 'critical', 'table'), alert('churn_per_source', 'info', '127.0.1.7')] });
    x.update({ activeAlerts: [alert('churn_per_source', 'info', '127.0.1.7'), alert('table_fill', 'critical', 'table', 'resolved')] });
    expect(await family(x, 'ctwatch_alerts_active')).toEqual([
      'ctwatch_alerts_active{rule="table_fill",severity="critical"} 0',
      'ctwatch_alerts_active{rule="churn_per_source",severity="info"} 1',
    ]);
  });

  it('forgets deliveries and sinks that are gone (reload), and escapes label values', async () => {
    const x = new MetricsExporter();
    x.update({ deliveries: { old: { sent: 1, failed: 0, dropped: 0, queued: 0, lastError: null } } });
    x.update({ deliveries: { 'exec "quoted"\\path': { sent: 2, failed: 0, dropped: 0, queued: 0, lastError: null } } });
    expect(await family(x, 'ctwatch_alert_delivery_sent_total')).toEqual([
      'ctwatch_alert_delivery_sent_total{delivery="exec \\"quoted\\"\\\\path"} 2',
    ]);
    x.update({ sinks: {} });
    expect(await family(x, 'ctwatch_sink_records_sent_total')).toEqual([]);
  });

  it('labels every series with the namespace it watches', async () => {
    const x = new MetricsExporter();
    x.update({ snapshot: snapshot({ netns: 'lab' }), source });
    const lines = await samples(x);
    expect(lines.length).toBeGreaterThan(10);
    for (const l of lines) expect(l).toMatch(/\{(.*,)?netns="lab"\} /);
    expect(await family(x, 'ctwatch_conntrack_entries')).toEqual(['ctwatch_conntrack_entries{netns="lab"} 52400']);
  });

  it('exports the top processes and groups, and attribution totals with every miss reason', async () => {
    const x = new MetricsExporter();
    x.update({
      snapshot: snapshot({ processes: [key('api-worker[4121]', 2300)], groups: [key('unit:api.service', 2300)] }),
      attribution: { flows: 1000, attributed: 940, reasons: { 'not-local': 0, unsupported: 10, gone: 50, 'no-socket': 0, 'no-pid': 0, shared: 0, error: 0, overload: 0 } },
    });
    expect(await family(x, 'ctwatch_top_process_flows_new_per_second')).toEqual([
      'ctwatch_top_process_flows_new_per_second{process="api-worker[4121]",window_seconds="1"} 2300',
      'ctwatch_top_process_flows_new_per_second{process="api-worker[4121]",window_seconds="10"} 1150',
      'ctwatch_top_process_flows_new_per_second{process="api-worker[4121]",window_seconds="60"} 575',
    ]);
    expect(await family(x, 'ctwatch_top_group_flows_live')).toEqual(['ctwatch_top_group_flows_live{group="unit:api.service"} 23000']);
    expect(await family(x, 'ctwatch_attribution_flows_total')).toEqual(['ctwatch_attribution_flows_total 1000']);
    expect(await family(x, 'ctwatch_attribution_attributed_total')).toEqual(['ctwatch_attribution_attributed_total 940']);
    const misses = await family(x, 'ctwatch_attribution_misses_total');
    expect(misses).toHaveLength(8);
    expect(misses).toContain('ctwatch_attribution_misses_total{reason="gone"} 50');
    expect(misses).toContain('ctwatch_attribution_misses_total{reason="no-pid"} 0');
    // A snapshot without processes (attribution off, or nothing attributed yet) clears the list.
    x.update({ snapshot: snapshot() });
    expect(await family(x, 'ctwatch_top_process_flows_live')).toEqual([]);
  });

  it('exports the CRI pod-name lookups, their failures by reason and the pods named', async () => {
    const x = new MetricsExporter();
    x.update({
      snapshot: snapshot(),
      attribution: { flows: 1, attributed: 1, reasons: {}, cri: { lookups: 7, pods: 3, failures: { refused: 0, deadline: 2, unavailable: 1, error: 0, invalid: 0 } } },
    });
    expect(await family(x, 'ctwatch_attribution_cri_lookups_total')).toEqual(['ctwatch_attribution_cri_lookups_total 7']);
    expect(await family(x, 'ctwatch_attribution_cri_pods')).toEqual(['ctwatch_attribution_cri_pods 3']);
    const failures = await family(x, 'ctwatch_attribution_cri_failures_total');
    expect(failures).toHaveLength(5);
    expect(failures).toContain('ctwatch_attribution_cri_failures_total{reason="deadline"} 2');
    expect(failures).toContain('ctwatch_attribution_cri_failures_total{reason="refused"} 0');
  });

  it("exports the reader's join and the eBPF stamps, the ring's losses and the copy's resets", async () => {
    const x = new MetricsExporter();
    const join = {
      mode: 'ebpf', records: 900, origin: 800, listener: 50, reasons: {}, waited: 3, lookups: 40, fromCopy: 860, busyUs: 1_500_000, seeded: 2, seedDenied: 0,
      stamps: { connect: 700, sendto: 90, sendtoSkipped: 60, send: 5, sendSkipped: 1, listen: 2, bind: 3, unlisten: 1, ringCopied: 700, ringLost: 12, ringPassedOver: 22, copyResets: 1, copyOverruns: 0 },
    };
    x.update({ join });
    expect(await family(x, 'ctwatch_attribution_kernel_lookups_total')).toEqual(['ctwatch_attribution_kernel_lookups_total 40']);
    expect(await family(x, 'ctwatch_attribution_copy_answers_total')).toEqual(['ctwatch_attribution_copy_answers_total 860']);
    expect(await family(x, 'ctwatch_attribution_join_busy_seconds_total')).toEqual(['ctwatch_attribution_join_busy_seconds_total 1.5']);
    const hooks = await family(x, 'ctwatch_attribution_stamps_total');
    expect(hooks).toEqual([
      'ctwatch_attribution_stamps_total{hook="connect"} 700',
      'ctwatch_attribution_stamps_total{hook="sendto"} 90',
      'ctwatch_attribution_stamps_total{hook="send"} 5',
    ]);
    expect(await family(x, 'ctwatch_attribution_listeners_total')).toEqual([
      'ctwatch_attribution_listeners_total{change="listen"} 2',
      'ctwatch_attribution_listeners_total{change="bind"} 3',
      'ctwatch_attribution_listeners_total{change="close"} 1',
    ]);
    expect(await family(x, 'ctwatch_attribution_stamp_ring_passed_over_total')).toEqual(['ctwatch_attribution_stamp_ring_passed_over_total 22']);
    expect(await family(x, 'ctwatch_attribution_stamps_unchanged_total')).toEqual([
      'ctwatch_attribution_stamps_unchanged_total{hook="sendto"} 60',
      'ctwatch_attribution_stamps_unchanged_total{hook="send"} 1',
    ]);
    expect(await family(x, 'ctwatch_attribution_stamp_ring_copied_total')).toEqual(['ctwatch_attribution_stamp_ring_copied_total 700']);
    expect(await family(x, 'ctwatch_attribution_stamp_ring_lost_total')).toEqual(['ctwatch_attribution_stamp_ring_lost_total 12']);
    expect(await family(x, 'ctwatch_attribution_stamp_copy_resets_total')).toEqual(['ctwatch_attribution_stamp_copy_resets_total 1']);
    expect(await family(x, 'ctwatch_attribution_stamp_copy_overruns_total')).toEqual(['ctwatch_attribution_stamp_copy_overruns_total 0']);
    // sockdiag: no copy and no stamps, so those series are absent rather than 0
    const y = new MetricsExporter();
    y.update({ join: { ...join, mode: 'sockdiag', fromCopy: 0, stamps: undefined } });
    expect(await family(y, 'ctwatch_attribution_kernel_lookups_total')).toEqual(['ctwatch_attribution_kernel_lookups_total 40']);
    expect(await family(y, 'ctwatch_attribution_copy_answers_total')).toEqual([]);
    expect(await family(y, 'ctwatch_attribution_stamp_ring_lost_total')).toEqual([]);
  });

  it('documents every metric in docs/metrics.md', () => {
    const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
    const x = new MetricsExporter();
    for (const m of x.registry.getMetricsAsArray()) {
      const name = (m as unknown as { name: string }).name;
      const stat = /^ctwatch_conntrack_stat_(.+)_total$/.exec(name);
      if (stat) expect(doc, name).toMatch(new RegExp(`\`${stat[1]}\``));
      else expect(doc, name).toContain(`| \`${name}\` |`);
    }
    expect(Object.keys(KERNEL_STATS).length).toBeGreaterThan(10);
  });
});
