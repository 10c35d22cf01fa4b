/**
 * The CLI against what other people control, for real: a process whose name carries terminal
 * escapes (any local account picks its own), the metrics port's interfaces, signals that arrive
 * while ctwatch is still starting, and the demo's namespace when its terminal goes away.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { CLI, GENERATOR, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

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

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
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
    const port = await freePort();
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
