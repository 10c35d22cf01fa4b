/**
 * One option table per command: the parser's configuration, the `--help` option block, the man
 * page and the shell completions are all generated from it (scripts/gen-manuals.mjs), so they
 * cannot drift apart.
 */
import type { Options } from './common.js';

export interface OptionDef {
  /** the long name, without the dashes */
  name: string;
  short?: string;
  type: 'string' | 'boolean';
  multiple?: boolean;
  /** the value's placeholder in help: TIME, FILE|-, NAME|PATH */
  arg?: string;
  /** what it does; `\n` starts a continuation line */
  help: string;
  /** what a shell may complete the value with */
  complete?: 'file' | 'directory' | 'netns' | 'user' | readonly string[];
}

export interface CommandDef {
  name: string;
  /** one line, for `ctwatch --help` and the man page's command list */
  summary: string;
  options: readonly OptionDef[];
}

/** The options shared by every command (COMMON_OPTIONS in common.ts parses them). */
export const COMMON_DEFS: readonly OptionDef[] = [
  { name: 'log-format', type: 'string', arg: 'text|json', help: 'diagnostics on stderr (default text)', complete: ['text', 'json'] },
  { name: 'help', short: 'h', type: 'boolean', help: 'this help' },
];

/** The parseArgs configuration of a table. */
export function parserOptions(defs: readonly OptionDef[]): Options {
  const out: Options = {};
  for (const d of defs) {
    out[d.name] = { type: d.type, ...(d.short ? { short: d.short } : {}), ...(d.multiple ? { multiple: true } : {}) };
  }
  return out;
}

const COLUMN = 24;

/** The `Options:` block of `--help`: flags in a 24-column gutter, help wrapped as written. */
export function optionHelp(defs: readonly OptionDef[]): string {
  const lines: string[] = [];
  for (const d of defs) {
    const flag = `  ${d.short ? `-${d.short}, ` : ''}--${d.name}${d.arg ? ` ${d.arg}` : ''}`;
    const [first, ...rest] = d.help.split('\n');
    lines.push(flag.length >= COLUMN - 1 ? `${flag}  ${first}` : `${flag.padEnd(COLUMN)}${first}`);
    for (const r of rest) lines.push(`${' '.repeat(COLUMN)}${r}`);
  }
  return lines.join('\n');
}
