/**
 * The inode -> process index against a stand-in /proc: which scan finds what, rate limits, the
 * namespace filter, pid reuse, shared sockets, dead processes.
 */
import { describe, expect, it } from 'vitest';
import { ProcIndex } from '../../src/process/procfs.js';
import { FakeProcFs } from '../fixtures/process/fake-procfs.js';

const users = { name: async (uid: number) => (uid === 0 ? 'root' : uid === 33 ? 'www-data' : undefined) };

function index(fs: FakeProcFs, extra: Partial<ConstructorParameters<typeof ProcIndex>[0]> = {}) {
  const ix = new ProcIndex({ source: fs, users, newScanMinMs: 0, fullScanMinMs: 0, ...extra });
  ix.watch(1);
  return ix;
}

describe('ProcIndex', () => {
  it('finds the owner on a first miss and enriches it once', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1001, 1002], comm: 'nginx', uid: 33 });
    const ix = index(fs);
    const o = await ix.resolve(1001, 1);
    expect(o.process).toEqual({ pid: 10, comm: 'nginx', exe: '/usr/bin/nginx', uid: 33, user: 'www-data', cgroup: '/system.slice/app.service', unit: 'app.service' });
    expect(Object.isFrozen(o.process)).toBe(true);
    const again = await ix.resolve(1002, 1);
    expect(again.process).toBe(o.process); // cached by pid: the same object
    expect(ix.stats.infoReads).toBe(1);
    expect(fs.scans).toHaveLength(1); // the second was already indexed
  });

  it('a new socket of a recent owner is found by re-reading only the hot processes', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1] });
    fs.add(11, { inodes: [2] });
    const ix = index(fs);
    await ix.resolve(1, 1);
    fs.procs.get(10)!.inodes.push(3);
    const o = await ix.resolve(3, 1);
    expect(o.process?.pid).toBe(10);
    expect(ix.stats.scans).toEqual({ hot: 1, prefetch: 0, new: 1, full: 0 });
    expect([...fs.scans[1].pids!]).toEqual([10]);
  });

  it('a new process is found by the listing scan, which skips the descriptors of known ones', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1] });
    const ix = index(fs);
    await ix.resolve(1, 1);
    fs.add(20, { inodes: [5] });
    const o = await ix.resolve(5, 1);
    expect(o.process?.pid).toBe(20);
    const listing = fs.scans[fs.scans.length - 1];
    expect(listing.pids).toBeUndefined();
    expect([...listing.skipFds!]).toEqual([10]);
  });

  it('a socket nobody in the watched namespaces holds is no-pid after one full scan', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1] });
    fs.add(30, { inodes: [9], netns: 2 }); // another namespace: never read
    const ix = index(fs);
    const o = await ix.resolve(9, 1);
    expect(o).toEqual({ process: null, reason: 'no-pid' });
    expect(ix.stats.scans.full).toBe(1);
    expect(fs.scans.every((s) => [...(s.netns ?? [])].join() === '1')).toBe(true);
  });

  it('rate-limits full scans: a miss waits for the next one allowed', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1] });
    const ix = index(fs, { fullScanMinMs: 60 });
    const t0 = performance.now();
    expect(await ix.resolve(100, 1)).toEqual({ process: null, reason: 'no-pid' }); // full scan #1
    // Known process, new socket, nothing hot yet: only a full scan finds it, 60 ms after #1.
    fs.procs.get(10)!.inodes.push(101);
    expect((await ix.resolve(101, 1)).process?.pid).toBe(10);
    expect(ix.stats.scans.full).toBe(2);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
    // Now pid 10 is hot: its next socket needs no full scan at all.
    fs.procs.get(10)!.inodes.push(102);
    expect((await ix.resolve(102, 1)).process?.pid).toBe(10);
    expect(ix.stats.scans.full).toBe(2);
    expect(await ix.resolve(103, 1)).toEqual({ process: null, reason: 'no-pid' });
    expect(ix.stats.scans.full).toBe(3);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(115);
  });

  it('a pid reused by a new process is a new process; the old ProcessInfo is left as it was', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1], comm: 'doomed', start: 100 });
    const ix = index(fs);
    const before = (await ix.resolve(1, 1)).process!;
    fs.procs.set(10, { start: 900, netns: 1, inodes: [2], comm: 'impostor', uid: 0 });
    const after = (await ix.resolve(2, 1)).process!;
    expect(after).toMatchObject({ pid: 10, comm: 'impostor' });
    expect(before).toMatchObject({ pid: 10, comm: 'doomed' });
    expect(ix.stats.pidReuse).toBe(1);
    // The dead process's socket is no longer attributed to the pid.
    expect(await ix.resolve(1, 1)).toEqual({ process: null, reason: 'no-pid' });
  });

  it('a socket held by several processes is shared, not a guess', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [7] });
    fs.add(11, { inodes: [7] });
    const ix = index(fs);
    expect(await ix.resolve(7, 1)).toEqual({ process: null, reason: 'shared' });
  });

  it('a process that exits between the scan and the details read is gone', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1] });
    fs.beforeInfo = () => fs.procs.delete(10);
    const ix = index(fs);
    expect(await ix.resolve(1, 1)).toEqual({ process: null, reason: 'gone' });
  });

  it('forgets dead processes and their sockets on the next listing', async () => {
    const fs = new FakeProcFs();
    fs.add(10, { inodes: [1] });
    fs.add(11, { inodes: [2] });
    const ix = index(fs);
    await ix.resolve(1, 1);
    expect(ix.stats.processes).toBe(2);
    fs.procs.delete(11);
    fs.add(12, { inodes: [3] });
    await ix.resolve(3, 1);
    expect(ix.stats.processes).toBe(2);
    expect(ix.stats.forgotten).toBe(1);
    expect(await ix.resolve(2, 1)).toEqual({ process: null, reason: 'no-pid' });
  });

  it('close() answers what is waiting', async () => {
    const fs = new FakeProcFs();
    const ix = index(fs, { fullScanMinMs: 10_000 });
    await ix.resolve(1, 1); // uses the one full scan allowed for a while
    const waiting = ix.resolve(2, 1);
    await new Promise((r) => setTimeout(r, 20));
    ix.close();
    expect(await waiting).toEqual({ process: null, reason: 'no-pid' });
  });
});
