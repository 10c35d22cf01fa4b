/**
 * NAT-aware views against the real kernel. DNAT: an output-hook nat rule translates a service
 * address (127.0.0.100:6379, what kube-proxy does for a ClusterIP) to a backend (127.0.0.5:6379),
 * and a leak goes through the service address: flow lines carry the backend in `nat`, the churn
 * snapshot names it per service, `top` shows `service → backend`, and the churn alert names it.
 * SNAT: namespace A masquerades its own connections out of a veth to namespace B; with a port range
 * of 100 (the rule's `masquerade to :40000-40099`, read from the ruleset) 90 open connections to one server use 90 % of
 * it: the churn snapshot's `snat` view, `top`'s SNAT table and the rule snat_port_exhaustion say so,
 * and the flow lines carry the translated source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { RECORDING, WATCHING, startCli, type CliRun } from '../helpers/cli.js';
import { writeOnlyRules } from '../helpers/rules.js';
import { KERNEL_SNAT_RANGE, readSnatPortRange } from '../../src/pipeline/port-range.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { OverflowRecovery, type ResyncRecord } from '../../src/pipeline/recovery.js';
import { LiveSource } from '../../src/source/live.js';
import type { FlowEnd } from '../../src/flow/types.js';

const run = promisify(execFile);

/** `watch` with RULES writing alerts and `record --flows --churn 1s` writing flows, both in NETNS. */
function watchAndRecord(netns: string, rules: string, dir: string) {
  const alerts = join(dir, 'alerts.jsonl');
  const recording = join(dir, 'flows.jsonl');
  const watch = startCli(['watch', '--netns', netns, '--rules', rules, '-o', alerts, '--status', '0', '--no-processes']);
  const record = startCli(['record', '--netns', netns, '--flows', '--churn', '1s', '-o', recording, '--no-processes']);
  return { alerts, recording, watch, record };
}

async function started(watch: CliRun, record: CliRun): Promise<void> {
  await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start');
  await waitFor(() => record.stderr.includes(RECORDING), 'record to start');
}

describe('DNAT: a leak through a service address translated to a backend (own namespace)', () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-nat-'));
  beforeAll(async () => {
    ns = await createNetns();
    await ns.dnat('tcp', '127.0.0.100:6379', '127.0.0.5:6379');
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('flows, churn, top and the churn alert carry service → backend', async () => {
    const rules = writeOnlyRules(join(dir, 'rules.yaml'), {
      rules: { churn_per_destination: { rate: 'new1', threshold: 300, for: '0s' } },
    });
    const { alerts, recording, watch, record } = watchAndRecord(ns.name, rules, dir);
    let screen = '';
    try {
      await started(watch, record);
      const top = run(process.execPath, [CLI, 'top', '--netns', ns.name, '--batch', '--duration', '3s', '--no-processes'], { timeout: 30_000 });
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }],
        run: [{ kind: 'connect', host: '127.0.0.100', port: 6379, from: '127.0.1.7', count: 2000, rate: 1000, concurrency: 32 }],
      });
      screen = (await top).stdout;
      await waitFor(() => existsSync(alerts) && readFileSync(alerts, 'utf8').includes('"churn_per_destination"'), 'the churn alert', 10_000, 100);
      // a churn line naming the backend, and the leak's flows ended
      const ended = () => readFileSync(recording, 'utf8').split('\n').filter((l) => l.includes('"event":"flow"') && l.includes('"dst":"127.0.0.100"')).length;
      await waitFor(() => existsSync(recording) && readFileSync(recording, 'utf8').includes('"backend":"127.0.0.5:6379"'), 'a churn line naming the backend', 10_000, 100);
      await ns.flush();
      await waitFor(() => ended() >= 2000, 'the flow lines of the leak', 20_000, 200);
    } finally {
      watch.kill('SIGTERM');
      record.kill('SIGTERM');
    }
    expect(await watch.exited).toBe(0);
    expect(await record.exited).toBe(0);

    // flows: original destination the service address, translated one the backend; no SNAT
    const lines = readFileSync(recording, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const flows = lines.filter((l) => l.event === 'flow' && l.dst === '127.0.0.100' && l.dport === 6379);
    expect(flows.length).toBe(2000);
    for (const f of flows) expect(f.nat).toEqual({ dst: '127.0.0.5', dport: 6379 });
    // and a flow that was not translated has no `nat` (the destroy events themselves are there too)
    expect(lines.filter((l) => l.event === 'flow' && l.nat === undefined && l.dst === '127.0.0.100')).toHaveLength(0);

    // churn: the service key, with its backend
    const churn = lines.filter((l) => l.event === 'churn').flatMap((l) => l.destinations as { key: string; backend?: string; backends?: number; new1: number }[]);
    const service = churn.filter((d) => d.key === '127.0.0.100:6379/tcp');
    expect(service.length).toBeGreaterThan(0);
    for (const d of service) {
      expect(d.backend).toBe('127.0.0.5:6379');
      expect(d.backends).toBe(1);
    }
    // the backend is never its own key: the flows are counted under the address they were sent to
    expect(churn.filter((d) => d.key === '127.0.0.5:6379/tcp')).toHaveLength(0);

    // top: service → backend in the destination table
    expect(screen).toMatch(/127\.0\.0\.100:6379\/tcp → 127\.0\.0\.5:6379 +[\d.]+/);

    // the alert: subject the service, message naming the backend
    const fired = JSON.parse(readFileSync(alerts, 'utf8').trim().split('\n').find((l) => l.includes('"churn_per_destination"'))!);
    expect(fired.subject).toBe('127.0.0.100:6379/tcp');
    expect(fired.message).toContain('churn to 127.0.0.100:6379/tcp → 127.0.0.5:6379');
  }, 60_000);
});

describe('SNAT: masquerade out of a veth, source ports against a small port range (two namespaces)', () => {
  let a: Netns;
  let b: Netns;
  const CONNS = 90;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-snat-'));
  const procs: ReturnType<typeof spawn>[] = [];
  beforeAll(async () => {
    a = await createNetns();
    b = await createNetns();
    await run('ip', ['-n', a.name, 'link', 'add', 'ctna', 'type', 'veth', 'peer', 'name', 'ctnb', 'netns', b.name]);
    await run('ip', ['-n', a.name, 'addr', 'add', '10.204.0.1/24', 'dev', 'ctna']);
    await run('ip', ['-n', b.name, 'addr', 'add', '10.204.0.2/24', 'dev', 'ctnb']);
    await run('ip', ['-n', a.name, 'link', 'set', 'ctna', 'up']);
    await run('ip', ['-n', b.name, 'link', 'set', 'ctnb', 'up']);
    // the clients' own address, which B has no route back to: only the masquerade makes it work
    await run('ip', ['-n', a.name, 'addr', 'add', '10.9.0.2/32', 'dev', 'lo']);
    // the clients start from ports 50000-50999; the masquerade rule gives 40000-40099, and that is
    // what the NAT runs out of (nf_nat_core.c: a source port outside the rule's range is remapped
    // into it), not ip_local_port_range
    await a.exec('sysctl', ['-qw', 'net.ipv4.ip_local_port_range=50000 50999']);
    await a.exec('nft', ['add chain inet ctwatch_test nat_post { type nat hook postrouting priority 100; }']);
    await a.exec('nft', ['add rule inet ctwatch_test nat_post oifname ctna meta l4proto tcp masquerade to :40000-40099']);
  });

  /** COUNT connections from 10.9.0.2 (in A) to B's server, held open until the process is killed. */
  async function holdConnections(count: number, timeoutMs?: number): Promise<ReturnType<typeof spawn>> {
    const clients = a.spawn('/usr/bin/python3', ['-c', `import socket,time
socks=[]
for i in range(${count}):
    c=socket.socket(); c.bind(("10.9.0.2",0)); c.connect(("10.204.0.2",80)); socks.append(c)
print("open", flush=True)
time.sleep(600)`]);
    procs.push(clients);
    let said = '';
    clients.stdout!.on('data', (d) => (said += d));
    await waitFor(() => said.includes('open'), 'the clients to connect', timeoutMs);
    return clients;
  }

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await a?.destroy();
    await b?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('snapshot, top, the rule and flow lines carry the translated source', async () => {
    const server = b.spawn('/usr/bin/python3', ['-c', 'import socket,time\ns=socket.socket()\ns.bind(("10.204.0.2",80))\ns.listen(512)\ntime.sleep(600)']);
    procs.push(server);
    await waitFor(async () => (await b.exec('ss', ['-Htln', 'sport = :80'])).stdout.trim() !== '', 'the server');

    const rules = writeOnlyRules(join(dir, 'rules.yaml'), { rules: { snat_port_exhaustion: { for: '0s' } } });
    const { alerts, recording, watch, record } = watchAndRecord(a.name, rules, dir);
    let screen = '';
    try {
      await started(watch, record);
      // CONNS connections from 10.9.0.2 to the server, held open
      const clients = await holdConnections(CONNS);
      screen = (await run(process.execPath, [CLI, 'top', '--netns', a.name, '--batch', '--duration', '1500ms', '--no-processes'], { timeout: 30_000 })).stdout;
      await waitFor(() => existsSync(alerts) && readFileSync(alerts, 'utf8').includes('"snat_port_exhaustion"'), 'the snat_port_exhaustion alert', 10_000, 100);
      await waitFor(() => existsSync(recording) && readFileSync(recording, 'utf8').includes(`"ports":${CONNS}`), 'a churn line with the ports', 10_000, 100);
      // end the flows (destroy events carry both tuples)
      clients.kill('SIGKILL');
      await a.exec('conntrack', ['-F']);
      const ended = () => readFileSync(recording, 'utf8').split('\n').filter((l) => l.includes('"event":"flow"') && l.includes('"src":"10.9.0.2"')).length;
      await waitFor(() => ended() >= CONNS, 'the flow lines', 10_000, 100);
    } finally {
      watch.kill('SIGTERM');
      record.kill('SIGTERM');
    }
    expect(await watch.exited).toBe(0);
    expect(await record.exited).toBe(0);
    const PAIR = '10.204.0.1 → 10.204.0.2:80/tcp';

    const lines = readFileSync(recording, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const snat = lines.filter((l) => l.event === 'churn' && l.snat).map((l) => l.snat);
    const full = snat.find((v) => v.pairs[0]?.ports === CONNS);
    expect(full).toEqual({ range: { low: 40000, high: 40099, from: 'nft rule' }, pairs: [{ key: PAIR, src: '10.204.0.1', destination: '10.204.0.2:80/tcp', ports: CONNS, share: 0.9 }], complete: true });

    const flows = lines.filter((l) => l.event === 'flow' && l.src === '10.9.0.2');
    expect(flows).toHaveLength(CONNS);
    for (const f of flows) {
      expect(f.dst).toBe('10.204.0.2');
      expect(f.nat.src).toBe('10.204.0.1');
      expect(f.nat.sport).toBeGreaterThanOrEqual(40000);
      expect(f.nat.sport).toBeLessThanOrEqual(40099);
      expect(f.nat.dst).toBeUndefined();
    }

    expect(screen).toContain('SNAT (ports 40000-40099, nft rule)');
    expect(screen).toMatch(new RegExp(`10\\.204\\.0\\.1 → 10\\.204\\.0\\.2:80/tcp +${CONNS} +90`));

    const fired = JSON.parse(readFileSync(alerts, 'utf8').trim().split('\n').find((l) => l.includes('"snat_port_exhaustion"'))!);
    expect(fired.subject).toBe(PAIR);
    expect(fired.message).toContain(`SNAT ${PAIR} uses ${CONNS} of 100 source ports (90 % of the SNAT port range 40000-40099, nft rule)`);
  }, 60_000);

  it("reads the port range from the namespace's nft ruleset through one checked descriptor, else the kernel default", async () => {
    // what watch used above, by name and by a /proc/PID/ns/net path
    expect(readSnatPortRange(a.name)).toEqual({ low: 40000, high: 40099, from: 'nft rule' });
    const inA = a.spawn('/bin/sleep', ['30']);
    procs.push(inA);
    await waitFor(() => statSync(`/proc/${inA.pid}/ns/net`).ino === statSync(`/run/netns/${a.name}`).ino, 'sleep to be in namespace A');
    expect(readSnatPortRange(`/proc/${inA.pid}/ns/net`)).toEqual({ low: 40000, high: 40099, from: 'nft rule' });
    // not a namespace file: never entered, nothing waited for (a FIFO without a writer)
    const fifo = join(dir, 'not-a-netns');
    await run('mkfifo', [fifo]);
    expect(readSnatPortRange(fifo)).toEqual(KERNEL_SNAT_RANGE);
    // a masquerade without ports: 1024-65535, whatever ip_local_port_range says
    await a.exec('nft', ['flush chain inet ctwatch_test nat_post']);
    await a.exec('nft', ['add rule inet ctwatch_test nat_post oifname ctna masquerade']);
    expect(readSnatPortRange(a.name)).toEqual({ low: 1024, high: 65535, from: 'kernel default' });
  });

  it('flows a resync finds gone free their SNAT ports (their DESTROYs were lost in an overflow)', async () => {
    // the rule is the plain masquerade the previous case left: ports 1024-65535, clients from 50000
    const engine = new ChurnEngine({ snatPortRange: readSnatPortRange(a.name) });
    // 4 KiB and one batch in flight: a flush of hundreds of entries overflows the socket
    const source = new LiveSource({ netns: a.name, rcvbuf: 4096, maxBatches: 1, batchSize: 16, snapshot: true });
    // The buffer stays at 4 KiB (the kernel reports 8 KiB): an overflow while the 300 connections
    // are made would otherwise grow it, and 512 KiB holds the whole flush (no overflow, no resync).
    const recovery = new OverflowRecovery(source, engine, { backoffMs: 300, minIntervalMs: 1000, maxRcvbuf: 8192 });
    const resyncs: ResyncRecord[] = [];
    const resynced: FlowEnd[] = [];
    let dumped = false;
    /** while set, the pipeline holds the batch it has (the reader may not read on: maxBatches 1) */
    let hold: Promise<void> | undefined;
    const pipeline = new Pipeline(
      source,
      {
        events: async (b) => {
          for (const e of b) if (e.event === 'snapshot_done') dumped = true;
          if (hold) await hold;
        },
        flows: (f) => void resynced.push(...f.filter((x) => x.reason === 'resync' && x.src === '10.9.0.2')),
        resync: (r) => void resyncs.push(r),
      },
      { engine, recovery },
    );
    const done = pipeline.run();
    const ports = (): number => engine.snapshot(Date.now() * 1000).snat?.pairs.find((p) => p.key === '10.204.0.1 → 10.204.0.2:80/tcp')?.ports ?? 0;
    const HELD = 300;
    try {
      await waitFor(() => dumped, 'the start-up dump');
      const clients = await holdConnections(HELD, 15_000);
      await waitFor(() => ports() >= HELD, `${HELD} SNAT ports counted`, 15_000, 100);
      // the clients go (their FINs end the connections, the entries stay), then the flush destroys
      // every entry at once: DESTROYs are lost, a resync follows
      clients.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      // JavaScript busy with a batch through the whole flush, so that the overflow does not
      // depend on which thread the two cores run first: the reader stops at its one batch, and
      // the DESTROYs past what 4 KiB holds are lost
      let release!: () => void;
      hold = new Promise((r) => (release = r));
      try {
        await a.exec('conntrack', ['-F']);
      } finally {
        hold = undefined;
        release();
      }
      await waitFor(() => resyncs.some((r) => r.vanished > 0), 'a resync that ended flows', 15_000, 100);
      // those flows had no DESTROY to free their port: the resync did
      expect(resynced.length).toBeGreaterThan(0);
      await waitFor(() => ports() === 0 || null, 'the SNAT ports to be free', 10_000, 100).catch(() => undefined);
      const left = await a.exec('conntrack', ['-L', '-s', '10.9.0.2']).then((r) => r.stdout.trim().split('\n').filter((l) => l.includes('src=10.9.0.2')).length, () => 0);
      // at most what the kernel still holds of them (a late packet after the flush makes an entry)
      expect(ports()).toBeLessThanOrEqual(left);
    } finally {
      await source.close();
      await done;
    }
  });
});
