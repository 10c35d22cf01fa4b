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
import { createNetns, waitFor, type Netns } from '../helpers/netns.js';

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
});
