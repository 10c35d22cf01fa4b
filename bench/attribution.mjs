#!/usr/bin/env node
// Attribution benchmark: share of NEW flows attributed to the right process, share of the top-10
// churn sources identified, and the CPU attribution costs, at about 1 k, 10 k and 50 k new
// connections/s (as far as the machine goes), for sockets closed at once and sockets held 5 ms.
//   node bench/attribution.mjs [--seconds 5] [--rates 1000,10000,50000] [--holds 0,5000] [--procs 12] [--flush 5] [--modes sockdiag,ebpf]
// Needs root, a built ctwatch (npm run build) and gcc. Writes nothing but bench/out/attrload*.
//
// Load: bench/out/attrload (C, written and compiled from the source below) forks one server
// ("churn-server", epoll, closes on the client's RST) and PROCS single-threaded client processes
// named churn-00.. (prctl), client i connecting from its own address 127.0.1.(i+1) at a Zipf share
// (1/(i+1)) of the total rate, holding each connection HOLD µs, then closing it with RST (no
// TIME_WAIT, ports come back at once). The source address is the ground truth: it names the
// process that made the flow. The load runs at nice 10: on two cores the load and the collector
// share the CPU, and this measures what attribution does when it gets CPU, not the scheduler.
//
// --modes: sockdiag (the fallback: sock_diag and /proc, joined on the reader thread) and/or ebpf
// (the addon's stamps joined on the reader thread), side by side on the same load.
// Each stage runs twice on the same load: LiveSource + attribution, and LiveSource alone; the CPU
// difference (utime + stime of this process, every thread) is what attribution costs. --flush is
// the source's flushMs: how long the reader lets a partial batch wait (the CLI's default is 5 ms).
import { benchNamespace, sh } from './lab.mjs';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LiveSource } from '../dist/source/live.js';
import { openEbpf, openSockdiag } from '../dist/process/attribution.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench', 'out');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rates: { type: 'string', default: '1000,10000,50000' },
    holds: { type: 'string', default: '0,5000' },
    procs: { type: 'string', default: '12' },
    flush: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    modes: { type: 'string', default: 'sockdiag' },
  },
});
const seconds = Number(values.seconds);
const rates = values.rates.split(',').map(Number);
const holds = values.holds.split(',').map(Number);
const procs = Number(values.procs);
const flushMs = Number(values.flush);
mkdirSync(OUT, { recursive: true });

const LOADER = String.raw`
// attrload SECONDS TOTAL_RATE PROCS HOLD_US — see bench/attribution.mjs
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in target, source;
static double start_s, end_s, rate;
static long hold_us;
static atomic_long made, failed;

static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void sleep_until(double s) {
  struct timespec t = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
}

static void serve(void) {
  prctl(PR_SET_NAME, "churn-server");
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(ls, (struct sockaddr *)&target, sizeof(target)) < 0 || listen(ls, 65535) < 0) { perror("listen"); exit(1); }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  printf("server %d\n", getpid()); fflush(stdout);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == ls) {
        for (;;) {
          int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (s < 0) break;
          struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = s};
          epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
        }
      } else close(evs[i].data.fd);  // the client reset or closed: done
    }
  }
}

// One thread per client process: connections are started on schedule (nonblocking connect; on
// loopback the handshake completes inside the call) and reset HOLD µs later, oldest first.
static void client_loop(void) {
  struct linger lg = {1, 0};
  long cap = (long)(rate * (hold_us / 1e6 + 0.01)) + 1024;
  int *fds = calloc(cap, sizeof(int));
  double *close_at = calloc(cap, sizeof(double));
  long head = 0, tail = 0;  // ring of open connections
  for (long k = 0;;) {
    double now = now_s();
    while (head != tail && close_at[head % cap] <= now) close(fds[head++ % cap]);
    double due = start_s + k / rate;
    if (due >= end_s) {
      if (head == tail) break;
      sleep_until(close_at[head % cap]);
      continue;
    }
    if (due > now) {
      double next = head != tail && close_at[head % cap] < due ? close_at[head % cap] : due;
      sleep_until(next);
      continue;
    }
    k++;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0) { failed++; continue; }
    setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (bind(s, (struct sockaddr *)&source, sizeof(source)) < 0 ||
        (connect(s, (struct sockaddr *)&target, sizeof(target)) < 0 && errno != EINPROGRESS) || tail - head >= cap) {
      failed++;
      close(s);
      continue;
    }
    made++;
    fds[tail % cap] = s;
    close_at[tail % cap] = now + hold_us / 1e6;
    tail++;
  }
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: attrload SECONDS TOTAL_RATE PROCS HOLD_US\n"); return 64; }
  double seconds = atof(argv[1]), total = atof(argv[2]);
  int procs = atoi(argv[3]);
  hold_us = atol(argv[4]);
  target.sin_family = AF_INET;
  target.sin_port = htons(7000);
  inet_pton(AF_INET, "127.0.0.2", &target.sin_addr);
  setvbuf(stdout, NULL, _IOLBF, 0);
  pid_t server = fork();
  if (server == 0) serve();
  usleep(200000);
  double wsum = 0;
  for (int i = 0; i < procs; i++) wsum += 1.0 / (i + 1);
  start_s = now_s() + 0.3;
  end_s = start_s + seconds;
  pid_t *kids = calloc(procs, sizeof(pid_t));
  int pipes[64][2];
  for (int i = 0; i < procs; i++) {
    pipe(pipes[i]);
    kids[i] = fork();
    if (kids[i] == 0) {
      char name[16];
      snprintf(name, sizeof(name), "churn-%02d", i);
      prctl(PR_SET_NAME, name);
      source.sin_family = AF_INET;
      char addr[32];
      snprintf(addr, sizeof(addr), "127.0.1.%d", i + 1);
      inet_pton(AF_INET, addr, &source.sin_addr);
      rate = total * (1.0 / (i + 1)) / wsum;
      printf("client %d %d %s %.0f\n", i, getpid(), addr, rate);
      client_loop();
      dprintf(pipes[i][1], "%ld %ld\n", (long)made, (long)failed);
      _exit(0);
    }
  }
  for (int i = 0; i < procs; i++) {
    waitpid(kids[i], NULL, 0);
    char buf[64] = {0};
    read(pipes[i][0], buf, sizeof(buf) - 1);
    printf("made %d %s", i, buf);
  }
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);
  printf("elapsed %.3f\n", now_s() - start_s);
  return 0;
}
`;

const loaderSrc = join(OUT, 'attrload.c');
const loader = join(OUT, 'attrload');
writeFileSync(loaderSrc, LOADER);
sh('gcc', ['-O2', '-o', loader, loaderSrc, '-lm']);

const { name: ns, inNs, kernelNew } = benchNamespace('ctwatch-attr');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const procCpu = (pid) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
};

async function stage(rate, hold, attribute) {
  const truth = new Map(); // source address -> { pid, name }
  const perSource = new Map(); // source address -> { news, right, wrong }
  const ebpf = attribute === 'ebpf' ? openEbpf() : null;
  if (ebpf && !ebpf.handle) throw new Error(`eBPF refused: ${ebpf.refused.message}`);
  const handle = attribute === 'sockdiag' ? openSockdiag() : ebpf?.handle;
  const src = new LiveSource({ netns: ns, flushMs, attribution: handle });
  handle?.close();
  const owners = []; // [source address, owner pid] of each NEW to the load's port
  let probeSeen = false;
  let news = 0;
  const loop = (async () => {
    for await (const batch of src) {
      for (const e of batch) {
        if (e.event !== 'new') continue;
        if (e.dst === '127.0.0.254') probeSeen = true;
        if (e.dport !== 7000) continue;
        news++;
        let s = perSource.get(e.src);
        if (!s) perSource.set(e.src, (s = { news: 0, right: 0, wrong: 0 }));
        s.news++;
        if (e.owner) owners.push([e.src, e.owner.pid]);
      }
    }
  })();
  for (let i = 0; !probeSeen; i++) {
    try { inNs('ping', ['-c', '1', '-W', '0.2', '127.0.0.254'], { stdio: 'ignore' }); } catch { /* no reply needed */ }
    await sleep(50);
    if (i > 100) throw new Error('the source did not start');
  }
  const k0 = kernelNew();
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  const child = spawn('ip', ['netns', 'exec', ns, 'nice', '-n', '10', loader, String(seconds), String(rate), String(procs), String(hold)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let peakLoad = 0;
  child.stdout.on('data', (d) => {
    out += d;
    for (const m of out.matchAll(/^client (\d+) (\d+) (\S+) /gm)) truth.set(m[3], { pid: Number(m[2]), name: `churn-${m[1].padStart(2, '0')}` });
  });
  const loadPids = () => [...out.matchAll(/^(?:client \d+|server) (\d+)/gm)].map((m) => Number(m[1]));
  let loadCpu = 0;
  const sampler = setInterval(() => {
    const c = loadPids().reduce((a, pid) => a + (procCpu(pid) || 0), 0);
    if (c > peakLoad) peakLoad = c;
  }, 250);
  await new Promise((r) => child.on('exit', r));
  clearInterval(sampler);
  loadCpu = peakLoad;
  const loadSeconds = (performance.now() - t0) / 1000;
  const kernel = kernelNew() - k0;
  // Wait for every NEW to arrive and every lookup to finish.
  for (let prev = -1, stable = 0; stable < 3; ) {
    await sleep(200);
    stable = news === prev ? stable + 1 : 0;
    prev = news;
  }
  const cpu = cpuSeconds() - cpu0;
  const wall = (performance.now() - t0) / 1000;
  const joined = src.attribution;
  const stats = joined ? { reasons: joined.reasons, busyUs: joined.busyUs, lookups: joined.lookups, waited: joined.waited } : undefined;
  // owners were joined at NEW time; the loader's pids (the truth) are all known by now
  for (const [addr, pid] of owners) {
    const s = perSource.get(addr);
    if (truth.get(addr)?.pid === pid) s.right++;
    else s.wrong++;
  }
  await src.close();
  await loop;
  inNs('conntrack', ['-F'], { stdio: 'ignore' });
  await sleep(300);

  const sources = [...perSource.entries()].sort((a, b) => b[1].news - a[1].news);
  const top = sources.slice(0, 10);
  const topNews = top.reduce((a, [, s]) => a + s.news, 0);
  const topRight = top.reduce((a, [, s]) => a + s.right, 0);
  const wrong = sources.reduce((a, [, s]) => a + s.wrong, 0);
  const right = sources.reduce((a, [, s]) => a + s.right, 0);
  // The per-process ranking built from attributed flows only, as the engine would build it.
  const attributedRank = [...perSource.entries()].filter(([, s]) => s.right > 0).sort((a, b) => b[1].right - a[1].right).slice(0, 10).map(([a]) => a);
  const topSet = new Set(top.map(([a]) => a));
  const identified = attributedRank.filter((a) => topSet.has(a)).length;
  const topAttributed = top.filter(([, s]) => s.right > 0).length;
  return {
    rate,
    hold,
    attribute,
    achieved: Math.round(kernel / (Number(/elapsed ([\d.]+)/.exec(out)?.[1]) || seconds)),
    news,
    kernel,
    lostEvents: kernel - news,
    cpuCores: cpu / wall,
    cpuUsPerNew: (cpu / Math.max(1, news)) * 1e6,
    loadCpuSeconds: loadCpu,
    loadSeconds,
    attributedShare: attribute ? right / Math.max(1, news) : null,
    topShare: attribute ? topRight / Math.max(1, topNews) : null,
    topAttributed: attribute ? topAttributed : null,
    topIdentified: attribute ? identified : null,
    wrong: attribute ? wrong : null,
    reasons: stats?.reasons,
    lookups: stats?.lookups,
    waited: stats?.waited,
    joinBusyMs: stats ? stats.busyUs / 1000 : null,
    loaderSummary: out.split('\n').filter((l) => l.startsWith('made') || l.startsWith('elapsed')).join('; '),
  };
}

const results = [];
for (const hold of holds) {
  for (const rate of rates) {
    for (const mode of values.modes.split(',')) {
      process.stderr.write(`bench: ${rate}/s, hold ${hold} µs, ${seconds}s: with ${mode} attribution...\n`);
      const withA = await stage(rate, hold, mode);
      process.stderr.write(`bench: ${rate}/s, hold ${hold} µs, ${seconds}s: source alone...\n`);
      const without = await stage(rate, hold, false);
      results.push({ mode, with: withA, without });
    }
  }
}

const pct = (x) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(1)} %`);
const lines = [];
lines.push(`| mode | asked conn/s | hold | reached conn/s | NEW lost (with / without) | attributed | top-10 sources: flows attributed | top-10 identified | wrong | gone + no-socket | no-pid | CPU with / without (cores) | attribution µs per NEW |`);
lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const { mode, with: w, without: o } of results) {
  const gone = ((w.reasons.gone ?? 0) + (w.reasons['no-socket'] ?? 0)) / Math.max(1, w.news);
  const nopid = (w.reasons['no-pid'] ?? 0) / Math.max(1, w.news);
  lines.push(
    `| ${mode} | ${w.rate} | ${w.hold / 1000} ms | ${w.achieved} | ${pct(w.lostEvents / w.kernel)} / ${pct(o.lostEvents / o.kernel)} | ${pct(w.attributedShare)} | ${pct(w.topShare)} | ${w.topIdentified}/10 (${w.topAttributed}/10 with ≥ 1) | ${w.wrong} | ${pct(gone)} | ${pct(nopid)} | ${w.cpuCores.toFixed(2)} / ${o.cpuCores.toFixed(2)} | ${(w.cpuUsPerNew - o.cpuUsPerNew).toFixed(1)} |`,
  );
}
console.log(lines.join('\n'));
for (const { mode, with: w } of results) {
  const extra = mode === 'sockdiag' ? `; ${w.lookups} socket lookups, ${w.waited} NEW waited for their owner` : '';
  console.log(`\n${w.rate}/s hold ${w.hold} µs ${mode}: NEW ${w.news}/${w.kernel}; unattributed by reason ${JSON.stringify(Object.fromEntries(Object.entries(w.reasons).filter(([, n]) => n > 0)))}; join on the reader thread ${w.joinBusyMs.toFixed(0)} ms${extra}; loader: ${w.loaderSummary}`);
}
if (values.json) console.log(JSON.stringify(results, null, 1));
