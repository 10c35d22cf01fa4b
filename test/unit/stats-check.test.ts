import { describe, expect, it } from 'vitest';
import { checkResult, inAlert, nodeTextfile, parseRange, scaleRange, withDeadline } from '../../src/cli/stats.js';
import type { ChurnSnapshot } from '../../src/churn/snapshot.js';
import { CtwatchError } from '../../src/util/errors.js';

describe('threshold ranges (monitoring plugin guidelines)', () => {
  // [range, value, alert?]
  it.each([
    ['10', -1, true],
    ['10', 0, false],
    ['10', 10, false],
    ['10', 10.5, true],
    ['10:', 9.9, true],
    ['10:', 1e9, false],
    ['~:10', -1e9, false],
    ['~:10', 11, true],
    ['10:20', 9, true],
    ['10:20', 15, false],
    ['10:20', 21, true],
    ['@10:20', 15, true],
    ['@10:20', 10, true],
    ['@10:20', 20, true],
    ['@10:20', 21, false],
    ['-5:-1', -3, false],
    ['70.5', 70.6, true],
  ] as const)('%s with %d: alert %s', (text, value, alert) => {
    expect(inAlert(parseRange(text, '-w'), value)).toBe(alert);
  });

  it.each(['', '@', 'abc', '20:10', '10::20', '1e3', ':', '~', '10:20:30', '70%'])('rejects %j with the syntax to use', (text) => {
    expect(() => parseRange(text, '-w')).toThrow(CtwatchError);
    expect(() => parseRange(text, '-w')).toThrow(/is not a threshold range: write e.g. 70 \(above 70\), 60:90/);
  });

  it('scales a range for a related figure (fill % → entries)', () => {
    expect(scaleRange(parseRange('70', '-w'), 1000)).toBe('70000');
    expect(scaleRange(parseRange('10:', '-w'), 1000)).toBe('10000:');
    expect(scaleRange(parseRange('~:80', '-w'), 1000)).toBe('~:80000');
    expect(scaleRange(parseRange('@0:50', '-w'), 1000)).toBe('@0:50000');
    expect(scaleRange(parseRange('60:90', '-w'), 2621.44)).toBe('157286:235929');
  });
});

function snap(over: Partial<ChurnSnapshot['table']> = {}): ChurnSnapshot {
  return {
    event: 'churn',
    time: 0,
    overall: { new1: 2500, new10: 2410.4, new60: 2000, end1: 0, end10: 0, end60: 0 },
    live: 0,
    states: {},
    shortLived: 0,
    table: { entries: 167772, max: 262144, fill: 167772 / 262144, growth: 100, timeToFull: 539.6, kernel: { drop: 4, early_drop: 0, insert_failed: 1 }, ...over },
    destinations: [{ key: '127.0.0.5:6379/tcp', new1: 2340, new10: 2340, new60: 2000, end1: 0, end10: 0, end60: 0, live: 1 }],
    sources: [],
    protocols: [],
  } as ChurnSnapshot;
}

describe('the check line', () => {
  it('status, the answer, and perfdata with units', () => {
    const r = checkResult(snap(), parseRange('60', '-w'), parseRange('85', '-c'), 0);
    expect(r.code).toBe(1);
    expect(r.line).toBe(
      'CONNTRACK WARNING - table 64 % (167 772 / 262 144), full in ~9 min; top churn 127.0.0.5:6379/tcp 2 340 new/s | ' +
        'fill=64%;60;85;0;100 entries=167772;157286;222822;0;262144 time_to_full=540s;;;0 drop=4c;;;0 early_drop=0c;;;0 insert_failed=1c;;;0 new_per_s=2410;;;0',
    );
  });

  it('CRITICAL by fill, or by drops while measuring whatever the fill', () => {
    expect(checkResult(snap(), parseRange('50', '-w'), parseRange('60', '-c'), 0).code).toBe(2);
    const dropped = checkResult(snap({ entries: 10, fill: 10 / 262144 }), parseRange('70', '-w'), parseRange('90', '-c'), 12);
    expect(dropped.code).toBe(2);
    expect(dropped.line).toMatch(/^CONNTRACK CRITICAL - table 0 % \(10 \/ 262 144\), full in ~9 min, kernel dropped 12 packets \(table full\);/);
  });

  it('unknown figures are U, never 0', () => {
    const r = checkResult(snap({ timeToFull: null, kernel: {} }), parseRange('70', '-w'), parseRange('90', '-c'), 0);
    expect(r.code).toBe(0);
    expect(r.line).toContain('not growing');
    expect(r.line).toContain(' time_to_full=U;;;0 drop=U;;;0 early_drop=U;;;0 insert_failed=U;;;0 ');
  });
});

describe('node_exporter textfile', () => {
  it("node_exporter's names, HELP and types; per-CPU counters summed; absent statistics left out", () => {
    const text = nodeTextfile({ entries: 300, max: 262144, cpus: [{ found: 1, drop: 2, early_drop: 0, insert_failed: 3 }, { found: 4, drop: 5, early_drop: 1, insert_failed: 0 }] });
    const samples = text.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(samples).toEqual([
      'node_nf_conntrack_entries 300',
      'node_nf_conntrack_entries_limit 262144',
      'node_nf_conntrack_stat_found 5',
      'node_nf_conntrack_stat_insert_failed 3',
      'node_nf_conntrack_stat_drop 7',
      'node_nf_conntrack_stat_early_drop 1',
    ]);
    expect(text).toContain('# HELP node_nf_conntrack_entries Number of currently allocated flow entries for connection tracking.\n# TYPE node_nf_conntrack_entries gauge\n');
  });

  it('another namespace: every sample says which, escaped', () => {
    expect(nodeTextfile({ entries: 1, max: 2, cpus: [] }, 'a"b\\c')).toContain('node_nf_conntrack_entries{netns="a\\"b\\\\c"} 1\n');
  });
});

describe('withDeadline', () => {
  it('answers with the work when it is on time', async () => {
    let stopped = false;
    expect(await withDeadline(Promise.resolve(7), 1000, () => (stopped = true))).toBe(7);
    expect(stopped).toBe(false);
  });
  it('answers timeout and tells the work to stop when it is not', async () => {
    let stopped = false;
    expect(await withDeadline(new Promise(() => {}), 20, () => (stopped = true))).toBe('timeout');
    expect(stopped).toBe(true);
  });
});
