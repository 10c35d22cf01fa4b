import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventLine, eventRecord, parseLine, toLine, RecordingError } from '../../src/recording/schema.js';
import { formatMicros, formatNanos, parseMicros, parseNanos } from '../../src/recording/time.js';
import { RecordingSource } from '../../src/recording/input.js';
import { ipv6 } from '../../src/source/address.js';
import type { ConntrackEvent } from '../../src/source/types.js';

const tcp: ConntrackEvent = {
  event: 'destroy', time: 1795619255641322, id: 3834222225, family: 'ipv4', proto: 'tcp',
  src: '127.0.1.7', dst: '127.0.0.5', sport: 51662, dport: 6379,
  reply: { src: '127.0.0.5', dst: '127.0.1.7', sport: 6379, dport: 51662, packets: 5, bytes: 300 },
  state: 'TIME_WAIT', status: ['SEEN_REPLY', 'ASSURED', 'CONFIRMED'], mark: 7, zone: 2,
  orig: { packets: 6, bytes: 360 }, start: 1795619255000000000, end: 1795619256500000000, netns: 'demo "x"',
};
const icmp6: ConntrackEvent = {
  event: 'new', time: 1795619255641399, id: 1, family: 'ipv6', proto: 'icmpv6', src: '::1', dst: '::1',
  icmp: { type: 128, code: 0, id: 77 }, reply: { src: '::1', dst: '::1', icmp: { type: 129, code: 0, id: 77 } },
  status: [], timeout: 30,
};

describe('JSONL schema v1', () => {
  it('the text-built line equals JSON.stringify of the schema record, field for field and in order', () => {
    for (const e of [tcp, icmp6]) expect(eventLine(e)).toBe(JSON.stringify(eventRecord(e)));
  });

  it('writes the documented fields', () => {
    const o = JSON.parse(toLine(tcp));
    expect(Object.keys(o)).toEqual(['v', 'event', 'time', 'id', 'family', 'proto', 'src', 'dst', 'sport', 'dport', 'reply', 'state', 'status', 'mark', 'zone', 'orig', 'start', 'end', 'netns']);
    expect(o.v).toBe(1);
    expect(o.time).toBe(`${new Date(1795619255000).toISOString().slice(0, 19)}.641322Z`);
    expect(o.start).toMatch(/\.000000000Z$/);
    expect(o.end).toMatch(/\.500000000Z$/);
  });

  it('reads back exactly what it wrote', () => {
    for (const e of [tcp, icmp6]) {
      const back = parseLine(toLine(e), 'f', 1) as ConntrackEvent;
      expect(back).toEqual(e);
    }
  });

  it('derived records keep their fields and get RFC 3339 times', () => {
    const line = toLine({ event: 'overflow', time: 1795619255641322, overflows: 3 });
    expect(JSON.parse(line)).toEqual({ v: 1, event: 'overflow', time: formatMicros(1795619255641322), overflows: 3 });
    expect(parseLine(line, 'f', 1)).toEqual({ event: 'overflow', time: 1795619255641322, overflows: 3 });
  });

  it('rejects malformed lines with the line number and the reason', () => {
    expect(() => parseLine('{nope', 'rec.jsonl', 7)).toThrow(/^rec\.jsonl:7: not JSON/);
    expect(() => parseLine('{"v":2,"event":"new","time":"2026-01-01T00:00:00Z"}', 'r', 3)).toThrow(/r:3: schema version 2/);
    expect(() => parseLine('{"v":1,"event":"new","time":"yesterday"}', 'r', 4)).toThrow(/r:4: 'time' is not an RFC 3339/);
    expect(() => parseLine('{"v":1,"event":"new","time":"2026-01-01T00:00:00Z","id":1}', 'r', 5)).toThrow(/r:5: new event without 'src'/);
    expect(() => parseLine('[]', 'r', 6)).toThrow(RecordingError);
  });

  it('times round-trip at µs and ns precision', () => {
    expect(parseMicros(formatMicros(1795619255000001))).toBe(1795619255000001);
    expect(formatMicros(0)).toBe('1970-01-01T00:00:00.000000Z');
    expect(parseNanos('1970-01-01T00:00:01.000000002Z')).toBe(1000000002);
    expect(formatNanos(1000000002)).toBe('1970-01-01T00:00:01.000000002Z');
    expect(parseMicros('2026-11-25T16:00:00.5+01:00')).toBe(Date.parse('2026-11-25T15:00:00Z') * 1000 + 500000);
  });

  it('formats IPv6 per RFC 5952', () => {
    const b = (hex: string) => Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
    expect(ipv6(b('00000000000000000000000000000001'), 0)).toBe('::1');
    expect(ipv6(b('20010db8000000000001000000000001'), 0)).toBe('2001:db8::1:0:0:1');
    expect(ipv6(b('20010db8000100000000000000000000'), 0)).toBe('2001:db8:1::');
    expect(ipv6(b('00000000000000000000ffff7f000001'), 0)).toBe('::ffff:127.0.0.1');
    expect(ipv6(b('20010db8000100020003000400050006'), 0)).toBe('2001:db8:1:2:3:4:5:6');
  });
});

describe('recording source', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-rec-'));

  it('yields the events in order, in batches, and hands derived records aside', async () => {
    const file = join(dir, 'a.jsonl');
    const lines = [toLine(tcp), toLine({ event: 'churn', time: tcp.time, live: 1 }), toLine(icmp6), toLine({ event: 'overflow', time: tcp.time + 1, overflows: 1 })];
    writeFileSync(file, `${lines.join('\n')}\n`);
    const others: unknown[] = [];
    const src = new RecordingSource(file, { batchSize: 2, onOther: (r) => others.push(r) });
    const batches = [];
    for await (const b of src) batches.push(b);
    expect(batches.map((b) => b.map((e) => e.event))).toEqual([['destroy', 'new'], ['overflow']]);
    expect(others).toHaveLength(1);
    expect(src.counters).toMatchObject({ events: 2, overflows: 1, batches: 2 });
  });

  it('stops at a malformed line with its number, or skips and counts it when asked', async () => {
    const file = join(dir, 'b.jsonl');
    writeFileSync(file, `${toLine(tcp)}\nthis is not json\n${toLine(icmp6)}\n`);
    await expect(async () => {
      for await (const _ of new RecordingSource(file)) void _;
    }).rejects.toThrow(/b\.jsonl:2: not JSON/);
    const skip = new RecordingSource(file, { onError: 'skip' });
    let n = 0;
    for await (const b of skip) n += b.length;
    expect(n).toBe(2);
    expect(skip.counters.decodeErrors).toBe(1);
  });

  it('says clearly when the file is missing', async () => {
    await expect(new RecordingSource(join(dir, 'missing.jsonl')).check()).rejects.toThrow(/cannot read recording .*missing\.jsonl: no such file/);
  });
});
