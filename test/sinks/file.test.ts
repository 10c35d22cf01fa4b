/** The file sink: JSONL, rotation by size and time, gzip of rotated files, reopen(), mode 0600. */
import { chmodSync, chownSync, linkSync, mkdtempSync, writeFileSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatFor } from '../../src/formats/index.js';
import { FileTransport } from '../../src/sinks/file.js';
import { DeliverySink } from '../../src/sinks/sink.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-file-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const rec = (i: number) => ({ event: 'overflow', time: 1_700_000_000_000_000 + i, overflows: i });

function lines(text: string): number[] {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l).overflows);
}

function allRecords(): number[] {
  const out: number[] = [];
  const files = readdirSync(dir).sort();
  // rotated files first (names sort by time), the live file last
  for (const f of [...files.filter((f) => f !== 'ct.jsonl'), 'ct.jsonl']) {
    const p = join(dir, f);
    try {
      const buf = readFileSync(p);
      out.push(...lines(f.endsWith('.gz') ? gunzipSync(buf).toString('utf8') : buf.toString('utf8')));
    } catch {
      // no live file yet
    }
  }
  return out;
}

describe('file sink', () => {
  it('writes JSONL, rotates by size, gzips rotated files, keeps max_files, creates 0600', async () => {
    const t = new FileTransport({ path: join(dir, 'ct.jsonl'), maxBytes: 400, gzip: true, maxFiles: 3 });
    const s = new DeliverySink(t, { name: 'file', format: formatFor('jsonl'), batch: { maxRecords: 5, maxWaitMs: 0 } });
    for (let i = 0; i < 40; i++) {
      s.write(rec(i));
      if (i % 5 === 4) expect(await s.flush(2000)).toBe(true);
    }
    await t.settle();
    const files = readdirSync(dir).sort();
    const rotated = files.filter((f) => f.endsWith('.gz'));
    expect(rotated.length).toBe(3); // older ones pruned
    expect(files.filter((f) => /\.\d{8}T\d{9}Z(-\d+)?$/.test(f))).toEqual([]); // none left uncompressed
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    for (const f of rotated) expect(statSync(join(dir, f)).size).toBeGreaterThan(0);
    const got = allRecords();
    // the newest records, in order, none duplicated
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => 40 - got.length + i));
    expect(statSync(join(dir, 'ct.jsonl')).size).toBeLessThanOrEqual(400);
    await s.close();
  });

  it('rotates on UTC-aligned time boundaries', async () => {
    let now = Date.UTC(2024, 0, 1, 10, 59, 0);
    const t = new FileTransport({ path: join(dir, 'ct.jsonl'), intervalMs: 3_600_000, now: () => now });
    await t.send([JSON.stringify(rec(1))]);
    now += 30_000; // 10:59:30 same hour
    await t.send([JSON.stringify(rec(2))]);
    now += 60_000; // 11:00:30: a new hour
    await t.send([JSON.stringify(rec(3))]);
    await t.close();
    const files = readdirSync(dir).sort();
    expect(files).toEqual(['ct.jsonl', 'ct.jsonl.20240101T110030000Z']);
    expect(lines(readFileSync(join(dir, files[1]), 'utf8'))).toEqual([1, 2]);
    expect(lines(readFileSync(join(dir, 'ct.jsonl'), 'utf8'))).toEqual([3]);
  });

  it('a rotated file that cannot be compressed is kept and the failure is logged, not swallowed', async () => {
    let now = Date.UTC(2024, 0, 1, 10, 59, 0);
    const said: { obj: Record<string, unknown>; msg?: string }[] = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (obj: object, msg?: string) => said.push({ obj: obj as Record<string, unknown>, msg }) };
    const t = new FileTransport({ path: join(dir, 'ct.jsonl'), intervalMs: 3_600_000, gzip: true, now: () => now, logger });
    await t.send([JSON.stringify(rec(1))]);
    linkSync(join(dir, 'ct.jsonl'), join(dir, 'elsewhere')); // a second link: gzip refuses to read it
    now += 90_000;
    await t.send([JSON.stringify(rec(2))]);
    await t.settle();
    await t.close();
    const rotated = join(dir, 'ct.jsonl.20240101T110030000Z');
    expect(lines(readFileSync(rotated, 'utf8'))).toEqual([1]);
    expect(said).toHaveLength(1);
    expect(said[0].msg).toBe('rotated file could not be compressed: it is kept uncompressed');
    expect(said[0].obj.file).toBe(rotated);
    expect(String(said[0].obj.err)).toMatch(/link/);
  });

  it("pruning counts only files it rotated: names another account made in a shared directory do not push ours out", async () => {
    chmodSync(dir, 0o1777); // a sticky shared directory, as /tmp
    const planted = join(dir, 'ct.jsonl.99999999T999999999Z');
    writeFileSync(planted, 'not ours\n');
    chownSync(planted, 65534, 65534);
    let now = Date.UTC(2024, 0, 1, 10, 59, 0);
    const t = new FileTransport({ path: join(dir, 'ct.jsonl'), intervalMs: 3_600_000, maxFiles: 1, now: () => now });
    await t.send([JSON.stringify(rec(1))]);
    now += 90_000;
    await t.send([JSON.stringify(rec(2))]);
    await t.settle();
    await t.close();
    expect(readdirSync(dir).sort()).toEqual(['ct.jsonl', 'ct.jsonl.20240101T110030000Z', 'ct.jsonl.99999999T999999999Z']);
  });

  it('reopen() after an external rotation writes to a fresh file', async () => {
    const t = new FileTransport({ path: join(dir, 'ct.jsonl') });
    const s = new DeliverySink(t, { name: 'file', format: formatFor('jsonl'), batch: { maxWaitMs: 0 } });
    s.write(rec(1));
    expect(await s.flush()).toBe(true);
    renameSync(join(dir, 'ct.jsonl'), join(dir, 'ct.jsonl.1')); // what logrotate does
    s.write(rec(2)); // still the old inode: the renamed file
    expect(await s.flush()).toBe(true);
    s.reopen(); // SIGHUP
    s.write(rec(3));
    expect(await s.flush()).toBe(true);
    expect(lines(readFileSync(join(dir, 'ct.jsonl.1'), 'utf8'))).toEqual([1, 2]);
    expect(lines(readFileSync(join(dir, 'ct.jsonl'), 'utf8'))).toEqual([3]);
    expect(statSync(join(dir, 'ct.jsonl')).mode & 0o777).toBe(0o600);
    await s.close();
  });
});
