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
    const watch = startCli(['watch', '--netns', ns.name, '--sinks', sinks, '--metrics', `127.0.0.1:${metricsPort}`, '--status', '0', '--attribution', 'ebpf']);
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
      // The reader's join: its copy of the stamp map answered, no stamp was lost, the programs
      // saw the generator's connects (host-wide, so at least its 120).
      const total = (name: string, labels = '') => Number(new RegExp(`^ctwatch_attribution_${name}\\{[^}]*${labels}[^}]*\\} (\\d+(?:\\.\\d+)?)`, 'm').exec(latest)?.[1]);
      expect(total('copy_answers_total')).toBeGreaterThanOrEqual(100);
      expect(total('kernel_lookups_total')).toBeGreaterThanOrEqual(0);
      expect(total('stamps_total', 'hook="connect"')).toBeGreaterThanOrEqual(120);
      expect(total('stamp_ring_copied_total')).toBeGreaterThanOrEqual(120);
      expect(total('stamp_ring_lost_total')).toBe(0);
      expect(total('stamp_copy_overruns_total')).toBe(0);
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
    // A flow is named by its source address and port, and each run connects from its own address: a
    // port alone does not tell two runs apart, for the kernel hands ports out again (a connection of
    // run 2 can take the port of one of run 1 still in TIME_WAIT: tcp_tw_reuse=2 allows it on lo).
    const flowOf = (d: { source?: { ip?: string; port?: number } }) => `${d.source?.ip}:${d.source?.port}`;
    const toUs = (d: { destination?: { port?: number } }) => d.destination?.port === 6380;
    // The flows whose ECS documents are in the spool, in the order its segments hold them (oldest
    // segment first; LEN:PAYLOAD\n records of the wire payload; a run may be cut mid-record, so a
    // short tail is ignored), each named once, where it first appears.
    const spooledFlows = () => {
      const flows: string[] = [];
      if (!existsSync(spool)) return flows;
      for (const f of readdirSync(spool).filter((n) => n.startsWith('seg-')).sort()) {
        const buf = readFileSync(join(spool, f));
        for (let at = 0; at < buf.length; ) {
          const colon = buf.indexOf(0x3a, at);
          if (colon < 0) break;
          const len = Number(buf.subarray(at, colon).toString());
          if (!Number.isInteger(len) || colon + 1 + len > buf.length) break;
          for (const line of buf.subarray(colon + 1, colon + 1 + len).toString().split('\n').filter(Boolean)) {
            const d = JSON.parse(line) as Record<string, never>;
            if (toUs(d)) flows.push(flowOf(d));
          }
          at = colon + 1 + len + 1;
        }
      }
      return [...new Set(flows)];
    };
    const burst = async (from: string, count: number) => {
      const [r] = await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.6', port: 6380 }],
        run: [{ kind: 'connect', host: '127.0.0.6', port: 6380, from, count, rate: 0, report: true }],
      });
      await ns.exec('conntrack', ['-D', '-p', 'tcp', '--dport', '6380']);
      return (r.tuples as { src: string; sport: number }[]).map((t) => `${t.src}:${t.sport}`);
    };
    const runs: string[][] = [];
    // One run while the receiver is down: its flows reach the spool, then it is stopped by `signal`.
    const runDown = async (from: string, signal: NodeJS.Signals) => {
      const run = start();
      try {
        await waitFor(() => run.out.stderr.includes(WATCHING), 'watch to start');
        const flows = await burst(from, 40);
        runs.push(flows);
        await waitFor(() => {
          const spooled = new Set(spooledFlows());
          return flows.every((f) => spooled.has(f));
        }, 'the flows in the spool', 15_000);
      } finally {
        run.child.kill(signal);
      }
      return run.out.exited;
    };
    // Run 1: SIGTERM spools what is left and exits 0. Run 2: killed with -9, no chance to flush.
    expect(await runDown('127.0.0.7', 'SIGTERM')).toBe(0);
    expect(await runDown('127.0.0.8', 'SIGKILL')).toBe(137);
    const [first, second] = runs;
    expect(new Set([...first, ...second]).size).toBe(80);
    const spooled = spooledFlows();

    // The receiver comes back; run 3 takes over the spool (its lock is a dead pid's) and delivers.
    const got: Record<string, unknown>[] = [];
    const receiver = ndjsonReceiver(got);
    await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', () => r()));
    const third = start();
    try {
      // Each flow where it first arrives: at least once means a flow may come again after that.
      const arrived = () => [...new Set(got.filter(toUs).map(flowOf))];
      await waitFor(() => spooled.every((f) => arrived().includes(f)), 'every spooled flow at the receiver', 20_000);
      // In order: the receiver sees the flows as the spool held them, run 1's (spooled by the run
      // before) before any of run 2's.
      expect(arrived()).toEqual(spooled);
      expect(new Set(arrived().slice(0, first.length))).toEqual(new Set(first));
      expect(new Set(arrived().slice(first.length))).toEqual(new Set(second));
    } finally {
      third.child.kill('SIGTERM');
      await new Promise((r) => receiver.close(r));
    }
    expect(await third.out.exited).toBe(0);
  });
});
