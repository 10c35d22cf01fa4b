/** The `ctwatch` command: dispatches to a subcommand and turns errors into one line + exit code. */
import { CtwatchError, EXIT, fromNativeError } from '../util/errors.js';
import { record, RECORD_HELP } from './record.js';

export const HELP = `ctwatch — watch Linux connection tracking: who fills the conntrack table, and how fast

Usage: ctwatch <command> [options]     (ctwatch <command> --help for details)

Commands:
  record     write conntrack events as JSON lines (to stdout or a file)

Start here:
  sudo ctwatch record --netns NAME --duration 10s      events of one namespace, for 10 s

Docs: README.md (troubleshooting), docs/schema.md (every JSON field).
`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { run: Command; help: string }> = {
  record: { run: record, help: RECORD_HELP },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    process.stdout.write(topic && COMMANDS[topic] ? COMMANDS[topic].help : HELP);
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write('ctwatch 0.1.0\n');
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`ctwatch: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')}; see ctwatch --help)\n`);
    return EXIT.usage;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    const e = err instanceof CtwatchError ? err : (err as { code?: string }).code?.startsWith('ERR_') ? fromNativeError(err) : undefined;
    if (e) {
      process.stderr.write(`ctwatch ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`ctwatch ${name}: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.failure;
  }
}
