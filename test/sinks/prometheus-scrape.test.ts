/**
 * The metrics endpoint against a real Prometheus (Debian package `prometheus`, which also ships
 * promtool): it scrapes us, the values arrive as set, the target is healthy, top-N label sets that
 * dropped out go stale, and the alerting expressions docs/metrics.md suggests evaluate as intended.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import type { MetricsServer } from '../../src/metrics/server.js';
import type { ChurnSnapshot, KeyChurn } from '../../src/churn/snapshot.js';
import { freeTcpPort } from '../helpers/ports.js';

const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const RULES = new URL('../../contrib/prometheus/ctwatch.rules.yml', import.meta.url);

/** The alerting rules file docs/metrics.md points to. */
function documentedRules(): string {
  return readFileSync(RULES, 'utf8');
}

function documentedExpr(alert: string): string {
  const doc = parse(documentedRules()) as { groups: { rules: { alert: string; expr: string }[] }[] };
  const rule = doc.groups.flatMap((g) => g.rules).find((r) => r.alert === alert);
  if (!rule) throw new Error(`contrib/prometheus/ctwatch.rules.yml has no rule ${alert}`);
  return rule.expr;
}

function key(k: string, n: number): KeyChurn {
  return { key: k, new1: n, new10: n, new60: n, end1: n, end10: n, end60: n, live: n * 10 };
}

function snapshot(over: { destinations?: KeyChurn[]; drop?: number; entries?: number } = {}): ChurnSnapshot {
  const entries = over.entries ?? 52_400;
  return {
    event: 'churn',
    time: Date.now() * 1000,
    overall: { new1: 2340, new10: 2100, new60: 1800, end1: 2200, end10: 2000, end60: 1750 },
    live: 52_345,
    states: { ESTABLISHED: 120, TIME_WAIT: 48_000 },
    shortLived: 0.9,
    table: {
      entries, max: 65_536, fill: entries / 65_536, growth: 131, timeToFull: (65_536 - entries) / 131,
      kernel: { drop: over.drop ?? 0, early_drop: 0, insert_failed: 0, invalid: 3 },
    },
    destinations: over.destinations ?? [key('127.0.0.5:6379/tcp', 2300), key('10.0.0.9:443/tcp', 20)],
    sources: [key('127.0.1.7', 2300)],
    protocols: [],
  };
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

let dir: string;
let exporter: MetricsExporter;
let server: MetricsServer | undefined;
let prom: ChildProcess | undefined;
let promLog = '';
let api: string;

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(`${api}${path}`, { signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${path}: ${body.error}`);
  return body.data;
}

async function query(expr: string): Promise<Sample[]> {
  const data = await getJson<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  return data.result;
}

/** Polls until `check` returns a value other than undefined, or fails with what it last saw. */
async function until<T>(what: string, check: () => Promise<T | undefined>, deadlineMs = 15_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    if (prom?.exitCode !== null && prom?.exitCode !== undefined) {
      throw new Error(`prometheus exited (${prom.exitCode}) while waiting for ${what}:\n${promLog.slice(-2000)}`);
    }
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err; // not up yet: connection refused, or the first scrape has not happened
    }
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}; last error: ${String(last)}\nprometheus log:\n${promLog.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stopPrometheus(): Promise<void> {
  const p = prom;
  prom = undefined;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

beforeAll(async () => {
  if (!existsSync(PROMETHEUS)) {
    throw new Error(`${PROMETHEUS} is missing: install the Debian package "prometheus" (scripts/setup.sh should)`);
  }
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-prom-'));
  exporter = new MetricsExporter();
  exporter.update({ snapshot: snapshot(), source: { events: 123_456, batches: 789, overflows: 1, decodeErrors: 0, queueHighWater: 4, rcvbuf: 425_984 } });
  server = await exporter.listen('127.0.0.1:0');

  const promPort = await freeTcpPort();
  api = `http://127.0.0.1:${promPort}`;
  const conf = join(dir, 'prometheus.yml');
  const rules = join(dir, 'ctwatch.rules.yml');
  writeFileSync(rules, documentedRules());
  writeFileSync(
    conf,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      `rule_files: ['${rules}']`,
      'scrape_configs:',
      '  - job_name: ctwatch',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${server.port}']`,
      '',
    ].join('\n'),
  );
  prom = spawn(
    PROMETHEUS,
    [
      `--config.file=${conf}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (c: Buffer): void => {
    promLog = (promLog + c.toString()).slice(-20_000);
  };
  prom.stdout?.on('data', keep);
  prom.stderr?.on('data', keep);
  prom.on('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
});

afterAll(async () => {
  await stopPrometheus();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a real Prometheus scraping the exporter', () => {
  it('stores the value we set, and sees the target up', async () => {
    const value = await until('ctwatch_conntrack_entries in Prometheus', async () => {
      const r = await query('ctwatch_conntrack_entries');
      return r.length === 1 ? r[0].value[1] : undefined;
    });
    expect(value).toBe('52400');

    const targets = await getJson<{ activeTargets: { health: string; lastError: string; scrapeUrl: string; labels: Record<string, string> }[] }>(
      '/api/v1/targets?state=active',
    );
    expect(targets.activeTargets).toHaveLength(1);
    expect(targets.activeTargets[0]).toMatchObject({ health: 'up', lastError: '', scrapeUrl: `http://127.0.0.1:${server!.port}/metrics` });

    // metadata comes from our HELP/TYPE lines: counters are counters
    const meta = await getJson<Record<string, { type: string }[]>>('/api/v1/metadata?metric=ctwatch_source_events_total');
    expect(meta.ctwatch_source_events_total?.[0].type).toBe('counter');
    expect((await query('ctwatch_source_events_total'))[0].value[1]).toBe('123456');
    expect((await query('ctwatch_tcp_flows_live{state="TIME_WAIT"}'))[0].value[1]).toBe('48000');
  });

  it('lets top-N label sets that dropped out go stale', async () => {
    const before = await query('ctwatch_top_destination_flows_live');
    expect(before.map((s) => s.metric.destination).sort()).toEqual(['10.0.0.9:443/tcp', '127.0.0.5:6379/tcp']);

    exporter.update({ snapshot: snapshot({ destinations: [key('192.168.1.10:53/udp', 900)] }) });
    const after = await until('the old destinations to go stale', async () => {
      const r = await query('ctwatch_top_destination_flows_live');
      return r.length === 1 && r[0].metric.destination === '192.168.1.10:53/udp' ? r : undefined;
    });
    expect(after[0].value[1]).toBe('9000');
  });

  it('passes promtool\'s check of the documented rules file', () => {
    const res = spawnSync(PROMTOOL, ['check', 'rules', join(dir, 'ctwatch.rules.yml')], { encoding: 'utf8', timeout: 10_000 });
    expect(res.error).toBeUndefined();
    expect(res.status, `${res.stdout}${res.stderr}`).toBe(0);
    expect(res.stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('fires the documented alerts when the table fills and drops', async () => {
    type PromAlert = { labels: { alertname: string }; state: string };
    const alerts = async (): Promise<Record<string, string>> => {
      const data = await getJson<{ alerts: PromAlert[] }>('/api/v1/alerts');
      return Object.fromEntries(data.alerts.map((a) => [a.labels.alertname, a.state]));
    };
    const fill = documentedExpr('ConntrackTableFilling');
    const drops = documentedExpr('ConntrackDropping');
    // 0.8 of 65 536 is 52 428.8: 52 400 is just under
    expect(await query(fill)).toEqual([]);
    expect(await query(drops)).toEqual([]);
    expect(await alerts()).not.toHaveProperty('ConntrackTableFilling');
    expect(await alerts()).not.toHaveProperty('ConntrackDropping');

    exporter.update({ snapshot: snapshot({ entries: 60_000 }) });
    await until('fill > 0.8', async () => ((await query(fill)).length === 1 ? true : undefined));
    // `for: 2m` keeps it pending for the length of this test, which is what we can check
    await until('ConntrackTableFilling pending', async () => ((await alerts()).ConntrackTableFilling === 'pending' ? true : undefined));

    // the drop counter moves between two scrapes
    exporter.update({ snapshot: snapshot({ entries: 60_000, drop: 25 }) });
    await until('drops increasing', async () => ((await query(drops)).length === 1 ? true : undefined));
    await until('ConntrackDropping firing', async () => ((await alerts()).ConntrackDropping === 'firing' ? true : undefined));
  });

  it('passes promtool\'s metric lint', async () => {
    const res = spawnSync(PROMTOOL, ['check', 'metrics'], { input: await exporter.metrics(), encoding: 'utf8', timeout: 10_000 });
    expect(res.error).toBeUndefined();
    expect(`${res.stdout}${res.stderr}`).toBe('');
    expect(res.status).toBe(0);
  });
});
