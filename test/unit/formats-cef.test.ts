import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cefLine, escapeCefHeader, escapeCefValue } from '../../src/formats/cef.js';
import type { FormatOptions, SinkRecord } from '../../src/formats/common.js';

const fx = (p: string) => readFileSync(new URL(`../fixtures/formats/${p}`, import.meta.url), 'utf8');
const records = JSON.parse(fx('records.json')) as Record<string, SinkRecord>;
const options = JSON.parse(fx('options.json')) as FormatOptions;
const expected = Object.fromEntries(
  fx('cef.txt').split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]),
);

/** A minimal CEF parser, written from the spec, to check the escaping round-trips. */
function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  const header: string[] = [];
  let cur = '';
  let i = 0;
  for (; i < line.length && header.length < 7; i++) {
    const c = line[i];
    if (c === '\\' && (line[i + 1] === '|' || line[i + 1] === '\\')) cur += line[++i];
    else if (c === '|') { header.push(cur); cur = ''; }
    else cur += c;
  }
  const rest = line.slice(i);
  const ext: Record<string, string> = {};
  const re = /(?:^| )([A-Za-z0-9_]+)=((?:\\.|[^\\=])*?)(?= [A-Za-z0-9_]+=|$)/g;
  for (const m of rest.matchAll(re)) {
    ext[m[1]] = m[2].replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
  }
  return { header, ext };
}

describe('CEF', () => {
  for (const name of Object.keys(expected)) {
    it(`${name} matches the written-out line`, () => {
      expect(cefLine(records[name], options)).toBe(expected[name]);
    });
  }

  it('escapes header and extension values', () => {
    expect(escapeCefHeader('a|b\\c\nd')).toBe('a\\|b\\\\c d');
    expect(escapeCefValue('a=b\\c\nd\re|f')).toBe('a\\=b\\\\c\\nd\\re|f');
  });

  it('round-trips hostile alert text through a parser', () => {
    const alert = {
      ...(records.alert as any),
      rule: 'odd|rule\\x',
      message: 'line one\nline two = x | y \\ z',
      hint: 'a=b c=d',
    };
    const line = cefLine(alert, options);
    expect(line).not.toContain('\n');
    const { header, ext } = parseCef(line);
    expect(header[0]).toBe('CEF:0');
    expect(header[4]).toBe('alert:odd|rule\\x');
    expect(header[6]).toBe('6');
    expect(ext.msg).toBe('line one\nline two = x | y \\ z');
    expect(ext.cs6).toBe('a=b c=d');
    expect(ext.dvchost).toBe('gw1.example.net');
  });

  it('severity: critical 9, info 3, resolved 1', () => {
    const a = records.alert as any;
    expect(cefLine({ ...a, severity: 'critical' }).split('|')[6]).toBe('9');
    expect(cefLine({ ...a, severity: 'info' }).split('|')[6]).toBe('3');
    expect(cefLine(records.resolved).split('|')[6]).toBe('1');
  });

  it('other records carry their fields as JSON in msg', () => {
    const { header, ext } = parseCef(cefLine(records.overflow));
    expect(header[4]).toBe('overflow');
    expect(JSON.parse(ext.msg)).toEqual({ overflows: 3 });
    expect(ext.rt).toBe('1700000050000');
  });
});
