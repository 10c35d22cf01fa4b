/**
 * Where data lines go: stdout or a file. Lines are written as soon as the previous write is done
 * (sonic-boom, asynchronous): what arrives while a write is under way goes out together in the next
 * one, so a busy table is written in large chunks and a quiet one without delay. More than
 * PENDING_LIMIT bytes not yet written is backpressure (`write` returns false, wait for `drained`),
 * never unbounded memory. Files are created 0600 and reopened on SIGHUP for logrotate, both times through
 * src/util/safe-file.ts (no symlink, hard link or someone else's file; with `--user`, a file
 * created before the switch is handed to the account through its descriptor).
 */
import { existsSync } from 'node:fs';
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
  /** bytes written (handed to the kernel) so far, and write errors */
  readonly errors: number;
}

/** Bytes handed over but not yet written beyond which the caller waits. Not sonic-boom's own mark
 * (16 KiB without a minimum length): a batch's lines alone exceed it, and waiting for every write
 * to finish before taking the next batch would stall the pipeline on each one. */
const PENDING_LIMIT = 4 * 1024 * 1024;

export interface OutputOptions {
  /** `--user`: a file created now (as root, before the switch) is handed to this account */
  owner?: FileOwner;
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
  const boomFor = (fd: number) => {
    const b = new SonicBoom({ fd, minLength: 0, maxWrite: 1024 * 1024, sync: false, contentMode: 'buffer' });
    b.on('write', (n: number) => {
      if (b === boom) pending -= n;
    });
    return b;
  };
  let boom: SonicBoomType = boomFor(toStdout ? 1 : openFd(path, o.owner));
  let errors = 0;
  const onWriteError = (err: NodeJS.ErrnoException) => {
    errors++;
    // EPIPE on stdout: the reader (e.g. `| head`) went away; that is the end, not a failure.
    if (err.code === 'EPIPE') {
      onError(new CtwatchError('ERR_OUTPUT_CLOSED', 'output closed by the reader', { exitCode: EXIT.ok }));
      return;
    }
    onError(new CtwatchError('ERR_OUTPUT', `writing ${toStdout ? 'stdout' : path} failed: ${err.code ?? err.message}${err.code === 'ENOSPC' ? ' (the disk is full: free space or choose another --output)' : ' (choose a writable --output, or - for stdout)'}`, { errno: err.errno, exitCode: EXIT.ioErr }));
  };
  boom.on('error', onWriteError);
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
    write(lines: string | Uint8Array): boolean {
      if (errors > 0) return true; // reported once; the caller is stopping
      const bytes = typeof lines === 'string' ? Buffer.from(lines) : lines;
      pending += bytes.length;
      boom.write(bytes as never);
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
      boom = boomFor(fd);
      pending = 0;
      boom.on('error', onWriteError);
      retiring = Promise.all([retiring, finish(old)]).then(() => {});
      // a writer waiting in drained() on the old one is released when it has flushed
    },
    async end(): Promise<void> {
      await Promise.all([retiring, finish(boom)]);
    },
  };
}
