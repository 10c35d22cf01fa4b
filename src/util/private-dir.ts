/**
 * Directories ctwatch keeps state in and works inside by path (spools): its own, private, reached
 * by a trusted way (src/util/safe-file.ts's header, last point), and for `--user` created by root
 * and handed over through the descriptor before the switch.
 */
import { closeSync, constants as C, existsSync, fchmodSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { FileRefused, describeGid, describeKind, describeUid, errnoRefusal, euid, lookupId, trustedDirectory, type FileOwner } from './trusted-path.js';

/** Creates the missing directories of `path` (0755, in trusted parents) and returns its real path. */
function makeTrusted(path: string): string {
  try {
    return trustedDirectory(path);
  } catch (err) {
    if (!(err instanceof FileRefused) || err.code !== 'ENOENT' || dirname(path) === path) throw err;
  }
  const parent = makeTrusted(dirname(path));
  try {
    mkdirSync(join(parent, basename(path)), 0o755);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw errnoRefusal(err, join(parent, basename(path)));
  }
  return trustedDirectory(path);
}

/**
 * A directory ctwatch keeps state in and works inside by path (a spool): created 0700 when missing
 * (with any missing parents, 0755), reached by a trusted way (see trustedDirectory: nobody else can
 * swap it for a link), owned by the effective uid, without group or other write. Returns its real path.
 */
export function privateDirectory(path: string): string {
  const parent = makeTrusted(dirname(resolve(path)));
  const full = join(parent, basename(resolve(path)));
  try {
    mkdirSync(full, 0o700);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw errnoRefusal(err, full);
  }
  const real = trustedDirectory(full);
  const st = lstatSync(real);
  checkPrivate(real, st, euid());
  return real;
}

function checkPrivate(path: string, st: Stats, uid: number): void {
  if (!st.isDirectory()) throw new FileRefused(`${path} is ${describeKind(st)}, not a directory`, 'ENOTDIR');
  if (st.uid !== uid) {
    throw new FileRefused(`${path} belongs to ${describeUid(st.uid)}, but ctwatch keeps its files there as ${describeUid(uid)}`, 'ERR_UNSAFE_PATH', `chown -R ${lookupId('/etc/passwd', uid) ?? uid} ${path}, or choose another directory`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new FileRefused(`${path} is writable by ${(st.mode & 0o002) !== 0 ? 'every account' : `group ${describeGid(st.gid)}`}`, 'ERR_UNSAFE_PATH', `chmod 700 ${path}`);
  }
}

/**
 * Before `--user`: makes a private directory for `owner` (see privateDirectory), created by root
 * 0700 and handed over through its descriptor, or checks that the existing one is already the
 * account's own; and that the account can reach it. Root does nothing inside it.
 */
export function privateDirectoryFor(path: string, owner: FileOwner): string {
  const parent = makeTrusted(dirname(resolve(path)));
  const full = join(parent, basename(resolve(path)));
  let created = false;
  try {
    mkdirSync(full, 0o700);
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw errnoRefusal(err, full);
  }
  let fd: number;
  try {
    fd = openSync(full, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (err) {
    throw errnoRefusal(err, full);
  }
  try {
    const st = fstatSync(fd);
    if (created && st.uid === euid()) {
      fchownSync(fd, owner.uid, owner.gid);
      fchmodSync(fd, 0o700);
    } else {
      checkPrivate(full, st, owner.uid);
    }
  } finally {
    closeSync(fd);
  }
  const blocked = unreachableBy(parent, owner);
  if (blocked) throw new FileRefused(`${owner.name} cannot reach ${full}: ${blocked.reason}`, 'EACCES', blocked.advice);
  return full;
}

/** Whether `owner` could create and rename files in `dir`, from its mode bits (primary group only). */
export function writableBy(dir: string, owner: FileOwner): boolean {
  const st = lstatSync(dir);
  return can(st, owner, 0o2);
}

/** Why `owner` cannot search its way to `dir` (mode bits, primary group only); undefined when it can. */
export function unreachableBy(dir: string, owner: FileOwner): { reason: string; advice: string } | undefined {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (!existsSync(d)) return { reason: `${d} does not exist`, advice: 'create it' };
    if (!can(lstatSync(d), owner, 0o1)) return { reason: `${d} is not searchable by ${owner.name}`, advice: `chmod o+x ${d}, or choose another directory` };
    if (d === '/') return undefined;
  }
}

function can(st: Stats, owner: FileOwner, bit: number): boolean {
  if (owner.uid === 0) return true;
  if (st.uid === owner.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === owner.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}
