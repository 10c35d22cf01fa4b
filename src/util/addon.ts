/**
 * Loads the native addon (build/Release or build/Debug ctwatch.node) once, for every layer that
 * talks to it. Each half of the addon describes its own face with types beside the code that uses
 * it: src/source/native.ts (the conntrack reader), src/process/native.ts (process attribution),
 * src/util/privileges.ts (the privilege switch), src/util/safe-file.ts (flock). This file knows
 * only where the binary is.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CtwatchError, EXIT } from './errors.js';

let addon: unknown;

/** The addon's exports, typed by the caller; ERR_ADDON_MISSING (exit 69) when it is not built. */
export function requireAddon<T>(): T {
  if (addon) return addon as T;
  const here = dirname(fileURLToPath(import.meta.url));
  const require = createRequire(import.meta.url);
  // Works from src/ (vitest) and dist/ (the CLI): both sit one level below the project root.
  const tried: string[] = [];
  for (const kind of ['Release', 'Debug']) {
    const path = join(here, '..', '..', 'build', kind, 'ctwatch.node');
    tried.push(path);
    try {
      addon = require(path);
      return addon as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  throw new CtwatchError(
    'ERR_ADDON_MISSING',
    `the native addon is not built (tried ${tried.join(', ')}): run 'npm run build'`,
    { exitCode: EXIT.unavailable },
  );
}
