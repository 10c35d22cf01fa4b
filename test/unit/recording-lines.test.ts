import { describe, expect, it } from 'vitest';
import { LineBuffer } from '../../src/recording/line-buffer.js';
import { FLOW_FIELDS, parseLine, toLine, writeRecord } from '../../src/recording/schema.js';
import { formatMicros, formatNanos } from '../../src/recording/time.js';
import { ianaKeyword, isoFromMicros, isoFromNanos, protoNumber as formatsProtoNumber } from '../../src/formats/common.js';
import { protoName, protoNumber } from '../../src/source/names.js';
import type { FlowEnd } from '../../src/flow/types.js';

const T = 1_795_619_255_641_322;

/** What the schema says a flow line is: `v`, `event`, `time`, then the record's fields, times as RFC 3339. */
function expected(f: FlowEnd): unknown {
  const { event, time, ...rest } = f as unknown as Record<string, unknown>;
  rest.begin = formatMicros(rest.begin as number);
  return JSON.parse(JSON.stringify({ v: 1, event, time: formatMicros(time as number), ...rest }));
}

const base: FlowEnd = {
  event: 'flow', time: T, id: 4_294_967_295, family: 'ipv4', proto: 'tcp', src: '127.0.0.1', dst: '127.0.0.5',
  sport: 40_000, dport: 6379, begin: T - 1_500_000, duration: 1.5, clock: 'collector', preexisting: false,
  assured: true, replied: true, reason: 'destroy',
};
const flows: Record<string, FlowEnd> = {
  minimal: base,
  everything: {
    ...base, open: 0.000123, state: 'TIME_WAIT', orig: { packets: 6, bytes: 360 }, reply: { packets: 4, bytes: 2_000_000_000_000 },
    mark: 0, zone: 7, netns: 'prod "eu"\n\u00e9', process: { pid: 4121, comm: 'api-wörker', exe: '/usr/bin/x', uid: 0, user: 'root', cgroup: '/a', unit: 'a.service' },
    nat: { src: '192.0.2.1', sport: 40001, dst: '127.0.0.5', dport: 6379 },
  },
  icmp6: {
    ...base, family: 'ipv6', proto: 'icmpv6', src: '2001:db8::1', dst: 'fe80::1', sport: undefined, dport: undefined,
    icmp: { type: 128, code: 0, id: 65535 }, duration: 0, clock: 'kernel', preexisting: true, process: null, unattributed: 'unsupported', reason: 'resync',
  },
  odd: { ...base, id: 0, duration: Number.NaN, begin: 0, time: 1 },
};
for (const f of Object.values(flows)) for (const k of Object.keys(f)) if ((f as never)[k] === undefined) delete (f as never as Record<string, unknown>)[k];

describe('flow lines', () => {
  it('hold the same JSON as the record with its times written out, fields in schema order', () => {
    for (const [name, f] of Object.entries(flows)) {
      const line = toLine(f);
      expect(JSON.parse(line), name).toEqual(expected(f));
      const keys = Object.keys(JSON.parse(line)).slice(1);
      const order = keys.map((k) => FLOW_FIELDS[k as keyof typeof FLOW_FIELDS]);
      expect(order, name).toEqual([...order].sort((a, b) => a - b));
    }
  });

  it('read back into the record', () => {
    for (const [name, f] of Object.entries(flows)) {
      if (name === 'odd') continue; // NaN is written as null, as JSON.stringify writes it
      expect(parseLine(toLine(f), 'f', 1), name).toEqual(f);
    }
  });

  it('copy the parts flows share only when they are the same (one process, marks, reasons, states)', () => {
    // one process object for all, as attribution shares it; the fields after the times vary
    const proc = { pid: 7, comm: 'redis-pool', uid: 1000, user: 'app', exe: '/usr/bin/x', cgroup: '/a', unit: 'a.service' };
    const states = [undefined, 'TIME_WAIT', 'CLOSE', 'ESTABLISHED'] as const;
    const reasons = ['destroy', 'resync', 'shutdown'] as const;
    const why = [undefined, 'not-local', 'no-stamp', 'ambiguous'] as const;
    let seed = 7;
    const pick = <T>(xs: readonly T[]): T => xs[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % xs.length];
    for (let i = 0; i < 600; i++) {
      const owned = pick([true, true, false]);
      const f: FlowEnd = {
        ...base, id: i, state: pick(states), reason: pick(reasons), assured: pick([true, false]), replied: pick([true, false]),
        preexisting: pick([true, false]), clock: pick(['kernel', 'collector'] as const), mark: pick([undefined, 0, 1, i]),
        zone: pick([undefined, 3]), netns: pick([undefined, 'lab']),
        // a settled process's flows among new processes' (one object each, as while being enriched)
        ...(owned ? { process: pick([proc, proc, { ...proc, pid: 1000 + i }]) } : { process: pick([null, undefined]), unattributed: pick(why) }),
      };
      for (const k of Object.keys(f)) if ((f as never)[k] === undefined) delete (f as never as Record<string, unknown>)[k];
      expect(JSON.parse(toLine(f)), `flow ${i}`).toEqual(expected(f));
    }
  });

  it('write every field a flow end can have', () => {
    const keys = Object.keys(JSON.parse(toLine(flows.everything)));
    for (const k of Object.keys(FLOW_FIELDS)) if (k !== 'icmp' && k !== 'event' && k !== 'unattributed') expect(keys, k).toContain(k);
    expect(Object.keys(JSON.parse(toLine(flows.icmp6)))).toContain('icmp');
    expect(Object.keys(JSON.parse(toLine(flows.icmp6)))).toContain('unattributed');
  });
});

describe('LineBuffer', () => {
  it('writes numbers as JSON.stringify does', () => {
    const w = new LineBuffer();
    const values = [0, -0, 7, 9, 10, 99, 100, 4_294_967_295, -5, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 1e21, 0.1, 1.5, -2.25e-7, 123456.789, Number.NaN, Infinity];
    for (const v of values) {
      w.number(v);
      expect(w.takeString()).toBe(JSON.stringify(v));
    }
  });

  it('writes a whole number of µs as seconds exactly as JSON.stringify does, and anything else too', () => {
    const w = new LineBuffer();
    const values = [0, -0, 1e-6, 2e-6, 0.000013, 0.1, 0.5, 1, 1.5, 59.999999, 86_400.000001, 4_294_967_295.999999, 2 ** 32, 2 ** 33 + 0.5,
      1 / 3, 1e-7, 2.5e-7, -0.000013, 123456.789, Number.NaN, Infinity, 1e21];
    let seed = 1;
    for (let i = 0; i < 20_000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      // durations from µs times of every size: a few µs to 2^32 s
      const us = Math.floor((seed / 2 ** 31) ** 4 * 4_294_967_296e6);
      values.push(us / 1e6, (us % 1_000_000) / 1e6);
    }
    for (const v of values) {
      w.micro(v);
      expect(w.takeString(), String(v)).toBe(JSON.stringify(v));
    }
  });

  it('writes strings as JSON.stringify does, cached or not', () => {
    const w = new LineBuffer();
    for (const s of ['', 'a', 'quote " and \\ backslash', 'line\nbreak\t\u0001', 'é ü 日本', '😀', 'lone \ud800 surrogate']) {
      w.string(s);
      w.string(s);
      w.stringOnce(s);
      const j = JSON.stringify(s);
      expect(w.takeString()).toBe(j + j + j);
    }
  });

  it('writes times as time.ts formats them', () => {
    const w = new LineBuffer();
    for (const us of [0, 1, T, T + 0.9, 253_402_300_799_999_999, -1]) {
      w.micros(us);
      expect(w.takeString()).toBe(formatMicros(us));
    }
    for (const ns of [0, 1_000_000_002, 1_795_619_255_000_000_000, 1_795_619_255_999_999_999]) {
      w.nanos(ns);
      expect(w.takeString()).toBe(formatNanos(ns));
    }
  });

  it('hands over views that later writes never touch, across a full arena', () => {
    const w = new LineBuffer(64);
    const taken: [Buffer, string][] = [];
    for (let i = 0; i < 50; i++) {
      const rec = { event: 'overflow', time: T + i, overflows: i };
      writeRecord(w, rec);
      taken.push([w.take(), `${toLine(rec)}\n`]);
    }
    for (const [bytes, text] of taken) expect(bytes.toString()).toBe(text);
    writeRecord(w, flows.everything);
    expect(w.length).toBeGreaterThan(64);
    expect(w.take().toString()).toBe(`${toLine(flows.everything)}\n`);
  });
});

describe('one time formatter, one protocol table', () => {
  it('the formats render times with the recording schema\'s function', () => {
    expect(isoFromMicros(T)).toBe(formatMicros(T));
    expect(isoFromNanos(1_795_619_255_641_322_600)).toBe(formatMicros(1_795_619_255_641_323));
  });

  it('names and numbers agree in both directions, igmp included', () => {
    for (let n = 0; n < 256; n++) {
      expect(protoNumber(protoName(n))).toBe(n);
      expect(formatsProtoNumber(protoName(n))).toBe(n);
    }
    expect(protoName(2)).toBe('igmp');
    expect(formatsProtoNumber('igmp')).toBe(2);
    expect(ianaKeyword(58)).toBe('ipv6-icmp');
    expect(ianaKeyword(2)).toBe('igmp');
    for (const bad of ['', ' 6', '0x6', '256', '-1', 'tcp6']) expect(protoNumber(bad), bad).toBeUndefined();
  });
});
