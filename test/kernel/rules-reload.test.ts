/**
 * SIGHUP reloads the rules file; a file that is too large, has too many rules or does not parse is
 * refused in one line and the old rules stay in force (a real watch in an own namespace, a real
 * leak afterwards is caught by the old rule).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { WATCHING, exitOf, jsonLines, startCli } from '../helpers/cli.js';
import { onlyRules } from '../helpers/rules.js';

const LAB = join(ROOT, 'build', 'Release', 'ctwatch-lab');

describe('watch: SIGHUP with a bad rules file keeps the old rules (real kernel, own namespace)', () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-reload-'));
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a 300 KiB file, 1001 rules and a broken file at SIGHUP, each in one line, and the old rule still fires', async () => {
    const rules = join(dir, 'rules.yaml');
    const good = onlyRules({
      rules: { leak_watch: { kind: 'churn_per_destination', rate: 'new1', threshold: 300, for: '0s' } },
    });
    writeFileSync(rules, good);
    const out = join(dir, 'alerts.jsonl');
    const watch = startCli(['watch', '--netns', ns.name, '--rules', rules, '-o', out, '--status', '0', '--no-processes']);
    const refusals = (): string[] => watch.stderr.split('\n').filter((l) => l.includes('rules not reloaded, keeping the old ones'));
    try {
      await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start');

      writeFileSync(rules, `${good}# ${'x'.repeat(300 * 1024)}\n`);
      watch.kill('SIGHUP');
      await waitFor(() => refusals().length === 1, 'the oversized file refused');
      expect(refusals()[0]).toContain('is larger than 256K');

      let many = 'rules:\n';
      for (let i = 0; i < 1001; i++) many += `  r${i}: {kind: table_fill}\n`;
      writeFileSync(rules, many);
      watch.kill('SIGHUP');
      await waitFor(() => refusals().length === 2, 'the 1001 rules refused');
      expect(refusals()[1]).toContain('rules: 1001 rules: at most 1000');

      writeFileSync(rules, 'rules:\n  leak_watch:\n    kind: churn_per_destination\n    threshold: lots\n');
      watch.kill('SIGHUP');
      await waitFor(() => refusals().length === 3, 'the broken file refused');
      expect(refusals()[2]).toContain(`${rules}:4: rules.leak_watch.threshold`);
      expect(watch.stderr).not.toContain('reloaded rules');

      // the old rule set is still the one in force: the leak is caught by leak_watch
      const leak = ns.spawn(LAB, ['churn', 'api-worker', 'tcp', '127.0.0.5', '6379', '2100', '700', 'rst']);
      const lines = () => jsonLines<{ event: string; rule: string; subject: string }>(out);
      const fired = await waitFor(() => lines().find((l) => l.event === 'alert'), 'the old rule to fire', 10_000);
      expect([fired.rule, fired.subject]).toEqual(['leak_watch', '127.0.0.5:6379/tcp']);
      expect(await exitOf(leak)).toBe(0);
    } finally {
      watch.kill('SIGTERM');
    }
    expect(await watch.exited).toBe(0);
  }, 60_000);
});
