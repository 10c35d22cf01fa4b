/**
 * schema/v1 against what ctwatch really writes, in a namespace of its own: a `record` of real
 * traffic (snapshot, new/update/destroy for TCP, UDP and ICMP over IPv4 and IPv6, flow and churn
 * lines), `watch -o` with an alert that fires and resolves, `stats --json` and `doctor --json`.
 * Every line is validated against the schema of its kind (schema/v1/KIND.json).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { WATCHING, jsonLines, startCli } from '../helpers/cli.js';
import { invalid } from '../helpers/schemas.js';
import { writeOnlyRules } from '../helpers/rules.js';

const run = promisify(execFile);

const lines = (file: string) => jsonLines(file);

/** Every line valid against its kind's schema: the failures, as "line N (kind): errors". */
function failures(recs: Record<string, unknown>[]): string[] {
  return recs.flatMap((r, i) => {
    const e = invalid(r);
    return e ? [`line ${i + 1} (${String(r.event)}): ${e}`] : [];
  });
}

/** Runs the CLI; resolves with its stdout and exit code whatever the code. */
async function cli(args: string[]): Promise<{ stdout: string; code: number }> {
  try {
    const { stdout } = await run(process.execPath, [CLI, ...args], { timeout: 60_000 });
    return { stdout, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; code?: number | string };
    if (typeof e.code !== 'number') throw err;
    return { stdout: e.stdout ?? '', code: e.code };
  }
}

describe('schema/v1 on real output (own namespace)', () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-schema-'));
  beforeAll(async () => {
    // TIME_WAIT of 1 s: TCP flows end (flow lines) within the test
    ns = await createNetns({ sysctls: { 'net.netfilter.nf_conntrack_tcp_timeout_time_wait': 1 } });
    await ns.exec('ip', ['addr', 'add', '::1/128', 'dev', 'lo']).catch(() => {});
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every line of a real recording (--flows --churn 1s, all event kinds) validates', async () => {
    const listen = [
      { proto: 'tcp', host: '127.0.0.5', port: 6379 },
      { proto: 'udp', host: '127.0.0.6', port: 53 },
    ];
    // in the table before the recorder starts: "snapshot" lines
    await ns.generate({ listen, run: [{ kind: 'udp', host: '127.0.0.6', port: 53, count: 5 }] });
    const out = join(dir, 'rec.jsonl');
    const rec = startCli(['record', '--netns', ns.name, '--events', 'new,update,destroy', '--flows', '--churn', '1s', '--duration', '6s', '-o', out]);
    await waitFor(() => lines(out).some((l) => l.event === 'snapshot_done'), 'the start-up dump in the recording');
    await ns.generate({
      listen,
      parallel: true,
      run: [
        { kind: 'connect', host: '127.0.0.5', port: 6379, from: '127.0.1.7', count: 200, rate: 100, concurrency: 8 },
        { kind: 'udp', host: '127.0.0.6', port: 53, count: 20 },
      ],
    });
    await ns.exec('ping', ['-c', '2', '-i', '0.2', '-W', '1', '127.0.0.1']);
    await ns.exec('ping', ['-6', '-c', '2', '-i', '0.2', '-W', '1', '::1']).catch(() => {});
    await ns.exec(process.execPath, ['-e', "const s=require('net').connect(9,'::1');s.on('error',()=>{})"]).catch(() => {});
    expect(await rec.exited, rec.stderr).toBe(0);
    const recs = lines(out);
    const kinds = new Set(recs.map((r) => r.event));
    for (const k of ['snapshot', 'snapshot_done', 'new', 'update', 'destroy', 'flow', 'churn']) expect(kinds.has(k), `a "${k}" line`).toBe(true);
    const protos = new Set(recs.map((r) => `${r.family}/${r.proto}`));
    for (const p of ['ipv4/tcp', 'ipv4/udp', 'ipv4/icmp']) expect(protos.has(p), p).toBe(true);
    expect(recs.length).toBeGreaterThan(400);
    expect(failures(recs)).toEqual([]);
  }, 60_000);

  it('every line `watch -o` writes (alert, resolved, flow, churn) validates', async () => {
    const rules = writeOnlyRules(join(dir, 'rules.yaml'), {
      rules: { churn_per_destination: { rate: 'new1', threshold: 30, resolve: 5, for: '0s', resolve_for: '1s' } },
    });
    const out = join(dir, 'watch.jsonl');
    const watch = startCli(['watch', '--netns', ns.name, '--rules', rules, '-o', out, '--flows', '--churn', '1s', '--status', '0']);
    try {
      await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start');
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }],
        run: [{ kind: 'connect', host: '127.0.0.5', port: 6379, from: '127.0.1.7', count: 300, rate: 150, concurrency: 8 }],
      });
      // their TIME_WAIT of 1 s is soon over; its reaping may not be (seen: 300 entries live for 20 s)
      await ns.flush();
      await waitFor(() => lines(out).some((l) => l.event === 'resolved') && lines(out).some((l) => l.event === 'flow'), () => `the alert to resolve and flows to end; ${lines(out).length} lines; watch said: ${watch.stderr.slice(-2000)}`, 20_000);
    } finally {
      watch.kill('SIGTERM');
    }
    expect(await watch.exited, watch.stderr).toBe(0);
    const recs = lines(out);
    const kinds = new Set(recs.map((r) => r.event));
    for (const k of ['alert', 'resolved', 'flow', 'churn']) expect(kinds.has(k), `a "${k}" line`).toBe(true);
    expect(failures(recs)).toEqual([]);
  }, 60_000);

  it('`stats --json` validates against churn.json', async () => {
    const r = await cli(['stats', '--netns', ns.name, '--json', '--interval', '1s']);
    expect(r.code).toBeLessThan(3);
    const recs = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs).toHaveLength(1);
    expect(recs[0].event).toBe('churn');
    expect(failures(recs)).toEqual([]);
  }, 30_000);

  it('`doctor --json` validates against doctor.json', async () => {
    const r = await cli(['doctor', '--netns', ns.name, '--json']);
    expect(r.code).toBeLessThan(3);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(doc.netns).toBe(ns.name);
    expect(invalid(doc, 'doctor')).toBe('');
  }, 30_000);
});
