/**
 * Opening files as root without being led astray: every file ctwatch writes (`-o`, file sinks and
 * their rotation and gzip, spool segments, locks and state) is opened here.
 *
 * Who we defend against (SECURITY.md, T1 and T2): ctwatch starts as root, and with `--user` goes on
 * as that account. Other local accounts — the `--user` account among them — may own the directory
 * a file goes in (the README hands the output directory to `--user`), or a directory above it, and
 * can plant symlinks, hard links, FIFOs, devices or files of their own there, or rename things at
 * any moment; logrotate renames files too. Decisions:
 *
 * - The way to a file must be one only root or ourselves can change. Walking the directory path
 *   from `/`, each entry must sit in a directory owned by root or the effective uid and writable by
 *   no one else (group root aside), or, in a sticky directory such as /tmp, be owned by root or the
 *   effective uid (only an entry's owner may rename it there). Symlinks on the way are followed
 *   only when they pass the same test (so their target was chosen by root), and the walk goes on
 *   from the target. What passed cannot change afterwards, so checking by path and then opening by
 *   path is not a race: nobody else can write anything on the way.
 * - The directory that holds the file may belong to anyone: its entries are the untrusted part.
 *   The file itself is opened with O_NOFOLLOW (a planted symlink fails with ELOOP), O_NONBLOCK (a
 *   planted FIFO cannot hang the open), O_NOCTTY, and created with O_CREAT|O_EXCL; libuv adds
 *   O_CLOEXEC to every open. Then fstat on the descriptor: a regular file with one link (a hard
 *   link names someone else's file just as well as a symlink), owned by the effective uid.
 * - Ownership and mode are set with fchown/fchmod on the descriptor, never on a path, and only on a
 *   file this call created: an existing file is never handed to another account (it may be a root
 *   file the account had moved there). `--user` therefore finds its files already its own, or has
 *   ctwatch create them.
 * - Renames and unlinks inside the holding directory act on entries, not on what they point to, so
 *   they need no check: the worst a hostile owner of that directory gets is to move its own files.
 * - Directories ctwatch keeps state in (spools) must be its own: owned by the effective uid (or
 *   created for the `--user` account before the switch), without group or other write, and reached
 *   by a trusted way, because ctwatch works inside them by path.
 *
 * Node's fs gives O_NOFOLLOW, fstat, fchown, fchmod and ftruncate on descriptors; only flock(2) is
 * native (native/files.cc).
 */
import { closeSync, constants as C, fchmodSync, fchownSync, fstatSync, lstatSync, openSync, readSync, readlinkSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { requireAddon } from './addon.js';
import { FileRefused, changeableBy, describeKind, describeUid, errnoRefusal, euid, trustedDirectory, type FileOwner } from './trusted-path.js';

// the way to a file and private directories live next door; this module is their one face
export { FileRefused, describeKind, describeUid, trustedDirectory, type FileOwner } from './trusted-path.js';
export { privateDirectory, privateDirectoryFor, unreachableBy, writableBy } from './private-dir.js';

export interface OpenedFile {
  fd: number;
  /** this call created the file */
  created: boolean;
  /** the path opened: the directory's real path and the file's name */
  path: string;
  size: number;
  dev: number;
  ino: number;
}

export interface OpenOptions {
  /** 'append': write at the end; 'append-read': the same and readable (gzip reads it back);
   * 'read'; 'read-write' (truncating a torn tail) */
  access: 'append' | 'append-read' | 'read' | 'read-write';
  /** create the file when it is missing (default: true for append access) */
  create?: boolean;
  /** fail when it exists (a name that must be new) */
  exclusive?: boolean;
  /** mode of a created file (default 0600); an existing file keeps its mode */
  mode?: number;
  /** root only: a created file is handed to this account (fchown on the descriptor) */
  owner?: FileOwner;
}

const NO_FOLLOW = C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY;
const ACCESS = {
  append: C.O_WRONLY | C.O_APPEND,
  'append-read': C.O_RDWR | C.O_APPEND,
  read: C.O_RDONLY,
  'read-write': C.O_RDWR,
} as const;

/** Checks an open descriptor: a regular file with one link, owned by `uid`. Closes it and throws when not. */
function checkFile(fd: number, path: string, uid: number, created: boolean): Stats {
  const st = fstatSync(fd);
  const fail = (reason: string, advice?: string): never => {
    closeSync(fd);
    throw new FileRefused(reason, 'ERR_UNSAFE_FILE', advice);
  };
  if (!st.isFile()) fail(`${path} is ${describeKind(st)}, not a regular file`);
  // A hard link names someone else's file just as well as a symlink does.
  if (st.nlink !== 1) fail(`${path} has ${st.nlink} hard links, and ctwatch writes only files with one name`, 'remove the other names, or choose another path');
  if (!created && st.uid !== uid) {
    if (uid === euid()) fail(`${path} belongs to ${describeUid(st.uid)}, not to ${describeUid(uid)}`, 'ctwatch writes only its own files: remove it, or choose another path');
    fail(`${path} belongs to ${describeUid(st.uid)}, and ctwatch hands to ${describeUid(uid)} only files it creates`, 'chown it to that account, or move it away');
  }
  return st;
}

/** Opens (and creates) a file the safe way: see the header. Throws FileRefused. */
export function openFile(path: string, o: OpenOptions): OpenedFile {
  const name = basename(path);
  if (name === '' || name === '.' || name === '..' || path.endsWith('/')) throw new FileRefused(`${path} names a directory, not a file`, 'EISDIR');
  const full = join(trustedDirectory(dirname(path)), name);
  const mode = o.mode ?? 0o600;
  const create = o.create ?? (o.access === 'append' || o.access === 'append-read');
  const owner = o.owner && euid() === 0 && o.owner.uid !== 0 ? o.owner : undefined;
  const flags = ACCESS[o.access] | NO_FOLLOW;
  // Create, or open what is there; the two race with a hostile owner of the directory, so try a few times.
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    let created = false;
    try {
      if (create) {
        try {
          fd = openSync(full, flags | C.O_CREAT | C.O_EXCL, mode);
          created = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || o.exclusive) throw err;
          fd = openSync(full, flags);
        }
      } else {
        fd = openSync(full, flags);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && create && attempt < 3) continue;
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new FileRefused(`${full} already exists`, 'EEXIST', undefined, (err as NodeJS.ErrnoException).errno);
      throw errnoRefusal(err, full);
    }
    const st = checkFile(fd, full, owner?.uid ?? euid(), created);
    if (created) {
      try {
        fchmodSync(fd, mode); // the umask may have taken bits the caller asked for
        if (owner) fchownSync(fd, owner.uid, owner.gid);
      } catch (err) {
        closeSync(fd);
        throw errnoRefusal(err, full);
      }
    }
    return { fd, created, path: full, size: st.size, dev: st.dev, ino: st.ino };
  }
}

/** The first `size` bytes of an open file, read in a loop (fewer when it is shorter by now). */
export function readWhole(fd: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const n = readSync(fd, buf, off, size - off, off);
    if (n === 0) break;
    off += n;
  }
  return buf.subarray(0, off);
}

/** A small file read whole (state files), at most `maxBytes`; undefined when it does not exist. */
export function readSmallFile(path: string, maxBytes: number): Buffer | undefined {
  let f: OpenedFile;
  try {
    f = openFile(path, { access: 'read', create: false });
  } catch (err) {
    if (err instanceof FileRefused && err.code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    if (f.size > maxBytes) throw new FileRefused(`${f.path} is ${f.size} bytes, more than the ${maxBytes} it can be`, 'ERR_UNSAFE_FILE', 'remove it');
    return readWhole(f.fd, f.size);
  } finally {
    closeSync(f.fd);
  }
}

/**
 * A file ctwatch reads as root but does not own (a token, a password, a TLS key or CA bundle), at
 * most `maxBytes`: reached by a trusted way (trustedDirectory: a symlink is followed only where
 * nobody else could have put it, so /etc/ssl/certs links work and a planted one in another
 * account's directory does not), opened O_NOFOLLOW|O_NONBLOCK (a FIFO does not hang it), a regular
 * file (not /dev/zero), read within the bound. Throws FileRefused.
 */
export function readTrustedFile(path: string, maxBytes: number): Buffer {
  let real = resolve(path);
  for (let links = 0; ; links++) {
    const dir = trustedDirectory(dirname(real));
    const entry = join(dir, basename(real));
    let st: Stats;
    try {
      st = lstatSync(entry);
    } catch (err) {
      throw errnoRefusal(err, entry);
    }
    // the directory holding it, too: whoever can change its entries chooses what root reads
    const why = changeableBy(dir, lstatSync(dir), st);
    if (why) throw new FileRefused(`${why}, who could put something else at ${entry}`, 'ERR_UNSAFE_PATH', 'keep secrets in a directory only root can change');
    if (!st.isSymbolicLink()) {
      real = entry;
      break;
    }
    if (links >= 40) throw new FileRefused(`too many symbolic links on the way to ${path}`, 'ELOOP');
    real = resolve(dir, readlinkSync(entry));
  }
  let fd: number;
  try {
    fd = openSync(real, C.O_RDONLY | NO_FOLLOW);
  } catch (err) {
    throw errnoRefusal(err, real);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileRefused(`${real} is ${describeKind(st)}, not a regular file`, 'ERR_UNSAFE_FILE');
    if (st.size > maxBytes) throw new FileRefused(`${real} is ${st.size} bytes, more than the ${maxBytes} it can be`, 'ERR_UNSAFE_FILE');
    return readWhole(fd, st.size);
  } finally {
    closeSync(fd);
  }
}

/**
 * flock(2) on an open descriptor, never waiting: true when this descriptor now holds the lock,
 * false when another holds it. The kernel releases it when the descriptor closes or the process
 * dies, so a lock left by a dead process cannot block anyone (no pid read back and trusted).
 */
export function lockFd(fd: number, exclusive = true): boolean {
  const addon = requireAddon<{ flock(fd: number, exclusive: boolean): boolean }>();
  try {
    return addon.flock(fd, exclusive);
  } catch (err) {
    const e = err as { code?: string; errno?: number; message?: string };
    throw new FileRefused(e.message ?? 'cannot lock', e.code ?? 'ERR_LOCK', undefined, e.errno);
  }
}
