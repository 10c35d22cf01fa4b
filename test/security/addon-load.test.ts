/**
 * Loading the addon is running its code: as root, native/load.cjs loads only from a file and
 * directories nobody else can change, so an account that can write the package's build/ cannot
 * plant a build/Debug/ctwatch.node that wins over the prebuild.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/netns.js';

const require = createRequire(import.meta.url);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-load-'));
  mkdirSync(join(dir, 'native'));
  mkdirSync(join(dir, 'build', 'Debug'), { recursive: true });
  copyFileSync(join(ROOT, 'native', 'load.cjs'), join(dir, 'native', 'load.cjs'));
  copyFileSync(join(ROOT, 'build', 'Release', 'ctwatch.node'), join(dir, 'build', 'Debug', 'ctwatch.node'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the addon loader as root', () => {
  it('loads from directories only root can change', () => {
    const r = require(join(dir, 'native', 'load.cjs')).load();
    expect(r.path).toBe(join(dir, 'build', 'Debug', 'ctwatch.node'));
  });

  it('refuses one in a directory another account can write, and says why', () => {
    chmodSync(join(dir, 'build'), 0o777);
    const r = require(join(dir, 'native', 'load.cjs')).load();
    expect(r.addon).toBeNull();
    expect(r.tried[1].reason).toBe(`${join(dir, 'build')} can be changed by another account: root does not load ${join(dir, 'build', 'Debug', 'ctwatch.node')} from there`);
  });

  it('refuses a file others can write', () => {
    chmodSync(join(dir, 'build', 'Debug', 'ctwatch.node'), 0o666);
    const r = require(join(dir, 'native', 'load.cjs')).load();
    expect(r.addon).toBeNull();
    expect(r.tried[1].reason).toMatch(/is not root's alone .* root does not load it/);
  });
});
