/** `ctwatch replay FILE`: the whole engine on a recording, deterministic. */
import { assembleReplay } from '../pipeline/assemble.js';
import { RecordWriter, type WritableRecord } from '../recording/writer.js';
import { openOutput } from '../recording/output.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { parseChurnEvery } from './args.js';
import { logger, parse } from './common.js';

export const REPLAY_HELP = `Usage: ctwatch replay FILE [options]

Run the flow engine on a recording made by 'ctwatch record' and write what it finds as JSON
lines: a "flow" line per flow that ended and a "churn" line every --churn interval. Time comes
from the recording, so the same file always gives the same output, and it runs as fast as
the disk allows. Recorded "churn" lines lend their kernel table figures (fill, drops) to the
replayed ones.

Options:
  --churn TIME          churn snapshot every TIME of recorded time (default 10s)
  --no-flows            leave out the flow lines
  --skip-bad-lines      count and skip malformed lines instead of stopping at the first
  -o, --output FILE|-   where lines go (default -, stdout)
  -h, --help            this help

Example: which destination churned most in a recording?
  ctwatch replay incident.jsonl --no-flows | jq -c 'select(.event=="churn") | .destinations[0]'

Every line is checked: a field of the wrong type or out of range, or a line over 1 MiB, stops the
replay with FILE:LINE and the field (or, with --skip-bad-lines, is counted and skipped). FILE may
be a pipe (ctwatch replay <(zcat rec.jsonl.gz)); devices and directories are refused, and a FIFO
that no process opens for writing within 5 s is an error, not a hang.

Exit status: 0 done, 64 usage, 65 malformed recording (the line is named), 66 no such file (or
not a file: a device, a directory, a FIFO without a writer).
`;

export async function replay(argv: string[]): Promise<number> {
  const { values, positionals } = parse('replay', argv, {
    churn: { type: 'string' },
    'no-flows': { type: 'boolean' },
    'skip-bad-lines': { type: 'boolean' },
    output: { type: 'string', short: 'o' },
  }, true);
  if (values.help) {
    process.stdout.write(REPLAY_HELP);
    return 0;
  }
  const log = logger(values);
  if (positionals.length !== 1) throw new CtwatchError('ERR_USAGE', `replay needs exactly one recording file (see 'ctwatch replay --help')`, { exitCode: EXIT.usage });
  const churnUs = parseChurnEvery(values.churn ?? '10s');
  const assembly = await assembleReplay(positionals[0], { onError: values['skip-bad-lines'] ? 'skip' : 'stop' });
  const source = assembly.source;
  let fatal: CtwatchError | undefined;
  const output = openOutput(values.output ?? '-', (err) => {
    fatal ??= err;
    void source.close();
  }, { log });
  const writer = new RecordWriter(output);
  const write = (records: WritableRecord[]) => writer.write(records);
  await assembly.run({
    flows: values['no-flows'] ? undefined : write,
    snapshot: (snap) => (snap.time % churnUs === 0 ? write([snap]) : undefined),
  });
  await output.end();
  if (fatal && fatal.code !== 'ERR_OUTPUT_CLOSED') {
    log.error(fatal.message);
    return fatal.exitCode;
  }
  if (source.counters.decodeErrors > 0) log.warn({ skipped: source.counters.decodeErrors }, 'malformed lines were skipped');
  log.debug({ events: source.counters.events, snapshots: assembly.snapshots }, 'replayed');
  return 0;
}
