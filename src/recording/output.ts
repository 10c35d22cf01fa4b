/**
 * Where data lines go: stdout or a file. A regular file on a local file system is written at
 * once, on this thread: a write(2) into the page cache costs ~10 µs, and handing it to the libuv
 * pool instead cost the process more than the write (a worker woken, scheduled and put back to
 * sleep per write, and the completion's callback): at 50 000 events/s, about a tenth of the
 * collector's CPU (bench/README.md, "Flow lines written where they are made"). A write that
 * holds the thread longer than SLOW_WRITE_MS, or writes that add up to WRITE_BUDGET_MS within a
 * second, move the output to the background for good (reopened files too), said once. That write itself still
 * holds the thread for as long as it takes, as any write(2) to a local disk can; file systems
 * whose writes wait on a server (NFS, SMB, FUSE, ...) are never written on this thread.
 * Pipes, terminals and sockets are always written in the background (sonic-boom, asynchronous):
 * a reader that stops reading must not stop the collector. There, lines are written as soon as
 * the previous write is done, so what arrives meanwhile goes out together in the next one.
 * More than PENDING_LIMIT bytes not yet written is backpressure (`write` returns false, wait for
 * `drained`), never unbounded memory. Files are created 0600 and reopened on SIGHUP for
 * logrotate, both times through src/util/safe-file.ts (no symlink, hard link or someone else's
 * file; with `--user`, a file created before the switch is handed to the account through its
 * descriptor).
 */
import { closeSync, existsSync, fstatSync, statfsSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import sonicBoom from 'sonic-boom';
import type { SonicBoom as SonicBoomType } from 'sonic-boom';

// sonic-boom is CommonJS; its typings describe a named class that Node's ESM loader does not expose.
const SonicBoom = sonicBoom as unknown as typeof SonicBoomType;
import { CtwatchError, EXIT } from '../util/errors.js';
import { FileRefused, openFile, type FileOwner } from '../util/safe-file.js';

export interface Output {
  readonly path: string;
  /** one or more whole lines, each ending in a newline, as text or as UTF-8 bytes (which must not
   * change afterwards). False when the buffer is over its limit: await drained() before writing more */
  write(lines: string | Uint8Array): boolean;
  drained(): Promise<void>;
  reopen(): void;
  /** flush everything written so far and close */
  end(): Promise<void>;
  /** write and reopen errors so far, counted when they happen (onError hears of a write error on
   * the next tick, and always before end() resolves) */
  readonly errors: number;
  /** whether lines are written in the background (libuv's pool) rather than on the calling
   * thread: a pipe, terminal or socket, a file on a file system that is not a local one, or
   * a file whose writes were once slow (which stays so across reopens) */
  readonly background: boolean;
}

/** Bytes handed over but not yet written beyond which the caller waits. Not sonic-boom's own mark
 * (16 KiB without a minimum length): a batch's lines alone exceed it, and waiting for every write
 * to finish before taking the next batch would stall the pipeline on each one. */
const PENDING_LIMIT = 4 * 1024 * 1024;

/** ms one write to a file may hold the thread before the output moves to background writes: a
 * local file system answers in well under 1 ms (bench/README.md); more is a remote, stuck or
 * overloaded one. Moving is safe either way: background writes are how every pipe is written. */
export const SLOW_WRITE_MS = 10;
/** ms of writes on this thread within one second beyond which the output moves too: a disk that
 * holds many writes just under SLOW_WRITE_MS is as bad as one over it. Wall time, so it counts a
 * thread preempted mid-write as well: at the benchmark's ceiling, on 2 cores shared with the load,
 * 50 ms was reached by a healthy ext4 (bench/README.md), 200 ms is a fifth of the thread's second. */
const WRITE_BUDGET_MS = 200;

/** statfs f_type of the file systems whose writes are written on this thread: local disks and
 * memory. Anything else (NFS, SMB, FUSE, 9p, Ceph, ...) can hold a write for as long as its
 * server takes, and is written in the background from the start. */
const LOCAL_FILE_SYSTEMS = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
  0xca451a4e, // bcachefs
  0x3153464a, // jfs
  0x52654973, // reiserfs
  0x794c7630, // overlayfs (a container's writable layer)
]);

export interface OutputOptions {
  /** `--user`: a file created now (as root, before the switch) is handed to this account */
  owner?: FileOwner;
  /** warned once when slow writes moved a file's writes to the background */
  log?: { warn(fields: object, message: string): void };
  /** instead of SLOW_WRITE_MS (tests) */
  slowWriteMs?: number;
}

/** One line for a file that cannot be opened: the reason, and what to do. */
function cannotWrite(path: string, err: unknown): CtwatchError {
  if (!(err instanceof FileRefused)) throw err;
  const why =
    err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied'
      : err.code === 'ENOENT' ? (existsSync(dirname(resolve(path))) ? 'files cannot be created there' : 'directory does not exist')
        : err.code === 'EISDIR' ? 'is a directory'
          : err.code === 'EROFS' ? 'read-only file system'
            : err.reason;
  return new CtwatchError('ERR_OUTPUT', `cannot write ${path}: ${why} (${err.advice ?? 'choose a writable --output, or - for stdout'})`, { errno: err.errno, exitCode: EXIT.cantCreate });
}

function openFd(path: string, owner: FileOwner | undefined): number {
  try {
    return openFile(path, { access: 'append', mode: 0o600, owner }).fd;
  } catch (err) {
    throw cannotWrite(path, err);
  }
}

/**
 * Whether fd is written on this thread: a regular file on a local file system. Asked of the
 * descriptor (fstat, and statfs through /proc/self/fd, which names the open file, not a path
 * someone could swap). When either cannot say, the answer is no.
 */
function writesInline(fd: number): boolean {
  try {
    return fstatSync(fd).isFile() && LOCAL_FILE_SYSTEMS.has(statfsSync(`/proc/self/fd/${fd}`).type);
  } catch {
    return false;
  }
}

export function openOutput(path: string, onError: (err: CtwatchError) => void, o: OutputOptions = {}): Output {
  const toStdout = path === '-' || path === '';
  if (!toStdout && /^\/(proc|sys)(\/|$)/.test(resolve(path))) {
    // Kernel interface files accept an open for append and then fail every write (EIO).
    throw new CtwatchError('ERR_OUTPUT', `cannot write ${path}: /proc and /sys hold kernel interface files, not data (choose a writable --output, or - for stdout)`, { exitCode: EXIT.cantCreate });
  }
  // Opened now, so a bad path fails at once with one clear line, not later inside an asynchronous
  // write; and before --user, so the file can be handed over through its descriptor.
  // Bytes, not text: the hot path writes lines as bytes (src/recording/line-buffer.ts), and in text
  // mode sonic-boom measures its whole pending string on every write (a flattening each time).
  // minLength 0: a line waiting for a chunk to fill is latency (64 KiB is 8 ms of flow lines at
  // 25 000 flows/s), and a batch is already many lines.
  /** bytes handed to the background writer and not yet written */
  let pending = 0;
  const slowMs = o.slowWriteMs ?? SLOW_WRITE_MS;
  /** once writes were slow, a reopened file (on the same file system, as a rule) is written in
   * the background too: one stall is enough */
  let slow = false;
  let errors = 0;
  /** write errors counted but not told yet */
  const unreported: NodeJS.ErrnoException[] = [];
  const tell = () => {
    for (const err of unreported.splice(0)) report(err);
  };
  const onWriteError = (err: NodeJS.ErrnoException) => {
    errors++;
    // A write on this thread fails inside write(): the caller hears of it as of a background
    // write, after the batch it is writing, not in the middle of it; end() tells it first.
    unreported.push(err);
    process.nextTick(tell);
  };
  const report = (err: NodeJS.ErrnoException) => {
    // EPIPE on stdout: the reader (e.g. `| head`) went away; that is the end, not a failure.
    if (err.code === 'EPIPE') {
      onError(new CtwatchError('ERR_OUTPUT_CLOSED', 'output closed by the reader', { exitCode: EXIT.ok }));
      return;
    }
    onError(new CtwatchError('ERR_OUTPUT', `writing ${toStdout ? 'stdout' : path} failed: ${err.code ?? err.message}${err.code === 'ENOSPC' ? ' (the disk is full: free space or choose another --output)' : ' (choose a writable --output, or - for stdout)'}`, { errno: err.errno, exitCode: EXIT.ioErr }));
  };
  /** A background writer (sonic-boom, asynchronous) of fd. Not sonic-boom's synchronous mode for
   * the other case: it sleeps the thread on EAGAIN until the write succeeds, and counts a write
   * finished in several parts as its first part only. */
  const backgroundFor = (fd: number): SonicBoomType => {
    const b = new SonicBoom({ fd, minLength: 0, maxWrite: 1024 * 1024, sync: false, contentMode: 'buffer' });
    b.on('write', (n: number) => {
      if (b === current.boom) pending -= n;
    });
    b.on('error', onWriteError);
    return b;
  };
  /** The descriptor written now, and its background writer; none while it is written on this thread. */
  interface Writer {
    fd: number;
    boom: SonicBoomType | undefined;
  }
  const writerFor = (fd: number): Writer => ({ fd, boom: !slow && writesInline(fd) ? undefined : backgroundFor(fd) });
  let current: Writer = writerFor(toStdout ? 1 : openFd(path, o.owner));
  /** this second's ms of writes on this thread, from when it began */
  let budgetSince = 0;
  let budgetMs = 0;
  const toBackground = (ms: number) => {
    slow = true;
    current.boom = backgroundFor(current.fd);
    const held = Math.round(ms);
    o.log?.warn({ ms: held }, `writing the output held the collector for ${held} ms (a remote or overloaded file system?): writing it in the background from now on`);
  };
  /** Writes all of bytes on this thread; a slow write, or a file system that answers as a remote
   * one does, moves the output (with what is left of bytes) to the background. */
  const writeHere = (bytes: Uint8Array): void => {
    const started = performance.now();
    let at = 0;
    try {
      // a write may take part of the bytes (a full disk's last blocks, a signal): the rest follows
      while (at < bytes.length) at += writeSync(current.fd, bytes, at, bytes.length - at);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'EAGAIN' && e.code !== 'EBUSY' && e.code !== 'EINTR') {
        onWriteError(e);
        return;
      }
      // not what a local file answers: the background writer retries without holding the thread
      toBackground(performance.now() - started);
      pending += bytes.length - at;
      current.boom!.write(bytes.subarray(at) as never);
      return;
    }
    const now = performance.now();
    const ms = now - started;
    if (now - budgetSince >= 1000) {
      budgetSince = now;
      budgetMs = 0;
    }
    budgetMs += ms;
    if (ms > slowMs || budgetMs > WRITE_BUDGET_MS) toBackground(ms > slowMs ? ms : budgetMs);
  };
  /** Flushes and closes one writer's descriptor (never stdout's); resolves even when the flush
   * fails (the error is reported). */
  const finish = (w: Writer): Promise<void> => {
    const b = w.boom;
    if (b === undefined) {
      // written on this thread: nothing is pending
      if (!toStdout) {
        try {
          closeSync(w.fd);
        } catch (err) {
          onWriteError(err as NodeJS.ErrnoException);
        }
      }
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const close = () => {
        // After a write error sonic-boom never completes a flush or an end: what is buffered
        // cannot be written anyway (the error has been reported), so let go at once.
        try {
          b.destroy();
        } catch {
          /* already closed */
        }
        resolve();
      };
      if (errors > 0) return close();
      const end = () => {
        if (errors > 0 || toStdout) return toStdout ? resolve() : close();
        b.once('close', () => resolve());
        b.once('error', close);
        b.end();
      };
      try {
        b.flush((err) => (err ? close() : end()));
      } catch {
        end();
      }
    });
  };
  let retiring: Promise<void> = Promise.resolve();
  return {
    path: toStdout ? '-' : path,
    get errors() {
      return errors;
    },
    get background() {
      return current.boom !== undefined;
    },
    write(lines: string | Uint8Array): boolean {
      if (errors > 0) return true; // reported once; the caller is stopping
      const bytes = typeof lines === 'string' ? Buffer.from(lines) : lines;
      if (current.boom === undefined) {
        writeHere(bytes);
        return pending < PENDING_LIMIT;
      }
      pending += bytes.length;
      current.boom.write(bytes as never);
      return pending < PENDING_LIMIT;
    },
    drained(): Promise<void> {
      // After an error nothing will drain: the caller stops on the error it was given.
      const b = current.boom;
      if (errors > 0 || b === undefined || pending < PENDING_LIMIT / 2) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          b.off('write', wrote);
          b.off('drain', done);
          b.off('error', done);
          resolve();
        };
        // half the limit written away, or all of it, or the writer replaced (SIGHUP) or failed
        const wrote = () => {
          if (b !== current.boom || pending < PENDING_LIMIT / 2) done();
        };
        b.on('write', wrote);
        b.once('drain', done);
        b.once('error', done);
      });
    },
    reopen(): void {
      // logrotate renamed the file: open the path again, with the same checks, and let the old
      // writer flush into the renamed file and close.
      if (toStdout || errors > 0) return;
      let fd: number;
      try {
        fd = openFd(path, undefined);
      } catch (err) {
        errors++;
        onError(err as CtwatchError);
        return;
      }
      const old = current;
      pending = 0;
      current = writerFor(fd);
      retiring = Promise.all([retiring, finish(old)]).then(() => {});
      // a writer waiting in drained() on the old one is released when it has flushed
    },
    async end(): Promise<void> {
      tell();
      await Promise.all([retiring, finish(current)]);
      tell();
    },
  };
}

