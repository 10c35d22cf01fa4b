/**
 * Least privilege against the real kernel: after the sockets are open ctwatch becomes `nobody`
 * with CAP_NET_ADMIN alone (on the threads that send netlink requests; none on the others);
 * collection, kernel stats, table dumps (resync) and file rotation keep working, and anything that
 * needs more (entering a namespace) is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';
import { startCli } from '../helpers/cli.js';

const NET_ADMIN = (1n << 12n).toString(16).padStart(16, '0');
const traffic = (ns: Netns, port: number) =>
  ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port }], run: [{ kind: 'connect', host: '127.0.0.5', port, count: 20, rate: 0 }] });

describe('--user: dropping privileges (own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('keeps collecting, reading stats and dumping as nobody with CAP_NET_ADMIN only', async () => {
    const child = track(spawn(process.execPath, [join(ROOT, 'test/fixtures/drop-child.mjs'), ns.name], { stdio: ['pipe', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const lines = () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    await waitFor(() => lines().some((l) => l.step === 'dropped'), `the child to drop (${err})`);
    const dropped = lines().find((l) => l.step === 'dropped');
    for (const t of dropped.threads) {
      expect(t.uid).toBe(65534);
      expect([NET_ADMIN, '0000000000000000']).toContain(t.eff);
      expect([NET_ADMIN, '0000000000000000']).toContain(t.prm);
    }
    // Only the reader thread keeps CAP_NET_ADMIN (it sends every netlink request, stats too);
    // the JS thread and the rest (V8, libuv) have nothing.
    const NONE = '0000000000000000';
    expect(dropped.threads[0]).toMatchObject({ eff: NONE, prm: NONE, bnd: NONE, nnp: '1' });
    const readers = dropped.threads.filter((t: { name: string }) => t.name === 'ctwatch-reader');
    expect(readers).toHaveLength(1);
    expect(readers[0]).toMatchObject({ eff: NET_ADMIN, prm: NET_ADMIN, bnd: NONE, nnp: '1' });
    expect(dropped.threads.filter((t: { eff: string }) => t.eff === NET_ADMIN)).toHaveLength(1);
    // A program it starts can never gain a privilege again: no bounding set, no new privileges.
    expect(dropped.exec).toEqual({ eff: NONE, prm: NONE, bnd: NONE, nnp: '1' });
    await traffic(ns, 6401);
    child.stdin!.end('go\n');
    await waitFor(() => lines().some((l) => l.step === 'after'), 'the checks after the drop', 15_000);
    const after = lines().find((l) => l.step === 'after');
    expect(after.statsMax).toBeGreaterThan(0);
    expect(after.dumps).toBe(2); // the start-up dump and one after the drop (what a resync does)
    expect(after.eventsAfterDrop).toBeGreaterThanOrEqual(20);
    expect(after.refused).toBe('ERR_NETNS_PERMISSION');
    expect(await exited).toBe(0);
  });

  it('switches users while the start-up dump holds every batch credit (a table larger than the credits)', async () => {
    // 600 entries in TIME_WAIT: with batches of 16 and 2 credits, the dump needs 19 times more
    // than the credits. (In production: 64 batches of 1024, a table of more than 65 536 entries.)
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6404 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 6404, count: 600, rate: 0 }] });
    const child = track(spawn(process.execPath, [join(ROOT, 'test/fixtures/drop-during-dump.mjs'), ns.name], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code, err).toBe(0);
    const r = JSON.parse(out.trim());
    expect(r.error).toBe(null);
    expect(r.uid).toBe(65534);
    // the switch ran on the reader thread at once, not after the 2 s give-up
    expect(r.switchMs).toBeLessThan(1500);
    expect(r.snapshot).toBeGreaterThanOrEqual(600);
    expect(r.done).toBe(r.snapshot);
    expect(r.entries).toBeGreaterThanOrEqual(600);
  });

  it('record --user nobody: the file keeps filling, and logrotate rename + SIGHUP works', async () => {
    // The README's layout: a directory only root can change (here a private one under /tmp),
    // holding the output directory handed to the account. (An account's own directory straight in
    // /tmp is refused: the account could swap it for a link to anywhere.)
    const top = mkdtempSync(join(tmpdir(), 'ctwatch-user-'));
    chmodSync(top, 0o755);
    const dir = join(top, 'out');
    mkdirSync(dir);
    chownSync(dir, 65534, 65534);
    const file = join(dir, 'ct.jsonl');
    const rec = startCli(['record', '--netns', ns.name, '--user', 'nobody', '-o', file]);
    try {
      await waitFor(() => rec.stderr.includes('unprivileged user'), 'the drop');
      // nobody is everyone's fallback account: the operator is told to make one for ctwatch
      await waitFor(() => /--user nobody: (other processes run as this account|this account is shared).*useradd --system/.test(rec.stderr), 'the shared-account warning');
      const status = readFileSync(`/proc/${rec.pid}/status`, 'utf8');
      expect(/^Uid:\s+\d+\s+(\d+)/m.exec(status)![1]).toBe('65534');
      // the main (JavaScript) thread keeps nothing; the reader thread CAP_NET_ADMIN alone
      expect(/^CapEff:\s+(\S+)/m.exec(status)![1]).toBe('0000000000000000');
      const tasks = readdirSync(`/proc/${rec.pid}/task`).map((t) => ({ name: readFileSync(`/proc/${rec.pid}/task/${t}/comm`, 'utf8').trim(), eff: /^CapEff:\s+(\S+)/m.exec(readFileSync(`/proc/${rec.pid}/task/${t}/status`, 'utf8'))![1] }));
      expect(tasks.filter((t) => t.eff !== '0000000000000000')).toEqual([{ name: 'ctwatch-reader', eff: NET_ADMIN }]);
      await traffic(ns, 6402);
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('"dport":6402'), 'events in the file', 10_000);
      renameSync(file, `${file}.1`);
      rec.kill('SIGHUP');
      await waitFor(() => rec.stderr.includes('reopened output'), 'the reopen');
      await traffic(ns, 6403);
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('"dport":6403'), 'events in the new file', 10_000);
    } finally {
      rec.kill('SIGTERM');
    }
    const code = await rec.exited;
    rmSync(top, { recursive: true, force: true });
    expect(code).toBe(0);
  });
  it('is not dumpable after the switch even where fs.suid_dumpable would leave it so', async () => {
    // With fs.suid_dumpable=1 a setuid leaves the process dumpable: any process of the account
    // could ptrace it and read the sink tokens in its memory. ctwatch says no itself. The sysctl
    // is the host's (not per namespace): set for this test only, put back whatever happens.
    const knob = '/proc/sys/fs/suid_dumpable';
    const before = readFileSync(knob, 'utf8').trim();
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-dump-'));
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'out'));
    chownSync(join(dir, 'out'), 65534, 65534);
    writeFileSync(knob, '1');
    const rec = startCli(['record', '--netns', ns.name, '--user', 'nobody', '-o', join(dir, 'out', 'ct.jsonl')]);
    try {
      await waitFor(() => rec.stderr.includes('unprivileged user'), `the drop (${rec.stderr})`);
      expect(/^Uid:\s+\d+\s+(\d+)/m.exec(readFileSync(`/proc/${rec.pid}/status`, 'utf8'))![1]).toBe('65534');
      // /proc/PID/* of a process that is not dumpable belongs to root, not to the process's uid
      expect(statSync(`/proc/${rec.pid}/environ`).uid).toBe(0);
      expect(statSync(`/proc/${rec.pid}/mem`).uid).toBe(0);
    } finally {
      writeFileSync(knob, before);
      rec.kill('SIGTERM');
      await rec.exited;
      rmSync(dir, { recursive: true, force: true });
    }
    expect(rec.code).toBe(0);
  });
});
