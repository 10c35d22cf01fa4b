#!/usr/bin/env node
// The hot-path benchmark (`npm run bench`): the daemon's whole pipeline, side by side in one run
// with `conntrack -E` and a floor reader that parses nothing, on one namespace driven by refused
// TCP connections (bench/refused.c) as fast as the kernel allows. See bench/README.md.
//
//   node bench/hotpath.mjs [--stages ceiling,updates,latency] [--connections 400000] [--threads 2]
//                          [--rate 25000] [--seconds 10] [--no-processes] [--cpu-prof DIR] [--perf DIR]
//                          [--json FILE] (the results as JSON)
//                          [--node-arg ARG]... (e.g. --node-arg=--trace-gc: watch's stdout goes to
//                          bench/out/hotpath-STAGE-watch.out)
//                          [--nice N] (watch at this niceness, e.g. -4 as auditd raises its own;
//                          the load and the peers stay at 0)
//
// Stages (each on a fresh namespace):
//   ceiling  `ctwatch watch --events new,destroy --flows -o FILE`, `conntrack -E -e NEW,DESTROY
//            -o id` and the floor reader, then --threads load threads until --connections
//   updates  the same with watch's default events (UPDATE too) and 1 load thread, conntrack -E
//            and the floor subscribed to the same events
//   latency  watch alone at --rate connections/s (2 events each) for --seconds: kernel -> line
//            latency p50/p99 (bench/linelat.c follows the output file) and peak RSS
// CPU is per thread, from /proc/PID/task/*/stat, from the start of the load to the end of the
// drain (start-up excluded), and again over the steady state: from 2 s into the load to its end.
// Needs root, a built ctwatch (npm run build), conntrack-tools, gcc.
import { spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchNamespace, sh } from './lab.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench', 'out');
const OPTIONS = {
  stages: { type: 'string', default: 'ceiling,updates,latency' },
  connections: { type: 'string', default: '400000' },
  threads: { type: 'string', default: '2' },
  rate: { type: 'string', default: '25000' },
  seconds: { type: 'string', default: '10' },
  'no-processes': { type: 'boolean', default: false },
  'cpu-prof': { type: 'string' },
  perf: { type: 'string' },
  json: { type: 'string' },
  'node-arg': { type: 'string', multiple: true, default: [] },
  nice: { type: 'string' },
};
/** the usage is this file's opening comment, so the two cannot drift apart */
function usage() {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
  return lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n');
}
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(usage());
  process.exit(0);
}
let parsed;
try {
  parsed = parseArgs({ options: OPTIONS });
} catch (err) {
  console.error(`hotpath: ${err.message} (node bench/hotpath.mjs --help lists the options)`);
  process.exit(2);
}
const { values } = parsed;
// checked before anything starts, so a typo does not cost a stage's 40 s first
const STAGES = values.stages.split(',');
const bad = (msg) => { console.error(`hotpath: ${msg} (node bench/hotpath.mjs --help lists the options)`); process.exit(2); };
for (const s of STAGES) if (!['ceiling', 'updates', 'latency'].includes(s)) bad(`unknown stage '${s}': use ceiling, updates, latency`);
for (const k of ['connections', 'threads', 'rate', 'seconds']) if (!/^[1-9][0-9]*$/.test(values[k])) bad(`--${k} wants a positive whole number, not '${values[k]}'`);
if (values.nice !== undefined && !/^-?[0-9]+$/.test(values.nice)) bad(`--nice wants a whole number such as -4, not '${values.nice}'`);
mkdirSync(OUT, { recursive: true });
const bin = (name) => {
  const out = join(OUT, name);
  sh('gcc', ['-O2', '-Wall', '-pthread', '-o', out, join(ROOT, 'bench', `${name}.c`)]);
  return out;
};
const REFUSED = bin('refused');
const FLOOR = bin('floor');
const LINELAT = bin('linelat');
const CTWATCH = join(ROOT, 'bin', 'ctwatch.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** the steady window starts this long after the load (linelat.c's steady p99 starts there too) */
const STEADY_AFTER_MS = 2000;

// --- /proc -------------------------------------------------------------------------------------

/** tid → { comm, ticks (utime + stime), waitNs (runnable but not running) } for every thread of pid */
function threads(pid) {
  const out = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // The main thread (tid = pid) runs JavaScript; its name is the process's, so say so.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      // Node does not name V8's platform workers or libuv's pool (file writes run there).
      const label = tid === String(pid) ? `${comm} (main: JS)` : comm === 'node' ? 'node (V8 workers, libuv pool)' : comm;
      // schedstat: ns on a CPU, ns runnable waiting for one, timeslices. On two cores shared with
      // the load the wait is where a line's latency goes when the thread is not the one working.
      // (a kernel without CONFIG_SCHEDSTATS has no such file: the wait is then unknown, not 0)
      let waitNs = NaN;
      try {
        waitNs = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
      } catch { /* no schedstat */ }
      out.set(tid, { comm: label, ticks: Number(f[11]) + Number(f[12]), waitNs });
    } catch { /* the thread ended */ }
  }
  return out;
}
const TICK = 100; // USER_HZ
/** CPU seconds per thread name between two samples (threads that came and went count too). */
function cpuDelta(before, after) {
  const byName = new Map();
  for (const [tid, t] of after) {
    const s = (t.ticks - (before.get(tid)?.ticks ?? 0)) / TICK;
    byName.set(t.comm, (byName.get(t.comm) ?? 0) + s);
  }
  return byName;
}
/** Seconds each thread name spent runnable but waiting for a CPU between two samples. */
function waitDelta(before, after) {
  const byName = new Map();
  for (const [tid, t] of after) byName.set(t.comm, (byName.get(t.comm) ?? 0) + (t.waitNs - (before.get(tid)?.waitNs ?? 0)) / 1e9);
  return byName;
}
const sum = (m) => [...m.values()].reduce((a, b) => a + b, 0);
const hwmMiB = (pid) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

// --- files -------------------------------------------------------------------------------------

/** Counts of needles in a (large) file, streamed. */
async function countIn(file, needles) {
  const counts = Object.fromEntries(needles.map((n) => [n, 0]));
  if (!existsSync(file)) return counts;
  let tail = '';
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const text = tail + chunk;
    const cut = text.lastIndexOf('\n') + 1;
    const whole = text.slice(0, cut);
    tail = text.slice(cut);
    for (const n of needles) for (let i = whole.indexOf(n); i >= 0; i = whole.indexOf(n, i + n.length)) counts[n]++;
  }
  return counts;
}
const size = (file) => (existsSync(file) ? statSync(file).size : 0);

// --- processes ---------------------------------------------------------------------------------

function start(cmd, args, { stdout } = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', stdout ?? 'pipe', 'pipe'] });
  child.out = '';
  child.err = '';
  child.stdout?.on('data', (d) => (child.out += d));
  child.stderr.on('data', (d) => (child.err += d));
  child.exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return child;
}
async function until(what, test, ms = 20000) {
  for (const t0 = Date.now(); !(await test()); ) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
/** The floor's counters, asked for with SIGUSR1. */
async function floorCounts(floor) {
  const before = floor.out.length;
  floor.kill('SIGUSR1');
  await until('the floor reader', () => floor.out.length > before && floor.out.endsWith('\n'), 5000);
  const m = /new (\d+) destroy (\d+) other (\d+) overflows (\d+)\n$/.exec(floor.out);
  return { new: Number(m[1]), destroy: Number(m[2]), other: Number(m[3]), overflows: Number(m[4]) };
}
/** The JSON log line of watch with this msg (--log-format json). */
function logLine(child, msg) {
  for (const l of child.err.split('\n').reverse()) {
    if (!l.startsWith('{')) continue;
    try {
      const o = JSON.parse(l);
      if (o.msg === msg) return o;
    } catch { /* partial */ }
  }
  return undefined;
}

// --- one stage ---------------------------------------------------------------------------------

async function stage(name, { events, threads: loadThreads, connections, rate, seconds, peers }) {
  const { name: ns, inNs, kernelNew, cleanup } = benchNamespace(`ctwatch-hot-${name}`);
  const file = join(OUT, `hotpath-${name}.jsonl`);
  const ctFile = join(OUT, `hotpath-${name}-conntrack.txt`);
  writeFileSync(file, '');
  const groups = events.split(',').reduce((g, e) => g | { new: 1, update: 2, destroy: 4 }[e], 0);
  const nodeArgs = [...values['node-arg'], ...(values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof'], `--cpu-prof-name=${name}.cpuprofile`] : [])];
  const watchOut = values['node-arg'].length > 0 ? { stdout: openSync(join(OUT, `hotpath-${name}-watch.out`), 'w') } : {};
  const niced = values.nice !== undefined ? ['nice', ['-n', values.nice, process.execPath]] : [process.execPath, []];
  const watch = start(niced[0], [...niced[1], ...nodeArgs, CTWATCH, 'watch', '--netns', ns, '--events', events, '--flows', '-o', file, '--status', '0', '--log-format', 'json', ...(values['no-processes'] ? ['--no-processes'] : [])], watchOut);
  const floor = peers ? start('ip', ['netns', 'exec', ns, FLOOR, String(groups)]) : undefined;
  const conntrackEvents = events.split(',').map((e) => e.toUpperCase()).join(',');
  const conntrack = peers ? start('ip', ['netns', 'exec', ns, 'conntrack', '-E', '-e', conntrackEvents, '-o', 'id'], { stdout: openSync(ctFile, 'w') }) : undefined;
  const lat = peers ? undefined : start(LINELAT, [file]);
  try {
    await until('watch to start', () => watch.err.includes('watching the conntrack table') || watch.exitCode !== null);
    if (watch.exitCode !== null) throw new Error(`watch exited: ${watch.err}`);
    if (floor) await until('the floor reader', () => floor.out.includes('ready'));
    if (lat) await until('linelat', () => lat.out.includes('ready'));
    // Ready when each collector has seen a probe flow end.
    await until('every collector to see a probe flow', async () => {
      inNs(REFUSED, ['127.0.0.1', '1', '1']);
      inNs('conntrack', ['-F'], { stdio: 'ignore' });
      await sleep(300);
      const flows = (await countIn(file, ['"event":"flow"']))['"event":"flow"'];
      return flows > 0 && (!conntrack || size(ctFile) > 0) && (!floor || (await floorCounts(floor)).destroy > 0);
    }, 30000);
    await sleep(1500); // sonic-boom flushes at least every second: let the probes' lines out
    const base = {
      kernel: kernelNew(),
      flows: (await countIn(file, ['"event":"flow"']))['"event":"flow"'],
      conntrack: conntrack ? (await countIn(ctFile, ['\n']))['\n'] : 0,
      floor: floor ? await floorCounts(floor) : undefined,
      cpu: { watch: threads(watch.pid), conntrack: conntrack && threads(conntrack.pid), floor: floor && threads(floor.pid) },
      bytes: size(file),
      ctBytes: size(ctFile),
    };
    process.stderr.write(`hotpath ${name}: ${loadThreads} load thread(s), ${rate ? `${rate} conn/s for ${seconds} s` : `${connections} connections`}, watch --events ${events}...\n`);
    // --perf DIR: a whole-process profile of watch during the load (perf report -i DIR/STAGE.perf).
    const perf = values.perf ? start('perf', ['record', '-F', '499', '-g', '--per-thread', '-p', String(watch.pid), '-o', join(values.perf, `${name}.perf`)]) : undefined;
    // Spawned, not run synchronously: the collectors' stderr must keep being read meanwhile.
    const load = start('ip', ['netns', 'exec', ns, REFUSED, '127.0.0.1', String(loadThreads), String(connections), String(rate), String(seconds)]);
    // The steady window: from the third second of load to its end, past the first sight of the
    // load's 20 000 rotating destinations (the issue asks for steady-state CPU). Only counters and
    // file sizes are read in it, so the bench costs the shared cores nothing while it runs.
    const sample = async () => ({
      at: Date.now(), kernel: kernelNew(), bytes: size(file), ctBytes: size(ctFile), floor: floor ? await floorCounts(floor) : undefined,
      cpu: { watch: threads(watch.pid), conntrack: conntrack && threads(conntrack.pid), floor: floor && threads(floor.pid) },
    });
    const loadOver = load.exited.then(() => true);
    const steadyFrom = (await Promise.race([sleep(STEADY_AFTER_MS).then(() => false), loadOver])) ? undefined : await sample();
    await loadOver;
    const steadyTo = steadyFrom && (await sample());
    const m = /connections (\d+) seconds ([\d.]+)/.exec(load.out);
    if (!m) throw new Error(`the load failed: ${load.err}`);
    if (perf) {
      perf.kill('SIGINT');
      await perf.exited;
    }
    const made = Number(m[1]);
    const loadSeconds = Number(m[2]);
    inNs('conntrack', ['-F'], { stdio: 'ignore' }); // every remaining entry ends now: a DESTROY each
    const kernel = kernelNew() - base.kernel;
    const t0 = Date.now();
    // The drain ends when no output has grown for 2 s (sonic-boom writes at least once a second).
    let prev = '';
    for (let stable = 0; stable < 4; ) {
      await sleep(500);
      const now = `${size(file)} ${size(ctFile)} ${floor ? JSON.stringify(await floorCounts(floor)) : ''}`;
      stable = now === prev ? stable + 1 : 0;
      prev = now;
    }
    const drainSeconds = (Date.now() - t0) / 1000 - 2;
    const watchEnd = threads(watch.pid);
    const cpu = {
      watch: cpuDelta(base.cpu.watch, watchEnd),
      watchWait: waitDelta(base.cpu.watch, watchEnd),
      conntrack: conntrack && cpuDelta(base.cpu.conntrack, threads(conntrack.pid)),
      floor: floor && cpuDelta(base.cpu.floor, threads(floor.pid)),
    };
    const rss = { watch: hwmMiB(watch.pid), conntrack: conntrack && hwmMiB(conntrack.pid), floor: floor && hwmMiB(floor.pid) };
    const floorEnd = floor ? await floorCounts(floor) : undefined;
    for (const c of [watch, conntrack, floor, lat]) c?.kill('SIGTERM');
    await Promise.all([watch, conntrack, floor, lat].filter(Boolean).map((c) => c.exited));
    const stopped = logLine(watch, 'stopped') ?? {};
    const counts = await countIn(file, ['"event":"flow"', '"reason":"destroy"', '"reason":"resync"', '"event":"resync"']);
    const flows = counts['"event":"flow"'] - base.flows;
    const ct = conntrack ? await countIn(ctFile, ['\n', '[NEW]', '[DESTROY]']) : undefined;
    const latency = lat ? /lines (\d+) p50 (\d+) p99 (\d+) max (\d+) steady_lines (\d+) steady_p99 (\d+)/.exec(lat.out) : undefined;
    if (lat) writeFileSync(join(OUT, `hotpath-${name}-latency-seconds.txt`), lat.err);
    return {
      stage: name, events, loadThreads, made, loadSeconds, kernel, drainSeconds,
      watch: {
        flows, destroyFlows: counts['"reason":"destroy"'] - base.flows, resyncFlows: counts['"reason":"resync"'], resyncs: counts['"event":"resync"'],
        overflows: stopped.overflows ?? NaN, events: stopped.events, cpu: Object.fromEntries(cpu.watch), wait: Object.fromEntries(cpu.watchWait), rss: rss.watch,
        // src/recording/output.ts: a slow write moves the file to background writes (said once)
        movedToBackgroundMs: Number(/held the collector for (\d+) ms/.exec(watch.err)?.[1] ?? NaN),
      },
      conntrack: ct && {
        lines: ct['\n'] - base.conntrack, new: ct['[NEW]'], destroy: ct['[DESTROY]'],
        overflows: (conntrack.err.match(/ENOBUFS/g) ?? []).length, cpu: sum(cpu.conntrack), rss: rss.conntrack,
      },
      floor: floorEnd && {
        new: floorEnd.new - base.floor.new, destroy: floorEnd.destroy - base.floor.destroy, other: floorEnd.other - base.floor.other,
        overflows: floorEnd.overflows - base.floor.overflows, cpu: sum(cpu.floor), rss: rss.floor,
      },
      steady: steadyFrom && steadyWindow(steadyFrom, steadyTo, { file: size(file) - base.bytes, lines: flows, ct: size(ctFile) - base.ctBytes, ctLines: ct ? ct['\n'] - base.conntrack : 0 }),
      latency: latency && { lines: Number(latency[1]), p50: Number(latency[2]) / 1000, p99: Number(latency[3]) / 1000, max: Number(latency[4]) / 1000, steadyLines: Number(latency[5]), steadyP99: Number(latency[6]) / 1000 },
    };
  } finally {
    for (const c of [watch, conntrack, floor, lat]) if (c && c.exitCode === null) c.kill('SIGKILL');
    cleanup();
  }
}

/**
 * CPU and work between two samples taken during the load. Lines in the window are its output bytes
 * at the run's bytes per line (flow lines and `conntrack -E -o id` lines vary by a few digits), so
 * nothing reads the files while the load runs.
 */
function steadyWindow(from, to, totals) {
  const perLine = (bytes, lines) => (bytes > 0 ? lines / bytes : 0);
  // Lines written in the window include a backlog left from before it (the first seconds are the
  // slowest): counted per connection the kernel made in the window when that is fewer, so the
  // backlog's lines do not lower ctwatch's figure.
  const watchLines = Math.min((to.bytes - from.bytes) * perLine(totals.file, totals.lines), to.kernel - from.kernel);
  const ctLines = (to.ctBytes - from.ctBytes) * perLine(totals.ct, totals.ctLines);
  return {
    seconds: (to.at - from.at) / 1000,
    kernel: to.kernel - from.kernel,
    watchLines,
    // two lines (NEW and DESTROY) a connection
    ctSeen: ctLines / 2,
    floorSeen: from.floor && Math.min(to.floor.new - from.floor.new, to.floor.destroy - from.floor.destroy),
    cpu: Object.fromEntries(cpuDelta(from.cpu.watch, to.cpu.watch)),
    conntrackCpu: from.cpu.conntrack && sum(cpuDelta(from.cpu.conntrack, to.cpu.conntrack)),
    floorCpu: from.cpu.floor && sum(cpuDelta(from.cpu.floor, to.cpu.floor)),
  };
}

// --- report ------------------------------------------------------------------------------------

const per100k = (cpuS, conns) => (conns > 0 ? (cpuS / conns) * 1e5 : NaN);
const pct = (part, whole) => `${((100 * part) / Math.max(whole, 1)).toFixed(1)} %`;

function report(r) {
  const watchCpu = sum(new Map(Object.entries(r.watch.cpu)));
  console.log(`\n## ${r.stage}: watch --events ${r.events}, ${r.loadThreads} load thread(s)`);
  console.log(`load: ${r.made} refused connections in ${r.loadSeconds.toFixed(1)} s (${Math.round(r.made / r.loadSeconds)} conn/s); kernel counted ${r.kernel} new flows; drain ${r.drainSeconds.toFixed(1)} s`);
  const rows = [];
  if (r.floor) {
    const seen = Math.min(r.floor.new, r.floor.destroy);
    rows.push({ collector: 'floor (C, parses nothing)', 'flows seen': seen, lost: pct(r.kernel - seen, r.kernel), overflows: r.floor.overflows, 'CPU s': r.floor.cpu.toFixed(2), 'CPU s / 100k conn': per100k(r.floor.cpu, seen).toFixed(3), 'RSS MiB': r.floor.rss.toFixed(1) });
  }
  let ctPer = NaN;
  if (r.conntrack) {
    const seen = r.conntrack.lines / 2;
    ctPer = per100k(r.conntrack.cpu, seen);
    rows.push({ collector: 'conntrack -E', 'flows seen': `${r.conntrack.new}/${r.conntrack.destroy} new/destroy`, lost: `${pct(r.kernel * 2 - r.conntrack.lines, r.kernel * 2)} of events`, overflows: r.conntrack.overflows, 'CPU s': r.conntrack.cpu.toFixed(2), 'CPU s / 100k conn': `${ctPer.toFixed(3)} (per conn seen)`, 'RSS MiB': r.conntrack.rss.toFixed(1) });
  }
  // Per connection it wrote a line for, as conntrack -E's is per connection it saw: a collector
  // that loses events also skips their work.
  const ours = per100k(watchCpu, r.watch.flows);
  rows.push({ collector: `ctwatch watch --flows`, 'flows seen': `${r.watch.flows} lines (${r.watch.destroyFlows} destroy, ${r.watch.resyncFlows} resync)`, lost: pct(r.kernel - r.watch.flows, r.kernel), overflows: r.watch.overflows, 'CPU s': watchCpu.toFixed(2), 'CPU s / 100k conn': `${ours.toFixed(3)} (per line)`, 'RSS MiB': r.watch.rss.toFixed(1) });
  console.table(rows);
  console.log(`output file: ${Number.isNaN(r.watch.movedToBackgroundMs) ? 'written on the JS thread throughout' : `moved to background writes after writes that held the JS thread ${r.watch.movedToBackgroundMs} ms`}`);
  if (r.conntrack) console.log(`ratio: ctwatch / conntrack -E CPU per connection = ${(ours / ctPer).toFixed(2)}` + (r.floor ? `; ctwatch / floor = ${(ours / per100k(r.floor.cpu, Math.min(r.floor.new, r.floor.destroy))).toFixed(1)}` : ''));
  const st = r.steady;
  if (st) {
    const watchSteady = per100k(sum(new Map(Object.entries(st.cpu))), st.watchLines);
    const ctSteady = st.conntrackCpu !== undefined ? per100k(st.conntrackCpu, st.ctSeen) : NaN;
    console.log(`steady state (from ${STEADY_AFTER_MS / 1000} s into the load to its end: ${st.seconds.toFixed(1)} s, ${st.kernel} connections): ctwatch ${watchSteady.toFixed(3)} CPU s / 100 k lines (${Math.round(st.watchLines)} lines)` +
      (r.conntrack ? `, conntrack -E ${ctSteady.toFixed(3)} per 100 k conn seen (${Math.round(st.ctSeen)} seen); steady ratio = ${(watchSteady / ctSteady).toFixed(2)}` : '') +
      (st.floorCpu !== undefined ? `; floor ${per100k(st.floorCpu, st.floorSeen).toFixed(3)}` : ''));
  }
  const steadyUs = (thread) => (st && st.watchLines > 0 ? (((st.cpu[thread] ?? 0) / st.watchLines) * 1e6).toFixed(2) : 'n/a');
  console.log(`ctwatch CPU per thread (s, and µs per flow line written: the whole load, and the steady state), and the time it was runnable but waited for a CPU${values.nice !== undefined ? ` (watch at nice ${values.nice})` : ''}:`);
  console.table(Object.entries(r.watch.cpu).filter(([, s]) => s > 0).sort((a, b) => b[1] - a[1]).map(([thread, s]) => ({ thread, 'CPU s': s.toFixed(2), 'µs / flow': ((s / Math.max(r.watch.flows, 1)) * 1e6).toFixed(2), 'µs / flow, steady': steadyUs(thread), 'waited for a CPU s': (r.watch.wait[thread] ?? 0).toFixed(2) })));
  if (r.latency) console.log(`latency (reader receive stamp → flow line readable in the file) over ${r.latency.lines} lines at ${Math.round((2 * r.made) / r.loadSeconds)} events/s: p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, max ${r.latency.max.toFixed(1)} ms; from the third second of load on (${r.latency.steadyLines} lines) p99 ${r.latency.steadyLines > 0 ? `${r.latency.steadyP99.toFixed(2)} ms` : 'n/a (no second of load held 1000 lines)'}; peak RSS ${r.watch.rss.toFixed(1)} MiB`);
}

const results = [];
for (const s of STAGES) {
  const common = { connections: Number(values.connections), rate: 0, seconds: 600, peers: true };
  const spec = s === 'ceiling' ? { ...common, events: 'new,destroy', threads: Number(values.threads) }
    : s === 'updates' ? { ...common, events: 'new,update,destroy', threads: 1, connections: Math.round(Number(values.connections) / 2) }
      : s === 'latency' ? { events: 'new,destroy', threads: 2, connections: 0, rate: Number(values.rate), seconds: Number(values.seconds), peers: false }
        : undefined;
  const r = await stage(s, spec);
  results.push(r);
  report(r);
}
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
