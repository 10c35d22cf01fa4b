/**
 * Exec hooks: a command run per alert, with the alert's JSON on stdin. A delivery kind of its own (a
 * process, not a request), with the queue and the counters of every other delivery: a bounded
 * RecordQueue that drops the oldest waiting alert, and sent / failed / dropped / queued / lastError.
 * `send()` returns at once and never throws; a hook that hangs is killed at its timeout, with
 * everything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Alert } from '../recording/alert.js';
import { setLongTimeout } from '../util/timers.js';
import { RecordQueue } from './queue.js';
import { errorText, IdleWaiters, untilIdleOr, type Delivery, type DeliveryLogger, type ExecStats } from './delivery.js';

export interface ExecHookOptions {
  /** the command and its arguments; run without a shell, so nothing in an alert is ever parsed */
  argv: readonly string[];
  /** a run still going after this is killed; default 10 000 */
  timeoutMs?: number;
  /** after SIGTERM, how long before SIGKILL; default 2 000 */
  killGraceMs?: number;
  /** runs at once; default 2 */
  concurrency?: number;
  /** waiting alerts kept; default 100 */
  queueSize?: number;
  /** where PATH and the `passEnv` variables are taken from; default process.env */
  env?: NodeJS.ProcessEnv;
  /** names of variables from `env` the hook may see besides PATH, LANG, LC_ALL and TZ: an
   * allow-list, empty by default (ctwatch's environment holds secrets such as CTWATCH_HEC_TOKEN) */
  passEnv?: readonly string[];
  name?: string;
  log?: DeliveryLogger;
}

/** Passed when set: where programs are, and how to print text and times. Nothing secret. */
const BASE_ENV = ['LANG', 'LC_ALL', 'TZ'];

/**
 * The environment a hook sees: PATH (and LANG, LC_ALL, TZ when set), the variables the operator
 * listed (`env:` in the rules file), and the alert's main fields, so a one-line hook
 * (`notify-send "$CTWATCH_MESSAGE"`) needs no JSON parser. Nothing else from the collector's
 * environment reaches a script someone else wrote: it holds the sinks' secrets
 * (CTWATCH_HEC_TOKEN, CTWATCH_ES_API_KEY), which an allow-list keeps out by construction.
 */
export function hookEnv(source: NodeJS.ProcessEnv, alert: Alert, passEnv: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = { PATH: source.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  for (const k of [...BASE_ENV, ...passEnv]) {
    const v = source[k];
    if (v !== undefined) env[k] = v;
  }
  env.CTWATCH_EVENT = alert.event;
  env.CTWATCH_RULE = alert.rule;
  env.CTWATCH_SEVERITY = alert.severity;
  env.CTWATCH_SUBJECT = alert.subject;
  env.CTWATCH_MESSAGE = alert.message;
  env.CTWATCH_HINT = alert.hint;
  env.CTWATCH_TIME = String(alert.time);
  if (alert.netns !== undefined) env.CTWATCH_NETNS = alert.netns;
  return env;
}

/** Runs a command per alert with the alert's JSON on stdin. */
export class ExecHook implements Delivery {
  readonly name: string;
  private readonly argv: readonly string[];
  private readonly timeoutMs: number;
  private readonly killGraceMs: number;
  private readonly concurrency: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly passEnv: readonly string[];
  private readonly log: DeliveryLogger | undefined;
  private readonly queue: RecordQueue<Alert>;
  private readonly running = new Set<ChildProcess>();
  /** runs started and not finished, including ones whose spawn failed and is being reported */
  private busy = 0;
  private scheduled = false;
  private closed = false;
  private readonly idle = new IdleWaiters();
  private counts = { sent: 0, failed: 0, timedOut: 0, dropped: 0 };
  private lastError: string | null = null;

  constructor(options: ExecHookOptions) {
    if (options.argv.length === 0) throw new TypeError('ExecHook: argv needs the command to run');
    this.argv = [...options.argv];
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.killGraceMs = options.killGraceMs ?? 2_000;
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    // the queue every delivery uses; fresh alerts matter more, so the oldest waiting one goes
    this.queue = new RecordQueue<Alert>({ maxRecords: Math.max(1, options.queueSize ?? 100), maxBytes: Infinity }, 'drop-oldest');
    this.passEnv = options.passEnv ?? [];
    this.env = options.env ?? process.env;
    this.log = options.log;
    this.name = options.name ?? `exec ${this.argv[0]}`;
  }

  send(alert: Alert): void {
    if (this.closed) {
      this.counts.dropped++;
      return;
    }
    if (this.queue.push(alert) > 0) {
      this.counts.dropped++;
      this.lastError = 'queue full: oldest alert dropped';
    }
    // spawning costs a fork; do it after the caller's turn, not inside it
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.pump();
      });
    }
  }

  stats(): ExecStats {
    return { ...this.counts, queued: this.queue.length + this.busy, lastError: this.lastError };
  }

  async close(deadlineMs = 5_000): Promise<boolean> {
    this.closed = true;
    this.pump();
    if (this.busy === 0 && this.queue.length === 0) return true;
    const drained = await untilIdleOr(this.idle.wait(), deadlineMs);
    if (!drained) {
      this.counts.dropped += this.queue.clear().length;
      for (const child of this.running) killGroup(child, 'SIGKILL');
    }
    return drained;
  }

  private pump(): void {
    while (this.busy < this.concurrency && this.queue.length > 0) this.run(this.queue.shift()!);
    if (this.busy === 0 && this.queue.length === 0) this.idle.wake();
  }

  private run(alert: Alert): void {
    this.busy++;
    let child: ChildProcess;
    let finished = false;
    let timedOut = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let stderr = '';
    const timers: NodeJS.Timeout[] = [];
    const cancels: (() => void)[] = [];

    const finish = (spawnError?: unknown): void => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      for (const c of cancels) c();
      this.running.delete(child);
      child?.stderr?.destroy();
      this.busy--;
      if (timedOut) {
        this.counts.timedOut++;
        this.lastError = `timed out after ${this.timeoutMs} ms`;
      } else if (spawnError === undefined && exit?.code === 0) {
        this.counts.sent++;
      } else {
        this.counts.failed++;
        const why =
          spawnError !== undefined
            ? errorText(spawnError)
            : exit?.signal
              ? `killed by ${exit.signal}`
              : `exit status ${exit?.code ?? 'unknown'}`;
        const tail = stderr.trim().split('\n').pop();
        this.lastError = tail ? `${why}: ${tail}` : why;
      }
      if (timedOut || spawnError !== undefined || exit?.code !== 0) {
        this.log?.warn({ hook: this.name, rule: alert.rule, error: this.lastError }, 'alert exec hook failed');
      }
      this.pump();
    };

    try {
      child = spawn(this.argv[0], this.argv.slice(1), {
        stdio: ['pipe', 'ignore', 'pipe'],
        env: hookEnv(this.env, alert, this.passEnv),
        // its own process group, so a timeout kills the whole pipeline a shell script started,
        // not just the shell (whose children would keep running and keep our pipes open)
        detached: true,
      });
    } catch (err) {
      // spawn throws synchronously for bad arguments (e.g. a NUL byte); report like a failed run
      child = undefined as unknown as ChildProcess;
      finish(err);
      return;
    }
    this.running.add(child);
    child.on('error', (err) => finish(err));
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // a background grandchild may hold stderr open; do not wait for it past a moment
      timers.push(setTimeout(() => finish(), 100));
    });
    child.on('close', () => finish());
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-1024);
    });
    // a hook that does not read stdin closes it early: EPIPE then is not a failure of the hook
    child.stdin?.on('error', () => {});
    child.stdin?.end(`${JSON.stringify(alert)}\n`);
    // the operator's timeout may be longer than one Node timer holds (24.8 days)
    const timeout = setLongTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGTERM');
      timers.push(setTimeout(() => killGroup(child, 'SIGKILL'), this.killGraceMs));
    }, this.timeoutMs);
    cancels.push(() => timeout.clear());
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: already gone
  }
}

