#!/usr/bin/env node
// Source benchmark: ctwatch record and conntrack -E side by side on the same namespace, in the
// same run, under as many short TCP connections as this machine allows.
//   node bench/source.mjs [--seconds 10] [--threads 2]
// Needs root, a built ctwatch (npm run build) and conntrack-tools. See bench/README.md.
import { spawn } from 'node:child_process';
import { benchNamespace, sh } from './lab.mjs';
import { mkdirSync, openSync, readFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench', 'out');
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, threads: { type: 'string', default: '2' }, reliable: { type: 'boolean' } } });
const seconds = Number(values.seconds);
mkdirSync(OUT, { recursive: true });

const burst = join(OUT, 'connburst');
sh('gcc', ['-O2', '-pthread', '-o', burst, join(ROOT, 'bench', 'connburst.c')]);
const { name: ns, inNs, kernelNew: newFlows } = benchNamespace('ctwatch-bench');

const ctwatchOut = join(OUT, 'ctwatch.jsonl');
const conntrackOut = join(OUT, 'conntrack.txt');
// --reliable: ctwatch in reliable mode (NETLINK_BROADCAST_SEND_ERROR + NETLINK_NO_ENOBUFS).
const ctwatch = spawn(process.execPath, [join(ROOT, 'bin', 'ctwatch.js'), 'record', '--netns', ns, '--output', ctwatchOut, ...(values.reliable ? ['--reliable'] : [])], { stdio: ['ignore', 'ignore', 'pipe'] });
const conntrack = spawn('ip', ['netns', 'exec', ns, 'conntrack', '-E', '-e', 'NEW,DESTROY', '-o', 'id'], { stdio: ['ignore', openSync(conntrackOut, 'w'), 'pipe'] });
let ctwatchErr = '';
let conntrackErr = '';
ctwatch.stderr.on('data', (d) => (ctwatchErr += d));
conntrack.stderr.on('data', (d) => (conntrackErr += d));
// Truncate ctwatch's file (record appends).
sh('truncate', ['-s', '0', ctwatchOut]);

const lines = (file) => (existsSync(file) ? Number(sh('wc', ['-l', file]).trim().split(' ')[0]) : 0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks at 100 Hz
};
const hwm = (pid) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

// Ready when both have seen a probe flow.
for (let i = 0; ; i++) {
  try { inNs('ping', ['-c', '1', '-W', '0.2', '127.0.0.254'], { stdio: 'ignore' }); } catch { /* no reply needed */ }
  await sleep(100);
  if (lines(ctwatchOut) > 0 && lines(conntrackOut) > 0) break;
  if (i > 100) throw new Error(`collectors did not start: ${ctwatchErr} ${conntrackErr}`);
}
const base = { ctwatch: lines(ctwatchOut), conntrack: lines(conntrackOut), kernel: newFlows() };
const cpu0 = { ctwatch: cpu(ctwatch.pid), conntrack: cpu(conntrack.pid) };

process.stderr.write(`bench: ${seconds}s of connections from ${values.threads} threads in ${ns}...\n`);
const t0 = Date.now();
const made = Number(/connections (\d+)/.exec(inNs(burst, ['127.0.0.1', '7000', String(seconds), values.threads]))[1]);
const loadSeconds = (Date.now() - t0) / 1000;
// End every remaining flow now so each collector should have seen NEW + DESTROY for every flow.
inNs('conntrack', ['-F'], { stdio: 'ignore' });
const kernelNew = newFlows() - base.kernel;
// Wait until both outputs stop growing.
let prev = -1;
for (let stable = 0; stable < 4; ) {
  await sleep(500);
  const now = lines(ctwatchOut) + lines(conntrackOut);
  stable = now === prev ? stable + 1 : 0;
  prev = now;
}
const cpu1 = { ctwatch: cpu(ctwatch.pid), conntrack: cpu(conntrack.pid) };
const rss = { ctwatch: hwm(ctwatch.pid), conntrack: hwm(conntrack.pid) };
ctwatch.kill('SIGTERM');
conntrack.kill('SIGTERM');
await Promise.all([new Promise((r) => ctwatch.on('exit', r)), new Promise((r) => conntrack.on('exit', r))]);

const ctLines = readFileSync(ctwatchOut, 'utf8').split('\n');
const ctOverflows = ctLines.filter((l) => l.includes('"event":"overflow"')).length;
const ctEvents = ctLines.filter((l) => l.includes('"event":"new"') || l.includes('"event":"destroy"')).length - base.ctwatch;
const cEvents = lines(conntrackOut) - base.conntrack;
const cOverflows = (conntrackErr.match(/ENOBUFS/g) ?? []).length;
const expected = kernelNew * 2;
const row = (name, events, overflows, cpuS, rssMiB) => ({
  collector: name,
  'events seen': events,
  'of expected': `${((100 * events) / expected).toFixed(1)} %`,
  overflows,
  'CPU s / 100k events': ((cpuS / Math.max(events, 1)) * 1e5).toFixed(3),
  'peak RSS MiB': rssMiB.toFixed(1),
  'events/s': Math.round(events / loadSeconds),
});
console.log(`\nload: ${made} connections in ${loadSeconds.toFixed(1)} s (${Math.round(made / loadSeconds)} conn/s); kernel counted ${kernelNew} new flows -> ${expected} NEW+DESTROY events expected\n`);
console.table([
  row(values.reliable ? 'ctwatch record --reliable' : 'ctwatch record', ctEvents, ctOverflows, cpu1.ctwatch - cpu0.ctwatch, rss.ctwatch),
  row('conntrack -E', cEvents, cOverflows, cpu1.conntrack - cpu0.conntrack, rss.conntrack),
]);
