#!/usr/bin/env node
/**
 * npm pack / npm publish: builds what the tarball carries and nothing else: dist/ (TypeScript),
 * the addon as a prebuild for this platform (prebuilds/linux-x64/ctwatch.napi.node, stripped) with
 * what it needs to run (prebuilds/linux-x64/ctwatch.json: the newest glibc symbol version it uses,
 * the libraries it links), the man page and the shell completions. Incremental: an up-to-date
 * checkout packs in seconds. The build happens on the machine that packs, so the glibc it needs is
 * that machine's (ctwatch.json and the README say which).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, writeFileSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const loader = require('../native/load.cjs');
const ROOT = loader.ROOT;
const run = (cmd, args) => execFileSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
const out = (cmd, args) => execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const gyp = require.resolve('node-gyp/bin/node-gyp.js');
if (!existsSync(join(ROOT, 'build', 'config.gypi'))) run(process.execPath, [gyp, 'configure']);
run(process.execPath, [gyp, 'build']);
run('npm', ['run', '--silent', 'build:ts']);
if (existsSync(join(ROOT, 'scripts', 'gen-manuals.mjs'))) run(process.execPath, ['scripts/gen-manuals.mjs']);

const built = join(ROOT, 'build', 'Release', 'ctwatch.node');
const dir = join(ROOT, 'prebuilds', loader.TARGET);
mkdirSync(dir, { recursive: true });
const dest = join(dir, 'ctwatch.napi.node');
const partial = `${dest}.tmp`;
try {
  run('strip', ['--strip-unneeded', '-o', partial, built]);
} catch {
  copyFileSync(built, partial); // no binutils: ship it unstripped
}
renameSync(partial, dest);

// What the prebuild needs of the machine it runs on, from its dynamic section and symbol versions.
const glibc = [...out('readelf', ['--dyn-syms', '-W', dest]).matchAll(/@GLIBC_([0-9.]+)/g)]
  .map((m) => m[1])
  .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
  .pop();
const libraries = [...out('readelf', ['-d', '-W', dest]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
const osRelease = readFileSync('/etc/os-release', 'utf8');
const builtOn = /^PRETTY_NAME="?([^"\n]+)/m.exec(osRelease)?.[1] ?? 'unknown';
const info = {
  target: loader.TARGET,
  napi: 8,
  glibc,
  libraries,
  packages: loader.RUNTIME_PACKAGES,
  builtOn: `${builtOn}, ${out('ldd', ['--version']).split('\n')[0]}`,
};
writeFileSync(join(dir, 'ctwatch.json'), `${JSON.stringify(info, null, 2)}\n`);
process.stderr.write(`prepack: prebuild ${dest} (needs glibc >= ${glibc}; ${libraries.join(' ')})\n`);
