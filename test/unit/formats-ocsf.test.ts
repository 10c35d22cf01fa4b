import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { closeActivity, ocsfDocument } from '../../src/formats/ocsf.js';
import type { FormatOptions, SinkRecord } from '../../src/formats/common.js';

const fx = (p: string) => JSON.parse(readFileSync(new URL(`../fixtures/formats/${p}`, import.meta.url), 'utf8'));
const records = fx('records.json') as Record<string, SinkRecord>;
const options = fx('options.json') as FormatOptions;

describe('OCSF events', () => {
  for (const name of ['tcp4_destroy', 'tcp6_new', 'icmp4_destroy', 'udp4_flow', 'icmp6_flow', 'alert']) {
    it(`${name} matches the written-out event`, () => {
      expect(ocsfDocument(records[name], options)).toEqual(fx(`ocsf/${name}.json`));
    });
  }

  it.each([
    ['tcp6_new', 1, 400101],
    ['tcp4_dnat_update', 6, 400106],
    ['tcp4_destroy', 2, 400102],
    ['icmp4_destroy', 2, 400102],
    ['udp4_flow', 2, 400102],
    ['icmp6_flow', 4, 400104],
    ['tcp6_flow_refused', 5, 400105],
    ['tcp4_flow_reset', 3, 400103],
  ])('%s -> activity_id %i', (name, activity, typeUid) => {
    const doc = ocsfDocument(records[name], options) as any;
    expect(doc.class_uid).toBe(4001);
    expect(doc.category_uid).toBe(4);
    expect(doc.activity_id).toBe(activity);
    expect(doc.type_uid).toBe(typeUid);
    expect(doc.severity_id).toBe(1);
    expect(doc.metadata.version).toBe('1.3.0');
    expect(doc.metadata.product.name).toBe('ctwatch');
    expect(Number.isInteger(doc.time)).toBe(true);
  });

  it('snapshot entries are traffic reports; a destroy never replied to is a failure', () => {
    const snap = { ...(records.tcp4_dnat_update as any), event: 'snapshot' };
    expect((ocsfDocument(snap) as any).activity_id).toBe(6);
    const unanswered = { ...(records.tcp4_destroy as any), status: ['CONFIRMED'], state: 'SYN_SENT' };
    expect((ocsfDocument(unanswered) as any).activity_id).toBe(4);
  });

  it('flow end reasons shutdown/resync map to traffic/close', () => {
    const f = records.tcp4_flow_reset as any;
    expect((ocsfDocument({ ...f, reason: 'shutdown' }) as any).activity_id).toBe(6);
    expect((ocsfDocument({ ...f, reason: 'resync' }) as any).activity_id).toBe(2);
  });

  it('closeActivity follows FORMATS.md', () => {
    expect(closeActivity({ proto: 'tcp', state: 'TIME_WAIT', replied: true, assured: true })).toBe(2);
    expect(closeActivity({ proto: 'tcp', state: 'CLOSE', replied: true, assured: true })).toBe(3);
    expect(closeActivity({ proto: 'tcp', state: 'SYN_SENT', replied: false, assured: false })).toBe(4);
    expect(closeActivity({ proto: 'tcp', state: 'CLOSE', replied: true, assured: false })).toBe(5);
    expect(closeActivity({ proto: 'udp', replied: true, assured: false })).toBe(2);
  });

  it('resolved alerts close the finding', () => {
    const doc = ocsfDocument(records.resolved) as any;
    expect(doc.class_uid).toBe(2004);
    expect(doc.activity_id).toBe(3);
    expect(doc.type_uid).toBe(200403);
    expect(doc.status_id).toBe(4);
    expect(doc.severity_id).toBe(5);
  });

  it('other records become base events', () => {
    const doc = ocsfDocument(records.overflow) as any;
    expect(doc).toMatchObject({ class_uid: 0, category_uid: 0, activity_id: 99, type_uid: 99, time: 1700000050000 });
    expect(doc.unmapped).toEqual({ ctwatch: { overflow: { overflows: 3 } } });
  });
});
