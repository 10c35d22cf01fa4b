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

export function parseCount(text: string, flag: string, range?: units.Range): number {
  return usage(flag, () => units.parseCount(text, range));
}
