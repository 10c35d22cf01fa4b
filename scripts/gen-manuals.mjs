#!/usr/bin/env node
// Writes man/ctwatch.1 and completion/{ctwatch.bash,_ctwatch} from the built CLI's --help
// (src/cli/manuals.ts). Run by prepack; `node scripts/gen-manuals.mjs OUTDIR` writes elsewhere.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv[2] ?? root;
const { manPage, bashCompletion, zshCompletion } = await import(join(root, 'dist', 'cli', 'manuals.js'));
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
mkdirSync(join(out, 'man'), { recursive: true });
mkdirSync(join(out, 'completion'), { recursive: true });
// The date is the package's, not today's: the same sources give the same page.
writeFileSync(join(out, 'man', 'ctwatch.1'), manPage(version, process.env.SOURCE_DATE_EPOCH ? new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000).toISOString().slice(0, 10) : `version ${version}`));
writeFileSync(join(out, 'completion', 'ctwatch.bash'), bashCompletion());
writeFileSync(join(out, 'completion', '_ctwatch'), zshCompletion());
