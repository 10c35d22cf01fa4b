/**
 * ctwatch commands started by kernel tests: stderr collected, the exit awaited, the process killed
 * when the test process exits (./netns.ts track); and the JSON lines they write.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { CLI, track } from './netns.js';

/** What `watch` logs once it reads the table, and `record`. */
export const WATCHING = 'watching the conntrack table';
export const RECORDING = 'recording conntrack events';

export interface CliRun {
  readonly child: ChildProcess & { stderr: Readable };
  readonly pid: number | undefined;
  /** everything it wrote to stderr so far */
  readonly stderr: string;
  /** its exit code (null when a signal ended it) */
  readonly exited: Promise<number | null>;
  /** the same, once it has exited; undefined while it runs */
  readonly code: number | null | undefined;
  kill(signal?: NodeJS.Signals): boolean;
}

/** `ctwatch ARGS...`, stdout ignored, stderr collected. */
export function startCli(args: readonly string[]): CliRun {
  const child = track(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  let code: number | null | undefined;
  child.stderr.on('data', (d) => (stderr += d));
  const exited = exitOf(child).then((c) => (code = c));
  return {
    child,
    pid: child.pid,
    get stderr() {
      return stderr;
    },
    exited,
    get code() {
      return code;
    },
    kill: (signal) => child.kill(signal),
  };
}

/** The exit code of `p`, also when it has exited already. */
export function exitOf(p: ChildProcess): Promise<number | null> {
  return new Promise((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));
}

/** The JSON lines of `file` so far ([] while it does not exist). */
export function jsonLines<T = Record<string, unknown>>(file: string): T[] {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as T) : [];
}
