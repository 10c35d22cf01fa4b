#!/usr/bin/env node
/**
 * Fleet benchmark against a real nats-server (JetStream, file store, loopback, started here):
 *   1. records/s one host's nats sink publishes (the DeliverySink + NatsTransport, PubAck each),
 *      with PubAck batching (1000 outstanding) and without (one at a time);
 *   2. messages/s one `ctwatch fleet` consumer merges (the durable consumer + FleetState) from a
 *      stream holding 50 hosts' churn snapshots and flows, against the target of 50 hosts × 1
 *      snapshot/s + 20 000 flows/s in aggregate.
 *
 *   npx tsc -p tsconfig.json && /work/coord/bin/heavy node bench/fleet.mjs [--records 30000]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { formatFor } from '../dist/formats/index.js';
import { DeliverySink } from '../dist/sinks/sink.js';
import { NatsTransport } from '../dist/sinks/nats.js';
import { FleetConsumer } from '../dist/fleet/consumer.js';
import { FleetState } from '../dist/fleet/merge.js';

const args = process.argv.slice(2);
const RECORDS = Number(args[args.indexOf('--records') + 1]) || 30_000;
const HOSTS = 50;

const port = await new Promise((r) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => r(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'ctwatch-bench-fleet-'));
writeFileSync(join(dir, 'n.conf'), `listen: 127.0.0.1:${port}\njetstream { store_dir: "${dir}/store" }\n`);
const server = spawn('nats-server', ['-c', join(dir, 'n.conf')], { stdio: 'ignore' });
const url = `nats://127.0.0.1:${port}`;
const cleanup = () => {
  server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (let i = 0; ; i++) {
  try {
    const nc = await connect({ servers: url, maxReconnectAttempts: 0 });
    await (await jetstreamManager(nc)).getAccountInfo();
    await nc.close();
    break;
  } catch {
    if (i > 100) throw new Error('nats-server did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const flow = (host, id) => ({
  event: 'flow', time: 1_700_000_000_000_000 + id * 50, id, family: 'ipv4', proto: 'tcp',
  src: '10.0.0.5', dst: `10.1.${host % 250}.${id % 250}`, sport: 30_000 + (id % 30_000), dport: 443,
  begin: 1_700_000_000_000_000 + id * 50 - 20_000, duration: 0.02, clock: 'kernel', preexisting: false,
  state: 'TIME_WAIT', assured: true, replied: true, orig: { packets: 6, bytes: 600 }, reply: { packets: 5, bytes: 4200 },
  reason: 'destroy', process: { pid: 4242, comm: 'api-client' },
});
const churn = (host, t) => ({
  event: 'churn', time: 1_700_000_000_000_000 + t * 1e6, overall: { new1: 400, new10: 400, new60: 380, end1: 400, end10: 400, end60: 380 },
  live: 9000, states: { TIME_WAIT: 8000, ESTABLISHED: 1000 }, shortLived: 0.9,
  table: { entries: 9000, max: 262_144, fill: 9000 / 262_144, growth: host % 7, timeToFull: host % 7 ? 262_144 / (host % 7) : null, kernel: {} },
  destinations: Array.from({ length: 10 }, (_, i) => ({ key: `10.1.${i}.1:443/tcp`, new1: 40 - i, new10: 40 - i, new60: 40, end1: 40, end10: 40, end60: 40, live: 900 })),
  sources: [], protocols: [],
  processes: Array.from({ length: 5 }, (_, i) => ({ key: `api-client[${4242 + i}]`, new1: 80 - i, new10: 80, new60: 80, end1: 80, end10: 80, end60: 80, live: 1800 })),
});

const format = formatFor('jsonl');
async function publishRun(stream, maxInflight, n) {
  const transport = new NatsTransport({ servers: [url], host: 'bench', stream: { name: stream, create: true }, maxInflight, prefix: stream.toLowerCase() });
  const sink = new DeliverySink(transport, { name: stream, format, batch: { maxRecords: 1000, maxWaitMs: 5 } });
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    sink.write(flow(1, i));
    if (i % 5000 === 4999) await new Promise((r) => setImmediate(r));
  }
  if (!(await sink.flush(300_000))) throw new Error('flush timed out');
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const sent = sink.counters.sent;
  await sink.close();
  return { sent, perS: Math.round(sent / s), cpuCores: +((cpu.user + cpu.system) / 1e6 / s).toFixed(2) };
}

const batched = await publishRun('BENCHA', 1000, RECORDS);
const single = await publishRun('BENCHB', 1, Math.min(RECORDS, 3000));
console.log(JSON.stringify({ bench: 'publish', pubAckBatching: true, maxInflight: 1000, ...batched }));
console.log(JSON.stringify({ bench: 'publish', pubAckBatching: false, maxInflight: 1, ...single }));

// 2. the consumer: a stream as 50 hosts fill it in 10 s at the target rate (500 snapshots, 200 000 flows)
const nc = await connect({ servers: url });
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: 'CTWATCH', subjects: ['ctwatch.>'] });
const js = jetstream(nc);
const SECONDS = 10;
const flowsPerHostS = 20_000 / HOSTS;
const fill0 = performance.now();
let pending = [];
let total = 0;
for (let t = 0; t < SECONDS; t++) {
  for (let h = 0; h < HOSTS; h++) {
    pending.push(js.publish(`ctwatch.host${h}.churn`, format(churn(h, t))));
    for (let i = 0; i < flowsPerHostS; i++) pending.push(js.publish(`ctwatch.host${h}.flow`, format(flow(h, t * 1000 + i))));
    total += 1 + flowsPerHostS;
    if (pending.length >= 2000) {
      await Promise.all(pending);
      pending = [];
    }
  }
}
await Promise.all(pending);
const fillS = (performance.now() - fill0) / 1000;
await nc.close();

const consumer = new FleetConsumer({ servers: [url], stream: 'CTWATCH', durable: 'bench', fromStart: true });
setTimeout(() => void consumer.close(), 120_000).unref();
await consumer.open();
const state = new FleetState();
let got = 0;
const c0 = process.cpuUsage();
const t0 = performance.now();
const done = consumer.run((subject, data) => {
  state.ingest(subject, data, performance.now());
  if (++got === total) void consumer.close();
});
await done.catch(() => {});
const s = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(c0);
const view = state.view(performance.now());
console.log(JSON.stringify({
  bench: 'fleet-consumer', hosts: view.hosts.length, messages: got, seconds: +s.toFixed(2), perS: Math.round(got / s),
  target: 20_000 + HOSTS, headroom: +(got / s / (20_000 + HOSTS)).toFixed(2), cpuCores: +((cpu.user + cpu.system) / 1e6 / s).toFixed(2),
  filledPerS: Math.round(total / fillS),
}));
process.exit(0);
