/**
 * SockDiag against the real kernel, in a namespace of its own: exact-tuple lookups for TCP (both
 * ends, the listener, TIME_WAIT), UDP (connected and not), IPv6; the local routes; big batches;
 * typed errors; and close/exit behaviour in child processes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { SockDiag, SOCKET_STATE, type SocketQuery } from '../../src/process/sockdiag.js';
import { ROOT, createNetns, waitFor, type Netns } from '../helpers/netns.js';

interface End {
  local: string;
  lport: number;
  remote: string;
  rport: number;
}

function socketInodes(pid: number): Set<number> {
  const out = new Set<number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(Number(m[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

describe('SockDiag (real kernel, own namespace)', () => {
  let ns: Netns;
  let holder: ChildProcess;
  let info: { pid: number; tcp4: End; tcp6: End; udp4: End };
  let out = '';
  let diag: SockDiag;

  beforeAll(async () => {
    ns = await createNetns();
    holder = ns.spawn(process.execPath, [join(ROOT, 'test/fixtures/process/sockets.mjs')]);
    holder.stdout!.on('data', (d) => (out += d));
    await waitFor(() => out.includes('\n'), 'the socket holder to report');
    info = JSON.parse(out.split('\n')[0]);
    diag = new SockDiag({ netns: ns.name });
  });
  afterAll(async () => {
    diag?.close();
    holder?.kill('SIGKILL');
    await ns?.destroy();
  });

  const q = (e: End, proto: 'tcp' | 'udp', family: 'ipv4' | 'ipv6' = 'ipv4'): SocketQuery => ({ family, proto, local: e.local, lport: e.lport, remote: e.remote, rport: e.rport });
  const reverse = (e: End): End => ({ local: e.remote, lport: e.rport, remote: e.local, rport: e.lport });

  it('finds both ends of a TCP connection and the listener, with inodes the process holds', async () => {
    const [client, server, listener, none] = await diag.lookup([
      q(info.tcp4, 'tcp'),
      q(reverse(info.tcp4), 'tcp'),
      { family: 'ipv4', proto: 'tcp', local: '127.0.0.2', lport: 7000, remote: null, rport: 0 },
      { family: 'ipv4', proto: 'tcp', local: '127.0.0.9', lport: 7000, remote: '127.0.0.1', rport: 1 },
    ]);
    const held = socketInodes(info.pid);
    expect(client).toMatchObject({ errno: 0, uid: 0, state: SOCKET_STATE.ESTABLISHED, lport: info.tcp4.lport, rport: 7000 });
    expect(server).toMatchObject({ errno: 0, state: SOCKET_STATE.ESTABLISHED, lport: 7000, rport: info.tcp4.lport });
    expect(listener).toMatchObject({ errno: 0, state: SOCKET_STATE.LISTEN, lport: 7000, rport: 0 });
    for (const a of [client, server, listener]) expect(held.has(a.inode)).toBe(true);
    expect(new Set([client.inode, server.inode, listener.inode]).size).toBe(3);
    expect(none).toMatchObject({ errno: 2, inode: 0 });
  });

  it('IPv6 TCP and UDP (connected client, unconnected server)', async () => {
    const [v6, udpClient, udpServer, udpWild] = await diag.lookup([
      q(info.tcp6, 'tcp', 'ipv6'),
      q(info.udp4, 'udp'),
      q(reverse(info.udp4), 'udp'),
      { family: 'ipv4', proto: 'udp', local: '127.0.0.3', lport: 5353, remote: null, rport: 0 },
    ]);
    const held = socketInodes(info.pid);
    expect(v6).toMatchObject({ errno: 0, state: SOCKET_STATE.ESTABLISHED });
    expect(udpClient).toMatchObject({ errno: 0, state: SOCKET_STATE.ESTABLISHED, lport: info.udp4.lport, rport: 5353 });
    // The server's socket is not connected: the kernel finds it by its local end alone.
    expect(udpServer).toMatchObject({ errno: 0, state: SOCKET_STATE.CLOSE, lport: 5353, rport: 0 });
    expect(udpWild.inode).toBe(udpServer.inode);
    for (const a of [v6, udpClient, udpServer]) expect(held.has(a.inode)).toBe(true);
  });

  it('a client end closed first is TIME_WAIT with no inode: the socket is gone from the process', async () => {
    holder.kill('SIGUSR2'); // `ip netns exec` execs node: this pid is the node process
    await waitFor(() => out.includes('closed'), 'the client to close');
    const [a] = await diag.lookup([q(info.tcp4, 'tcp')]);
    expect(a).toMatchObject({ errno: 0, inode: 0, state: SOCKET_STATE.TIME_WAIT });
  });

  it('lists the namespace\'s local routes', async () => {
    const routes = await diag.localRoutes();
    expect(routes).toEqual(expect.arrayContaining(['127.0.0.0/8', '::1/128']));
  });

  it('answers a batch of 20 000 queries in one call, every one', async () => {
    const queries: SocketQuery[] = Array.from({ length: 20_000 }, (_, i) => ({ family: 'ipv4', proto: 'tcp', local: '127.0.0.1', lport: 1024 + i, remote: '127.0.0.2', rport: 7000 }));
    queries[12_345] = { family: 'ipv4', proto: 'tcp', local: '127.0.0.2', lport: 7000, remote: null, rport: 0 };
    const t0 = performance.now();
    const answers = await diag.lookup(queries);
    const ms = performance.now() - t0;
    expect(answers).toHaveLength(20_000);
    expect(answers.filter((a) => a.errno === 2)).toHaveLength(19_999);
    expect(answers[12_345].state).toBe(SOCKET_STATE.LISTEN);
    expect(diag.counters.retried).toBe(0);
    // A generous bound: ~1 µs per query in the kernel; catches a per-query round trip.
    expect(ms).toBeLessThan(2_000);
  });

  it('typed errors: missing namespace, bad query, closed', async () => {
    expect(() => new SockDiag({ netns: 'ctwatch-no-such-ns' })).toThrow(expect.objectContaining({ code: 'ERR_NETNS_NOT_FOUND', message: expect.stringContaining("ip netns list") }));
    await expect(diag.lookup([{ family: 'ipv4', proto: 'tcp', local: '127.0.0.1', lport: 70000, remote: null, rport: 0 }])).rejects.toMatchObject({ code: 'ERR_SOCKDIAG_QUERY' });
    await expect(diag.lookup([{ family: 'ipv4', proto: 'sctp' as 'tcp', local: '127.0.0.1', lport: 1, remote: null, rport: 0 }])).rejects.toMatchObject({ code: 'ERR_SOCKDIAG_QUERY' });
    const d = new SockDiag({ netns: ns.name });
    d.close();
    await expect(d.lookup([{ family: 'ipv4', proto: 'tcp', local: '127.0.0.1', lport: 1, remote: null, rport: 0 }])).rejects.toMatchObject({ code: 'ERR_SOCKDIAG_CLOSED', message: expect.stringContaining('open a new one') });
  });

  it('capture: what a socket was at NEW time answers after the socket and its process are gone', async () => {
    const cap = new SockDiag({ netns: ns.name, capture: true });
    try {
      // A client that opens a connection, holds it 50 ms, resets it and exits.
      const script = `
        const net = require('net');
        const s = net.connect({ host: '127.0.0.2', port: 7000, localAddress: '127.0.0.7' }, () => {
          process.stdout.write(JSON.stringify({ pid: process.pid, lport: s.localPort }) + '\\n');
          setTimeout(() => { s.resetAndDestroy(); setTimeout(() => process.exit(0), 20); }, 50);
        });`;
      const p = ns.spawn(process.execPath, ['-e', script]);
      let o = '';
      p.stdout!.on('data', (d) => (o += d));
      await new Promise((r) => p.on('exit', r));
      const client = JSON.parse(o) as { pid: number; lport: number };
      const query: SocketQuery = { family: 'ipv4', proto: 'tcp', local: '127.0.0.7', lport: client.lport, remote: '127.0.0.2', rport: 7000 };
      // Without capture the kernel has nothing left for this tuple.
      const [now] = await diag.lookup([query]);
      expect(now.errno).toBe(2);
      const [then] = await cap.lookup([query]);
      expect(then).toMatchObject({ errno: 0, captured: true, uid: 0, pid: client.pid });
      expect(then.inode).toBeGreaterThan(0);
      expect(then.start32).toBeGreaterThan(0);
      const c = cap.counters.capture;
      expect(c.enabled).toBe(true);
      expect(c.hits).toBe(1);
      expect(c.sockets).toBeGreaterThanOrEqual(1);
      expect(diag.counters.capture.enabled).toBe(false);
    } finally {
      cap.close();
    }
  });

  describe('close and exit (child processes)', () => {
    const child = (mode: string, capture = false) =>
      new Promise<{ code: number | null; signal: string | null; out: string; err: string; ms: number }>((resolve) => {
        const started = Date.now();
        const p = spawn(process.execPath, [join(ROOT, 'test/fixtures/process/sockdiag-child.mjs'), mode, ns.name, capture ? 'capture' : ''], { stdio: ['ignore', 'pipe', 'pipe'] });
        let o = '';
        let e = '';
        p.stdout.on('data', (d) => (o += d));
        p.stderr.on('data', (d) => (e += d));
        const killer = setTimeout(() => p.kill('SIGKILL'), 15_000);
        p.on('exit', (code, signal) => {
          clearTimeout(killer);
          resolve({ code, signal, out: o, err: e, ms: Date.now() - started });
        });
      });

    it('an open, idle SockDiag never keeps the process alive', async () => {
      const r = await child('forgotten');
      expect(r).toMatchObject({ code: 0, signal: null });
      expect(r.ms).toBeLessThan(5_000);
    });
    it('with capture on too (its own conntrack subscription polled by the thread)', async () => {
      for (const mode of ['forgotten', 'close-pending', 'exit-during']) {
        const r = await child(mode, true);
        expect(r, mode).toMatchObject({ code: 0, signal: null });
        expect(r.ms).toBeLessThan(5_000);
      }
    });
    it('a pending lookup keeps it alive until answered, then nothing does', async () => {
      const r = await child('lookup-no-close');
      expect(r).toMatchObject({ code: 0, signal: null });
      expect(r.out).toContain('answers 10');
    });
    it('close() twice is harmless', async () => {
      const r = await child('close-twice');
      expect(r).toMatchObject({ code: 0, signal: null });
      expect(r.out).toContain('closed');
    });
    it('close() with lookups queued settles every one (answered or ERR_SOCKDIAG_CLOSED)', async () => {
      const r = await child('close-pending');
      expect(r).toMatchObject({ code: 0, signal: null });
      const line = r.out.split('\n')[1];
      expect(line.split(' ')).toHaveLength(3);
      for (const s of line.split(' ')) expect(s).toMatch(/^(ok:\d+|err:ERR_SOCKDIAG_CLOSED)$/);
      expect(r.out).toContain('after ERR_SOCKDIAG_CLOSED');
    });
    it('process.exit() with lookups in flight exits cleanly', async () => {
      const r = await child('exit-during');
      expect(r).toMatchObject({ code: 0, signal: null });
    });
    it('an uncaught exception with lookups in flight exits with the error, no abort', async () => {
      const r = await child('throw-open');
      expect(r.code).toBe(1);
      expect(r.signal).toBeNull();
      expect(r.err).toContain('boom');
    });
  });
});
