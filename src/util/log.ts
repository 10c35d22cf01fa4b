/**
 * Diagnostics: pino, to stderr, synchronously (an asynchronous destination loses the last lines on
 * an immediate exit, pino #2326). Data never goes here. `text` renders each entry as one human
 * line ("ctwatch warn: ..."), with control characters escaped (alert messages carry process names
 * that any local account chooses); `json` keeps pino's JSON for log shippers.
 */
import { writeSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { CtwatchError, EXIT } from './errors.js';
import { printable } from './printable.js';

export type LogFormat = 'text' | 'json';

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name']);

function textStream() {
  return {
    write(line: string): void {
      let text: string;
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        const extras = Object.entries(o)
          .filter(([k]) => !SKIP.has(k))
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        text = `ctwatch ${LEVELS[o.level as number] ?? 'log'}: ${printable(`${String(o.msg ?? '')}${extras ? ` (${extras})` : ''}`)}\n`;
      } catch {
        text = line;
      }
      writeSync(2, text);
    },
  };
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The level from CTWATCH_LOG_LEVEL (unset or empty: info); anything else is a usage error. */
export function logLevel(env = process.env.CTWATCH_LOG_LEVEL): string {
  const level = (env ?? '').trim().toLowerCase();
  if (level === '') return 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new CtwatchError('ERR_USAGE', `CTWATCH_LOG_LEVEL=${JSON.stringify(printable(env!).slice(0, 40))} is not a log level: use one of ${LOG_LEVELS.join(', ')}`, { exitCode: EXIT.usage });
  }
  return level;
}

export function createLogger(format: LogFormat = 'text', level = logLevel()): Logger {
  if (format === 'json') return pino({ level, base: { name: 'ctwatch' } }, pino.destination({ fd: 2, sync: true }));
  return pino({ level, base: undefined, timestamp: false }, textStream());
}

export type { Logger };
