/**
 * Who may use a spool directory: one process at a time (flock(2) on `lock`, released by the kernel
 * when the holder dies), and the refusals, in one line, when a spool cannot be used.
 */
import { closeSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { FileRefused, lockFd, openFile } from '../util/safe-file.js';

/** A spool that cannot be used, in one line (the reason names the path; the code says the kind). */
export class SpoolError extends Error {
  constructor(
    message: string,
    /** ERR_SPOOL_BUSY, ERR_UNSAFE_PATH, ERR_UNSAFE_FILE, or an errno name */
    readonly code: string,
  ) {
    super(message);
    this.name = 'SpoolError';
  }
}

/** An error in one line: a refusal as it reads, a full disk in words, an errno with its name. */
export function describeError(err: unknown): string {
  if (err instanceof FileRefused) return err.message;
  const e = err as NodeJS.ErrnoException;
  return e.code === 'ENOSPC' ? 'the disk is full (ENOSPC)' : e.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
}

/** flock on `dir/lock`, kept for the life of the spool (the descriptor is returned, open). */
export function takeLock(dir: string): number {
  let fd: number;
  try {
    fd = openFile(join(dir, 'lock'), { access: 'read-write', create: true, mode: 0o600 }).fd;
  } catch (err) {
    throw refused(dir, err);
  }
  let held: boolean;
  try {
    held = lockFd(fd);
  } catch (err) {
    closeSync(fd);
    throw refused(dir, err);
  }
  if (!held) {
    const buf = Buffer.alloc(32);
    let pid = '';
    try {
      pid = buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, 0)).trim();
    } catch {
      /* the pid is only a hint */
    }
    closeSync(fd);
    throw new SpoolError(`spool ${dir} is in use by another ctwatch${/^\d+$/.test(pid) ? ` (pid ${pid})` : ''}: stop it, or give this sink its own spool dir`, 'ERR_SPOOL_BUSY');
  }
  try {
    // for people reading the directory; the lock itself is the flock
    const text = Buffer.from(`${process.pid}\n`);
    ftruncateSync(fd, 0);
    writeSync(fd, text, 0, text.length, 0);
  } catch {
    /* a full disk: the lock is held all the same */
  }
  return fd;
}

/** Any failure to use the spool at `dir`, as a SpoolError naming it. */
export function refused(dir: string, err: unknown): SpoolError {
  if (err instanceof SpoolError) return err;
  if (err instanceof FileRefused) return new SpoolError(`spool ${dir}: ${err.message}`, err.code);
  const e = err as NodeJS.ErrnoException;
  return new SpoolError(`spool ${dir}: ${describeError(err)}`, e?.code ?? 'EIO');
}
