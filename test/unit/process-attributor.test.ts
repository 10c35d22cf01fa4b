/**
 * Attributor policy against stand-ins for sock_diag and /proc: which socket is a flow's, what each
 * kernel answer means, the reasons, batching, bounds, and that what NEW time learned survives the
 * process (and its pid).
 */
import { describe, expect, it } from 'vitest';
import { Attributor, flowKey, groupKey, processKey, type DiagHandle } from '../../src/process/attributor.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import { FakeProcFs } from '../fixtures/process/fake-procfs.js';

type Answer = [errno: number, inode: number, uid: number, state: number, rport: number, lport: number, flags?: number, pid?: number, start32?: number];

class FakeDiag implements DiagHandle {
  calls: string[][] = [];
  routes = ['127.0.0.0/8', '127.0.0.1/32', '10.0.0.2/32', '::1/128'];
  gate: Promise<void> | null = null;
  constructor(public answer: (line: string, call: number) => Answer) {}
  async lookupEncoded(lines: readonly string[]): Promise<Uint32Array> {
    this.calls.push([...lines]);
    const call = this.calls.length;
    if (this.gate) await this.gate;
    return Uint32Array.from(lines.flatMap((l) => [...this.answer(l, call), 0, 0, 0].slice(0, 9)));
  }
  async localRoutes() {
    return this.routes;
  }
  close() {}
}

let time = 1_700_000_000_000_000;
function ev(p: Partial<ConntrackEvent> & { src: string; dst: string }, kind: ConntrackEvent['event'] = 'new'): ConntrackEvent {
  const sport = p.sport ?? 40000;
  const dport = p.dport ?? 80;
  return {
    event: kind,
    time: time++,
    id: 1,
    family: p.src.includes(':') ? 'ipv6' : 'ipv4',
    proto: 'tcp',
    status: [],
    sport,
    dport,
    reply: p.reply ?? { src: p.dst, dst: p.src, sport: dport, dport: sport },
    ...p,
  } as ConntrackEvent;
}

const ESTABLISHED = 1;
const TIME_WAIT = 6;
const LISTEN = 10;

function setup(answer: (line: string, call: number) => Answer, fs = new FakeProcFs(), opts: ConstructorParameters<typeof Attributor>[0] = {}) {
  const diag = new FakeDiag(answer);
  const results: [ConntrackEvent, string | null, string | undefined][] = [];
  const att = new Attributor({
    openDiag: () => diag,
    netnsInode: () => 1,
    index: { source: fs, users: { name: async (uid) => (uid === 0 ? 'root' : undefined) }, newScanMinMs: 0, fullScanMinMs: 0 },
    onResult: (e, r) => results.push([e, processKey(r.process), r.reason]),
    acceptRetriesMs: [1, 1],
    ...opts,
  });
  return { att, diag, fs, results };
}

describe('Attributor', () => {
  it('a locally originated flow: the original-direction socket, its process', async () => {
    const fs = new FakeProcFs();
    fs.add(500, { inodes: [77], comm: 'leaky-client', uid: 0, cgroup: '0::/system.slice/api.service\n' });
    const { att, diag } = setup((l) => (l === '4 6 127.0.0.1 40000 127.0.0.2 80' ? [0, 77, 0, ESTABLISHED, 80, 40000] : [2, 0, 0, 0, 0, 0]), fs);
    const e = ev({ src: '127.0.0.1', dst: '127.0.0.2' });
    att.attribute([e]);
    expect(diag.calls).toHaveLength(0); // nothing happens inside attribute()
    expect(att.lookup(e)).toEqual({ process: null, reason: 'pending' });
    await att.settled();
    expect(diag.calls).toEqual([['4 6 127.0.0.1 40000 127.0.0.2 80']]);
    expect(att.processOf(e)).toMatchObject({ pid: 500, comm: 'leaky-client', user: 'root', unit: 'api.service' });
    expect(att.lookup(e).side).toBe('origin');
    expect(att.keyOf(e)).toBe('leaky-client[500]');
    expect(att.stats.attributed).toBe(1);
    await att.close();
  });

  it('a locally terminated flow: the reply-direction socket (after DNAT, the real server address)', async () => {
    const fs = new FakeProcFs();
    fs.add(600, { inodes: [88], comm: 'nginx' });
    const { att, diag } = setup((l) => (l === '4 6 10.0.0.2 8080 192.0.2.7 51000' ? [0, 88, 33, ESTABLISHED, 51000, 8080] : [2, 0, 0, 0, 0, 0]), fs);
    // DNAT: the client asked for 10.0.0.9:80 (not ours), the reply comes from 10.0.0.2:8080.
    const e = ev({ src: '192.0.2.7', sport: 51000, dst: '10.0.0.9', dport: 80, reply: { src: '10.0.0.2', sport: 8080, dst: '192.0.2.7', dport: 51000 } });
    att.attribute([e]);
    await att.settled();
    expect(diag.calls.flat()).toEqual(['4 6 10.0.0.2 8080 192.0.2.7 51000']);
    expect(att.lookup(e)).toMatchObject({ process: { pid: 600, comm: 'nginx' }, side: 'reply' });
    await att.close();
  });

  it('accepted by the kernel but not yet by the server: asks again, then takes the listener', async () => {
    const fs = new FakeProcFs();
    fs.add(700, { inodes: [99], comm: 'slow-server' });
    const { att, diag } = setup((l) => (l.endsWith('* 0') ? [0, 99, 0, LISTEN, 0, 8080] : [0, 0, 0, ESTABLISHED, 51000, 8080]), fs);
    const e = ev({ src: '192.0.2.7', sport: 51000, dst: '10.0.0.2', dport: 8080 });
    att.attribute([e]);
    await att.settled();
    expect(diag.calls.flat()).toEqual(['4 6 10.0.0.2 8080 192.0.2.7 51000', '4 6 10.0.0.2 8080 192.0.2.7 51000', '4 6 10.0.0.2 8080 192.0.2.7 51000', '4 6 10.0.0.2 8080 * 0']);
    expect(att.lookup(e)).toMatchObject({ process: { pid: 700 }, side: 'listener' });
    await att.close();
  });

  it('the kernel falls back to a listener for a gone connection: fine for the server side, not for a client', async () => {
    const fs = new FakeProcFs();
    fs.add(700, { inodes: [99], comm: 'server' });
    const { att } = setup(() => [0, 99, 0, LISTEN, 0, 80], fs);
    const inbound = ev({ src: '192.0.2.7', dst: '10.0.0.2' });
    const outbound = ev({ src: '10.0.0.2', sport: 80, dst: '192.0.2.8', dport: 443 });
    att.attribute([inbound, outbound]);
    await att.settled();
    expect(att.lookup(inbound)).toMatchObject({ process: { pid: 700 }, side: 'listener' });
    expect(att.lookup(outbound)).toEqual({ process: null, reason: 'no-socket' });
    await att.close();
  });

  it('reasons: gone (TIME_WAIT), no-socket, not-local, unsupported, no-pid, shared', async () => {
    const fs = new FakeProcFs();
    fs.add(1, { inodes: [5] });
    fs.add(2, { inodes: [5] });
    const { att, diag, results } = setup((l) => {
      if (l.includes(' 1001 ')) return [0, 0, 0, TIME_WAIT, 80, 1001];
      if (l.includes(' 1002 ')) return [2, 0, 0, 0, 0, 0];
      if (l.includes(' 1003 ')) return [0, 12345, 0, ESTABLISHED, 80, 1003];
      if (l.includes(' 1004 ')) return [0, 5, 0, ESTABLISHED, 80, 1004];
      return [22, 0, 0, 0, 0, 0];
    }, fs);
    const tw = ev({ src: '127.0.0.1', sport: 1001, dst: '127.0.0.2' });
    const nosock = ev({ src: '127.0.0.1', sport: 1002, dst: '127.0.0.2' });
    const nopid = ev({ src: '127.0.0.1', sport: 1003, dst: '127.0.0.2' });
    const shared = ev({ src: '127.0.0.1', sport: 1004, dst: '127.0.0.2' });
    const forwarded = ev({ src: '192.0.2.1', dst: '198.51.100.1' });
    const icmp = { ...ev({ src: '127.0.0.1', dst: '127.0.0.3' }), proto: 'icmp', sport: undefined, dport: undefined, icmp: { type: 8, code: 0, id: 1 } } as ConntrackEvent;
    att.attribute([tw, nosock, nopid, shared, forwarded, icmp]);
    await att.settled();
    expect(att.lookup(tw)).toEqual({ process: null, reason: 'gone' });
    expect(att.lookup(nosock)).toEqual({ process: null, reason: 'no-socket' });
    expect(att.lookup(nopid)).toEqual({ process: null, reason: 'no-pid' });
    expect(att.lookup(shared)).toEqual({ process: null, reason: 'shared' });
    expect(att.lookup(forwarded)).toEqual({ process: null, reason: 'not-local' });
    expect(att.lookup(icmp)).toEqual({ process: null, reason: 'unsupported' });
    expect(diag.calls.flat()).toHaveLength(4); // neither the forwarded flow nor ICMP was looked up
    expect(att.stats.reasons).toMatchObject({ gone: 1, 'no-socket': 1, 'no-pid': 1, shared: 1, 'not-local': 1, unsupported: 1 });
    expect(results.map((r) => r[2]).sort()).toEqual(['gone', 'no-pid', 'no-socket', 'not-local', 'shared', 'unsupported']);
    // A flow never given to attribute() is unseen, not a guess.
    expect(att.lookup(ev({ src: '127.0.0.1', sport: 9, dst: '127.0.0.2' }))).toEqual({ process: null, reason: 'unseen' });
    await att.close();
  });

  it('an owner the namespace thread saw (NEW-time capture): checked by start time, no /proc scan', async () => {
    const fs = new FakeProcFs();
    fs.add(900, { inodes: [], comm: 'fast-client', start: 5_000_000_123 });
    const { att } = setup((l) => {
      // captured while alive: pid 900 with the low 32 bits of its start time
      if (l.includes(' 1111 ')) return [0, 55, 0, ESTABLISHED, 80, 1111, 1, 900, 5_000_000_123 % 2 ** 32];
      // a pid whose process has changed since (start time differs): not that process
      if (l.includes(' 2222 ')) return [0, 56, 0, ESTABLISHED, 80, 2222, 1, 900, 77];
      return [2, 0, 0, 0, 0, 0];
    }, fs);
    const ok = ev({ src: '127.0.0.1', sport: 1111, dst: '127.0.0.2' });
    const stale = ev({ src: '127.0.0.1', sport: 2222, dst: '127.0.0.2' });
    att.attribute([ok, stale]);
    await att.settled();
    expect(att.lookup(ok)).toMatchObject({ process: { pid: 900, comm: 'fast-client' }, side: 'origin' });
    expect(att.lookup(stale)).toEqual({ process: null, reason: 'gone' });
    expect(fs.scans).toHaveLength(0);
    expect(att.stats.captured).toBe(2);
    await att.close();
  });

  it('IPv6 and UDP queries', async () => {
    const { att, diag } = setup(() => [2, 0, 0, 0, 0, 0]);
    att.attribute([ev({ src: '::1', sport: 5000, dst: '::1', dport: 53, proto: 'udp' })]);
    await att.settled();
    expect(diag.calls.flat()).toEqual(['6 17 ::1 5000 ::1 53']);
    await att.close();
  });

  it('a DESTROY after the process exited and its pid was reused still gets the process seen at NEW time', async () => {
    const fs = new FakeProcFs();
    fs.add(4242, { inodes: [10], comm: 'doomed', start: 100 });
    const { att } = setup((l) => (l.includes(' 1111 ') ? [0, 10, 0, ESTABLISHED, 80, 1111] : l.includes(' 2222 ') ? [0, 20, 0, ESTABLISHED, 80, 2222] : [2, 0, 0, 0, 0, 0]), fs);
    const first = ev({ src: '127.0.0.1', sport: 1111, dst: '127.0.0.2' });
    att.attribute([first]);
    await att.settled();
    // The process exits; another one gets its pid and opens its own flow.
    fs.procs.set(4242, { start: 999, netns: 1, inodes: [20], comm: 'impostor' });
    const second = ev({ src: '127.0.0.1', sport: 2222, dst: '127.0.0.2' });
    att.attribute([second]);
    await att.settled();
    expect(att.keyOf(second)).toBe('impostor[4242]');
    // The first flow's DESTROY (TIME_WAIT ran out long after the exit).
    const destroy = ev({ src: '127.0.0.1', sport: 1111, dst: '127.0.0.2' }, 'destroy');
    att.attribute([destroy]);
    expect(att.keyOf(destroy)).toBe('doomed[4242]');
    expect(att.stats.index.pidReuse).toBe(1);
    // The next batch forgets it; a flow with the same tuple later is a new flow.
    att.attribute([]);
    expect(att.lookup(destroy)).toEqual({ process: null, reason: 'unseen' });
    await att.close();
  });

  it('a NEW that reuses the tuple of a DESTROY in the same batch is not forgotten with it', async () => {
    const fs = new FakeProcFs();
    fs.add(1, { inodes: [10], comm: 'a' });
    const { att } = setup(() => [0, 10, 0, ESTABLISHED, 80, 1111], fs);
    const e = ev({ src: '127.0.0.1', sport: 1111, dst: '127.0.0.2' });
    att.attribute([e]);
    await att.settled();
    att.attribute([{ ...e, event: 'destroy' }, { ...e, event: 'new' }]);
    att.attribute([]);
    await att.settled();
    expect(att.keyOf(e)).toBe('a[1]');
    await att.close();
  });

  it('batches: thousands of NEW events go in a handful of trips; the queue is bounded', async () => {
    const fs = new FakeProcFs();
    fs.add(1, { inodes: [10] });
    const { att, diag } = setup(() => [0, 10, 0, ESTABLISHED, 80, 1], fs, { batch: 4096 });
    const events = Array.from({ length: 10_000 }, (_, i) => ev({ src: '127.0.0.1', sport: 1024 + (i % 60000), dst: '127.0.0.2', dport: 80 + Math.floor(i / 60000) }));
    att.attribute(events);
    await att.settled();
    expect(diag.calls.length).toBeLessThanOrEqual(3);
    expect(att.stats.queries).toBe(10_000);
    expect(att.stats.attributed).toBe(10_000);
    await att.close();

    let open!: () => void;
    const s2 = setup(() => [2, 0, 0, 0, 0, 0], new FakeProcFs(), { maxQueue: 10, batch: 5 });
    s2.diag.gate = new Promise((r) => (open = r));
    s2.att.attribute(events.slice(0, 5));
    await new Promise((r) => setImmediate(r)); // the first trip is out (and held)
    s2.att.attribute(events.slice(5, 30)); // 25 more: 10 may wait, 15 are dropped
    expect(s2.att.stats.reasons.overload).toBe(15);
    open();
    await s2.att.settled();
    expect(s2.att.stats.reasons['no-socket']).toBe(15);
    await s2.att.close();
  });

  it('remembers at most maxFlows flows, oldest first out', async () => {
    const { att } = setup(() => [2, 0, 0, 0, 0, 0], new FakeProcFs(), { maxFlows: 3 });
    const events = Array.from({ length: 5 }, (_, i) => ev({ src: '127.0.0.1', sport: 2000 + i, dst: '127.0.0.2' }));
    att.attribute(events);
    await att.settled();
    expect(att.stats.remembered).toBe(3);
    expect(att.stats.evicted).toBe(2);
    expect(att.lookup(events[0]).reason).toBe('unseen');
    expect(att.lookup(events[4]).reason).toBe('no-socket');
    await att.close();
  });

  it('a namespace that cannot be opened: error, with the typed error kept', async () => {
    const att = new Attributor({
      openDiag: () => {
        throw Object.assign(new Error('network namespace /run/netns/x does not exist: ...'), { code: 'ERR_NETNS_NOT_FOUND', errno: 2 });
      },
      netnsInode: () => 1,
      index: { source: new FakeProcFs() },
    });
    const e = ev({ src: '127.0.0.1', dst: '127.0.0.2', netns: 'x' });
    att.attribute([e]);
    await att.settled();
    expect(att.lookup(e)).toEqual({ process: null, reason: 'error' });
    expect(att.lastError?.code).toBe('ERR_NETNS_NOT_FOUND');
    await att.close();
  });

  it('keys', () => {
    expect(processKey({ pid: 7, comm: 'api' })).toBe('api[7]');
    expect(processKey(null)).toBeNull();
    expect(groupKey({ pid: 7, comm: 'api', unit: 'api.service' })).toBe('unit:api.service');
    expect(groupKey({ pid: 7, comm: 'api', container: 'ab'.repeat(32), unit: 'x.service' })).toBe('container:abababababab');
    expect(groupKey({ pid: 7, comm: 'api' })).toBeNull();
    expect(flowKey({ netns: 'n', proto: 'tcp', src: 'a', sport: 1, dst: 'b', dport: 2 })).toBe('n|tcp|a|1|b|2');
  });
});
