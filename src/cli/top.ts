/** `ctwatch top`: the live view (or a recording played back at its own pace). */
import type { ChurnSnapshot } from '../churn/snapshot.js';
import { assembleLive, assembleReplay } from '../pipeline/assemble.js';
import { parseDuration } from './args.js';
import { setLongTimeout } from '../util/timers.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { logger, onSignals, parse } from './common.js';
import { ATTRIBUTION_HELP, ATTRIBUTION_OPTIONS, openEngineSource, SOURCE_HELP, SOURCE_OPTIONS, startAttribution } from './engine-options.js';
import { renderTop, TopHistory } from './top-view.js';

export const TOP_HELP = `Usage: ctwatch top [options]

A live view of the conntrack table, refreshed every second: fill and time to full, churn
(new and ended flows per second), the last minute of both drawn as sparklines, and who causes
it: top destinations with their live entries by TCP state (TIME_WAIT pile-ups) and flow
lifetimes, top sources, protocols.

Options:
${SOURCE_HELP}
  --events LIST         kernel events (default new,update,destroy: updates give TCP states)
  --replay FILE         play a recording instead of the kernel
  --speed X             replay pace: 1 = as recorded (default), 10 = ten times faster,
                        0 = as fast as possible (prints only the last screen)
  -b, --batch           print each screen one after another (for logs and pipes), like top -b
  --duration TIME       stop after this long
${ATTRIBUTION_HELP}
  -h, --help            this help

Keys: q or Ctrl-C quits.
Example: sudo ctwatch top --netns ctwatch-demo
`;

export async function top(argv: string[]): Promise<number> {
  const { values } = parse('top', argv, {
    ...SOURCE_OPTIONS,
    replay: { type: 'string' },
    speed: { type: 'string' },
    batch: { type: 'boolean', short: 'b' },
    duration: { type: 'string' },
    ...ATTRIBUTION_OPTIONS,
  });
  if (values.help) {
    process.stdout.write(TOP_HELP);
    return 0;
  }
  const log = logger(values);
  const speed = values.speed === undefined ? 1 : Number(values.speed);
  if (!Number.isFinite(speed) || speed < 0) throw new CtwatchError('ERR_USAGE', `--speed ${JSON.stringify(values.speed)}: give a number, 1 = as recorded, 0 = as fast as possible`, { exitCode: EXIT.usage });
  const durationS = values.duration ? parseDuration(values.duration, '--duration', { positive: true }) : undefined;
  const tty = process.stdout.isTTY && !values.batch;
  let started: ReturnType<typeof startAttribution> | undefined;
  const assembly = values.replay
    ? await assembleReplay(values.replay)
    : assembleLive(openEngineSource(values, undefined, (started = startAttribution(values))), { attribution: started.pipeline });
  started?.announce(log);
  const source = assembly.source;
  const stop = () => void source.close();
  const offSignals = onSignals(log, stop);
  const timer = durationS !== undefined ? setLongTimeout(stop, durationS * 1000) : undefined;
  if (tty && process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.on('data', (d) => {
      if (d[0] === 0x71 || d[0] === 0x03) stop();
    });
  }
  let last: ChurnSnapshot | undefined;
  let lastShownAt = 0;
  let previousTick = NaN;
  const history = new TopHistory();
  const show = (snap: ChurnSnapshot) => {
    const screen = renderTop(snap, { source: source.counters, history, width: process.stdout.columns ?? 120, rows: process.stdout.rows ?? 40 });
    if (tty) process.stdout.write(`\x1b[H\x1b[2J${screen}\n`);
    else process.stdout.write(`${screen}\n\n`);
  };
  await assembly.run({
    snapshot: async (snap) => {
      last = snap;
      history.push(snap);
      if (values.replay) {
        if (speed === 0) return;
        // Pace the replay by recorded time.
        if (!Number.isNaN(previousTick)) await new Promise((r) => setTimeout(r, (snap.time - previousTick) / 1000 / speed));
        previousTick = snap.time;
      }
      lastShownAt = Date.now();
      show(snap);
    },
  });
  timer?.clear();
  offSignals();
  if (tty && process.stdin.isTTY) {
    process.stdin.setRawMode(false);
    process.stdin.pause();
  }
  if (last && (speed === 0 || lastShownAt === 0)) show(last);
  return 0;
}
