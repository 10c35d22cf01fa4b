/** What publishers can make the fleet consumer hold is bounded, and what does not fit is counted. */
import { describe, expect, it } from 'vitest';
import { FLEET_LIMITS, FleetState } from '../../src/fleet/merge.js';

describe('FleetState bounds', () => {
  it('caps hosts, forgets long-silent ones first, and counts the rest', () => {
    const s = new FleetState({ silentAfterMs: 1000 });
    for (let i = 0; i < FLEET_LIMITS.hosts; i++) s.ingest(`ctwatch.h${i}.flow`, '{}', 0);
    s.ingest('ctwatch.one-too-many.flow', '{}', 1);
    expect(s.dropped.hosts).toBe(1);
    expect(s.view(1).hosts.length).toBe(FLEET_LIMITS.hosts);
    // all of them silent for more than 10 × --silent-after: room again
    s.ingest('ctwatch.late.flow', '{}', 20_000);
    expect(s.dropped.hosts).toBe(1);
    expect(s.view(20_000).hosts.map((h) => h.host)).toEqual(['late']);
  });

  it('caps open alerts per host; a resolve still clears one; unknown kinds count as other', () => {
    const s = new FleetState();
    for (let i = 0; i <= FLEET_LIMITS.alertsPerHost; i++) s.ingest('ctwatch.a.alert', JSON.stringify({ rule: 'r', subject: `s${i}` }), 0);
    expect(s.dropped.alerts).toBe(1);
    s.ingest('ctwatch.a.resolved', JSON.stringify({ rule: 'r', subject: 's0' }), 0);
    s.ingest('ctwatch.a.alert', JSON.stringify({ rule: 'r', subject: 'new' }), 0);
    expect(s.dropped.alerts).toBe(1);
    s.ingest('ctwatch.a.x1', '{}', 0);
    s.ingest('ctwatch.a.x2', '{}', 0);
    expect(s.byKind.get('other')).toBe(2);
    expect(s.byKind.has('x1')).toBe(false);
  });
});
