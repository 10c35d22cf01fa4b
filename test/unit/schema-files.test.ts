/**
 * schema/v1/*.json: every record kind the encoder can write has a schema, the files are what
 * scripts/schema-v1.mjs writes, and lines made by the one encoder (src/recording/schema.ts) from
 * the format fixtures and the valid recording fixture validate. The kernel test
 * (test/kernel/schema.test.ts) checks a real recording and live `stats`/`doctor --json` output.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { toLine, type AnyRecord } from '../../src/recording/schema.js';
import { ROOT } from '../helpers/netns.js';
import { SCHEMA_DIR, invalid, schemas } from '../helpers/schemas.js';

const records = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/formats/records.json'), 'utf8')) as Record<string, AnyRecord>;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : [],
  );
}

/** Every `event: 'kind'` (or `'a' | 'b'`) in src/, and the conntrack kinds of ConntrackEventKind. */
function kindsInSource(): Map<string, string> {
  const kinds = new Map<string, string>();
  for (const file of sources(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const found = [...text.matchAll(/\bevent: ((?:'[a-z_]+'(?: \| )?)+)/g)].map((m) => m[1]);
    const ct = /type ConntrackEventKind = ([^;]+);/.exec(text);
    if (ct) found.push(ct[1]);
    for (const union of found) for (const m of union.matchAll(/'([a-z_]+)'/g)) kinds.set(m[1], relative(ROOT, file));
  }
  return kinds;
}

describe('schema/v1', () => {
  it('has a schema file for every record kind the source can write', () => {
    const kinds = kindsInSource();
    // the scan must see the kinds we know of, or it is not scanning what it should
    for (const k of ['new', 'update', 'destroy', 'snapshot', 'overflow', 'snapshot_done', 'flow', 'resync', 'churn', 'alert', 'resolved', 'doctor']) {
      expect(kinds.has(k), k).toBe(true);
    }
    const missing = [...kinds].filter(([k]) => !schemas().has(k)).map(([k, f]) => `${k} (${f})`);
    expect(missing, 'record kinds without schema/v1/KIND.json').toEqual([]);
  });

  it('is what scripts/schema-v1.mjs writes (run it after changing a record)', async () => {
    const gen = (await import(join(ROOT, 'scripts/schema-v1.mjs'))) as { SCHEMAS: Record<string, unknown>; render: (s: unknown) => string };
    const onDisk = readdirSync(SCHEMA_DIR).filter((n) => n.endsWith('.json')).sort();
    expect(onDisk).toEqual(Object.keys(gen.SCHEMAS).map((k) => `${k}.json`).sort());
    for (const [k, s] of Object.entries(gen.SCHEMAS)) expect(readFileSync(join(SCHEMA_DIR, `${k}.json`), 'utf8'), k).toBe(gen.render(s));
  });

  it('every file is a draft 2020-12 schema with v const 1 and its kind as event', () => {
    for (const [kind] of schemas()) {
      const s = JSON.parse(readFileSync(join(SCHEMA_DIR, `${kind}.json`), 'utf8'));
      expect(s.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(s.properties.v).toEqual({ const: 1 });
      expect(s.properties.event).toEqual({ const: kind });
    }
  });

  it('validates the encoder\'s lines of the format fixtures (every conntrack, flow, alert kind)', () => {
    for (const [name, rec] of Object.entries(records)) {
      const line = JSON.parse(toLine(rec));
      expect(invalid(line), name).toBe('');
    }
  });

  it('validates the valid recording fixture line for line', () => {
    const lines = readFileSync(join(ROOT, 'test/fixtures/bad-input/valid.jsonl'), 'utf8').split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const [i, l] of lines.entries()) expect(invalid(JSON.parse(l)), `valid.jsonl:${i + 1}`).toBe('');
  });

  it('validates resync, snapshot_done (also failed) and a flow with a process', () => {
    const t = 1_700_000_000_000_000;
    const extra: AnyRecord[] = [
      { event: 'resync', time: t, vanished: 3, appeared: 1, entries: 40, overflows: 2, rcvbuf: 67108864, netns: 'prod' },
      { event: 'resync', time: t, vanished: 0, appeared: 0, entries: 10, overflows: 1, rcvbuf: 67108864, failed: 16 },
      { event: 'snapshot_done', time: t, entries: 12 },
      { event: 'snapshot_done', time: t, entries: 5, failed: 16, netns: 'prod' },
      { ...records.udp4_flow, process: { pid: 4121, comm: 'api-worker', tid: 4122, uid: 1000, user: 'app', exe: '/usr/bin/api', cgroup: '/system.slice/api.service', unit: 'api.service', side: 'origin' } },
      { ...records.udp4_flow, process: null, unattributed: 'gone' },
      { ...records.udp4_flow, nat: { dst: '10.0.0.80', dport: 8080 } },
    ];
    for (const rec of extra) expect(invalid(JSON.parse(toLine(rec))), JSON.stringify(rec)).toBe('');
  });

  it('rejects what the closed encoders never write, and a wrong version', () => {
    const destroy = JSON.parse(toLine(records.tcp4_destroy));
    expect(invalid({ ...destroy, extra: 1 })).toMatch(/additional/);
    expect(invalid({ ...destroy, v: 2 })).toMatch(/\/v /);
    expect(invalid({ ...destroy, time: '2026-11-25T15:04:05Z' })).toMatch(/\/time /);
    expect(invalid({ ...destroy, status: ['SEEN_REPLY', 'BOGUS'] })).toMatch(/\/status\/1 /);
    const flow = JSON.parse(toLine(records.udp4_flow));
    expect(invalid({ ...flow, reason: 'gone' })).toMatch(/\/reason /);
    expect(invalid({ event: 'nonsuch' })).toMatch(/no schema/);
  });
});
