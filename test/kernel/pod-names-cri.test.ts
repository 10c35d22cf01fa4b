/**
 * Pod names through the CRI socket, against real parts: a real gRPC server (grpc-js) serving
 * runtime.v1.RuntimeService/ListPodSandbox on a unix socket in a root-only directory, and a process
 * this test places in a kubepods-style cgroup (systemd driver names) under the cgroup2 mount,
 * connecting from a namespace the test creates. `ctwatch top` names the pod by namespace/name;
 * a socket owned by nobody is refused with one line, a server that never answers meets the
 * deadline (warned, counted), and no socket at all changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import { cgroup2Mount } from '../../src/process/cgroupfs.js';
import { PodNames } from '../../src/process/cri.js';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const mount = cgroup2Mount(readFileSync('/proc/self/mountinfo', 'utf8'));
if (!mount) throw new Error('no cgroup2 mount in /proc/self/mountinfo: the pod cgroup needs cgroup v2');

const PROTO = fileURLToPath(new URL('../../src/process/cri.proto', import.meta.url));
const UID = '7c1e2a90-3b4d-4e5f-8a6b-9c0d1e2f3a4b';
const OTHER = '00000000-1111-2222-3333-444444444444';
const PODS = [
  { id: 'a'.repeat(64), metadata: { name: 'cart-7d9f', uid: UID, namespace: 'shop', attempt: 0 } },
  { id: 'b'.repeat(64), metadata: { name: 'coredns-5d78c9869d-x2x9q', uid: OTHER, namespace: 'kube-system', attempt: 1 } },
];

interface Fixture {
  socket: string;
  calls: number;
  close(): Promise<void>;
}

/** A CRI server on a unix socket in a fresh root 0700 directory; `hang`: never answers. */
async function criServer(dir: string, hang = false): Promise<Fixture> {
  const def = loader.loadSync(PROTO, { keepCase: true, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: { service: grpc.ServiceDefinition } } } };
  const server = new grpc.Server();
  const f: Fixture = { socket: join(dir, 'containerd.sock'), calls: 0, close: async () => void server.forceShutdown() };
  server.addService(pkg.runtime.v1.RuntimeService.service, {
    ListPodSandbox: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      f.calls++;
      if (!hang) cb(null, { items: PODS });
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${f.socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return f;
}

describe('pod names through the CRI socket (real gRPC server, real kernel, own namespace and cgroups)', () => {
  const slice = '/kubepods.slice';
  const qos = `${slice}/kubepods-burstable.slice`;
  const pod = `${qos}/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice`;
  const scope = `${pod}/cri-containerd-${'c'.repeat(64)}.scope`;
  let made: string[] = [];
  let ns: Netns;
  let dir: string;
  const servers: Fixture[] = [];

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/ctwatch-cri-');
    for (const d of [slice, qos, pod, scope]) {
      try {
        mkdirSync(mount.mountpoint + d);
        made.push(d);
      } catch (err) {
        // a real node's kubepods.slice: use it, remove only what this test made
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    ns = await createNetns();
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await ns?.destroy();
    for (const d of made.reverse()) {
      try {
        rmdirSync(mount.mountpoint + d);
      } catch {
        /* still populated: the kernel frees it when its last process exits */
      }
    }
    made = [];
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('top names the pod (namespace/name) its process connects from', async () => {
    const server = await criServer(mkdtempSync(join(dir, 'ok-')));
    servers.push(server);
    // the client waits to be moved into the pod's cgroup (from outside: `ip netns exec` mounts a
    // sysfs of its own), then connects every 50 ms (nothing listens: each SYN meets a RST)
    const script = `
      const net = require('net');
      process.on('SIGUSR1', () => setInterval(() => net.connect({ host: '127.0.0.1', port: 9 }).on('error', () => {}), 50));
      process.stdout.write(JSON.stringify({ pid: process.pid }) + '\\n');
      setTimeout(() => {}, 30000);`;
    const client = track(ns.spawn(process.execPath, ['-e', script]));
    let out = '';
    client.stdout!.on('data', (d) => (out += d));
    const top = track(spawn(process.execPath, [CLI, 'top', '-b', '--netns', ns.name, '--attribution', 'ebpf', '--cri-socket', server.socket, '--duration', '20s'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let screen = '';
    let err = '';
    top.stdout!.on('data', (d) => (screen += d));
    top.stderr!.on('data', (d) => (err += d));
    try {
      const said = await waitFor(() => (out.includes('\n') ? (JSON.parse(out.split('\n')[0]) as { pid: number }) : null), 'the client to start');
      writeFileSync(mount.mountpoint + scope + '/cgroup.procs', String(said.pid));
      await waitFor(() => screen.includes('ctwatch top') || top.exitCode !== null || null, `top to draw (stderr: ${err})`, 15_000);
      process.kill(said.pid, 'SIGUSR1');
      await waitFor(() => screen.includes('pod:shop/cart-7d9f burstable') || top.exitCode !== null || null, `top to name the pod (stderr: ${err}, last screen: ${screen.slice(-1500)})`, 15_000);
      expect(screen).toContain('pod:shop/cart-7d9f burstable');
      expect(server.calls).toBeGreaterThanOrEqual(1);
      expect(err).not.toMatch(/pod names:/);
      // SIGTERM drains and exits 0: nothing of the gRPC client keeps the process alive
      top.kill('SIGTERM');
      const code = await waitFor(() => (top.exitCode !== null || top.signalCode !== null ? { code: top.exitCode } : null), 'top to exit on SIGTERM', 10_000);
      expect(code).toEqual({ code: 0 });
    } finally {
      client.kill('SIGKILL');
      top.kill('SIGTERM');
      await new Promise((r) => (top.exitCode !== null || top.signalCode !== null ? r(null) : top.once('exit', r)));
    }
  }, 60_000);

  it('a socket owned by nobody is refused with one line, counted, and never called', async () => {
    const server = await criServer(mkdtempSync(join(dir, 'nobody-')));
    servers.push(server);
    chownSync(server.socket, 65534, 65534);
    const lines: string[] = [];
    const pods = new PodNames({ socket: server.socket, retryMs: 0 });
    pods.onWarn = (l) => lines.push(l);
    await pods.refresh();
    await pods.refresh();
    await pods.close();
    expect(pods.name(UID)).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`CRI socket ${server.socket}`);
    expect(lines[0]).toContain('belongs to');
    expect(pods.stats.failures.refused).toBe(2);
    expect(server.calls).toBe(0);
  });

  it('a server that never answers meets the deadline: one warning, counted, pods keep their UID', async () => {
    const server = await criServer(mkdtempSync(join(dir, 'hang-')), true);
    servers.push(server);
    const lines: string[] = [];
    const pods = new PodNames({ socket: server.socket, deadlineMs: 300 });
    pods.onWarn = (l) => lines.push(l);
    const t0 = performance.now();
    await pods.refresh();
    expect(performance.now() - t0).toBeLessThan(5_000);
    await pods.refresh();
    await pods.close();
    expect(server.calls).toBe(2);
    expect(pods.stats.failures.deadline).toBe(2);
    expect(lines).toEqual([expect.stringContaining('no answer before the deadline')]);
    expect(pods.name(UID)).toBeUndefined();
  });

  it('the real socket answers: names by UID, a refresh for an unknown UID rate-limited', async () => {
    const server = await criServer(mkdtempSync(join(dir, 'cache-')));
    servers.push(server);
    let now = 0;
    const pods = new PodNames({ socket: server.socket, retryMs: 5_000, refreshMs: 60_000, now: () => now });
    await pods.refresh();
    expect(pods.name(UID)).toEqual({ name: 'cart-7d9f', namespace: 'shop' });
    expect(pods.name(OTHER)).toEqual({ name: 'coredns-5d78c9869d-x2x9q', namespace: 'kube-system' });
    pods.name('99999999-1111-2222-3333-444444444444'); // unknown, but asked just now: no call
    now = 6_000;
    pods.name('99999999-1111-2222-3333-444444444444'); // unknown, 6 s later: one call
    await pods.refresh();
    await pods.close();
    expect(server.calls).toBe(2);
    expect(pods.stats).toMatchObject({ lookups: 2, pods: 2 });
  });

  it('no socket: silent, nothing asked, nothing counted', async () => {
    const lines: string[] = [];
    const pods = new PodNames({ candidates: [join(dir, 'absent', 'containerd.sock'), join(dir, 'crio.sock')], retryMs: 0 });
    pods.onWarn = (l) => lines.push(l);
    expect(pods.name(UID)).toBeUndefined();
    await pods.refresh();
    await pods.close();
    expect(lines).toEqual([]);
    expect(pods.stats).toEqual({ lookups: 0, pods: 0, failures: { refused: 0, deadline: 0, unavailable: 0, error: 0, invalid: 0 } });
  });
});
