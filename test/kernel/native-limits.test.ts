/**
 * The addon when the system says no, for real: a pids cgroup at its limit (no thread can be
 * created: std::system_error), allocations that fail (std::bad_alloc, on the JavaScript thread
 * and on the reader thread, under RLIMIT_AS), and events still queued in the kernel when the
 * source is closed. Each used to end in std::terminate ("terminate called", exit 134) or in lost
 * events; now a typed error, or the events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LiveSource } from '../../src/source/live.js';
import type { SourceEvent } from '../../src/source/types.js';
import { ROOT, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const CHILD = join(ROOT, 'test/fixtures/native-limits-child.mjs');

interface Child {
  lines: () => Record<string, unknown>[];
  err: () => string;
  send: (text: string) => void;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  pid: number;
}

function child(mode: string, netns: string): Child {
  const c = track(spawn(process.execPath, [CHILD, mode, netns], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  c.stdout!.on('data', (d) => (out += d));
  c.stderr!.on('data', (d) => (err += d));
  return {
    lines: () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    err: () => err,
    send: (t) => c.stdin!.end(t),
    exit: new Promise((r) => c.once('exit', (code, signal) => r({ code, signal }))),
    pid: c.pid!,
  };
}

/** A pids cgroup of our own (cgroup v1's pids hierarchy, or v2 with the pids controller). */
function pidsCgroup(name: string): { dir: string; limit: (max: number | 'max') => void; add: (pid: number) => void; remove: () => void } {
  let dir: string;
  if (existsSync('/sys/fs/cgroup/pids/cgroup.procs')) {
    dir = `/sys/fs/cgroup/pids/${name}`;
  } else {
    const control = '/sys/fs/cgroup/cgroup.subtree_control';
    if (!readFileSync(control, 'utf8').includes('pids')) writeFileSync(control, '+pids');
    dir = `/sys/fs/cgroup/${name}`;
  }
  mkdirSync(dir, { recursive: true });
  return {
    dir,
    limit: (max) => writeFileSync(join(dir, 'pids.max'), String(max)),
    add: (pid) => writeFileSync(join(dir, 'cgroup.procs'), String(pid)),
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        /* still has a process: it is gone soon, the test's exit handler kills it */
      }
    },
  };
}

describe('native limits (real kernel, own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('no thread can be created (pids cgroup at its limit): typed errors, exit 71, no abort', async () => {
    const cg = pidsCgroup(`ctwatch-test-${process.pid}`);
    const c = child('task-limit', ns.name);
    try {
      await waitFor(() => c.lines().find((l) => l.step === 'ready'), `the child to start (${c.err()})`);
      cg.add(c.pid);
      const current = Number(readFileSync(join(cg.dir, 'pids.current'), 'utf8'));
      cg.limit(current);
      c.send('go\n');
      const done = await c.exit;
      expect(done, c.err()).toEqual({ code: 0, signal: null });
      const tried = c.lines().find((l) => l.step === 'tried') as { source: Record<string, unknown>; sockdiag: Record<string, unknown> };
      expect(tried.source).toMatchObject({ code: 'ERR_TASK_LIMIT', exitCode: 71 });
      expect(tried.source.message).toContain('cannot start the conntrack reader thread: Resource temporarily unavailable');
      expect(tried.source.message).toContain('task limit');
      // sock_diag attribution has no thread of its own: it runs on the reader thread, refused alike
      expect(tried.sockdiag).toMatchObject({ code: 'ERR_TASK_LIMIT', exitCode: 71 });
      expect(tried.sockdiag.message).toContain('cannot start the conntrack reader thread');
      expect(c.err()).not.toContain('terminate called');
    } finally {
      cg.limit('max');
      await c.exit;
      cg.remove();
    }
  });

  it('batches that cannot be allocated: ERR_NO_MEMORY, no abort', async () => {
    const c = child('huge-batch', ns.name);
    const done = await c.exit;
    expect(done, c.err()).toEqual({ code: 0, signal: null });
    const tried = c.lines().find((l) => l.step === 'tried') as { source: Record<string, unknown> };
    expect(tried.source).toMatchObject({ code: 'ERR_NO_MEMORY', exitCode: 71 });
    expect(tried.source.message).toContain("cannot allocate the conntrack reader's batches: out of memory");
  });

  it('the reader thread runs out of memory later: what it read, then a typed error ends the stream', async () => {
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6393 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 6393, count: 20, rate: 0 }] });
    const c = child('thread-oom', ns.name);
    const done = await c.exit;
    expect(done, c.err()).toEqual({ code: 0, signal: null });
    const tried = c.lines().find((l) => l.step === 'tried') as { events: number; error: Record<string, unknown> };
    expect(tried.error).toMatchObject({ code: 'ERR_NO_MEMORY', exitCode: 71 });
    expect(tried.error.message).toContain('the conntrack reader thread failed: out of memory');
    // the start-up dump it had read was delivered before the end
    expect(tried.events).toBeGreaterThanOrEqual(20);
  });

  it('close() still reads what the kernel had queued (a SIGTERM drops no event already on its way)', async () => {
    // One small batch in flight and nobody reading: the reader stops reading, the kernel queues.
    const source = new LiveSource({ netns: ns.name, events: ['new'], batchSize: 8, maxBatches: 1 });
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.6', port: 6394 }], run: [{ kind: 'connect', host: '127.0.0.6', port: 6394, count: 300, rate: 0, concurrency: 32 }] });
    await source.close();
    const events: SourceEvent[] = [];
    for await (const b of source) events.push(...b);
    const ours = events.filter((e) => e.event === 'new' && e.dport === 6394);
    expect(ours).toHaveLength(300);
    expect(events.filter((e) => e.event === 'overflow')).toEqual([]);
  });
});
