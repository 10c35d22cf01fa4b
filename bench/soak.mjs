#!/usr/bin/env node
// Soak: many events through the whole pipeline (kernel → addon → engine → alerts → JSONL file),
// printing RSS, heap and open handles every 10 s, so a leak shows as a slope. Not part of CI.
//   node bench/soak.mjs [--events 10000000] [--threads 2]
// Needs root and a built ctwatch. Runs `ctwatch watch --flows --churn 10s -o FILE` on a namespace
// driven by bench/connburst.c until the watcher has counted --events events.
import { spawn } from 'node:child_process';
import { benchNamespace, sh } from './lab.mjs';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, openSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench', 'out');
const { values } = parseArgs({ options: { events: { type: 'string', default: '10000000' }, threads: { type: 'string', default: '2' } } });
const target = Number(values.events);
mkdirSync(OUT, { recursive: true });
const burst = join(OUT, 'connburst');
sh('gcc', ['-O2', '-pthread', '-o', burst, join(ROOT, 'bench', 'connburst.c')]);
const { name: ns } = benchNamespace('ctwatch-soak');

const file = join(OUT, 'soak.jsonl');
writeFileSync(file, '');
const watch = spawn(process.execPath, [join(ROOT, 'bin', 'ctwatch.js'), 'watch', '--netns', ns, '--events', 'new,destroy', '--flows', '--churn', '10s', '-o', file, '--status', '10s', '--log-format', 'json'], { stdio: ['ignore', 'ignore', 'pipe'] });
let events = 0;
let errors = 0;
watch.stderr.on('data', (d) => {
  for (const line of String(d).split('\n').filter(Boolean)) {
    try {
      const o = JSON.parse(line);
      if (typeof o.events === 'number') events = o.events;
      if (o.level >= 50) errors++;
    } catch { /* not ours */ }
  }
});
const load = spawn('ip', ['netns', 'exec', ns, burst, '127.0.0.1', '7000', '100000', values.threads], { stdio: 'ignore' });
const started = Date.now();
const rows = [];
const sample = () => {
  const status = readFileSync(`/proc/${watch.pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
  const fds = readdirSync(`/proc/${watch.pid}/fd`).length;
  const threads = Number(/Threads:\s+(\d+)/.exec(status)[1]);
  rows.push({ 't (s)': Math.round((Date.now() - started) / 1000), events, 'RSS MiB': rss.toFixed(1), fds, threads, errors });
  console.log(JSON.stringify(rows[rows.length - 1]));
};
const timer = setInterval(() => {
  sample();
  if (events >= target) {
    clearInterval(timer);
    load.kill('SIGKILL');
    watch.kill('SIGTERM');
  }
}, 10_000);
await new Promise((r) => watch.once('exit', r));
console.table(rows);
