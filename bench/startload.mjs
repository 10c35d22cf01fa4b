#!/usr/bin/env node
// `ctwatch watch` started while the load already runs: the restart in the middle of an incident.
// The warm-up before the first batch must give way to the real events (src/pipeline/warmup.ts
// `busy`), or the events it holds overflow the socket.
//
//   node bench/startload.mjs [--rate 50000] [--seconds 8] [--runs 2]
//
// One namespace per run (bench/lab.mjs), bench/refused.c at --rate connections/s (2 events
// each) on 2 threads; watch starts 1.5 s into the load, with debug logs. Prints per run how long
// the warm-up ran and why it stopped, and the overflows and resyncs watch reported by its stop.
// Needs root, a built ctwatch (npm run build) and bench/out/refused (bench/hotpath.mjs builds it).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchNamespace } from './lab.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const REFUSED = join(ROOT, 'bench', 'out', 'refused');
const { values } = parseArgs({ options: { rate: { type: 'string', default: '50000' }, seconds: { type: 'string', default: '8' }, runs: { type: 'string', default: '2' } } });
if (!existsSync(REFUSED)) {
  console.error('bench/startload.mjs: bench/out/refused is missing: run node bench/hotpath.mjs once (it builds it)');
  process.exit(1);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const exited = (child) => new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));

for (let run = 1; run <= Number(values.runs); run++) {
  const { name: ns, cleanup } = benchNamespace(`ctwatch-startload-${run}`);
  try {
    const load = spawn('ip', ['netns', 'exec', ns, REFUSED, '127.0.0.1', '2', '0', values.rate, values.seconds], { stdio: 'ignore' });
    await sleep(1500);
    const watch = spawn(process.execPath, [join(ROOT, 'bin', 'ctwatch.js'), 'watch', '--netns', ns, '--flows', '-o', join(ROOT, 'bench', 'out', 'startload.jsonl'), '--status', '0', '--log-format', 'json'], {
      env: { ...process.env, CTWATCH_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    watch.stderr.on('data', (d) => (err += d));
    await exited(load);
    await sleep(3000);
    watch.kill('SIGTERM');
    await exited(watch);
    const logs = err.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const warm = logs.find((l) => /^warmed up/.test(l.msg));
    const stopped = logs.find((l) => l.msg === 'stopped');
    const resyncs = logs.filter((l) => /^resynchronised/.test(l.msg)).length;
    console.log(`run ${run}: ${values.rate} conn/s; warm-up ${warm?.ms ?? '?'} ms, ${warm?.busy ? 'stopped: events were waiting' : warm?.cut ? 'cut by its budget' : 'complete'}; overflows ${stopped?.overflows ?? '?'}, resyncs ${resyncs}, events ${stopped?.events ?? '?'}`);
  } finally {
    cleanup();
  }
}
