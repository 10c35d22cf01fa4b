/**
 * Loads the native addon once, for every layer that talks to it. Each half of the addon describes
 * its own face with types beside the code that uses it: src/source/native.ts (the conntrack
 * reader and the attribution handle), src/util/privileges.ts (the privilege
 * switch), src/util/safe-file.ts (flock). Where the binary may be (a local build, the package's prebuild) is native/load.cjs,
 * shared with the install script, which runs before (or without) dist/.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CtwatchError, EXIT } from './errors.js';

/** Where the loaded addon came from, and earlier candidates that exist but did not load. */
export interface AddonOrigin {
  path: string;
  /** a prebuild shipped in the package, or a build made on this machine */
  kind: 'prebuild' | 'local build';
  /** a prebuild's glibc requirement (prebuilds/TARGET/ctwatch.json) */
  glibc?: string;
  skipped: { path: string; reason: string }[];
}

interface Loader {
  load(): { addon: object; path: string; skipped: AddonOrigin['skipped'] } | { addon: null; tried: AddonOrigin['skipped'] };
  explain(tried: AddonOrigin['skipped']): string;
  prebuildInfo(): { glibc?: string } | null;
}

let addon: unknown;
let origin: AddonOrigin | undefined;

/** The addon's exports, typed by the caller; ERR_ADDON_MISSING (exit 69) naming every path tried
 * and why, when none loads. */
export function requireAddon<T>(): T {
  if (addon) return addon as T;
  // Works from src/ (vitest) and dist/ (the CLI): both sit one level below the project root.
  const require = createRequire(import.meta.url);
  const loader = require(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'load.cjs')) as Loader;
  const found = loader.load();
  if ('tried' in found) {
    throw new CtwatchError('ERR_ADDON_MISSING', loader.explain(found.tried), { exitCode: EXIT.unavailable });
  }
  const prebuild = found.path.includes('/prebuilds/');
  origin = { path: found.path, kind: prebuild ? 'prebuild' : 'local build', skipped: found.skipped, ...(prebuild ? { glibc: loader.prebuildInfo()?.glibc } : {}) };
  addon = found.addon;
  return addon as T;
}

/** The loaded addon's origin (loads it if needed); throws like requireAddon() when none loads. */
export function addonOrigin(): AddonOrigin {
  requireAddon();
  return origin!;
}
