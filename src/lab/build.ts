/**
 * The demo's load generator (src/lab/ctwatch-lab.c) is compiled when the demo first needs it, not
 * at install: a server running ctwatch needs no compiler, and only the demo (and the tests and
 * benchmarks of a checkout, through `npm run build`) uses the program.
 *
 * Runs as root, so the place it is kept is checked first: the package's build/Release when every
 * directory on the way is a real directory (no symlink) owned by root or us and writable by no one
 * else, and its parents pass safe-file's trusted walk (an old program is reused only from there,
 * and the source is compiled only when it is root's or ours alone); otherwise a private temporary directory for this run. The program is written under a
 * temporary name and renamed into place, so a half-written one is never run.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trustedDirectory } from '../util/safe-file.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LAB_SOURCE = join(ROOT, 'src', 'lab', 'ctwatch-lab.c');
export const LAB_BINARY = join(ROOT, 'build', 'Release', 'ctwatch-lab');
const COMPILERS = ['cc', 'gcc', 'clang'];

/** `temporary`: a directory made for this run only, for the caller to remove */
export type LabProgram = { path: string; built: boolean; temporary?: string } | { path: null; why: string };

/** A directory we may keep a program in that root will run: ours, not a symlink, not writable by
 * group or others. */
function trusted(path: string): boolean {
  try {
    const st = lstatSync(path);
    const uid = process.geteuid?.() ?? 0;
    if (!(st.isDirectory() && (st.uid === 0 || st.uid === uid) && (st.mode & 0o022) === 0)) return false;
    // and the way to it: no parent another account could change (safe-file's walk)
    trustedDirectory(path);
    return true;
  } catch {
    return false;
  }
}

/** Ours (root or us) and writable by no one else: a file root may compile or run. */
function ownFile(path: string): boolean {
  const st = lstatSync(path);
  const uid = process.geteuid?.() ?? 0;
  return st.isFile() && (st.uid === 0 || st.uid === uid) && (st.mode & 0o022) === 0;
}

/** The first compiler on PATH, or null. */
export function findCompiler(path = process.env.PATH ?? ''): string | null {
  for (const c of COMPILERS) {
    for (const dir of path.split(':').filter(Boolean)) {
      try {
        const st = statSync(join(dir, c));
        if (st.isFile() && (st.mode & 0o111) !== 0) return join(dir, c);
      } catch {
        /* not here */
      }
    }
  }
  return null;
}

/** A built program that is newer than its source and safe to run. */
function usable(path: string): boolean {
  try {
    const st = lstatSync(path);
    const uid = process.geteuid?.() ?? 0;
    // the program is run as root: reused only from a directory nobody else can change
    if (!(trusted(ROOT) && trusted(dirname(dirname(path))) && trusted(dirname(path)))) return false;
    return st.isFile() && (st.uid === 0 || st.uid === uid) && (st.mode & 0o022) === 0 && st.mtimeMs >= statSync(LAB_SOURCE).mtimeMs;
  } catch {
    return false;
  }
}

/** Makes sure the lab program exists (compiling it if needed) and says where it is, or why not. */
export function ensureLabProgram(): LabProgram {
  if (usable(LAB_BINARY)) return { path: LAB_BINARY, built: false };
  const cc = findCompiler();
  try {
    if (!ownFile(LAB_SOURCE)) return { path: null, why: `${LAB_SOURCE} is not root's (or ours) alone: it is not compiled and run as root` };
  } catch (err) {
    return { path: null, why: `${LAB_SOURCE}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  if (!cc) return { path: null, why: `no C compiler (${COMPILERS.join(', ')}) on PATH to build ${LAB_SOURCE}` };
  let dir = dirname(LAB_BINARY);
  const build = dirname(dir);
  if (trusted(ROOT)) {
    for (const d of [build, dir]) {
      try {
        mkdirSync(d, { mode: 0o755 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') break;
      }
    }
  }
  let temporary = false;
  if (!(trusted(ROOT) && trusted(build) && trusted(dir))) {
    dir = mkdtempSync(join(tmpdir(), 'ctwatch-lab-'));
    temporary = true;
  }
  const target = join(dir, 'ctwatch-lab');
  const partial = `${target}.${process.pid}.tmp`;
  try {
    execFileSync(cc, ['-O2', '-Wall', '-pthread', '-o', partial, LAB_SOURCE], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    renameSync(partial, target);
  } catch (err) {
    rmSync(partial, { force: true });
    if (temporary) rmSync(dir, { recursive: true, force: true });
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n')[0];
    return { path: null, why: `compiling ${LAB_SOURCE} with ${cc} failed: ${stderr || (err as Error).message}` };
  }
  return { path: target, built: true, ...(temporary ? { temporary: dir } : {}) };
}

// `npm run build` in a checkout: node dist/lab/build.js
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const r = ensureLabProgram();
  if (r.path === null) {
    process.stderr.write(`build: ${r.why}\n`);
    process.exit(1);
  }
}
