import { createServer, request, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { MetricsListenError, formatListenAddress, parseListenAddress, type MetricsServer } from '../../src/metrics/server.js';
import { CtwatchError } from '../../src/util/errors.js';

describe('parseListenAddress', () => {
  it.each([
    ['127.0.0.1:9477', { host: '127.0.0.1', port: 9477 }],
    [':9477', { host: undefined, port: 9477 }],
    // a bare port is loopback only: every interface must be asked for (:PORT)
    ['9477', { host: '127.0.0.1', port: 9477 }],
    ['[::1]:9477', { host: '::1', port: 9477 }],
    ['[::]:0', { host: '::', port: 0 }],
    ['localhost:65535', { host: 'localhost', port: 65535 }],
    ['0.0.0.0:80', { host: '0.0.0.0', port: 80 }],
  ])('%s', (text, expected) => {
    expect(parseListenAddress(text)).toEqual(expected);
  });

  it.each(['', '127.0.0.1', '::1:9477', '[::1]', '[::1]9477', '[127.0.0.1]:9477', 'host:65536', 'host:-1', 'a b:9477', '1.2.3.4:x'])(
    'refuses %j with a usage error that shows the expected form',
    (text) => {
      let err: unknown;
      try {
        parseListenAddress(text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CtwatchError);
      expect((err as CtwatchError).code).toBe('ERR_METRICS_ADDRESS');
      expect((err as CtwatchError).exitCode).toBe(64);
      expect((err as Error).message).toContain('127.0.0.1:9477');
    },
  );

  it('formats addresses the way it parses them', () => {
    expect(formatListenAddress('::1', 9477)).toBe('[::1]:9477');
    expect(formatListenAddress('127.0.0.1', 9477)).toBe('127.0.0.1:9477');
    expect(formatListenAddress(undefined, 9477)).toBe(':9477');
  });
});

/** A raw request, so HEAD and odd methods go out exactly as written. */
function get(port: number, path: string, method = 'GET', host = '127.0.0.1'): Promise<{ status: number; type: string; body: string; allow?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body, allow: res.headers.allow as string | undefined }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('MetricsExporter.listen', () => {
  const open: MetricsServer[] = [];
  const blockers: Server[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await Promise.all(blockers.splice(0).map((b) => new Promise((r) => b.close(r))));
  });

  async function listen(x: MetricsExporter, address: string): Promise<MetricsServer> {
    const s = await x.listen(address);
    open.push(s);
    return s;
  }

  it('serves the exposition, a health check, and 404 elsewhere', async () => {
    const x = new MetricsExporter();
    x.update({ source: { events: 42, batches: 1, overflows: 0, decodeErrors: 0, queueHighWater: 1, rcvbuf: 1 } });
    const { port } = await listen(x, '127.0.0.1:0');
    expect(port).toBeGreaterThan(0);

    const m = await get(port, '/metrics');
    expect(m.status).toBe(200);
    expect(m.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(m.body.split('\n')).toContain('ctwatch_source_events_total 42');
    expect(m.body.endsWith('\n')).toBe(true);

    // scrapers sometimes add parameters; the path is what matters
    expect((await get(port, '/metrics?debug=1')).status).toBe(200);

    const h = await get(port, '/healthz');
    expect(h).toMatchObject({ status: 200, body: 'ok' });

    const head = await get(port, '/metrics', 'HEAD');
    expect(head).toMatchObject({ status: 200, body: '' });

    for (const path of ['/', '/metric', '/metrics/', '/favicon.ico']) expect((await get(port, path)).status).toBe(404);
    const post = await get(port, '/metrics', 'POST');
    expect(post.status).toBe(405);
    expect(post.allow).toBe('GET, HEAD');
  });

  it('shows updates made after it started listening', async () => {
    const x = new MetricsExporter();
    const { port } = await listen(x, '127.0.0.1:0');
    expect((await get(port, '/metrics')).body).not.toMatch(/^ctwatch_source_events_total /m);
    x.update({ source: { events: 7, batches: 1, overflows: 0, decodeErrors: 0, queueHighWater: 1, rcvbuf: 1 } });
    expect((await get(port, '/metrics')).body).toMatch(/^ctwatch_source_events_total 7$/m);
  });

  it('says which address is taken and what to do when the port is in use', async () => {
    const blocker = createServer();
    blockers.push(blocker);
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;

    const err = await new MetricsExporter().listen(`127.0.0.1:${port}`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MetricsListenError);
    expect(err).toBeInstanceOf(CtwatchError);
    const e = err as MetricsListenError;
    expect(e.code).toBe('ERR_METRICS_LISTEN');
    expect(e.reason).toBe('EADDRINUSE');
    expect(e.address).toBe(`127.0.0.1:${port}`);
    expect(e.exitCode).toBe(69);
    expect(e.message).toContain(`cannot listen on 127.0.0.1:${port}`);
    expect(e.message).toContain('already in use');
    expect(e.message).toContain('choose another port');
  });

  it('explains an address this machine does not have', async () => {
    // TEST-NET-1 (RFC 5737) is never assigned to a local interface
    const err = (await new MetricsExporter().listen('192.0.2.1:0').catch((e: unknown) => e)) as MetricsListenError;
    expect(err).toBeInstanceOf(MetricsListenError);
    expect(err.reason).toBe('EADDRNOTAVAIL');
    expect(err.message).toContain('192.0.2.1:0');
    expect(err.message).toContain('not one of this machine');
  });

  it('rejects a malformed address before trying to bind', async () => {
    const err = (await new MetricsExporter().listen('::1:9477').catch((e: unknown) => e)) as CtwatchError;
    expect(err.code).toBe('ERR_METRICS_ADDRESS');
    expect(err.message).toContain('brackets');
  });

  it('listens on every interface with :PORT', async () => {
    const s = await listen(new MetricsExporter(), ':0');
    expect((await get(s.port, '/healthz')).status).toBe(200);
    expect(['::', '0.0.0.0']).toContain(s.host);
  });

  it('a bare PORT listens on loopback only', async () => {
    const s = await listen(new MetricsExporter(), '0');
    expect(s.host).toBe('127.0.0.1');
    expect((await get(s.port, '/healthz')).status).toBe(200);
  });

  // ::1 is required everywhere ctwatch is tested (the kernel tests make IPv6 flows on it).
  it('listens on a bracketed IPv6 address', async () => {
    const s = await listen(new MetricsExporter(), '[::1]:0');
    expect((await get(s.port, '/healthz', 'GET', '::1')).body).toBe('ok');
  });

  it('closes promptly even with a kept-alive scrape connection, and twice', async () => {
    const s = await new MetricsExporter().listen('127.0.0.1:0');
    // what Prometheus does: one connection kept open between scrapes
    const res = await fetch(`http://127.0.0.1:${s.port}/metrics`, { keepalive: true });
    await res.text();
    const t0 = Date.now();
    await s.close();
    await s.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    await expect(get(s.port, '/healthz')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
