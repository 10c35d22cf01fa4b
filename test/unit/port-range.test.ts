import { describe, expect, it } from 'vitest';
import { KERNEL_SNAT_RANGE, snatRangeOfRuleset } from '../../src/pipeline/port-range.js';

const ruleset = (...exprs: unknown[][]) => ({
  nftables: [{ metainfo: { json_schema_version: 1 } }, { table: { family: 'inet', name: 't' } }, ...exprs.map((expr) => ({ rule: { family: 'inet', table: 't', chain: 'post', expr } }))],
});

describe('snatRangeOfRuleset (what SNAT can give one pair, from nft -j list ruleset)', () => {
  it('is the kernel default 1024-65535 without a snat or masquerade rule that gives ports', () => {
    expect(KERNEL_SNAT_RANGE).toEqual({ low: 1024, high: 65535, from: 'kernel default' });
    expect(snatRangeOfRuleset({ nftables: [] })).toEqual(KERNEL_SNAT_RANGE);
    expect(snatRangeOfRuleset(ruleset([{ masquerade: null }], [{ masquerade: { flags: 'random' } }]))).toEqual(KERNEL_SNAT_RANGE);
    // DNAT ports are the backend's, not a source range
    expect(snatRangeOfRuleset(ruleset([{ dnat: { family: 'ip', addr: '127.0.0.5', port: 6379 } }]))).toEqual(KERNEL_SNAT_RANGE);
  });

  it("reads a rule's port range, and the smallest when several give one", () => {
    expect(snatRangeOfRuleset(ruleset([{ masquerade: { port: { range: [40000, 40099] } } }]))).toEqual({ low: 40000, high: 40099, from: 'nft rule' });
    expect(
      snatRangeOfRuleset(
        ruleset(
          [{ masquerade: null }],
          [{ snat: { family: 'ip', addr: '10.9.0.1', port: { range: [5000, 5010] } } }],
          [{ masquerade: { port: { range: [40000, 40099] } } }],
        ),
      ),
    ).toEqual({ low: 5000, high: 5010, from: 'nft rule' });
    expect(snatRangeOfRuleset(ruleset([{ snat: { family: 'ip', addr: '10.9.0.1', port: 6000 } }]))).toEqual({ low: 6000, high: 6000, from: 'nft rule' });
  });

  it('ignores what it cannot read', () => {
    for (const bad of [null, 'x', { nftables: 'x' }, ruleset([{ masquerade: { port: { range: ['a', 2] } } }]), ruleset([{ snat: { port: 70000 } }])]) {
      expect(snatRangeOfRuleset(bad)).toEqual(KERNEL_SNAT_RANGE);
    }
  });
});
