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
import { ensureLabProgram } from '../../src/lab/build.js';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
// The load generator is compiled on first use (src/lab/build.ts), not by npm run build.
const lab = ensureLabProgram();
if (lab.path === null) throw new Error(`the lab program cannot be built: ${lab.why}`);
const LAB = lab.path;
const NO_BPF = ['--bounding-set=-bpf,-perfmon,-sys_admin', '--inh-caps=-bpf,-perfmon,-sys_admin'];

interface Flow {
  event: string;
  dport?: number;
  process?: { pid: number; comm: string } | null;
  unattributed?: string;
}

function flowsTo(file: string, port: number, span = 1): Flow[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow).filter((f) => f.event === 'flow' && f.dport !== undefined && f.dport >= port && f.dport < port + span);
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
    ns = await createNetns({ sysctls: { 'net.netfilter.nf_conntrack_tcp_timeout_close': 1, 'net.netfilter.nf_conntrack_tcp_timeout_time_wait': 1, 'net.netfilter.nf_conntrack_udp_timeout': 1 } });
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
      await ns.flush();
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

  it('--attribution sockdiag --user nobody: flows of root\'s process count as unattributed `denied` (the churn line\'s row), said once with the capabilities to add', async () => {
    const file = join(dir, 'denied.jsonl');
    const w = start(['watch', '--netns', ns.name, '--attribution', 'sockdiag', '--user', 'nobody', '--churn', '1s', '-o', file, '--status', '0']);
    const deniedRow = () => {
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        return null;
      }
      for (const l of text.split('\n').filter(Boolean)) {
        const r = JSON.parse(l) as { event: string; unattributed?: { key: string; live: number }[]; processes?: { key: string }[] };
        const row = r.event === 'churn' ? r.unattributed?.find((u) => u.key === 'denied') : undefined;
        if (row) return { row, processes: r.processes ?? [] };
      }
      return null;
    };
    try {
      await waitFor(() => w.stderr.includes('watching the conntrack table'), `watch to start (${w.stderr})`, 15_000);
      // one bound UDP socket that lives 2 s: sock_diag finds it, its owner's /proc is closed to nobody
      await run('ip', ['netns', 'exec', ns.name, LAB, 'churn', 'as-root', 'udp', '127.0.0.1', '7400', '200', '100', 'bound'], { timeout: 60_000 });
      const found = await waitFor(deniedRow, `a churn line with an unattributed 'denied' row (${w.stderr})`, 15_000, 200);
      expect(found.row.live).toBeGreaterThan(0);
      expect(found.processes.filter((p) => p.key.startsWith('as-root'))).toEqual([]);
      const said = w.stderr.split('\n').filter((l) => l.includes('cannot be read'));
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/add CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or use --attribution ebpf/);
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
