import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  escapeSdValue,
  octetFrame,
  octetFrameBatch,
  structuredData,
  syslogMessage,
  truncateUtf8,
} from '../../src/formats/syslog.js';
import type { SinkRecord } from '../../src/formats/common.js';

const records = JSON.parse(
  readFileSync(new URL('../fixtures/formats/records.json', import.meta.url), 'utf8'),
) as Record<string, SinkRecord>;

describe('RFC 5424 messages', () => {
  it('builds the header, SD and MSG', () => {
    const msg = syslogMessage(records.udp4_flow, '{"x":1}', { hostname: 'gw1', procId: 4321 });
    expect(msg).toBe(
      '<134>1 2023-11-14T22:13:25.500000Z gw1 ctwatch 4321 flow ' +
        '[ctwatch@32473 event="flow" id="77" proto="udp" src="10.0.0.5" sport="54585" dst="8.8.8.8" dport="53" ' +
        'community_id="1:724RBBToLDhp0P9I/doBUhB3fOQ=" duration="0.25" reason="destroy"] {"x":1}',
    );
  });

  it('PRI = facility*8 + severity from the alert severity', () => {
    const a = records.alert as any;
    expect(syslogMessage({ ...a, severity: 'critical' }, 'm', { facility: 4 })).toMatch(/^<34>1 /);
    expect(syslogMessage(a, 'm', { facility: 16 })).toMatch(/^<132>1 /);
    expect(syslogMessage(records.resolved, 'm', { facility: 16 })).toMatch(/^<133>1 /);
  });

  it('uses the nil value and sanitises header fields', () => {
    const msg = syslogMessage(records.overflow, 'm', { hostname: 'my host\u00e9', structuredData: false });
    expect(msg).toBe('<132>1 2023-11-14T22:14:10.000000Z my_host_ ctwatch - overflow - m');
    const long = syslogMessage(records.overflow, 'm', { appName: 'a'.repeat(60), procId: 'p'.repeat(200) });
    const fields = long.split(' ');
    expect(fields[3]).toHaveLength(48);
    expect(fields[4]).toHaveLength(128);
  });

  it('escapes SD values', () => {
    expect(escapeSdValue('a"b\\c]d')).toBe('a\\"b\\\\c\\]d');
    const sd = structuredData({ ...(records.alert as any), subject: 'x"]y' });
    expect(sd).toContain('subject="x\\"\\]y"');
  });

  it('adds a BOM only to non-ASCII messages by default', () => {
    expect(syslogMessage(records.alert, 'plain')).not.toContain('\ufeff');
    expect(syslogMessage(records.alert, '×40')).toMatch(/\] \ufeff×40$/);
    expect(syslogMessage(records.alert, 'plain', { bom: 'always' })).toMatch(/\] \ufeffplain$/);
  });

  it('frames by octet count including the BOM, and truncates on character boundaries', () => {
    expect(octetFrame('ab')).toBe('2 ab');
    expect(octetFrame('\ufeff×')).toBe('5 \ufeff×');
    expect(truncateUtf8('aé€', 4)).toBe('aé');
    expect(truncateUtf8('aé€', 6)).toBe('aé€');
    expect(truncateUtf8('aé€', 5)).toBe('aé');
  });

  it('frames a batch into one buffer, byte for byte as the frames joined', () => {
    const msgs = [
      'ab', '', '\ufeff×', 'x'.repeat(9), 'y'.repeat(10), 'z'.repeat(1234), 'emoji \ud83d\ude00', 'lone \ud800 high',
      'lone \udc00 low', 'end high \ud83d', '\ude00 start low', 'é€', syslogMessage(records.udp4_flow, '{"a":"é"}'),
    ];
    expect(octetFrameBatch(msgs).equals(Buffer.from(msgs.map(octetFrame).join(''), 'utf8'))).toBe(true);
    for (const m of msgs) expect(octetFrameBatch([m]).toString('utf8')).toBe(Buffer.from(octetFrame(m)).toString('utf8'));
    expect(octetFrameBatch([]).length).toBe(0);
  });
});
