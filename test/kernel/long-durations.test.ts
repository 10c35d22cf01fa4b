/**
 * Durations past 24.8 days (2^31 ms) on the command line: a plain Node timer fires them after 1 ms,
 * so `record --duration 30d` used to exit at once and `watch --status 30d` logged a status line
 * every millisecond. Real commands, own namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

function start(args: string[]) {
  const child = track(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const out = { stderr: '', code: undefined as number | null | undefined };
  child.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r((out.code = code))));
  return { child, out, exited };
}

describe('durations past 24 days on the command line (own namespace)', () => {
  let ns: Netns;
  let dir: string;
  beforeAll(async () => {
    ns = await createNetns();
    dir = mkdtempSync(join(tmpdir(), 'ctwatch-long-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('record --duration 30d keeps recording until told to stop', async () => {
    const r = start(['record', '--netns', ns.name, '--duration', '30d', '-o', join(dir, 'ct.jsonl')]);
    await waitFor(() => r.out.stderr.includes('recording conntrack events') || r.out.code !== undefined, 'record to start');
    // a misfired timer ends it within a millisecond of starting; give it far longer than that
    await new Promise((res) => setTimeout(res, 1500));
    expect(r.out.code, r.out.stderr).toBeUndefined();
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  it('watch --status 30d logs no status line in its first second', async () => {
    const r = start(['watch', '--netns', ns.name, '--status', '30d', '--no-processes']);
    await waitFor(() => r.out.stderr.includes('watching the conntrack table') || r.out.code !== undefined, 'watch to start');
    await new Promise((res) => setTimeout(res, 1000));
    expect(r.out.code, r.out.stderr).toBeUndefined();
    expect(r.out.stderr.split('\n').filter((l) => /\bstatus\b/.test(l) && !l.includes('watching'))).toEqual([]);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });
});
