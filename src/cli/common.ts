/** What every command shares: option parsing with clear errors, logging, signals. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CtwatchError, EXIT } from '../util/errors.js';
import { createLogger, type LogFormat, type Logger } from '../util/log.js';
import { takeEarlySignals } from './signals.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  'log-format': { type: 'string' },
} as const satisfies Options;

export function parse<T extends Options>(command: string, argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals, strict: true });
  } catch (err) {
    // Node's messages can run to three lines of advice about dashes; the first line says it.
    const msg = (err as Error).message.split('\n')[0].replace(/\. To specify.*$/, '');
    throw new CtwatchError('ERR_USAGE', `${msg} (see 'ctwatch ${command} --help')`, { exitCode: EXIT.usage });
  }
}

export function logger(values: { 'log-format'?: string }): Logger {
  const f = values['log-format'] ?? 'text';
  if (f !== 'text' && f !== 'json') throw new CtwatchError('ERR_USAGE', `--log-format must be text or json, not ${JSON.stringify(f)}`, { exitCode: EXIT.usage });
  return createLogger(f as LogFormat);
}

/**
 * SIGTERM/SIGINT: the first asks for a clean stop (drain, flush, summary, exit 0); a second one
 * exits at once. SIGHUP calls `onHup` (reopen files for logrotate, reload rules); without one,
 * SIGHUP keeps its default action (a `top` whose terminal closed ends instead of lingering).
 */
export function onSignals(log: Logger, stop: (signal: string) => void, onHup?: () => void): () => void {
  let stopping = false;
  const term = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now without draining');
      process.exit(130);
    }
    stopping = true;
    stop(signal);
  };
  const hup = () => onHup?.();
  process.on('SIGTERM', term);
  process.on('SIGINT', term);
  if (onHup) {
    process.on('SIGHUP', hup);
    // A SIGHUP that came while we were starting (held by the launcher) is acted on now: logrotate
    // may have moved the file we just opened.
    if (takeEarlySignals()) setImmediate(hup);
  }
  return () => {
    process.off('SIGTERM', term);
    process.off('SIGINT', term);
    if (onHup) process.off('SIGHUP', hup);
  };
}
