/**
 * Receivers that misbehave, for real, on loopback: an HTTP server that answers 200 MB, one that
 * trickles its answer a byte at a time, an Elasticsearch that answers `items: [null]`, and a syslog
 * receiver that accepts the connection and stops reading. None may hold a send for ever, fill the
 * collector's memory, or lose records without a counter and a lastError.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alerts/types.js';
import { WebhookDelivery } from '../../src/alerts/deliver.js';
import { createSinks, parseSinkConfigs, type SinkSet } from '../../src/sinks/index.js';
import { waitFor } from '../helpers/receivers.js';

function alert(i: number, message = `churn to 127.0.0.5:6379/tcp ${i}`): Alert {
  return {
    event: 'alert', time: 1_700_000_000_000_000 + i, rule: 'churn_per_destination', severity: 'warning', subject: `d${i}`,
    since: 1_700_000_000_000_000, message, values: { value: i }, top: { destinations: [], sources: [] }, hint: 'conntrack -L',
  };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-misbehave-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

/** An HTTP server on 127.0.0.1 whose handler is the test's; closed (connections cut) after it. */
async function server(handler: http.RequestListener): Promise<{ url: string; requests: () => number }> {
  let n = 0;
  const s = http.createServer((req, res) => {
    n++;
    handler(req, res);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))));
  return { url: `http://127.0.0.1:${(s.address() as net.AddressInfo).port}/in`, requests: () => n };
}

function sinks(spec: Record<string, unknown>): SinkSet {
  const set = createSinks(parseSinkConfigs([{ name: 's', ...(spec.type === 'webhook' ? {} : { batch: { max_wait: '1ms' } }), ...spec }]));
  cleanups.push(() => set.close(1000));
  return set;
}

/** Writes `total` bytes of answer in chunks, stopping when the client goes away; returns the count. */
async function pour(res: http.ServerResponse, total: number, status: number): Promise<number> {
  res.writeHead(status, { 'content-type': 'application/json' });
  const chunk = Buffer.alloc(64 << 10, 0x61);
  let sent = 0;
  let closed = false;
  res.once('close', () => (closed = true));
  while (sent < total && !closed) {
    sent += chunk.length;
    if (!res.write(chunk)) await new Promise((r) => (res.once('drain', r), res.once('close', r)));
  }
  res.end();
  return sent;
}

describe('HTTP receivers that answer too much or too slowly', () => {
  it('a 200 MB answer is read only to the bound: delivered, and the rest never crosses the wire', async () => {
    let poured = Promise.resolve(0);
    const rx = await server((req, res) => {
      req.resume();
      req.on('end', () => (poured = pour(res, 200 << 20, 200)));
    });
    const set = sinks({ type: 'http', url: rx.url, gzip: false });
    set.write(alert(1) as never);
    expect(await set.flush(10_000)).toBe(true);
    const sent = await poured;
    // the client hung up after 64 KiB: what was poured is that plus socket buffers, not 200 MB
    expect(sent).toBeLessThan(32 << 20);
    expect(set.counters().s).toMatchObject({ sent: 1, dropped: 0, lastError: null });
  });

  it('a 200 MB error page: the error is quoted from its first bytes only', async () => {
    let poured = Promise.resolve(0);
    const rx = await server((req, res) => {
      req.resume();
      req.on('end', () => (poured = pour(res, 200 << 20, 400)));
    });
    const set = sinks({ type: 'http', url: rx.url, gzip: false });
    set.write(alert(1) as never);
    expect(await set.flush(10_000)).toBe(true);
    expect(await poured).toBeLessThan(32 << 20);
    const c = set.counters().s;
    expect(c).toMatchObject({ sent: 0, failed: 1, dropped: 1 });
    expect(c.lastError).toMatch(/^HTTP 400: a{300}$/);
  });

  it('an answer trickled a byte at a time ends at the deadline for the whole request', async () => {
    const timers: NodeJS.Timeout[] = [];
    cleanups.push(() => timers.forEach(clearInterval));
    const rx = await server((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      // each byte comes well inside undici's per-chunk timeout, so only a whole-request deadline ends it
      timers.push(setInterval(() => res.write(' '), 50));
    });
    const set = sinks({ type: 'http', url: rx.url, timeout: '1s', retry: { max_attempts: 1 } });
    const t0 = Date.now();
    set.write(alert(1) as never);
    expect(await set.flush(10_000)).toBe(true);
    const c = set.counters().s;
    expect(c).toMatchObject({ sent: 0, failed: 1 });
    expect(c.lastError).toMatch(/^no complete answer within 1s \(timeout\): the receiver is slow, or trickling its answer after 1 attempts$/);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it('a webhook is held to the same deadline', async () => {
    const timers: NodeJS.Timeout[] = [];
    cleanups.push(() => timers.forEach(clearInterval));
    const rx = await server((req, res) => {
      req.resume();
      res.writeHead(200);
      timers.push(setInterval(() => res.write(' '), 50));
    });
    const w = new WebhookDelivery({ url: rx.url, timeoutMs: 500, retries: 1, backoffMs: 10 });
    cleanups.push(() => w.close(1000));
    w.send(alert(1));
    await waitFor(() => w.stats().failed === 1, 10_000, 'the webhook to give up');
    expect(rx.requests()).toBe(2);
    expect(w.stats().lastError).toMatch(/^no complete answer within 500ms .* after 2 attempts$/);
  });
});

describe('Elasticsearch answers that say nothing about the items', () => {
  for (const [what, answer] of [
    ['items: [null]', { errors: true, items: [null] }],
    ['an item without a status', { errors: true, items: [{ create: { error: { type: 'x' } } }] }],
    ['a number', 42],
  ] as const) {
    it(`${what}: given up at once and counted, not retried for ever`, async () => {
      const rx = await server((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)));
      });
      const set = sinks({ type: 'elasticsearch', url: rx.url.replace('/in', ''), index: 'ct', gzip: false, retry: { initial: '10ms', max: '20ms' } });
      set.write(alert(1) as never);
      expect(await set.flush(5000)).toBe(true);
      expect(rx.requests()).toBe(1);
      const c = set.counters().s;
      expect(c).toMatchObject({ sent: 0, failed: 1, dropped: 1 });
      expect(c.lastError).toMatch(/^unreadable _bulk answer \(.*\): cannot tell which records were stored$/);
    });
  }
});

/** Octet-counted syslog frames in a byte stream: "LEN SP MSG". */
function frames(buf: Buffer): { messages: string[]; rest: Buffer } {
  const messages: string[] = [];
  let at = 0;
  for (;;) {
    const sp = buf.indexOf(0x20, at);
    if (sp < 0) break;
    const len = Number(buf.subarray(at, sp).toString());
    if (buf.length < sp + 1 + len) break;
    messages.push(buf.subarray(sp + 1, sp + 1 + len).toString());
    at = sp + 1 + len;
  }
  return { messages, rest: buf.subarray(at) };
}

describe('a syslog receiver that accepts and stops reading', () => {
  it('the batch deadline passes, the sink says why, reconnects, spools, and delivers what came after', async () => {
    const connections: net.Socket[] = [];
    const later: string[] = [];
    const srv = net.createServer((sock) => {
      connections.push(sock);
      // the first connection is taken and never read: its buffers fill, then ours
      if (connections.length === 1) return sock.pause();
      let pending = Buffer.alloc(0);
      sock.on('data', (d) => {
        const f = frames(Buffer.concat([pending, d]));
        pending = f.rest;
        later.push(...f.messages);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => (connections.forEach((s) => s.destroy()), srv.close(() => r()))));
    const port = (srv.address() as net.AddressInfo).port;
    const set = createSinks(
      parseSinkConfigs([
        {
          name: 'siem', type: 'syslog', protocol: 'tcp', host: '127.0.0.1', port, timeout: '1s',
          events: ['alert'], batch: { max_records: 100, max_wait: '1ms' }, retry: { initial: '50ms', max: '200ms' },
          spool: { dir: join(dir, 'spool'), max_bytes: '256M' },
        },
      ]),
    );
    cleanups.push(() => set.close(2000));
    // ~40 MB of 4 KB messages: far more than the kernel buffers of both ends hold
    const big = 'x'.repeat(4000);
    for (let i = 0; i < 10_000; i++) set.write(alert(i, big) as never);
    const c = await waitFor(() => (set.counters().siem.lastError ? set.counters().siem : null), 20_000, 'the stall to be reported');
    expect(c.lastError).toMatch(/^syslog\+tcp:\/\/127\.0\.0\.1:\d+: the receiver took \d+ of \d+ bytes in 1s and stopped reading: reconnecting$/);
    // everything written from now on must arrive, over a new connection
    for (let i = 100_000; i < 100_050; i++) set.write(alert(i, 'after the stall') as never);
    expect(await set.flush(60_000)).toBe(true);
    expect(connections.length).toBeGreaterThanOrEqual(2);
    const counters = set.counters().siem;
    expect(counters.spooled).toBeGreaterThan(0);
    expect(counters.dropped).toBe(0);
    const after = later.filter((m) => m.includes('after the stall')).map((m) => Number(/"subject":"d(\d+)"/.exec(m)![1]));
    expect(after).toEqual(Array.from({ length: 50 }, (_, i) => 100_000 + i));
  }, 90_000);
});

describe('a webhook in the sinks file', () => {
  it('is an HTTP sink for alert records: one alert JSON per POST, token from a file', async () => {
    const bodies: { body: string; headers: http.IncomingHttpHeaders }[] = [];
    const rx = await server((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push({ body: Buffer.concat(chunks).toString(), headers: req.headers });
        res.writeHead(200).end();
      });
    });
    writeFileSync(join(dir, 'token'), 'hook-token-123\n');
    const set = sinks({ type: 'webhook', url: rx.url, token_file: join(dir, 'token') });
    const a = alert(7);
    set.write({ event: 'flow', time: 1 } as never);
    set.write(a as never);
    set.write({ ...a, event: 'resolved' } as never);
    expect(await set.flush(5000)).toBe(true);
    expect(bodies.map((b) => JSON.parse(b.body))).toEqual([a, { ...a, event: 'resolved' }]);
    expect(bodies[0].headers).toMatchObject({ authorization: 'Bearer hook-token-123', 'content-type': 'application/json' });
    expect(() => parseSinkConfigs([{ type: 'webhook', url: rx.url, events: ['flow'] }])).toThrow(
      'sinks[0].events[0]: unknown event kind "flow" (one of alert, resolved)',
    );
  });
});
