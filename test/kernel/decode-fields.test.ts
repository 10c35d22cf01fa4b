/**
 * Every field the decoder reads (native/conntrack/decode.cc), against what conntrack(8) prints for
 * the same entries: a UDP flow with a mark, a zone, counters and timestamps, and an established
 * TCP flow over IPv6, dumped; then the UDP flow deleted, whose DESTROY carries its final counters
 * and its end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { LiveSource } from '../../src/source/live.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import { collect } from '../helpers/collect.js';
import { createNetns, waitFor, type Netns } from '../helpers/netns.js';

/** `key=value` fields of one conntrack -L line; repeated keys (the reply direction) get a `r` prefix. */
function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/(\w[\w-]*)=(\S+)/g)) out[m[1] in out ? `r${m[1]}` : m[1]] = m[2];
  return out;
}

const UDP_SENDER = `const s = require('dgram').createSocket('udp4');
s.bind(40001, () => { let n = 0; const f = () => s.send('hello', 5353, '127.0.0.1', () => (++n < 3 ? f() : s.close())); f(); });`;
const TCP_PAIR = `const net = require('net');
const srv = net.createServer((c) => c.write('x')).listen(7001, '::1', () => {
  const c = net.connect({ host: '::1', port: 7001, localPort: 40002 }, () => c.write('hello'));
  c.on('data', () => console.log('ready'));
});`;

describe('decoded fields (real kernel, own namespace)', () => {
  let ns: Netns;
  let tcp: ChildProcess | undefined;
  beforeAll(async () => {
    // events=1: the UDP flow is made before the source subscribes, and with the default 2 ("auto")
    // an entry older than every listener never sends its DESTROY.
    ns = await createNetns({ sysctls: { 'net.netfilter.nf_conntrack_acct': 1, 'net.netfilter.nf_conntrack_timestamp': 1, 'net.netfilter.nf_conntrack_udp_timeout': 600, 'net.netfilter.nf_conntrack_events': 1 } });
    const rules = [
      'add chain inet ctwatch_test zone { type filter hook output priority -300; }',
      'add rule inet ctwatch_test zone udp dport 5353 ct zone set 7',
      'add rule inet ctwatch_test out udp dport 5353 ct mark set 42',
    ];
    for (const r of rules) await ns.exec('nft', r.split(' '));
  });
  afterAll(async () => {
    tcp?.kill();
    await ns?.destroy();
  });

  it('are what conntrack -L shows, for a dump and for a DESTROY', async () => {
    await ns.exec(process.execPath, ['-e', UDP_SENDER]);
    tcp = ns.spawn(process.execPath, ['-e', TCP_PAIR]);
    let ready = '';
    tcp.stdout!.on('data', (d) => (ready += d));
    await waitFor(() => ready.includes('ready'), 'the TCP pair');
    const { stdout } = await ns.exec('conntrack', ['-L', '-o', 'id']);
    const udpLine = fields(stdout.split('\n').find((l) => l.includes('dport=5353'))!);
    const tcpLine = fields(stdout.split('\n').find((l) => l.includes('dport=7001'))!);

    const before = Date.now() * 1000;
    const source = new LiveSource({ netns: ns.name, snapshot: true, events: ['new', 'update', 'destroy'] });
    const col = collect(source);
    try {
      await waitFor(() => col.events.some((e) => e.event === 'snapshot_done'), 'the dump');
      const dumped = col.conntrack().filter((e) => e.event === 'snapshot');
      const udp = dumped.find((e) => e.dport === 5353)!;
      const v6 = dumped.find((e) => e.dport === 7001)!;
      expect(udp).toMatchObject({
        family: 'ipv4', proto: 'udp', id: Number(udpLine.id), src: udpLine.src, dst: udpLine.dst, sport: 40001, dport: 5353,
        reply: { src: udpLine.rsrc, dst: udpLine.rdst, sport: 5353, dport: 40001, packets: 0, bytes: 0 },
        orig: { packets: Number(udpLine.packets), bytes: Number(udpLine.bytes) },
        mark: 42, zone: 7,
      });
      expect(udp.status).toContain('CONFIRMED');
      expect(udp.status).not.toContain('SEEN_REPLY');
      expect(udp.state).toBeUndefined();
      expect(Math.abs(udp.timeout! - Number(stdout.match(/udp\s+17\s+(\d+)/)![1]))).toBeLessThanOrEqual(2);
      expect(udp.start! / 1000).toBeGreaterThan(before - 60_000_000);
      expect(udp.start! / 1000).toBeLessThanOrEqual(Date.now() * 1000);
      expect(udp.end).toBeUndefined();

      expect(v6).toMatchObject({
        family: 'ipv6', proto: 'tcp', id: Number(tcpLine.id), src: '::1', dst: '::1', sport: 40002, dport: 7001, state: 'ESTABLISHED',
        reply: { src: '::1', dst: '::1', sport: 7001, dport: 40002, packets: Number(tcpLine.rpackets), bytes: Number(tcpLine.rbytes) },
        orig: { packets: Number(tcpLine.packets), bytes: Number(tcpLine.bytes) },
      });
      expect(v6.status).toEqual(expect.arrayContaining(['SEEN_REPLY', 'ASSURED', 'CONFIRMED']));
      expect(v6.mark).toBe(0);
      expect(v6.zone).toBeUndefined();

      await ns.exec('conntrack', ['-D', '-p', 'udp', '--dport', '5353', '-w', '7']);
      const gone = await waitFor(() => col.conntrack().find((e): e is ConntrackEvent => e.event === 'destroy' && e.dport === 5353), 'the DESTROY');
      expect(gone).toMatchObject({ id: udp.id, orig: udp.orig, mark: 42, zone: 7, start: udp.start });
      expect(gone.end).toBeGreaterThanOrEqual(gone.start!);
    } finally {
      await source.close();
      await col.done;
    }
  });
});
