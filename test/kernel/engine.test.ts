/**
 * The flow engine on real traffic in a namespace of its own: the churning destination is found with
 * the right rate, the table count matches conntrack -C, flows open before start are counted once,
 * and a recording replayed gives the same churn figures as the live run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChurnEngine } from '../../src/churn/engine.js';
import type { ChurnSnapshot } from '../../src/churn/snapshot.js';
import type { FlowEnd } from '../../src/flow/types.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { liveTable } from '../../src/pipeline/table.js';
import { LiveSource } from '../../src/source/live.js';
import { CLI, createNetns, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);

function startEngine(ns: Netns, events: ('new' | 'update' | 'destroy')[] = ['new', 'update', 'destroy']) {
  const source = new LiveSource({ netns: ns.name, events, snapshot: true });
  const engine = new ChurnEngine();
  const snaps: ChurnSnapshot[] = [];
  const flows: FlowEnd[] = [];
  let dumped = false;
  const pipeline = new Pipeline(
    source,
    {
      events: (b) => {
        if (b.some((e) => e.event === 'snapshot_done')) dumped = true;
      },
      flows: (f) => void flows.push(...f),
      snapshot: (s) => void snaps.push(s),
    },
    { engine, wallClock: true, table: liveTable(source) },
  );
  const done = pipeline.run();
  return { source, engine, snaps, flows, done, dumped: () => dumped };
}

describe('flow engine (real kernel, own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('finds the churning destination, its rate within 10 %, and the table count of conntrack -C', async () => {
    const e = startEngine(ns);
    try {
      await waitFor(e.dumped, 'the start-up dump');
      const rate = 500;
      const started = Date.now() * 1000;
      const results = await ns.generate({
        listen: [
          { proto: 'tcp', host: '127.0.0.5', port: 6379 },
          { proto: 'tcp', host: '127.0.0.6', port: 80 },
        ],
        parallel: true,
        run: [
          { kind: 'connect', host: '127.0.0.5', port: 6379, from: '127.0.1.7', count: 2000, rate, concurrency: 32 },
          { kind: 'connect', host: '127.0.0.6', port: 80, count: 20, rate: 5 },
        ],
      });
      const ended = Date.now() * 1000;
      expect(results.find((r) => r.step === 0)?.made).toBe(2000);
      await waitFor(() => e.snaps.some((s) => s.time > ended + 1e6), 'a snapshot after the traffic');
      // Ticks wholly inside the generation: the 1 s rate of the top destination.
      const inside = e.snaps.filter((s) => s.time > started + 1.5e6 && s.time < ended - 0.5e6);
      expect(inside.length).toBeGreaterThanOrEqual(2);
      for (const s of inside) expect(s.destinations[0].key).toBe('127.0.0.5:6379/tcp');
      const rates = inside.map((s) => s.destinations[0].new1).sort((a, b) => a - b);
      const median = rates[Math.floor(rates.length / 2)];
      expect(Math.abs(median - rate) / rate).toBeLessThan(0.1);
      expect(inside[inside.length - 1].sources[0].key).toBe('127.0.1.7');
      // TIME_WAIT pile-up per destination: every redis connection ends in TIME_WAIT (120 s).
      const last = e.snaps[e.snaps.length - 1];
      const redisRow = last.destinations.find((d) => d.key === '127.0.0.5:6379/tcp')!;
      expect(redisRow.states?.TIME_WAIT).toBeGreaterThanOrEqual(1990);
      // The kernel's count, read over netlink, equals conntrack -C.
      const { stdout } = await ns.exec('conntrack', ['-C']);
      const later = await waitFor(() => e.snaps.find((s) => s.time > Date.now() * 1000 - 1e6), 'a fresh snapshot');
      expect(later.table.entries).toBe(Number(stdout.trim()));
      expect(later.table.max).toBeGreaterThan(0);
      expect(later.live).toBe(Number(stdout.trim()));
    } finally {
      await e.source.close();
      await e.done;
      await ns.exec('conntrack', ['-F']);
    }
  });

  it('measures how long connections were open: 300 ms held shows 300 ms within 50 ms', async () => {
    await ns.exec('conntrack', ['-F']);
    const e = startEngine(ns);
    try {
      await waitFor(e.dumped, 'the start-up dump');
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.12', port: 6390 }],
        run: [{ kind: 'connect', host: '127.0.0.12', port: 6390, count: 20, rate: 20, holdMs: 300, concurrency: 20 }],
      });
      // The entries now sit in TIME_WAIT (their table lifetime goes on); end them.
      await ns.exec('conntrack', ['-F']);
      await waitFor(() => e.flows.filter((f) => f.dport === 6390).length >= 20, '20 flow ends');
      const held = e.flows.filter((f) => f.dport === 6390);
      for (const f of held) {
        expect(f.preexisting).toBe(false);
        expect(f.open).toBeGreaterThan(0.25);
        expect(f.open).toBeLessThan(0.35);
        expect(f.duration).toBeGreaterThanOrEqual(f.open!);
        expect(f.state).toBe('TIME_WAIT');
        expect(f.assured).toBe(true);
      }
    } finally {
      await e.source.close();
      await e.done;
    }
  });

  it('counts flows that were open before it started exactly once, as pre-existing', async () => {
    await ns.exec('conntrack', ['-F']);
    const pool = ns.spawn(process.execPath, [join(process.cwd(), 'dist/lab/generator.js'), JSON.stringify({
      listen: [{ proto: 'tcp', host: '127.0.0.8', port: 6380 }],
      run: [{ kind: 'pool', host: '127.0.0.8', port: 6380, connections: 40, rate: 200, durationMs: 8000 }],
    })]);
    try {
      await waitFor(async () => Number((await ns.exec('conntrack', ['-C'])).stdout.trim()) >= 40, '40 pooled connections');
      const e = startEngine(ns);
      try {
        await waitFor(e.dumped, 'the start-up dump');
        // Some new connections while running, to be counted as new, not as pre-existing.
        await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.9', port: 7000 }], run: [{ kind: 'connect', host: '127.0.0.9', port: 7000, count: 25, rate: 0 }] });
        await waitFor(() => e.snaps.length >= 2, 'two snapshots');
        const s = e.engine.snapshot(Date.now() * 1000);
        const pooled = s.destinations.find((d) => d.key === '127.0.0.8:6380/tcp');
        // Pre-existing flows are live but were never "new" churn.
        expect(e.engine.tracker.liveByDestination('127.0.0.8:6380/tcp')).toBe(40);
        expect(pooled?.new60 ?? 0).toBe(0);
        expect(e.engine.tracker.liveByDestination('127.0.0.9:7000/tcp')).toBe(25);
        expect(s.live).toBe(65);
      } finally {
        await e.source.close();
        await e.done;
      }
    } finally {
      pool.kill();
      await ns.exec('conntrack', ['-F']);
    }
  });

  it('replaying a recording gives the same churn figures as the live run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-replay-'));
    const file = join(dir, 'live.jsonl');
    const rec = execFile(process.execPath, [CLI, 'record', '--netns', ns.name, '--events', 'new,update,destroy', '--flows', '--churn', '1s', '-o', file]);
    const recDone = new Promise((r) => rec.once('exit', r));
    await waitFor(() => {
      try {
        return readFileSync(file, 'utf8').includes('"snapshot_done"');
      } catch {
        return false;
      }
    }, 'the recording to start');
    // A second of quiet after the dump, as a recording usually begins: the events then span at
    // least four tick boundaries (the output writes at once, so the dump's line shows up at once).
    await new Promise((r) => setTimeout(r, 1000));
    await ns.generate({
      listen: [{ proto: 'tcp', host: '127.0.0.10', port: 6379 }, { proto: 'udp', host: '127.0.0.11', port: 53 }],
      parallel: true,
      run: [
        { kind: 'connect', host: '127.0.0.10', port: 6379, count: 1200, rate: 400 },
        { kind: 'udp', host: '127.0.0.11', port: 53, count: 30 },
      ],
    });
    await ns.exec('conntrack', ['-F']);
    // Stop once every flow's end is in the file (bounded), so a slow machine cannot cut it short.
    const flowLines = () => (readFileSync(file, 'utf8').match(/"event":"flow"/g) ?? []).length;
    await waitFor(() => flowLines() >= 1230, 'every flow end in the recording', 20_000).catch(() => {});
    await new Promise((r) => setTimeout(r, 1500)); // and a churn tick after them
    rec.kill('SIGTERM');
    await recDone;
    const live = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const { stdout } = await run(process.execPath, [CLI, 'replay', file, '--churn', '1s'], { maxBuffer: 64 * 1024 * 1024 });
    const replayed = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const churn = (rows: Record<string, unknown>[]) => rows.filter((r) => r.event === 'churn');
    const flows = (rows: Record<string, unknown>[]) => rows.filter((r) => r.event === 'flow');
    // The live run may tick once more at the end (wall clock) than the events reach.
    const liveChurn = churn(live).filter((c) => churn(replayed).some((r) => r.time === c.time));
    expect(liveChurn.length).toBeGreaterThanOrEqual(4);
    expect(churn(replayed).length - liveChurn.length).toBeLessThanOrEqual(0);
    for (const c of liveChurn) {
      const r = churn(replayed).find((x) => x.time === c.time)!;
      expect(r.overall).toEqual(c.overall);
      expect(r.destinations).toEqual(c.destinations);
      expect(r.sources).toEqual(c.sources);
      expect(r.table).toEqual(c.table);
      expect(r.live).toBe(c.live);
    }
    // Process attribution needs live sockets: a replay has the flows, not their processes (nor why
    // a flow had none).
    const withoutProcess = (rows: Record<string, unknown>[]) => rows.map(({ process: _p, unattributed: _u, ...rest }) => rest);
    expect(flows(replayed)).toEqual(withoutProcess(flows(live)));
    expect(flows(live).length).toBeGreaterThanOrEqual(1230);
    // And the same file gives the same output twice.
    const again = await run(process.execPath, [CLI, 'replay', file, '--churn', '1s'], { maxBuffer: 64 * 1024 * 1024 });
    expect(again.stdout).toBe(stdout);
  });
});
