import { describe, expect, it } from 'vitest';
import { parsePortRange } from '../../src/pipeline/port-range.js';

describe('parsePortRange', () => {
  it('reads the sysctl as the kernel writes it', () => {
    expect(parsePortRange('32768\t60999\n')).toEqual({ low: 32768, high: 60999 });
    expect(parsePortRange('40000 40099')).toEqual({ low: 40000, high: 40099 });
  });
  it('refuses what is not two ports in order', () => {
    for (const bad of ['', '1', 'a b', '500 400', '0 10', '1 70000']) expect(parsePortRange(bad), bad).toBeUndefined();
  });
});
