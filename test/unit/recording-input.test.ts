/**
 * A recording is input like any other: every field an event source yields is checked for its type
 * and range, lines are bounded, and the file is opened without blocking (real FIFOs, devices,
 * directories and symlinks here).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLine, toLine, RecordingError } from '../../src/recording/schema.js';
import { MAX_LINE, RecordingSource } from '../../src/recording/input.js';

const EVENT = {
  v: 1, event: 'destroy', time: '2026-11-25T15:04:05.000000Z', id: 7, family: 'ipv4', proto: 'tcp',
  src: '127.0.1.7', dst: '127.0.0.5', sport: 51662, dport: 6379,
  reply: { src: '127.0.0.5', dst: '127.0.1.7', sport: 6379, dport: 51662, packets: 5, bytes: 300 },
  state: 'TIME_WAIT', status: ['SEEN_REPLY', 'ASSURED'], mark: 1, zone: 2, timeout: 0,
  orig: { packets: 6, bytes: 360 }, start: '2026-11-25T15:04:04.000000000Z', end: '2026-11-25T15:04:05.000000000Z', netns: 'x',
};
const line = (patch: Record<string, unknown>, base: Record<string, unknown> = EVENT) => JSON.stringify({ ...base, ...patch });

/** [what, the patch to a valid event, the words of the error] */
const WRONG: [string, Record<string, unknown>, string][] = [
  ['id as text', { id: '7' }, "'id' must be a whole number 0-4294967295, not \"7\""],
  ['id negative', { id: -1 }, "'id' must be a whole number 0-4294967295, not -1"],
  ['id past 32 bits', { id: 2 ** 32 }, "'id' must be a whole number 0-4294967295"],
  ['id fractional', { id: 1.5 }, "'id' must be a whole number"],
  ['family unknown', { family: 'ipv5' }, "'family' must be \"ipv4\" or \"ipv6\", not \"ipv5\""],
  ['family a number', { family: 4 }, "'family' must be \"ipv4\" or \"ipv6\", not 4"],
  ['proto a number', { proto: 6 }, "'proto' must be a protocol name"],
  ['proto out of range', { proto: '300' }, "'proto' must be a protocol name"],
  ['src a number', { src: 42 }, "'src' must be an IPv4 address (the event's family), not 42"],
  ['src of the other family', { src: '::1' }, "'src' must be an IPv4 address"],
  ['dst not an address', { dst: 'localhost' }, "'dst' must be an IPv4 address"],
  ['sport past 65535', { sport: 70000 }, "'sport' must be a whole number 0-65535, not 70000"],
  ['dport as text', { dport: '80' }, "'dport' must be a whole number 0-65535"],
  ['reply not an object', { reply: 'x' }, "'reply' must be an object"],
  ['reply.dst of the other family', { reply: { ...EVENT.reply, dst: '::1' } }, "'reply.dst' must be an IPv4 address"],
  ['reply.bytes negative', { reply: { ...EVENT.reply, bytes: -3 } }, "'reply.bytes' must be a whole number >= 0"],
  ['icmp.type past 255', { icmp: { type: 300, code: 0, id: 1 } }, "'icmp.type' must be a whole number 0-255"],
  ['icmp without id', { icmp: { type: 8, code: 0 } }, "'icmp.id' must be a whole number 0-65535, not nothing"],
  ['state unknown', { state: 'HALF_OPEN' }, "'state' must be a TCP state"],
  ['status a string', { status: 'ASSURED' }, "'status' must be a list of status flags"],
  ['status with an unknown flag', { status: ['ASSURED', 'BOGUS'] }, "'status' must be a list of status flags"],
  ['mark past 32 bits', { mark: 2 ** 33 }, "'mark' must be a whole number 0-4294967295"],
  ['zone past 65535', { zone: 65536 }, "'zone' must be a whole number 0-65535"],
  ['timeout as text', { timeout: '120' }, "'timeout' must be a whole number"],
  ['orig without bytes', { orig: { packets: 1 } }, "'orig.bytes' must be a whole number >= 0, not nothing"],
  ['orig.packets fractional', { orig: { packets: 0.5, bytes: 1 } }, "'orig.packets' must be a whole number >= 0"],
  ['start a number', { start: 5 }, "'start' must be an RFC 3339 timestamp after 1970, not 5"],
  ['end garbage', { end: 'later' }, "'end' must be an RFC 3339 timestamp"],
  ['netns a number', { netns: 3 }, "'netns' must be a string"],
  ['time before 1970', { time: '1969-12-31T23:59:59Z' }, "'time' \"1969-12-31T23:59:59Z\" is before 1970"],
];

describe('recording fields: type and range', () => {
  it('a valid event passes, with times converted', () => {
    const e = parseLine(line({}), 'f', 1) as unknown as Record<string, unknown>;
    expect(e.start).toBe(Date.parse('2026-11-25T15:04:04Z') * 1e6);
    expect(e.id).toBe(7);
  });

  for (const [what, patch, says] of WRONG) {
    it(`refuses ${what}, naming FILE:LINE and the field`, () => {
      let err: unknown;
      try {
        parseLine(line(patch), 'rec.jsonl', 12);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RecordingError);
      expect((err as Error).message).toMatch(/^rec\.jsonl:12: /);
      expect((err as Error).message).toContain(says);
      expect((err as RecordingError).exitCode).toBe(65);
    });
  }

  it('overflow and snapshot_done counts, and the table figures replay borrows from churn lines', () => {
    const t = '2026-11-25T15:04:05Z';
    expect(() => parseLine(JSON.stringify({ v: 1, event: 'overflow', time: t, overflows: 'many' }), 'r', 1)).toThrow("r:1: overflow: 'overflows' must be a whole number >= 0");
    expect(() => parseLine(JSON.stringify({ v: 1, event: 'snapshot_done', time: t }), 'r', 2)).toThrow("r:2: snapshot_done: 'entries' must be a whole number >= 0, not nothing");
    expect(() => parseLine(JSON.stringify({ v: 1, event: 'churn', time: t, table: { entries: '5', max: 10 } }), 'r', 3)).toThrow("'table.entries' must be a whole number >= 0");
    expect(() => parseLine(JSON.stringify({ v: 1, event: 'churn', time: t, table: { entries: 1, max: 10, kernel: { drop: -1 } } }), 'r', 4)).toThrow("'table.kernel.drop' must be a whole number >= 0");
    expect(() => parseLine(JSON.stringify({ v: 1, event: 'churn', time: t, table: [1] }), 'r', 5)).toThrow("'table' must be an object");
    // unknown figures stay unknown (null), and unknown record kinds pass as they are
    expect(parseLine(JSON.stringify({ v: 1, event: 'churn', time: t, table: { entries: null, max: null } }), 'r', 6)).toMatchObject({ event: 'churn' });
    expect(parseLine(JSON.stringify({ v: 1, event: 'future_kind', time: t, x: 'anything' }), 'r', 7)).toMatchObject({ event: 'future_kind', x: 'anything' });
  });

  it('a long value is cut short in the error line', () => {
    expect(() => parseLine(line({ src: 'x'.repeat(10_000) }), 'r', 1)).toThrow(/not "x{30,40}\.\.\.$/);
  });
});

describe('reading a recording: bounded, never blocking', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-recin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const good = line({});
  const readAll = async (src: RecordingSource) => {
    let n = 0;
    for await (const b of src) n += b.length;
    return n;
  };

  it('a line past the bound stops with its number, or is skipped and counted once', async () => {
    const file = join(dir, 'long.jsonl');
    writeFileSync(file, `${good}\n${'a'.repeat(MAX_LINE + 10)}\n${good}\n${'b'.repeat(3 * MAX_LINE)}`);
    await expect(readAll(new RecordingSource(file))).rejects.toThrow(/long\.jsonl:2: line is longer than 1 MiB/);
    const skip = new RecordingSource(file, { onError: 'skip' });
    expect(await readAll(skip)).toBe(2);
    expect(skip.counters.decodeErrors).toBe(2);
    // the numbering goes on after a skipped line
    writeFileSync(file, `${'a'.repeat(MAX_LINE + 1)}\n${good}\nnot json\n`);
    await expect(readAll(new RecordingSource(file, { onError: 'stop' }))).rejects.toThrow(/long\.jsonl:1: line is longer/);
    const again = new RecordingSource(file, { onError: 'skip' });
    expect(await readAll(again)).toBe(1);
    expect(again.counters.decodeErrors).toBe(2);
  });

  it('refuses devices, directories and a symlink to a device, without reading them', async () => {
    symlinkSync('/dev/zero', join(dir, 'zero.jsonl'));
    for (const [path, kind] of [['/dev/zero', 'a device'], ['/dev/null', 'a device'], [join(dir, 'zero.jsonl'), 'a device'], [dir, 'a directory']]) {
      await expect(new RecordingSource(path).check()).rejects.toThrow(`cannot read recording ${path}: it is ${kind}`);
    }
  });

  it('a FIFO nobody writes to: an error after the wait, not a hang', async () => {
    const fifo = join(dir, 'nobody.fifo');
    execFileSync('mkfifo', [fifo]);
    const started = Date.now();
    await expect(readAll(new RecordingSource(fifo, { writerWaitMs: 300 }))).rejects.toThrow(/it is a FIFO and no process opened it for writing within 0 s/);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('a FIFO whose writer comes late, and writes slowly, is read to its end', async () => {
    const fifo = join(dir, 'late.fifo');
    execFileSync('mkfifo', [fifo]);
    const text = `${good}\n${toLine({ event: 'overflow', time: 1, overflows: 1 })}\n${good}\n`;
    // the writer opens after we do, and pauses between lines
    const writer = spawn('sh', ['-c', `sleep 0.3; exec 3>"$1"; printf '%s' "$2" | head -c 400 >&3; sleep 0.3; printf '%s' "$2" | tail -c +401 >&3`, 'sh', fifo, text]);
    const src = new RecordingSource(fifo);
    expect(await readAll(src)).toBe(3);
    expect(src.counters.overflows).toBe(1);
    await new Promise((r) => (writer.exitCode === null ? writer.once('exit', r) : r(undefined)));
  });
});
