/**
 * Kernel-side filters against the real kernel: events outside the filter never cross into
 * ctwatch (the addon's own event counter does not see them), an IPv4 address filter does not hide
 * IPv6, `family` does, and what the kernel cannot filter (ports) is applied in user space with a
 * note instead of being ignored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiveSource } from '../../src/source/live.js';
import { compileFilters } from '../../src/source/filter.js';
import { collect } from '../helpers/collect.js';
import { createNetns, waitFor, type Netns } from '../helpers/netns.js';

const TRAFFIC = {
  listen: [
    { proto: 'tcp', host: '127.0.0.5', port: 6379 },
    { proto: 'udp', host: '127.0.0.6', port: 53 },
    { proto: 'tcp', host: '::1', port: 7001 },
  ],
  run: [
    { kind: 'connect', host: '127.0.0.5', port: 6379, from: '127.0.0.1', count: 20, rate: 0 },
    { kind: 'connect', host: '127.0.0.5', port: 6379, from: '127.0.0.2', count: 10, rate: 0 },
    { kind: 'udp', host: '127.0.0.6', port: 53, count: 15 },
    { kind: 'connect', host: '::1', port: 7001, count: 12, rate: 0 },
  ],
};

async function run(ns: Netns, filter: string[]) {
  await ns.exec('conntrack', ['-F']);
  const source = new LiveSource({ netns: ns.name, filter, events: ['new'] });
  const col = collect(source);
  // A marker flow every filter lets through tells us the source is listening.
  await waitFor(async () => {
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.1', port: 9999 }], run: [{ kind: 'connect', host: '127.0.0.1', port: 9999, from: '127.0.0.1', count: 1, rate: 0 }] });
    return col.conntrack().some((e) => e.dport === 9999);
  }, 'the source to listen');
  const before = source.counters.events;
  await ns.generate(TRAFFIC);
  // The kernel's count of new flows in the namespace: everything was delivered by the time it
  // settles, then a last marker flow flushes the stream.
  await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.1', port: 9998 }], run: [{ kind: 'connect', host: '127.0.0.1', port: 9998, from: '127.0.0.1', count: 1, rate: 0 }] });
  await waitFor(() => col.conntrack().some((e) => e.dport === 9998), 'the closing marker');
  const seen = col.conntrack().filter((e) => e.dport !== 9999 && e.dport !== 9998);
  const crossed = source.counters.events - before - 1; // minus the closing marker
  await source.close();
  await col.done;
  return { seen, crossed, source };
}

describe('kernel-side filters (real kernel, own namespace)', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('proto tcp: UDP never crosses into ctwatch', async () => {
    const { seen, crossed } = await run(ns, ['proto tcp']);
    expect(seen.every((e) => e.proto === 'tcp')).toBe(true);
    expect(seen).toHaveLength(42);
    expect(crossed).toBe(42); // the addon decoded exactly the TCP flows: UDP was dropped by the kernel
  });

  it('an IPv4 source filter keeps IPv6 flows; family ipv4 drops them', async () => {
    const r = await run(ns, ['src 127.0.0.1/32']);
    const v4 = r.seen.filter((e) => e.family === 'ipv4');
    expect(v4.every((e) => e.src === '127.0.0.1')).toBe(true);
    expect(v4.filter((e) => e.proto === 'tcp')).toHaveLength(20); // not the 10 from 127.0.0.2
    expect(r.seen.filter((e) => e.family === 'ipv6')).toHaveLength(12);
    expect(r.crossed).toBe(r.seen.length);
    const only4 = await run(ns, ['src 127.0.0.1/32', 'family ipv4']);
    expect(only4.seen.filter((e) => e.family === 'ipv6')).toHaveLength(0);
    expect(only4.seen.filter((e) => e.proto === 'tcp')).toHaveLength(20);
  });

  it('an IPv6 destination filter keeps IPv4 flows', async () => {
    const r = await run(ns, ['dst ::1/128']);
    expect(r.seen.filter((e) => e.family === 'ipv6')).toHaveLength(12);
    expect(r.seen.filter((e) => e.family === 'ipv4' && e.proto === 'tcp')).toHaveLength(30);
  });

  it('ports are filtered in user space, with a note, not ignored', async () => {
    const { seen, source } = await run(ns, ['proto tcp', 'dport 6379,9998,9999']); // + the markers
    expect(seen).toHaveLength(30);
    expect(seen.every((e) => e.dport === 6379)).toBe(true);
    expect(source.filterNotes.join(' ')).toMatch(/user space/);
    expect(source.filteredInUserSpace).toBeGreaterThanOrEqual(12);
  });

  it('a filter the parser cannot read is refused with a clear error', () => {
    expect(() => compileFilters(['proto nosuch'])).toThrow(/unknown protocol 'nosuch'/);
    expect(() => compileFilters(['src 300.1.1.1'])).toThrow(/not an address or CIDR/);
    expect(() => compileFilters(['state FLYING'])).toThrow(/unknown TCP state/);
    expect(() => compileFilters(['colour blue'])).toThrow(/unknown key 'colour'/);
    // a slash with nothing after it was read as /0 (every address) or a mask of 0 (no mark)
    expect(() => compileFilters(['src 127.0.0.0/'])).toThrow(/write the prefix length after the slash, 0-32/);
    expect(() => compileFilters(['dst 2001:db8::/'])).toThrow(/write the prefix length after the slash, 0-128/);
    expect(() => compileFilters(['src 10.0.0.0/8/8'])).toThrow(/not an address or CIDR/);
    expect(() => compileFilters(['src 10.0.0.0/ 8'])).toThrow(/prefix length/);
    expect(() => compileFilters(['mark 0x1/'])).toThrow(/'0x1\/' is not a mark/);
    expect(() => compileFilters(['mark /0xff'])).toThrow(/is not a mark/);
    expect(() => compileFilters(['mark 0x10/0x0f'])).toThrow(/bits outside the mask/);
    expect(() => compileFilters(['mark 1e3'])).toThrow(/is not a mark/);
    expect(() => compileFilters(['dport 0x50'])).toThrow(/dport takes numbers 0-65535/);
    expect(compileFilters(['mark 0x10/0xf0', 'src 10.0.0.0/8']).kernel).toMatchObject({ marks: [[0x10, 0xf0]], src4: [[0x0a000000, 0xff000000]] });
    expect(compileFilters(['mark 4294967295']).kernel!.marks).toEqual([[0xffffffff, 0xffffffff]]);
  });
});
