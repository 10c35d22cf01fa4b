/** `ctwatch stats`: one snapshot and exit, for scripts and monitoring checks. */
import { ChurnEngine, type TableReading } from '../churn/engine.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { liveTable } from '../pipeline/table.js';
import { toLine } from '../recording/schema.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { parseDuration } from './args.js';
import { logger, parse } from './common.js';
import { openEngineSource, SOURCE_HELP, SOURCE_OPTIONS } from './engine-options.js';
import { timeToFullText } from './top-view.js';

export const STATS_HELP = `Usage: ctwatch stats [options]

Read the table once (a dump, plus the kernel's counters), watch churn for --interval, print
one snapshot and exit. For scripts, cron and monitoring checks: the exit status follows the
Nagios plugin convention.

Options:
${SOURCE_HELP}
  --events LIST         kernel events while measuring (default new,update,destroy)
  --interval TIME       how long to measure churn rates (default 2s)
  --json                print the snapshot as one JSON line (schema: docs/schema.md, "churn")
  --warn PCT            table fill that makes the status WARNING (default 70)
  --crit PCT            table fill that makes the status CRITICAL (default 90)
  -h, --help            this help

Exit status: 0 OK, 1 WARNING (fill >= --warn), 2 CRITICAL (fill >= --crit, or the kernel
dropped packets for a full table while measuring); other codes are errors (see README).
Example (a Nagios/Icinga check):
  ctwatch stats --netns prod --warn 60 --crit 85
  CONNTRACK WARNING - table 64 % (167 772 / 262 144), full in ~9 min; top churn 127.0.0.5:6379/tcp 2 340 new/s | entries=167772;157286;222822;0;262144 new_per_s=2410
`;

function pctArg(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const v = Number(text.replace(/%$/, ''));
  if (!Number.isFinite(v) || v <= 0 || v > 100) throw new CtwatchError('ERR_USAGE', `${flag} ${text}: give a percentage between 1 and 100`, { exitCode: EXIT.usage });
  return v;
}

export function nagiosStatus(s: ChurnSnapshot, warn: number, crit: number, dropsWhileMeasuring: number): { code: number; line: string } {
  const t = s.table;
  const fill = t.fill ?? 0;
  const code = fill * 100 >= crit || dropsWhileMeasuring > 0 ? 2 : fill * 100 >= warn ? 1 : 0;
  const word = ['OK', 'WARNING', 'CRITICAL'][code];
  const topDest = s.destinations[0];
  const who = topDest ? `; top churn ${topDest.key} ${Math.round(topDest.new10)} new/s` : '';
  const drops = dropsWhileMeasuring > 0 ? `, kernel dropped ${dropsWhileMeasuring} packets (table full)` : '';
  const max = t.max ?? 0;
  const perf = `entries=${t.entries ?? 0};${Math.floor((max * warn) / 100)};${Math.floor((max * crit) / 100)};0;${max} new_per_s=${Math.round(s.overall.new10)}`;
  return {
    code,
    line: `CONNTRACK ${word} - table ${Math.round(fill * 100)} % (${t.entries ?? '?'} / ${t.max ?? '?'}), ${timeToFullText(t.timeToFull)}${drops}${who} | ${perf}`,
  };
}

export async function stats(argv: string[]): Promise<number> {
  const { values } = parse('stats', argv, {
    ...SOURCE_OPTIONS,
    interval: { type: 'string' },
    json: { type: 'boolean' },
    warn: { type: 'string' },
    crit: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(STATS_HELP);
    return 0;
  }
  logger(values);
  const warn = pctArg(values.warn, 70, '--warn');
  const crit = pctArg(values.crit, 90, '--crit');
  if (warn >= crit) throw new CtwatchError('ERR_USAGE', `--warn ${warn} must be below --crit ${crit}`, { exitCode: EXIT.usage });
  const intervalMs = parseDuration(values.interval ?? '2s', '--interval') * 1000;
  const source = openEngineSource(values);
  const readTable = liveTable(source);
  const engine = new ChurnEngine();
  let first: TableReading | undefined;
  let final: ChurnSnapshot | undefined;
  const finish = () => {
    final = engine.snapshot(Date.now() * 1000, readTable(0));
    void source.close();
  };
  const pipeline = new Pipeline(
    source,
    {
      events: (batch) => {
        if (first === undefined && batch.some((e) => e.event === 'snapshot_done')) {
          first = readTable(0);
          setTimeout(finish, intervalMs);
        }
      },
    },
    { engine, wallClock: true, table: readTable },
  );
  await pipeline.run();
  if (!final) throw new CtwatchError('ERR_STATS', 'the table dump did not complete: see the log above', { exitCode: EXIT.failure });
  const k0 = first?.kernel as Record<string, number>[] | undefined;
  const sum = (rows: Record<string, number>[] | undefined, key: string) => (rows ?? []).reduce((a, r) => a + (r[key] ?? 0), 0);
  const drops = final.table.kernel.drop !== undefined ? (final.table.kernel.drop ?? 0) + (final.table.kernel.early_drop ?? 0) - sum(k0, 'drop') - sum(k0, 'early_drop') : 0;
  const status = nagiosStatus(final, warn, crit, Math.max(0, drops));
  process.stdout.write(values.json ? `${toLine(final as never)}\n` : `${status.line}\n`);
  return status.code;
}
