/**
 * An incident cannot be silenced remotely (issue 11 item 4), against the real kernel in an own
 * namespace: a leak at ~700 new/s is firing when a dozen decoy destinations start churning a little
 * faster (760/s each), pushing the leak out of the snapshot's top 10. The rule keeps judging the
 * leak on its own figures: it stays firing while the leak runs and resolves only once it stops.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { WATCHING, exitOf, jsonLines, startCli } from '../helpers/cli.js';
import { writeOnlyRules } from '../helpers/rules.js';

const LAB = join(ROOT, 'build', 'Release', 'ctwatch-lab');
const LEAK = '127.0.0.5:6379/tcp';
const DECOYS = 12;

interface Line {
  event: string;
  rule: string;
  subject: string;
  /** ISO 8601 in the JSONL output */
  time: string;
  message: string;
  top: { destinations: { key: string }[] };
}

describe('alerts judge their own candidates (real kernel, own namespace)', () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-decoys-'));
  beforeAll(async () => {
    // decoy UDP entries leave the table 2 s after their packet, so the table stays small
    ns = await createNetns({ sysctls: { 'net.netfilter.nf_conntrack_udp_timeout': 2 } });
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a 700/s leak firing while 12 faster decoys fill the top list, and resolves it when it stops', async () => {
    const rules = writeOnlyRules(join(dir, 'rules.yaml'), {
      rules: { churn_per_destination: { for: '0s', resolve_for: '2s' } },
    });
    const out = join(dir, 'alerts.jsonl');
    const watch = startCli(['watch', '--netns', ns.name, '--rules', rules, '-o', out, '--status', '0', '--no-processes']);
    const lines = (): Line[] => jsonLines<Line>(out);
    const ofLeak = (): Line[] => lines().filter((l) => l.subject === LEAK);
    const children: ChildProcess[] = [];
    try {
      await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start');
      // the leak: a fresh connection per request for 22 s (no listener: SYN, RST, a CLOSE entry)
      const leak = ns.spawn(LAB, ['churn', 'api-worker', 'tcp', '127.0.0.5', '6379', String(700 * 22), '700', 'rst']);
      children.push(leak);
      await waitFor(() => ofLeak().find((l) => l.event === 'alert'), 'the leak to fire', 8000);
      // the decoys, each a little faster than the leak, for 15 s
      for (let i = 0; i < DECOYS; i++) {
        children.push(ns.spawn(LAB, ['churn', `decoy${i}`, 'udp', `127.0.0.${20 + i}`, '53', String(760 * 15), '760', 'server']));
      }
      const decoysDone = Promise.all(children.slice(1).map(exitOf));
      // once the decoys are up, they outrank the leak (the alert's own top list holds five)
      const pushedOut = await waitFor(
        () => lines().find((l) => l.subject !== LEAK && l.event === 'alert' && l.top.destinations.length >= 5 && !l.top.destinations.some((d) => d.key === LEAK)),
        'a decoy alert whose top list no longer has the leak',
        10_000,
      );
      expect(pushedOut.top.destinations.map((d) => d.key)).not.toContain(LEAK);
      const leakExit = await exitOf(leak);
      const leakEnded = Date.now();
      expect(leakExit).toBe(0);
      await decoysDone;
      // while the leak ran, it was never resolved
      const during = ofLeak().filter((l) => Date.parse(l.time) < leakEnded);
      expect(during.map((l) => l.event), JSON.stringify({ leakEnded, lines: ofLeak().map((l) => [l.event, l.time, l.message]) })).toEqual(['alert']);
      // and it resolves on its own figures once it has stopped (10 s rate under 400/s, then 2 s)
      const resolved = await waitFor(() => ofLeak().find((l) => l.event === 'resolved'), 'the leak to resolve', 20_000);
      expect(resolved.message).toMatch(/resolved: churn to 127\.0\.0\.5:6379\/tcp back to/);
      expect(Date.parse(resolved.time)).toBeGreaterThanOrEqual(leakEnded - 1000);
    } finally {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      watch.kill('SIGTERM');
    }
    expect(await watch.exited).toBe(0);
  }, 90_000);
});
