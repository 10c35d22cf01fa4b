/**
 * The live source against the real kernel, in a namespace of its own: every flow is delivered once
 * as NEW and once as DESTROY with the right fields, the ids match conntrack(8)'s, bursts are
 * lossless with the default buffer, overflow is reported with a tiny one, and errors are clear.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { LiveSource } from '../../src/source/live.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import { collect } from '../helpers/collect.js';
import { CLI, ROOT, createNetns, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
const PROBE = '127.0.0.254';

/** Pings a probe address until `seen` reports it: proves subscribers are listening. */
async function probeUntil(ns: Netns, seen: () => boolean, what: string) {
  await waitFor(async () => {
    await ns.exec('ping', ['-c', '1', '-W', '0.2', PROBE]).catch(() => {});
    return seen();
  }, what, 10_000, 50);
}

describe('live source (real kernel, own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('delivers one NEW and one DESTROY per flow, IPv4 and IPv6, with the ids conntrack -E sees', async () => {
    const ref = ns.spawn('conntrack', ['-E', '-e', 'NEW,DESTROY', '-o', 'id']);
    let refOut = '';
    ref.stdout!.on('data', (d) => (refOut += d));
    const source = new LiveSource({ netns: ns.name });
    const col = collect(source);
    try {
      await probeUntil(ns, () => refOut.includes(`dst=${PROBE}`) && col.conntrack().some((e) => e.dst === PROBE), 'both subscribers to see the probe');

      const results = await ns.generate({
        listen: [
          { proto: 'tcp', host: '127.0.0.2', port: 7000 },
          { proto: 'udp', host: '127.0.0.3', port: 5353 },
          { proto: 'tcp', host: '::1', port: 7001 },
          { proto: 'udp', host: '::1', port: 5354 },
        ],
        run: [
          { kind: 'connect', host: '127.0.0.2', port: 7000, from: '127.0.0.1', count: 50, rate: 0, concurrency: 8, report: true },
          { kind: 'udp', host: '127.0.0.3', port: 5353, count: 10, report: true },
          { kind: 'connect', host: '::1', port: 7001, count: 20, rate: 0, concurrency: 4, report: true },
          { kind: 'udp', host: '::1', port: 5354, count: 5, report: true },
        ],
      });
      await ns.exec('ping', ['-c', '3', '-i', '0.05', '127.0.0.4']);
      await ns.exec('ping', ['-6', '-c', '2', '-i', '0.05', '::1']);
      // DESTROY comes when the kernel reaps an entry, which can take a minute for a handful of
      // entries; flushing the table makes the kernel destroy them all now.
      await ns.exec('conntrack', ['-F', '-f', 'ipv4']);
      await ns.exec('conntrack', ['-F', '-f', 'ipv6']);

      const tuples = results.flatMap((r) => (r.tuples as { src: string; sport: number; dst: string; dport: number }[]) ?? []);
      expect(tuples).toHaveLength(85);
      const ours = () => col.conntrack().filter((e) => e.dst !== PROBE);
      const expectedFlows = 85 + 2; // + one ICMP flow per ping run
      await waitFor(() => ours().filter((e) => e.event === 'destroy').length >= expectedFlows, 'all DESTROY events', 15_000);
      await waitFor(() => (refOut.match(/\[DESTROY\]/g) ?? []).length >= expectedFlows, 'conntrack -E to see all DESTROY events', 15_000);

      for (const t of tuples) {
        const match = (e: ConntrackEvent) => e.src === t.src && e.dst === t.dst && e.sport === t.sport && e.dport === t.dport;
        const news = ours().filter((e) => e.event === 'new' && match(e));
        const destroys = ours().filter((e) => e.event === 'destroy' && match(e));
        expect(news, `NEW for ${JSON.stringify(t)}`).toHaveLength(1);
        expect(destroys, `DESTROY for ${JSON.stringify(t)}`).toHaveLength(1);
        expect(destroys[0].id).toBe(news[0].id);
        const tcp = t.dport === 7000 || t.dport === 7001;
        expect(news[0].proto).toBe(tcp ? 'tcp' : 'udp');
        expect(news[0].family).toBe(t.dst.includes(':') ? 'ipv6' : 'ipv4');
        expect(news[0].netns).toBe(ns.name);
        expect(news[0].reply).toMatchObject({ src: t.dst, dst: t.src, sport: t.dport, dport: t.sport });
        if (tcp) {
          expect(news[0].state).toBe('SYN_SENT');
          expect(destroys[0].status).toContain('ASSURED');
        }
        expect(destroys[0].status).toContain('SEEN_REPLY');
      }
      const icmp = ours().filter((e) => e.proto === 'icmp');
      expect(icmp.map((e) => e.event).sort()).toEqual(['destroy', 'new']);
      expect(icmp[0]).toMatchObject({ family: 'ipv4', src: '127.0.0.1', dst: '127.0.0.4', icmp: { type: 8, code: 0 } });
      const icmp6 = ours().filter((e) => e.proto === 'icmpv6');
      expect(icmp6.map((e) => e.event).sort()).toEqual(['destroy', 'new']);
      expect(icmp6[0]).toMatchObject({ family: 'ipv6', src: '::1', dst: '::1', icmp: { type: 128, code: 0 } });

      expect(ours().filter((e) => e.event === 'new')).toHaveLength(expectedFlows);
      expect(ours().filter((e) => e.event === 'destroy')).toHaveLength(expectedFlows);

      // Same ids as conntrack(8), event for event.
      const refIds = (kind: string) =>
        refOut
          .split('\n')
          .filter((l) => l.includes(`[${kind}]`) && !l.includes(`dst=${PROBE}`))
          .map((l) => Number([...l.matchAll(/\bid=(\d+)/g)].pop()![1]))
          .sort();
      const ourIds = (kind: string) => ours().filter((e) => e.event === kind).map((e) => e.id).sort();
      expect(ourIds('new')).toEqual(refIds('NEW'));
      expect(ourIds('destroy')).toEqual(refIds('DESTROY'));
      expect(source.counters.overflows).toBe(0);
      expect(source.counters.decodeErrors).toBe(0);
    } finally {
      ref.kill('SIGINT');
      await source.close();
      await col.done;
    }
  });

  it('keeps up with a burst of 20 000 connections without overflow, matching the kernel count', async () => {
    const source = new LiveSource({ netns: ns.name });
    const col = collect(source);
    try {
      await probeUntil(ns, () => col.conntrack().some((e) => e.dst === PROBE), 'the source to see the probe');
      const before = await ns.newFlows();
      const seenBefore = col.conntrack().filter((e) => e.event === 'new').length;
      const [r] = await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 7100 }],
        run: [{ kind: 'connect', host: '127.0.0.5', port: 7100, count: 20_000, rate: 0, concurrency: 128 }],
      });
      expect(r.made).toBe(20_000);
      const kernelNew = (await ns.newFlows()) - before;
      expect(kernelNew).toBeGreaterThanOrEqual(20_000);
      await waitFor(() => col.conntrack().filter((e) => e.event === 'new').length - seenBefore >= kernelNew, 'every NEW the kernel counted', 20_000);
      expect(col.conntrack().filter((e) => e.event === 'new').length - seenBefore).toBe(kernelNew);
      // And the DESTROY burst of a flush (all 20 000 at once) is lossless too.
      await ns.exec('conntrack', ['-F']);
      await waitFor(() => col.conntrack().filter((e) => e.event === 'destroy' && e.dport === 7100).length >= 20_000, '20 000 DESTROY', 20_000);
      expect(col.events.filter((e) => e.event === 'overflow')).toHaveLength(0);
      expect(source.counters.overflows).toBe(0);
      expect(source.counters.rcvbuf).toBeGreaterThanOrEqual(32 * 1024 * 1024);
    } finally {
      await source.close();
      await col.done;
    }
  });

  it('reports an overflow, in the stream and in the counters, when the buffer is tiny and JS falls behind', async () => {
    const source = new LiveSource({ netns: ns.name, rcvbuf: 4096, maxBatches: 1, batchSize: 16 });
    try {
      // Nobody consumes yet: the reader hands over one batch, then stops reading, and the kernel
      // socket fills.
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.6', port: 7200 }],
        run: [{ kind: 'connect', host: '127.0.0.6', port: 7200, count: 2000, rate: 0, concurrency: 64 }],
      });
      await ns.exec('conntrack', ['-F']);
      const col = collect(source);
      await waitFor(() => col.events.some((e) => e.event === 'overflow'), 'an overflow event', 10_000);
      expect(source.counters.overflows).toBeGreaterThan(0);
      const ov = col.events.find((e) => e.event === 'overflow')!;
      expect(ov).toMatchObject({ event: 'overflow', netns: ns.name });
      await source.close();
      await col.done;
    } finally {
      await source.close();
    }
  });

  it('takes table entries and limit from the kernel (netlink stats, not procfs)', async () => {
    const source = new LiveSource({ netns: ns.name });
    try {
      await ns.exec('conntrack', ['-F']);
      await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.7', port: 7300 }], run: [{ kind: 'connect', host: '127.0.0.7', port: 7300, count: 30, rate: 0 }] });
      const stats = source.stats();
      const { stdout } = await ns.exec('conntrack', ['-C']);
      expect(stats.entries).toBe(Number(stdout.trim()));
      const { stdout: max } = await run('sysctl', ['-n', 'net.netfilter.nf_conntrack_max']);
      expect(stats.max).toBe(Number(max.trim()));
      expect(stats.cpus.length).toBeGreaterThan(0);
      expect(Object.keys(stats.cpus[0])).toEqual(expect.arrayContaining(['found', 'invalid', 'insert', 'insert_failed', 'drop', 'early_drop', 'error']));
    } finally {
      await source.close();
    }
  });

  it("says how many of the kernel's events wait untaken (what the warm-up gives way to), a table dump's not counted", async () => {
    await ns.exec('conntrack', ['-F']);
    // 40 table entries for the start-up dump (TCP connections closed: their entries stay a while)
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.8', port: 7400 }], run: [{ kind: 'connect', host: '127.0.0.8', port: 7400, count: 40, rate: 0 }] });
    const source = new LiveSource({ netns: ns.name, snapshot: true });
    try {
      // nothing takes the batches yet: the dump's wait, uncounted
      await waitFor(() => source.waiting.batches > 0 || null, 'the start-up dump to be handed over', 10_000, 20);
      expect(source.waiting).toMatchObject({ events: 0, full: false });
      // the kernel's own events are counted
      await ns.exec('ping', ['-c', '3', '-i', '0.05', '127.0.0.9']);
      await waitFor(() => source.waiting.events > 0 || null, 'the ping to wait untaken', 10_000, 20);
      // taken, they are not waiting any more
      const col = collect(source);
      await waitFor(() => col.conntrack().some((e) => e.dst === '127.0.0.9') || null, 'the ping to be taken', 10_000, 20);
      expect(source.waiting.events).toBe(0);
    } finally {
      await source.close();
    }
  });

  it('the reader thread reads the table statistics on its own clock: the tick takes them without waiting', async () => {
    const source = new LiveSource({ netns: ns.name });
    try {
      expect(source.latestStats()).toBeNull();
      await ns.exec('conntrack', ['-F']);
      await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.7', port: 7301 }], run: [{ kind: 'connect', host: '127.0.0.7', port: 7301, count: 20, rate: 0 }] });
      const { stdout } = await ns.exec('conntrack', ['-C']);
      const count = Number(stdout.trim());
      source.statsEvery(50);
      // a reading taken after the connections were made: wait (with a deadline) for one that young
      let reading = source.latestStats();
      const deadline = Date.now() + 5000;
      while ((reading === null || reading.entries !== count) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        reading = source.latestStats();
      }
      expect(reading).not.toBeNull();
      expect(reading!.entries).toBe(count);
      expect(reading!.max).toBe(source.stats().max);
      expect(reading!.ageMs).toBeLessThan(1000);
      expect(Object.keys(reading!.cpus[0])).toEqual(expect.arrayContaining(['found', 'insert', 'drop']));
    } finally {
      await source.close();
    }
  });

  describe('close and exit (child processes)', () => {
    const child = (mode: string, during?: () => Promise<unknown>) =>
      new Promise<{ code: number | null; signal: string | null; out: string; err: string; ms: number }>((resolve) => {
        const started = Date.now();
        const p = spawn(process.execPath, [join(ROOT, 'test/fixtures/exit-child.mjs'), mode, ns.name], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        let kicked = false;
        p.stdout.on('data', (d) => {
          out += d;
          if (!kicked && during && out.includes('open')) {
            kicked = true;
            void during();
          }
        });
        p.stderr.on('data', (d) => (err += d));
        const killer = setTimeout(() => p.kill('SIGKILL'), 15_000);
        p.on('exit', (code, signal) => {
          clearTimeout(killer);
          resolve({ code, signal, out, err, ms: Date.now() - started });
        });
      });

    it('exits cleanly when the process exits with the source open', async () => {
      const r = await child('exit-open');
      expect(r).toMatchObject({ code: 0, signal: null });
    });
    it('close() twice is harmless', async () => {
      const r = await child('close-twice');
      expect(r).toMatchObject({ code: 0, signal: null });
      expect(r.out).toContain('closed');
    });
    it('after close() nothing keeps the process alive', async () => {
      const r = await child('natural');
      expect(r).toMatchObject({ code: 0, signal: null });
      expect(r.ms).toBeLessThan(5_000);
    });
    it('close() during a burst ends the stream and the process promptly', async () => {
      const r = await child('close-during-burst', () =>
        ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.8', port: 7400 }], run: [{ kind: 'connect', host: '127.0.0.8', port: 7400, count: 3000, rate: 0, concurrency: 64 }] }),
      );
      expect(r).toMatchObject({ code: 0, signal: null });
      expect(r.out).toMatch(/events \d+/);
    });
    it('an uncaught exception with the source open exits with the error, no abort', async () => {
      const r = await child('throw-open');
      expect(r.code).toBe(1);
      expect(r.signal).toBeNull();
      expect(r.err).toContain('boom');
    });
  });
});

describe('ctwatch record errors: one clear line and the right exit code', () => {
  const cli = (args: string[], prefix: string[] = []) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const cmd = prefix.length ? prefix[0] : process.execPath;
      const argv = prefix.length ? [...prefix.slice(1), process.execPath, CLI, ...args] : [CLI, ...args];
      execFile(cmd, argv, { timeout: 20_000 }, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
    });

  it('a namespace that does not exist', async () => {
    const r = await cli(['record', '--netns', 'no-such-ns-ctwatch']);
    expect(r.code).toBe(66);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('no-such-ns-ctwatch does not exist');
  });
  it('no CAP_NET_ADMIN', async () => {
    const r = await cli(['record', '--duration', '1s'], ['setpriv', '--inh-caps=-all', '--bounding-set=-all']);
    expect(r.code).toBe(77);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('CAP_NET_ADMIN');
  });
  it('an output that cannot be written', async () => {
    const r = await cli(['record', '--duration', '1s', '--output', '/proc/ctwatch-cannot/x.jsonl']);
    expect(r.code).toBe(73);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('cannot write /proc/ctwatch-cannot/x.jsonl');
  });
  it('an unknown event type', async () => {
    const r = await cli(['record', '--events', 'new,bogus']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain("unknown event type 'bogus'");
  });
});
