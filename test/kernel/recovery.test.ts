/**
 * Overflow recovery against the real kernel: with a tiny receive buffer a burst overflows the
 * socket; the overflow is reported, the buffer grows, a resync dumps the table, and afterwards the
 * tracker holds exactly the entries `conntrack -L` lists in that namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChurnEngine } from '../../src/churn/engine.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { OverflowRecovery, type ResyncRecord } from '../../src/pipeline/recovery.js';
import { LiveSource } from '../../src/source/live.js';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

describe('overflow recovery (real kernel, own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('reports the overflow, grows the buffer, resyncs, and then matches conntrack -L exactly', async () => {
    // 4 KiB and one batch in flight: the reader cannot keep up with a flush of thousands.
    const source = new LiveSource({ netns: ns.name, rcvbuf: 4096, maxBatches: 1, batchSize: 16, snapshot: true });
    const engine = new ChurnEngine();
    const recovery = new OverflowRecovery(source, engine, { backoffMs: 300, minIntervalMs: 1000 });
    const resyncs: ResyncRecord[] = [];
    let overflows = 0;
    let dumped = false;
    const pipeline = new Pipeline(
      source,
      {
        events: (b) => {
          for (const e of b) {
            if (e.event === 'overflow') overflows++;
            if (e.event === 'snapshot_done') dumped = true;
          }
        },
        resync: (r) => void resyncs.push(r),
      },
      { engine, recovery },
    );
    const done = pipeline.run();
    const rcvbufBefore = source.counters.rcvbuf;
    try {
      await waitFor(() => dumped, 'the start-up dump');
      // A table of 3 000 established-then-closed flows (TIME_WAIT), then a DESTROY storm for 2 000
      // of them: the burst overflows the tiny buffer.
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }, { proto: 'tcp', host: '127.0.0.6', port: 6380 }],
        parallel: true,
        run: [
          { kind: 'connect', host: '127.0.0.5', port: 6379, count: 2000, rate: 0, concurrency: 64 },
          { kind: 'connect', host: '127.0.0.6', port: 6380, count: 1000, rate: 0, concurrency: 64 },
        ],
      });
      await ns.exec('conntrack', ['-D', '-d', '127.0.0.5']).catch(() => {});
      await waitFor(() => overflows > 0, 'an overflow event', 10_000);
      await waitFor(() => resyncs.length > 0, 'a resync', 15_000);
      // A later overflow (the buffer grows one doubling per overflow) would bring another resync;
      // either way the tracker must end up holding exactly what the kernel lists.
      const kernelIds = async () => {
        const { stdout } = await ns.exec('conntrack', ['-L', '-o', 'id']);
        return stdout.trim().split('\n').filter((l) => l.includes('id=')).map((l) => Number([...l.matchAll(/\bid=(\d+)/g)].pop()![1]));
      };
      const ids = await waitFor(async () => {
        const list = await kernelIds();
        return engine.tracker.size === list.length && list.every((id) => engine.tracker.has(id)) ? list : null;
      }, 'the tracker to equal conntrack -L', 10_000, 200).catch(async () => kernelIds());
      expect(source.counters.overflows).toBeGreaterThan(0);
      expect(source.counters.rcvbuf).toBeGreaterThan(rcvbufBefore);
      expect(resyncs[0].entries).toBeGreaterThan(0);
      expect(resyncs[0].overflows).toBeGreaterThan(0);
      expect(engine.tracker.size).toBe(ids.length);
      for (const id of ids) expect(engine.tracker.has(id)).toBe(true);
    } finally {
      await source.close();
      await done;
    }
  });

  it('a resync dump that fails in the kernel (EPERM) ends no flow: it is reported and tried again', async () => {
    // 300 flows in TIME_WAIT before the collector starts: its start-up dump holds them.
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.7', port: 6381 }], run: [{ kind: 'connect', host: '127.0.0.7', port: 6381, count: 300, rate: 0, concurrency: 32 }] });
    const child = track(spawn(process.execPath, [join(ROOT, 'test/fixtures/failed-dump-child.mjs'), ns.name], { stdio: ['pipe', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const lines = () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const ready = await waitFor(() => lines().find((l) => l.step === 'ready'), `the child's start-up dump (${err})`, 15_000);
    expect(ready.live).toBeGreaterThanOrEqual(300);
    // A burst far beyond the 4 KiB buffer: an overflow, so a resync dump, which the kernel refuses.
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.8', port: 6382 }], run: [{ kind: 'connect', host: '127.0.0.8', port: 6382, count: 2000, rate: 0, concurrency: 64 }] });
    child.stdin!.end('go\n');
    const after = await waitFor(() => lines().find((l) => l.step === 'after'), `the child's report (${err})`, 25_000);
    expect(await exited).toBe(0);
    expect(after.overflows).toBeGreaterThan(0);
    expect(after.resyncs.length).toBeGreaterThanOrEqual(2); // the first, and the retry
    for (const r of after.resyncs) expect(r).toMatchObject({ event: 'resync', failed: 1, vanished: 0 });
    expect(after.failedDumps).toBe(after.resyncs.length);
    // nothing was ended on the word of an incomplete dump
    expect(after.endedByResync).toBe(0);
    expect(after.live).toBeGreaterThanOrEqual(ready.live);
  });
});
