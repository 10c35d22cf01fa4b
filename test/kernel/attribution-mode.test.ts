/**
 * `--attribution auto|ebpf|sockdiag|off` through the CLI against the real kernel: the start-up line
 * says which mode runs and why; `watch --user nobody --netns NS` still names the process of every
 * flow (eBPF: the stamps need no /proc read after the switch); BPF refused by the bounding set
 * falls back to sockdiag with the reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, ROOT, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
const LAB = join(ROOT, 'build', 'Release', 'ctwatch-lab');
const NO_BPF = ['--bounding-set=-bpf,-perfmon,-sys_admin', '--inh-caps=-bpf,-perfmon,-sys_admin'];

interface Flow {
  event: string;
  dport?: number;
  process?: { pid: number; comm: string } | null;
  unattributed?: string;
}

function flowsTo(file: string, port: number): Flow[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow).filter((f) => f.event === 'flow' && f.dport === port);
}

/** Starts a CLI command (optionally inside `prefix`, e.g. ip netns exec + setpriv); collects stderr. */
function start(args: string[], prefix: string[] = []) {
  const [cmd, ...rest] = [...prefix, process.execPath, CLI, ...args];
  const child = track(spawn(cmd, rest, { stdio: ['ignore', 'ignore', 'pipe'] }));
  const out = { stderr: '', child, exited: new Promise<number | null>((r) => child.once('exit', (c) => r(c))) };
  child.stderr!.on('data', (d) => (out.stderr += d));
  return out;
}

describe('attribution modes (real kernel, own namespace)', () => {
  let ns: Netns;
  let dir: string;
  beforeAll(async () => {
    // TCP entries leave the table a second after their RST, so flow ends come quickly.
    ns = await createNetns({ sysctls: { 'net.netfilter.nf_conntrack_tcp_timeout_close': 1, 'net.netfilter.nf_conntrack_tcp_timeout_time_wait': 1 } });
    dir = mkdtempSync(join(tmpdir(), 'ctwatch-attr-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('watch --user nobody --netns NS: every flow end names its process (auto runs eBPF)', async () => {
    const file = join(dir, 'user.jsonl');
    const w = start(['watch', '--netns', ns.name, '--user', 'nobody', '--flows', '-o', file, '--status', '0']);
    try {
      await waitFor(() => w.stderr.includes('watching the conntrack table'), `watch to start (${w.stderr})`, 15_000);
      expect(w.stderr).toMatch(/attribution: ebpf \(the eBPF programs loaded\)/);
      expect(w.stderr).toMatch(/unprivileged user/);
      const { stdout } = await run('ip', ['netns', 'exec', ns.name, LAB, 'churn', 'as-root', 'tcp', '127.0.0.1', '7301', '200', '2000', 'rst'], { timeout: 60_000 });
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as { pid: number; made: number };
      expect(r.made).toBe(200);
      const flows = await waitFor(() => (flowsTo(file, 7301).length >= 200 ? flowsTo(file, 7301) : null), 'a flow line per connection', 40_000, 200);
      const wrong = flows.filter((f) => f.process && (f.process.pid !== r.pid || f.process.comm !== 'as-root'));
      const missing = flows.filter((f) => !f.process);
      expect(wrong).toEqual([]);
      // before this fix: 0 of 200 (root's /proc/PID/fd is closed to nobody), and no reason given
      expect(missing).toEqual([]);
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  }, 90_000);

  it('BPF refused by the bounding set (no CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN): auto falls back to sockdiag and says why', async () => {
    const w = start(['watch', '--status', '0'], ['ip', 'netns', 'exec', ns.name, 'setpriv', ...NO_BPF]);
    try {
      await waitFor(() => w.stderr.includes('watching the conntrack table'), `watch to start (${w.stderr})`, 15_000);
      const line = w.stderr.split('\n').find((l) => l.includes('attribution:'));
      expect(line).toMatch(/^ctwatch warn: attribution: sockdiag \(eBPF refused: .*missing: CAP_BPF, CAP_PERFMON/);
      expect(w.stderr.split('\n').filter((l) => l.includes('attribution:'))).toHaveLength(1);
    } finally {
      w.child.kill('SIGTERM');
    }
    expect(await w.exited).toBe(0);
  }, 30_000);

  it('--attribution ebpf where BPF is refused is an error naming the capabilities (exit 69), not a fallback', async () => {
    const w = start(['watch', '--attribution', 'ebpf', '--status', '0'], ['ip', 'netns', 'exec', ns.name, 'setpriv', ...NO_BPF]);
    expect(await w.exited).toBe(69);
    expect(w.stderr).toMatch(/--attribution ebpf: .*CAP_BPF.*--attribution auto/);
  }, 30_000);

  it('--attribution off and --no-processes say so; a bad mode is a usage error', async () => {
    const off = start(['watch', '--netns', ns.name, '--no-processes', '--status', '0']);
    try {
      await waitFor(() => off.stderr.includes('watching the conntrack table'), `watch to start (${off.stderr})`, 15_000);
      expect(off.stderr).toMatch(/attribution: off \(--no-processes\)/);
    } finally {
      off.child.kill('SIGTERM');
      await off.exited;
    }
    const bad = start(['watch', '--attribution', 'bpf']);
    expect(await bad.exited).toBe(64);
    expect(bad.stderr).toMatch(/--attribution "bpf": use auto, ebpf, sockdiag or off/);
  }, 30_000);
});
