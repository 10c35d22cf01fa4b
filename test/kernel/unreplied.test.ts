/**
 * Stale and unreplied entries against the real kernel: a one-way UDP sender in our own namespace
 * sends to a service address DNATed (output-hook nat rule, what kube-proxy does for a ClusterIP) to
 * a backend that is gone (nothing listens). The entries never see a reply; `top` lists them per
 * destination with their age and the DNAT flag, and the built-in rule `unreplied_pileup` fires.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, createNetns, waitFor, type Netns } from '../helpers/netns.js';
import { WATCHING, startCli } from '../helpers/cli.js';
import { writeOnlyRules } from '../helpers/rules.js';

const run = promisify(execFile);
const FLOWS = 60;

/** One datagram from each of FLOWS sockets, nothing read back: a statsd client with its server gone. */
const SENDER = `
const dgram = require('node:dgram');
const socks = [];
let sent = 0;
for (let i = 0; i < ${FLOWS}; i++) {
  const s = dgram.createSocket('udp4');
  s.on('error', () => {});
  socks.push(s);
  s.bind(0, '127.0.0.1', () => s.send('metric:1|c', 8125, '127.0.0.100', () => { if (++sent === ${FLOWS}) setTimeout(() => { socks.forEach((x) => x.close()); }, 200); }));
}`;

describe('unreplied entries: a one-way UDP sender to a DNATed backend that is gone (own namespace)', () => {
  let ns: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-unreplied-'));
  beforeAll(async () => {
    ns = await createNetns();
    await ns.dnat('udp', '127.0.0.100:8125', '127.0.0.5:8125');
    // and in conntrack zone 7 (set before conntrack sees the packet): counted per zone
    await ns.exec('nft', ['add chain inet ctwatch_test raw_out { type filter hook output priority -300; }']);
    await ns.exec('nft', ['add rule inet ctwatch_test raw_out udp dport 8125 ct zone set 7']);
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('top lists them with age and DNAT; unreplied_pileup fires', async () => {
    // only this rule, quickly: the default waits 30 s above 100 stale entries
    const rules = writeOnlyRules(join(dir, 'rules.yaml'), { rules: { unreplied_pileup: { threshold: 40, for: '0s' } } });
    const out = join(dir, 'alerts.jsonl');
    const watch = startCli(['watch', '--netns', ns.name, '--rules', rules, '-o', out, '--status', '0', '--no-processes']);
    let fired: { rule: string; subject: string; message: string; values: Record<string, number> } | undefined;
    try {
      await waitFor(() => watch.stderr.includes(WATCHING), 'watch to start');
      const sentAt = Date.now();
      await ns.exec(process.execPath, ['-e', SENDER]);
      // the conntrack view as the kernel has it: every entry UNREPLIED, original dst the service
      const { stdout: listed } = await ns.exec('conntrack', ['-L', '-p', 'udp', '--dport', '8125']);
      expect(listed.split('\n').filter((l) => l.includes('[UNREPLIED]') && l.includes('dst=127.0.0.100')).length).toBe(FLOWS);

      // top, while they sit there: the destination (the service address), how many, stale, oldest, DNAT
      const { stdout: screen } = await run(process.execPath, [CLI, 'top', '--netns', ns.name, '--batch', '--duration', '1500ms', '--no-processes'], { timeout: 30_000 });
      const table = screen.slice(screen.lastIndexOf('UNREPLIED ('));
      expect(table).toMatch(new RegExp(`^UNREPLIED \\(${FLOWS}, \\d+ over 5 s\\)`));
      expect(table).toMatch(new RegExp(`127\\.0\\.0\\.100:8125/udp +${FLOWS} +\\d+ +[\\d.]+ m?s +yes \\(${FLOWS}\\)`));
      // the zone: every one of them in zone 7 (LIVE is the last column of the ZONE table)
      expect(screen.slice(screen.lastIndexOf('ZONE '))).toMatch(new RegExp(`\\n7 +[\\d.]+ +[\\d.]+ +[\\d.]+ +${FLOWS}\\n`));

      await waitFor(() => existsSync(out) && readFileSync(out, 'utf8').includes('"unreplied_pileup"'), 'the unreplied_pileup alert', 20_000, 100);
      fired = JSON.parse(readFileSync(out, 'utf8').trim().split('\n').find((l) => l.includes('"unreplied_pileup"'))!);
      // stale: unreplied for over 5 s, so not before that
      expect(Date.now() - sentAt).toBeGreaterThan(5000);
    } finally {
      watch.kill('SIGTERM');
    }
    expect(await watch.exited).toBe(0);
    expect(fired!.rule).toBe('unreplied_pileup');
    expect(fired!.subject).toBe('127.0.0.100:8125/udp');
    expect(fired!.message).toContain(`${FLOWS} entries to 127.0.0.100:8125/udp unreplied for over 5 s (DNATed: ${FLOWS} of them`);
    expect(fired!.values.dnat).toBe(FLOWS);
  }, 60_000);
});
