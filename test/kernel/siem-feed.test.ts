/**
 * `ctwatch watch` feeding a SIEM and Prometheus from real kernel events: every flow that ended
 * arrives as an ECS document (with community_id) in a file sink and at an NDJSON HTTP receiver,
 * and the metrics endpoint reports what the source counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

describe('watch → SIEM sinks and metrics (own namespace)', () => {
  let ns: Netns;
  let server: Server;
  const received: Record<string, unknown>[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-siem-'));
  beforeAll(async () => {
    ns = await createNetns();
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d) => chunks.push(d));
      req.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        for (const line of body.toString().split('\n').filter(Boolean)) received.push(JSON.parse(line));
        res.writeHead(200).end('{}');
      });
    });
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
    const watch = track(spawn(process.execPath, [CLI, 'watch', '--netns', ns.name, '--sinks', sinks, '--metrics', `127.0.0.1:${metricsPort}`, '--status', '0'], { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    watch.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => watch.once('exit', (code) => r(code)));
    try {
      await waitFor(() => stderr.includes('watching the conntrack table'), 'watch to start');
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
    } finally {
      watch.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/"collector":\{"sent":120/);
  });
});
