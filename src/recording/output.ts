/**
 * Where data lines go: stdout or a file. A regular file is written at once, on this thread: a
 * write(2) into the page cache costs a few µs, and handing it to the libuv pool instead cost the
 * process more than the write (a worker woken, scheduled and put back to sleep per write, and the
 * completion's callback): at 50 000 events/s, 7-14 % of the collector's CPU (bench/README.md,
 * "Flow lines written where they are made"). A single write that takes longer than SLOW_WRITE_MS (a
 * remote or overloaded file system) moves that output to the background for good, said once.
 * Pipes, terminals and sockets are always written in the background (sonic-boom, asynchronous):
 * a reader that stops reading must not stop the collector. There, lines are written as soon as
 * the previous write is done, so what arrives meanwhile goes out together in the next one.
 * More than PENDING_LIMIT bytes not yet written is backpressure (`write` returns false, wait for
 * `drained`), never unbounded memory. Files are created 0600 and reopened on SIGHUP for
 * logrotate, both times through src/util/safe-file.ts (no symlink, hard link or someone else's
 * file; with `--user`, a file created before the switch is handed to the account through its
 * descriptor).
 */
import { existsSync, fstatSync } from 'node:fs';
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
  /** write errors so far */
  readonly errors: number;
  /** whether lines are written in the background (libuv's pool) rather than on the calling
   * thread: a pipe, terminal or socket, or a file whose write was once slow */
  readonly background: boolean;
}

/** Bytes handed over but not yet written beyond which the caller waits. Not sonic-boom's own mark
 * (16 KiB without a minimum length): a batch's lines alone exceed it, and waiting for every write
 * to finish before taking the next batch would stall the pipeline on each one. */
const PENDING_LIMIT = 4 * 1024 * 1024;

/** ms one write to a regular file may hold the thread before the output moves to background
 * writes: a local file system answers in well under 1 ms; more is a remote or overloaded one. */
export const SLOW_WRITE_MS = 10;

export interface OutputOptions {
  /** `--user`: a file created now (as root, before the switch) is handed to this account */
  owner?: FileOwner;
  /** told once when a slow write moved a file's writes to the background: how long it took */
  onSlowWrite?: (ms: number) => void;
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

/** A descriptor and whether it is written on this thread: only a regular file is (fstat, never
 * the path: the descriptor is what is written). */
function writerFor(fd: number): [number, boolean] {
  let regular = false;
  try {
    regular = fstatSync(fd).isFile();
  } catch {
    /* not a descriptor fstat knows: written in the background, which reports what fails */
  }
  return [fd, regular];
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
  /** bytes handed to the current writer and not yet written */
  let pending = 0;
  const slowMs = o.slowWriteMs ?? SLOW_WRITE_MS;
  /** whether the current writer writes on this thread (a regular file that has not been slow) */
  let inline = false;
  /** the current writer's descriptor */
  let boomFd = -1;
  const boomFor = (fd: number, sync: boolean) => {
    const b = new SonicBoom({ fd, minLength: 0, maxWrite: 1024 * 1024, sync, contentMode: 'buffer' });
    b.on('write', (n: number) => {
      if (b === boom) pending -= n;
    });
    b.on('error', onWriteError);
    inline = sync;
    boomFd = fd;
    return b;
  };
  let errors = 0;
  const onWriteError = (err: NodeJS.ErrnoException) => {
    errors++;
    // A synchronous write fails inside write(): the caller hears of it as it would of a background
    // write, after the batch it is writing, not in the middle of it.
    process.nextTick(report, err);
  };
  const report = (err: NodeJS.ErrnoException) => {
    // EPIPE on stdout: the reader (e.g. `| head`) went away; that is the end, not a failure.
    if (err.code === 'EPIPE') {
      onError(new CtwatchError('ERR_OUTPUT_CLOSED', 'output closed by the reader', { exitCode: EXIT.ok }));
      return;
    }
    onError(new CtwatchError('ERR_OUTPUT', `writing ${toStdout ? 'stdout' : path} failed: ${err.code ?? err.message}${err.code === 'ENOSPC' ? ' (the disk is full: free space or choose another --output)' : ' (choose a writable --output, or - for stdout)'}`, { errno: err.errno, exitCode: EXIT.ioErr }));
  };
  let boom: SonicBoomType = boomFor(...writerFor(toStdout ? 1 : openFd(path, o.owner)));
  /** Flushes and closes one writer; resolves even when the flush fails (the error is reported). */
  const finish = (b: SonicBoomType): Promise<void> =>
    new Promise((resolve) => {
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
  let retiring: Promise<void> = Promise.resolve();
  return {
    path: toStdout ? '-' : path,
    get errors() {
      return errors;
    },
    get background() {
      return !inline;
    },
    write(lines: string | Uint8Array): boolean {
      if (errors > 0) return true; // reported once; the caller is stopping
      const bytes = typeof lines === 'string' ? Buffer.from(lines) : lines;
      pending += bytes.length;
      if (!inline) {
        boom.write(bytes as never);
        return pending < PENDING_LIMIT;
      }
      const started = performance.now();
      boom.write(bytes as never);
      const ms = performance.now() - started;
      if (ms > slowMs && errors === 0) {
        // The synchronous writer has nothing pending now (its write returned): a background one
        // takes the same descriptor over. The old one is left as it is, never ended, so the
        // descriptor is closed once, by the writer that holds it now.
        boom = boomFor(boomFd, false);
        pending = 0;
        o.onSlowWrite?.(ms);
      }
      return pending < PENDING_LIMIT;
    },
    drained(): Promise<void> {
      // After an error nothing will drain: the caller stops on the error it was given.
      if (errors > 0) return Promise.resolve();
      const b = boom;
      return new Promise((resolve) => {
        const done = () => {
          b.off('write', wrote);
          b.off('drain', done);
          b.off('error', done);
          resolve();
        };
        // half the limit written away, or all of it, or the writer replaced (SIGHUP) or failed
        const wrote = () => {
          if (b !== boom || pending < PENDING_LIMIT / 2) done();
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
      const old = boom;
      boom = boomFor(...writerFor(fd));
      pending = 0;
      retiring = Promise.all([retiring, finish(old)]).then(() => {});
      // a writer waiting in drained() on the old one is released when it has flushed
    },
    async end(): Promise<void> {
      await Promise.all([retiring, finish(boom)]);
    },
  };
}

/** The one warning of an output that moved to background writes (OutputOptions.onSlowWrite). */
export function slowWriteSaid(log: { warn(fields: object, message: string): void }): (ms: number) => void {
  return (ms) => log.warn({ ms: Math.round(ms) }, `a write to the output took ${Math.round(ms)} ms (a remote or overloaded file system?): writing it in the background from now on`);
}
