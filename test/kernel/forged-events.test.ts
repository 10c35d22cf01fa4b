/**
 * Events that are not the kernel's: a process with CAP_NET_ADMIN over the namespace (a
 * container's root in its own user namespace) can send ctnetlink messages to the reader's socket,
 * unicast to its port id or multicast to the event group. The reader's sockets are connected to
 * the kernel, which refuses the unicast (the sender gets ECONNREFUSED); the multicast arrives and
 * is refused by its sender's port id, counted as a decode error. The real events around them are
 * all there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

  it('ctnetlink messages another socket sends to the reader are refused (unicast by the kernel, multicast counted), real events kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-forged-'));
    const file = join(dir, 'events.jsonl');
    const rec = startCli(['record', '--netns', ns.name, '-o', file]);
    try {
      await waitFor(() => rec.stderr.includes(RECORDING), 'record to start');
      // the unicast: refused by the kernel before it is queued (the socket is connected to it)
      const unicast = await ns.exec('python3', [FORGE, String(rec.pid), 'unicast']);
      expect(unicast.stdout).toMatch(/port \d+: Connection refused/);
      expect(unicast.stdout).toContain('sent 0 of 1');
      // and to its request sockets (table dumps, statistics): their replies come from the kernel only
      const all = await ns.exec('python3', [FORGE, String(rec.pid), 'all']);
      expect(all.stdout).toContain('sent 0 of 3');
      expect(all.stdout.match(/Connection refused/g)).toHaveLength(3);
      // the multicast: delivered to every subscriber, ours too
      const multicast = await ns.exec('python3', [FORGE, String(rec.pid), 'multicast']);
      expect(multicast.stdout).toContain('sent 1 of 1');
      await ns.generate({
        listen: [{ proto: 'tcp', host: '127.0.0.5', port: 6379 }],
        run: [{ kind: 'connect', host: '127.0.0.5', port: 6379, count: 20, rate: 0, concurrency: 4 }],
      });
      await waitFor(() => readFileSync(file, 'utf8').split('"event":"new"').length - 1 >= 20, 'the 20 real NEW events');
    } finally {
      rec.kill('SIGTERM');
    }
    await rec.exited;
    const text = readFileSync(file, 'utf8');
    rmSync(dir, { recursive: true, force: true });
    expect(rec.code).toBe(0);
    expect(text).not.toContain('192.0.2.66');
    expect(text.split('"event":"new"').length - 1).toBe(20);
    const stopped = rec.stderr.split('\n').find((l) => l.includes('stopped'))!;
    expect(stopped).toContain('decodeErrors=1');
  });
});
