/**
 * The CLI against what other people control, for real: a process whose name carries terminal
 * escapes (any local account picks its own), the metrics port's interfaces, signals that arrive
 * while ctwatch is still starting, and the demo's namespace when its terminal goes away.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, GENERATOR, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';
import { freeTcpPort } from '../helpers/ports.js';

const run = promisify(execFile);

interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env?: Record<string, string>): { child: ChildProcess; out: () => string; err: () => string; done: Promise<Done> } {
  const child = track(spawn(process.execPath, [CLI, ...args], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Done>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, out: () => stdout, err: () => stderr, done };
}

describe('names other accounts choose', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('top --batch: a process named with terminal escapes is shown escaped, never raw', async () => {
    // ESC [ 2 J clears the screen, BEL rings, U+202E turns the rest of the line around
    const title = '\x1b[2Jev\x07il\u202e';
    // one process, server and leaky client, under that title
    const spec = { listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6390 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 6390, count: 400, rate: 80, holdMs: 1500, concurrency: 200 }] };
    const client = track(spawn('ip', ['netns', 'exec', ns.name, process.execPath, `--title=${title}`, GENERATOR, JSON.stringify(spec)], { stdio: 'ignore' }));
    try {
      const top = cli(['top', '--netns', ns.name, '--batch', '--duration', '4s']);
      const r = await top.done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('PROCESS');
      expect(r.stdout).toContain('\\x1b[2Jev\\x07il\\u202e');
      // eslint-disable-next-line no-control-regex
      expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\u202e]/);
    } finally {
      client.kill('SIGKILL');
    }
  });
});

describe('the metrics port', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('a bare --metrics PORT listens on loopback only, and says where', async () => {
    const port = await freeTcpPort();
    const w = cli(['watch', '--netns', ns.name, '--metrics', String(port), '--status', '0']);
    try {
      await waitFor(() => w.err().includes('watching the conntrack table') || w.child.exitCode !== null, 'watch to start');
      expect(w.err()).toContain(`metrics=http://127.0.0.1:${port}/metrics`);
      const { stdout } = await run('ss', ['-Hltn', `sport = :${port}`]);
      const local = stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[3]);
      expect(local).toEqual([`127.0.0.1:${port}`]);
    } finally {
      w.child.kill('SIGTERM');
      expect((await w.done).code).toBe(0);
    }
  });
});

/** A signal mask from /proc/PID/status (SigCgt, SigIgn, ...): is `signo` in it? */
function inMask(pid: number, field: string, signo: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hex = new RegExp(`^${field}:\\s+([0-9a-f]+)`, 'm').exec(status)?.[1];
    return hex !== undefined && ((BigInt(`0x${hex}`) >> BigInt(signo - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

const addonLoaded = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/maps`, 'utf8').includes('ctwatch.node');
  } catch {
    return false;
  }
};

describe('signals while starting', () => {
  let ns: Netns;
  let dir: string;
  beforeAll(async () => {
    ns = await createNetns();
    dir = mkdtempSync(join(tmpdir(), 'ctwatch-hup-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('record: SIGHUPs from the first moment of start-up are held, then acted on; none kills it', async () => {
    const file = join(dir, 'ct.jsonl');
    const r = cli(['record', '--netns', ns.name, '-o', file]);
    const pid = r.child.pid!;
    // The handler must be there before ctwatch loads the rest of itself (the addon comes late).
    const first = await waitFor(() => (inMask(pid, 'SigCgt', 1) ? { addon: addonLoaded(pid) } : r.child.exitCode !== null ? { addon: 'exited' } : undefined), 'a SIGHUP handler', 10_000, 1);
    expect(first.addon, 'SIGHUP is caught only after the start-up').toBe(false);
    let sent = 0;
    const hups = setInterval(() => {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGHUP');
        sent++;
      }
    }, 10);
    try {
      await waitFor(() => r.err().includes('recording conntrack events') || r.child.exitCode !== null || r.child.signalCode !== null, 'record to start');
    } finally {
      clearInterval(hups);
    }
    expect(r.child.signalCode, r.err()).toBe(null);
    expect(sent).toBeGreaterThan(0);
    // the held one is acted on once ready: the output is reopened
    await waitFor(() => r.err().includes('reopened output (SIGHUP)'), 'the held SIGHUP to reopen the output');
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6391 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 6391, count: 5, rate: 0 }] });
    await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('"dport":6391'), 'events in the file');
    r.child.kill('SIGTERM');
    const done = await r.done;
    expect(done.signal, done.stderr).toBe(null);
    expect(done.code, done.stderr).toBe(0);
  });

  it('a command without a SIGHUP handler still ends on one (top)', async () => {
    const t = cli(['top', '--netns', ns.name, '--batch']);
    await waitFor(() => t.out().includes('ctwatch top'), 'the first screen', 15_000);
    t.child.kill('SIGHUP');
    const done = await t.done;
    expect(done.signal).toBe('SIGHUP');
  });
});

describe('demo: the namespace goes on every way out', () => {
  /** The demo's namespace, once it exists: name, pid of the demo, and the namespace's inode. */
  const demoNamespace = (pid: number) => {
    const name = `ctwatch-demo-${pid}`;
    return existsSync(`/run/netns/${name}`) ? { name, pid, inode: statSync(`/run/netns/${name}`).ino } : undefined;
  };
  /** the demo's pid: the child itself, or under script(1) the program script runs */
  const demoPid = (child: ChildProcess, underScript: boolean) =>
    underScript ? Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]) : child.pid!;
  /** processes in the namespace with this inode, each as pid and start time (an inode number
   * is reused once its namespace is gone, so "still there" is asked of these very processes) */
  const inNamespace = (inode: number) =>
    readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return statSync(`/proc/${p}/ns/net`).ino === inode;
      } catch {
        return false;
      }
    }).map((pid) => ({ pid, started: startTime(pid) }));
  const startTime = (pid: string) => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[19];
    } catch {
      return undefined;
    }
  };
  /** those of `procs` still running (not exited, and not a new process with the same pid) */
  const stillRunning = (procs: { pid: string; started: string | undefined }[]) =>
    procs.filter((p) => {
      if (startTime(p.pid) !== p.started) return false;
      try {
        return !/^State:\s+Z/m.test(readFileSync(`/proc/${p.pid}/status`, 'utf8'));
      } catch {
        return false;
      }
    });

  async function interrupt(start: () => ChildProcess, stop: (demo: ChildProcess, pid: number) => void, out: () => string, underScript = false) {
    const demo = start();
    let ns: ReturnType<typeof demoNamespace>;
    try {
      await waitFor(() => out().includes('LEAK'), 'the demo to start leaking', 30_000);
      ns = demoNamespace(demoPid(demo, underScript));
      expect(ns).toBeDefined();
      const inside = inNamespace(ns!.inode);
      expect(inside.length).toBeGreaterThan(0);
      stop(demo, ns!.pid);
      await waitFor(() => !existsSync(`/proc/${ns!.pid}`), 'the demo to exit', 15_000);
      expect(existsSync(`/run/netns/${ns!.name}`)).toBe(false);
      await waitFor(() => stillRunning(inside).length === 0, 'every program in the namespace to be gone', 5000);
    } finally {
      demo.kill('SIGKILL');
      if (ns && existsSync(`/run/netns/${ns.name}`)) {
        for (const p of inNamespace(ns.inode)) process.kill(Number(p.pid), 'SIGKILL');
        await run('ip', ['netns', 'del', ns.name]).catch(() => {});
      }
    }
  }

  it('its terminal closes (a real pty hung up): SIGHUP, then EIO on every write', async () => {
    let out = '';
    await interrupt(
      () => {
        // script(1) gives the demo a terminal; killing script closes the pty's master side
        const s = track(spawn('script', ['-qfec', `exec ${process.execPath} ${CLI} demo --quick`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] }));
        s.stdout!.on('data', (d) => (out += d));
        return s;
      },
      (script) => script.kill('SIGKILL'),
      () => out,
      true,
    );
  });

  it('SIGTERM', async () => {
    let out = '';
    let code: number | null = null;
    await interrupt(
      () => {
        const d = cli(['demo', '--quick']);
        d.child.stdout!.on('data', (c) => (out += c));
        d.child.once('exit', (c) => (code = c));
        return d.child;
      },
      (demo) => demo.kill('SIGTERM'),
      () => out,
    );
    expect(code).toBe(143);
  });

  it('a namespace left by a demo killed outright is swept by the next one', async () => {
    let out = '';
    let first: ChildProcess | undefined;
    const firstNs = await (async () => {
      const d = cli(['demo', '--quick']);
      first = d.child;
      d.child.stdout!.on('data', (c) => (out += c));
      await waitFor(() => out.includes('LEAK'), 'the demo to start leaking', 30_000);
      const ns = demoNamespace(d.child.pid!)!;
      const inside = inNamespace(ns.inode);
      d.child.kill('SIGKILL');
      await d.done;
      return { ...ns, inside };
    })();
    expect(existsSync(`/run/netns/${firstNs.name}`)).toBe(true);
    // what kill -9 leaves: the namespace, and the lab's server still running in it
    expect(stillRunning(firstNs.inside).length).toBeGreaterThan(0);
    let out2 = '';
    await interrupt(
      () => {
        const d = cli(['demo', '--quick']);
        d.child.stdout!.on('data', (c) => (out2 += c));
        return d.child;
      },
      (demo) => {
        expect(existsSync(`/run/netns/${firstNs.name}`)).toBe(false);
        expect(firstNs.inside.length).toBeGreaterThan(0);
        expect(stillRunning(firstNs.inside)).toEqual([]);
        demo.kill('SIGINT');
      },
      () => out2,
    );
    first?.kill('SIGKILL');
  });
});
