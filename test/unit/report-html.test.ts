import { describe, expect, it } from 'vitest';
import { downsample, escapeHtml, niceMax, renderReport, summaryText } from '../../src/report/html.js';
import { keySeries, type ReportData, type ReportPoint } from '../../src/report/collect.js';
import type { KeyChurn } from '../../src/churn/snapshot.js';

const T0 = 1_764_633_600_000_000; // 2025-12-02 00:00:00 UTC

function point(i: number, over: Partial<ReportPoint> = {}): ReportPoint {
  return { time: T0 + i * 1e6, entries: 1000 * i, max: 10_000, fill: i / 10, timeToFull: i > 0 ? 30 : null, growth: 1000, live: 1000 * i, new1: 1000, end1: 0, timeWait: 0, drops: i > 3 ? 5 : 0, unrepliedStale: null, ...over };
}

function key(k: string, new1: number): KeyChurn {
  return { key: k, new1, new10: 0, new60: 0, end1: 0, end10: 0, end60: 0, live: 0 };
}

function data(over: Partial<ReportData> = {}): ReportData {
  const points = [0, 1, 2, 3, 4, 5].map((i) => point(i));
  const times = points.map((p) => p.time);
  return {
    file: 'incident.jsonl',
    points,
    destinations: keySeries(points.map(() => [key('127.0.0.5:6379/tcp', 1000)]), times, 5, new Map([['127.0.0.5:6379/tcp', 6000]])),
    sources: [],
    processes: keySeries(points.map(() => [key('evil<script>alert(1)</script>[7]', 900)]), times, 5),
    alerts: [],
    recordedAlerts: [],
    events: 12_000,
    newConnections: 6000,
    overflows: 0,
    skippedLines: 0,
    ...over,
  };
}

describe('report page', () => {
  it('escapes names chosen by whoever runs a process', () => {
    expect(escapeHtml(`<a href="x">'&`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;');
    const html = renderReport(data());
    expect(html).not.toContain('<script');
    expect(html).toContain('evil&lt;script&gt;alert(1)&lt;/script&gt;[7]');
  });
  it('plots the collected values, one per second, with gaps where a key was not listed', () => {
    const d = data();
    d.destinations[0].values[2] = null;
    const html = renderReport(d);
    expect(html).toContain('data-series="new/s" data-values="1000,1000,1000,1000,1000,1000"');
    expect(html).toContain('data-series="fill" data-values="0,0.1,0.2,0.3,0.4,0.5"');
    expect(html).toContain('data-series="127.0.0.5:6379/tcp" data-values="1000,1000,,1000,1000,1000"');
  });
  it('the summary says when, how full, who and how much', () => {
    const s = summaryText(data()).join('\n');
    expect(s).toContain('00:00:00 UTC → 00:00:05 (5 s), 12 000 conntrack events');
    expect(s).toContain('Table: peak 50 % full (5 000 of 10 000 entries) at 00:00:05');
    expect(s).toContain('Kernel: 5 packets dropped or entries refused');
    expect(s).toContain('Top destination: 127.0.0.5:6379/tcp, peak 1 000 new/s at 00:00:00, 6 000 new connections (100 %)');
    expect(s).toContain('new connections (90 %)'); // the process: a sum of rates, marked ~
    expect(s).toContain('~5 400');
    expect(s).toContain('Alerts: none raised');
  });
  it('unreplied entries get a chart and a summary line when there are any', () => {
    expect(renderReport(data())).not.toContain('id="unreplied"');
    const points = [0, 1, 2].map((i) => point(i, { unrepliedStale: i * 30, unrepliedTop: { key: '10.96.0.10:8125/udp', stale: i * 30, dnat: i * 30 } }));
    const d = data({ points });
    expect(renderReport(d)).toContain('data-series="unreplied_stale" data-values="0,30,60"');
    expect(summaryText(d).join('\n')).toContain('Unreplied: peak 60 entries unreplied for over 5 s at 00:00:02, most to 10.96.0.10:8125/udp (60, 60 DNATed).');
  });
  it('an empty recording is a page that says so', () => {
    const html = renderReport(data({ points: [], destinations: [], processes: [], events: 0, newConnections: 0 }));
    expect(html).toContain('no conntrack events to replay');
  });
  it('long recordings are drawn as bucket maxima, so a spike still shows', () => {
    const long = Array.from({ length: 3000 }, (_, i) => (i === 1234 ? 99 : 1));
    const { values, step } = downsample(long, 1000);
    expect(step).toBe(3);
    expect(values).toHaveLength(1000);
    expect(values[411]).toBe(99);
    expect(downsample([1, null, null, 2], 2).values).toEqual([1, 2]);
  });
  it('axis tops read well', () => {
    expect([0, 0.013, 7, 10, 11, 260, 4000].map(niceMax)).toEqual([1, 0.02, 10, 10, 20, 500, 5000]);
  });
});
