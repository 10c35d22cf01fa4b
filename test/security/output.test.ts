/**
 * `-o FILE` as root, next to accounts that plant things (SECURITY.md T2): the real `nobody`, real
 * symlinks to a root-owned 0640 file, hard links, FIFOs, a directory owned by nobody, logrotate's
 * rename + SIGHUP, and a real full tmpfs. Whatever is planted, the root file keeps its owner, mode
 * and content, and ctwatch says why in one line.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, ROOT, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';
import { NOBODY, expectUntouched, plantingGround, type Victim } from '../helpers/victim.js';

const run = promisify(execFile);

interface Ran {
  code: number | null;
  stderr: string;
}

/** Runs the CLI to its end (at most `timeoutMs`, then killed: code null). */
function ctwatch(args: string[], timeoutMs = 20_000): Promise<Ran> {
  return new Promise((resolve) => {
    const p = track(spawn(process.execPath, [CLI, ...args], { cwd: '/', stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** The one error line (the `ctwatch record:` line), besides start-up info lines. */
function errorLine(r: Ran): string {
  const lines = r.stderr.split('\n').filter((l) => l && !/^ctwatch info:/.test(l));
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0];
}

describe('-o as root: nothing planted is followed, written or handed over', () => {
  let ns: Netns;
  let dir: string;
  /** a directory owned by nobody, the way the README hands the output directory to --user */
  let out: string;
  let secret: Victim;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });
  beforeEach(() => {
    ({ dir, out, secret } = plantingGround('ctwatch-sec-out-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const record = (file: string, extra: string[] = []) => ctwatch(['record', '--netns', ns.name, '-o', file, '--duration', '1s', ...extra]);

  it('--user nobody, -o a symlink nobody planted to a root 0640 file: refused; the file keeps owner, mode and content', async () => {
    const file = join(out, 'ct.jsonl');
    symlinkSync(secret.path, file);
    execFileSync('chown', ['-h', `${NOBODY}:${NOBODY}`, file]);
    const r = await record(file, ['--user', 'nobody']);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toMatch(/cannot write .*ct\.jsonl: .* is a symbolic link, and ctwatch follows none where it writes \(remove it, or name the file it points to\)/);
    expectUntouched(secret);
  });

  it('no --user, -o a symlink in a world-writable directory: refused, nothing appended to the root file', async () => {
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    chmodSync(tmp, 0o1777);
    const file = join(tmp, 'ct.jsonl');
    symlinkSync(secret.path, file);
    const r = await record(file);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toContain('is a symbolic link');
    expectUntouched(secret);
  });

  it('--user nobody, -o a hard link to a root 0640 file: refused, nothing changes', async () => {
    const file = join(out, 'ct.jsonl');
    // fs.protected_hardlinks keeps nobody from making this link on this machine, not on every one
    linkSync(secret.path, file);
    const r = await record(file, ['--user', 'nobody']);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toMatch(/has 2 hard links, and ctwatch writes only files with one name \(remove the other names/);
    expectUntouched(secret);
  });

  it("no --user, -o a file nobody created: refused (root would write into nobody's file)", async () => {
    const file = join(out, 'ct.jsonl');
    execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'touch', file]);
    const r = await record(file);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toMatch(/belongs to nobody \(uid 65534\), not to root \(uid 0\) \(ctwatch writes only its own files/);
    expect(statSync(file).size).toBe(0);
  });

  it('--user nobody, -o an existing root file: not handed over', async () => {
    const file = join(out, 'ct.jsonl');
    writeFileSync(file, 'kept\n', { mode: 0o600 });
    const r = await record(file, ['--user', 'nobody']);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toMatch(/belongs to root \(uid 0\), and ctwatch hands to nobody \(uid 65534\) only files it creates \(chown it to that account, or move it away\)/);
    expect(statSync(file).uid).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('kept\n');
  });

  it('-o under a directory nobody owns, through a link nobody planted to a root-only directory: refused, nothing created there', async () => {
    const rootOnly = join(dir, 'root-only');
    mkdirSync(rootOnly, 0o700);
    symlinkSync(rootOnly, join(out, 'logs'));
    const r = await record(join(out, 'logs', 'ct.jsonl'), ['--user', 'nobody']);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toMatch(/out belongs to nobody \(uid 65534\), who could put something else at .*out\/logs \(use a directory whose parents only root can change\)/);
    expect(existsSync(join(rootOnly, 'ct.jsonl'))).toBe(false);
  });

  it('-o a FIFO: refused at once, not a hang on open', async () => {
    const file = join(out, 'fifo');
    execFileSync('mkfifo', [file]);
    const r = await record(file, [], 15_000);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLine(r)).toMatch(/is a FIFO or socket, not a regular file/);
  });

  it('--user nobody: a new file is created for nobody (0600, through the descriptor), and written', async () => {
    const file = join(out, 'ct.jsonl');
    const r = await record(file, ['--user', 'nobody', '--snapshot']);
    expect(r.code, r.stderr).toBe(0);
    const st = statSync(file);
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ uid: NOBODY, gid: NOBODY, mode: 0o600 });
    expect(readFileSync(file, 'utf8')).toContain('"event":"snapshot_done"');
  });

  it('SIGHUP after logrotate renamed the file and someone planted a symlink in its place: refused, the root file untouched', async () => {
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    chmodSync(tmp, 0o1777);
    const file = join(tmp, 'ct.jsonl');
    const rec = track(spawn(process.execPath, [CLI, 'record', '--netns', ns.name, '--snapshot', '-o', file], { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    rec.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => rec.once('close', (c) => r(c)));
    try {
      await waitFor(() => stderr.includes('recording conntrack events'), 'record to start');
      renameSync(file, `${file}.1`);
      symlinkSync(secret.path, file);
      rec.kill('SIGHUP');
      const code = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000))]);
      expect(code, stderr).toBe(73);
      expect(errorLine({ code: 73, stderr })).toMatch(/cannot write .*ct\.jsonl: .* is a symbolic link/);
      expectUntouched(secret);
    } finally {
      rec.kill('SIGKILL');
    }
  });
});

describe('-o on a full disk', () => {
  it('replay -o on a full tmpfs fails at the final flush with exit 74 and one line, not 70', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-sec-full-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', dir]);
    try {
      // fill it: the recording's few hundred bytes of output only get written at the end
      await run('dd', ['if=/dev/zero', `of=${join(dir, 'fill')}`, 'bs=1k', 'count=64']).catch(() => {});
      const file = join(dir, 'out.jsonl');
      const r = await ctwatch(['replay', join(ROOT, 'test/fixtures/bad-input/valid.jsonl'), '-o', file]);
      expect(r.code, r.stderr).toBe(74);
      expect(errorLine(r)).toContain(`writing ${file} failed: ENOSPC (the disk is full: free space or choose another --output)`);
    } finally {
      await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
