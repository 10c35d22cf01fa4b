#!/usr/bin/env node
/**
 * SIEM feed benchmark: format cost per event (ns) and sink throughput (events/s) per format and
 * transport against loopback receivers running in a child process (so the receiver does not share
 * the sender's event loop).
 *
 *   npx tsc -p tsconfig.json && node bench/sinks.mjs [--events 20000] [--quick]
 *
 * Figures depend on the machine; on a 2-core shared box run it once, briefly, and compare runs
 * made on the same box only.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatFor } from '../dist/formats/index.js';
import { communityId } from '../dist/formats/community-id.js';
import { syslogMessage } from '../dist/formats/syslog.js';
import { DeliverySink } from '../dist/sinks/sink.js';
import { startReceiver } from './receivers.mjs';
import { HttpTransport } from '../dist/sinks/http.js';
import { SyslogTransport } from '../dist/sinks/syslog.js';
import { FileTransport } from '../dist/sinks/file.js';

const args = process.argv.slice(2);
const EVENTS = Number(args[args.indexOf('--events') + 1]) || 20_000;
const QUICK = args.includes('--quick');

const host = { name: 'bench', hostname: 'bench.example.net', ip: ['10.0.0.5'] };
const fmtOpts = { host, localAddresses: ['10.0.0.5'] };

function flow(i) {
  return {
    event: 'flow', time: 1_700_000_000_000_000 + i, id: i, family: 'ipv4', proto: 'tcp',
    src: '10.0.0.5', dst: `10.1.${(i >> 8) & 255}.${i & 255}`, sport: 30_000 + (i % 30_000), dport: 443,
    begin: 1_699_999_999_000_000, duration: 1.25, clock: 'kernel', preexisting: false, state: 'TIME_WAIT',
    assured: true, replied: true, orig: { packets: 12, bytes: 1400 }, reply: { packets: 10, bytes: 9000 },
    reason: 'destroy', process: { pid: 4242, comm: 'curl', exe: '/usr/bin/curl', uid: 1000, user: 'alice' },
  };
}
const conntrack = {
  event: 'destroy', time: 1_700_000_000_123_456, id: 77, family: 'ipv6', proto: 'tcp',
  src: '2001:db8::1', dst: '2001:db8::2', sport: 40_000, dport: 443,
  reply: { src: '2001:db8::2', dst: '2001:db8::1', sport: 443, dport: 40_000, packets: 10, bytes: 5000 },
  state: 'TIME_WAIT', status: ['SEEN_REPLY', 'ASSURED', 'CONFIRMED'], orig: { packets: 12, bytes: 1200 },
  start: 1_699_999_990_000_000_000, end: 1_700_000_000_120_000_000,
};
const alert = {
  event: 'alert', time: 1_700_000_030_000_000, rule: 'churn_per_destination', severity: 'warning',
  subject: '127.0.0.5:6379/tcp', since: 1_700_000_000_000_000,
  message: 'churn to 127.0.0.5:6379/tcp 2 340 new/s (×40 its median)', values: { rate: 2340, median: 58.5 },
  top: { destinations: [{ key: '127.0.0.5:6379/tcp', rate: 2340 }], sources: [{ key: '127.0.1.7', rate: 2000 }] },
  hint: 'ctwatch top --dst 127.0.0.5:6379',
};

function nsPerOp(fn, n) {
  for (let i = 0; i < Math.min(2000, n); i++) fn(i); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / n;
}

function formatCosts() {
  const n = QUICK ? 5_000 : 30_000;
  const rows = [];
  const flows = Array.from({ length: 1024 }, (_, i) => flow(i));
  for (const name of ['jsonl', 'ecs', 'ocsf', 'cef']) {
    const format = formatFor(name, fmtOpts);
    // Counting the bytes flattens the line: a line built by concatenation is a tree of pieces until
    // then, and flattening it can cost as much as building it. Every sink pays that, so count it here.
    const f = (rec) => Buffer.byteLength(format(rec));
    rows.push({
      format: name,
      'flow ns': Math.round(nsPerOp((i) => f(flows[i & 1023]), n)),
      'conntrack ns': Math.round(nsPerOp(() => f(conntrack), n)),
      'alert ns': Math.round(nsPerOp(() => f(alert), n)),
      'flow bytes': f(flows[0]),
    });
  }
  const extra = {
    'community_id ns': Math.round(nsPerOp((i) => communityId(flows[i & 1023]), n)),
    'syslog header+SD ns': Math.round(nsPerOp((i) => Buffer.byteLength(syslogMessage(flows[i & 1023], 'x', { hostname: 'bench' })), n)),
  };
  return { rows, extra };
}

async function throughput(name, transport, format, rx, n, opts = {}) {
  rx?.reset();
  const sink = new DeliverySink(transport, {
    name,
    format: formatFor(format, fmtOpts),
    batch: { maxRecords: opts.batch ?? 500, maxWaitMs: 5 },
    memory: { maxRecords: 1_000_000, maxBytes: 1 << 30 },
  });
  const flows = Array.from({ length: 1024 }, (_, i) => flow(i));
  const t0 = performance.now();
  let writeMs = 0;
  for (let i = 0; i < n; i += 1000) {
    const w0 = performance.now();
    for (let j = i; j < Math.min(n, i + 1000); j++) sink.write(flows[j & 1023]);
    writeMs += performance.now() - w0;
    // the collector hands over events in batches between I/O: let delivery run between them
    await new Promise((r) => setImmediate(r));
  }
  const ok = await sink.flush(120_000);
  let got = n;
  if (rx) {
    const deadline = Date.now() + 3000;
    for (;;) {
      got = await rx.count();
      if (got >= n || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const ms = performance.now() - t0;
  const c = sink.counters;
  await sink.close();
  return {
    sink: name,
    format,
    'events/s': Math.round((n / ms) * 1000),
    'write() µs/event': Number(((writeMs * 1000) / n).toFixed(2)),
    received: got,
    dropped: c.dropped,
    flushed: ok,
  };
}

async function main() {
  console.log(`node ${process.version}, ${EVENTS} events per throughput case`);
  const { rows, extra } = formatCosts();
  console.log('\nformat cost per event (ns, one core, line flattened)');
  console.table(rows);
  console.table([extra]);

  const dir = mkdtempSync(join(tmpdir(), 'ctwatch-bench-'));
  const rx = await startReceiver(dir);
  const results = [];
  const url = (p) => `http://127.0.0.1:${rx.ports.http}${p}`;
  const n = EVENTS;
  try {
    for (const format of QUICK ? ['ecs'] : ['jsonl', 'ecs', 'ocsf', 'cef']) {
      results.push(await throughput('syslog tcp', new SyslogTransport({ protocol: 'tcp', host: '127.0.0.1', port: rx.ports.tcp, header: { hostname: 'bench' } }), format, rx, n));
    }
    results.push(await throughput('syslog tls', new SyslogTransport({ protocol: 'tls', host: '127.0.0.1', port: rx.ports.tls, tls: { ca: statSync(rx.ca) && (await import('node:fs')).readFileSync(rx.ca) }, header: { hostname: 'bench' } }), 'cef', rx, n));
    results.push(await throughput('syslog udp', new SyslogTransport({ protocol: 'udp', host: '127.0.0.1', port: rx.ports.udp, header: { hostname: 'bench' } }), 'cef', rx, n));
    results.push(await throughput('splunk hec gzip', new HttpTransport({ api: 'splunk-hec', url: url('/'), lineIsJson: true, gzip: true, auth: { scheme: 'splunk', secret: 't' } }), 'ecs', rx, n));
    results.push(await throughput('es _bulk gzip', new HttpTransport({ api: 'elasticsearch', url: url('/'), lineIsJson: true, gzip: true, elasticsearch: { index: 'ct' } }), 'ecs', rx, n));
    results.push(await throughput('es _bulk plain', new HttpTransport({ api: 'elasticsearch', url: url('/'), lineIsJson: true, gzip: false, elasticsearch: { index: 'ct' } }), 'ecs', rx, n));
    results.push(await throughput('ndjson gzip', new HttpTransport({ api: 'ndjson', url: url('/in'), lineIsJson: true, gzip: true }), 'ocsf', rx, n));
    results.push(await throughput('file', new FileTransport({ path: join(dir, 'out.jsonl') }), 'jsonl', null, n));
  } finally {
    rx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('\nsink throughput (loopback receiver in a child process)');
  console.table(results);
}

await main();
