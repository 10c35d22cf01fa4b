/**
 * Syslog sinks against a real rsyslogd (Debian packages rsyslog + rsyslog-gnutls; openssl for the
 * test PKI): every message arrives with the right RFC 5424 fields as rsyslog parses them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSinks, parseSinkConfigs, type SinkSet } from '../../src/sinks/index.js';
import { SyslogTransport } from '../../src/sinks/syslog.js';
import { syslogMessage } from '../../src/formats/syslog.js';
import type { FlowEnd } from '../../src/flow/types.js';
import type { Alert } from '../../src/alerts/types.js';
import { type Listener, type Rsyslog, type SyslogRecord, startRsyslog, waitFor } from '../helpers/receivers.js';
import { parseLine } from '../../src/recording/schema.js';
import { parseMicros } from '../../src/recording/time.js';

const host = { name: 'gw1', hostname: 'gw1.example.net' };
let dir: string;
let rs: Rsyslog;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-rsyslog-'));
  rs = await startRsyslog(dir);
});

afterAll(async () => {
  await rs?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function flow(id: number): FlowEnd {
  return {
    event: 'flow', time: 1_700_000_000_000_000 + id, id, family: 'ipv4', proto: 'tcp',
    src: '10.0.0.5', dst: '10.0.0.9', sport: 40_000 + (id % 1000), dport: 443,
    begin: 1_699_999_999_000_000, duration: 1.5, clock: 'kernel', preexisting: false,
    state: 'TIME_WAIT', assured: true, replied: true,
    orig: { packets: 10, bytes: 1000 }, reply: { packets: 8, bytes: 9000 }, reason: 'destroy',
  };
}

function alert(id: number): Alert {
  return {
    event: 'alert', time: 1_700_000_100_000_000 + id, rule: 'churn_per_destination', severity: 'warning',
    subject: `odd"subject]\\${id}`, since: 1_700_000_000_000_000,
    message: `churn ×40 its median (${id})`, values: { rate: 2340 },
    top: { destinations: [], sources: [] }, hint: 'ctwatch top',
  };
}

const msgBody = (r: SyslogRecord) => r.msg.replace(/^\ufeff/, '');

/** flows are keyed by id, alerts by the id folded into their time; other tests' messages are -1 */
function ownKey(r: SyslogRecord): number {
  try {
    const b = JSON.parse(msgBody(r));
    return b.event === 'flow' ? b.id : b.event === 'alert' ? parseMicros(b.time) % 1e6 : -1;
  } catch {
    return -1;
  }
}

function sinkFor(listener: Exclude<Listener, 'mtls'>, extra: Record<string, unknown> = {}): SinkSet {
  const protocol = listener;
  const specs = parseSinkConfigs([
    {
      name: `syslog-${listener}`, type: 'syslog', protocol, host: '127.0.0.1', port: rs.ports[listener],
      format: 'jsonl', events: ['flow', 'alert'],
      ...(protocol === 'tls' ? { tls: { ca_file: rs.pki.caFile } } : {}),
      retry: { initial: '20ms', max: '200ms' },
      ...extra,
    },
  ]);
  return createSinks(specs, { host });
}

describe.each(['udp', 'tcp', 'tls'] as const)('syslog over %s to rsyslog', (listener) => {
  it('delivers every record with the right RFC 5424 fields', async () => {
    const base = { udp: 1000, tcp: 2000, tls: 3000 }[listener];
    const set = sinkFor(listener);
    const flows = Array.from({ length: 60 }, (_, i) => flow(base + i));
    const alerts = [alert(base + 100), alert(base + 101)];
    for (const f of flows) set.write(f);
    for (const a of alerts) set.write(a);
    expect(await set.flush(5000)).toBe(true);
    const got = await waitFor(() => {
      const rows = rs.records(listener).filter((r) => ownKey(r) >= base && ownKey(r) < base + 1000);
      return rows.length >= flows.length + alerts.length ? rows : null;
    }, 10_000, `${listener} records`);

    const byFlowId = new Map<number, SyslogRecord>();
    const alertRows: SyslogRecord[] = [];
    for (const r of got) {
      const body = JSON.parse(msgBody(r));
      if (body.event === 'flow') byFlowId.set(body.id, r);
      else alertRows.push(r);
    }
    for (const f of flows) {
      const r = byFlowId.get(f.id);
      expect(r, `flow ${f.id}`).toBeDefined();
      expect(r!.hostname).toBe('gw1.example.net');
      expect(r!.appname).toBe('ctwatch');
      expect(r!.procid).toBe(String(process.pid));
      expect(r!.msgid).toBe('flow');
      expect(r!.pri).toBe('134'); // local0.info
      expect(r!.ts).toBe(new Date((f.time - (f.time % 1000)) / 1000).toISOString().replace('Z', `${String(f.time % 1000).padStart(3, '0')}Z`));
      expect(r!.sd).toMatch(new RegExp(`^\\[ctwatch@32473 event="flow" id="${f.id}" proto="tcp" src="10.0.0.5" sport="${f.sport}" dst="10.0.0.9" dport="443" community_id="1:[^"]+" duration="1.5" reason="destroy"\\]$`));
      // the recording schema's line: read back, it is the record itself
      expect(parseLine(msgBody(r!), 'syslog', 1)).toEqual(f);
    }
    expect(alertRows).toHaveLength(2);
    for (const r of alertRows) {
      const body = JSON.parse(msgBody(r)) as Alert;
      expect(r.msg.startsWith('\ufeff')).toBe(true); // non-ASCII MSG carries the BOM
      expect(r.msgid).toBe('alert');
      expect(r.pri).toBe('132'); // local0.warning
      expect(body.message).toMatch(/^churn ×40 its median/);
      expect(r.sd).toContain(`subject="odd\\"subject\\]\\\\${body.message.match(/\((\d+)\)/)![1]}"`);
    }
    const c = set.counters()[`syslog-${listener}`];
    expect(c.sent).toBe(62);
    expect(c.dropped).toBe(0);
    await set.close();
  });
});

describe('syslog framing and TLS', () => {
  it('TCP octet counting keeps messages with embedded newlines whole', async () => {
    const t = new SyslogTransport({ protocol: 'tcp', host: '127.0.0.1', port: rs.ports.tcp, header: { hostname: 'nl-test' } });
    const msgs = [1, 2, 3].map((i) => syslogMessage(flow(9000 + i), `first line ${i}\nsecond line ${i}\n\nfourth ${i}`, { hostname: 'nl-test', structuredData: false }));
    await t.send(msgs, new AbortController().signal);
    await t.close();
    const rows = await waitFor(() => {
      const r = rs.records('tcp').filter((x) => x.hostname === 'nl-test');
      return r.length >= 3 ? r : null;
    }, 10_000, 'newline messages');
    expect(rows.map((r) => r.msg)).toEqual([1, 2, 3].map((i) => `first line ${i}\nsecond line ${i}\n\nfourth ${i}`));
  });

  it('TLS with the wrong CA is refused with a clear error and nothing is sent', async () => {
    const set = sinkFor('tls', { name: 'syslog-badca', tls: { ca_file: rs.pki.otherCaFile } });
    for (let i = 0; i < 3; i++) set.write(flow(7000 + i));
    const c = await waitFor(() => {
      const x = set.counters()['syslog-badca'];
      return x.lastError ? x : null;
    }, 5000, 'TLS error');
    expect(c.lastError).toMatch(/TLS connection to syslog\+tls:\/\/127\.0\.0\.1:\d+ refused: server certificate not trusted: set tls\.ca_file/);
    expect(c.lastError).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN/);
    expect(c.sent).toBe(0);
    await set.close(100);
    expect(set.counters()['syslog-badca'].dropped).toBe(3);
    expect(rs.records('tls').some((r) => r.msg.includes('"id":700'))).toBe(false);
  });

  it('TLS verifies the host name too', async () => {
    const set = sinkFor('tls', { name: 'syslog-badname', tls: { ca_file: rs.pki.caFile, servername: 'siem.example.net' } });
    set.write(flow(7100));
    const c = await waitFor(() => set.counters()['syslog-badname'].lastError, 5000, 'TLS name error');
    expect(c).toMatch(/does not match the host name|ERR_TLS_CERT_ALTNAME_INVALID/);
    await set.close(100);
  });

  it('a client certificate gets through a listener that requires one', async () => {
    const specs = parseSinkConfigs([
      {
        name: 'syslog-mtls', type: 'syslog', protocol: 'tls', host: '127.0.0.1', port: rs.ports.mtls,
        events: ['flow'],
        tls: { ca_file: rs.pki.caFile, cert_file: rs.pki.clientCert, key_file: rs.pki.clientKey },
      },
    ]);
    const set = createSinks(specs, { host });
    set.write(flow(8000));
    set.write(flow(8001));
    expect(await set.flush(5000)).toBe(true);
    const rows = await waitFor(() => (rs.records('mtls').length >= 2 ? rs.records('mtls') : null), 10_000, 'mtls records');
    expect(rows.map((r) => JSON.parse(msgBody(r)).id)).toEqual([8000, 8001]);
    await set.close();
  });

  it('without a client certificate, a listener that requires one turns it away: a clear error, nothing counted as sent', async () => {
    const set = createSinks(parseSinkConfigs([
      { name: 'syslog-nocert', type: 'syslog', protocol: 'tls', host: '127.0.0.1', port: rs.ports.mtls, events: ['flow'], tls: { ca_file: rs.pki.caFile } },
    ]), { host });
    for (let i = 0; i < 3; i++) set.write(flow(8100 + i));
    const c = await waitFor(() => {
      const x = set.counters()['syslog-nocert'];
      return x.lastError ? x : null;
    }, 5000, 'the client certificate error');
    // rsyslog checks the certificate after the handshake and just closes: the error says why.
    expect(c.lastError).toMatch(/closed the TLS connection right after the handshake: it probably requires a client certificate \(set tls\.cert_file and tls\.key_file\)/);
    expect(c.sent).toBe(0);
    await set.close(100);
    expect(set.counters()['syslog-nocert'].dropped).toBe(3);
    expect(rs.records('mtls').some((r) => r.msg.includes('"id":810'))).toBe(false);
  });

  it('reconnects after the connection drops', async () => {
    const set = sinkFor('tcp', { name: 'syslog-reconnect' });
    set.write(flow(6000));
    expect(await set.flush(5000)).toBe(true);
    // simulate a dropped connection: the transport notices the closed socket and dials again
    (set.sinks[0] as any).transport.reopen();
    set.write(flow(6001));
    expect(await set.flush(5000)).toBe(true);
    await waitFor(() => {
      const ids = rs.records('tcp').map((r) => { try { return JSON.parse(msgBody(r)).id; } catch { return null; } });
      return ids.includes(6000) && ids.includes(6001);
    }, 10_000, 'records after reconnect');
    await set.close();
  });
});
