import { describe, expect, it } from 'vitest';
import type { ConntrackEvent, ConntrackEventKind } from '../../src/source/types.js';
import type { FlowEnd } from '../../src/flow/types.js';
import { FlowTracker } from '../../src/flow/tracker.js';
import { destinationKey } from '../../src/flow/keys.js';

const S = 1_000_000;
const T0 = 1_700_000_000 * S;
const NS = 1000; // ns per µs

function ev(event: ConntrackEventKind, id: number, more: Partial<ConntrackEvent> = {}): ConntrackEvent {
  const sport = more.sport ?? 40000 + (id % 20000);
  return {
    event,
    time: T0,
    id,
    family: 'ipv4',
    proto: 'tcp',
    src: '10.0.0.1',
    dst: '127.0.0.5',
    sport,
    dport: 6379,
    reply: { src: '127.0.0.5', dst: '10.0.0.1', sport: 6379, dport: sport },
    status: [],
    ...more,
  };
}

function run(t: FlowTracker, ...events: ConntrackEvent[]): FlowEnd[] {
  const out: FlowEnd[] = [];
  for (const e of events) t.apply(e, out);
  return out;
}

describe('destinationKey', () => {
  it('names destinations the way operators write them', () => {
    expect(destinationKey('ipv4', '127.0.0.5', 6379, 'tcp')).toBe('127.0.0.5:6379/tcp');
    expect(destinationKey('ipv6', '2001:db8::1', 443, 'tcp')).toBe('[2001:db8::1]:443/tcp');
    expect(destinationKey('ipv4', '10.0.0.1', undefined, 'icmp')).toBe('10.0.0.1/icmp');
    expect(destinationKey('ipv6', '::1', undefined, 'icmpv6')).toBe('::1/icmpv6');
  });
});

describe('FlowTracker', () => {
  it('turns NEW then DESTROY into a flow record timed by the collector', () => {
    const t = new FlowTracker();
    const out: FlowEnd[] = [];
    expect(t.apply(ev('new', 1, { state: 'SYN_SENT', status: ['CONFIRMED'], mark: 7, zone: 2 }), out)).toBe('opened');
    expect(t.size).toBe(1);
    expect(t.apply(ev('update', 1, { time: T0 + 1000, state: 'ESTABLISHED', status: ['SEEN_REPLY'] }), out)).toBe('updated');
    expect(
      t.apply(
        ev('destroy', 1, {
          time: T0 + 2_500_000,
          state: 'TIME_WAIT',
          status: ['ASSURED', 'CONFIRMED'],
          orig: { packets: 5, bytes: 300 },
          reply: { src: '127.0.0.5', dst: '10.0.0.1', sport: 6379, dport: 40001, packets: 4, bytes: 250 },
          netns: 'lab',
        }),
        out,
      ),
    ).toBe('ended');
    expect(out).toEqual([
      {
        event: 'flow',
        time: T0 + 2_500_000,
        id: 1,
        family: 'ipv4',
        proto: 'tcp',
        src: '10.0.0.1',
        dst: '127.0.0.5',
        sport: 40001,
        dport: 6379,
        begin: T0,
        duration: 2.5,
        clock: 'collector',
        preexisting: false,
        state: 'TIME_WAIT',
        assured: true,
        // from the UPDATE: status bits are kept once seen
        replied: true,
        orig: { packets: 5, bytes: 300 },
        reply: { packets: 4, bytes: 250 },
        reason: 'destroy',
        mark: 7,
        zone: 2,
        netns: 'lab',
      },
    ]);
    expect(t.size).toBe(0);
    expect(t.has(1)).toBe(false);
  });

  it('times a flow by the kernel when start and end timestamps are known', () => {
    const t = new FlowTracker();
    const start = T0 * NS + 123_456_789;
    // start from the NEW, end from the DESTROY
    const [end] = run(t, ev('new', 2, { start }), ev('destroy', 2, { time: T0 + 9 * S, end: start + 1_500_000_000 }));
    expect(end.clock).toBe('kernel');
    expect(end.duration).toBeCloseTo(1.5, 6);
    expect(end.begin).toBe(Math.floor(start / NS));
    // start only on the DESTROY
    const [end2] = run(
      t,
      ev('new', 3),
      ev('destroy', 3, { time: T0 + 9 * S, start, end: start + 250_000_000 }),
    );
    expect(end2.clock).toBe('kernel');
    expect(end2.duration).toBeCloseTo(0.25, 6);
    // no kernel end: collector time from the kernel start
    const [end3] = run(t, ev('new', 4, { start: T0 * NS }), ev('destroy', 4, { time: T0 + 3 * S }));
    expect(end3.clock).toBe('collector');
    expect(end3.begin).toBe(T0);
    expect(end3.duration).toBe(3);
  });

  it('ignores a dump entry for a flow it saw begin (subscribe, then dump)', () => {
    const t = new FlowTracker();
    const out: FlowEnd[] = [];
    t.apply(ev('new', 5, { time: T0 + 10 }), out);
    expect(t.apply(ev('snapshot', 5, { time: T0 + 20, state: 'ESTABLISHED' }), out)).toBe('ignored');
    expect(t.size).toBe(1);
    expect(t.get(5)).toMatchObject({ preexisting: false, start: T0 + 10 });
    expect(t.get(5)!.state).toBeUndefined();
    expect(out).toEqual([]);
  });

  it('makes a dumped flow a normal one when its NEW is read after the dump', () => {
    const t = new FlowTracker();
    const out: FlowEnd[] = [];
    expect(t.apply(ev('snapshot', 6, { time: T0 + 20, state: 'ESTABLISHED' }), out)).toBe('inserted');
    expect(t.get(6)!.preexisting).toBe(true);
    const start = T0 * NS;
    expect(t.apply(ev('new', 6, { time: T0 + 30, state: 'SYN_SENT', start }), out)).toBe('opened');
    // the dump's state is newer than the NEW's
    expect(t.get(6)).toMatchObject({ preexisting: false, start: T0 + 20, state: 'ESTABLISHED', kernelStart: start });
    expect(t.stateCounts()).toEqual({ ESTABLISHED: 1 });
    expect(t.apply(ev('new', 6, { time: T0 + 40 }), out)).toBe('duplicate');
    expect(t.size).toBe(1);
    expect(out).toEqual([]);
  });

  it('marks dumped flows preexisting, their duration a lower bound from the dump', () => {
    const t = new FlowTracker();
    const [end] = run(t, ev('snapshot', 7, { state: 'ESTABLISHED' }), ev('destroy', 7, { time: T0 + 4 * S }));
    expect(end).toMatchObject({ preexisting: true, begin: T0, duration: 4, clock: 'collector', state: 'ESTABLISHED' });
  });

  it('adds an UPDATE for an unknown id as late-seen', () => {
    const t = new FlowTracker();
    const out: FlowEnd[] = [];
    expect(t.apply(ev('update', 8, { state: 'ESTABLISHED', status: ['ASSURED'] }), out)).toBe('late');
    expect(t.get(8)).toMatchObject({ preexisting: true, assured: true, state: 'ESTABLISHED' });
  });

  it('ends the stale flow when a NEW reuses its id with another tuple', () => {
    const t = new FlowTracker();
    const out = run(
      t,
      ev('new', 9, { sport: 1111, state: 'ESTABLISHED', status: ['ASSURED', 'SEEN_REPLY'] }),
      ev('new', 9, { time: T0 + 7 * S, sport: 2222 }),
    );
    expect(out).toEqual([
      {
        event: 'flow',
        time: T0 + 7 * S,
        id: 9,
        family: 'ipv4',
        proto: 'tcp',
        src: '10.0.0.1',
        dst: '127.0.0.5',
        sport: 1111,
        dport: 6379,
        begin: T0,
        duration: 7,
        clock: 'collector',
        preexisting: false,
        state: 'ESTABLISHED',
        assured: true,
        replied: true,
        reason: 'resync',
      },
    ]);
    expect(t.size).toBe(1);
    expect(t.get(9)).toMatchObject({ sport: 2222, start: T0 + 7 * S, preexisting: false });
    expect(t.get(9)!.state).toBeUndefined();
    expect(t.stateCounts()).toEqual({});
  });

  it('ends the stale flow when a DESTROY names its id with another tuple', () => {
    const t = new FlowTracker();
    const out = run(t, ev('new', 10, { dst: '10.9.9.9' }), ev('destroy', 10, { time: T0 + S }));
    expect(out.map((e) => [e.reason, e.dst, e.preexisting])).toEqual([
      ['resync', '10.9.9.9', false],
      ['destroy', '127.0.0.5', true],
    ]);
    expect(t.size).toBe(0);
    expect(t.distinct).toEqual({ destinations: 0, sources: 0 });
  });

  it('returns the destination key a destroyed flow was counted under', () => {
    const t = new FlowTracker();
    run(t, ev('new', 30, { dst: '127.0.0.6', dport: 80 }));
    expect(t.destroy(ev('destroy', 30, { dst: '127.0.0.6', dport: 80 }), [])).toBe('127.0.0.6:80/tcp');
    expect(t.destroy(ev('destroy', 31, { dport: 443 }), [])).toBe('127.0.0.5:443/tcp');
  });

  it('still reports a DESTROY for an id it never saw', () => {
    const t = new FlowTracker();
    const [plain] = run(t, ev('destroy', 11, { time: T0 + 5 * S, state: 'CLOSE' }));
    expect(plain).toMatchObject({ begin: T0 + 5 * S, duration: 0, clock: 'collector', preexisting: true, state: 'CLOSE' });
    const start = (T0 - 30 * S) * NS;
    const [timed] = run(t, ev('destroy', 12, { time: T0 + 5 * S, start, end: start + 30 * S * NS }));
    expect(timed).toMatchObject({ begin: T0 - 30 * S, duration: 30, clock: 'kernel', preexisting: true });
    const [started] = run(t, ev('destroy', 13, { time: T0 + 5 * S, start }));
    expect(started).toMatchObject({ begin: T0 - 30 * S, duration: 35, clock: 'collector', preexisting: true });
  });

  it('reconciles against a dump: flows missing from it end with reason resync', () => {
    const t = new FlowTracker();
    for (let id = 1; id <= 6; id++) run(t, ev('new', id, { time: T0 + id * S }));
    const ended = t.reconcile(new Set([2, 4]), T0 + 20 * S, T0 + 6 * S);
    // 6 was first seen at the dump's start: kept, it may be newer than the dump
    expect(ended.map((e) => e.id).sort()).toEqual([1, 3, 5]);
    for (const e of ended) {
      expect(e).toMatchObject({ reason: 'resync', time: T0 + 20 * S, clock: 'collector', duration: 20 - e.id });
    }
    expect([2, 4, 6].every((id) => t.has(id))).toBe(true);
    expect(t.size).toBe(3);
    expect(t.reconcile(new Set(), T0 + 30 * S)).toHaveLength(3);
    expect(t.size).toBe(0);
  });

  it('drains every flow with reason shutdown', () => {
    const t = new FlowTracker();
    for (let id = 1; id <= 3; id++) run(t, ev('new', id));
    const ended = t.drain(T0 + S);
    expect(ended.map((e) => e.reason)).toEqual(['shutdown', 'shutdown', 'shutdown']);
    expect(t.size).toBe(0);
  });

  it('counts live flows by TCP state, whole table and per destination, as they change', () => {
    const t = new FlowTracker();
    const redis = '127.0.0.5:6379/tcp';
    const web = '127.0.0.6:80/tcp';
    run(
      t,
      ev('new', 1, { state: 'SYN_SENT' }),
      ev('new', 2, { state: 'SYN_SENT' }),
      ev('new', 3, { state: 'SYN_SENT', dst: '127.0.0.6', dport: 80 }),
      ev('new', 4, { proto: 'udp', dport: 53, dst: '127.0.0.53' }),
      ev('update', 1, { state: 'ESTABLISHED' }),
      ev('update', 2, { state: 'ESTABLISHED' }),
      ev('update', 2, { state: 'TIME_WAIT' }),
      ev('update', 2, { status: ['ASSURED'] }),
    );
    expect(t.stateCounts()).toEqual({ SYN_SENT: 1, ESTABLISHED: 1, TIME_WAIT: 1 });
    expect(t.destinationStates(redis)).toEqual({ ESTABLISHED: 1, TIME_WAIT: 1 });
    expect(t.destinationStates(web)).toEqual({ SYN_SENT: 1 });
    expect(t.destinationStates('127.0.0.53:53/udp')).toEqual({});
    expect(t.destinationStates('nowhere')).toEqual({});
    expect(t.liveByDestination(redis)).toBe(2);
    expect(t.liveBySource('10.0.0.1')).toBe(4);
    expect(t.liveByProtocol('tcp')).toBe(3);
    expect(t.liveByProtocol('udp')).toBe(1);
    run(t, ev('destroy', 2), ev('destroy', 3, { dst: '127.0.0.6', dport: 80 }));
    expect(t.stateCounts()).toEqual({ ESTABLISHED: 1 });
    expect(t.destinationStates(web)).toEqual({});
    expect(t.destinationStates(redis)).toEqual({ ESTABLISHED: 1 });
  });

  it('keeps ICMP and IPv6 tuples through the table', () => {
    const t = new FlowTracker();
    run(
      t,
      ev('new', 20, {
        proto: 'icmp',
        sport: undefined,
        dport: undefined,
        icmp: { type: 8, code: 0, id: 4242 },
        dst: '10.0.0.9',
      }),
      ev('new', 21, { family: 'ipv6', src: '2001:db8::2', dst: '2001:db8::1', dport: 443 }),
    );
    expect(t.get(20)).toMatchObject({ destination: '10.0.0.9/icmp', icmp: { type: 8, code: 0, id: 4242 }, proto: 'icmp' });
    expect(t.get(20)!.sport).toBeUndefined();
    expect(t.get(21)).toMatchObject({ destination: '[2001:db8::1]:443/tcp', family: 'ipv6', dport: 443 });
    const ended = t.reconcile(new Set(), T0 + S);
    expect(ended.find((e) => e.id === 20)).toMatchObject({ icmp: { type: 8, code: 0, id: 4242 }, proto: 'icmp', dst: '10.0.0.9' });
    expect(ended.find((e) => e.id === 21)).toMatchObject({ family: 'ipv6', src: '2001:db8::2', sport: 40021, dport: 443 });
  });

  it('frees interned keys when their last flow ends', () => {
    const t = new FlowTracker();
    for (let i = 0; i < 1000; i++) run(t, ev('new', i + 1, { src: `10.1.${i >> 8}.${i & 255}`, dport: 1000 + (i % 10) }));
    expect(t.distinct).toEqual({ destinations: 10, sources: 1000 });
    for (let i = 0; i < 1000; i++) run(t, ev('destroy', i + 1, { src: `10.1.${i >> 8}.${i & 255}`, dport: 1000 + (i % 10) }));
    expect(t.distinct).toEqual({ destinations: 0, sources: 0 });
    expect(t.liveByDestination('127.0.0.5:1000/tcp')).toBe(0);
  });

  it('agrees with a Map through growth, deletion and shrinking', () => {
    const t = new FlowTracker({ capacity: 16 });
    const model = new Map<number, number>();
    let seed = 7;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let round = 0; round < 3; round++) {
      // mix sequential ids (clustered probes) with random ones
      for (let i = 0; i < 40_000; i++) {
        const id = i % 2 ? round * 100_000 + i : Math.floor(rand() * 2 ** 32);
        if (model.has(id)) continue;
        model.set(id, i);
        t.open(ev('new', id, { time: T0 + i }), []);
      }
      expect(t.size).toBe(model.size);
      const ids = [...model.keys()];
      let wrong = 0;
      for (const id of ids) {
        if (rand() >= 0.9) continue;
        const out: FlowEnd[] = [];
        t.destroy(ev('destroy', id), out);
        if (out[0].preexisting) wrong++;
        model.delete(id);
      }
      expect(wrong).toBe(0);
      expect(t.size).toBe(model.size);
      for (const [id, i] of model) if (t.get(id)?.start !== T0 + i) wrong++;
      for (const id of ids) if (!model.has(id) && t.has(id)) wrong++;
      expect(wrong).toBe(0);
    }
    for (const id of [...model.keys()]) t.destroy(ev('destroy', id), []);
    expect(t.size).toBe(0);
  });
});

describe('FlowTracker per-destination figures with keys kept idle', () => {
  it('finds the live destinations among many rows of ended ones, in the same order as from the rows', () => {
    const t = new FlowTracker();
    // 500 destinations that had a flow and have none now: their keys stay named, idle
    for (let i = 1; i <= 500; i++) run(t, ev('new', i, { dport: 10000 + i }), ev('destroy', i, { dport: 10000 + i }));
    // live: two unreplied TIME_WAIT flows to :10400, one to :10007 (its row is older), one replied to :10007
    run(
      t,
      ev('new', 1001, { dport: 10400, state: 'TIME_WAIT', time: T0 - 120 * S }),
      ev('new', 1002, { dport: 10400, state: 'TIME_WAIT' }),
      ev('new', 1003, { dport: 10007, state: 'TIME_WAIT' }),
      ev('new', 1004, { dport: 10007, state: 'ESTABLISHED', status: ['SEEN_REPLY'] }),
    );
    const d400 = '127.0.0.5:10400/tcp';
    const d7 = '127.0.0.5:10007/tcp';
    expect(t.destinationsInState('TIME_WAIT', 0)).toEqual([{ key: d7, count: 1 }, { key: d400, count: 2 }]);
    expect(t.destinationsInState('TIME_WAIT', 1)).toEqual([{ key: d400, count: 2 }]);
    const u = t.unreplied(T0, 60 * S, 10);
    expect(u.total).toBe(3);
    expect(u.stale).toBe(1);
    expect(u.destinations.map((d) => [d.key, d.unreplied, d.stale, d.oldestAge])).toEqual([[d400, 2, 1, 120], [d7, 1, 0, 0]]);
    // and again: the scratch rows were left clear
    expect(t.unreplied(T0, 60 * S, 10)).toEqual(u);
    expect(t.destinationStates('127.0.0.5:10001/tcp')).toEqual({});
    expect(t.liveByDestination(d400)).toBe(2);
  });
});
