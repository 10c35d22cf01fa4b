/**
 * The text log is read on terminals and grepped by line: whatever a message carries (alert
 * messages name processes, and any local account names its own) stays one printable line.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { logLevel } from '../../src/util/log.js';
import { printable } from '../../src/util/printable.js';
import { CtwatchError } from '../../src/util/errors.js';

const LOG = join(fileURLToPath(new URL('../..', import.meta.url)), 'dist', 'util', 'log.js');

/** What a real logger writes to a real stderr, in a child process. */
function stderrOf(script: string): string {
  const code = `import(${JSON.stringify(LOG)}).then(({ createLogger }) => { const log = createLogger('text'); ${script} })`;
  return spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, CTWATCH_LOG_LEVEL: '' } }).stderr;
}

describe('text log', () => {
  it('escapes control and bidi characters in messages and fields, one line per entry', () => {
    const err = stderrOf(`log.warn({ rule: 'churn\\u001b[2J', who: { comm: 'a\\u009bb' } }, 'alert for \\u001b]0;pwned\\u0007 and\\nctwatch info: forged line\\u202e');`);
    const lines = err.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe('ctwatch warn: alert for \\x1b]0;pwned\\x07 and\\x0actwatch info: forged line\\u202e (rule=churn\\x1b[2J who={"comm":"a\\x9bb"})');
  });

  it('CTWATCH_LOG_LEVEL: any case, empty is info, anything else a usage error', () => {
    expect(logLevel(undefined)).toBe('info');
    expect(logLevel('')).toBe('info');
    expect(logLevel(' DEBUG ')).toBe('debug');
    expect(logLevel('silent')).toBe('silent');
    expect(() => logLevel('bogus')).toThrow(CtwatchError);
    expect(() => logLevel('bogus')).toThrow('CTWATCH_LOG_LEVEL="bogus" is not a log level: use one of trace, debug, info, warn, error, fatal, silent');
  });

  it('printable leaves ordinary text alone, UTF-8 included', () => {
    expect(printable('redis-pool (1234) → 127.0.0.5:6379, café, 東京')).toBe('redis-pool (1234) → 127.0.0.5:6379, café, 東京');
    expect(printable('\t\r\x7f')).toBe('\\x09\\x0d\\x7f');
  });
});
