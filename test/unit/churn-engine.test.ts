import { describe, expect, it } from 'vitest';
import type { ConntrackEvent, ConntrackEventKind, SourceEvent } from '../../src/source/types.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import { destinationOf, type Destination } from '../../src/flow/keys.js';

const S = 1_000_000;
const MS = 1_000;
const T0 = 1_700_000_000 * S;

function ev(event: ConntrackEventKind, id: number, time: number, more: Partial<ConntrackEvent> = {}): ConntrackEvent {
  const sport = more.sport ?? 30000 + (id % 30000);
  const dst = more.dst ?? '127.0.0.5';
  const dport = 'dport' in more ? more.dport : 6379;
  return {
    event,
    time,
    id,
    family: 'ipv4',
    proto: 'tcp',
    src: '127.0.1.1',
    dst,
    sport,
    dport,
    reply: { src: dst, dst: more.src ?? '127.0.1.1', sport: dport, dport: sport },
    status: [],
    ...more,
  };
}

/**
 * The story's leak: 2000 connections at 500/s to Redis, each living 200 ms (kernel-timed), most from
 * one source, plus a trickle of 10/s to :80 living 5 s. Events sorted by time, cut at `until`.
 */
function redisLeak(until: number): SourceEvent[] {
  const events: ConntrackEvent[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = T0 + i * 2 * MS;
    const src = i % 2 === 0 ? '127.0.1.7' : `127.0.1.${10 + (i % 5)}`;
    const start = t * 1000;
    events.push(ev('new', i + 1, t, { src, state: 'SYN_SENT', status: ['CONFIRMED'], start }));
    events.push(ev('update', i + 1, t + 1 * MS, { src, state: 'ESTABLISHED', status: ['SEEN_REPLY', 'ASSURED'] }));
    events.push(
      ev('destroy', i + 1, t + 200 * MS, { src, state: 'TIME_WAIT', status: ['ASSURED'], start, end: start + 200_000_000 }),
    );
  }
  for (let j = 0; j < 40; j++) {
    const t = T0 + j * 100 * MS + 50 * MS;
    const id = 100_000 + j;
    events.push(ev('new', id, t, { src: '127.0.1.2', dst: '127.0.0.6', dport: 80, state: 'SYN_SENT' }));
    events.push(ev('destroy', id, t + 5 * S, { src: '127.0.1.2', dst: '127.0.0.6', dport: 80, state: 'CLOSE' }));
  }
  return events.filter((e) => e.time < until).sort((a, b) => a.time - b.time);
}

function feed(engine: ChurnEngine, events: SourceEvent[], batch = 1024) {
  const ends = [];
  for (let i = 0; i < events.length; i += batch) ends.push(...engine.ingest(events.slice(i, i + batch)));
  return ends;
}

describe('ChurnEngine', () => {
  it('puts a 500/s Redis leak on top with its rate, lifetimes and states', () => {
    const engine = new ChurnEngine();
    const at = T0 + 4 * S;
    const ends = feed(engine, redisLeak(at));
    const snap = engine.snapshot(at, {
      entries: 60000,
      max: 65536,
      kernel: [
        { drop: 1, early_drop: 2, insert_failed: 0 },
        { drop: 3, early_drop: 0, insert_failed: 1 },
      ],
    });

    const [redis, web] = snap.destinations;
    expect(redis.key).toBe('127.0.0.5:6379/tcp');
    expect(Math.abs(redis.new1 - 500) / 500).toBeLessThan(0.01);
    expect(Math.abs(redis.new10 - 500) / 500).toBeLessThan(0.01);
    expect(Math.abs(redis.new60 - 500) / 500).toBeLessThan(0.01);
    // flows that began in [2.8 s, 3.8 s) ended in the last second
    expect(redis.end1).toBe(500);
    // ends began at 0.2 s: 1900 of them over 4 s observed
    expect(redis.end10).toBe(1900 / 4);
    expect(redis.live).toBe(100);
    expect(redis.states).toEqual({ ESTABLISHED: 100 });
    expect(Math.abs(redis.lifetimeP50! - 0.2) / 0.2).toBeLessThan(0.045);
    expect(Math.abs(redis.lifetimeP99! - 0.2) / 0.2).toBeLessThan(0.045);
    expect(redis.shortLived).toBe(1);
    expect(redis.error).toBe(0);

    expect(web.key).toBe('127.0.0.6:80/tcp');
    expect(web.new1).toBe(10);
    expect(web.live).toBe(40);
    expect(web.states).toEqual({ SYN_SENT: 40 });
    expect(web.lifetimeP50).toBeUndefined();
    expect(web.shortLived).toBeUndefined();

    expect(snap.overall).toEqual({ new1: 510, new10: 510, new60: 510, end1: 500, end10: 475, end60: 475 });
    expect(snap.live).toBe(140);
    expect(snap.states).toEqual({ ESTABLISHED: 100, SYN_SENT: 40 });
    expect(snap.shortLived).toBe(1);

    expect(snap.sources[0]).toMatchObject({ key: '127.0.1.7', new1: 250, live: 50, error: 0 });
    // five sources tie at 50/s over the last second: ties go by the 10 s rate, then key order
    const tied = snap.sources.filter((s) => s.new1 === 50);
    for (let i = 1; i < tied.length; i++) {
      const [a, b] = [tied[i - 1], tied[i]];
      expect(Math.round(a.new10 * 1000) > Math.round(b.new10 * 1000) || (Math.round(a.new10 * 1000) === Math.round(b.new10 * 1000) && a.key < b.key)).toBe(true);
    }
    expect(snap.sources.map((s) => [s.key, s.new1]).sort()).toEqual([
      ['127.0.1.7', 250],
      ['127.0.1.10', 50],
      ['127.0.1.11', 50],
      ['127.0.1.12', 50],
      ['127.0.1.13', 50],
      ['127.0.1.14', 50],
      ['127.0.1.2', 10],
    ].sort());
    expect(snap.sources[snap.sources.length - 1].key).toBe('127.0.1.2');
    expect(snap.protocols).toEqual([
      { key: 'tcp', new1: 510, new10: 510, new60: 510, end1: 500, end10: 475, end60: 475, live: 140 },
    ]);
    expect(snap.table).toEqual({
      entries: 60000,
      max: 65536,
      fill: 60000 / 65536,
      growth: 0,
      timeToFull: null,
      kernel: { drop: 4, early_drop: 2, insert_failed: 1 },
    });

    expect(ends).toHaveLength(1900);
    expect(ends[0]).toMatchObject({ clock: 'kernel', duration: 0.2, reason: 'destroy', assured: true, replied: true });
  });

  it('gives the same records and snapshot whatever the batch sizes (replay is deterministic)', () => {
    const events = redisLeak(T0 + 3 * S);
    const a = new ChurnEngine();
    const b = new ChurnEngine();
    const endsA = feed(a, events, 1024);
    const endsB = feed(b, events, 7);
    expect(JSON.stringify(endsB)).toBe(JSON.stringify(endsA));
    expect(JSON.stringify(b.snapshot(T0 + 3 * S))).toBe(JSON.stringify(a.snapshot(T0 + 3 * S)));
  });

  it('does not count dumped flows as churn, but counts them live', () => {
    const engine = new ChurnEngine();
    const dump = Array.from({ length: 100 }, (_, i) => ev('snapshot', i + 1, T0 + i, { state: 'ESTABLISHED' }));
    engine.ingest([...dump, { event: 'snapshot_done', time: T0 + 200, entries: 100 }]);
    let snap = engine.snapshot(T0 + 2 * S);
    expect(snap.overall.new1).toBe(0);
    expect(snap.live).toBe(100);
    expect(snap.destinations).toEqual([]);
    // their ends are counted, but have no exact lifetime
    engine.ingest(dump.map((d) => ({ ...d, event: 'destroy' as const, time: T0 + 3 * S })));
    snap = engine.snapshot(T0 + 4 * S);
    expect(snap.overall.end1).toBe(100);
    expect(snap.shortLived).toBe(0);
    expect(snap.destinations[0]).toMatchObject({ key: '127.0.0.5:6379/tcp', end1: 100, live: 0 });
    expect(snap.destinations[0].lifetimeP50).toBeUndefined();
  });

  it('counts overflows and leaves resync ends out of the rates', () => {
    const engine = new ChurnEngine();
    engine.ingest([
      ev('new', 1, T0, { netns: 'lab' }),
      ev('new', 2, T0 + 1, { netns: 'lab' }),
      { event: 'overflow', time: T0 + 2, overflows: 1, netns: 'lab' },
      { event: 'overflow', time: T0 + 3, overflows: 2, netns: 'lab' },
    ]);
    expect(engine.overflows).toBe(2);
    const ended = engine.reconcile(new Set([2]), T0 + S);
    expect(ended).toMatchObject([{ id: 1, reason: 'resync', netns: 'lab' }]);
    const snap = engine.snapshot(T0 + 2 * S);
    expect(snap.netns).toBe('lab');
    expect(snap.overall.end1).toBe(0);
    expect(snap.overall.new10).toBe(1);
    expect(snap.live).toBe(1);
    expect(engine.drain(T0 + 3 * S)).toMatchObject([{ id: 2, reason: 'shutdown', netns: 'lab' }]);
  });

  it('measures growth from the live table when the kernel count is unknown, and from the kernel when known', () => {
    const engine = new ChurnEngine();
    // 100 NEW per second for 20 s, nothing ends
    const events = Array.from({ length: 2000 }, (_, i) => ev('new', i + 1, T0 + i * 10 * MS));
    engine.ingest(events);
    const snap = engine.snapshot(T0 + 20 * S);
    expect(snap.table.entries).toBeNull();
    expect(snap.table.growth).toBeCloseTo(100, 6);
    expect(snap.table.timeToFull).toBeNull();

    const kernel = new ChurnEngine();
    let last;
    for (let s = 0; s <= 10; s++) last = kernel.snapshot(T0 + s * S, { entries: 1000 + 250 * s, max: 65536 });
    expect(last!.table.growth).toBeCloseTo(250, 6);
    expect(last!.table.timeToFull).toBeCloseTo((65536 - 3500) / 250, 6);
    expect(last!.table.kernel).toEqual({});
  });

  it('keys IPv6 and portless destinations the documented way', () => {
    const engine = new ChurnEngine();
    engine.ingest([
      ev('new', 1, T0, { family: 'ipv6', src: '2001:db8::2', dst: '2001:db8::1', dport: 443 }),
      ev('new', 2, T0, { proto: 'icmp', dst: '10.0.0.9', sport: undefined, dport: undefined, icmp: { type: 8, code: 0, id: 1 } }),
    ]);
    const snap = engine.snapshot(T0 + S);
    expect(snap.destinations.map((d) => d.key)).toEqual(['10.0.0.9/icmp', '[2001:db8::1]:443/tcp']);
    expect(snap.protocols.map((p) => p.key)).toEqual(['icmp', 'tcp']);
  });

  it('stays bounded when a scan walks through 100 000 sources, and still finds the flood', () => {
    const engine = new ChurnEngine({ topK: 64, topN: 5 });
    const events: ConntrackEvent[] = [];
    for (let i = 0; i < 100_000; i++) {
      const t = T0 + i * 10; // 100 k/s of scan for 1 s
      events.push(ev('new', i + 1, t, { src: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, dst: '127.0.0.9', dport: 22 }));
      if (i % 4 === 0) events.push(ev('new', 1_000_000 + i, t, { src: '192.0.2.66', dst: '127.0.0.5' }));
    }
    feed(engine, events);
    const snap = engine.snapshot(T0 + S);
    expect(snap.sources).toHaveLength(5);
    expect(snap.sources[0].key).toBe('192.0.2.66');
    expect(snap.sources[0].new1).toBe(25_000);
    expect(snap.destinations.map((d) => d.key)).toEqual(['127.0.0.9:22/tcp', '127.0.0.5:6379/tcp']);
    expect(snap.live).toBe(125_000);
    expect(snap.sources[1].error).toBeGreaterThan(0);
  });
  it('counts a watched destination on its own after decoys evict it from the heavy hitters', () => {
    const engine = new ChurnEngine({ topK: 4, topN: 2 });
    const leak = '127.0.0.5:6379/tcp';
    let id = 1;
    const events: ConntrackEvent[] = [];
    // second 0: the leak alone (500/s), watched from the end of it
    for (let i = 0; i < 500; i++) events.push(ev('new', id++, T0 + i * 2 * MS, { state: 'TIME_WAIT' }));
    feed(engine, events);
    engine.watch([leak], T0 + S);
    // seconds 1..2: the leak goes on at 500/s, eight decoys at 1000/s each (twice its rate, so
    // that even filtered Space-Saving, which keeps a key heavier than the newcomers, lets them
    // have its slot) take every slot
    const more: ConntrackEvent[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = T0 + S + i * 2 * MS;
      more.push(ev('new', id++, t, { state: 'TIME_WAIT' }));
      for (let k = 0; k < 8; k++) for (let j = 0; j < 2; j++) more.push(ev('new', id++, t, { dst: `127.0.0.${20 + k}`, dport: 53, proto: 'udp' }));
    }
    feed(engine, more);
    const t = T0 + 3 * S;
    const snap = engine.snapshot(t);
    expect(snap.destinations.map((d) => d.key)).not.toContain(leak);
    const figures = engine.figures(t);
    const f = figures.get(leak)!;
    expect(f.rated).toBe(true);
    // exact since the watch began: 1000 new over 2 s
    expect(f.new10).toBe(500);
    expect(f.live).toBe(1500);
    expect(f.states).toEqual({ TIME_WAIT: 1500 });
    expect(figures.keys()).toContain(leak);
    // exact from the table, whatever the rates: the pile-up rule's candidates
    expect(figures.inState('TIME_WAIT', 1000)).toEqual([leak]);
    expect(figures.inState('TIME_WAIT', 1500)).toEqual([]);
    expect(figures.get('10.1.1.1:1/tcp')).toBeNull();
    // no longer watched: no rates any more, only the live counts
    engine.watch([], t);
    const g = engine.figures(t).get(leak)!;
    expect(g.live).toBe(1500);
    expect(engine.watching).toEqual([]);
  });
});

describe('NAT', () => {
  const dnat = (event: ConntrackEventKind, id: number, time: number, backend: string): ConntrackEvent => {
    const e = ev(event, id, time, { dst: '127.0.0.100', status: ['CONFIRMED', 'DST_NAT'] });
    e.reply = { src: backend, dst: e.src, sport: 6379, dport: e.sport };
    return e;
  };

  it('names the backend of a DNATed service address in its churn, the busiest one first', () => {
    const engine = new ChurnEngine();
    const events: ConntrackEvent[] = [];
    for (let i = 0; i < 30; i++) events.push(dnat('new', i + 1, T0 + i * MS, i % 3 === 0 ? '127.0.0.6' : '127.0.0.5'));
    engine.ingest(events);
    const d = engine.snapshot(T0 + 30 * MS).destinations[0];
    expect(d.key).toBe('127.0.0.100:6379/tcp');
    expect(d.backend).toBe('127.0.0.5:6379');
    expect(d.backends).toBe(2);
  });

  it('leaves untranslated destinations without a backend', () => {
    const engine = new ChurnEngine();
    engine.ingest([ev('new', 1, T0)]);
    expect(engine.snapshot(T0 + MS).destinations[0].backend).toBeUndefined();
  });

  it('puts the translated destination and source on the flow line', () => {
    const engine = new ChurnEngine();
    const [flowDnat] = engine.ingest([dnat('new', 1, T0, '127.0.0.5'), dnat('destroy', 1, T0 + MS, '127.0.0.5')]);
    expect(flowDnat.dst).toBe('127.0.0.100');
    expect(flowDnat.nat).toEqual({ dst: '127.0.0.5', dport: 6379 });
    const snat = ev('destroy', 2, T0 + 2 * MS, { src: '10.0.0.2', sport: 5555 });
    snat.reply = { src: '127.0.0.5', dst: '192.0.2.1', sport: 6379, dport: 40007 };
    const [flowSnat] = engine.ingest([snat]);
    expect(flowSnat.nat).toEqual({ src: '192.0.2.1', sport: 40007 });
    const [plain] = engine.ingest([ev('destroy', 3, T0 + 3 * MS)]);
    expect(plain.nat).toBeUndefined();
  });
});

describe('SNAT port use', () => {
  const masq = (event: ConntrackEventKind, id: number, time: number, port: number): ConntrackEvent => {
    const e = ev(event, id, time, { src: '10.1.0.2', sport: 50000 + id, dst: '10.2.0.5', dport: 80 });
    e.reply = { src: '10.2.0.5', dst: '10.2.0.1', sport: 80, dport: port };
    return e;
  };

  it('counts distinct translated source ports per (translated source, destination) against the range', () => {
    const engine = new ChurnEngine({ snatPortRange: { low: 40000, high: 40099 } });
    const events: ConntrackEvent[] = [];
    for (let i = 0; i < 60; i++) events.push(masq('new', i + 1, T0 + i * MS, 40000 + i));
    for (let i = 0; i < 10; i++) events.push(masq('destroy', i + 1, T0 + 100 * MS, 40000 + i));
    events.push(ev('new', 500, T0 + 101 * MS));
    engine.ingest(events);
    const v = engine.snapshot(T0 + 200 * MS).snat!;
    expect(v.range).toEqual({ low: 40000, high: 40099 });
    expect(v.complete).toBe(true);
    expect(v.pairs).toEqual([{ key: '10.2.0.1 → 10.2.0.5:80/tcp', src: '10.2.0.1', destination: '10.2.0.5:80/tcp', ports: 50, share: 0.5 }]);
  });

  it('frees the ports of flows a resync found gone, of a drain, and of a reused id (issue 16 item 4)', () => {
    const engine = new ChurnEngine({ snatPortRange: { low: 40000, high: 40099 } });
    const events: ConntrackEvent[] = [];
    for (let i = 0; i < 40; i++) events.push(masq('new', i + 1, T0 + i * MS, 40000 + i));
    engine.ingest(events);
    const ports = (t: number) => engine.snapshot(t).snat!.pairs[0]?.ports ?? 0;
    expect(ports(T0 + S)).toBe(40);
    // an overflow lost the DESTROYs of flows 1-30: the dump shows only 31-40, the resync ends the rest
    const present = new Set(Array.from({ length: 10 }, (_, i) => 31 + i));
    const ended = engine.reconcile(present, T0 + 2 * S);
    expect(ended.map((f) => f.reason)).toEqual(Array(30).fill('resync'));
    expect(ports(T0 + 2 * S)).toBe(10);
    // id 31 reused by another flow (its DESTROY lost too): the old port goes, the new one counts
    engine.ingest([masq('new', 31, T0 + 2 * S + MS, 40090)]);
    const v = engine.snapshot(T0 + 3 * S).snat!;
    expect(v.pairs[0].ports).toBe(10);
    // a DESTROY still frees its own port; a DESTROY of a flow never counted frees nothing
    engine.ingest([masq('destroy', 32, T0 + 3 * S + MS, 40031), masq('destroy', 999, T0 + 3 * S + MS, 40033)]);
    expect(ports(T0 + 4 * S)).toBe(9);
    engine.drain(T0 + 5 * S);
    const after = engine.snapshot(T0 + 5 * S).snat!;
    expect(after.pairs).toEqual([]);
    expect(after.complete).toBe(true);
  });

  it('counts the port of an entry first seen in a dump or by a late UPDATE', () => {
    const engine = new ChurnEngine({ snatPortRange: { low: 40000, high: 40099 } });
    engine.ingest([masq('snapshot', 1, T0, 40001), masq('update', 2, T0 + MS, 40002), masq('new', 1, T0 + 2 * MS, 40001)]);
    expect(engine.snapshot(T0 + S).snat!.pairs[0].ports).toBe(2);
  });

  it('has no SNAT view until a source-translated flow is seen', () => {
    const engine = new ChurnEngine();
    engine.ingest([ev('new', 1, T0)]);
    expect(engine.snapshot(T0 + MS).snat).toBeUndefined();
  });
});

describe('destination rows carry what their key is made of', () => {
  it('rows, figures of rated, watched and unrated keys: family, dst, dport, proto beside the key', () => {
    const e = new ChurnEngine({ topK: 2 });
    e.ingest([ev('new', 1, T0), ev('new', 2, T0 + MS, { family: 'ipv6', dst: '2001:db8::1', dport: 443 }), ev('new', 3, T0 + 2 * MS, { proto: 'icmp', dport: undefined, dst: '10.0.0.1' })]);
    const snap = e.snapshot(T0 + S);
    expect(snap.destinations.length).toBe(2);
    for (const d of snap.destinations) expect(destinationOf(d as Destination)).toBe(d.key);
    const figures = e.figures(T0 + S);
    expect(figures.get('127.0.0.5:6379/tcp')).toMatchObject({ family: 'ipv4', dst: '127.0.0.5', dport: 6379, proto: 'tcp' });
    // every key, whether it holds a heavy-hitter slot (topK 2) or only live flows in the table
    expect(figures.get('[2001:db8::1]:443/tcp')).toMatchObject({ family: 'ipv6', dst: '2001:db8::1', dport: 443, proto: 'tcp' });
    const icmp = figures.get('10.0.0.1/icmp')!;
    expect(icmp).toMatchObject({ family: 'ipv4', dst: '10.0.0.1', proto: 'icmp' });
    expect(icmp.dport).toBeUndefined();
    // a watched key counted before its first event: the table's flows say what it is
    e.watch(['127.0.0.5:6379/tcp'], T0 + S);
    expect(e.figures(T0 + S).get('127.0.0.5:6379/tcp')).toMatchObject({ dst: '127.0.0.5', dport: 6379 });
  });

  it('keeps a destination\'s figures whole when the flow table forgets its key under a scan and numbers another with it', () => {
    // B churns first, goes quiet while a scan walks through more destinations than the flow table
    // keeps idle (65 536), so B's key is forgotten and its number goes to a scanned destination;
    // then B comes back. Its figures must be those of an engine that saw B alone.
    const B = { dst: '127.0.0.9', dport: 6380 };
    const events: ConntrackEvent[] = [];
    let id = 1;
    let t = T0;
    const flow = (more: Partial<ConntrackEvent>) => {
      const n = id++;
      events.push(ev('new', n, t, { ...more, state: 'SYN_SENT' }));
      events.push(ev('destroy', n, t + 100, { ...more, state: 'CLOSE' }));
      t += 500;
    };
    // all live at once, so B's key falls idle once: the flow table forgets it after 65 536 others
    for (let i = 0; i < 2000; i++, t += 500) events.push(ev('new', id + i, t, { ...B, state: 'SYN_SENT' }));
    for (let i = 0; i < 2000; i++, t += 500) events.push(ev('destroy', id + i, t, { ...B, state: 'CLOSE' }));
    id += 2000;
    const scanFrom = events.length;
    for (let i = 0; i < 70_000; i++) flow({ dst: `127.1.${i >> 8}.${i & 255}`, dport: 1000 + (i % 7) });
    const backAt = events.length;
    for (let i = 0; i < 500; i++) flow(B);
    const end = t + S;

    const engine = new ChurnEngine();
    const key = destinationOf({ family: 'ipv4', dst: B.dst, dport: B.dport, proto: 'tcp' });
    feed(engine, events.slice(0, backAt));
    expect(engine.tracker.destinationNumberOf(key)).toBe(-1); // forgotten by the flow table
    feed(engine, events.slice(backAt));
    const alone = new ChurnEngine();
    feed(alone, [...events.slice(0, scanFrom), ...events.slice(backAt)]);

    const keys = engine.figures(end).keys();
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.filter((k) => k === key)).toHaveLength(1);
    const { error, ...figure } = engine.figures(end).get(key)!;
    const { error: aloneError, ...expected } = alone.figures(end).get(key)!;
    expect(aloneError).toBe(0);
    expect(error).toBe(0);
    expect(figure).toEqual(expected);
    expect(figure.new60 * 60).toBeCloseTo(2500 * (60 / Math.min(60, (Math.floor(end / S) * S - T0) / S)), 6);
  });
});
