/**
 * NAT-aware views against the real kernel. DNAT: an output-hook nat rule translates a service
 * address (127.0.0.100:6379, what kube-proxy does for a ClusterIP) to a backend (127.0.0.5:6379),
 * and a leak goes through the service address: flow lines carry the backend in `nat`, the churn
 * snapshot names it per service, `top` shows `service → backend`, and the churn alert names it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);

describe('DNAT: a leak through a service address translated to a backend (own namespace)', () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-nat-'));
  beforeAll(async () => {
    ns = await createNetns();
    await ns.exec('nft', ['add chain inet ctwatch_test nat_out { type nat hook output priority -100; }']);
    await ns.exec('nft', ['add rule inet ctwatch_test nat_out ip daddr 127.0.0.100 tcp dport 6379 dnat ip to 127.0.0.5:6379']);
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('flows, churn, top and the churn alert carry service → backend', async () => {
    const rules = join(dir, 'rules.yaml');
    writeFileSync(rules, `rules:
  churn_per_destination:
    rate: new1
    threshold: 300
    for: 0s
  churn_baseline: { enabled: false }
  time_wait_pileup: { enabled: false }
  time_to_full: { enabled: false }
`);
    const alerts = join(dir, 'alerts.jsonl');
    const recording = join(dir, 'flows.jsonl');
    const watch = track(spawn(process.execPath, [CLI, 'watch', '--netns', ns.name, '--rules', rules, '-o', alerts, '--status', '0', '--no-processes'], { stdio: ['ignore', 'ignore', 'pipe'] }));
    const record = track(spawn(process.execPath, [CLI, 'record', '--netns', ns.name, '--flows', '--churn', '1s', '-o', recording, '--no-processes'], { stdio: ['ignore', 'ignore', 'pipe'] }));
    let watchErr = '';
    let recordErr = '';
    watch.stderr.on('data', (d) => (watchErr += d));
    record.stderr.on('data', (d) => (recordErr += d));
    const watchExited = new Promise<number | null>((r) => watch.once('exit', (code) => r(code)));
    const recordExited = new Promise<number | null>((r) => record.once('exit', (code) => r(code)));
    let screen = '';
    try {
      await waitFor(() => watchErr.includes('watching the conntrack table'), 'watch to start');
      await waitFor(() => recordErr.includes('recording conntrack events'), 'record to start');
      const top = run(process.execPath, [CLI, 'top', '--netns', ns.name, '--batch', '--duration', '3s', '--no-processes'], { timeout: 30_000 });
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }],
        run: [{ kind: 'connect', host: '127.0.0.100', port: 6379, from: '127.0.1.7', count: 2000, rate: 1000, concurrency: 32 }],
      });
      screen = (await top).stdout;
      await waitFor(() => existsSync(alerts) && readFileSync(alerts, 'utf8').includes('"churn_per_destination"'), 'the churn alert', 10_000, 100);
      // a churn line naming the backend, and the leak's flows ended
      const ended = () => readFileSync(recording, 'utf8').split('\n').filter((l) => l.includes('"event":"flow"') && l.includes('"dst":"127.0.0.100"')).length;
      await waitFor(() => existsSync(recording) && readFileSync(recording, 'utf8').includes('"backend":"127.0.0.5:6379"'), 'a churn line naming the backend', 10_000, 100);
      // the kernel reaps expired entries lazily (its GC may take a minute to get to them): flush
      // the table, which destroys (and reports) every entry left
      await ns.exec('conntrack', ['-F']);
      await waitFor(() => ended() >= 2000, 'the flow lines of the leak', 20_000, 200);
    } finally {
      watch.kill('SIGTERM');
      record.kill('SIGTERM');
    }
    expect(await watchExited).toBe(0);
    expect(await recordExited).toBe(0);

    // flows: original destination the service address, translated one the backend; no SNAT
    const lines = readFileSync(recording, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const flows = lines.filter((l) => l.event === 'flow' && l.dst === '127.0.0.100' && l.dport === 6379);
    expect(flows.length).toBe(2000);
    for (const f of flows) expect(f.nat).toEqual({ dst: '127.0.0.5', dport: 6379 });
    // and a flow that was not translated has no `nat` (the destroy events themselves are there too)
    expect(lines.filter((l) => l.event === 'flow' && l.nat === undefined && l.dst === '127.0.0.100')).toHaveLength(0);

    // churn: the service key, with its backend
    const churn = lines.filter((l) => l.event === 'churn').flatMap((l) => l.destinations as { key: string; backend?: string; backends?: number; new1: number }[]);
    const service = churn.filter((d) => d.key === '127.0.0.100:6379/tcp');
    expect(service.length).toBeGreaterThan(0);
    for (const d of service) {
      expect(d.backend).toBe('127.0.0.5:6379');
      expect(d.backends).toBe(1);
    }
    // the backend is never its own key: the flows are counted under the address they were sent to
    expect(churn.filter((d) => d.key === '127.0.0.5:6379/tcp')).toHaveLength(0);

    // top: service → backend in the destination table
    expect(screen).toMatch(/127\.0\.0\.100:6379\/tcp → 127\.0\.0\.5:6379 +[\d.]+/);

    // the alert: subject the service, message naming the backend
    const fired = JSON.parse(readFileSync(alerts, 'utf8').trim().split('\n').find((l) => l.includes('"churn_per_destination"'))!);
    expect(fired.subject).toBe('127.0.0.100:6379/tcp');
    expect(fired.message).toContain('churn to 127.0.0.100:6379/tcp → 127.0.0.5:6379');
  }, 60_000);
});
