/**
 * What the security tests plant links at, and whom they act as: a root-owned 0640 file with a
 * secret in it, and the real `nobody` account (setpriv, no supplementary groups).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';

export const NOBODY = 65534;

/** Runs a command as the real nobody. */
export const asNobody = (cmd: string, ...args: string[]) => execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', cmd, ...args]);

export interface Victim {
  path: string;
  content: string;
}

/** A root-owned 0640 file with a secret in it: what a planted link points at. */
export function victim(dir: string, name = 'root-secret', content = 'root:secret\n'): Victim {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o640 });
  chmodSync(path, 0o640);
  return { path, content };
}

/**
 * Where a test plants things: a fresh root 0755 directory holding `out`, a directory nobody owns
 * (the way the README hands the output directory to --user), and the victim beside it.
 */
export function plantingGround(prefix: string): { dir: string; out: string; secret: Victim } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  const out = join(dir, 'out');
  mkdirSync(out);
  chownSync(out, NOBODY, NOBODY);
  return { dir, out, secret: victim(dir) };
}

/** Still root's, 0640, with the same content: nothing was written into it or handed over. */
export function expectUntouched(v: Victim): void {
  const st = statSync(v.path);
  expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, nlink: st.nlink > 0 }).toEqual({ uid: 0, gid: 0, mode: 0o640, nlink: true });
  expect(readFileSync(v.path, 'utf8')).toBe(v.content);
}
