/**
 * `ctwatch watch` feeding a SIEM and Prometheus from real kernel events: every flow that ended
 * arrives as an ECS document (with community_id) in a file sink and at an NDJSON HTTP receiver,
 * and the metrics endpoint reports what the source counted. And at-least-once across restarts: with
 * the receiver down, flows spooled by one run that stopped on SIGTERM and by one killed with -9
 * all reach the receiver when a third run finds it back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';
import { WATCHING, startCli } from '../helpers/cli.js';

/** An NDJSON HTTP receiver that keeps every document it is sent. */
function ndjsonReceiver(into: Record<string, unknown>[]): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      for (const line of body.toString().split('\n').filter(Boolean)) into.push(JSON.parse(line));
      res.writeHead(200).end('{}');
    });
  });
}

describe('watch → SIEM sinks and metrics (own namespace)', () => {
  let ns: Netns;
  let server: Server;
  const received: Record<string, unknown>[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-siem-'));
  beforeAll(async () => {
    ns = await createNetns();
    server = ndjsonReceiver(received);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  });
  afterAll(async () => {
    await ns?.destroy();
    await new Promise((r) => server?.close(r));
  });

  it('delivers each flow end as ECS to a file and over HTTP, and serves metrics', async () => {
    const port = (server.address() as AddressInfo).port;
    const file = join(dir, 'ecs.jsonl');
    const sinks = join(dir, 'sinks.yaml');
    writeFileSync(sinks, `sinks:
  - name: local-ecs
    type: file
    path: ${file}
    format: ecs
    events: [flow]
  - name: collector
    type: http
    url: http://127.0.0.1:${port}/ingest
    format: ecs
    events: [flow]
    batch: { max_records: 50, max_wait: 200ms }
`);
    const metricsPort = 20000 + (process.pid % 20000);
    const watch = startCli(['watch', '--netns', ns.name, '--sinks', sinks, '--metrics', `127.0.0.1:${metricsPort}`, '--status', '0']);
    try {
      await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start');
      const [r] = await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }],
        run: [{ kind: 'connect', host: '127.0.0.5', port: 6379, count: 120, rate: 0, report: true }],
      });
      await ns.exec('conntrack', ['-F']);
      await waitFor(() => received.filter((d) => (d.destination as { port?: number })?.port === 6379).length >= 120, '120 ECS documents over HTTP', 15_000);
      const http = received.filter((d) => (d.destination as { port?: number })?.port === 6379);
      expect(http).toHaveLength(120);
      const ports = new Set((r.tuples as { sport: number }[]).map((t) => t.sport));
      for (const d of http) {
        expect(d).toMatchObject({ event: { kind: 'event', action: 'flow-end' }, network: { transport: 'tcp' }, destination: { ip: '127.0.0.5', port: 6379 } });
        expect(ports.has((d.source as { port: number }).port)).toBe(true);
        expect((d.network as { community_id: string }).community_id).toMatch(/^1:[A-Za-z0-9+/]{27}=$/);
      }
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').trim().split('\n').length >= 120, 'the ECS file sink', 10_000);
      // Flows are attributed to the generator's process (node) where its socket was still there.
      expect(http.some((d) => (d.process as { name?: string; pid?: number } | undefined)?.name === 'node')).toBe(true);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const events = Number(/^ctwatch_source_events_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1]);
      expect(events).toBeGreaterThanOrEqual(240);
      expect(metrics).toMatch(/^ctwatch_conntrack_entries_limit\{netns="[^"]+"\} \d+/m);
      // Attribution is on: its totals, and the generator's process among the top processes.
      expect(Number(/^ctwatch_attribution_flows_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(120);
      expect(metrics).toMatch(/^ctwatch_attribution_misses_total\{[^}]*reason="gone"[^}]*\} \d+/m);
      let latest = metrics;
      await waitFor(async () => {
        latest = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return /^ctwatch_top_process_flows_new_per_second\{[^}]*process="node\[\d+\]"/m.test(latest);
      }, 'the generator among the top processes in /metrics', 5000, 200);
      expect(Number(/^ctwatch_attribution_attributed_total\{[^}]*\} (\d+)/m.exec(latest)?.[1])).toBeGreaterThan(0);
    } finally {
      watch.kill('SIGTERM');
    }
    expect(await watch.exited).toBe(0);
    expect(watch.stderr).toMatch(/"collector":\{"sent":120/);
  });

  it('receiver down across a SIGTERM restart and a kill -9: every spooled flow arrives when it is back', async () => {
    // A port that nothing listens on yet: take one, close it, and bring the receiver up there later.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const spool = join(dir, 'spool');
    const sinks = join(dir, 'spooled.yaml');
    writeFileSync(sinks, `sinks:
  - name: siem
    type: http
    url: http://127.0.0.1:${port}/ingest
    format: ecs
    events: [flow]
    batch: { max_records: 20, max_wait: 100ms }
    retry: { initial: 100ms, max: 500ms }
    spool: { dir: ${spool} }
`);
    const start = () => {
      const child = track(spawn(process.execPath, [CLI, 'watch', '--netns', ns.name, '--sinks', sinks, '--status', '0', '--no-processes'], { stdio: ['ignore', 'ignore', 'pipe'] }));
      const out = { stderr: '', exited: new Promise<number | null>((r) => child.once('exit', (code, signal) => r(code ?? (signal === 'SIGKILL' ? 137 : null)))) };
      child.stderr.on('data', (d) => (out.stderr += d));
      return { child, out };
    };
    // Source ports of the flows whose ECS documents are in the spool's segments (LEN:PAYLOAD\n records
    // of the wire payload; a run may be cut mid-record, so a short tail is ignored).
    const spooledPorts = () => {
      const ports = new Set<number>();
      if (!existsSync(spool)) return ports;
      for (const f of readdirSync(spool).filter((n) => n.startsWith('seg-'))) {
        const buf = readFileSync(join(spool, f));
        for (let at = 0; at < buf.length; ) {
          const colon = buf.indexOf(0x3a, at);
          if (colon < 0) break;
          const len = Number(buf.subarray(at, colon).toString());
          if (!Number.isInteger(len) || colon + 1 + len > buf.length) break;
          for (const line of buf.subarray(colon + 1, colon + 1 + len).toString().split('\n').filter(Boolean)) {
            const d = JSON.parse(line) as { source?: { port?: number } };
            if (d.source?.port !== undefined) ports.add(d.source.port);
          }
          at = colon + 1 + len + 1;
        }
      }
      return ports;
    };
    const burst = async (count: number) => {
      const [r] = await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.6', port: 6380 }],
        run: [{ kind: 'connect', host: '127.0.0.6', port: 6380, count, rate: 0, report: true }],
      });
      await ns.exec('conntrack', ['-D', '-p', 'tcp', '--dport', '6380']);
      return (r.tuples as { sport: number }[]).map((t) => t.sport);
    };
    const generated: number[] = [];
    // One run while the receiver is down: its flows reach the spool, then it is stopped by `signal`.
    const runDown = async (signal: NodeJS.Signals) => {
      const run = start();
      try {
        await waitFor(() => run.out.stderr.includes(WATCHING), 'watch to start');
        generated.push(...(await burst(40)));
        await waitFor(() => generated.every((p) => spooledPorts().has(p)), 'the flows in the spool', 15_000);
      } finally {
        run.child.kill(signal);
      }
      return run.out.exited;
    };
    // Run 1: SIGTERM spools what is left and exits 0. Run 2: killed with -9, no chance to flush.
    expect(await runDown('SIGTERM')).toBe(0);
    expect(await runDown('SIGKILL')).toBe(137);

    // The receiver comes back; run 3 takes over the spool (its lock is a dead pid's) and delivers.
    const got: Record<string, unknown>[] = [];
    const receiver = ndjsonReceiver(got);
    await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', () => r()));
    const third = start();
    try {
      const arrived = () => new Set(got.filter((d) => (d.destination as { port?: number })?.port === 6380).map((d) => (d.source as { port: number }).port));
      await waitFor(() => generated.every((p) => arrived().has(p)), 'every spooled flow at the receiver', 20_000);
      expect(generated).toHaveLength(80);
      // At least once, and in order: each run's flows arrive in the order they were spooled.
      const order = got.map((d) => (d.source as { port: number }).port);
      expect(order.indexOf(generated[0])).toBeLessThan(order.indexOf(generated[79]));
    } finally {
      third.child.kill('SIGTERM');
      await new Promise((r) => receiver.close(r));
    }
    expect(await third.out.exited).toBe(0);
  });
});
