/**
 * The shared-account warning of `--user`: which accounts it names and how. The /proc it reads is
 * a fixture tree here (the kernel test runs the real one with `--user nobody`).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sharedAccountNote } from '../../src/util/privileges.js';

const dirs: string[] = [];
function procTree(tasks: Record<number, [number, number]>): string {
  const root = mkdtempSync(join(tmpdir(), 'ctwatch-proc-'));
  dirs.push(root);
  mkdirSync(join(root, 'self'));
  for (const [pid, [ruid, euid]] of Object.entries(tasks)) {
    mkdirSync(join(root, pid));
    writeFileSync(join(root, pid, 'status'), `Name:\tx\nUid:\t${ruid}\t${euid}\t${euid}\t${euid}\n`);
  }
  return root;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('sharedAccountNote', () => {
  const ctwatch = { name: 'ctwatch', uid: 990, gid: 990 };
  it('is silent for an account no other process uses', () => {
    expect(sharedAccountNote(ctwatch, procTree({ 1: [0, 0], 42: [1000, 1000], 7: [990, 990] }), 7)).toBeUndefined();
  });
  it('names the other processes of the account (real or effective uid), at most five', () => {
    const note = sharedAccountNote(ctwatch, procTree({ 7: [990, 990], 10: [990, 990], 11: [0, 990], 12: [990, 990], 13: [990, 990], 14: [990, 990], 15: [990, 990] }), 7);
    expect(note).toMatch(/^--user ctwatch: other processes run as this account \(pid 10, 11, 12, 13, 14, and 1 more\)/);
    expect(note).toContain('useradd --system --no-create-home ctwatch');
  });
  it('warns about nobody even when nothing else runs as it', () => {
    expect(sharedAccountNote({ name: 'nobody', uid: 65534, gid: 65534 }, procTree({ 1: [0, 0] }), 1)).toMatch(/^--user nobody: this account is shared by every service/);
  });
});
