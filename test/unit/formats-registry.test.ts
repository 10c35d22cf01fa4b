import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FORMAT_NAMES, formatFor, recordKind } from '../../src/formats/index.js';
import type { FormatOptions, SinkRecord } from '../../src/formats/index.js';
import { parseLine, toLine } from '../../src/recording/schema.js';

const fx = (p: string) => JSON.parse(readFileSync(new URL(`../fixtures/formats/${p}`, import.meta.url), 'utf8'));
const records = fx('records.json') as Record<string, SinkRecord>;
const options = fx('options.json') as FormatOptions;

describe('formatFor', () => {
  it('jsonl is the native record, as the recording schema writes it', () => {
    const f = formatFor();
    expect(f(records.udp4_flow)).toBe(toLine(records.udp4_flow as never));
    const line = JSON.parse(f(records.udp4_flow));
    expect(line).toMatchObject({ v: 1, event: 'flow', time: '2023-11-14T22:13:25.500000Z', begin: '2023-11-14T22:13:25.000000Z' });
    expect(parseLine(f(records.udp4_flow), 'sink', 1)).toEqual(records.udp4_flow);
  });

  it('every format gives one line for every kind of record', () => {
    for (const name of FORMAT_NAMES) {
      const f = formatFor(name, options);
      for (const [key, rec] of Object.entries(records)) {
        const line = f(rec);
        expect(line, `${name}/${key}`).not.toMatch(/[\r\n]/);
        expect(line.length).toBeGreaterThan(10);
        if (name !== 'cef') expect(() => JSON.parse(line)).not.toThrow();
      }
    }
    const messy = { ...(records.alert as any), message: 'a\nb\r\nc' };
    for (const name of FORMAT_NAMES) expect(formatFor(name)(messy)).not.toMatch(/[\r\n]/);
  });

  it('json formats carry the written-out documents', () => {
    expect(JSON.parse(formatFor('ecs', options)(records.tcp4_destroy))).toEqual(fx('ecs/tcp4_destroy.json'));
    expect(JSON.parse(formatFor('ocsf', options)(records.tcp4_destroy))).toEqual(fx('ocsf/tcp4_destroy.json'));
  });

  it('classifies records', () => {
    expect(recordKind(records.tcp6_new)).toBe('conntrack');
    expect(recordKind(records.udp4_flow)).toBe('flow');
    expect(recordKind(records.alert)).toBe('alert');
    expect(recordKind(records.resolved)).toBe('alert');
    expect(recordKind(records.overflow)).toBe('other');
    expect(recordKind({ event: 'snapshot_done', time: 1, entries: 3 })).toBe('other');
  });

  it('rejects unknown names', () => {
    expect(() => formatFor('xml' as any)).toThrow(/unknown format/);
  });
});
