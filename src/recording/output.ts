/**
 * Where data lines go: stdout or a file. Lines are buffered and written in large chunks
 * (sonic-boom); a full buffer is backpressure (`write` returns false, wait for `drained`), never
 * unbounded memory. Files are created 0600 and reopened on SIGHUP for logrotate.
 */
import { closeSync, existsSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import sonicBoom from 'sonic-boom';
import type { SonicBoom as SonicBoomType } from 'sonic-boom';

// sonic-boom is CommonJS; its typings describe a named class that Node's ESM loader does not expose.
const SonicBoom = sonicBoom as unknown as typeof SonicBoomType;
import { CtwatchError, EXIT } from '../util/errors.js';

export interface Output {
  readonly path: string;
  /** one or more whole lines, each ending in a newline. False when the buffer is over its
   * limit: await drained() before writing more */
  write(lines: string): boolean;
  drained(): Promise<void>;
  reopen(): void;
  /** flush everything written so far and close */
  end(): Promise<void>;
  /** bytes written (handed to the kernel) so far, and write errors */
  readonly errors: number;
}

/** Lines sit in memory at most this long before they are written (a quiet table still shows up
 * in the file promptly; a busy one is written in 64 KiB chunks). */
const FLUSH_MS = 1000;

export function openOutput(path: string, onError: (err: CtwatchError) => void): Output {
  const toStdout = path === '-' || path === '';
  if (!toStdout && /^\/(proc|sys)(\/|$)/.test(resolve(path))) {
    // Kernel interface files accept an open for append and then fail every write (EIO).
    throw new CtwatchError('ERR_OUTPUT', `cannot write ${path}: /proc and /sys hold kernel interface files, not data (choose a writable --output, or - for stdout)`, { exitCode: EXIT.cantCreate });
  }
  if (!toStdout) {
    // Open once ourselves first so a bad path fails now with one clear line, not later
    // inside an asynchronous write.
    try {
      closeSync(openSync(path, 'a', 0o600));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why =
        e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied'
          : e.code === 'ENOENT' ? (existsSync(dirname(path)) ? 'files cannot be created there' : 'directory does not exist')
            : e.code === 'EISDIR' ? 'is a directory'
              : e.code === 'EROFS' ? 'read-only file system'
                : e.code ?? e.message;
      throw new CtwatchError('ERR_OUTPUT', `cannot write ${path}: ${why} (choose a writable --output, or - for stdout)`, { errno: e.errno, exitCode: EXIT.cantCreate });
    }
  }
  const boom = toStdout
    ? new SonicBoom({ fd: 1, minLength: 64 * 1024, maxWrite: 1024 * 1024, periodicFlush: FLUSH_MS, sync: false })
    : new SonicBoom({ dest: path, append: true, mode: 0o600, minLength: 64 * 1024, maxWrite: 1024 * 1024, periodicFlush: FLUSH_MS, sync: false });
  let errors = 0;
  boom.on('error', (err: NodeJS.ErrnoException) => {
    errors++;
    // EPIPE on stdout: the reader (e.g. `| head`) went away; that is the end, not a failure.
    if (err.code === 'EPIPE') {
      onError(new CtwatchError('ERR_OUTPUT_CLOSED', 'output closed by the reader', { exitCode: EXIT.ok }));
      return;
    }
    onError(new CtwatchError('ERR_OUTPUT', `writing ${toStdout ? 'stdout' : path} failed: ${err.code ?? err.message}${err.code === 'ENOSPC' ? ' (the disk is full: free space or choose another --output)' : ' (choose a writable --output, or - for stdout)'}`, { errno: err.errno, exitCode: EXIT.ioErr }));
  });
  return {
    path: toStdout ? '-' : path,
    get errors() {
      return errors;
    },
    write(lines: string): boolean {
      if (errors > 0) return true; // reported once; the caller is stopping
      return boom.write(lines);
    },
    drained(): Promise<void> {
      // After an error nothing will drain: the caller stops on the error it was given.
      if (errors > 0) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          boom.off('drain', done);
          boom.off('error', done);
          resolve();
        };
        boom.once('drain', done);
        boom.once('error', done);
      });
    },
    reopen(): void {
      if (!toStdout) boom.reopen();
    },
    end(): Promise<void> {
      // After a write error sonic-boom never completes a flush: what is buffered cannot be
      // written anyway (the error has been reported), so let go at once.
      if (errors > 0) {
        try {
          boom.destroy();
        } catch {
          /* already closed */
        }
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        const finish = () => {
          if (toStdout) resolve();
          else {
            boom.once('close', () => resolve());
            boom.end();
          }
        };
        try {
          boom.flush(() => finish());
        } catch {
          finish();
        }
      });
    },
  };
}
