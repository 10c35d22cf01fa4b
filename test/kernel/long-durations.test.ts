/**
 * Durations past 24.8 days (2^31 ms) on the command line: a plain Node timer fires them after 1 ms,
 * so `record --duration 30d` used to exit at once and `watch --status 30d` logged a status line
 * every millisecond. Real commands, own namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { RECORDING, WATCHING, startCli } from '../helpers/cli.js';

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
    const r = startCli(['record', '--netns', ns.name, '--duration', '30d', '-o', join(dir, 'ct.jsonl')]);
    await waitFor(() => r.stderr.includes(RECORDING) || r.code !== undefined, 'record to start');
    // a misfired timer ends it within a millisecond of starting; give it far longer than that
    await new Promise((res) => setTimeout(res, 1500));
    expect(r.code, r.stderr).toBeUndefined();
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  it('watch --status 30d logs no status line in its first second', async () => {
    const r = startCli(['watch', '--netns', ns.name, '--status', '30d', '--no-processes']);
    await waitFor(() => r.stderr.includes(WATCHING) || r.code !== undefined, 'watch to start');
    await new Promise((res) => setTimeout(res, 1000));
    expect(r.code, r.stderr).toBeUndefined();
    expect(r.stderr.split('\n').filter((l) => /\bstatus\b/.test(l) && !l.includes('watching'))).toEqual([]);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });
});
