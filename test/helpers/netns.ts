/**
 * Throwaway network namespaces for kernel tests. Each gets `lo` up and an nftables ruleset that
 * references conntrack (without one, a new namespace tracks nothing), with a named counter of new
 * flows: the kernel's own count to check bursts against. Namespaces are deleted in `destroy()`, on
 * process exit, and stale ones from crashed runs are swept by `sweepStaleNamespaces()`.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const run = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const GENERATOR = join(ROOT, 'dist', 'lab', 'generator.js');
export const CLI = join(ROOT, 'bin', 'ctwatch.js');

const PREFIX = 'ctwt';
const live = new Set<string>();
let seq = 0;

const children = new Set<ChildProcess>();

/** Kills `child` when the test process exits, even if a test timed out before its `finally`. */
export function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  for (const name of live) {
    try {
      // Synchronous on exit: the event loop is gone.
      delSync('ip', ['netns', 'del', name]);
    } catch {
      /* already gone */
    }
  }
});

function delSync(cmd: string, args: string[]) {
  execFileSync(cmd, args, { stdio: 'ignore' });
}

export interface Netns {
  name: string;
  path: string;
  /** run a command inside the namespace */
  exec(cmd: string, args: string[], opts?: { timeout?: number }): Promise<{ stdout: string; stderr: string }>;
  /** start a long-running command inside the namespace */
  spawn(cmd: string, args: string[]): ChildProcess;
  /** the kernel's count of new flows (nftables `ct state new` counter) */
  newFlows(): Promise<number>;
  /** run the lab traffic generator with a spec; resolves with its result lines */
  generate(spec: unknown): Promise<Record<string, unknown>[]>;
  /** an output-hook DNAT, as kube-proxy does for a ClusterIP: `service` (IP:PORT) is sent to `backend` (IP:PORT) */
  dnat(proto: 'tcp' | 'udp', service: string, backend: string): Promise<void>;
  /**
   * Ends every entry left, now (`conntrack -F`: each one destroyed and reported). For flows that
   * are over but whose entry's short timeout (TIME_WAIT, CLOSE of 1 s) has run out: the kernel
   * reaps expired entries lazily, and on an idle host its GC may take a minute to get to them.
   */
  flush(): Promise<void>;
  destroy(): Promise<void>;
}

/** Deletes namespaces left by test processes that no longer exist. */
export function sweepStaleNamespaces(): void {
  if (!existsSync('/run/netns')) return;
  for (const name of readdirSync('/run/netns')) {
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (m && !existsSync(`/proc/${m[1]}`)) {
      try {
        delSync('ip', ['netns', 'del', name]);
      } catch {
        /* ignore */
      }
    }
  }
}

export interface NetnsOptions {
  /** per-namespace sysctls, e.g. { 'net.netfilter.nf_conntrack_tcp_timeout_time_wait': 1 } */
  sysctls?: Record<string, number>;
}

export async function createNetns(options: NetnsOptions = {}): Promise<Netns> {
  sweepStaleNamespaces();
  const name = `${PREFIX}-${process.pid}-${seq++}-${Math.random().toString(36).slice(2, 6)}`;
  await run('ip', ['netns', 'add', name]);
  live.add(name);
  const ns = ['netns', 'exec', name];
  try {
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    const ruleset = [
      'add table inet ctwatch_test',
      'add counter inet ctwatch_test newflows',
      'add chain inet ctwatch_test out { type filter hook output priority 0; }',
      'add rule inet ctwatch_test out ct state new counter name newflows',
    ].join('\n');
    await new Promise<void>((resolve, reject) => {
      const p = spawn('ip', [...ns, 'nft', '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft failed: ${err}`))));
      p.stdin.end(ruleset);
    });
    for (const [k, v] of Object.entries(options.sysctls ?? {})) {
      await run('ip', [...ns, 'sysctl', '-qw', `${k}=${v}`]);
    }
  } catch (err) {
    await run('ip', ['netns', 'del', name]).catch(() => {});
    live.delete(name);
    throw err;
  }
  const self: Netns = {
    name,
    path: `/run/netns/${name}`,
    exec: (cmd, args, opts) => run('ip', [...ns, cmd, ...args], { timeout: opts?.timeout ?? 60_000, maxBuffer: 256 * 1024 * 1024 }),
    spawn: (cmd, args) => track(spawn('ip', [...ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })),
    async newFlows() {
      const { stdout } = await run('ip', [...ns, 'nft', '-j', 'list', 'counter', 'inet', 'ctwatch_test', 'newflows']);
      const doc = JSON.parse(stdout) as { nftables: { counter?: { packets: number } }[] };
      return doc.nftables.find((x) => x.counter)?.counter?.packets ?? -1;
    },
    async generate(spec) {
      const { stdout } = await run('ip', [...ns, process.execPath, GENERATOR, JSON.stringify(spec)], { timeout: 120_000, maxBuffer: 256 * 1024 * 1024 });
      return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async flush() {
      await run('ip', [...ns, 'conntrack', '-F'], { timeout: 10_000 });
    },
    async dnat(proto, service, backend) {
      const [ip, port] = service.split(':');
      await self.exec('nft', ['add chain inet ctwatch_test nat_out { type nat hook output priority -100; }']);
      await self.exec('nft', [`add rule inet ctwatch_test nat_out ip daddr ${ip} ${proto} dport ${port} dnat ip to ${backend}`]);
    },
    async destroy() {
      if (!live.has(name)) return;
      live.delete(name);
      await run('ip', ['netns', 'del', name]).catch(() => {});
    },
  };
  return self;
}

export { waitFor } from './wait.js';
