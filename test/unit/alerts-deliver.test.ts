import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alerts/types.js';
import {
  Dispatcher,
  ExecHook,
  WebhookDelivery,
  createDispatcher,
  parseRetryAfter,
  type Delivery,
  type DeliveryStats,
} from '../../src/alerts/deliver.js';
import { parseAlertConfig } from '../../src/alerts/rules.js';

// --- helpers ----------------------------------------------------------------------------------

function alert(over: Partial<Alert> = {}): Alert {
  return {
    event: 'alert',
    time: 1_700_000_000_000_000,
    rule: 'churn_per_destination',
    severity: 'warning',
    subject: '127.0.0.5:6379/tcp',
    since: 1_699_999_995_000_000,
    message: 'churn to 127.0.0.5:6379/tcp 2 340 new/s',
    values: { value: 2340, threshold: 500 },
    top: { destinations: [{ key: '127.0.0.5:6379/tcp', rate: 2340 }], sources: [] },
    hint: 'conntrack -L -p tcp -d 127.0.0.5 --dport 6379',
    ...over,
  };
}

/** Polls until `cond` holds; fails with `what` after the deadline. Never a fixed sleep. */
async function until(what: string, cond: () => boolean, deadlineMs = 3000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Received {
  body: string;
  headers: IncomingHttpHeaders;
  at: number;
}

interface Receiver {
  url: string;
  requests: Received[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1 whose answer to the n-th request (0-based) is `reply(n)`. */
async function receiver(reply: (n: number) => { status: number; headers?: Record<string, string> } = () => ({ status: 200 })): Promise<Receiver> {
  const requests: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = requests.length;
      requests.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers, at: Date.now() });
      const r = reply(n);
      res.writeHead(r.status, r.headers).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook/secret-token`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Dead includes a zombie: the orphan is reparented to PID 1, which reaps in its own time. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const dir = mkdtempSync(join(tmpdir(), 'ctwatch-alerts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// --- webhook ----------------------------------------------------------------------------------

describe('WebhookDelivery', () => {
  it('POSTs the alert as JSON', async () => {
    const rx = await receiver();
    const w = new WebhookDelivery({ url: rx.url, headers: { authorization: 'Bearer t' } });
    cleanups.push(() => w.close(1000), () => rx.close());
    const a = alert();
    w.send(a);
    await until('delivery', () => w.stats().sent === 1);
    expect(JSON.parse(rx.requests[0].body)).toEqual(a);
    expect(rx.requests[0].headers['content-type']).toBe('application/json');
    expect(rx.requests[0].headers.authorization).toBe('Bearer t');
    expect(w.stats()).toEqual({ sent: 1, retried: 0, failed: 0, dropped: 0, queued: 0, lastError: null });
    // the token in the URL path stays out of names that end up in logs and metrics
    expect(w.name).toBe(`webhook ${new URL(rx.url).origin}`);
  });

  it('retries a 503 and succeeds on the next attempt', async () => {
    const rx = await receiver((n) => ({ status: n === 0 ? 503 : 200 }));
    const w = new WebhookDelivery({ url: rx.url, backoffMs: 20 });
    cleanups.push(() => w.close(1000), () => rx.close());
    w.send(alert());
    await until('delivery', () => w.stats().sent === 1);
    expect(rx.requests).toHaveLength(2);
    expect(rx.requests[1].body).toBe(rx.requests[0].body);
    expect(w.stats()).toMatchObject({ sent: 1, retried: 1, failed: 0, lastError: 'HTTP 503' });
  });

  it('waits as long as a 429 Retry-After asks, not its own short backoff', async () => {
    const rx = await receiver((n) => (n === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    const w = new WebhookDelivery({ url: rx.url, backoffMs: 10 });
    cleanups.push(() => w.close(1000), () => rx.close());
    w.send(alert());
    await until('delivery', () => w.stats().sent === 1);
    expect(rx.requests[1].at - rx.requests[0].at).toBeGreaterThanOrEqual(900);
    expect(w.stats()).toMatchObject({ sent: 1, retried: 1 });
  });

  it('gives up at once when Retry-After is beyond its limit', async () => {
    const rx = await receiver(() => ({ status: 429, headers: { 'retry-after': '3600' } }));
    const w = new WebhookDelivery({ url: rx.url, maxRetryAfterMs: 60_000 });
    cleanups.push(() => w.close(1000), () => rx.close());
    w.send(alert());
    await until('giving up', () => w.stats().failed === 1);
    expect(rx.requests).toHaveLength(1);
    expect(w.stats().lastError).toBe('HTTP 429 with Retry-After 3600 s, over the 60 s limit');
  });

  it('does not retry other 4xx', async () => {
    const rx = await receiver(() => ({ status: 400 }));
    const w = new WebhookDelivery({ url: rx.url, backoffMs: 10 });
    cleanups.push(() => w.close(1000), () => rx.close());
    w.send(alert());
    await until('failure', () => w.stats().failed === 1);
    expect(rx.requests).toHaveLength(1);
    expect(w.stats()).toMatchObject({ sent: 0, retried: 0, failed: 1, lastError: 'HTTP 400' });
  });

  it('a down webhook: send returns at once, retries are counted, then it gives up', async () => {
    const port = await closedPort();
    const w = new WebhookDelivery({ url: `http://127.0.0.1:${port}/`, retries: 3, backoffMs: 10, random: () => 0.5 });
    cleanups.push(() => w.close(1000));
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) w.send(alert({ subject: `d${i}` }));
    expect(performance.now() - t0).toBeLessThan(50);
    await until('all given up', () => w.stats().failed === 5);
    const s = w.stats();
    expect(s).toMatchObject({ sent: 0, failed: 5, retried: 15, dropped: 0, queued: 0 });
    expect(s.lastError).toMatch(/ECONNREFUSED/);
    expect(s.lastError).toMatch(/after 4 attempts$/);
  });

  it('a 401 is retried within the webhook policy (a rotated token gets fixed), then given up', async () => {
    const rx = await receiver(() => ({ status: 401 }));
    const w = new WebhookDelivery({ url: rx.url, retries: 2, backoffMs: 10 });
    cleanups.push(() => w.close(1000), () => rx.close());
    w.send(alert());
    await until('giving up', () => w.stats().failed === 1);
    expect(rx.requests).toHaveLength(3);
    expect(w.stats()).toMatchObject({ sent: 0, retried: 2, failed: 1, dropped: 0, lastError: 'HTTP 401 (check the credentials) after 3 attempts' });
  });

  it('keeps a bounded queue, dropping the oldest', async () => {
    const rx = await receiver();
    const w = new WebhookDelivery({ url: rx.url, queueSize: 3 });
    cleanups.push(() => w.close(1000), () => rx.close());
    for (let i = 0; i < 10; i++) w.send(alert({ subject: `d${i}` }));
    expect(w.stats()).toMatchObject({ dropped: 7, queued: 3 });
    await until('the three newest', () => w.stats().sent === 3);
    expect(rx.requests.map((r) => (JSON.parse(r.body) as Alert).subject)).toEqual(['d7', 'd8', 'd9']);
  });

  it('close() drains what is queued', async () => {
    const rx = await receiver();
    const w = new WebhookDelivery({ url: rx.url });
    cleanups.push(() => rx.close());
    for (let i = 0; i < 3; i++) w.send(alert({ subject: `d${i}` }));
    expect(await w.close(2000)).toBe(true);
    expect(w.stats()).toMatchObject({ sent: 3, queued: 0, dropped: 0 });
    w.send(alert());
    expect(w.stats().dropped).toBe(1);
  });

  it('close() gives up at its deadline on a webhook that is down, counting what is left', async () => {
    const port = await closedPort();
    const w = new WebhookDelivery({ url: `http://127.0.0.1:${port}/`, retries: 100, backoffMs: 5000 });
    for (let i = 0; i < 4; i++) w.send(alert({ subject: `d${i}` }));
    await until('first failure', () => w.stats().retried >= 1);
    const t0 = Date.now();
    expect(await w.close(150)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w.stats()).toMatchObject({ sent: 0, dropped: 4, queued: 0 });
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('120')).toBe(120_000);
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter(['5', '7'])).toBe(5000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

// --- exec hook --------------------------------------------------------------------------------

describe('ExecHook', () => {
  it('runs the command without a shell of its own, with the alert JSON on stdin', async () => {
    const file = join(dir, 'stdin.json');
    const h = new ExecHook({ argv: ['sh', '-c', 'cat > "$1"', 'sh', file] });
    cleanups.push(() => h.close(1000));
    // shell metacharacters in an alert are data, never code
    const a = alert({ subject: '$(touch /tmp/pwned); `id`' });
    h.send(a);
    await until('hook run', () => h.stats().sent === 1);
    expect(readFileSync(file, 'utf8')).toBe(`${JSON.stringify(a)}\n`);
    expect(h.stats()).toEqual({ sent: 1, failed: 0, timedOut: 0, dropped: 0, queued: 0, lastError: null });
  });

  it('gives the hook only PATH, the variables it is allowed, and the alert fields', async () => {
    const file = join(dir, 'env.txt');
    const h = new ExecHook({
      argv: ['sh', '-c', 'env > "$1"', 'sh', file],
      // an allow-list: the sinks' secrets (CTWATCH_HEC_TOKEN, CTWATCH_ES_API_KEY) used to pass as CTWATCH_*
      env: { PATH: process.env.PATH, CTWATCH_TOKEN: 'from-operator', CTWATCH_HEC_TOKEN: 'hec-secret', CTWATCH_ES_API_KEY: 'es-secret', AWS_SECRET_ACCESS_KEY: 'nope', HOME: '/root' },
      passEnv: ['CTWATCH_TOKEN'],
    });
    cleanups.push(() => h.close(1000));
    h.send(alert({ netns: 'blue' }));
    await until('hook run', () => h.stats().sent === 1);
    const env = Object.fromEntries(
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    // PWD is added by the shell itself
    expect(Object.keys(env).filter((k) => k !== 'PWD').sort()).toEqual([
      'CTWATCH_EVENT',
      'CTWATCH_HINT',
      'CTWATCH_MESSAGE',
      'CTWATCH_NETNS',
      'CTWATCH_RULE',
      'CTWATCH_SEVERITY',
      'CTWATCH_SUBJECT',
      'CTWATCH_TIME',
      'CTWATCH_TOKEN',
      'PATH',
    ]);
    expect(env).toMatchObject({ CTWATCH_TOKEN: 'from-operator', CTWATCH_RULE: 'churn_per_destination', CTWATCH_NETNS: 'blue', PATH: process.env.PATH });
  });

  it("the rules file's env: lets a hook see the variables it lists, and none of ctwatch's secrets", async () => {
    const file = join(dir, 'env-rules.txt');
    const config = parseAlertConfig(`deliver:\n  - exec: [sh, -c, 'env > "$1"', sh, ${JSON.stringify(file)}]\n    env: [CTWATCH_TEAM, PAGER_URL]\n`);
    const d = createDispatcher(config.deliver, {
      env: { PATH: process.env.PATH, CTWATCH_TEAM: 'infra', PAGER_URL: 'https://pager.example', CTWATCH_HEC_TOKEN: 'hec-secret', CTWATCH_ES_API_KEY: 'es-secret' },
    });
    d.dispatch(alert());
    expect(await d.close(3000)).toBe(true);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('CTWATCH_TEAM=infra\n');
    expect(text).toContain('PAGER_URL=https://pager.example\n');
    expect(text).not.toMatch(/hec-secret|es-secret|CTWATCH_HEC_TOKEN|CTWATCH_ES_API_KEY/);
  });

  it('kills a hook at its timeout, with everything it started', async () => {
    const pidFile = join(dir, 'sleeper.pid');
    const h = new ExecHook({ argv: ['sh', '-c', 'sleep 30 & echo $! > "$1"; wait', 'sh', pidFile], timeoutMs: 200, killGraceMs: 200 });
    cleanups.push(() => h.close(1000));
    const t0 = Date.now();
    h.send(alert());
    await until('timeout', () => h.stats().timedOut === 1);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(h.stats()).toMatchObject({ sent: 0, failed: 0, timedOut: 1, queued: 0, lastError: 'timed out after 200 ms' });
    await until('pid file', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '');
    const sleeper = Number(readFileSync(pidFile, 'utf8'));
    // the shell's background child went with it (same process group)
    await until('grandchild dead', () => !alive(sleeper));
  });

  it('a timeout past 24.8 days is honoured, not turned into an immediate kill', async () => {
    const file = join(dir, 'long-timeout.txt');
    const h = new ExecHook({ argv: ['sh', '-c', 'sleep 0.2; echo done > "$1"', 'sh', file], timeoutMs: 30 * 86_400_000 });
    cleanups.push(() => h.close(1000));
    h.send(alert());
    await until('hook run', () => h.stats().sent + h.stats().timedOut + h.stats().failed === 1);
    expect(h.stats()).toMatchObject({ sent: 1, timedOut: 0, failed: 0 });
    expect(readFileSync(file, 'utf8')).toBe('done\n');
  });

  it('counts a failing hook with its exit status and last stderr line', async () => {
    const h = new ExecHook({ argv: ['sh', '-c', 'echo starting >&2; echo boom >&2; exit 3'] });
    cleanups.push(() => h.close(1000));
    h.send(alert());
    await until('failure', () => h.stats().failed === 1);
    expect(h.stats().lastError).toBe('exit status 3: boom');
  });

  it('counts a command that does not exist', async () => {
    const h = new ExecHook({ argv: [join(dir, 'no-such-hook')] });
    cleanups.push(() => h.close(1000));
    h.send(alert());
    await until('failure', () => h.stats().failed === 1);
    expect(h.stats().lastError).toMatch(/ENOENT/);
  });

  it('never blocks the caller: bounded queue, drops counted, limited concurrency', async () => {
    const file = join(dir, 'order.txt');
    const h = new ExecHook({ argv: ['sh', '-c', 'cat >> "$1"', 'sh', file], concurrency: 1, queueSize: 2 });
    cleanups.push(() => h.close(1000));
    const t0 = performance.now();
    for (let i = 0; i < 6; i++) h.send(alert({ subject: `d${i}` }));
    expect(performance.now() - t0).toBeLessThan(50);
    expect(h.stats()).toMatchObject({ dropped: 4, queued: 2 });
    await until('both run', () => h.stats().sent === 2);
    const subjects = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as Alert).subject);
    expect(subjects).toEqual(['d4', 'd5']);
  });

  it('close() kills what still runs at the deadline', async () => {
    const h = new ExecHook({ argv: ['sleep', '30'], timeoutMs: 60_000 });
    h.send(alert());
    h.send(alert());
    await until('running', () => h.stats().queued === 2);
    const t0 = Date.now();
    expect(await h.close(150)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1000);
    await until('killed', () => h.stats().failed === 2);
    expect(h.stats().lastError).toBe('killed by SIGKILL');
  });
});

// --- dispatcher -------------------------------------------------------------------------------

class Recorder implements Delivery {
  readonly got: Alert[] = [];
  constructor(readonly name: string) {}
  send(a: Alert): void {
    this.got.push(a);
  }
  stats(): DeliveryStats {
    return { sent: this.got.length, failed: 0, dropped: 0, queued: 0, lastError: null };
  }
  async close(): Promise<boolean> {
    return true;
  }
}

describe('Dispatcher', () => {
  it('fans out by severity and resolved filters, and survives a delivery that throws', async () => {
    const all = new Recorder('all');
    const pager = new Recorder('pager');
    const broken: Delivery = {
      name: 'broken',
      send() {
        throw new Error('bad plugin');
      },
      stats: () => ({ sent: 0, failed: 0, dropped: 0, queued: 0, lastError: null }),
      close: async () => true,
    };
    const d = new Dispatcher([all, broken, { delivery: pager, minSeverity: 'critical', sendResolved: false }]);
    const warn = alert();
    const crit = alert({ severity: 'critical', rule: 'time_to_full', subject: 'table' });
    const critResolved = { ...crit, event: 'resolved' as const };
    d.dispatch([warn, crit]);
    d.dispatch(critResolved);
    expect(all.got).toEqual([warn, crit, critResolved]);
    expect(pager.got).toEqual([crit]);
    expect(Object.keys(d.stats())).toEqual(['all', 'broken', 'pager']);
    expect(await d.close(100)).toBe(true);
  });

  it('builds real deliveries from a rules file and delivers through both', async () => {
    const rx = await receiver();
    cleanups.push(() => rx.close());
    const file = join(dir, 'dispatched.json');
    const config = parseAlertConfig(
      [
        'deliver:',
        `  - webhook: ${rx.url}`,
        '    min_severity: warning',
        `  - exec: [sh, -c, 'cat > "$1"', sh, ${JSON.stringify(file)}]`,
        '    min_severity: critical',
      ].join('\n'),
    );
    const d = createDispatcher(config.deliver);
    d.dispatch(alert({ severity: 'info' }));
    d.dispatch(alert({ severity: 'critical', subject: 'table' }));
    expect(await d.close(3000)).toBe(true);
    expect(rx.requests.map((r) => (JSON.parse(r.body) as Alert).subject)).toEqual(['table']);
    expect((JSON.parse(readFileSync(file, 'utf8')) as Alert).subject).toBe('table');
    const stats = d.stats();
    expect(Object.keys(stats)).toEqual([`webhook ${new URL(rx.url).origin}`, 'exec sh']);
    expect(Object.values(stats).map((s) => s.sent)).toEqual([1, 1]);
  });
});
