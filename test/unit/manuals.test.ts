/**
 * --help, the man page and the shell completions agree: all three come from the same text (each
 * command's help, built from its option table where it has one), and this checks the generated
 * files say what `ctwatch CMD --help` prints, flag for flag. The bash completion is run in a real
 * bash; the man page is rendered by man(1).
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandHelps } from '../../src/cli/main.js';
import { bashCompletion, flagsOf, manPage, zshCompletion } from '../../src/cli/manuals.js';
import { DOCTOR_OPTIONS } from '../../src/cli/doctor.js';
import { STATS_OPTIONS } from '../../src/cli/stats.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'bin', 'ctwatch.js');
const cmds = commandHelps();

describe('--help, man ctwatch and the completions agree', () => {
  it('every command has a summary and flags, and --help prints exactly that text', () => {
    expect(cmds.map((c) => c.name).sort()).toEqual(['demo', 'doctor', 'fleet', 'record', 'replay', 'report', 'stats', 'top', 'watch']);
    for (const c of cmds) {
      expect(c.summary, c.name).not.toBe('');
      expect(flagsOf(c.help).map((f) => f.long), c.name).toContain('help');
      expect(execFileSync(process.execPath, [CLI, c.name, '--help'], { encoding: 'utf8' }), c.name).toBe(c.help);
    }
  });

  it('commands with an option table: the parser, --help and the table are one list', () => {
    for (const [name, table] of [['stats', STATS_OPTIONS], ['doctor', DOCTOR_OPTIONS]] as const) {
      const help = cmds.find((c) => c.name === name)!.help;
      expect(flagsOf(help).map((f) => [f.long, f.short ?? null]), name).toEqual(table.map((d) => [d.name, d.short ?? null]));
    }
  });

  it('the man page lists every flag of every command, and man(1) renders it', () => {
    const page = manPage('0.1.0', 'version 0.1.0');
    for (const c of cmds) {
      const section = page.slice(page.indexOf(`.SS ${c.name}\n`), page.indexOf('.SS ', page.indexOf(`.SS ${c.name}\n`) + 4) >>> 0 || undefined);
      for (const f of flagsOf(c.help)) expect(section, `${c.name} --${f.long}`).toContain(`\\fB\\-\\-${f.long}\\fR`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-man-'));
    try {
      execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-manuals.mjs'), dir]);
      expect(readFileSync(join(dir, 'man', 'ctwatch.1'), 'utf8')).toBe(page);
      const shown = execFileSync('man', ['-l', join(dir, 'man', 'ctwatch.1')], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '100', MAN_KEEP_FORMATTING: '' } }).replace(/.\x08/g, '');
      expect(shown).toMatch(/^CTWATCH\(1\)/);
      expect(shown).toContain('-w, --warning RANGE');
      expect(shown).toContain('Usage: ctwatch record [options]');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bash completes the commands, each command\'s flags and their values, as --help lists them', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ctwatch-bash-')), 'ctwatch.bash');
    writeFileSync(file, bashCompletion());
    const complete = (...words: string[]) =>
      execFileSync('bash', ['-c', `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _ctwatch; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    try {
      expect(complete('ctwatch', '')).toEqual(expect.arrayContaining(cmds.map((c) => c.name)));
      for (const c of cmds) {
        const want = flagsOf(c.help).flatMap((f) => [`--${f.long}`, ...(f.short ? [`-${f.short}`] : [])]);
        expect(complete('ctwatch', c.name, '-').sort(), c.name).toEqual(want.sort());
      }
      expect(complete('ctwatch', 'doctor', '--log-format', '')).toEqual(['text', 'json']);
      expect(complete('ctwatch', 'stats', '--warning', '')).toEqual([]);
    } finally {
      rmSync(join(file, '..'), { recursive: true, force: true });
    }
  });

  it('the zsh completion names every flag of every command', () => {
    const z = zshCompletion();
    expect(z.startsWith('#compdef ctwatch\n')).toBe(true);
    for (const c of cmds) {
      const fn = z.slice(z.indexOf(`_ctwatch_${c.name}() {`));
      const body = fn.slice(0, fn.indexOf('\n}'));
      for (const f of flagsOf(c.help)) expect(body, `${c.name} --${f.long}`).toContain(`--${f.long}`);
    }
    // parsed by a real zsh (scripts/setup.sh installs it), then loaded by compinit as a completion
    execFileSync('zsh', ['-n', '-c', z]);
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-zsh-'));
    writeFileSync(join(dir, '_ctwatch'), z);
    const out = execFileSync('zsh', ['-f', '-c', `fpath=(${dir} $fpath); autoload -U compinit; compinit -u -D; print -r -- \${_comps[ctwatch]}`], { encoding: 'utf8' }).trim();
    expect(out).toBe('_ctwatch');
  });
});
