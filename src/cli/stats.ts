/**
 * `ctwatch stats`: one snapshot and exit, for scripts and monitoring. As a check it follows the
 * monitoring plugin guidelines (Nagios, Icinga, Naemon, Sensu): exit 0/1/2/3, one status line,
 * `-w`/`-c` ranges, `-t` timeout, performance data with units. `--textfile` writes the kernel's
 * figures under node_exporter's `node_nf_conntrack_*` names, read over netlink, for hosts where
 * procfs has no conntrack files (or for a namespace node_exporter cannot see).
 */
import { closeSync, constants, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { TableReading } from '../churn/engine.js';
import { kernelTotals, statsDelta, sumPerCpu } from '../churn/pressure.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import { assembleLive } from '../pipeline/assemble.js';
import { toLine } from '../recording/schema.js';
import { LiveSource } from '../source/live.js';
import type { KernelStats } from '../source/native.js';
import { CtwatchError, EXIT, fromNativeError } from '../util/errors.js';
import { parseDuration } from './args.js';
import { setLongTimeout, type LongTimer } from '../util/timers.js';
import { logger, parse } from './common.js';
import { openEngineSource } from './engine-options.js';
import { COMMON_DEFS, optionHelp, parserOptions, type CommandDef, type OptionDef } from './options.js';
import { timeToFullText } from './top-view.js';

/** The plugin guidelines' fourth state: the check itself could not run. */
export const UNKNOWN = 3;

export const STATS_OPTIONS: readonly OptionDef[] = [
  { name: 'netns', type: 'string', arg: 'NAME|PATH', help: "namespace to watch: a name from 'ip netns list' or a path such as\n/proc/PID/ns/net (default: ctwatch's own)", complete: 'netns' },
  { name: 'warning', short: 'w', type: 'string', arg: 'RANGE', help: 'table fill in % that makes the status WARNING (default 70: above 70 %);\nplugin range syntax: 70, 60:90, ~:80, @10:20' },
  { name: 'critical', short: 'c', type: 'string', arg: 'RANGE', help: 'table fill in % that makes the status CRITICAL (default 90)' },
  { name: 'timeout', short: 't', type: 'string', arg: 'TIME', help: 'give up after TIME with UNKNOWN (default 10s; seconds or 10s, 1m)' },
  { name: 'interval', type: 'string', arg: 'TIME', help: 'how long to measure churn rates (default 2s)' },
  { name: 'events', type: 'string', arg: 'LIST', help: 'kernel events while measuring (default new,update,destroy)' },
  { name: 'rcvbuf', type: 'string', arg: 'SIZE', help: 'kernel receive buffer (default 32M)' },
  { name: 'filter', type: 'string', multiple: true, arg: 'EXPR', help: "only these flows (see 'ctwatch record --help'); the table figures stay whole" },
  { name: 'reliable', type: 'boolean', help: 'ask the kernel not to drop DESTROY events (see README before using)' },
  { name: 'json', type: 'boolean', help: 'print the snapshot as one JSON line (schema/v1/churn.json) instead' },
  { name: 'textfile', type: 'string', arg: 'FILE|-', help: "write the kernel's figures in node_exporter's textfile format (node_nf_conntrack_*)\nto FILE, replaced atomically; no churn measurement", complete: 'file' },
  { name: 'version', short: 'V', type: 'boolean', help: 'print the version and exit' },
  ...COMMON_DEFS,
];

export const STATS_COMMAND: CommandDef = { name: 'stats', summary: 'one snapshot and exit: a monitoring check (exit 0/1/2/3), JSON, or a node_exporter textfile', options: STATS_OPTIONS };

export const STATS_HELP = `Usage: ctwatch stats [options]

Read the table once (a dump, plus the kernel's counters), watch churn for --interval, print one
status line and exit. As a Nagios/Icinga check it follows the monitoring plugin guidelines.

Options:
${optionHelp(STATS_OPTIONS)}

Exit status: 0 OK, 1 WARNING (fill in the -w range), 2 CRITICAL (fill in the -c range, or the
kernel dropped packets for a full table while measuring), 3 UNKNOWN (any error: the line says
why). Performance data: fill (%), entries, time_to_full (s), drop, early_drop, insert_failed
(counters since boot), new_per_s.
Examples:
  ctwatch stats --netns prod -w 60 -c 85
  CONNTRACK WARNING - table 64 % (167 772 / 262 144), full in ~9 min; top churn 127.0.0.5:6379/tcp 2 340 new/s | fill=64%;60;85;0;100 entries=167772;157286;222822;0;262144 time_to_full=540s;;;0 drop=0c;;;0 early_drop=0c;;;0 insert_failed=0c;;;0 new_per_s=2410;;;0
  ctwatch stats --textfile /var/lib/prometheus/node-exporter/conntrack.prom   (from cron or a timer)
`;

// ---- threshold ranges (monitoring plugin guidelines) -----------------------------------------

/** `[@]start:end`: an alert when the value is outside start..end, or inside with `@`. */
export interface Range {
  start: number;
  end: number;
  inside: boolean;
  text: string;
}

export function parseRange(text: string, flag: string): Range {
  const bad = () =>
    new CtwatchError('ERR_USAGE', `${flag} ${JSON.stringify(text)} is not a threshold range: write e.g. 70 (above 70), 60:90 (outside 60..90), ~:80, 10: or @10:20 (inside)`, { exitCode: EXIT.usage });
  const m = /^(@)?(?:(~|-?\d+(?:\.\d+)?)?:)?(-?\d+(?:\.\d+)?)?$/.exec(text.trim());
  if (!m || (m[2] === undefined && m[3] === undefined)) throw bad();
  const inside = m[1] === '@';
  const hasColon = text.includes(':');
  const start = m[2] === '~' ? -Infinity : m[2] !== undefined ? Number(m[2]) : 0;
  const end = m[3] !== undefined ? Number(m[3]) : hasColon ? Infinity : NaN;
  if (Number.isNaN(end) || start > end) throw bad();
  return { start, end, inside, text: text.trim() };
}

export function inAlert(r: Range, value: number): boolean {
  const outside = value < r.start || value > r.end;
  return r.inside ? !outside : outside;
}

/** A range scaled to another unit, for the perfdata of a related figure (fill % → entries). */
export function scaleRange(r: Range, factor: number): string {
  const f = (x: number) => (Number.isFinite(x) ? String(Math.floor(x * factor)) : '');
  const end = f(r.end);
  if (r.start === 0 && !r.inside) return end;
  return `${r.inside ? '@' : ''}${r.start === -Infinity ? '~' : f(r.start)}:${end}`;
}

// ---- the status line -----------------------------------------------------------------------

const num = (x: number) => x.toLocaleString('en-US').replace(/,/g, ' ');

export function checkResult(s: ChurnSnapshot, warn: Range, crit: Range, dropsWhileMeasuring: number): { code: number; line: string } {
  const t = s.table;
  const fillPct = (t.fill ?? 0) * 100;
  const code = inAlert(crit, fillPct) || dropsWhileMeasuring > 0 ? 2 : inAlert(warn, fillPct) ? 1 : 0;
  const word = ['OK', 'WARNING', 'CRITICAL'][code];
  const topDest = s.destinations[0];
  const who = topDest ? `; top churn ${topDest.key} ${num(Math.round(topDest.new10))} new/s` : '';
  const drops = dropsWhileMeasuring > 0 ? `, kernel dropped ${num(dropsWhileMeasuring)} packets (table full)` : '';
  const max = t.max ?? 0;
  const k = t.kernel;
  const counter = (name: string) => `${name}=${k[name] !== undefined ? `${k[name]}c` : 'U'};;;0`;
  const perf = [
    `fill=${Math.round(fillPct * 10) / 10}%;${warn.text};${crit.text};0;100`,
    `entries=${t.entries ?? 'U'};${scaleRange(warn, max / 100)};${scaleRange(crit, max / 100)};0;${max || ''}`,
    `time_to_full=${t.timeToFull === null ? 'U' : `${Math.round(t.timeToFull)}s`};;;0`,
    counter('drop'),
    counter('early_drop'),
    counter('insert_failed'),
    `new_per_s=${Math.round(s.overall.new10)};;;0`,
  ].join(' ');
  return {
    code,
    line: `CONNTRACK ${word} - table ${Math.round(fillPct)} % (${t.entries === null ? '?' : num(t.entries)} / ${t.max === null ? '?' : num(t.max)}), ${timeToFullText(t.timeToFull)}${drops}${who} | ${perf}`,
  };
}

// ---- the node_exporter textfile ------------------------------------------------------------

/** node_exporter's conntrack collector, name for name (collector/conntrack_linux.go): the same
 * dashboards and alerts work on hosts whose procfs has no conntrack files. */
const NODE_METRICS: [name: string, help: string, stat?: string][] = [
  ['node_nf_conntrack_entries', 'Number of currently allocated flow entries for connection tracking.'],
  ['node_nf_conntrack_entries_limit', 'Maximum size of connection tracking table.'],
  ['node_nf_conntrack_stat_found', 'Number of searched entries which were successful.', 'found'],
  ['node_nf_conntrack_stat_invalid', 'Number of packets seen which can not be tracked.', 'invalid'],
  ['node_nf_conntrack_stat_ignore', 'Number of packets seen which are already connected to a conntrack entry.', 'ignore'],
  ['node_nf_conntrack_stat_insert', 'Number of entries inserted into the list.', 'insert'],
  ['node_nf_conntrack_stat_insert_failed', 'Number of entries for which list insertion was attempted but failed.', 'insert_failed'],
  ['node_nf_conntrack_stat_drop', 'Number of packets dropped due to conntrack failure.', 'drop'],
  ['node_nf_conntrack_stat_early_drop', 'Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.', 'early_drop'],
  ['node_nf_conntrack_stat_search_restart', 'Number of conntrack table lookups which had to be restarted due to hashtable resizes.', 'search_restart'],
];

export function nodeTextfile(s: KernelStats, netns?: string): string {
  // In another namespace every series says which, so several files can sit side by side.
  const labels = netns === undefined ? '' : `{netns="${netns.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"}`;
  const out: string[] = [];
  const totals = sumPerCpu(s.cpus);
  for (const [name, help, stat] of NODE_METRICS) {
    const value = stat === undefined ? (name.endsWith('_limit') ? s.max : s.entries) : (totals[stat] ?? null);
    if (value === null) continue; // unknown is absent, never 0
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name}${labels} ${value}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * Replaces FILE whole: a temporary file created beside it (O_EXCL | O_NOFOLLOW: never through a
 * link someone planted), synced, then renamed over it, so the collector never reads half a file.
 */
export function writeFileAtomically(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CtwatchError('ERR_OUTPUT', `cannot write ${path}: ${e.code === 'ENOENT' ? 'no such directory' : e.code === 'EACCES' ? 'permission denied' : e.code} (node_exporter reads --collector.textfile.directory)`, { exitCode: EXIT.cantCreate, cause: err });
  }
  try {
    writeSync(fd, text);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw new CtwatchError('ERR_OUTPUT', `writing ${path} failed: ${(err as NodeJS.ErrnoException).code}`, { exitCode: EXIT.ioErr, cause: err });
  }
}

// ---- the command ---------------------------------------------------------------------------

interface StatsValues {
  netns?: string;
  warning?: string;
  critical?: string;
  timeout?: string;
  interval?: string;
  events?: string;
  rcvbuf?: string;
  filter?: string[];
  reliable?: boolean;
  json?: boolean;
  textfile?: string;
  version?: boolean;
  help?: boolean;
  'log-format'?: string;
}

/** Runs `work` with a deadline; the loser is told to stop through `onTimeout`. */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => void): Promise<T | 'timeout'> {
  let timer: LongTimer | undefined;
  const late = new Promise<'timeout'>((resolve) => {
    timer = setLongTimeout(() => {
      onTimeout();
      resolve('timeout');
    }, ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    timer?.clear();
  }
}

export async function stats(argv: string[]): Promise<number> {
  let values: StatsValues = {};
  try {
    values = parse('stats', argv, parserOptions(STATS_OPTIONS.filter((d) => d.name !== 'help' && d.name !== 'log-format'))).values as StatsValues;
    if (values.help) {
      process.stdout.write(STATS_HELP);
      return 0;
    }
    if (values.version) {
      process.stdout.write('ctwatch 0.1.0\n');
      return 0;
    }
    return await runStats(values);
  } catch (err) {
    const e = err instanceof CtwatchError ? err : (err as { code?: string }).code?.startsWith('ERR_') ? fromNativeError(err) : undefined;
    const reason = e ? e.message : `internal error: ${(err as Error).stack ?? String(err)}`;
    // A check's output is its one line on stdout; scripts (--json, --textfile) get it on stderr.
    if (values.json || values.textfile !== undefined) process.stderr.write(`ctwatch stats: ${reason}\n`);
    else process.stdout.write(`CONNTRACK UNKNOWN - ${reason}\n`);
    return UNKNOWN;
  }
}

async function runStats(values: StatsValues): Promise<number> {
  logger(values);
  const warn = parseRange(values.warning ?? '70', '-w');
  const crit = parseRange(values.critical ?? '90', '-c');
  // the plugin guidelines give -t in seconds: the one place a bare number is read as a unit
  const timeoutMs = parseDuration(values.timeout ?? '10s', '-t', { bareSeconds: true }) * 1000;
  if (!(timeoutMs > 0)) throw new CtwatchError('ERR_USAGE', `-t ${values.timeout}: give a timeout above 0, e.g. 10 or 30s`, { exitCode: EXIT.usage });
  // Past the deadline the check answers UNKNOWN whatever is still running; the process must not
  // outlive the monitoring system's own timeout.
  setLongTimeout(() => {
    process.stdout.write(`CONNTRACK UNKNOWN - no answer within ${timeoutMs / 1000} s and the kernel socket did not close\n`);
    process.exit(UNKNOWN);
  }, timeoutMs + 2000).unref();

  if (values.textfile !== undefined) {
    const source = new LiveSource({ netns: values.netns, events: ['destroy'], snapshot: false });
    let s: KernelStats;
    try {
      s = source.stats();
    } finally {
      await source.close();
    }
    if (s.entries === null || s.max === null) throw new CtwatchError('ERR_STATS', 'the kernel did not report the table size', { exitCode: EXIT.unavailable });
    const text = nodeTextfile(s, values.netns);
    if (values.textfile === '-') process.stdout.write(text);
    else writeFileAtomically(values.textfile, text);
    return 0;
  }

  const intervalMs = parseDuration(values.interval ?? '2s', '--interval') * 1000;
  if (intervalMs >= timeoutMs) {
    throw new CtwatchError('ERR_USAGE', `--interval ${values.interval ?? '2s'} does not fit in -t ${values.timeout ?? '10s'}: measuring takes the interval plus the table dump`, { exitCode: EXIT.usage });
  }
  // No process lookups: the check names destinations only.
  // a one-shot measurement: no warm-up before it
  const assembly = assembleLive(openEngineSource(values), { warm: false });
  const source = assembly.source;
  const readTable = assembly.table;
  let first: TableReading | undefined;
  let final: ChurnSnapshot | undefined;
  const finish = () => {
    final = assembly.engine.snapshot(Date.now() * 1000, readTable(0));
    void source.close();
  };
  const run = assembly.run({
    events: (batch) => {
      if (first === undefined && batch.some((e) => e.event === 'snapshot_done')) {
        first = readTable(0);
        setLongTimeout(finish, intervalMs);
      }
    },
  });
  const outcome = await withDeadline(run, timeoutMs, () => void source.close());
  if (outcome === 'timeout' && !final) {
    throw new CtwatchError('ERR_TIMEOUT', `no answer within ${timeoutMs / 1000} s (${first === undefined ? 'the table dump did not finish' : 'measuring did not finish'}); raise -t`, { exitCode: UNKNOWN });
  }
  if (!final) throw new CtwatchError('ERR_STATS', 'the table dump did not complete', { exitCode: UNKNOWN });
  // what the kernel dropped while we measured (a counter reset counts from 0, as in Prometheus)
  const k = final.table.kernel;
  const delta = statsDelta(kernelTotals(first?.kernel), k);
  const drops = k.drop !== undefined ? (delta.drop ?? 0) + (delta.early_drop ?? 0) : 0;
  const result = checkResult(final, warn, crit, drops);
  process.stdout.write(values.json ? `${toLine(final as never)}\n` : `${result.line}\n`);
  return result.code;
}
