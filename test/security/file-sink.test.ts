/**
 * File sinks as root next to an account that plants things (SECURITY.md T2): the real `nobody`
 * plants symlinks and files in a directory it owns, root plants a hard link; the live file and its
 * reopen after logrotate (SIGHUP). Root files
 * keep owner, mode and content; the sink says why in lastError; `--user` files are created for the
 * account through the descriptor (prepare, before the switch).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { linkSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatFor } from '../../src/formats/index.js';
import { FileTransport } from '../../src/sinks/file.js';
import { DeliverySink } from '../../src/sinks/sink.js';
import { FileRefused } from '../../src/util/safe-file.js';
import { NOBODY, asNobody, expectUntouched, plantingGround, type Victim } from '../helpers/victim.js';


let dir: string;
let out: string;
let secret: Victim;
beforeEach(() => {
  ({ dir, out, secret } = plantingGround('ctwatch-sec-file-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const rec = (i: number) => ({ event: 'overflow', time: 1_700_000_000_000_000 + i, overflows: i });

function sink(t: FileTransport): DeliverySink {
  return new DeliverySink(t, { name: 'file', format: formatFor('jsonl'), batch: { maxRecords: 5, maxWaitMs: 0 }, retry: { maxAttempts: 2, initialMs: 5, maxMs: 10 } });
}

async function refusedBySink(path: string, why: RegExp): Promise<void> {
  const s = sink(new FileTransport({ path }));
  s.write(rec(1));
  await s.flush(3000);
  expect(s.counters.sent).toBe(0);
  expect(s.counters.failed).toBe(1);
  expect(s.counters.lastError).toMatch(why);
  await s.close();
}

describe('file sink: nothing planted is followed, written or handed over', () => {
  it('a symlink nobody planted to a root 0640 file: refused (prepare and send), the file untouched', async () => {
    const file = join(out, 'flows.jsonl');
    asNobody('ln', '-s', secret.path, file);
    expect(() => new FileTransport({ path: file }).prepare()).toThrow(FileRefused);
    expect(() => new FileTransport({ path: file }).prepare()).toThrow(/flows\.jsonl is a symbolic link, and ctwatch follows none where it writes/);
    await refusedBySink(file, /is a symbolic link/);
    expectUntouched(secret);
  });

  it('a hard link to a root 0640 file: refused, the file untouched', async () => {
    const file = join(out, 'flows.jsonl');
    linkSync(secret.path, file);
    await refusedBySink(file, /has 2 hard links, and ctwatch writes only files with one name/);
    expectUntouched(secret);
  });

  it("a file nobody created: refused (root would write into nobody's file)", async () => {
    const file = join(out, 'flows.jsonl');
    asNobody('touch', file);
    await refusedBySink(file, /belongs to nobody \(uid 65534\), not to root \(uid 0\)/);
    expect(statSync(file).size).toBe(0);
  });

  it('a path through a link nobody planted to a root-only directory: refused, nothing created there', async () => {
    const rootOnly = join(dir, 'root-only');
    mkdirSync(rootOnly, 0o700);
    asNobody('ln', '-s', rootOnly, join(out, 'logs'));
    expect(() => new FileTransport({ path: join(out, 'logs', 'flows.jsonl') }).prepare()).toThrow(/out belongs to nobody \(uid 65534\), who could put something else at/);
    expect(readdirSync(rootOnly)).toEqual([]);
  });

  it('SIGHUP after logrotate renamed the file and nobody planted a symlink in its place: the reopen is refused, the root file untouched', async () => {
    const file = join(out, 'flows.jsonl');
    const t = new FileTransport({ path: file });
    const s = sink(t);
    s.write(rec(1));
    expect(await s.flush(3000)).toBe(true);
    renameSync(file, `${file}.1`);
    asNobody('ln', '-s', secret.path, file);
    s.reopen();
    s.write(rec(2));
    await s.flush(3000);
    expect(s.counters.lastError).toMatch(/is a symbolic link/);
    expect(s.counters.sent).toBe(1);
    expectUntouched(secret);
    await s.close();
  });

  it('--user: prepare() creates the live file for the account through the descriptor (0600, nobody:nogroup), and an existing root file is not handed over', async () => {
    const file = join(out, 'flows.jsonl');
    const t = new FileTransport({ path: file });
    t.prepare({ name: 'nobody', uid: NOBODY, gid: NOBODY });
    const st = statSync(file);
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ uid: NOBODY, gid: NOBODY, mode: 0o600 });
    await t.close();
    const mine = join(dir, 'root-owned.jsonl');
    writeFileSync(mine, 'kept\n', { mode: 0o600 });
    expect(() => new FileTransport({ path: mine }).prepare({ name: 'nobody', uid: NOBODY, gid: NOBODY })).toThrow(/belongs to root \(uid 0\), and ctwatch hands to nobody \(uid 65534\) only files it creates/);
    expect(statSync(mine).uid).toBe(0);
  });
});
