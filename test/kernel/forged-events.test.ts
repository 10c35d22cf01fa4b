/**
 * Events that are not the kernel's: a process with CAP_NET_ADMIN over the namespace (a
 * container's root in its own user namespace) can unicast a ctnetlink message to the reader's
 * socket. The reader takes only what the kernel (port id 0) sent; the forged message is refused
 * and counted as a decode error, and the real events around it are all there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, ROOT, waitFor, type Netns } from '../helpers/netns.js';
import { RECORDING, startCli } from '../helpers/cli.js';

const FORGE = join(ROOT, 'test', 'fixtures', 'netlink', 'forge-event.py');

describe('forged netlink events (real kernel, own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('a ctnetlink message another socket sends to the reader is refused and counted, real events kept', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ctwatch-forged-')), 'events.jsonl');
    const rec = startCli(['record', '--netns', ns.name, '-o', file]);
    try {
      await waitFor(() => rec.stderr.includes(RECORDING), 'record to start');
      const { stdout } = await ns.exec('python3', [FORGE, String(rec.pid)]);
      // it did reach the socket: the kernel let the unicast through
      expect(stdout).toContain('sent 1 of 1');
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }],
        run: [{ kind: 'connect', host: '127.0.0.5', port: 6379, count: 20, rate: 0, concurrency: 4 }],
      });
      await waitFor(() => readFileSync(file, 'utf8').split('"event":"new"').length - 1 >= 20, 'the 20 real NEW events');
    } finally {
      rec.kill('SIGTERM');
    }
    expect(await rec.exited).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('192.0.2.66');
    expect(text.split('"event":"new"').length - 1).toBe(20);
    const stopped = rec.stderr.split('\n').find((l) => l.includes('stopped'))!;
    expect(stopped).toContain('decodeErrors=1');
  });
});
