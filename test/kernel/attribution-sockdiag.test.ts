/**
 * The sock_diag join (native/attribution/diag_join.cc) against the real kernel, in a namespace of
 * its own: UDP from one bound socket, over IPv4 and IPv6, is named right (the socket lives: the
 * first datagram's owner is found by a discovery, the rest from the hot process); TCP sockets reset
 * microseconds after connect are never named wrong, and every one that is not named says why.
 * Loads come from src/lab/ctwatch-lab.c, as in attribution-ebpf.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ensureLabProgram } from '../../src/lab/build.js';
import { openSockdiag } from '../../src/process/attribution.js';
import { LiveSource } from '../../src/source/live.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import { createNetns, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
const lab = ensureLabProgram();
if (lab.path === null) throw new Error(`the lab program cannot be built: ${lab.why}`);
const LAB = lab.path;

describe('sock_diag attribution joined on the reader thread (real kernel, own namespace)', () => {
  let ns: Netns;
  let source: LiveSource;
  const news: ConntrackEvent[] = [];
  let loop: Promise<void>;

  beforeAll(async () => {
    ns = await createNetns();
    await run('ip', ['-n', ns.name, 'addr', 'add', '::1/128', 'dev', 'lo']).catch(() => {});
    const handle = openSockdiag();
    source = new LiveSource({ netns: ns.name, attribution: handle, events: ['new'] });
    handle.close();
    loop = (async () => {
      for await (const batch of source) for (const e of batch) if (e.event === 'new') news.push(e as ConntrackEvent);
    })();
  });
  afterAll(async () => {
    await source?.close();
    await loop;
    await ns?.destroy();
  });

  const churn = async (name: string, args: (string | number)[]) => {
    const { stdout } = await run('ip', ['netns', 'exec', ns.name, LAB, 'churn', name, ...args.map(String)], { timeout: 60_000 });
    return JSON.parse(stdout.trim().split('\n').pop()!) as { pid: number; made: number };
  };
  const to = (port: number, proto: string, span: number) => news.filter((e) => e.proto === proto && e.dport! >= port && e.dport! < port + span);

  it('UDP from one bound socket, IPv4 and IPv6: every flow named right', async () => {
    for (const [name, host, port] of [['udp-bound', '127.0.0.1', 3000], ['udp6-bound', '::1', 8000]] as const) {
      const r = await churn(name, ['udp', host, port, 1000, 2000, 'bound']);
      const events = await waitFor(() => (to(port, 'udp', 1000).length >= 1000 ? to(port, 'udp', 1000) : null), `NEW for ${name}`, 20_000);
      const wrong = events.filter((e) => e.owner && (e.owner.pid !== r.pid || e.owner.comm !== name));
      const right = events.filter((e) => e.owner?.pid === r.pid && e.owner.via === 'sockdiag' && e.owner.side === 'origin');
      expect(wrong, name).toEqual([]);
      const reasons = events.filter((e) => !e.owner).map((e) => e.unattributed);
      expect(right.length / events.length, `${name}: ${JSON.stringify(reasons.slice(0, 5))}`).toBeGreaterThanOrEqual(0.99);
      // the owner carries what the record has room for: its uid, start time and cgroup id
      expect(right[0].owner).toMatchObject({ uid: 0 });
      expect(right[0].owner!.startNs).toBeGreaterThan(0);
    }
  }, 60_000);

  it('TCP sockets reset microseconds after connect: never a wrong process, every miss with its reason', async () => {
    const r = await churn('rst-client', ['tcp', '127.0.0.1', 9, 2000, 2000]);
    const events = await waitFor(() => (to(9, 'tcp', 1).length >= 2000 ? to(9, 'tcp', 1) : null), 'NEW for every connection', 20_000);
    expect(events.filter((e) => e.owner && e.owner.pid !== r.pid)).toEqual([]);
    for (const e of events) if (!e.owner) expect(['gone', 'late', 'no-pid']).toContain(e.unattributed);
    const c = source.attribution as { mode: string; records: number } | undefined;
    expect(c).toMatchObject({ mode: 'sockdiag' });
    expect(c!.records).toBeGreaterThanOrEqual(events.length);
  }, 60_000);
});
