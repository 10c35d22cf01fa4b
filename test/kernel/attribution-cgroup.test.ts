/**
 * eBPF mode's enrichment against the real kernel: a process in a systemd-style cgroup this test
 * creates under the cgroup2 mount connects from a namespace the test creates; its flow names the
 * cgroup the stamp recorded (its id checked against the directory's inode in cgroupfs, even after
 * the process moved to another cgroup) and its executable (/proc/TGID/exe, checked against the
 * stamp's start time).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, realpathSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { OwnerAttribution } from '../../src/pipeline/attribution.js';
import { cgroup2Mount } from '../../src/process/cgroupfs.js';
import { LiveSource } from '../../src/source/live.js';
import { loadAddon, type NativeAttribution } from '../../src/source/native.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import { createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const mount = cgroup2Mount(readFileSync('/proc/self/mountinfo', 'utf8'));
if (!mount) throw new Error('no cgroup2 mount in /proc/self/mountinfo: eBPF attribution needs cgroup v2');

describe('eBPF owners: cgroup from cgroupfs, exe from /proc (real kernel, own namespace and cgroups)', () => {
  const slice = `/ctwatch-test-${process.pid}.slice`;
  const first = `${slice}/ctwatch-probe-${process.pid}.service`;
  const moved = `${slice}/ctwatch-moved-${process.pid}.service`;
  let ns: Netns;
  let attribution: NativeAttribution;
  let source: LiveSource;
  const news: ConntrackEvent[] = [];
  let loop: Promise<void>;

  beforeAll(async () => {
    for (const d of [slice, first, moved]) mkdirSync(mount.mountpoint + d);
    ns = await createNetns();
    attribution = new (loadAddon().Attribution)({ mode: 'ebpf' });
    attribution.open();
    source = new LiveSource({ netns: ns.name, attribution, events: ['new'] });
    loop = (async () => {
      for await (const batch of source) for (const e of batch) if (e.event === 'new') news.push(e as ConntrackEvent);
    })();
  });
  afterAll(async () => {
    await source?.close();
    await loop;
    attribution?.close();
    await ns?.destroy();
    for (const d of [first, moved, slice]) {
      try {
        rmdirSync(mount.mountpoint + d);
      } catch {
        /* still populated: the kernel frees it when its last process exits */
      }
    }
  });

  it('names the unit and cgroup path the stamp recorded, and the executable', async () => {
    // `ip netns exec` mounts a sysfs of its own, without the cgroup2 mount: the test moves the
    // process between cgroups from outside. It waits in the first cgroup, connects on SIGUSR1
    // (nothing listens: the SYN is answered by a RST), then is moved to another cgroup.
    const script = `
      const net = require('net');
      process.on('SIGUSR1', () => {
        const s = net.connect({ host: '127.0.0.1', port: 9 });
        s.on('error', () => process.stdout.write('connected\\n'));
      });
      process.stdout.write(JSON.stringify({ pid: process.pid }) + '\\n');
      setTimeout(() => {}, 20000);`;
    const child = track(ns.spawn(process.execPath, ['-e', script]));
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    try {
      const said = await waitFor(() => (out.includes('\n') ? (JSON.parse(out.split('\n')[0]) as { pid: number }) : null), 'the client to start');
      writeFileSync(mount.mountpoint + first + '/cgroup.procs', String(said.pid));
      process.kill(said.pid, 'SIGUSR1');
      await waitFor(() => out.includes('connected') || null, 'the client to connect');
      writeFileSync(mount.mountpoint + moved + '/cgroup.procs', String(said.pid));
      const ev = await waitFor(() => news.find((e) => e.dport === 9 && e.owner?.pid === said.pid), 'the NEW with its owner');
      // the stamp holds the cgroup the process connected from: the inode of that directory
      expect(ev.owner!.cgroupId).toBe(Number(statSync(mount.mountpoint + first, { bigint: true }).ino));
      expect(readFileSync(`/proc/${said.pid}/cgroup`, 'utf8')).toContain(moved);
      const a = new OwnerAttribution();
      const engine = new ChurnEngine({ owners: {} });
      a.enrich([ev]);
      engine.ingest([ev]);
      // enrichment never waits: the reads started with the NEW; the flow end gets what they found
      await waitFor(() => a.stats.exe.read + a.stats.cgroups.byWalk + a.stats.cgroups.unresolved >= 2 || null, 'the exe and the cgroup to be read');
      // seconds later, as on a quiet host: the next batch is the flow's end
      const gone = { ...ev, event: 'destroy', time: ev.time + 5_000_000 } as ConntrackEvent;
      a.enrich([gone]);
      const [end] = engine.ingest([gone]);
      expect(end.process).toMatchObject({
        pid: said.pid,
        comm: 'node',
        cgroup: first,
        unit: `ctwatch-probe-${process.pid}.service`,
        exe: realpathSync(process.execPath),
      });
      // /proc named the cgroup it moved to, which is not the stamp's: found by walking cgroupfs
      expect(a.stats.cgroups).toMatchObject({ byPid: 0, byWalk: 1 });
      expect(a.stats.exe).toMatchObject({ read: 1, reused: 0 });
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    }
  }, 30_000);
});
