import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addressBytes, communityId, type CommunityIdTuple } from '../../src/formats/community-id.js';

const vectors = JSON.parse(
  readFileSync(new URL('../fixtures/formats/community-id.json', import.meta.url), 'utf8'),
) as (CommunityIdTuple & { id: string; note: string })[];

describe('community_id v1', () => {
  for (const v of vectors) {
    it(v.note, () => {
      expect(communityId(v)).toBe(v.id);
    });
  }

  it('honours the seed', () => {
    const t = { proto: 'tcp', src: '128.232.110.120', dst: '66.35.250.204', sport: 34855, dport: 80 };
    // spec baseline_seed1.json
    expect(communityId(t, 1)).toBe('1:3V71V58M3Ksw/yuFALMcW0LAHvc=');
    expect(communityId(t, 0)).toBe(communityId(t));
  });

  it('is the same from both ends for paired ICMPv6 types (MLD, as the reference does)', () => {
    const a = communityId({ proto: 'icmpv6', src: 'fe80::1', dst: 'fe80::2', icmp: { type: 130, code: 0 } });
    const b = communityId({ proto: 'icmpv6', src: 'fe80::2', dst: 'fe80::1', icmp: { type: 131, code: 0 } });
    expect(a).toBeDefined();
    expect(a).toBe(b);
  });

  it('returns undefined for what cannot be hashed', () => {
    expect(communityId({ proto: 'tcp', src: '10.0.0.1', dst: '::1', sport: 1, dport: 2 })).toBeUndefined();
    expect(communityId({ proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2' })).toBeUndefined();
    expect(communityId({ proto: 'icmp', src: '10.0.0.1', dst: '10.0.0.2' })).toBeUndefined();
    expect(communityId({ proto: 'bogus', src: '10.0.0.1', dst: '10.0.0.2' })).toBeUndefined();
    expect(communityId({ proto: 'udp', src: 'nope', dst: '10.0.0.2', sport: 1, dport: 2 })).toBeUndefined();
  });

  it('parses every IPv6 spelling to the same bytes', () => {
    const hex = (s: string) => Buffer.from(addressBytes(s)!).toString('hex');
    expect(hex('::1')).toBe('00000000000000000000000000000001');
    expect(hex('2001:db8::')).toBe('20010db8000000000000000000000000');
    expect(hex('2001:DB8:0:0:0:0:0:1')).toBe(hex('2001:db8::1'));
    expect(hex('::ffff:192.0.2.1')).toBe('00000000000000000000ffffc0000201');
    expect(hex('fe80::1%eth0')).toBe(hex('fe80::1'));
    expect(hex('1.2.3.4')).toBe('01020304');
    expect(addressBytes('1.2.3')).toBeUndefined();
  });
});
