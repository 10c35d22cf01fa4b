import { describe, expect, it } from 'vitest';
import type { ConntrackEvent, ConntrackEventKind } from '../../src/source/types.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import { AlertEvaluator, parseAlertConfig } from '../../src/alerts/index.js';

const S = 1_000_000;
const T0 = 1_700_000_000 * S;

function ev(event: ConntrackEventKind, id: number, time: number, more: Partial<ConntrackEvent> = {}): ConntrackEvent {
  const dst = more.dst ?? '10.96.0.10';
  return {
    event, time, id, family: 'ipv4', proto: 'udp', src: '127.0.1.1', dst, sport: 40000 + id, dport: 8125,
    reply: { src: dst, dst: '127.0.1.1', sport: 8125, dport: 40000 + id }, status: ['CONFIRMED'], ...more,
  };
}

describe('unreplied entries', () => {
  it('are counted per destination with stale, DNAT and oldest age; a reply takes a flow out', () => {
    const e = new ChurnEngine({ replies: true });
    const batch: ConntrackEvent[] = [];
    for (let i = 0; i < 10; i++) batch.push(ev('new', i, T0 + i * 100_000, { status: ['CONFIRMED', 'DST_NAT'], reply: { src: '10.244.1.7', dst: '127.0.1.1', sport: 8125, dport: 40000 + i } }));
    batch.push(ev('new', 100, T0, { dst: '127.0.0.6', status: ['CONFIRMED'] }));
    batch.push(ev('new', 101, T0 + 8 * S, { dst: '127.0.0.6' }));
    // answered: SEEN_REPLY comes with an UPDATE
    batch.push(ev('new', 200, T0, { dst: '127.0.0.7' }), ev('update', 200, T0 + 1000, { dst: '127.0.0.7', status: ['CONFIRMED', 'SEEN_REPLY'] }));
    e.ingest(batch);
    const u = e.snapshot(T0 + 10 * S).unreplied!;
    expect(u).toMatchObject({ total: 12, stale: 11, staleAfter: 5, complete: true });
    expect(u.destinations).toEqual([
      { key: '10.96.0.10:8125/udp', unreplied: 10, stale: 10, dnat: 10, oldestAge: 10 },
      { key: '127.0.0.6:8125/udp', unreplied: 2, stale: 1, dnat: 0, oldestAge: 10 },
    ]);
  });

  it('are not reported without UPDATE events: every flow would look unreplied', () => {
    const e = new ChurnEngine();
    e.ingest([ev('new', 1, T0)]);
    expect(e.snapshot(T0 + 10 * S).unreplied).toBeUndefined();
    // a replay learns from the first UPDATE that replies are seen
    e.ingest([ev('update', 1, T0 + 11 * S, { status: ['CONFIRMED'] })]);
    expect(e.snapshot(T0 + 12 * S).unreplied?.total).toBe(1);
  });

  it('unreplied_pileup fires on stale entries, names the DNAT, and resolves when they go', () => {
    const e = new ChurnEngine({ replies: true });
    const config = parseAlertConfig('rules:\n  unreplied_pileup:\n    threshold: 5\n    for: 0s\n    resolve_for: 0s\n');
    const evaluator = new AlertEvaluator(config);
    const flows = Array.from({ length: 8 }, (_, i) => ev('new', i, T0, { status: ['CONFIRMED', 'DST_NAT'] }));
    e.ingest(flows);
    expect(evaluator.evaluate(e.snapshot(T0 + 2 * S)).filter((a) => a.rule === 'unreplied_pileup')).toEqual([]);
    const [fired] = evaluator.evaluate(e.snapshot(T0 + 6 * S)).filter((a) => a.rule === 'unreplied_pileup');
    expect(fired).toMatchObject({ event: 'alert', subject: '10.96.0.10:8125/udp', values: { value: 8, dnat: 8, unreplied: 8 } });
    expect(fired.message).toContain('8 entries to 10.96.0.10:8125/udp unreplied for over 5 s (DNATed: 8 of them; the backend may be gone), oldest 6 s');
    e.ingest(flows.map((f) => ({ ...f, event: 'destroy' as const, time: T0 + 7 * S })));
    const resolved = evaluator.evaluate(e.snapshot(T0 + 8 * S)).filter((a) => a.rule === 'unreplied_pileup');
    expect(resolved.map((a) => a.event)).toEqual(['resolved']);
    // the hint is built from the destination's parts, still known once its entries are gone
    expect(fired.hint).toBe('conntrack -L -p udp -d 10.96.0.10 --dport 8125');
    expect(resolved[0].hint).toBe(fired.hint);
  });
});

describe('conntrack zones', () => {
  it('live entries and churn per zone, once a zone other than 0 is seen', () => {
    const e = new ChurnEngine();
    e.ingest([ev('new', 1, T0), ev('new', 2, T0 + 1000)]);
    expect(e.snapshot(T0 + S).zones).toBeUndefined();
    e.ingest([ev('new', 3, T0 + S + 1000, { zone: 7 }), ev('new', 4, T0 + S + 2000, { zone: 7 }), ev('new', 5, T0 + S + 3000, { zone: 7 }), ev('destroy', 3, T0 + S + 4000, { zone: 7 })]);
    const zones = e.snapshot(T0 + 2 * S).zones!;
    // by live entries, then new ones
    expect(zones.map((z) => [z.key, z.live, z.new1, z.end1])).toEqual([['7', 2, 3, 1], ['0', 2, 0, 0]]);
  });
});
