#!/usr/bin/env node
// Collection and a SIEM sink together: `ctwatch watch --sinks` sending every conntrack event (NEW
// and DESTROY) as ECS over syslog TCP, on a namespace driven as hard as the machine allows. Where
// bench/sinks.mjs measures a sink alone, this says whether one keeps up while collection runs.
//   node bench/siem-live.mjs [--seconds 10] [--threads 2] [--format ecs] [--processes]
// Needs root and a built ctwatch (npm run build). See bench/README.md.
import { spawn } from 'node:child_process';
import { benchNamespace, sh } from './lab.mjs';
import { startReceiver } from './receivers.mjs';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench', 'out');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    threads: { type: 'string', default: '2' },
    format: { type: 'string', default: 'ecs' },
    processes: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
mkdirSync(OUT, { recursive: true });
const burst = join(OUT, 'connburst');
sh('gcc', ['-O2', '-pthread', '-o', burst, join(ROOT, 'bench', 'connburst.c')]);
const { name: ns, inNs, kernelNew: newFlows } = benchNamespace('ctwatch-siem');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

// The syslog TCP receiver of the sink benchmark, in its own process.
const rxDir = mkdtempSync(join(tmpdir(), 'ctwatch-siem-live-'));
const rx = await startReceiver(rxDir);
const port = rx.ports.tcp;
const received = () => rx.count();

const sinks = join(OUT, 'siem-live.yaml');
writeFileSync(sinks, `sinks:\n  - name: siem\n    type: syslog\n    protocol: tcp\n    host: 127.0.0.1\n    port: ${port}\n    format: ${values.format}\n    events: [new, destroy]\n`);
const args = [join(ROOT, 'bin', 'ctwatch.js'), 'watch', '--netns', ns, '--sinks', sinks, '--status', '0', ...(values.processes ? [] : ['--no-processes'])];
const watch = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
watch.stderr.on('data', (d) => (stderr += d));
for (let i = 0; !stderr.includes('watching the conntrack table'); i++) {
  if (i > 200) throw new Error(`watch did not start: ${stderr}`);
  await sleep(50);
}
// Ready when a probe flow has reached the receiver.
for (let i = 0; (await received()) === 0; i++) {
  if (i > 100) throw new Error(`no event reached the receiver: ${stderr}`);
  try { inNs('ping', ['-c', '1', '-W', '0.2', '127.0.0.254'], { stdio: 'ignore' }); } catch { /* no reply needed */ }
  await sleep(100);
}
const base = { received: await received(), kernel: newFlows(), cpu: cpu(watch.pid) };

process.stderr.write(`bench: ${seconds}s of connections from ${values.threads} threads in ${ns}, watch --sinks (${values.format} over syslog TCP${values.processes ? ', with process attribution' : ''})...\n`);
const t0 = Date.now();
const made = Number(/connections (\d+)/.exec(inNs(burst, ['127.0.0.1', '7000', String(seconds), values.threads]))[1]);
const loadSeconds = (Date.now() - t0) / 1000;
const atLoadEnd = (await received()) - base.received;
inNs('conntrack', ['-F'], { stdio: 'ignore' });
const kernelNew = newFlows() - base.kernel;
const expected = 2 * kernelNew;
// Until the receiver stops growing (the sink's queue has drained).
let prev = -1;
const tDrain = Date.now();
for (let stable = 0; stable < 4; ) {
  await sleep(500);
  const now = await received();
  stable = now === prev ? stable + 1 : 0;
  prev = now;
}
const drainSeconds = (Date.now() - tDrain) / 1000 - 2;
const got = prev - base.received;
const cpuS = cpu(watch.pid) - base.cpu;
watch.kill('SIGTERM');
await new Promise((r) => watch.on('exit', r));
rx.stop();
rmSync(rxDir, { recursive: true, force: true });
const summary = stderr.trim().split('\n').filter((l) => l.includes('stopped')).pop() ?? '';
const overflows = Number(/overflows=(\d+)/.exec(summary)?.[1] ?? NaN);

console.log(`\nload: ${made} connections in ${loadSeconds.toFixed(1)} s (${Math.round(made / loadSeconds)} conn/s); kernel counted ${kernelNew} new flows -> ${expected} NEW+DESTROY events expected\n`);
console.table([
  {
    format: values.format,
    'events at the receiver': got,
    'of expected': `${((100 * got) / expected).toFixed(1)} %`,
    'received while the load ran': `${((100 * atLoadEnd) / expected).toFixed(1)} %`,
    'drained after': `${Math.max(0, drainSeconds).toFixed(1)} s`,
    'events/s (load)': Math.round(expected / loadSeconds),
    'source overflows': overflows,
    'watch CPU s / 100k events': ((cpuS / Math.max(got, 1)) * 1e5).toFixed(2),
    'watch CPU (cores)': (cpuS / (loadSeconds + drainSeconds + 2)).toFixed(2),
  },
]);
console.log(`\nwatch's last line: ${summary}`);
