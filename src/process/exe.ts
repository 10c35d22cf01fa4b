/**
 * The executable of an owner the eBPF join named: readlink /proc/TGID/exe, once per process.
 *
 * A pid is reused: the link is taken only when /proc/TGID/stat shows, before and after the
 * readlink, the start time the BPF stamp recorded (task->start_boottime, ns since boot; stat's
 * field 22 is the same clock in USER_HZ ticks, 100 per second on every Linux ABI). A process that
 * exited before it was read keeps no exe (`gone`), one whose pid already belongs to another process
 * too (`reused`); another user's process without CAP_SYS_PTRACE is `denied`. Answers are cached
 * per (pid, start), at most `maxEntries`, the oldest first out.
 *
 * execve changes neither the pid nor the start time, so a cached answer is read again once it is
 * `maxAgeMs` old (the old one is given until the new one is in): a process that connected, then
 * exec'd another program, is named by its old executable for at most that long. (Exact would be
 * the stamp carrying task->self_exec_id; not done.)
 */
import { readFile, readlink } from 'node:fs/promises';

const USER_HZ = 100;

export interface ExeStats {
  read: number;
  gone: number;
  reused: number;
  denied: number;
  cached: number;
}

/** The start time (ticks since boot) in /proc/PID/stat text: field 22, counted after the comm. */
export function statStartTicks(text: string): number | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // fields after "(comm)": state is field 3, so starttime (22) is the 20th of them
  const f = text.slice(close + 2).split(' ');
  const v = Number(f[19]);
  return Number.isFinite(v) ? v : undefined;
}

/** Whether stat's start ticks are the process a stamp's start_ns names. */
export function sameStart(ticks: number, startNs: number): boolean {
  return Math.abs(ticks - Math.floor(startNs / (1e9 / USER_HZ))) <= 1;
}

/** The start time a BPF stamp records for `pid` (ns since boot), to the tick /proc/PID/stat has;
 * undefined when it is gone. */
export async function processStartNs(pid: number, proc = '/proc'): Promise<number | undefined> {
  try {
    const t = statStartTicks(await readFile(`${proc}/${pid}/stat`, 'utf8'));
    return t === undefined ? undefined : t * (1e9 / USER_HZ);
  } catch {
    return undefined;
  }
}

interface Entry {
  startNs: number;
  /** monotonic ms of the last answer */
  at: number;
  /** null: not readable (see stats); undefined: being read */
  exe?: string | null;
  reading?: Promise<string | null>;
}

export class Executables {
  readonly stats: ExeStats = { read: 0, gone: 0, reused: 0, denied: 0, cached: 0 };
  /** called once, the first time a process's exe could not be read for want of a capability */
  onDenied?: (pid: number) => void;
  private deniedSaid = false;
  private readonly cache = new Map<number, Entry>();

  constructor(
    private readonly maxEntries = 4096,
    private readonly proc = '/proc',
    private readonly maxAgeMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Without waiting: the exe of (pid, startNs) if known, else undefined (and the read starts). */
  exe(pid: number, startNs: number): string | undefined {
    const e = this.cache.get(pid);
    if (e && e.startNs === startNs) {
      if (e.exe !== undefined && !e.reading && this.now() - e.at >= this.maxAgeMs) void this.refresh(pid, e);
      return e.exe ?? undefined;
    }
    void this.read(pid, startNs);
    return undefined;
  }

  /** Reads an old answer again (an execve since); the old one stands until the new one is in. */
  private async refresh(pid: number, e: Entry): Promise<void> {
    e.reading = this.readChecked(pid, e.startNs);
    const exe = await e.reading;
    delete e.reading;
    e.exe = exe;
    e.at = this.now();
  }

  /** Whether the answer for (pid, startNs) is in: its exe, or that it cannot be read. */
  known(pid: number, startNs: number): boolean {
    const e = this.cache.get(pid);
    return e !== undefined && e.startNs === startNs && e.exe !== undefined;
  }

  /** Reads (once) the exe of (pid, startNs). */
  async read(pid: number, startNs: number): Promise<string | undefined> {
    const known = this.cache.get(pid);
    if (known && known.startNs === startNs) return (known.exe !== undefined ? known.exe : await known.reading) ?? undefined;
    const entry: Entry = { startNs, at: 0 };
    this.cache.delete(pid);
    this.cache.set(pid, entry);
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value as number);
    this.stats.cached = this.cache.size;
    entry.reading = this.readChecked(pid, startNs);
    entry.exe = await entry.reading;
    entry.at = this.now();
    delete entry.reading;
    return entry.exe ?? undefined;
  }

  private async readChecked(pid: number, startNs: number): Promise<string | null> {
    const stat = `${this.proc}/${pid}/stat`;
    const same = async (): Promise<boolean | null> => {
      try {
        const t = statStartTicks(await readFile(stat, 'utf8'));
        return t !== undefined && sameStart(t, startNs);
      } catch {
        return null;
      }
    };
    const before = await same();
    if (before === null) return this.miss('gone');
    if (!before) return this.miss('reused');
    let exe: string;
    try {
      exe = await readlink(`${this.proc}/${pid}/exe`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        if (!this.deniedSaid) {
          this.deniedSaid = true;
          this.onDenied?.(pid);
        }
        return this.miss('denied');
      }
      return this.miss('gone'); // ENOENT: exited, or a kernel thread
    }
    // The link read may be a newer process's if the pid was taken meanwhile: check again.
    const after = await same();
    if (after === null) return this.miss('gone');
    if (!after) return this.miss('reused');
    this.stats.read++;
    return exe;
  }

  private miss(why: 'gone' | 'reused' | 'denied'): null {
    this.stats[why]++;
    return null;
  }
}
