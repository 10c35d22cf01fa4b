/** The `ctwatch` command: dispatches to a subcommand and turns errors into one line + exit code. */
import { CtwatchError, EXIT, fromNativeError } from '../util/errors.js';
import { record, RECORD_HELP } from './record.js';
import { replay, REPLAY_HELP } from './replay.js';
import { report, REPORT_HELP } from './report.js';
import { stats, STATS_HELP } from './stats.js';
import { top, TOP_HELP } from './top.js';
import { watch, WATCH_HELP } from './watch.js';
import { fleet, FLEET_HELP } from './fleet.js';
import { demo, DEMO_HELP } from './demo.js';
import { releaseEarlySignals } from './signals.js';
import { doctor, DOCTOR_HELP } from './doctor.js';
import { DURATION_SYNTAX, SIZE_SYNTAX } from './args.js';

export const HELP = `ctwatch — watch Linux connection tracking: who fills the conntrack table, and how fast

Usage: ctwatch <command> [options]     (ctwatch <command> --help for details)

Commands:
  demo       the table-full incident reproduced in a throwaway namespace, caught live
  top        live view: table fill, time to full, churn, top destinations/sources
  watch      the daemon: churn alerts that name the destination and source (systemd unit)
  fleet      many hosts in one view: their churn and alerts merged from NATS JetStream
  stats      one snapshot and exit: a monitoring check, JSON, or a node_exporter textfile
  record     write conntrack events (and flow ends, churn snapshots) as JSON lines
  replay     run the engine on a recording: flow ends and churn, deterministic
  report     a recording as one self-contained HTML page: charts, alerts, a postmortem summary
  doctor     why no events, bytes or processes: each check with its fix

Start here:
  sudo ctwatch demo                                  see it catch a leaking connection pool
  sudo ctwatch doctor                                why no events? each check with its fix
  sudo ctwatch top                                   who is filling the table, live
  sudo ctwatch stats -w 70 -c 90                     a Nagios/Icinga check (exit 0/1/2/3)
  sudo ctwatch record --flows --churn 10s -o ct.jsonl   keep a record to replay later

Values (flags, the rules file and the sinks file read them alike):
  ${DURATION_SYNTAX}
  ${SIZE_SYNTAX}

Docs: README.md (troubleshooting), docs/schema.md (every JSON field).
`;

type Command = (argv: string[]) => Promise<number>;

/** Commands whose SIGHUP handler (onSignals) takes a SIGHUP held while they started. */
const HANDLES_SIGHUP = new Set(['record', 'watch']);

const COMMANDS: Record<string, { run: Command; help: string }> = {
  record: { run: record, help: RECORD_HELP },
  demo: { run: demo, help: DEMO_HELP },
  top: { run: top, help: TOP_HELP },
  watch: { run: watch, help: WATCH_HELP },
  fleet: { run: fleet, help: FLEET_HELP },
  stats: { run: stats, help: STATS_HELP },
  replay: { run: replay, help: REPLAY_HELP },
  report: { run: report, help: REPORT_HELP },
  doctor: { run: doctor, help: DOCTOR_HELP },
};

/** Every command with its one-line summary (from HELP) and its --help text: what the man page and
 * the shell completions are generated from (src/cli/manuals.ts). */
export function commandHelps(): { name: string; summary: string; help: string }[] {
  return Object.entries(COMMANDS).map(([name, c]) => ({
    name,
    summary: new RegExp(`^  ${name} +(.+)$`, 'm').exec(HELP)?.[1] ?? '',
    help: c.help,
  }));
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    process.stdout.write(topic && COMMANDS[topic] ? COMMANDS[topic].help : HELP);
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write('ctwatch 0.1.0\n');
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`ctwatch: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')}; see ctwatch --help)\n`);
    return EXIT.usage;
  }
  // Only record and watch handle SIGHUP (reopen, reload); the others end on it as they always did.
  if (!HANDLES_SIGHUP.has(name)) releaseEarlySignals();
  try {
    return await cmd.run(rest);
  } catch (err) {
    const e = err instanceof CtwatchError ? err : (err as { code?: string }).code?.startsWith('ERR_') ? fromNativeError(err) : undefined;
    if (e) {
      process.stderr.write(`ctwatch ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`ctwatch ${name}: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.failure;
  }
}
