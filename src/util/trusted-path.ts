/**
 * The way to a file (src/util/safe-file.ts's header says who we defend against and why): the walk
 * from `/` that trusts a directory only when root or ourselves alone can change it, the refusals
 * in the operator's words, and the account names they use.
 */
import { lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** The account files are handed to (`--user`): the same shape as privileges.ts's Account. */
export interface FileOwner {
  name: string;
  uid: number;
  gid: number;
}

/** A file or directory ctwatch will not use, and why in the operator's words. */
export class FileRefused extends Error {
  constructor(
    /** what is wrong, naming the path */
    readonly reason: string,
    /** an errno name (ENOENT, EACCES, ELOOP, ...) or ERR_UNSAFE_PATH / ERR_UNSAFE_FILE */
    readonly code: string,
    /** what to do about it, when the reason alone does not say */
    readonly advice?: string,
    readonly errno?: number,
  ) {
    super(advice ? `${reason} (${advice})` : reason);
    this.name = 'FileRefused';
  }
}

export function euid(): number {
  return process.geteuid?.() ?? 0;
}

/** root and ourselves: the only ones trusted to change a directory on the way to a file */
export function ours(uid: number): boolean {
  return uid === 0 || uid === euid();
}

/** `nobody (uid 65534)`, or `uid 1234` when /etc/passwd does not know it */
export function describeUid(uid: number): string {
  const name = lookupId('/etc/passwd', uid);
  return name ? `${name} (uid ${uid})` : `uid ${uid}`;
}

export function describeGid(gid: number): string {
  const name = lookupId('/etc/group', gid);
  return name ? `${name} (gid ${gid})` : `gid ${gid}`;
}

export function lookupId(file: string, id: number): string | undefined {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && Number(f[2]) === id) return f[0];
    }
  } catch {
    /* a name is only a nicety */
  }
  return undefined;
}

export function describeKind(st: Stats): string {
  return st.isFile() ? 'a regular file'
    : st.isDirectory() ? 'a directory'
      : st.isSymbolicLink() ? 'a symbolic link'
        : st.isFIFO() ? 'a FIFO'
          : st.isSocket() ? 'a socket'
            : st.isCharacterDevice() ? 'a character device'
              : st.isBlockDevice() ? 'a block device' : 'not a regular file';
}

/** Why entries of `dir` can be changed by someone other than root and us; undefined when they cannot. */
export function changeableBy(dir: string, st: Stats, entry: Stats | undefined): string | undefined {
  if (!ours(st.uid)) return `${dir} belongs to ${describeUid(st.uid)}`;
  // No exemption for group root: with a POSIX ACL the group bits are the ACL's mask, so a
  // root:root 0775 directory may be writable by a named account (setfacl -m u:alice:rwx).
  const groupWrite = (st.mode & 0o020) !== 0;
  const otherWrite = (st.mode & 0o002) !== 0;
  if (!groupWrite && !otherWrite) return undefined;
  // Sticky (/tmp): only an entry's owner (or the directory's) may rename or remove it. An entry
  // still to be created is ours once O_EXCL or mkdir succeeds.
  if ((st.mode & 0o1000) !== 0 && (entry === undefined || ours(entry.uid))) return undefined;
  return otherWrite ? `${dir} is writable by every account` : `${dir} is writable by group ${describeGid(st.gid)}`;
}

export function errnoRefusal(err: unknown, path: string): FileRefused {
  const e = err as NodeJS.ErrnoException;
  const reason =
    e.code === 'ENOENT' ? `${path} does not exist`
      : e.code === 'EACCES' || e.code === 'EPERM' ? `permission denied on ${path}`
        : e.code === 'ELOOP' ? `${path} is a symbolic link, and ctwatch follows none where it writes`
          : e.code === 'EISDIR' ? `${path} is a directory`
            : e.code === 'ENOTDIR' ? `a part of ${path} is not a directory`
              : e.code === 'ENXIO' ? `${path} is a FIFO or socket, not a regular file`
                : e.code === 'EROFS' ? `${path} is on a read-only file system`
                  : e.code === 'ENOSPC' ? `the disk holding ${path} is full`
                    : `${path}: ${e.code ?? e.message}`;
  const advice = e.code === 'ELOOP' ? 'remove it, or name the file it points to' : undefined;
  return new FileRefused(reason, e.code ?? 'EIO', advice, e.errno);
}

/**
 * The real path of directory `path` (no symlinks left in it), after checking that nobody but root
 * and ourselves can change the way to it (see the header). Throws FileRefused.
 */
export function trustedDirectory(path: string): string {
  const queue = resolve(path).split('/').filter(Boolean);
  let real = '/';
  let realSt = lstatSync('/');
  let links = 0;
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      // `real` has no symlinks in it, so its parent is what the kernel's `..` would reach
      real = dirname(real);
      realSt = lstatSync(real);
      continue;
    }
    const entry = join(real, name);
    let st: Stats;
    try {
      st = lstatSync(entry);
    } catch (err) {
      throw errnoRefusal(err, entry);
    }
    const why = changeableBy(real, realSt, st);
    if (why) {
      throw new FileRefused(`${why}, who could put something else at ${entry}`, 'ERR_UNSAFE_PATH', 'use a directory whose parents only root can change');
    }
    if (st.isSymbolicLink()) {
      if (++links > 40) throw new FileRefused(`too many symbolic links on the way to ${path}`, 'ELOOP');
      const target = readlinkSync(entry);
      if (target.startsWith('/')) {
        real = '/';
        realSt = lstatSync('/');
      }
      queue.unshift(...target.split('/').filter(Boolean));
      continue;
    }
    if (!st.isDirectory()) throw new FileRefused(`${entry} is ${describeKind(st)}, not a directory`, 'ENOTDIR');
    real = entry;
    realSt = st;
  }
  return real;
}
