/**
 * A throwaway network namespace with a "Redis" server and its clients, for the demo (and anyone
 * who wants to see ctwatch work without touching a real host). Everything runs inside the
 * namespace on loopback addresses, and `destroy()` removes it all, also on Ctrl-C.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CtwatchError, EXIT } from '../util/errors.js';
import { ensureLabProgram, ROOT } from './build.js';
import type { Spec } from './generator.js';

export { LAB_BINARY } from './build.js';
export const GENERATOR = join(ROOT, 'dist', 'lab', 'generator.js');

export class Lab {
  readonly name: string;
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;
  /** the compiled load generator; null: the Node generator stands in (see `fallback`) */
  private program: string | null = null;
  private temporary?: string;
  /** why the compiled load generator is not used, when it is not */
  fallback?: string;

  constructor(name = `ctwatch-demo-${process.pid}`) {
    this.name = name;
  }

  /** Creates the namespace: lo up, a ruleset that makes the kernel track connections, and the
   * whole port range for clients (one source address can then hold ~64 k TIME_WAIT entries). */
  create(): void {
    if (!existsSync(GENERATOR)) {
      throw new CtwatchError('ERR_LAB', `the lab programs are not built (${GENERATOR}): run 'npm run build'`, { exitCode: EXIT.unavailable });
    }
    // Built on first use (not at install); without a compiler the Node generator does the same
    // traffic, slower.
    const program = ensureLabProgram();
    if (program.path === null) this.fallback = program.why;
    else {
      this.program = program.path;
      this.temporary = program.temporary;
    }
    const run = (args: string[], input?: string) => {
      try {
        execFileSync('ip', args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'], input });
      } catch (err) {
        const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
        throw new CtwatchError('ERR_LAB', `setting up the demo namespace failed: ip ${args.join(' ')}: ${stderr || (err as Error).message}${/Operation not permitted/.test(stderr) ? ' (run as root)' : ''}`, { exitCode: /Operation not permitted/.test(stderr) ? EXIT.noPerm : EXIT.failure });
      }
    };
    run(['netns', 'add', this.name]);
    try {
      run(['-n', this.name, 'link', 'set', 'lo', 'up']);
      run(['netns', 'exec', this.name, 'nft', '-f', '-'], 'add table inet ctwatch_demo\nadd chain inet ctwatch_demo out { type filter hook output priority 0; }\nadd rule inet ctwatch_demo out ct state new counter\n');
      run(['netns', 'exec', this.name, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65535']);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  /** Starts a program inside the namespace; it is killed by destroy(). */
  spawn(command: string, args: string[], onLine?: (line: string) => void): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine?.(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    child.stderr!.resume();
    return child;
  }

  server(host: string, port: number): ChildProcess {
    if (this.program) return this.spawn(this.program, ['serve', host, String(port)]);
    return this.generate({ listen: [{ proto: 'tcp', host, port }], announce: true, lingerMs: 3_600_000 });
  }

  /** The healthy client: a few pooled connections reused for every request. */
  pooledClient(host: string, port: number, rate: number): ChildProcess {
    return this.generate({ run: [{ kind: 'pool', host, port, connections: 8, rate, durationMs: 3_600_000 }] });
  }

  private generate(spec: Spec): ChildProcess {
    return this.spawn(process.execPath, [GENERATOR, JSON.stringify(spec)]);
  }

  /** The leak: a new connection per request, from the given source addresses. */
  leakyClient(host: string, port: number, sources: string[], rate: number, seconds: number, onProgress?: (made: number) => void): ChildProcess {
    if (!this.program) {
      // One paced step per source address, side by side; "as fast as it goes" is 64 in flight each.
      const share = rate > 0 ? rate / sources.length : 0;
      const count = rate > 0 ? Math.ceil(share * seconds) : 1_000_000;
      return this.generate({ parallel: true, run: sources.map((from) => ({ kind: 'connect' as const, host, port, from, count, rate: share, concurrency: 64, durationMs: seconds * 1000 })) });
    }
    return this.spawn(this.program, ['leak', host, String(port), sources.join(','), String(rate), String(seconds), '2'], (line) => {
      try {
        const o = JSON.parse(line) as { made?: number };
        if (o.made !== undefined) onProgress?.(o.made);
      } catch {
        /* not a progress line */
      }
    });
  }

  /** Kills every program and deletes the namespace (its conntrack table goes with it). Synchronous,
   * so it also runs from an 'exit' handler. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.children) c.kill('SIGKILL');
    removeNamespace(this.name);
    if (this.temporary) rmSync(this.temporary, { recursive: true, force: true });
  }

  /** Deletes what demos that were killed outright (kill -9) left behind: ctwatch-demo-PID
   * namespaces whose PID is gone, with any program still running in them. */
  static sweepStale(): void {
    let names: string[];
    try {
      names = readdirSync('/run/netns');
    } catch {
      return;
    }
    for (const name of names) {
      const m = /^ctwatch-demo-(\d+)$/.exec(name);
      if (m && !existsSync(`/proc/${m[1]}`)) removeNamespace(name);
    }
  }
}

/** A namespace lives on while a process is in it: kill those first, then delete it. */
function removeNamespace(name: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { stdio: ['ignore', 'pipe', 'ignore'], encoding: 'utf8' });
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  } catch {
    /* no such namespace */
  }
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
}
