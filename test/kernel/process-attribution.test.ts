/**
 * sock_diag attribution (the fallback, joined on the reader thread: native/attribution/diag_join.cc)
 * against the real kernel: a leaky client (a new connection per request) and a
 * pooled one (a few long connections) in a test namespace, each its own process with its own title
 * (`node --title=...`, so /proc/PID/comm differs); a process that exits while its flows sit in
 * TIME_WAIT, and a later process that gets the same pid; and flows that end in a namespace (the
 * reply-direction socket, and the listener of a server that has not accepted yet), seen from two
 * namespaces at once by one attribution stage.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { LiveSource } from '../../src/source/live.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import type { FlowEnd, ProcessInfo } from '../../src/flow/types.js';
import { OwnerAttribution } from '../../src/pipeline/attribution.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import { openSockdiag } from '../../src/process/attribution.js';
import { processKey } from '../../src/flow/keys.js';
import { GENERATOR, createNetns, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
const NODE_EXE = realpathSync(process.execPath);

interface Proc {
  child: ChildProcess;
  pid: number;
  out: () => string;
  exited: Promise<number | null>;
}

/** Starts a node program in the namespace under a title of its own. `ip netns exec` execs the
 * command, so the child's pid is the node process's. */
function startNode(ns: Netns, title: string, args: string[]): Proc {
  const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, `--title=${title}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, pid: child.pid!, out: () => out, exited };
}

const generator = (ns: Netns, title: string, spec: unknown) => startNode(ns, title, [GENERATOR, JSON.stringify(spec)]);

async function listening(ns: Netns, port: number) {
  await waitFor(async () => (await ns.exec('ss', ['-Htln', `sport = :${port}`])).stdout.trim() !== '', `a listener on port ${port}`);
}

interface Attribution {
  process: ProcessInfo | null;
  reason?: string;
  side?: 'origin' | 'listener';
}

/** Sources opened with the sock_diag join and one attribution stage fed the way the pipeline feeds
 * it: every batch is enriched first, then goes to its namespace's engine, whose flow ends name the
 * owner the flow table kept. */
class Harness {
  readonly sources: LiveSource[];
  readonly events: ConntrackEvent[] = [];
  readonly atDestroy: [ConntrackEvent, Attribution][] = [];
  readonly results: [ConntrackEvent, ProcessInfo | null, string | undefined][] = [];
  readonly attribution = new OwnerAttribution({ mode: 'sockdiag' });
  private readonly loops: Promise<void>[];
  private readonly byFlow = new Map<string, Attribution>();

  constructor(namespaces: string[]) {
    const handle = openSockdiag();
    this.sources = namespaces.map((netns) => new LiveSource({ netns, attribution: handle }));
    handle.close();
    this.loops = this.sources.map(async (s) => {
      const engine = new ChurnEngine({ owners: {} });
      for await (const batch of s) {
        this.attribution.enrich(batch);
        const ended = new Map<number, FlowEnd>();
        for (const end of engine.ingest(batch)) if (end.reason === 'destroy') ended.set(end.id, end);
        for (const e of batch) {
          if (e.event !== 'new' && e.event !== 'destroy') continue;
          this.events.push(e);
          if (e.event === 'new') {
            const r: Attribution = { process: e.process ?? null, reason: e.unattributed, side: e.process?.side };
            this.results.push([e, r.process, r.reason]);
            this.byFlow.set(key(e), r);
          } else {
            const end = ended.get(e.id)!;
            this.atDestroy.push([e, { process: end.process ?? null, reason: end.unattributed }]);
          }
        }
      }
    });
  }

  news(port: number): ConntrackEvent[] {
    return this.events.filter((e) => e.event === 'new' && e.dport === port);
  }

  lookup(e: ConntrackEvent): Attribution {
    return this.byFlow.get(key(e)) ?? { process: null, reason: 'unseen' };
  }

  processOf(e: ConntrackEvent): ProcessInfo | null {
    return this.lookup(e).process;
  }

  keyOf(e: ConntrackEvent): string | null {
    return processKey(this.processOf(e));
  }

  async close() {
    await Promise.all(this.sources.map((s) => s.close()));
    await Promise.all(this.loops);
    await this.attribution.close();
  }
}

const key = (e: ConntrackEvent) => `${e.netns}|${e.proto}|${e.src}|${e.sport}|${e.dst}|${e.dport}`;

describe('process attribution (real kernel)', () => {
  let ns: Netns;
  let server: Proc;
  let h: Harness;

  beforeAll(async () => {
    ns = await createNetns();
    server = generator(ns, 'ct-server', { listen: [{ proto: 'tcp', host: '127.0.0.2', port: 7000 }], lingerMs: 120_000 });
    await listening(ns, 7000);
    h = new Harness([ns.name]);
  });
  afterAll(async () => {
    await h?.close();
    server?.child.kill('SIGKILL');
    await ns?.destroy();
  });

  it('leaky and pooled clients: churn per process puts the leaky one first, with its pid and comm; the pooled flows are attributed too', async () => {
    const leaky = generator(ns, 'leaky-client', {
      run: [{ kind: 'connect', host: '127.0.0.2', port: 7000, from: '127.0.0.3', count: 300, rate: 200, holdMs: 100, concurrency: 32, report: true }],
    });
    const pooled = generator(ns, 'pooled-client', {
      run: [{ kind: 'pool', host: '127.0.0.2', port: 7000, from: '127.0.0.4', connections: 4, rate: 50, durationMs: 2_500 }],
    });
    expect(await leaky.exited).toBe(0);
    expect(await pooled.exited).toBe(0);
    const tuples = (JSON.parse(leaky.out().trim().split('\n')[0]) as { tuples: { src: string; sport: number }[] }).tuples;
    expect(tuples).toHaveLength(300);

    await waitFor(() => h.news(7000).length >= 304, 'NEW for every connection');
    const ours = h.results.filter(([e]) => e.dport === 7000);
    expect(ours).toHaveLength(304);

    // Never a wrong process: every attributed flow belongs to the process that made it.
    for (const [e, p] of ours) {
      if (!p) continue;
      expect(p.pid, `${e.src}:${e.sport}`).toBe(e.src === '127.0.0.3' ? leaky.pid : pooled.pid);
    }
    // Churn per process, as the engine counts it from onResult.
    const churn = new Map<string, number>();
    for (const [, p] of ours) {
      const k = processKey(p);
      if (k) churn.set(k, (churn.get(k) ?? 0) + 1);
    }
    const ranked = [...churn.entries()].sort((a, b) => b[1] - a[1]);
    expect(ranked[0][0]).toBe(`leaky-client[${leaky.pid}]`);
    // Each leaky socket lives 100 ms; a lookup takes a few: all of them are attributed.
    expect(ranked[0][1]).toBeGreaterThanOrEqual(297);
    expect(churn.get(`pooled-client[${pooled.pid}]`)).toBe(4);

    const leakyFlow = h.news(7000).find((e) => e.src === '127.0.0.3')!;
    expect(h.lookup(leakyFlow)).toMatchObject({ side: 'origin' });
    expect(h.processOf(leakyFlow)).toMatchObject({ pid: leaky.pid, comm: 'leaky-client', uid: 0 });
    const pooledFlow = h.news(7000).find((e) => e.src === '127.0.0.4')!;
    expect(h.keyOf(pooledFlow)).toBe(`pooled-client[${pooled.pid}]`);
    expect(h.attribution.stats.reasons).toMatchObject({ 'not-local': 0, overload: 0, shared: 0 });

    // Both clients have exited; their flows' DESTROY still names them.
    await ns.exec('conntrack', ['-D', '-p', 'tcp', '--dport', '7000']);
    await waitFor(() => h.atDestroy.filter(([e]) => e.dport === 7000).length >= 304, 'DESTROY for every connection');
    for (const [e, a] of h.atDestroy.filter(([d]) => d.dport === 7000)) {
      const expected = e.src === '127.0.0.3' ? leaky.pid : pooled.pid;
      if (a.process) expect(a.process.pid).toBe(expected);
    }
    const destroyedLeaky = h.atDestroy.filter(([e, a]) => e.src === '127.0.0.3' && a.process?.comm === 'leaky-client');
    expect(destroyedLeaky.length).toBeGreaterThanOrEqual(297);
    // Enriched by the end (read while the process lived): its executable, user and cgroup.
    expect(destroyedLeaky[0][1].process).toMatchObject({ exe: NODE_EXE, user: 'root' });
    expect(typeof destroyedLeaky[0][1].process!.cgroup, JSON.stringify([destroyedLeaky[0][0].owner, destroyedLeaky[0][1].process, h.attribution.stats.cgroups])).toBe('string');
  });

  it('a process that exits while its flows are in TIME_WAIT keeps them; a later process with the same pid gets only its own', async () => {
    const doomed = generator(ns, 'doomed-client', {
      run: [{ kind: 'connect', host: '127.0.0.2', port: 7000, from: '127.0.0.5', count: 20, rate: 0, holdMs: 300, concurrency: 20 }],
    });
    expect(await doomed.exited).toBe(0);
    await waitFor(() => h.news(7000).filter((e) => e.src === '127.0.0.5').length >= 20, 'NEW for the doomed flows');
    const doomedNews = h.news(7000).filter((e) => e.src === '127.0.0.5');
    for (const e of doomedNews) expect(h.keyOf(e)).toBe(`doomed-client[${doomed.pid}]`);
    // The client closed first: the kernel holds its ends in TIME_WAIT, and so does conntrack.
    const { stdout } = await ns.exec('conntrack', ['-L', '-p', 'tcp', '-s', '127.0.0.5']);
    expect(stdout.match(/TIME_WAIT/g)?.length).toBe(20);

    // Take the dead process's pid for a new one: the kernel hands out ns_last_pid + 1 next.
    const impostorScript = `
      const net = require('net');
      process.on('SIGUSR2', async () => {
        for (let i = 0; i < 5; i++) await new Promise((r) => { const s = net.connect({ host: '127.0.0.2', port: 7000, localAddress: '127.0.0.6' }, () => setTimeout(() => { s.end(); r(); }, 300)); });
        process.exit(0);
      });
      setInterval(() => {}, 1000);
      process.stdout.write('ready\\n');`;
    let impostor: Proc | null = null;
    for (let attempt = 0; attempt < 200 && !impostor; attempt++) {
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(doomed.pid - 1));
      const p = startNode(ns, 'impostor', ['-e', impostorScript]);
      if (p.pid === doomed.pid) impostor = p;
      else {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }
    expect(impostor, 'a process reusing the pid (another process took it 200 times)').not.toBeNull();
    await waitFor(() => impostor!.out().includes('ready'), 'the impostor to start');
    expect(readFileSync(`/proc/${doomed.pid}/comm`, 'utf8').trim()).toBe('impostor');
    impostor!.child.kill('SIGUSR2');
    expect(await impostor!.exited).toBe(0);
    await waitFor(() => h.news(7000).filter((e) => e.src === '127.0.0.6').length >= 5, 'NEW for the impostor flows');
    for (const e of h.news(7000).filter((x) => x.src === '127.0.0.6')) {
      expect(h.processOf(e)).toMatchObject({ pid: doomed.pid, comm: 'impostor' });
    }

    // TIME_WAIT ends (flushed here): every doomed flow's DESTROY names the dead process, not the
    // live one that now has its pid.
    await ns.exec('conntrack', ['-D', '-p', 'tcp', '-s', '127.0.0.5']);
    await waitFor(() => h.atDestroy.filter(([e]) => e.src === '127.0.0.5').length >= 20, 'DESTROY for the doomed flows');
    for (const [e, a] of h.atDestroy.filter(([d]) => d.src === '127.0.0.5')) {
      expect(e.state).toBe('TIME_WAIT');
      expect(a.process).toMatchObject({ pid: doomed.pid, comm: 'doomed-client' });
    }
  });
});

describe('flows that end here, seen from two namespaces by one attribution stage', () => {
  let a: Netns;
  let b: Netns;
  let server: Proc;
  let sleeper: ChildProcess;
  let h: Harness;

  beforeAll(async () => {
    a = await createNetns();
    b = await createNetns();
    await run('ip', ['-n', a.name, 'link', 'add', 'ctwa', 'type', 'veth', 'peer', 'name', 'ctwb', 'netns', b.name]);
    await run('ip', ['-n', a.name, 'addr', 'add', '10.201.0.1/24', 'dev', 'ctwa']);
    await run('ip', ['-n', b.name, 'addr', 'add', '10.201.0.2/24', 'dev', 'ctwb']);
    await run('ip', ['-n', a.name, 'link', 'set', 'ctwa', 'up']);
    await run('ip', ['-n', b.name, 'link', 'set', 'ctwb', 'up']);
    server = generator(b, 'b-server', { listen: [{ proto: 'tcp', host: '10.201.0.2', port: 7000 }], lingerMs: 120_000 });
    // A server that never calls accept(): its connections wait in the kernel's accept queue.
    sleeper = spawn('ip', ['netns', 'exec', b.name, '/usr/bin/python3', '-c', 'import socket,time\ns=socket.socket()\ns.bind(("10.201.0.2",7100))\ns.listen(64)\ntime.sleep(600)'], { stdio: 'ignore' });
    await listening(b, 7000);
    await listening(b, 7100);
    h = new Harness([a.name, b.name]);
  });
  afterAll(async () => {
    await h?.close();
    server?.child.kill('SIGKILL');
    sleeper?.kill('SIGKILL');
    await a?.destroy();
    await b?.destroy();
  });

  it('the client in its namespace, the server in its own, and a not-yet-accepted flow to the listener\'s process', async () => {
    const client = generator(a, 'a-client', {
      run: [{ kind: 'connect', host: '10.201.0.2', port: 7000, count: 10, rate: 0, holdMs: 300, concurrency: 10 }],
    });
    // The generator waits for the server to close; this one does not (nobody accepts on 7100).
    const prober = startNode(a, 'a-prober', [
      '-e',
      `const net = require('net');
       for (let i = 0; i < 3; i++) net.connect({ host: '10.201.0.2', port: 7100 }).on('error', () => {});
       setTimeout(() => process.exit(0), 1500);`,
    ]);
    expect(await client.exited).toBe(0);
    expect(await prober.exited).toBe(0);
    await waitFor(() => h.news(7000).length >= 20 && h.news(7100).length >= 6, 'NEW in both namespaces');
    const inA = (port: number) => h.news(port).filter((e) => e.netns === a.name);
    const inB = (port: number) => h.news(port).filter((e) => e.netns === b.name);
    for (const e of inA(7000)) {
      expect(h.lookup(e)).toMatchObject({ side: 'origin', process: { pid: client.pid, comm: 'a-client' } });
    }
    for (const e of inA(7100)) {
      expect(h.lookup(e)).toMatchObject({ side: 'origin', process: { pid: prober.pid, comm: 'a-prober' } });
    }
    // The accepted socket, or (not accepted yet) the listener: both `listener`, as in eBPF mode.
    for (const e of inB(7000)) {
      expect(h.lookup(e)).toMatchObject({ side: 'listener', process: { pid: server.pid, comm: 'b-server' } });
    }
    for (const e of inB(7100)) {
      expect(h.lookup(e)).toMatchObject({ side: 'listener', process: { pid: sleeper.pid } });
    }
    expect(h.attribution.stats.reasons).toMatchObject({ 'not-local': 0, 'no-pid': 0 });
  });
});
