/** The `ctwatch fleet` screen: a pure function of the merged view. */
import { describe, expect, it } from 'vitest';
import { renderFleet } from '../../src/fleet/view.js';
import type { FleetHost, FleetView } from '../../src/fleet/merge.js';

function host(over: Partial<FleetHost> = {}): FleetHost {
  return {
    host: 'web-1',
    fill: 0.5,
    entries: 131_072,
    max: 262_144,
    timeToFull: null,
    newPerS: 1234.56,
    live: 900,
    topDestination: '10.0.0.5:6379/tcp',
    topProcess: 'api-worker',
    flows: 12_000,
    alerts: 0,
    silentFor: 0.4,
    silent: false,
    ...over,
  } as FleetHost;
}

function view(over: Partial<FleetView> = {}): FleetView {
  return { v: 1, event: 'fleet', hosts: [], destinations: [], processes: [], alerts: [], messages: 0, ...over };
}

/** Wide enough for every column of the host table (128 characters). */
const WIDE = 200;

/** The row of the host table that starts with `name`. */
const rowOf = (screen: string, name: string) => screen.split('\n').find((l) => l.startsWith(name))!;

describe('renderFleet', () => {
  it('says when nothing has arrived yet', () => {
    const screen = renderFleet(view(), '12:00:00');
    const lines = screen.split('\n');
    expect(lines[0]).toBe('ctwatch fleet — 0 hosts — 12:00:00   0 messages');
    expect(screen).toContain('  (no host has published yet)');
    // both key tables, each with its own "none yet"
    expect(lines.filter((l) => l === '  (none yet)')).toHaveLength(2);
    expect(lines.some((l) => l.startsWith('DESTINATION'))).toBe(true);
    expect(lines.some((l) => l.startsWith('PROCESS'))).toBe(true);
  });

  it('heads the screen with hosts, silent hosts, the clock, messages (thousands split by spaces) and the alerts', () => {
    const v = view({
      hosts: [host(), host({ host: 'web-2', silent: true, silentFor: 42.4 })],
      messages: 1_234_567,
      alerts: [{ rule: 'host_silent', severity: 'warning', subject: 'web-2', message: 'web-2 silent for 42 s', hosts: ['web-2'] }],
    });
    const lines = renderFleet(v, '12:00:00').split('\n');
    expect(lines[0]).toBe('ctwatch fleet — 2 hosts (1 silent) — 12:00:00   1 234 567 messages');
    expect(lines[1]).toBe('ALERT WARNING web-2 silent for 42 s');
  });

  it('a host row: fill, entries, time to full, rates to one decimal, top destination and process', () => {
    const screen = renderFleet(view({ hosts: [host({ timeToFull: 600 })] }), 't', WIDE);
    const row = rowOf(screen, 'web-1');
    expect(row).toMatch(/^web-1 +50 % +131 072 +full in ~10 min +1 234\.6 +10\.0\.0\.5:6379\/tcp +api-worker +12 000$/);
  });

  it('fills under 10 % with a decimal, unknown kernel figures and tops as -, a silent host by how long', () => {
    const screen = renderFleet(
      view({
        hosts: [
          host({ host: 'low', fill: 0.043 }),
          host({ host: 'unknown', fill: null, entries: null, topDestination: null, topProcess: null }),
          host({ host: 'quiet', silent: true, silentFor: 95.6 }),
        ],
      }),
      't',
      WIDE,
    );
    expect(rowOf(screen, 'low')).toMatch(/^low +4\.3 % /);
    expect(rowOf(screen, 'unknown')).toMatch(/^unknown +- +- +not growing +1 234\.6 +- +- +12 000$/);
    expect(rowOf(screen, 'quiet')).toMatch(/ silent 96 s /);
  });

  it('key tables list each key with its rate, live count and the hosts it churns on', () => {
    const screen = renderFleet(
      view({
        destinations: [{ key: '10.0.0.5:6379/tcp', newPerS: 310, live: 40.04, hosts: [{ host: 'web-1', newPerS: 200 }, { host: 'web-2', newPerS: 110.25 }] }],
        processes: [{ key: 'api-worker', newPerS: 12.5, live: 3, hosts: [{ host: 'web-1', newPerS: 12.5 }] }],
      }),
      't',
    );
    expect(screen).toMatch(/\n10\.0\.0\.5:6379\/tcp +310 +40  web-1 200\/s, web-2 110\.3\/s\n/);
    expect(screen).toMatch(/\napi-worker +12\.5 +3  web-1 12\.5\/s$/);
    // one table each: none says "none yet"
    expect(screen).not.toContain('(none yet)');
  });

  it('cuts a value too wide for its column, with a space before the next', () => {
    const long = 'a-very-long-host-name-that-goes-on';
    const row = rowOf(renderFleet(view({ hosts: [host({ host: long })] }), 't'), 'a-very');
    // HOST is 20 wide: 19 characters of the name, then a space
    expect(row.slice(0, 20)).toBe(`${long.slice(0, 19)} `);
  });

  it('never lets a host name or process title drive the terminal, and keeps lines within the width', () => {
    const evil = view({ hosts: [host({ host: 'evil\x1b[2J', topProcess: 'x\u202egnp.exe' })] });
    const screen = renderFleet(evil, 't', WIDE);
    expect(screen).not.toMatch(/[\x1b\u202e]/);
    expect(screen).toContain('evil\\x1b[2J');
    expect(screen).toContain('x\\u202egnp.exe');
    for (const l of renderFleet(evil, 't', 80).split('\n')) expect(l.length).toBeLessThanOrEqual(80);
  });

  it('an escaped host name is measured as shown: the columns after it stay in line', () => {
    const screen = renderFleet(view({ hosts: [host({ host: 'ev\x1bil' }), host({ host: 'plain' })] }), 't', WIDE);
    const at = (name: string) => rowOf(screen, name).indexOf('50 %');
    expect(rowOf(screen, 'ev\\x1bil')).toBeDefined();
    expect(at('ev\\x1bil')).toBe(at('plain'));
  });
});
