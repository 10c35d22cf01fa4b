/**
 * contrib/logrotate.d/ctwatch with the real logrotate against a running `ctwatch watch`: rename,
 * then SIGHUP (the snippet's postrotate, pointed at this daemon instead of systemd's): the old file
 * keeps what was written before, the new one what came after, and no flow line is lost or doubled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { WATCHING, startCli } from '../helpers/cli.js';

const run = promisify(execFile);
const SNIPPET = join(ROOT, 'contrib/logrotate.d/ctwatch');

const flowPorts = (file: string) =>
  (existsSync(file) ? readFileSync(file, 'utf8') : '')
    .split('\n')
    .filter((l) => l.endsWith('}'))
    .map((l) => JSON.parse(l) as { event: string; sport?: number; dport?: number })
    .filter((r) => r.event === 'flow' && (r.dport === 7501 || r.dport === 7502));

describe('contrib/logrotate.d/ctwatch (own namespace)', () => {
  let ns: Netns;
  let dir: string;
  beforeAll(async () => {
    ns = await createNetns();
    dir = mkdtempSync(join(tmpdir(), 'ctwatch-logrotate-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('rename + SIGHUP: every flow line is in exactly one of the two files', async () => {
    const file = join(dir, 'flows.jsonl');
    const watch = startCli(['watch', '--netns', ns.name, '--flows', '-o', file, '--status', '0']);
    try {
      await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start', 15_000);
      const burst = async (port: number, n: number) => {
        await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port }], run: [{ kind: 'connect', host: '127.0.0.5', port, count: n, rate: 0 }] });
        await ns.exec('conntrack', ['-F']);
      };
      await burst(7501, 40);
      await waitFor(() => flowPorts(file).length >= 40, `40 flow lines before the rotation (${watch.stderr})`);

      // The snippet as shipped, with its path and its reload pointed at this test's daemon.
      const text = readFileSync(SNIPPET, 'utf8');
      expect(text).toContain('/var/log/ctwatch/*.jsonl {');
      expect(text).toContain('systemctl reload ctwatch.service');
      expect(text).not.toMatch(/^\s*copytruncate/m);
      const conf = join(dir, 'logrotate.conf');
      writeFileSync(conf, text.replace('/var/log/ctwatch/*.jsonl', join(dir, '*.jsonl')).replace(/systemctl reload ctwatch\.service/, `kill -HUP ${watch.child.pid}`));
      chmodSync(conf, 0o644);
      await run('logrotate', ['-f', '-s', join(dir, 'state'), conf]);
      // logrotate renamed it; SIGHUP makes ctwatch create the new file.
      await waitFor(() => existsSync(file) && watch.stderr.includes('(SIGHUP)'), `a new file after SIGHUP (${watch.stderr})`);
      expect(readdirSync(dir).filter((f) => f.startsWith('flows.jsonl')).sort()).toEqual(['flows.jsonl', 'flows.jsonl.1']);

      await burst(7502, 30);
      await waitFor(() => flowPorts(file).filter((f) => f.dport === 7502).length >= 30, `30 flow lines after the rotation (${watch.stderr})`);
      const before = flowPorts(join(dir, 'flows.jsonl.1'));
      const after = flowPorts(file);
      expect(before.filter((f) => f.dport === 7501)).toHaveLength(40);
      expect(before.filter((f) => f.dport === 7502)).toHaveLength(0);
      expect(after.filter((f) => f.dport === 7502)).toHaveLength(30);
      expect(after.filter((f) => f.dport === 7501)).toHaveLength(0);
    } finally {
      watch.kill('SIGTERM');
      expect(await watch.exited).toBe(0);
    }
  });
});
