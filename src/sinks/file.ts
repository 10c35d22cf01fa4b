/**
 * File transport: one formatted record per line, rotated by size and/or on UTC-aligned time
 * boundaries, rotated files optionally gzipped, reopen() for SIGHUP after an external logrotate.
 * Files are created 0600: flow records say who talked to whom.
 *
 * Every file it writes (the live file, a rotated file's .gz) is opened by src/util/safe-file.ts as
 * `-o` is: no symlink followed, only a regular file with one link and our owner, created O_EXCL,
 * mode set on the descriptor; the file gzip reads is opened the same way. Renames and unlinks act
 * on directory entries, never on what they point to. With `--user`, prepare(owner) creates the
 * live file for that account before the switch; everything after is done as the account.
 */
import { close, createReadStream, createWriteStream, write } from 'node:fs';
import { lstat, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type FileOwner, openFile } from '../util/safe-file.js';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { SinkRecord } from '../formats/common.js';
import { type SinkLogger, type Transport, silentLogger } from './types.js';

export interface FileTransportOptions {
  path: string;
  /** rotate before the file would pass this size (bytes) */
  maxBytes?: number;
  /** rotate when a UTC-aligned interval boundary passes (ms, e.g. 3_600_000 for hourly) */
  intervalMs?: number;
  /** gzip rotated files */
  gzip?: boolean;
  /** rotated files to keep (oldest removed first); default: keep all */
  maxFiles?: number;
  /** mode for created files (default 0600) */
  mode?: number;
  now?: () => number;
  /** where a failed compression or pruning of a rotated file is said (the sink's logger) */
  logger?: SinkLogger;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
}

export class FileTransport implements Transport {
  readonly description: string;
  private fd: number | null = null;
  private size = 0;
  private openedAt = 0;
  private reopenRequested = false;
  private readonly background = new Set<Promise<void>>();
  private readonly now: () => number;
  /** the live file's real path, as the safe open reached it: rotation and pruning act there */
  private livePath: string;

  constructor(private readonly o: FileTransportOptions) {
    this.description = `file ${o.path}`;
    this.now = o.now ?? Date.now;
    this.livePath = o.path;
  }

  encode(_rec: SinkRecord, line: string): string {
    return line;
  }

  /**
   * Opens (creates) the live file now, with the same checks as every later open; `owner`: root
   * creates it for the `--user` account, through the descriptor, before the switch. Throws
   * FileRefused (one line) when the path is not safe to write.
   */
  prepare(owner?: FileOwner): void {
    if (this.fd !== null) return;
    this.openNow(owner);
  }

  private openNow(owner?: FileOwner): number {
    const f = openFile(this.o.path, { access: 'append', mode: this.o.mode ?? 0o600, owner });
    this.fd = f.fd;
    this.livePath = f.path;
    this.size = f.size;
    this.openedAt = this.now();
    return f.fd;
  }

  private async ensureOpen(): Promise<number> {
    if (this.reopenRequested) {
      this.reopenRequested = false;
      await this.closeFile();
    }
    return this.fd ?? this.openNow();
  }

  private async closeFile(): Promise<void> {
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) await new Promise<void>((resolve) => close(fd, () => resolve()));
  }

  async send(batch: readonly string[]): Promise<void> {
    const buf = Buffer.from(batch.join('\n') + '\n', 'utf8');
    await this.ensureOpen();
    const now = this.now();
    const iv = this.o.intervalMs;
    const bySize = this.o.maxBytes !== undefined && this.size > 0 && this.size + buf.length > this.o.maxBytes;
    const byTime = iv !== undefined && this.size > 0 && Math.floor(now / iv) !== Math.floor(this.openedAt / iv);
    if (bySize || byTime) await this.rotate();
    const fd = await this.ensureOpen();
    let off = 0;
    while (off < buf.length) {
      off += await new Promise<number>((resolve, reject) => write(fd, buf, off, buf.length - off, null, (err, n) => (err ? reject(err) : resolve(n))));
    }
    this.size += buf.length;
  }

  private async rotate(): Promise<void> {
    await this.closeFile();
    let target = `${this.livePath}.${stamp(this.now())}`;
    for (let i = 1; await exists(target) || await exists(`${target}.gz`); i++) {
      target = `${this.livePath}.${stamp(this.now())}-${i}`;
    }
    await rename(this.livePath, target);
    if (this.o.gzip) this.track(this.compress(target), target);
    else this.track(this.prune());
  }

  private track(p: Promise<void>, file?: string): void {
    // A rotated file that cannot be compressed or pruned keeps its lines (it stays as it is); the
    // operator is told once per failure, which file and why, since nobody waits on this promise.
    const q = p
      .catch((err: unknown) => {
        const logger = this.o.logger ?? silentLogger;
        logger.error({ sink: this.description, file: file ?? dirname(this.o.path), err: err instanceof Error ? err.message : String(err) },
          file ? 'rotated file could not be compressed: it is kept uncompressed' : 'old rotated files could not be removed: they are kept');
      })
      .finally(() => this.background.delete(q));
    this.background.add(q);
  }

  private async compress(file: string): Promise<void> {
    // both ends checked on their descriptors: the rotated name could have been swapped for a link
    const from = openFile(file, { access: 'read', create: false });
    let to: number;
    try {
      to = openFile(`${file}.gz`, { access: 'append', exclusive: true, mode: this.o.mode ?? 0o600 }).fd;
    } catch (err) {
      await new Promise<void>((resolve) => close(from.fd, () => resolve()));
      throw err;
    }
    await pipeline(createReadStream('', { fd: from.fd }), createGzip(), createWriteStream('', { fd: to }));
    await unlink(file);
    await this.prune();
  }

  private async prune(): Promise<void> {
    if (this.o.maxFiles === undefined) return;
    const dir = dirname(this.livePath);
    const prefix = `${basename(this.livePath)}.`;
    const named = (await readdir(dir)).filter((n) => n.startsWith(prefix) && /^\d{8}T\d{9}Z/.test(n.slice(prefix.length)));
    // Only files we rotated count: in a shared (sticky) directory another account could create
    // names that sort as newest, and pruning would then remove our real rotated files.
    const uid = process.geteuid?.() ?? 0;
    const rotated: string[] = [];
    for (const n of named) {
      const st = await lstat(join(dir, n)).catch(() => undefined);
      if (st?.isFile() && st.uid === uid) rotated.push(n);
    }
    rotated.sort();
    for (const n of rotated.slice(0, Math.max(0, rotated.length - this.o.maxFiles))) {
      await unlink(join(dir, n)).catch(() => {});
    }
  }

  /** After an external rotation (logrotate renamed the file): write to a fresh file at path. */
  reopen(): void {
    this.reopenRequested = true;
  }

  /** Wait for background compression (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.background.size) await Promise.all([...this.background]);
  }

  async close(): Promise<void> {
    await this.closeFile();
    await this.settle();
  }
}

/** whether the entry exists (a dangling link too: lstat, never following it) */
async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}
