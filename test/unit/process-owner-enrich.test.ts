/**
 * eBPF-mode enrichment of an owner: cgroup id -> path from cgroupfs (src/process/cgroupfs.ts) and
 * the executable checked against the stamp's start time (src/process/exe.ts). Real files in a
 * scratch directory stand in for cgroupfs and /proc (inodes are real inodes).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cgroupfs, cgroup2Mount, relativeTo, unifiedPath } from '../../src/process/cgroupfs.js';
import { Executables, sameStart, statStartTicks } from '../../src/process/exe.js';

const MOUNTINFO = [
  '24 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw',
  '26 24 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755',
  '27 26 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate',
  '28 26 0:25 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd',
].join('\n');

describe('cgroup2Mount / relativeTo', () => {
  it('finds the cgroup2 mount (hybrid layout), unescaping its path', () => {
    expect(cgroup2Mount(MOUNTINFO)).toEqual({ mountpoint: '/sys/fs/cgroup/unified', root: '/' });
    expect(cgroup2Mount('40 1 0:30 /kubepods/x /sys/fs/cgroup\\040c rw - cgroup2 cgroup2 rw')).toEqual({ mountpoint: '/sys/fs/cgroup c', root: '/kubepods/x' });
    expect(cgroup2Mount('28 26 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw')).toBeUndefined();
  });
  it('maps a cgroup path below the mount root, refusing ".." and paths outside it', () => {
    expect(relativeTo('/', '/system.slice/a.service')).toBe('/system.slice/a.service');
    expect(relativeTo('/', '/')).toBe('');
    expect(relativeTo('/kubepods/x', '/kubepods/x/c1')).toBe('/c1');
    expect(relativeTo('/kubepods/x', '/kubepods/xy')).toBeUndefined();
    expect(relativeTo('/', '/a/../../etc')).toBeUndefined();
    expect(relativeTo('/', undefined)).toBeUndefined();
  });
  it('takes the unified hierarchy\'s line only (ids name v2 cgroups, even in a hybrid layout)', () => {
    expect(unifiedPath('4:memory:/process_api/x\n0::/\n')).toBe('/');
    expect(unifiedPath('0::/system.slice/a.service\n')).toBe('/system.slice/a.service');
    expect(unifiedPath('4:memory:/x\n')).toBeUndefined();
  });
});

describe('statStartTicks / sameStart', () => {
  const stat = (comm: string, start: number) => `4121 (${comm}) S 1 4121 4121 0 -1 4194560 ${'0 '.repeat(12)}${start} 1000 20 18446744073709551615`;
  it('reads field 22 after a comm with spaces and parentheses', () => {
    expect(statStartTicks(stat('a) b (c', 98765))).toBe(98765);
    expect(statStartTicks('garbage')).toBeUndefined();
  });
  it('compares USER_HZ ticks with the stamp\'s start_boottime', () => {
    expect(sameStart(98765, 987_654_321_000)).toBe(true);
    expect(sameStart(98765, 987_664_321_000)).toBe(true); // within a tick
    expect(sameStart(98765, 990_000_000_000)).toBe(false);
  });
});

describe('Cgroupfs and Executables on real files', () => {
  let dir: string;
  let mount: string;
  let proc: string;
  const stat = (start: number) => `77 (srv) S 1 77 77 0 -1 0 ${'0 '.repeat(12)}${start} 1000\n`;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ctwatch-enrich-'));
    mount = join(dir, 'cgroup');
    proc = join(dir, 'proc');
    mkdirSync(join(mount, 'system.slice/nginx.service'), { recursive: true });
    mkdirSync(join(mount, 'user.slice/user-1000.slice/session-2.scope'), { recursive: true });
    // a link in cgroupfs is never a cgroup
    symlinkSync(join(mount, 'system.slice'), join(mount, 'link.slice'));
    mkdirSync(join(proc, '77'), { recursive: true });
    writeFileSync(join(proc, '77/stat'), stat(5000));
    symlinkSync('/usr/sbin/nginx', join(proc, '77/exe'));
    // pid 78 names a cgroup it is no longer in (the directory's inode is another id)
    mkdirSync(join(proc, '78'), { recursive: true });
    writeFileSync(join(proc, '78/cgroup'), '0::/system.slice/nginx.service\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const ino = (p: string) => Number(statSync(join(mount, p), { bigint: true }).ino);

  it('resolves an id from the owner\'s /proc/PID/cgroup only when the directory has that inode', async () => {
    writeFileSync(join(proc, '77/cgroup'), '0::/system.slice/nginx.service\n');
    const c = new Cgroupfs({ mount: { mountpoint: mount, root: '/' }, proc });
    const id = ino('system.slice/nginx.service');
    expect(c.facts(id, 77)).toBeUndefined(); // the read starts
    expect(await c.resolve(id, 77)).toMatchObject({ cgroup: '/system.slice/nginx.service', unit: 'nginx.service' });
    expect(c.facts(id, 77)).toMatchObject({ unit: 'nginx.service' });
    expect(c.stats).toMatchObject({ byPid: 1, walks: 0 });
  });

  it('walks the hierarchy when /proc names another cgroup, or the process is gone', async () => {
    const c = new Cgroupfs({ mount: { mountpoint: mount, root: '/' }, proc, walkMinMs: 0, walkCostFactor: 0 });
    const session = ino('user.slice/user-1000.slice/session-2.scope');
    expect(await c.resolve(session, 78)).toMatchObject({ cgroup: '/user.slice/user-1000.slice/session-2.scope', unit: 'session-2.scope' });
    expect(await c.resolve(ino('system.slice'), 999)).toMatchObject({ cgroup: '/system.slice' });
    expect(await c.resolve(Number(statSync(mount, { bigint: true }).ino), 999)).toMatchObject({ cgroup: '/' });
    expect(c.stats.byPid).toBe(0);
    expect(c.stats.walks).toBe(3);
    expect(await c.resolve(123456789, 999)).toBeUndefined();
    expect(c.stats.unresolved).toBe(1);
  });

  it('bounds its cache, the oldest first out; no cgroup2 mount: nothing resolves', async () => {
    const c = new Cgroupfs({ mount: { mountpoint: mount, root: '/' }, proc, walkMinMs: 0, walkCostFactor: 0, maxEntries: 2 });
    await c.resolve(ino('system.slice'), 0);
    await c.resolve(ino('user.slice'), 0);
    await c.resolve(ino('system.slice/nginx.service'), 0);
    expect(c.stats.cached).toBe(2);
    const none = new Cgroupfs({ mount: null, proc });
    expect(await none.resolve(ino('system.slice'), 77)).toBeUndefined();
  });

  it('reads the exe once per (pid, start), refuses a reused pid, counts what it could not read', async () => {
    const x = new Executables(4, proc);
    expect(x.exe(77, 50_000_000_000)).toBeUndefined();
    expect(await x.read(77, 50_000_000_000)).toBe('/usr/sbin/nginx');
    expect(x.exe(77, 50_000_000_000)).toBe('/usr/sbin/nginx');
    // the same pid, another start time: another process, whose exe is not this link's
    expect(await x.read(77, 60_000_000_000)).toBeUndefined();
    expect(await x.read(79, 1)).toBeUndefined();
    expect(x.stats).toMatchObject({ read: 1, reused: 1, gone: 1 });
  });
  it('reads an exe again once its answer is maxAgeMs old: an execve keeps pid and start time', async () => {
    mkdirSync(join(proc, '80'), { recursive: true });
    writeFileSync(join(proc, '80/stat'), stat(7000));
    symlinkSync('/usr/bin/bash', join(proc, '80/exe'));
    let now = 0;
    const x = new Executables(4, proc, 10_000, () => now);
    expect(await x.read(80, 70_000_000_000)).toBe('/usr/bin/bash');
    unlinkSync(join(proc, '80/exe'));
    symlinkSync('/usr/bin/sleep', join(proc, '80/exe')); // `exec sleep` in that shell
    now = 9_999;
    expect(x.exe(80, 70_000_000_000)).toBe('/usr/bin/bash'); // still fresh: no read
    now = 10_000;
    expect(x.exe(80, 70_000_000_000)).toBe('/usr/bin/bash'); // the old answer while the new is read
    await new Promise((r) => setTimeout(r, 50));
    expect(x.exe(80, 70_000_000_000)).toBe('/usr/bin/sleep');
    expect(x.known(80, 70_000_000_000)).toBe(true);
  });

  it('lookups of fresh ids (a local account making cgroups) stay within the cache bound', async () => {
    const c = new Cgroupfs({ mount: { mountpoint: mount, root: '/' }, proc, walkMinMs: 0, walkCostFactor: 0, maxEntries: 8 });
    const inner = c as unknown as { retryAt: Map<number, number>; inflight: Map<number, unknown> };
    const all: Promise<unknown>[] = [];
    for (let id = 1_000_000; id < 1_000_200; id++) {
      all.push(c.resolve(id, 0));
      expect(inner.inflight.size).toBeLessThanOrEqual(8);
    }
    await Promise.all(all);
    expect(inner.retryAt.size).toBeLessThanOrEqual(8);
    expect(c.stats.cached).toBeLessThanOrEqual(8);
    expect(c.stats.unresolved).toBe(200);
  });
});
