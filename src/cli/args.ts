/**
 * Command-line values: the grammar of src/config/units.ts (the same one the rules and sinks files
 * use), framed as a usage error that names the flag.
 */
import { CtwatchError, EXIT } from '../util/errors.js';
import * as units from '../config/units.js';

export { DURATION_SYNTAX, SIZE_SYNTAX } from '../config/units.js';

function usage<T>(flag: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (!(err instanceof units.ValueError)) throw err;
    throw new CtwatchError('ERR_USAGE', `${flag} ${err.reason}`, { exitCode: EXIT.usage });
  }
}

/** "64M" → bytes */
export function parseSize(text: string, flag: string, range?: units.Range): number {
  return usage(flag, () => units.parseSize(text, range));
}

/** "90s", "1m30s", "250ms", "2h" → seconds */
export function parseDuration(text: string, flag: string, range?: units.Range): number {
  return usage(flag, () => units.parseDuration(text, range));
}

/** `--churn TIME` → µs between churn lines. Snapshots fall on whole seconds of event time, so a
 * churn line can only be asked for every whole number of seconds. */
export function parseChurnEvery(text: string, flag = '--churn'): number {
  const us = Math.round(parseDuration(text, flag) * 1e6);
  if (us < 1e6 || us % 1e6 !== 0) throw new CtwatchError('ERR_USAGE', `${flag} ${text}: use whole seconds, at least 1s`, { exitCode: EXIT.usage });
  return us;
}

export function parseCount(text: string, flag: string, range?: units.Range): number {
  return usage(flag, () => units.parseCount(text, range));
}
