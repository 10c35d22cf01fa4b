/**
 * `ctwatch demo`: the incident that started this project (shared/story.txt), reproduced in a
 * throwaway namespace and caught live. A "Redis" server and a well-behaved pooled client run
 * normally; then an "api-worker" with a leaky pool opens a new connection per request, TIME_WAIT
 * entries pile up and the conntrack table fills. ctwatch raises an alert that names the
 * destination and the sources before the table is full; the leak stops; the alert resolves.
 */
import { defaultConfig } from '../alerts/index.js';
import type { Alert } from '../alerts/types.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import { constants as osConstants } from 'node:os';
import { Lab } from '../lab/lab.js';
import { Watcher } from '../pipeline/watcher.js';
import { LiveSource } from '../source/live.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { parseCount } from './args.js';
import { logger, parse } from './common.js';
import { OwnerAttribution } from '../pipeline/attribution.js';
import { chooseAttribution, describeAttribution } from '../process/attribution.js';
import { renderTop, TopHistory } from './top-view.js';

export const DEMO_HELP = `Usage: ctwatch demo [options]

Reproduces the incident ctwatch was written for, in a throwaway network namespace, and shows
ctwatch catching it live. Needs root. Nothing outside the namespace is touched: all traffic is
on loopback addresses inside it, and the namespace (with its conntrack table) is deleted at the
end, also on Ctrl-C.

  1. normal traffic: a Redis server at 127.0.0.5:6379 and a client with a pool of 8 connections
  2. the leak: "api-worker" (127.0.1.7-16) opens a new connection per request; each ends in
     TIME_WAIT for two minutes and the table fills up
  3. ctwatch alerts, naming the destination and the top sources, before the table is full
  4. the leak is fixed (stopped); the alert resolves

Options:
  --stop-before-full    stop the leak at 85 % of the table instead of letting the kernel reach
                        "nf_conntrack: table full, dropping packet"
  --quick               a short run (about 30 s) at a modest rate, stopping before full
  --leak-rate N         connections per second for the leak (default: as fast as it goes)
  --json                print the summary as one JSON object
  -h, --help            this help
`;

interface Summary {
  leakStartedAt: number;
  leakStoppedAt?: number;
  firstAlert?: Alert;
  firstAlertAfterLeak?: number;
  fillAtFirstAlert?: number | null;
  peakRate: number;
  peakRateKey?: string;
  peakFill: number | null;
  peakEntries: number | null;
  max: number | null;
  kernelDrops: number;
  resolved?: Alert;
  resolvedAfterStop?: number;
  alerts: { event: string; rule: string; message: string; at: number }[];
}

export async function demo(argv: string[]): Promise<number> {
  const { values } = parse('demo', argv, {
    'stop-before-full': { type: 'boolean' },
    quick: { type: 'boolean' },
    'leak-rate': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  const log = logger(values);
  if (process.getuid?.() !== 0) throw new CtwatchError('ERR_NOT_ROOT', 'the demo creates a network namespace and reads conntrack events: run it as root (sudo)', { exitCode: EXIT.noPerm });
  const quick = values.quick ?? false;
  const stopBeforeFull = values['stop-before-full'] || quick;
  const leakRate = values['leak-rate'] !== undefined ? parseCount(values['leak-rate'], '--leak-rate') : quick ? 2000 : 0;
  if (leakRate > 1_000_000) throw new CtwatchError('ERR_USAGE', `--leak-rate ${leakRate} is out of range: use 1 to 1000000 connections per second (or leave it out: as fast as it goes)`, { exitCode: EXIT.usage });
  const normalMs = quick ? 2000 : 5000;
  const leakMaxS = quick ? 8 : 90;
  const resolveWaitMs = quick ? 25_000 : 30_000;
  const tty = process.stdout.isTTY && !values.json;

  Lab.sweepStale();
  const lab = new Lab();
  // Every way out removes the namespace (and the full table in it): Ctrl-C, kill, the terminal
  // closing (SIGHUP, then EIO on every write), an exception, process.exit. Only kill -9 cannot;
  // the next demo sweeps what that left.
  const cleanup = () => lab.destroy();
  const onSignal = (signal: NodeJS.Signals) => {
    cleanup();
    try {
      process.stderr.write(`\nctwatch demo: ${signal === 'SIGHUP' ? 'the terminal went away' : 'interrupted'}; the namespace was removed\n`);
    } catch {
      /* no terminal to say it on */
    }
    process.exit(128 + (osConstants.signals[signal] ?? 1));
  };
  const onOutputError = () => onSignal('SIGHUP');
  const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.stdout.on('error', onOutputError);
  process.stderr.on('error', onOutputError);
  process.once('exit', cleanup);

  const started = Date.now();
  const t = () => (Date.now() - started) / 1000;
  let phase = 'starting';
  const banner: string[] = [];
  const note = (line: string) => {
    banner.push(`t+${t().toFixed(1)}s  ${line}`);
    if (!tty && !values.json) process.stdout.write(`t+${t().toFixed(1)}s  ${line}\n`);
  };

  try {
    lab.create();
    if (lab.fallback) {
      const line = `the fast load generator is not available (${lab.fallback}): the leak runs in Node instead, slower; for the full rate install one (apt-get install gcc)`;
      process.stderr.write(`ctwatch demo: ${line}\n`);
      note('load generator: Node (no C compiler)');
    }
    const server = lab.server('127.0.0.5', 6379);
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once('data', () => resolve());
      server.once('exit', (code) => reject(new CtwatchError('ERR_LAB', `the demo Redis server exited (${code})`)));
    });
    // Which process fills the table: eBPF stamps when they load here, else sockdiag.
    const attribution = chooseAttribution('auto');
    note(describeAttribution(attribution));
    let source: LiveSource;
    try {
      source = new LiveSource({ netns: lab.name, events: ['new', 'update', 'destroy'], snapshot: true, attribution: attribution.handle });
    } finally {
      attribution.handle?.close();
    }
    const summary: Summary = { leakStartedAt: NaN, peakRate: 0, peakFill: null, peakEntries: null, max: null, kernelDrops: 0, alerts: [] };
    let dropsAtStart: number | undefined;
    let leaking = false;
    let last: ChurnSnapshot | undefined;
    const history = new TopHistory();
    const watcher = new Watcher(source, defaultConfig(), {
      alerts: (alerts) => {
        for (const a of alerts) {
          summary.alerts.push({ event: a.event, rule: a.rule, message: a.message, at: t() });
          note(`${a.event === 'alert' ? `ALERT ${a.severity.toUpperCase()}` : 'RESOLVED'} ${a.message}`);
          if (a.event === 'alert' && !summary.firstAlert && leaking) {
            summary.firstAlert = a;
            summary.firstAlertAfterLeak = t() - summary.leakStartedAt;
            summary.fillAtFirstAlert = last?.table.fill ?? null;
          }
          if (a.event === 'resolved' && summary.firstAlert && a.rule === summary.firstAlert.rule && a.subject === summary.firstAlert.subject && summary.leakStoppedAt !== undefined) {
            summary.resolved = a;
            summary.resolvedAfterStop = t() - summary.leakStoppedAt;
          }
        }
      },
      snapshot: (snap, active) => {
        last = snap;
        history.push(snap);
        const top = snap.destinations[0];
        if (top && top.new1 > summary.peakRate) {
          summary.peakRate = top.new1;
          summary.peakRateKey = top.key;
        }
        if (snap.table.fill !== null && (summary.peakFill === null || snap.table.fill > summary.peakFill)) {
          summary.peakFill = snap.table.fill;
          summary.peakEntries = snap.table.entries;
          summary.max = snap.table.max;
        }
        const drops = (snap.table.kernel.drop ?? 0) + (snap.table.kernel.early_drop ?? 0);
        dropsAtStart ??= drops;
        summary.kernelDrops = drops - dropsAtStart;
        if (tty) {
          const head = [`ctwatch demo — ${phase}`, ...banner.slice(-6), ''];
          process.stdout.write(`\x1b[H\x1b[2J${head.join('\n')}\n${renderTop(snap, { alerts: active, source: source.counters, history, width: process.stdout.columns ?? 120, rows: (process.stdout.rows ?? 40) - head.length })}\n`);
        } else if (!values.json && Math.round(snap.time / 1e6) % 2 === 0) {
          const fill = snap.table.fill === null ? '-' : `${(snap.table.fill * 100).toFixed(0)} %`;
          process.stdout.write(`t+${t().toFixed(0)}s  ${phase}: ${Math.round(snap.overall.new1)} new/s, table ${fill}, ${snap.states.TIME_WAIT ?? 0} in TIME_WAIT, ${active.length} alert(s)\n`);
        }
      },
    }, log.child({ demo: true }), { attribution: attribution.mode === 'off' ? undefined : new OwnerAttribution({ mode: attribution.mode }) });
    // The log would scribble over the screen; the demo shows alerts itself.
    log.level = 'error';
    const run = watcher.run();

    phase = 'normal traffic: pooled client, 8 connections, 200 requests/s';
    note(phase);
    lab.pooledClient('127.0.0.5', 6379, 200);
    await sleep(normalMs);

    phase = 'LEAK: api-worker opens a new connection per request';
    note(`${phase} (127.0.1.7-16 -> 127.0.0.5:6379${leakRate ? ` at ${leakRate}/s` : ', as fast as it goes'})`);
    summary.leakStartedAt = t();
    leaking = true;
    // Ten worker addresses: connect() takes only even ports while TIME_WAIT sockets can be reused
    // (loopback), about 32 000 per source address, and the table holds 262 144.
    const sources = Array.from({ length: 10 }, (_, i) => `127.0.1.${7 + i}`);
    const leak = lab.leakyClient('127.0.0.5', 6379, sources, leakRate, leakMaxS);
    const leakEnded = new Promise((r) => leak.once('exit', r));
    // Until the table is full (the kernel drops) and a little after, or 85 % with --stop-before-full.
    let fullSeenAt: number | undefined;
    for (;;) {
      const done = await Promise.race([leakEnded.then(() => true), sleep(250).then(() => false)]);
      if (done) break;
      const fill = last?.table.fill ?? 0;
      if (stopBeforeFull && fill >= 0.85) break;
      if (!stopBeforeFull && summary.kernelDrops > 0) {
        if (fullSeenAt === undefined) {
          fullSeenAt = t();
          note('the table is FULL: the kernel is dropping packets ("nf_conntrack: table full, dropping packet")');
        } else if (t() - fullSeenAt > 3) break;
      }
    }
    leak.kill('SIGKILL');
    leaking = false;
    summary.leakStoppedAt = t();
    phase = 'leak fixed: back to the pooled client only';
    note(phase);
    const deadline = Date.now() + resolveWaitMs;
    while (!summary.resolved && Date.now() < deadline) await sleep(250);
    phase = 'done';
    await source.close();
    await run;
    await watcher.close(2000);
    lab.destroy();

    printSummary(summary, values.json ?? false);
    if (!summary.firstAlert) return EXIT.failure;
    return 0;
  } finally {
    cleanup();
    for (const s of SIGNALS) process.off(s, onSignal);
    process.stdout.off('error', onOutputError);
    process.stderr.off('error', onOutputError);
    process.off('exit', cleanup);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function printSummary(s: Summary, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({
      leakStartedAt: s.leakStartedAt,
      leakStoppedAt: s.leakStoppedAt,
      alertAfterLeakSeconds: s.firstAlertAfterLeak ?? null,
      fillAtAlert: s.fillAtFirstAlert ?? null,
      alert: s.firstAlert ? { rule: s.firstAlert.rule, subject: s.firstAlert.subject, message: s.firstAlert.message, top: s.firstAlert.top } : null,
      peakRate: Math.round(s.peakRate),
      peakRateKey: s.peakRateKey ?? null,
      peakFill: s.peakFill,
      peakEntries: s.peakEntries,
      max: s.max,
      kernelDrops: s.kernelDrops,
      resolved: s.resolved ? { message: s.resolved.message, afterStopSeconds: s.resolvedAfterStop } : null,
      alerts: s.alerts,
    })}\n`);
    return;
  }
  const pct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(0)} %`);
  const lines = [
    '',
    'ctwatch demo — summary',
    `  leak started        t+${s.leakStartedAt.toFixed(1)} s`,
    s.firstAlert
      ? `  first alert         ${s.firstAlertAfterLeak!.toFixed(1)} s after the leak began, with the table ${pct(s.fillAtFirstAlert)} full:\n                      ${s.firstAlert.message}`
      : "  first alert         none: 'sudo ctwatch doctor' checks what stops events (sysctls, netlink, capabilities); if it finds nothing, please report it",
    `  peak churn          ${Math.round(s.peakRate)} new/s to ${s.peakRateKey ?? '-'}`,
    `  peak table fill     ${pct(s.peakFill)} (${s.peakEntries ?? '-'} of ${s.max ?? '-'} entries)${s.kernelDrops > 0 ? `; the kernel dropped ${s.kernelDrops} packets: table full` : ''}`,
    `  leak stopped        t+${s.leakStoppedAt?.toFixed(1) ?? '-'} s`,
    s.resolved ? `  resolved            ${s.resolvedAfterStop!.toFixed(1)} s after the fix: ${s.resolved.message}` : '  resolved            not yet when the demo ended (TIME_WAIT entries take two minutes to expire)',
    '',
    'Try it on a real host: sudo ctwatch doctor, then sudo ctwatch top   |   as a daemon: ctwatch watch --help',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

