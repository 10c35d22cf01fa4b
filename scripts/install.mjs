#!/usr/bin/env node
/**
 * npm's install step for ctwatch: nothing to do when an addon loads (the prebuild in the package,
 * or a build made here); otherwise compile it from the shipped sources with node-gyp. Recent npm
 * skips packages' install scripts unless allowed: a prebuild that loads makes that harmless.
 * CTWATCH_BUILD_FROM_SOURCE=1 (or npm's --build-from-source) compiles even so.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const loader = require('../native/load.cjs');
const force = process.env.CTWATCH_BUILD_FROM_SOURCE === '1' || process.env.npm_config_build_from_source === 'true';

if (!force) {
  const found = loader.load();
  if (found.addon) process.exit(0);
  process.stderr.write(`ctwatch: ${loader.explain(found.tried)}; compiling it from source now\n`);
}
// npm hands its own node-gyp to install scripts; a checkout has one in node_modules
const gyp = process.env.npm_config_node_gyp;
const r = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: loader.ROOT, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { cwd: loader.ROOT, stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(`ctwatch: compiling the native addon failed${r.error ? ` (${r.error.message})` : ''}: install ${loader.BUILD_PACKAGES.join(' ')} (apt-get install), then run 'npm rebuild -g ctwatch'\n`);
  process.exit(1);
}
