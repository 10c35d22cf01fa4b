import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ecsDocument } from '../../src/formats/ecs.js';
import type { FormatOptions, SinkRecord } from '../../src/formats/common.js';

const fx = (p: string) => JSON.parse(readFileSync(new URL(`../fixtures/formats/${p}`, import.meta.url), 'utf8'));
const records = fx('records.json') as Record<string, SinkRecord>;
const options = fx('options.json') as FormatOptions;

describe('ECS documents', () => {
  const cases = [
    'tcp4_destroy', 'tcp6_new', 'tcp4_dnat_update', 'icmp4_destroy', 'udp4_flow', 'icmp6_flow',
    'alert', 'resolved', 'overflow',
  ];
  for (const name of cases) {
    it(`${name} matches the written-out document`, () => {
      expect(ecsDocument(records[name], options)).toEqual(fx(`ecs/${name}.json`));
    });
  }

  it('event.duration is nanoseconds and equals event.end - event.start', () => {
    const doc = ecsDocument(records.udp4_flow, options) as any;
    expect(doc.event.duration).toBe(250_000_000);
    const span = (Date.parse(doc.event.end) - Date.parse(doc.event.start)) * 1e6;
    expect(span).toBe(doc.event.duration);
  });

  it('absent counters are absent, not zero', () => {
    const doc = ecsDocument(records.tcp6_new, options) as any;
    expect(doc.source.bytes).toBeUndefined();
    expect(doc.network.bytes).toBeUndefined();
  });

  it('without host options there is no host and no direction', () => {
    const doc = ecsDocument(records.tcp4_destroy) as any;
    expect(doc.host).toBeUndefined();
    expect(doc.network.direction).toBeUndefined();
    expect(doc.agent).toEqual({ type: 'ctwatch', version: '0.1.0' });
  });

  it('sets observer.* when the host forwards traffic', () => {
    const doc = ecsDocument(records.tcp4_dnat_update, { observer: { hostname: 'gw1', type: 'router' } }) as any;
    expect(doc.observer).toEqual({ hostname: 'gw1', type: 'router' });
  });

  it('maps the container of the process', () => {
    const rec = { ...(records.udp4_flow as any), process: { pid: 1, comm: 'x', container: 'abc123' } };
    const doc = ecsDocument(rec, {}) as any;
    expect(doc.container).toEqual({ id: 'abc123' });
    expect(doc.user).toBeUndefined();
  });
});

describe('FlowEnd.open (seconds the TCP connection was open)', () => {
  it('goes to conntrack.open_duration in ns (ECS) and unmapped ms (OCSF)', async () => {
    const { ocsfDocument } = await import('../../src/formats/ocsf.js');
    const f = { ...(records.tcp4_flow_reset as any), open: 0.3 };
    expect((ecsDocument(f) as any).conntrack.open_duration).toBe(300_000_000);
    expect((ocsfDocument(f) as any).unmapped.conntrack.open_duration).toBe(300);
    expect((ecsDocument(records.tcp4_flow_reset) as any).conntrack.open_duration).toBeUndefined();
  });
});
