/** Sink configuration: validation with paths in the messages, secrets, filters, several sinks. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSinks, eventFilter, parseSinkConfigs, SinkConfigError } from '../../src/sinks/index.js';
import { HttpReceiver } from '../helpers/receivers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-cfg-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function issues(raw: unknown): string[] {
  try {
    parseSinkConfigs(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(SinkConfigError);
    expect((err as SinkConfigError).code).toBe('ERR_SINK_CONFIG');
    return (err as SinkConfigError).issues.map((i) => `${i.field}: ${i.reason}`);
  }
  return [];
}

describe('parseSinkConfigs', () => {
  it('accepts a full example', () => {
    const specs = parseSinkConfigs([
      { type: 'syslog', name: 'siem', host: 'siem.example.net', format: 'cef', events: ['alert', 'resolved', 'flow'],
        tls: { ca_file: '/etc/ctwatch/ca.pem' }, spool: { dir: '/var/lib/ctwatch/spool/siem', max_bytes: '256MiB' } },
      { type: 'splunk_hec', url: 'https://splunk:8088', token_env: 'HEC_TOKEN', batch: { max_records: 1000, max_wait: '2s' } },
      { type: 'elasticsearch', url: 'https://es:9200', index: 'logs-ctwatch-default', api_key_file: '/k' },
      { type: 'http', url: 'http://127.0.0.1:9000/in', format: 'ocsf', gzip: false, retry: { initial: '500ms', max: '1m', max_attempts: 10 } },
      { type: 'file', path: '/var/log/ctwatch/flows.jsonl', rotate: { max_bytes: '100MB', interval: '1d' }, max_files: 7 },
    ]);
    expect(specs.map((s) => s.type)).toEqual(['syslog', 'splunk_hec', 'elasticsearch', 'http', 'file']);
    const [syslog, hec, es, http, file] = specs as any[];
    expect(syslog).toMatchObject({ protocol: 'tls', port: 6514, facility: 16, format: 'cef', tls: { caFile: '/etc/ctwatch/ca.pem', verify: true } });
    expect(syslog.spool).toMatchObject({ maxBytes: 256 << 20, policy: 'drop-oldest' });
    expect(hec).toMatchObject({ name: 'splunk_hec-1', gzip: true, events: ['flow', 'alert', 'resolved', 'overflow'], batch: { maxRecords: 1000, maxWaitMs: 2000 } });
    expect(es).toMatchObject({ format: 'ecs', op: 'create', token: { file: '/k' } });
    expect(http.retry).toEqual({ initialMs: 500, maxMs: 60_000, maxAttempts: 10 });
    expect(file).toMatchObject({ rotateBytes: 100e6, rotateIntervalMs: 86_400_000, maxFiles: 7, gzip: true });
  });

  it('reports every problem with its path', () => {
    expect(
      issues([
        { type: 'syslog', host: 'h', protocol: 'tcp', port: 70000, tls: { ca_file: '/x' } },
        { type: 'splunk_hec', url: 'https://s:8088', token: 'inline!' },
        { type: 'http', url: 'ftp://x' },
        { type: 'file' },
        { type: 'kafka' },
        { type: 'http', url: 'http://x', events: ['flows'], formt: 'ecs', spool: { dir: '/s', policy: 'drop-all' } },
        'nope',
      ]),
    ).toEqual([
      // one error model with the rules file: its wording, and a did-you-mean for unknown keys
      'sinks[0].port: 70000 is out of range: use 1 to 65535',
      'sinks[0].tls: only applies to protocol: tls (this sink uses tcp)',
      'sinks[1]: secrets are not accepted inline: use token_file or token_env',
      'sinks[1].token_file: a HEC token is required (token_file or token_env)',
      'sinks[2].url: expected an http:// or https:// URL',
      'sinks[3].path: is required',
      'sinks[4].type: expected one of syslog, splunk_hec, elasticsearch, http, webhook, file, nats',
      'sinks[5].events[0]: unknown event kind "flows" (one of new, update, destroy, snapshot, conntrack, flow, alert, resolved, overflow, snapshot_done, churn, other)',
      'sinks[5].spool.policy: expected one of drop-oldest, drop-newest',
      'sinks[5].formt: unknown field for type http (did you mean format?)',
      'sinks[6]: expected a mapping',
    ]);
  });

  it('reads durations and sizes with the grammar of the flags and the rules file', () => {
    // a bare number was seconds here and refused in the rules file; now a unit is required in both
    expect(issues([{ type: 'http', url: 'http://x', retry: { initial: 0.5 }, batch: { max_wait: '1m30s' } }])).toEqual([
      'sinks[0].retry.initial: 0.5 needs a unit: write 0.5s, 0.5m or 0.5h',
    ]);
    const [s] = parseSinkConfigs([{ type: 'http', url: 'http://x', batch: { max_wait: '1m30s', max_bytes: '64K' }, memory: { max_bytes: '64MB' } }]);
    expect(s.batch).toMatchObject({ maxWaitMs: 90_000, maxBytes: 65_536 });
    expect(s.memory.maxBytes).toBe(64_000_000);
    expect(issues([{ type: 'http', url: 'http://x', timeout: '2h', batch: { max_wait: '30d', max_bytes: 0 }, retry: { initial: '30d' } }])).toEqual([
      'sinks[0].batch.max_bytes: 0 is out of range: use more than 0, at most 64M',
      'sinks[0].batch.max_wait: "30d" is out of range: use at most 10m',
      'sinks[0].retry.initial: "30d" is out of range: use at most 1h',
      'sinks[0].timeout: "2h" is out of range: use at most 1h',
    ]);
  });

  it('the error message carries the paths', () => {
    expect(() => parseSinkConfigs([{ type: 'http' }, { type: 'http', url: 'x' }])).toThrow(
      'sinks[0].url: is required\nsinks[1].url: expected an http:// or https:// URL',
    );
  });

  it('rejects two sinks sharing a spool or a name', () => {
    expect(
      issues([
        { type: 'http', name: 'a', url: 'http://x', spool: { dir: '/s' } },
        { type: 'http', name: 'a', url: 'http://y', spool: { dir: '/s' } },
      ]),
    ).toEqual(['sinks[1].name: duplicate sink name "a"', 'sinks[1].spool.dir: is also the spool of sink "a"; each sink needs its own']);
  });

  it('spool: true uses the spool root', () => {
    const [s] = parseSinkConfigs([{ type: 'http', name: 'my sink', url: 'http://x', spool: true }], { spoolRoot: '/var/lib/ctwatch/spool' });
    expect(s.spool).toMatchObject({ dir: '/var/lib/ctwatch/spool/my_sink', policy: 'drop-oldest' });
  });
});

describe('eventFilter', () => {
  it('selects by kind', () => {
    const f = eventFilter(['conntrack', 'alert']);
    expect(f({ event: 'new', src: 'a' } as any)).toBe(true);
    expect(f({ event: 'snapshot', src: 'a' } as any)).toBe(true);
    expect(f({ event: 'alert' } as any)).toBe(true);
    expect(f({ event: 'resolved' } as any)).toBe(false);
    expect(f({ event: 'flow' } as any)).toBe(false);
    const o = eventFilter(['other']);
    expect(o({ event: 'churn_summary' })).toBe(true);
    expect(o({ event: 'overflow' })).toBe(false);
  });
});

describe('createSinks', () => {
  it('fails at start-up on missing secrets and files, naming the key', () => {
    const specs = parseSinkConfigs([
      { type: 'splunk_hec', url: 'https://s:8088', token_env: 'NOPE_TOKEN' },
      { type: 'elasticsearch', url: 'https://es:9200', index: 'i', username: 'u', password_file: join(dir, 'missing') },
      { type: 'syslog', host: 'h', tls: { ca_file: join(dir, 'ca.pem') } },
    ]);
    try {
      createSinks(specs, { env: {} });
      expect.unreachable();
    } catch (err) {
      expect((err as SinkConfigError).issues.map((i) => i.field)).toEqual([
        'sinks[0].token_env',
        'sinks[1].password_file',
        'sinks[2].tls.ca_file',
      ]);
      expect((err as Error).message).toContain('environment variable NOPE_TOKEN is not set');
      expect((err as Error).message).toContain('ENOENT');
    }
  });

  it('feeds several sinks at once, each with its filter and format', async () => {
    const rx = new HttpReceiver();
    await rx.start();
    try {
      writeFileSync(join(dir, 'tok'), 'tok-abcdef\n');
      const set = createSinks(
        parseSinkConfigs([
          { type: 'http', name: 'alerts', url: rx.url('/alerts'), events: ['alert'], format: 'ocsf', token_file: join(dir, 'tok'), batch: { max_wait: '1ms' } },
          { type: 'http', name: 'flows', url: rx.url('/flows'), events: ['flow'], format: 'ecs', batch: { max_wait: '1ms' } },
          { type: 'file', name: 'all', path: join(dir, 'all.jsonl'), events: ['conntrack', 'flow', 'alert'] },
        ]),
        { env: {} },
      );
      set.write({ event: 'alert', time: 1, rule: 'r', severity: 'info', subject: 's', since: 1, message: 'm', values: {}, top: { destinations: [], sources: [] }, hint: 'h' } as any);
      set.write({ event: 'flow', time: 2, id: 9, family: 'ipv4', proto: 'udp', src: '1.1.1.1', dst: '2.2.2.2', sport: 1, dport: 2, begin: 1, duration: 0, clock: 'kernel', preexisting: false, assured: false, replied: false, reason: 'destroy' } as any);
      set.write({ event: 'new', time: 3, id: 10, family: 'ipv4', proto: 'udp', src: '1.1.1.1', dst: '2.2.2.2', sport: 1, dport: 2, reply: { src: '2.2.2.2', dst: '1.1.1.1', sport: 2, dport: 1 }, status: [] } as any);
      expect(await set.flush(5000)).toBe(true);
      expect(rx.requests).toHaveLength(2);
      const alerts = rx.requests.find((r) => r.path === '/alerts')!;
      const flows = rx.requests.find((r) => r.path === '/flows')!;
      expect(alerts.headers.authorization).toBe('Bearer tok-abcdef');
      expect(alerts.items.map((x) => x.class_uid)).toEqual([2004]);
      expect(flows.headers.authorization).toBeUndefined();
      expect(flows.items.map((x) => x.event.dataset)).toEqual(['ctwatch.flow']);
      const c = set.counters();
      expect(Object.keys(c)).toEqual(['alerts', 'flows', 'all']);
      expect([c.alerts.sent, c.flows.sent, c.all.sent]).toEqual([1, 1, 3]);
      await set.close();
    } finally {
      await rx.stop();
    }
  });
});
