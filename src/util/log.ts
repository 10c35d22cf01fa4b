/**
 * Diagnostics: pino, to stderr, synchronously (an asynchronous destination loses the last lines on
 * an immediate exit, pino #2326). Data never goes here. `text` renders each entry as one human
 * line ("ctwatch warn: ..."); `json` keeps pino's JSON for log shippers.
 */
import { writeSync } from 'node:fs';
import pino, { type Logger } from 'pino';

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
        text = `ctwatch ${LEVELS[o.level as number] ?? 'log'}: ${String(o.msg ?? '')}${extras ? ` (${extras})` : ''}\n`;
      } catch {
        text = line;
      }
      writeSync(2, text);
    },
  };
}

export function createLogger(format: LogFormat = 'text', level = process.env.CTWATCH_LOG_LEVEL ?? 'info'): Logger {
  if (format === 'json') return pino({ level, base: { name: 'ctwatch' } }, pino.destination({ fd: 2, sync: true }));
  return pino({ level, base: undefined, timestamp: false }, textStream());
}

export type { Logger };
