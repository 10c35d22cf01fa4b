/**
 * The nats sink against a real nats-server with JetStream (started here, loopback): records are
 * stored under ctwatch.<host>.<kind> with a Nats-Msg-Id and the schema header; the same records
 * sent again (a spool replayed after a restart) are de-duplicated by the server; the stream is
 * created with the limits asked for; wrong credentials and a TLS mismatch each give one clear line
 * in lastError and the log, with no secret in it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { FlowEnd } from '../../src/flow/types.js';
import { createSinks, parseSinkFile } from '../../src/sinks/index.js';
import { NatsTransport } from '../../src/sinks/nats.js';
import { NatsCluster } from '../helpers/nats.js';
import { waitFor } from '../helpers/netns.js';

function flow(id: number): FlowEnd {
  return {
    event: 'flow', time: 1_700_000_000_000_000 + id * 1000, id, family: 'ipv4', proto: 'tcp',
    src: '127.0.0.1', dst: '127.0.0.5', sport: 40_000 + (id % 20_000), dport: 6379,
    begin: 1_700_000_000_000_000, duration: 0.01, clock: 'kernel', preexisting: false,
    assured: true, replied: true, reason: 'destroy',
  };
}

const logLines = () => {
  const lines: string[] = [];
  const log = (level: string) => (obj: object, msg?: string) => lines.push(`${level} ${msg ?? ''} ${JSON.stringify(obj)}`);
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
};

const dir = mkdtempSync(join(tmpdir(), 'ctwatch-nats-sink-'));
const PASSWORD = 's3cret-nats-password';

function sinkFile(body: string): ReturnType<typeof createSinks> {
  const path = join(dir, `sinks-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, body);
  const specs = parseSinkFile(body, path);
  return createSinks(specs, { logger: log, host: { name: 'fallback' } });
}
const log = logLines();

describe('nats sink → nats-server JetStream', () => {
  const server = new NatsCluster({ user: 'ctwatch', password: PASSWORD });
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  beforeAll(async () => {
    writeFileSync(join(dir, 'password'), `${PASSWORD}\n`);
    writeFileSync(join(dir, 'wrong'), 'not-the-password\n');
    await server.start();
    nc = await server.client();
    jsm = await jetstreamManager(nc);
  }, 40_000);
  afterAll(async () => {
    await nc?.close().catch(() => {});
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores each record once under ctwatch.<host>.<kind>, and a replay is de-duplicated', async () => {
    const body = `sinks:
  - name: fleet
    type: nats
    servers: [${server.urls[0]}]
    host: web-1
    user: ctwatch
    password_file: ${join(dir, 'password')}
    events: [flow, alert]
    batch: { max_records: 200, max_wait: 50ms }
    stream: { name: T1, create: true, max_age: 1h, max_bytes: 64M, duplicate_window: 5m }
`;
    const first = sinkFile(body);
    for (let i = 0; i < 1000; i++) first.write(flow(i));
    first.write({ event: 'alert', time: 1_700_000_001_000_000, rule: 'r', severity: 'warning', message: 'm' } as never);
    expect(await first.flush(20_000)).toBe(true);
    const c1 = first.counters().fleet;
    await first.close();
    expect(c1).toMatchObject({ sent: 1001, dropped: 0, failed: 0, lastError: null });

    const info = await jsm.streams.info('T1');
    expect(info.state.messages).toBe(1001);
    expect(info.config.subjects).toEqual(['ctwatch.>']);
    expect(info.config.max_age).toBe(3600e9);
    expect(info.config.max_bytes).toBe(64 << 20);
    expect(info.config.duplicate_window).toBe(300e9);
    const m = await jsm.streams.getMessage('T1', { seq: 1 });
    expect(m?.subject).toBe('ctwatch.web-1.flow');
    expect(m?.header.get('Nats-Msg-Id')).toMatch(/^web-1\.flow\.[A-Za-z0-9_-]{27}$/);
    expect(m?.header.get('Ctwatch-Schema')).toBe('ctwatch.fleet/1');
    expect(m?.json<{ v: number; event: string; id: number }>()).toMatchObject({ event: 'flow', id: 0 });
    const last = await jsm.streams.getMessage('T1', { last_by_subj: 'ctwatch.web-1.alert' });
    expect(last?.json<{ event: string }>().event).toBe('alert');

    // the same records again (what a spool replays after a restart): stored once
    const again = sinkFile(body);
    for (let i = 0; i < 1000; i++) again.write(flow(i));
    expect(await again.flush(20_000)).toBe(true);
    const transport = (again.sinks[0] as unknown as { transport: NatsTransport }).transport;
    expect(transport.stats.duplicates).toBe(1000);
    await again.close();
    expect((await jsm.streams.info('T1')).state.messages).toBe(1001);
  }, 40_000);

  it('keeps a host’s order when a publish fails: the first record after a failure goes alone, and none starts after a failure', async () => {
    // A record whose subject no stream takes fails at the server (no responders) while the others
    // are stored: that is how a stream without a leader yet looks to a batch after an outage.
    await jsm.streams.add({ name: 'T3', subjects: ['ord.h.flow'] });
    const t = new NatsTransport({ servers: [server.urls[0]], host: 'h', prefix: 'ord', user: 'ctwatch', password: PASSWORD, timeoutMs: 2000, maxInflight: 50 });
    const rec = (kind: string, n: number) => `ord.h.${kind} id-${kind}-${n}\n{"n":${n}}`;
    const stored = async () => {
      const out: number[] = [];
      const n = (await jsm.streams.info('T3')).state.messages;
      for (let seq = 1; seq <= n; seq++) out.push((await jsm.streams.getMessage('T3', { seq }))!.json<{ n: number }>().n);
      return out;
    };
    try {
      const signal = new AbortController().signal;
      // the first batch's first record fails: nothing after it is stored, the whole batch is retried
      const first = [rec('alert', 0), ...Array.from({ length: 20 }, (_, i) => rec('flow', i + 1))];
      await expect(t.send(first, signal)).rejects.toMatchObject({ retryable: true });
      expect(await stored()).toEqual([]);
      await jsm.streams.update('T3', { subjects: ['ord.h.flow', 'ord.h.alert'] });
      expect(await t.send(first, signal)).toBeUndefined();
      expect(await stored()).toEqual(Array.from({ length: 21 }, (_, i) => i));

      // one at a time: a failure in the middle stops the batch there; what follows waits with it
      const one = new NatsTransport({ servers: [server.urls[0]], host: 'h', prefix: 'ord', user: 'ctwatch', password: PASSWORD, timeoutMs: 2000, maxInflight: 1 });
      try {
        const mid = [21, 22, 23].map((n) => rec('flow', n)).concat(rec('other', 24), rec('flow', 25), rec('flow', 26));
        expect(await one.send(mid, signal)).toMatchObject({ retry: [3, 4, 5], error: expect.stringContaining('no JetStream stream takes these subjects') });
        expect((await stored()).slice(21)).toEqual([21, 22, 23]);
      } finally {
        await one.close();
      }

      // several at once: once one fails no new one starts; every record is either stored or
      // handed back, never both, and those not started yet are handed back
      const few = new NatsTransport({ servers: [server.urls[0]], host: 'h', prefix: 'ord', user: 'ctwatch', password: PASSWORD, timeoutMs: 2000, maxInflight: 2 });
      try {
        const ns = Array.from({ length: 12 }, (_, i) => 30 + i);
        const batch = ns.map((n, i) => rec(i === 4 ? 'other' : 'flow', n));
        const before = (await stored()).length;
        const out = (await few.send(batch, signal)) as { retry: number[] };
        const got = (await stored()).slice(before);
        const back = out.retry.map((i) => ns[i]);
        expect(out.retry).toContain(4);
        expect(out.retry).toContain(11);
        expect(got.filter((n) => back.includes(n))).toEqual([]);
        expect([...got, ...back].sort((a, b) => a - b)).toEqual(ns);
      } finally {
        await few.close();
      }

      // a sink stopping: nothing is published, all of it is handed back
      const stopping = new AbortController();
      stopping.abort();
      const count = (await stored()).length;
      expect(await t.send([rec('flow', 50), rec('flow', 51)], stopping.signal)).toMatchObject({ retry: [0, 1] });
      expect((await stored()).length).toBe(count);
    } finally {
      await t.close();
      await jsm.streams.delete('T3').catch(() => {});
    }
  }, 40_000);

  it('wrong credentials: one clear line, no secret in it, records kept for a retry', async () => {
    const before = log.lines.length;
    const bad = sinkFile(`sinks:
  - name: bad
    type: nats
    servers: [${server.urls[0]}]
    user: ctwatch
    password_file: ${join(dir, 'wrong')}
    retry: { initial: 100ms, max: 200ms }
`);
    bad.write(flow(1));
    await waitFor(() => bad.counters().bad.lastError, 'lastError', 10_000);
    const err = bad.counters().bad.lastError!;
    expect(err).toMatch(/authorization violation: the server refused the credentials \(check user and password_file/);
    expect(err).not.toContain('\n');
    expect(err).not.toContain('not-the-password');
    const warned = log.lines.slice(before).filter((l) => l.includes('nats sink cannot deliver'));
    expect(warned).toHaveLength(1);
    expect(bad.counters().bad.dropped).toBe(0);
    await bad.close(500);
  }, 20_000);

  it('refuses inline passwords and non-nats URLs with file:line: field: reason', () => {
    expect(() => parseSinkFile(`sinks:\n  - type: nats\n    servers: [http://x:1]\n    password: x\n`, 'f.yaml')).toThrow(/f\.yaml:3: sinks\[0\]\.servers: "http:\/\/x:1": expected nats:\/\/HOST:PORT/);
    expect(() => parseSinkFile(`sinks:\n  - type: nats\n    url: nats://a:4222\n    password: x\n`, 'f.yaml')).toThrow(/secrets are not accepted inline/);
  });
});

describe('nats sink over TLS', () => {
  const certs = join(dir, 'tls');
  const good = join(certs, 'server.pem');
  const other = join(certs, 'other.pem');
  let server: NatsCluster;
  beforeAll(async () => {
    execFileSync('mkdir', ['-p', certs]);
    for (const name of ['server', 'other']) {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(certs, `${name}.key`), '-out', join(certs, `${name}.pem`)], { stdio: 'ignore' });
    }
    server = new NatsCluster({ tls: { cert: good, key: join(certs, 'server.key') } });
    // ready() needs a client that trusts the server
    server.ready = NatsCluster.prototype.ready.bind(server, 30_000, { ca: (await import('node:fs')).readFileSync(good, 'utf8') });
    await server.start();
  }, 40_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('delivers with the right CA; a CA that did not sign the server gives one clear line', async () => {
    const ok = sinkFile(`sinks:
  - name: tls-ok
    type: nats
    servers: [${server.urls[0]}]
    tls: { ca_file: ${good} }
    stream: { name: TLS1, create: true }
`);
    ok.write(flow(7));
    expect(await ok.flush(10_000)).toBe(true);
    expect(ok.counters()['tls-ok']).toMatchObject({ sent: 1, lastError: null });
    await ok.close();

    const bad = sinkFile(`sinks:
  - name: tls-bad
    type: nats
    servers: [${server.urls[0]}]
    tls: { ca_file: ${other} }
    retry: { initial: 100ms, max: 200ms }
`);
    bad.write(flow(8));
    const err = await waitFor(() => bad.counters()['tls-bad'].lastError, 'lastError', 10_000);
    expect(err).toMatch(/TLS failed: .*\(check tls\.ca_file, tls\.servername/);
    expect(err).not.toContain('\n');
    await bad.close(500);
  }, 30_000);
});
