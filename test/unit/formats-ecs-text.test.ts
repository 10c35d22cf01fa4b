/**
 * The ecs format writes flow ends and conntrack events as text (ecsJson) rather than stringifying
 * ecsDocument: both must give the same bytes, for every shape of record.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ecsDocument } from '../../src/formats/ecs.js';
import { ecsJson } from '../../src/formats/ecs-text.js';
import { formatFor } from '../../src/formats/index.js';
import type { FormatOptions, SinkRecord } from '../../src/formats/common.js';

const fx = (p: string) => JSON.parse(readFileSync(new URL(`../fixtures/formats/${p}`, import.meta.url), 'utf8'));
const records = fx('records.json') as Record<string, any>;
const options = fx('options.json') as FormatOptions;

const OPTIONS: [string, FormatOptions][] = [
  ['fixture options', options],
  ['no options', {}],
  ['observer and seed', { observer: { hostname: 'gw1', ip: ['192.0.2.1'], type: 'router' }, communityIdSeed: 7 }],
  [
    'host names needing escapes',
    {
      host: { name: 'h"1', hostname: 'h\\1\n', id: '\u0001', ip: [] },
      product: { vendor: 'v', name: 'ct"watch', version: '1\u2028' },
      localAddresses: ['2001:db8::1'],
    },
  ],
];

const MESSY = ['a"b', 'back\\slash', 'line\nbreak', 'tab\there', '\u0000nul', '\u001f', 'lone \ud800 high',
  'lone \udc00 low', 'pair \ud83d\ude00', 'é×€', '\u2028\u2029', '</script>', ''];

function flow(over: Record<string, unknown>): SinkRecord {
  return { ...records.udp4_flow, ...over } as SinkRecord;
}

const FLOWS: [string, SinkRecord][] = [
  ['udp4 with process', records.udp4_flow],
  ['icmp6', records.icmp6_flow],
  ['tcp6 refused', records.tcp6_flow_refused],
  ['tcp4 reset', records.tcp4_flow_reset],
  ['tcp4 open and process with container', flow({
    proto: 'tcp', dport: 443, state: 'TIME_WAIT', open: 0.2, mark: 3, zone: 1, netns: 'ns-a',
    process: { pid: 1, comm: 'nginx', exe: '/usr/sbin/nginx', uid: 0, cgroup: '/system.slice/nginx.service',
      unit: 'nginx.service', container: 'abc123' },
  })],
  ['icmp4', flow({ proto: 'icmp', sport: undefined, dport: undefined, icmp: { type: 8, code: 0, id: 9 },
    process: null })],
  ['udp6 without counters', flow({ family: 'ipv6', src: '2001:db8::1', dst: '2001:DB8::53', orig: undefined,
    reply: undefined, process: undefined })],
  ['user without uid', flow({ process: { pid: 2, comm: 'x', user: 'bob' } })],
  ['uid without user', flow({ process: { pid: 2, comm: 'x', uid: 1001 } })],
  ['gre, unknown and numeric protocols', flow({ proto: 'gre', sport: undefined, dport: undefined })],
  ['protocol as a number string', flow({ proto: '253', sport: undefined, dport: undefined })],
  ['protocol that is not one', flow({ proto: 'bogus"proto' })],
  ['non-finite numbers', flow({ open: Infinity, mark: -0, zone: Number.NaN, orig: { packets: Number.NaN, bytes: 1 } })],
  ['missing fields', flow({ family: undefined, id: undefined, sport: undefined, dport: undefined, reason: undefined })],
  ['null members', flow({ state: null, netns: null, process: { pid: null, comm: null, exe: null } })],
];

const CONNTRACK: [string, SinkRecord][] = [
  ['tcp4 destroy with SRC_NAT and timestamps', records.tcp4_destroy],
  ['tcp6 new without counters', records.tcp6_new],
  ['tcp4 DNAT update', records.tcp4_dnat_update],
  ['icmp4 destroy', records.icmp4_destroy],
  ['frozen status (as the decoder shares it)', { ...records.tcp4_destroy, status: Object.freeze(['SEEN_REPLY', 'SRC_NAT', 'DST_NAT']) }],
  ['snapshot with start only', { ...records.tcp6_new, event: 'snapshot', start: 1_699_999_990_000_000_000, state: undefined }],
  ['udp6 update with end only', { ...records.tcp6_new, event: 'update', proto: 'udp', end: 1_700_000_001_000_000_000 }],
  ['NAT with a reply tuple lacking ports', { ...records.icmp4_destroy, status: ['SRC_NAT', 'DST_NAT'] }],
];

function same(rec: SinkRecord, opts: FormatOptions): void {
  const text = ecsJson(rec, opts);
  expect(text).toBe(JSON.stringify(ecsDocument(rec, opts)));
  expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(ecsDocument(rec, opts))));
}

describe('ECS text matches the ECS document', () => {
  for (const [oname, opts] of OPTIONS) {
    for (const [name, rec] of [...FLOWS, ...CONNTRACK]) {
      it(`${name} (${oname})`, () => same(rec, opts));
    }
  }

  it('parses into the written-out documents', () => {
    for (const name of ['tcp4_destroy', 'tcp6_new', 'tcp4_dnat_update', 'icmp4_destroy', 'udp4_flow', 'icmp6_flow']) {
      const text = ecsJson(records[name], options);
      expect(JSON.parse(text)).toEqual(fx(`ecs/${name}.json`));
      expect(JSON.parse(text)).toEqual(ecsDocument(records[name], options));
    }
  });

  it('escapes strings as JSON.stringify does', () => {
    for (const s of MESSY) {
      same(flow({ state: s, netns: s, clock: s, reason: s, process: { pid: 1, comm: s, exe: s, user: s, cgroup: s,
        unit: s, container: s || 'c' } }), options);
      same({ ...records.tcp4_dnat_update, state: s, netns: s, status: [s, 'DST_NAT'], reply: { ...records.tcp4_dnat_update.reply, src: s } }, options);
      same(flow({ src: s, dst: s }), options);
    }
  });

  it('fails where the document fails', () => {
    const bad = flow({ duration: Number.NaN });
    expect(() => ecsDocument(bad, options)).toThrow(RangeError);
    expect(() => ecsJson(bad, options)).toThrow(RangeError);
  });

  it('writes alerts and other records as their documents', () => {
    for (const name of ['alert', 'resolved', 'overflow']) same(records[name], options);
  });

  it('follows a replaced host in the options', () => {
    const opts: FormatOptions = { ...options };
    same(records.udp4_flow, opts);
    opts.host = { name: 'other' };
    same(records.udp4_flow, opts);
    expect(JSON.parse(ecsJson(records.udp4_flow, opts)).host).toEqual({ name: 'other' });
    opts.observer = { hostname: 'gw' };
    same(records.tcp6_new, opts);
  });

  it('is what formatFor("ecs") writes', () => {
    const f = formatFor('ecs', options);
    for (const [, rec] of [...FLOWS, ...CONNTRACK]) expect(f(rec)).toBe(JSON.stringify(ecsDocument(rec, options)));
  });
});
