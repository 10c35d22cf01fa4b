#!/usr/bin/env node
// Which compiled code the first second of load throws away, and what V8 compiles again then:
// the latency stage of bench/hotpath.mjs with V8's code log (--log-deopt --log-code), read back.
//
//   node bench/deopts.mjs [--log FILE]   (needs root, as bench/hotpath.mjs does; --log: read an
//                                         existing V8 log instead of running the stage)
//
// Prints, from the start of the load (the first code event after ≥ 0.5 s without one, past the
// start-up), each deoptimization with the function whose optimized code it threw away, the
// place it happened (with what was inlined where) and V8's reason, then the functions compiled
// by TurboFan in the first 1.5 s of load: a function there was cold when the load came. See
// bench/README.md, "Fresh instances and the compiled per-event path".
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { log: { type: 'string' } } });
let log = values.log;
if (!log) {
  log = join(ROOT, 'bench', 'out', 'deopts-v8.log');
  const args = ['--stages', 'latency', '--node-arg=--log-deopt', '--node-arg=--log-code', `--node-arg=--logfile=${log}`, '--node-arg=--no-logfile-per-isolate'];
  const r = spawnSync(process.execPath, [join(ROOT, 'bench', 'hotpath.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`bench/deopts.mjs: bench/hotpath.mjs failed (exit ${r.status})`);
    process.exit(1);
  }
  console.log(r.stdout.trim().split('\n').at(-1));
}

const TURBOFAN = '13'; // V8's CodeKind of optimized code in Node 20's log
const START_US = 1e6; // a gap before this is the process starting, not the load
const GAP_US = 5e5;
const short = (s) => s.replace(/file:\/\/\/[^\s>]*?\/dist\//g, '').replace(/file:\/\//g, '');
const names = new Map();
const deopts = [];
const compiles = [];
let last = 0;
let load = 0;
const mark = (t) => {
  if (!load && last && t > START_US && t - last > GAP_US) load = t;
  last = t;
};
for (const line of readFileSync(log, 'utf8').split('\n')) {
  // the fields this reads are before any comma a function's name or position could hold
  const f = line.split(',');
  if (f[0] === 'code-creation' && f[1] === 'JS') {
    names.set(f[4], f[6]);
    if (f[2] !== TURBOFAN) continue;
    const t = Number(f[3]);
    mark(t);
    if (load) compiles.push({ t, fn: f[6] });
  } else if (f[0] === 'code-deopt') {
    const t = Number(f[1]);
    mark(t);
    if (load) deopts.push({ t, fn: names.get(f[3]) ?? '?', where: f[7], why: f.slice(8).join(',') });
  }
}
if (!load) {
  console.error(`bench/deopts.mjs: no start of load found in ${log}`);
  process.exit(1);
}
const s = (t) => ((t - load) / 1e6).toFixed(3).padStart(7);
const early = deopts.filter((d) => d.t - load < 3e6);
console.log(`load began at ${(load / 1e6).toFixed(3)} s of the process; deoptimizations in its first 3 s: ${early.length}`);
for (const d of early) console.log(`${s(d.t)} s  [${short(d.fn)}] ${short(d.where)}: ${d.why}`);
const cold = compiles.filter((c) => c.t - load < 1.5e6);
console.log(`compiled by TurboFan in the first 1.5 s of load: ${cold.length}`);
for (const c of cold) console.log(`${s(c.t)} s  ${short(c.fn)}`);
