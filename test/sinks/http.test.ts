/**
 * HTTP sinks against a node:http receiver that behaves like Splunk HEC and Elasticsearch `_bulk`,
 * including 429 (with Retry-After), 503, partial `_bulk` failures and dropped connections.
 * Guarantee checked: nothing lost, nothing duplicated beyond at-least-once, order kept.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatFor } from '../../src/formats/index.js';
import type { FlowEnd } from '../../src/flow/types.js';
import { createSinks, parseSinkConfigs } from '../../src/sinks/index.js';
import { HttpTransport, type HttpTransportOptions } from '../../src/sinks/http.js';
import { DeliverySink, type SinkOptions } from '../../src/sinks/sink.js';
import type { SinkLogger } from '../../src/sinks/types.js';
import { HttpReceiver, waitFor } from '../helpers/receivers.js';

function flow(id: number): FlowEnd {
  return {
    event: 'flow', time: 1_700_000_000_000_000 + id * 1000, id, family: 'ipv4', proto: 'udp',
    src: '10.0.0.5', dst: '10.0.0.53', sport: 50_000 + (id % 10_000), dport: 53,
    begin: 1_700_000_000_000_000, duration: 0.01, clock: 'kernel', preexisting: false,
    assured: false, replied: true, orig: { packets: 1, bytes: 60 }, reply: { packets: 1, bytes: 90 },
    reason: 'destroy',
  };
}

/** ids in order of first arrival; throws on a missing id */
function firstArrivals(ids: number[]): number[] {
  const seen = new Set<number>();
  const out: number[] = [];
  for (const id of ids) if (!seen.has(id)) (seen.add(id), out.push(id));
  return out;
}

function capture(): SinkLogger & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (obj: object, msg?: string) => lines.push(`${level} ${msg ?? ''} ${JSON.stringify(obj)}`);
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

const fastRetry = { initialMs: 10, maxMs: 100 };
let rx: HttpReceiver;
let dir: string;

beforeEach(async () => {
  rx = new HttpReceiver();
  await rx.start();
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-http-'));
});

afterEach(async () => {
  await rx.stop();
  rmSync(dir, { recursive: true, force: true });
});

function sink(t: Partial<HttpTransportOptions>, o: Partial<SinkOptions> = {}): DeliverySink {
  const transport = new HttpTransport({ api: 'ndjson', url: rx.url('/ingest'), lineIsJson: true, ...t });
  return new DeliverySink(transport, {
    name: 'http',
    format: formatFor('jsonl'),
    batch: { maxRecords: 50, maxWaitMs: 5 },
    retry: fastRetry,
    ...o,
  });
}

describe('Splunk HEC', () => {
  it('survives 503, 429 + Retry-After and a dropped connection: all arrive, in order', async () => {
    const token = 'hec-secret-token-1234';
    writeFileSync(join(dir, 'token'), `${token}\n`);
    const faults: Record<number, any> = {
      0: { status: 503 },
      1: { status: 429, headers: { 'retry-after': '1' } },
      3: 'drop',
      5: { status: 503 },
    };
    rx.script = (_req, n) => faults[n];
    const logger = capture();
    const set = createSinks(
      parseSinkConfigs([
        {
          name: 'hec', type: 'splunk_hec', url: rx.url(), token_file: join(dir, 'token'), format: 'ecs',
          index: 'net', sourcetype: 'ctwatch:ecs', batch: { max_records: 40, max_wait: '5ms' },
          retry: { initial: '10ms', max: '100ms' },
        },
      ]),
      { host: { name: 'gw1' }, logger },
    );
    const t0 = Date.now();
    for (let i = 0; i < 200; i++) set.write(flow(i));
    expect(await set.flush(15_000)).toBe(true);
    // the 429 asked for 1 s
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    const req = rx.requests[rx.requests.length - 1];
    expect(req.api).toBe('hec');
    expect(req.headers.authorization).toBe(`Splunk ${token}`);
    expect(req.headers['content-encoding']).toBe('gzip');
    const env = req.items[0];
    expect(env).toMatchObject({ host: 'gw1', index: 'net', sourcetype: 'ctwatch:ecs' });
    expect(typeof env.time).toBe('number');
    expect(env.event['@timestamp']).toMatch(/^2023-11-14T22:13:20\./);
    const ids = rx.accepted.map((e) => e.event.conntrack.id as number);
    expect(firstArrivals(ids)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    // only the dropped connection's batch may come twice
    expect(ids.length - 200).toBeLessThanOrEqual(40);
    const c = set.counters().hec;
    expect(c.dropped).toBe(0);
    expect(c.retried).toBeGreaterThan(0);
    expect(c.sent).toBeGreaterThanOrEqual(200);
    expect(c.lastError).not.toContain(token);
    expect(logger.lines.join('\n')).not.toContain(token);
    await set.close();
  });

  it('401 is retried (the token gets fixed), 400 is a rejection', async () => {
    let n = 0;
    rx.script = () => (n++ === 0 ? { status: 401, body: '{"text":"Invalid token","code":4}' } : undefined);
    const s = sink({ api: 'splunk-hec', url: rx.url(), auth: { scheme: 'splunk', secret: 'tok-abcdef' } });
    s.write(flow(1));
    expect(await s.flush(5000)).toBe(true);
    expect(rx.accepted).toHaveLength(1);
    rx.script = () => ({ status: 400, body: '{"text":"Invalid data format","code":6}' });
    s.write(flow(2));
    expect(await s.flush(5000)).toBe(true);
    expect(s.counters.dropped).toBe(1);
    expect(s.counters.lastError).toMatch(/HTTP 400: .*Invalid data format/);
    await s.close();
  });
});

describe('Elasticsearch _bulk', () => {
  it('retries only the failed items, treats 409 on create as delivered, counts rejections', async () => {
    rx.script = (req, n) => {
      if (n === 0) {
        // item 3 and 7 overloaded, item 5 a mapping error
        return { bulkItems: req.items.map((_x, i) => (i === 3 || i === 7 ? 429 : i === 5 ? 400 : 201)) };
      }
      if (n === 1) {
        // the retry must carry exactly the two overloaded items
        expect(req.items.map((d) => d.conntrack.id)).toEqual([3, 7]);
        return { bulkItems: [201, 409] };
      }
      return undefined;
    };
    const s = sink(
      {
        api: 'elasticsearch', url: rx.url(), lineIsJson: true, gzip: true,
        elasticsearch: { index: 'logs-ctwatch-default' }, auth: { scheme: 'apikey', secret: 'key-123456' },
      },
      { format: formatFor('ecs'), batch: { maxRecords: 10, maxWaitMs: 5 } },
    );
    for (let i = 0; i < 30; i++) s.write(flow(i));
    expect(await s.flush(10_000)).toBe(true);
    const first = rx.requests[0];
    expect(first.api).toBe('bulk');
    expect(first.headers['content-type']).toBe('application/x-ndjson');
    expect(first.headers.authorization).toBe('ApiKey key-123456');
    expect(first.actions[0].create._index).toBe('logs-ctwatch-default');
    expect(first.actions[0].create._id).toMatch(/^[A-Za-z0-9_-]{27}$/);
    // deterministic ids: the retried item keeps its _id
    expect(rx.requests[1].actions[0].create._id).toBe(first.actions[3].create._id);
    // order: the retried items arrive before the next batch
    expect(rx.requests[2].items[0].conntrack.id).toBe(10);
    const ids = rx.accepted.map((d) => d.conntrack.id);
    expect(ids).toEqual([0, 1, 2, 4, 6, 8, 9, 3, ...Array.from({ length: 20 }, (_, i) => i + 10)]);
    expect(s.counters.dropped).toBe(1); // item 5
    expect(s.counters.sent).toBe(29); // 7 is a 409: already there
    expect(s.counters.lastError).toMatch(/mapper_parsing_exception/);
    await s.close();
  });

  it('a whole-request 429/503 retries the batch; a dropped connection replays it', async () => {
    const faults: Record<number, any> = { 0: { status: 429, headers: { 'retry-after': '0' } }, 1: { status: 503 }, 2: 'drop' };
    rx.script = (_r, n) => faults[n];
    const s = sink({ api: 'elasticsearch', url: rx.url('/es'), elasticsearch: { index: 'ct' } }, { format: formatFor('ecs') });
    for (let i = 0; i < 120; i++) s.write(flow(i));
    expect(await s.flush(10_000)).toBe(true);
    expect(rx.requests[0].headers.host).toBeDefined();
    const ids = rx.accepted.map((d) => d.conntrack.id);
    expect(firstArrivals(ids)).toEqual(Array.from({ length: 120 }, (_, i) => i));
    // the replayed batch has the same _ids: Elasticsearch would answer 409 and keep one copy
    const dropped = rx.requests[2];
    const replay = rx.requests[3];
    expect(replay.actions.map((a) => a.create._id)).toEqual(dropped.actions.map((a) => a.create._id));
    await s.close();
  });
});

describe('generic NDJSON', () => {
  it('splits a batch the receiver finds too large (413)', async () => {
    rx.script = (req) => (req.items.length > 10 ? { status: 413 } : undefined);
    const s = sink({}, { batch: { maxRecords: 40, maxWaitMs: 5 } });
    for (let i = 0; i < 40; i++) s.write(flow(i));
    expect(await s.flush(5000)).toBe(true);
    expect(rx.accepted.map((r) => r.id)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(s.counters.dropped).toBe(0);
    await s.close();
  });

  it('moves credentials out of the URL and never logs them', async () => {
    const logger = capture();
    rx.script = (_r, n) => (n === 0 ? { status: 500, body: 'echo: user:pa55word-xyz' } : undefined);
    const s = sink({ url: `http://user:pa55word-xyz@127.0.0.1:${rx.port}/ingest` }, { logger });
    s.write(flow(1));
    expect(await s.flush(5000)).toBe(true);
    expect(rx.requests[0].headers.authorization).toBe(`Basic ${Buffer.from('user:pa55word-xyz').toString('base64')}`);
    expect(s.counters.lastError).toContain('[REDACTED]');
    expect(s.counters.lastError).not.toContain('pa55word-xyz');
    expect(logger.lines.join()).not.toContain('pa55word-xyz');
    await s.close();
  });

  it('scrubs every credential it sends from errors: a custom credential header, Basic credentials as sent', async () => {
    const logger = capture();
    const key = 'xk-9d8c7b6a5f4e';
    writeFileSync(join(dir, 'key'), `${key}\n`);
    // the receiver echoes every request header back in its error answer
    rx.script = (req) => ({ status: 400, body: JSON.stringify({ error: 'denied', echo: req.headers }) });
    const set = createSinks(
      parseSinkConfigs([
        {
          name: 'echo', type: 'http', url: `http://svc:pa55-word-1@127.0.0.1:${rx.port}/ingest`, gzip: false,
          headers: { 'X-Api-Key': { file: join(dir, 'key') }, 'X-Team': 'infra' }, batch: { max_wait: '1ms' },
        },
      ]),
      { logger },
    );
    set.write(flow(1));
    expect(await set.flush(5000)).toBe(true);
    expect(rx.requests[0].headers['x-api-key']).toBe(key);
    const basic = Buffer.from('svc:pa55-word-1').toString('base64');
    expect(rx.requests[0].headers.authorization).toBe(`Basic ${basic}`);
    const c = set.counters().echo;
    expect(c.lastError).toContain('denied');
    expect(c.lastError).toContain('infra');
    for (const secret of [key, basic, 'pa55-word-1']) {
      expect(c.lastError).not.toContain(secret);
      expect(logger.lines.join('\n')).not.toContain(secret);
    }
    await set.close();
  });

  it('scrubs a credential under any header name, a token in the userinfo, a key in the query', async () => {
    const logger = capture();
    // the receiver echoes the request (path and query, the credentials as sent and decoded) in its answer
    rx.script = (req) => {
      const h = req.headers;
      const decoded = Buffer.from(String(h['x-forwarded-basic']).slice(6), 'base64').toString();
      const user = Buffer.from(String(h.authorization).slice(6), 'base64').toString();
      const echo = [user, h['x-forwarded-basic'], decoded, h['x-upstream'], h['x-plain-jwt']];
      return { status: 400, body: JSON.stringify({ error: 'denied', url: req.path, echo }) };
    };
    const basic = Buffer.from('ops:hunter2-pw').toString('base64');
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdHdhdGNoIn0.c2lnbmF0dXJlLXh5eg';
    const s = sink(
      {
        // a token as the URL's user (no password), an API key in the query string
        url: `http://tok-5f4e3d2c1b@127.0.0.1:${rx.port}/ingest?api_key=qk-77aa88bb99&team=infra`,
        // header names that say nothing about credentials, values that are credentials
        headers: { 'X-Forwarded-Basic': `Basic ${basic}`, 'X-Upstream': `Bearer ${jwt}`, 'X-Plain-Jwt': jwt, 'X-Team': 'infra' },
      },
      { logger, retry: { ...fastRetry, maxAttempts: 1 } },
    );
    s.write(flow(1));
    expect(await s.flush(5000)).toBe(true);
    expect(rx.requests[0].headers['x-forwarded-basic']).toBe(`Basic ${basic}`);
    const c = s.counters;
    expect(c.lastError).toContain('denied');
    expect(c.lastError).toContain('infra');
    for (const secret of [basic, 'ops:hunter2-pw', 'hunter2-pw', jwt, 'tok-5f4e3d2c1b', 'qk-77aa88bb99']) {
      expect(c.lastError).not.toContain(secret);
      expect(logger.lines.join('\n')).not.toContain(secret);
    }
    await s.close();
  });

  it('a sinks file refuses a credential-looking header value inline whatever the header is called', () => {
    expect(() =>
      parseSinkConfigs([{ name: 'x', type: 'http', url: 'http://127.0.0.1:9/in', headers: { 'X-Upstream': 'Bearer abcdef123456' } }]),
    ).toThrow(/headers\.X-Upstream: secrets are not accepted inline: give it as \{ file: PATH \} or \{ env: NAME \}/);
  });

  it('without a spool, gives up after max attempts and counts the drop', async () => {
    rx.script = () => ({ status: 503 });
    const s = sink({}, { retry: { ...fastRetry, maxAttempts: 3 } });
    s.write(flow(1));
    expect(await s.flush(5000)).toBe(true);
    expect(rx.requests).toHaveLength(3);
    expect(s.counters.dropped).toBe(1);
    expect(s.counters.failed).toBe(1);
    // retried counts sends that were tried again: the third failure is given up, not retried
    expect(s.counters.retried).toBe(2);
    expect(s.counters.lastError).toMatch(/^HTTP 503.* after 3 attempts$/);
    await s.close();
  });
});

describe('a slow receiver', () => {
  it('never blocks write(): records spill to the spool and arrive in order', async () => {
    rx.delayMs = 150;
    const s = sink(
      {},
      {
        batch: { maxRecords: 20, maxWaitMs: 1 },
        memory: { maxRecords: 100_000, maxBytes: 8 << 20, spillBytes: 8_000 },
        spool: { dir: join(dir, 'spool'), maxBytes: 16 << 20, policy: 'drop-oldest' },
      },
    );
    const t0 = performance.now();
    for (let i = 0; i < 2000; i++) s.write(flow(i));
    const spent = performance.now() - t0;
    expect(spent).toBeLessThan(1000); // formatting 2000 records, no waiting on the receiver
    await waitFor(() => s.counters.spooled > 0, 5000, 'spooling');
    rx.delayMs = 0;
    expect(await s.flush(20_000)).toBe(true);
    const ids = rx.accepted.map((r) => r.id);
    expect(firstArrivals(ids)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(ids.length - 2000).toBeLessThanOrEqual(20); // at most the batch in flight at the switch
    expect(s.counters.dropped).toBe(0);
    await s.close();
  });
});
