/**
 * Traffic for the lab: listeners and clients that make real connections, run inside a network
 * namespace (`ip netns exec NS node dist/lab/generator.js SPEC`). Used by the demo, the tests and
 * the benchmarks. Only loopback addresses are ever used.
 *
 * SPEC is JSON: { "listen": [...], "run": [...] } — see the Step types below. It prints one JSON
 * line per finished step on stdout (`{"step":i,"made":N,"failed":F,"tuples":[...]}`), then exits.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Listen {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
}

/** New TCP connections, one per "request": the leaky pool. */
export interface ConnectStep {
  kind: 'connect';
  host: string;
  port: number;
  /** local address to connect from (any 127/8 address works on lo) */
  from?: string;
  count: number;
  /** connections per second; 0 = as fast as possible */
  rate: number;
  /** keep each connection open this long before closing */
  holdMs?: number;
  /** connections in flight at once */
  concurrency?: number;
  /** report each connection's tuple (for tests that check exact tuples) */
  report?: boolean;
  /** stop starting connections after this long, even if fewer than `count` were made */
  durationMs?: number;
}

/** A few long-lived connections doing request/response: the healthy pool. */
export interface PoolStep {
  kind: 'pool';
  host: string;
  port: number;
  from?: string;
  connections: number;
  /** requests per second over the whole pool */
  rate: number;
  durationMs: number;
}

export interface UdpStep {
  kind: 'udp';
  host: string;
  port: number;
  from?: string;
  /** distinct flows (one socket each) */
  count: number;
  report?: boolean;
}

export type Step = ConnectStep | PoolStep | UdpStep;

export interface Spec {
  listen?: Listen[];
  run?: Step[];
  /** run steps at the same time instead of one after another */
  parallel?: boolean;
  /** keep listeners open this long after the steps finish */
  lingerMs?: number;
  /** print {"listening":[...]} once every listener is open (a server others wait for) */
  announce?: boolean;
}

export interface StepResult {
  step: number;
  made: number;
  failed: number;
  tuples?: { src: string; sport: number; dst: string; dport: number }[];
  elapsedMs: number;
  /** wall clock (ms since epoch) when the step began */
  startedAt?: number;
}

export async function listen(l: Listen): Promise<() => Promise<void>> {
  if (l.proto === 'udp') {
    const sock = dgram.createSocket(l.host.includes(':') ? 'udp6' : 'udp4');
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(l.port, l.host, () => resolve());
    });
    return () => new Promise((resolve) => sock.close(() => resolve()));
  }
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('data', () => s.write('+PONG\r\n'));
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    // The client closes first (as a pool does), so TIME_WAIT lands on the client side.
    s.on('end', () => s.end());
  });
  server.maxConnections = 100_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: l.host, port: l.port, backlog: 4096 }, () => resolve());
  });
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

function connectOnce(step: ConnectStep): Promise<{ src: string; sport: number } | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: step.host, port: step.port, localAddress: step.from });
    let tuple: { src: string; sport: number } | null = null;
    s.once('connect', () => {
      tuple = { src: s.localAddress ?? '', sport: s.localPort ?? 0 };
      // Read replies even while holding: an unread stream never sees the peer's FIN, never closes.
      s.resume();
      s.write('PING\r\n');
      const finish = () => s.end();
      if (step.holdMs) setTimeout(finish, step.holdMs);
      else s.once('data', finish);
    });
    s.on('error', () => resolve(null));
    s.on('close', () => resolve(tuple));
  });
}

async function runConnect(step: ConnectStep, index: number): Promise<StepResult> {
  const started = performance.now();
  const concurrency = step.concurrency ?? 64;
  const tuples: StepResult['tuples'] = [];
  let made = 0;
  let failed = 0;
  let next = 0;
  const interval = step.rate > 0 ? 1000 / step.rate : 0;
  // Paced by the schedule (start i at i × interval), not by sleeping after each one, so the
  // achieved rate is the asked rate even when single connections are slow.
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= step.count) return;
      if (step.durationMs !== undefined && performance.now() - started >= step.durationMs) return;
      if (interval > 0) {
        const due = started + i * interval;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
      }
      const t = await connectOnce(step);
      if (t) {
        made++;
        if (step.report) tuples.push({ src: t.src, sport: t.sport, dst: step.host, dport: step.port });
      } else failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, step.count) }, worker));
  return { step: index, made, failed, elapsedMs: performance.now() - started, ...(step.report ? { tuples } : {}) };
}

async function runPool(step: PoolStep, index: number): Promise<StepResult> {
  const started = performance.now();
  const conns = await Promise.all(
    Array.from({ length: step.connections }, () =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host: step.host, port: step.port, localAddress: step.from }, () => resolve(s));
        s.once('error', reject);
        s.resume(); // consume replies, or the peer's FIN is never seen and close never comes
      }),
    ),
  );
  let requests = 0;
  const interval = 1000 / Math.max(step.rate, 1);
  while (performance.now() - started < step.durationMs) {
    const s = conns[requests % conns.length];
    s.write('PING\r\n');
    requests++;
    const due = started + requests * interval;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
  }
  for (const s of conns) s.end();
  await Promise.all(conns.map((s) => new Promise((r) => (s.closed ? r(null) : s.once('close', r)))));
  return { step: index, made: conns.length, failed: 0, elapsedMs: performance.now() - started };
}

async function runUdp(step: UdpStep, index: number): Promise<StepResult> {
  const started = performance.now();
  const tuples: StepResult['tuples'] = [];
  let made = 0;
  // Each socket stays bound until the step ends: a port closed at once could be handed to the
  // next socket (bind(0) picks at random), and its datagram would join the first one's conntrack
  // entry, one flow fewer than `count` (a kernel test saw 29 of 30).
  const open: dgram.Socket[] = [];
  for (let i = 0; i < step.count; i++) {
    const sock = dgram.createSocket(step.host.includes(':') ? 'udp6' : 'udp4');
    open.push(sock);
    await new Promise<void>((resolve) => sock.bind(0, step.from ?? (step.host.includes(':') ? '::1' : '127.0.0.1'), () => resolve()));
    await new Promise<void>((resolve) => sock.send('ping', step.port, step.host, () => resolve()));
    // Wait for the echo so the flow is replied (SEEN_REPLY), as a real request/response would be.
    await Promise.race([new Promise((r) => sock.once('message', r)), sleep(500)]);
    const a = sock.address();
    if (step.report) tuples.push({ src: a.address, sport: a.port, dst: step.host, dport: step.port });
    made++;
  }
  for (const sock of open) sock.close();
  return { step: index, made, failed: 0, elapsedMs: performance.now() - started, ...(step.report ? { tuples } : {}) };
}

export async function runSpec(spec: Spec, onResult: (r: StepResult) => void = () => {}): Promise<StepResult[]> {
  const closers = await Promise.all((spec.listen ?? []).map(listen));
  if (spec.announce) process.stdout.write(`${JSON.stringify({ listening: (spec.listen ?? []).map((l) => `${l.host}:${l.port}`) })}\n`);
  const steps = spec.run ?? [];
  const runOne = async (step: Step, i: number) => {
    const startedAt = Date.now();
    const r = step.kind === 'connect' ? await runConnect(step, i) : step.kind === 'pool' ? await runPool(step, i) : await runUdp(step, i);
    r.startedAt = startedAt;
    onResult(r);
    return r;
  };
  let results: StepResult[];
  if (spec.parallel) results = await Promise.all(steps.map(runOne));
  else {
    results = [];
    for (let i = 0; i < steps.length; i++) results.push(await runOne(steps[i], i));
  }
  if (spec.lingerMs) await sleep(spec.lingerMs);
  await Promise.all(closers.map((c) => c()));
  return results;
}

// Run as a program: node dist/lab/generator.js '<spec json>'
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
  runSpec(spec, (r) => process.stdout.write(`${JSON.stringify(r)}\n`))
    .then(() => process.exit(0))
    .catch((err) => {
      process.stderr.write(`generator: ${(err as Error).message}\n`);
      process.exit(1);
    });
}
