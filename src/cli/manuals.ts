/**
 * The man page (man/ctwatch.1) and the shell completions (completion/ctwatch.bash, completion/_ctwatch
 * for zsh), generated from what `--help` prints, so the three cannot disagree: each command's flags
 * are read from its help text (itself built from the option table where the command has one,
 * src/cli/options.ts), and the man page carries each command's help as written. scripts/gen-manuals.mjs
 * writes the files (prepack); test/unit/manuals.test.ts checks they agree.
 */
import { commandHelps, HELP } from './main.js';

export interface Flag {
  long: string;
  short?: string;
  /** the value's placeholder (FILE|-, NAME|PATH, text|json); absent for a switch */
  arg?: string;
  /** the first line of its help */
  help: string;
}

/** The flags a help text lists: lines `  [-x, ]--name [ARG]  text` in its option blocks. */
export function flagsOf(help: string): Flag[] {
  const out: Flag[] = [];
  const seen = new Set<string>();
  for (const line of help.split('\n')) {
    const m = /^ {2}(?:-(\w), )?--([a-z][\w-]*)(?: ([^\s]+))?(?: {2,}(.*))?$/.exec(line);
    if (!m || seen.has(m[2])) continue;
    seen.add(m[2]);
    out.push({ long: m[2], ...(m[1] ? { short: m[1] } : {}), ...(m[3] ? { arg: m[3] } : {}), help: (m[4] ?? '').trim() });
  }
  return out;
}

/** What a shell may offer for a flag's value, from its placeholder. */
export function valueCompletion(f: Flag): { kind: 'netns' | 'file' | 'directory' | 'user' | 'words' | 'none'; words?: string[] } {
  if (!f.arg) return { kind: 'none' };
  if (f.long === 'netns') return { kind: 'netns' };
  if (f.long === 'user') return { kind: 'user' };
  if (/^(FILE|PATH|DIR)/.test(f.arg) || /FILE/.test(f.arg)) return /DIR/.test(f.arg) ? { kind: 'directory' } : { kind: 'file' };
  if (/^[a-z0-9-]+(\|[a-z0-9-]+)+$/.test(f.arg)) return { kind: 'words', words: f.arg.split('|') };
  return { kind: 'none' };
}

const roff = (s: string): string =>
  s
    .replace(/\\/g, '\\e')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');

export function manPage(version: string, date: string): string {
  const cmds = commandHelps();
  const intro = HELP.split('\n\n');
  const out = [
    `.TH CTWATCH 1 "${date}" "ctwatch ${version}" "User Commands"`,
    '.SH NAME',
    'ctwatch \\- watch Linux connection tracking: who fills the conntrack table, and how fast',
    '.SH SYNOPSIS',
    ...cmds.map((c) => `.B ctwatch ${c.name}\n.RI [ options ]\n.br`),
    '.SH DESCRIPTION',
    roff(intro.slice(1).join('\n\n').split('\n').filter((l) => !/^Usage:/.test(l)).join('\n')).replace(/^(.+)$/m, '.nf\n$1') + '\n.fi',
    '.SH COMMANDS',
  ];
  for (const c of cmds) {
    out.push(`.SS ${c.name}`, roff(c.summary), '.PP', '.nf', roff(c.help.trimEnd()), '.fi');
    const flags = flagsOf(c.help);
    if (flags.length) {
      out.push('.PP', 'Options of', `.BR "ctwatch ${c.name}" :`);
      for (const f of flags) out.push('.TP', `${f.short ? `\\fB\\-${f.short}\\fR, ` : ''}\\fB\\-\\-${f.long}\\fR${f.arg ? ` \\fI${roff(f.arg)}\\fR` : ''}`, roff(f.help || '(see above)'));
    }
  }
  out.push('.SH FILES', 'contrib/ctwatch.service, contrib/logrotate.d/ctwatch, contrib/prometheus, contrib/grafana in the package; docs/schema.md for every JSON field.', '.SH SEE ALSO', '.BR conntrack (8),', '.BR nft (8),', '.BR ip-netns (8)');
  return `${out.join('\n')}\n`;
}

export function bashCompletion(): string {
  const cmds = commandHelps();
  const cases: string[] = [];
  const values: string[] = [];
  for (const c of cmds) {
    const flags = flagsOf(c.help);
    const words = flags.flatMap((f) => [`--${f.long}`, ...(f.short ? [`-${f.short}`] : [])]);
    cases.push(`    ${c.name}) opts="${words.join(' ')}" ;;`);
    for (const f of flags) {
      const v = valueCompletion(f);
      const pats = [`${c.name}:--${f.long}`, ...(f.short ? [`${c.name}:-${f.short}`] : [])].join('|');
      const body =
        v.kind === 'netns' ? `COMPREPLY=( $(compgen -W "$(ip netns list 2>/dev/null | cut -d' ' -f1)" -- "$cur") )`
        : v.kind === 'file' ? 'COMPREPLY=( $(compgen -f -- "$cur") )'
        : v.kind === 'directory' ? 'COMPREPLY=( $(compgen -d -- "$cur") )'
        : v.kind === 'user' ? 'COMPREPLY=( $(compgen -u -- "$cur") )'
        : v.kind === 'words' ? `COMPREPLY=( $(compgen -W "${v.words!.join(' ')}" -- "$cur") )`
        : f.arg ? 'COMPREPLY=()' : '';
      if (body) values.push(`    ${pats}) ${body}; return ;;`);
    }
  }
  return `# bash completion for ctwatch, generated from its --help (src/cli/manuals.ts); do not edit
_ctwatch() {
  local cur prev cmd opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${cmds.map((c) => c.name).join(' ')} help --help --version" -- "$cur") )
    return
  fi
  cmd="\${COMP_WORDS[1]}"
  case "$cmd:$prev" in
${values.join('\n')}
  esac
  case "$cmd" in
${cases.join('\n')}
    *) opts="" ;;
  esac
  COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}
complete -F _ctwatch ctwatch
`;
}

export function zshCompletion(): string {
  const cmds = commandHelps();
  const q = (s: string) => s.replace(/'/g, "'\\''").replace(/[[\]:]/g, '\\$&');
  const fns = cmds.map((c) => {
    const specs = flagsOf(c.help).map((f) => {
      const v = valueCompletion(f);
      const action = v.kind === 'netns' ? ":namespace:($(ip netns list 2>/dev/null | cut -d' ' -f1))" : v.kind === 'file' ? ':file:_files' : v.kind === 'directory' ? ':directory:_files -/' : v.kind === 'user' ? ':user:_users' : v.kind === 'words' ? `:value:(${v.words!.join(' ')})` : f.arg ? `:${f.arg.toLowerCase().replace(/[^a-z]/g, '') || 'value'}: ` : '';
      const names = f.short ? `'(-${f.short} --${f.long})'{-${f.short},--${f.long}}` : `--${f.long}`;
      return `    ${names}'[${q(f.help)}]${action ? q(action).replace(/\\:/g, ':').replace(/\\\[|\\\]/g, (m) => m) : ''}'`;
    });
    return `_ctwatch_${c.name.replace(/-/g, '_')}() {\n  _arguments -s \\\n${specs.join(' \\\n')}\n}`;
  });
  return `#compdef ctwatch
# zsh completion for ctwatch, generated from its --help (src/cli/manuals.ts); do not edit
${fns.join('\n\n')}

_ctwatch() {
  local -a commands
  commands=(
${cmds.map((c) => `    '${c.name}:${q(c.summary)}'`).join('\n')}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
  else
    local cmd=$words[2]
    (( $+functions[_ctwatch_$cmd] )) && _ctwatch_$cmd
  fi
}

_ctwatch "$@"
`;
}
