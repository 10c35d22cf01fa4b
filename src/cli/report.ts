/** `ctwatch report RECORDING -o incident.html`: a recording as one page to hand to others. */
import { closeSync, ftruncateSync, writeSync } from 'node:fs';
import { ConfigError, loadAlertConfig } from '../alerts/index.js';
import { collectReport } from '../report/collect.js';
import { renderReport } from '../report/html.js';
import { FileRefused, openFile } from '../util/safe-file.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { logger, parse } from './common.js';

export const REPORT_HELP = `Usage: ctwatch report RECORDING -o FILE.html [options]

Render a recording (made by 'ctwatch record --flows --churn 1s', or 'watch -o ... --churn 1s')
as ONE self-contained HTML page to attach to a ticket or a postmortem: table fill and time to
full, churn, the top destinations, sources and processes over time, the alerts on the timeline,
and a summary to paste. The recording is replayed through the same engine and built-in rules
as 'ctwatch replay' (or the rules of --rules), so the page shows what watch would have seen.
The page fetches nothing (no scripts, no fonts, a Content-Security-Policy of default-src 'none'):
it opens offline and in a mail client's sandbox.

Options:
  -o, --output FILE|-   the page (required); an existing file is replaced, a new one is 0600
  --rules FILE          alert rules to evaluate (default: the built-in rules, docs/alerts.md)
  --top N               destinations, sources and processes drawn (default 5, at most 10)
  --skip-bad-lines      count and skip malformed lines instead of stopping at the first
  -h, --help            this help

Kernel table figures (fill, time to full, drops) come from the recording's "churn" lines: record
with --churn 1s to have them every second. Processes come from those lines too (attribution is
live only). Recordings longer than 24 min are drawn as the maximum of each bucket of seconds.

Example:
  sudo ctwatch record --netns prod --flows --churn 1s -o incident.jsonl --duration 10m
  ctwatch report incident.jsonl -o incident.html

Exit status: 0 written, 64 usage, 65 malformed recording (the line is named), 66 no such
recording, 73 cannot write the page, 78 bad --rules.
`;

function writePage(path: string, html: string): void {
  if (path === '-') {
    process.stdout.write(html);
    return;
  }
  let fd: number;
  try {
    fd = openFile(path, { access: 'read-write', create: true, mode: 0o600 }).fd;
  } catch (err) {
    if (!(err instanceof FileRefused)) throw err;
    throw new CtwatchError('ERR_OUTPUT', `cannot write ${path}: ${err.reason} (${err.advice ?? 'choose a writable -o FILE, or - for stdout'})`, { exitCode: EXIT.cantCreate });
  }
  try {
    ftruncateSync(fd, 0);
    const buf = Buffer.from(html);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, off);
  } catch (err) {
    throw new CtwatchError('ERR_OUTPUT', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { exitCode: EXIT.ioErr, cause: err });
  } finally {
    closeSync(fd);
  }
}

export async function report(argv: string[]): Promise<number> {
  const { values, positionals } = parse('report', argv, {
    output: { type: 'string', short: 'o' },
    rules: { type: 'string' },
    top: { type: 'string' },
    'skip-bad-lines': { type: 'boolean' },
  }, true);
  if (values.help) {
    process.stdout.write(REPORT_HELP);
    return 0;
  }
  const log = logger(values);
  if (positionals.length !== 1) throw new CtwatchError('ERR_USAGE', `report needs exactly one recording file (see 'ctwatch report --help')`, { exitCode: EXIT.usage });
  if (values.output === undefined) throw new CtwatchError('ERR_USAGE', `report needs -o FILE.html (or -o - for stdout)`, { exitCode: EXIT.usage });
  const topN = values.top === undefined ? 5 : Number(values.top);
  if (!Number.isInteger(topN) || topN < 1 || topN > 10) throw new CtwatchError('ERR_USAGE', `--top ${JSON.stringify(values.top)}: give a whole number from 1 to 10`, { exitCode: EXIT.usage });
  let rules;
  if (values.rules !== undefined) {
    rules = await loadAlertConfig(values.rules).catch((err: unknown) => {
      if (err instanceof ConfigError) throw new CtwatchError(err.code, err.summary, { exitCode: err.exitCode, cause: err });
      throw err;
    });
  }
  const data = await collectReport(positionals[0], { rules, topN, onError: values['skip-bad-lines'] ? 'skip' : 'stop' });
  if (data.points.length === 0) log.warn({ recording: positionals[0], events: data.events }, 'the recording holds no conntrack events: the page is empty');
  writePage(values.output, renderReport(data));
  if (data.skippedLines > 0) log.warn({ skipped: data.skippedLines }, 'malformed lines were skipped');
  log.info({ output: values.output, seconds: data.points.length, alerts: data.alerts.length }, 'report written');
  return 0;
}
