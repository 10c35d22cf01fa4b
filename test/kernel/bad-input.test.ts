/**
 * The bad input catalogue (issue 8, item 6): mistakes an operator can make with the `ctwatch`
 * command, each run as a child process the way the operator would run it. For every one:
 *   (a) the exit status is the documented one (src/util/errors.ts EXIT, README "Troubleshooting"),
 *   (b) a fatal error is exactly ONE line on stderr (for a mistake that shows only once the
 *       command is running, the start-up `info` lines may come before it: one line besides those),
 *   (c) that line has the words that say what is wrong and what to do.
 * Cases run concurrently (vitest's default of 5 at a time); the full-disk case runs on its own
 * afterwards because it makes traffic.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, ROOT, createNetns, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
const FIX = join(ROOT, 'test', 'fixtures', 'bad-input');
const fx = (name: string) => join(FIX, name);

/** root, but every capability dropped (effective, permitted, inheritable, bounding) */
const NO_CAPS = ['setpriv', '--inh-caps=-all', '--bounding-set=-all'];
/** an ordinary user */
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** the monitoring plugin guidelines' UNKNOWN: what `stats` exits with on any error */
const UNKNOWN = 3;
const EXIT = { usage: 64, dataErr: 65, noInput: 66, unavailable: 69, cantCreate: 73, ioErr: 74, noPerm: 77, config: 78 } as const;

interface Ctx {
  /** a real namespace (from createNetns) for cases that get as far as reading events */
  ns: string;
  /** a TCP port on 127.0.0.1 that this test holds open */
  busyPort: number;
  /** an existing directory (root's, 0700); the FILES below are made in it */
  dir: string;
  /** the path of one of FILES */
  file: (name: keyof typeof FILES) => string;
}

/** A valid conntrack event line; recordings below change one field of it. */
const EVENT = {
  v: 1, event: 'new', time: '2026-11-25T15:04:05.000000Z', id: 1, family: 'ipv4', proto: 'tcp', src: '127.0.1.7', dst: '127.0.0.5',
  sport: 51662, dport: 6379, reply: { src: '127.0.0.5', dst: '127.0.1.7', sport: 6379, dport: 51662 }, state: 'SYN_SENT', status: ['CONFIRMED'], timeout: 120,
};
const rec = (patch: Record<string, unknown>) => (path: string) => writeFileSync(path, `${JSON.stringify(EVENT)}\n${JSON.stringify({ ...EVENT, id: 2, ...patch })}\n`);

/**
 * Files the cases need, made fresh in Ctx.dir before the cases run: name → how to make it at PATH.
 * Real FIFOs, symlinks and devices; `c.file(name)` in a case's argv gives the path.
 */
const FILES = {
  'id-text.jsonl': rec({ id: 'abc' }),
  'id-negative.jsonl': rec({ id: -5 }),
  'family-bogus.jsonl': rec({ family: 'ipv5' }),
  'src-number.jsonl': rec({ src: 42 }),
  'src-other-family.jsonl': rec({ src: '2001:db8::1' }),
  'sport-range.jsonl': rec({ sport: 70000 }),
  'proto-number.jsonl': rec({ proto: 6 }),
  'start-number.jsonl': rec({ start: 5 }),
  'end-garbage.jsonl': rec({ end: 'later' }),
  'status-string.jsonl': rec({ status: 'ASSURED' }),
  'reply-string.jsonl': rec({ reply: 'none' }),
  'churn-table-text.jsonl': (p: string) => writeFileSync(p, `${JSON.stringify({ v: 1, event: 'churn', time: EVENT.time, table: { entries: 'many', max: 262144 } })}\n`),
  'long-line.jsonl': (p: string) => writeFileSync(p, `${JSON.stringify(EVENT)}\n${'x'.repeat(2 << 20)}\n`),
  'no-writer.fifo': (p: string) => execFileSync('mkfifo', [p]),
  'zero-link.jsonl': (p: string) => symlinkSync('/dev/zero', p),
  'dir-link.jsonl': (p: string) => symlinkSync(FIX, p),
  'loop.jsonl': (p: string) => symlinkSync(p, p),
  'huge-rules.yaml': (p: string) => writeFileSync(p, `# ${'x'.repeat(300 << 10)}\n`),
  'many-rules.yaml': (p: string) => writeFileSync(p, `rules:\n${Array.from({ length: 1001 }, (_, i) => `  r${i}: { kind: table_fill }\n`).join('')}`),
  'fifo-link': (p: string) => symlinkSync('no-writer.fifo', p),
  // spools and file sinks (issue 11 items 1, 2, 7): directories and files other accounts own or planted
  'spool-nobody': (p: string) => {
    mkdirSync(p, 0o700);
    chownSync(p, 65534, 65534);
  },
  'spool-group-writable': (p: string) => {
    mkdirSync(p);
    chownSync(p, 0, 65534);
    chmodSync(p, 0o770);
  },
  'spool-lock-link': (p: string) => {
    mkdirSync(p, 0o700);
    writeFileSync(join(dirname(p), 'root-file'), 'root\n', { mode: 0o640 });
    symlinkSync(join(dirname(p), 'root-file'), join(p, 'lock'));
  },
  'spool-segment-hardlink': (p: string) => {
    mkdirSync(p, 0o700);
    writeFileSync(join(dirname(p), 'root-file-2'), 'root\n', { mode: 0o640 });
    linkSync(join(dirname(p), 'root-file-2'), join(p, 'seg-000000000001.log'));
  },
  'spool-root-only': (p: string) => mkdirSync(p, 0o700),
  'spool-is-a-file': (p: string) => writeFileSync(p, ''),
  'sink-link.jsonl': (p: string) => symlinkSync(join(dirname(p), 'root-file'), p),
  'sink-nobody.jsonl': (p: string) => {
    writeFileSync(p, '');
    chownSync(p, 65534, 65534);
  },
  'sink.fifo': (p: string) => execFileSync('mkfifo', [p]),
  ...Object.fromEntries(
    ['spool-nobody', 'spool-group-writable', 'spool-lock-link', 'spool-segment-hardlink', 'spool-root-only', 'spool-is-a-file'].map((d) => [
      `sinks-${d}.yaml`,
      (p: string) => writeFileSync(p, `sinks:\n  - name: siem\n    type: http\n    url: http://127.0.0.1:9/in\n    format: ecs\n    spool: { dir: ${join(dirname(p), d)} }\n`),
    ]),
  ),
  ...Object.fromEntries(
    ['sink-link.jsonl', 'sink-nobody.jsonl', 'sink.fifo'].map((f) => [
      `sinks-file-${f}.yaml`,
      (p: string) => writeFileSync(p, `sinks:\n  - name: archive\n    type: file\n    path: ${join(dirname(p), f)}\n    format: jsonl\n`),
    ]),
  ),
} satisfies Record<string, (path: string) => void>;

interface Case {
  name: string;
  argv: (c: Ctx) => string[];
  /** command prefix: run as another user, or without capabilities */
  as?: string[];
  /** extra environment variables */
  env?: Record<string, string>;
  exit: number;
  /** words the error line must contain (substring, or a pattern) */
  says: (string | RegExp)[];
  /** words the error line must not contain (a wrong diagnosis) */
  never?: string[];
  /** a monitoring check (stats): the line is `CONNTRACK UNKNOWN - ...` on stdout, exit 3 */
  check?: boolean;
}

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/**
 * Runs the CLI to completion. A process that is still running HANG_MS after it last wrote to
 * stderr (it reported the error, or started, and then did not exit) is killed and reported as
 * still running; one that writes nothing at all is killed after `timeoutMs`. Timing the hang from
 * the last output keeps slow start-ups on a loaded machine from looking like hangs.
 */
const HANG_MS = 4000;

function runCli(prefix: string[] | undefined, args: string[], timeoutMs: number, env?: Record<string, string>): Promise<Result> {
  const argv = [...(prefix ?? []), process.execPath, CLI, ...args];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const kill = () => {
      timedOut = true;
      p.kill('SIGKILL');
    };
    let timer = setTimeout(kill, timeoutMs);
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => {
      stderr += d;
      clearTimeout(timer);
      timer = setTimeout(kill, HANG_MS);
    });
    p.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    p.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut });
    });
  });
}

function describeResult(r: Result): string {
  const how = r.timedOut ? `still running after ${r.ms} ms (killed)` : `exit ${r.code ?? r.signal} after ${r.ms} ms`;
  return `${how}; stderr: ${JSON.stringify(r.stderr)}${r.stdout ? `; stdout: ${JSON.stringify(r.stdout.slice(0, 300))}` : ''}`;
}

/** The lines that report the error: all of stderr, or without the start-up info lines. */
function errorLines(r: Result, afterStart: boolean): string[] {
  const lines = r.stderr.trim().split('\n').map((l) => l.trim()).filter(Boolean);
  return afterStart ? lines.filter((l) => !l.startsWith('ctwatch info: ')) : lines;
}

const USAGE_HELP = (cmd: string) => `see 'ctwatch ${cmd} --help'`;


const CASES: Case[] = [
  // --- privileges
  {
    name: 'record without CAP_NET_ADMIN',
    as: NO_CAPS,
    argv: () => ['record', '--duration', '1s'],
    exit: EXIT.noPerm,
    says: ['needs CAP_NET_ADMIN', 'run ctwatch as root', 'AmbientCapabilities=CAP_NET_ADMIN'],
  },
  {
    name: 'watch without CAP_NET_ADMIN',
    as: NO_CAPS,
    argv: () => ['watch', '--status', '0'],
    exit: EXIT.noPerm,
    says: ['needs CAP_NET_ADMIN', 'run ctwatch as root'],
  },
  {
    name: 'stats as an ordinary user',
    as: NOBODY,
    argv: () => ['stats'],
    exit: UNKNOWN,
    check: true,
    says: ['needs CAP_NET_ADMIN', 'run ctwatch as root'],
  },
  {
    name: 'record --netns of a real namespace without CAP_SYS_ADMIN',
    as: NO_CAPS,
    argv: (c) => ['record', '--netns', c.ns, '--duration', '1s'],
    exit: EXIT.noPerm,
    says: ['entering network namespace /run/netns/', 'needs CAP_SYS_ADMIN', 'run ctwatch as root'],
  },
  {
    name: "record --netns /proc/1/ns/net (another process's namespace) as an ordinary user",
    as: NOBODY,
    argv: () => ['record', '--netns', '/proc/1/ns/net', '--duration', '1s'],
    exit: EXIT.noPerm,
    says: ['/proc/1/ns/net', 'run ctwatch as root'],
  },
  {
    name: 'demo as an ordinary user',
    as: NOBODY,
    argv: () => ['demo', '--quick'],
    exit: EXIT.noPerm,
    says: ['the demo creates a network namespace', 'run it as root (sudo)'],
  },

  // --- namespaces
  {
    name: '--netns NAME that does not exist',
    argv: () => ['record', '--netns', `ctwatch-no-such-ns-${process.pid}`, '--duration', '1s'],
    exit: EXIT.noInput,
    says: [`network namespace /run/netns/ctwatch-no-such-ns-${process.pid} does not exist`, "'ip netns list'", '/proc/PID/ns/net'],
  },
  {
    name: '--netns path that is not a namespace file (/etc/hostname)',
    argv: () => ['top', '--netns', '/etc/hostname', '--batch', '--duration', '1s'],
    exit: EXIT.noInput,
    says: ['/etc/hostname is not a network namespace file'],
  },
  {
    name: '--netns a FIFO nobody writes to (a blocking open hung)',
    argv: (c) => ['record', '--netns', c.file('no-writer.fifo'), '--duration', '1s'],
    exit: EXIT.noInput,
    says: ['no-writer.fifo is not a network namespace file (it is a FIFO)', '/proc/PID/ns/net'],
  },
  {
    name: '--netns a symlink to a FIFO',
    argv: (c) => ['watch', '--netns', c.file('fifo-link'), '--status', '0'],
    exit: EXIT.noInput,
    says: ['fifo-link is not a network namespace file (it is a FIFO)'],
  },
  {
    name: '--netns /dev/zero (a device)',
    argv: () => ['top', '--netns', '/dev/zero', '--batch', '--duration', '1s'],
    exit: EXIT.noInput,
    says: ['/dev/zero is not a network namespace file (it is a device)'],
  },
  {
    name: '--netns a directory',
    argv: (c) => ['record', '--netns', c.dir, '--duration', '1s'],
    exit: EXIT.noInput,
    says: ['is not a network namespace file (it is a directory)'],
  },
  {
    name: '--netns of another kind of namespace (/proc/self/ns/mnt)',
    argv: () => ['record', '--netns', '/proc/self/ns/mnt', '--duration', '1s'],
    exit: EXIT.noInput,
    says: ['/proc/self/ns/mnt is not a network namespace file'],
  },
  {
    name: '--netns without its value',
    argv: () => ['record', '--netns'],
    exit: EXIT.usage,
    says: ["'--netns <value>' argument missing", USAGE_HELP('record')],
  },

  // --- commands and options
  {
    name: 'unknown command',
    argv: () => ['recrod', '--duration', '1s'],
    exit: EXIT.usage,
    says: ["unknown command 'recrod'", 'record, demo, top, watch, fleet, stats, replay, report, doctor', 'ctwatch --help'],
  },
  ...(['record', 'top', 'stats', 'watch', 'replay', 'demo'] as const).map(
    (cmd): Case => ({
      name: `${cmd}: unknown option`,
      argv: () => [cmd, '--frobnicate'],
      exit: cmd === 'stats' ? UNKNOWN : EXIT.usage,
      check: cmd === 'stats',
      says: ["Unknown option '--frobnicate'", USAGE_HELP(cmd)],
    }),
  ),
  {
    name: 'record --events with an unknown type',
    argv: () => ['record', '--events', 'new,fin'],
    exit: EXIT.usage,
    says: ["unknown event type 'fin' in --events", 'new,update,destroy'],
  },
  {
    name: 'record --events "" (empty)',
    argv: (c) => ['record', '--netns', c.ns, '--events', '', '--duration', '1s'],
    exit: EXIT.usage,
    says: ['--events is empty', 'new,update,destroy'],
  },
  {
    name: 'stats --events "," (only a separator)',
    argv: () => ['stats', '--events', ','],
    exit: UNKNOWN,
    check: true,
    says: ['--events is empty', 'new,update,destroy'],
  },
  {
    name: 'record --rcvbuf that is not a size',
    argv: () => ['record', '--rcvbuf', 'lots'],
    exit: EXIT.usage,
    says: ['--rcvbuf "lots" is not a size', '64M, 512K or 1G'],
  },
  {
    name: 'record --rcvbuf too small (1K)',
    argv: (c) => ['record', '--netns', c.ns, '--rcvbuf', '1K', '--duration', '1s'],
    exit: EXIT.usage,
    says: ['out of range', 'use 4K to 1G'],
  },
  {
    name: 'watch --rcvbuf too large (2G)',
    argv: (c) => ['watch', '--netns', c.ns, '--rcvbuf', '2G', '--status', '0'],
    exit: EXIT.usage,
    says: ['out of range', 'use 4K to 1G'],
  },
  {
    name: 'record --duration that is not a duration',
    argv: () => ['record', '--duration', 'soon'],
    exit: EXIT.usage,
    says: ['--duration "soon" is not a duration', '10s, 5m, 1h30m'],
  },
  {
    name: 'top --duration that is not a duration',
    argv: (c) => ['top', '--netns', c.ns, '--batch', '--duration', 'forever'],
    exit: EXIT.usage,
    says: ['--duration "forever" is not a duration', '10s, 5m, 1h30m'],
  },
  {
    name: 'record --duration with no unit (one grammar: a bare number is refused everywhere)',
    argv: () => ['record', '--duration', '30'],
    exit: EXIT.usage,
    says: ['--duration "30" needs a unit', 'write 30s, 30m or 30h'],
  },
  {
    name: 'record --duration 0',
    argv: () => ['record', '--duration', '0'],
    exit: EXIT.usage,
    says: ['--duration "0" is out of range', 'use more than 0'],
  },
  {
    name: 'watch --status with a negative duration',
    argv: () => ['watch', '--status=-1m'],
    exit: EXIT.usage,
    says: ['--status "-1m" is not a duration', '500ms, 10s, 5m, 1h30m'],
  },
  {
    name: 'record --rcvbuf with a unit that does not exist',
    argv: () => ['record', '--rcvbuf', '64Q'],
    exit: EXIT.usage,
    says: ['--rcvbuf "64Q" is not a size', '64M, 512K or 1G'],
  },
  {
    name: 'record --count that is not a number',
    argv: () => ['record', '--count', 'ten'],
    exit: EXIT.usage,
    says: ['--count "ten" is not a whole number'],
  },
  {
    name: 'record --count -3 (negative)',
    argv: () => ['record', '--count', '-3'],
    exit: EXIT.usage,
    says: ['--count'],
  },
  {
    name: 'record --churn below a second',
    argv: () => ['record', '--churn', '500ms'],
    exit: EXIT.usage,
    says: ['--churn 500ms', 'use whole seconds, at least 1s'],
  },
  {
    name: 'watch --churn below a second',
    argv: (c) => ['watch', '--netns', c.ns, '--churn', '500ms', '--status', '0'],
    exit: EXIT.usage,
    says: ['--churn 500ms', 'use whole seconds, at least 1s'],
  },
  {
    name: 'replay --churn that is not a duration',
    argv: () => ['replay', fx('valid.jsonl'), '--churn', 'often'],
    exit: EXIT.usage,
    says: ['--churn "often" is not a duration', '10s, 5m, 1h30m'],
  },
  {
    name: 'watch --status that is not a duration',
    argv: () => ['watch', '--status', 'often'],
    exit: EXIT.usage,
    says: ['--status "often" is not a duration', '10s, 5m, 1h30m'],
  },
  {
    name: '--log-format bogus',
    argv: () => ['record', '--log-format', 'bogus'],
    exit: EXIT.usage,
    says: ['--log-format must be text or json', '"bogus"'],
  },
  {
    name: 'stats -w that is not a range',
    argv: () => ['stats', '-w', 'lots'],
    exit: UNKNOWN,
    check: true,
    says: ['-w "lots" is not a threshold range', '60:90', '@10:20'],
  },
  {
    name: 'stats -c range that ends before it starts',
    argv: () => ['stats', '-c', '90:10'],
    exit: UNKNOWN,
    check: true,
    says: ['-c "90:10" is not a threshold range'],
  },
  {
    name: 'stats -t shorter than --interval',
    argv: (c) => ['stats', '--netns', c.ns, '-t', '1', '--interval', '2s'],
    exit: UNKNOWN,
    check: true,
    says: ['--interval 2s does not fit in -t 1'],
  },
  {
    name: 'stats --netns that does not exist',
    argv: () => ['stats', '--netns', 'ctwt-no-such-ns'],
    exit: UNKNOWN,
    check: true,
    says: ['/run/netns/ctwt-no-such-ns does not exist', 'ip netns list'],
  },
  {
    name: 'stats --interval that is not a duration',
    argv: () => ['stats', '--interval', 'never'],
    exit: UNKNOWN,
    check: true,
    says: ['--interval "never" is not a duration', '10s, 5m, 1h30m'],
  },
  {
    name: 'top --speed that is not a number',
    argv: () => ['top', '--replay', fx('valid.jsonl'), '--speed', 'fast', '--batch'],
    exit: EXIT.usage,
    says: ['--speed', '"fast"'],
  },

  {
    name: "--filter 'src 127.0.0.0/' (a slash without a length)",
    argv: () => ['record', '--filter', 'src 127.0.0.0/', '--duration', '1s'],
    exit: EXIT.usage,
    says: ["--filter 'src 127.0.0.0/'", 'write the prefix length after the slash, 0-32'],
  },
  {
    name: "--filter 'dst ::1/' (a slash without a length, IPv6)",
    argv: () => ['top', '--filter', 'dst ::1/', '--batch'],
    exit: EXIT.usage,
    says: ["--filter 'dst ::1/'", 'write the prefix length after the slash, 0-128'],
  },
  {
    name: "--filter 'mark 0x1/' (a slash without a mask)",
    argv: () => ['record', '--filter', 'mark 0x1/', '--duration', '1s'],
    exit: EXIT.usage,
    says: ["'0x1/' is not a mark", 'e.g. 0x10/0xff'],
  },
  {
    name: "--filter 'mark 0x10/0x0f' (a value outside its mask matches nothing)",
    argv: () => ['watch', '--filter', 'mark 0x10/0x0f', '--status', '0'],
    exit: EXIT.usage,
    says: ['the value has bits outside the mask, so no mark can match'],
  },
  {
    name: "--filter 'mark 0x100000000' (past 32 bits)",
    argv: () => ['record', '--filter', 'mark 0x100000000', '--duration', '1s'],
    exit: EXIT.usage,
    says: ["'0x100000000' is not a mark", 'each 0 to 0xffffffff'],
  },
  {
    name: "--filter 'dport 70000' (past 65535)",
    argv: () => ['record', '--filter', 'dport 70000', '--duration', '1s'],
    exit: EXIT.usage,
    says: ['dport takes numbers 0-65535'],
  },
  {
    name: '--user "" (empty: must not stay root quietly)',
    argv: () => ['record', '--user', '', '--duration', '1s'],
    exit: EXIT.usage,
    says: ['--user is empty', 'leave --user out to stay root'],
  },
  {
    name: 'watch --user " " (blank)',
    argv: () => ['watch', '--user', ' ', '--status', '0'],
    exit: EXIT.usage,
    says: ['--user is empty'],
  },
  {
    name: '--user of an account that does not exist',
    argv: () => ['record', '--user', 'ctwatch-no-such-user', '--duration', '1s'],
    exit: EXIT.noInput,
    says: ['--user ctwatch-no-such-user: no such user', 'useradd --system'],
  },
  {
    name: 'CTWATCH_LOG_LEVEL=bogus',
    env: { CTWATCH_LOG_LEVEL: 'bogus' },
    argv: () => ['record', '--duration', '1s'],
    exit: EXIT.usage,
    says: ['CTWATCH_LOG_LEVEL="bogus" is not a log level', 'trace, debug, info, warn, error, fatal, silent'],
    never: ['internal error'],
  },
  {
    name: 'CTWATCH_LOG_LEVEL with an escape sequence in it',
    env: { CTWATCH_LOG_LEVEL: '\x1b[2Jloud' },
    argv: () => ['replay', fx('valid.jsonl')],
    exit: EXIT.usage,
    says: ['is not a log level', '\\\\x1b[2Jloud'],
    never: ['\x1b'],
  },

  {
    name: 'demo --leak-rate that is not a number',
    argv: () => ['demo', '--leak-rate', 'fast'],
    exit: EXIT.usage,
    says: ['--leak-rate "fast" is not a whole number'],
  },
  {
    name: 'demo --leak-rate out of range',
    argv: () => ['demo', '--leak-rate', '5000000'],
    exit: EXIT.usage,
    says: ['--leak-rate 5000000 is out of range', 'use 1 to 1000000'],
  },

  // --- output
  {
    name: 'record -o into a directory that does not exist',
    argv: () => ['record', '-o', '/nonexistent/ctwatch/ct.jsonl', '--duration', '1s'],
    exit: EXIT.cantCreate,
    says: ['cannot write /nonexistent/ctwatch/ct.jsonl', 'directory does not exist', 'choose a writable --output, or - for stdout'],
  },
  {
    name: 'record -o a directory',
    argv: (c) => ['record', '-o', c.dir, '--duration', '1s'],
    exit: EXIT.cantCreate,
    says: ['cannot write', 'is a directory', 'choose a writable --output'],
  },
  {
    name: 'record -o a new file in /proc',
    argv: () => ['record', '-o', '/proc/ctwatch.jsonl', '--duration', '1s'],
    exit: EXIT.cantCreate,
    says: ['cannot write /proc/ctwatch.jsonl', 'choose a writable --output'],
    // /proc exists: the reason must not send the operator looking for a missing directory
    never: ['directory does not exist'],
  },
  {
    name: 'record -o /proc/version (a kernel file)',
    argv: (c) => ['record', '--netns', c.ns, '-o', '/proc/version', '--duration', '2s'],
    exit: EXIT.cantCreate,
    says: ['cannot write /proc/version', 'choose a writable --output'],
  },
  {
    name: 'watch -o into a directory that does not exist',
    argv: (c) => ['watch', '--netns', c.ns, '-o', '/nonexistent/ctwatch/alerts.jsonl', '--status', '0'],
    exit: EXIT.cantCreate,
    says: ['cannot write /nonexistent/ctwatch/alerts.jsonl', 'directory does not exist', 'choose a writable --output'],
  },

  // --- recordings
  {
    name: 'replay a file that does not exist',
    argv: () => ['replay', '/nonexistent/ct.jsonl'],
    exit: EXIT.noInput,
    says: ['cannot read recording /nonexistent/ct.jsonl', 'no such file'],
  },
  {
    name: 'replay a malformed line',
    argv: () => ['replay', fx('malformed.jsonl')],
    exit: EXIT.dataErr,
    says: [`${fx('malformed.jsonl')}:3: not JSON`],
  },
  {
    name: 'report without -o',
    argv: () => ['report', fx('valid.jsonl')],
    exit: EXIT.usage,
    says: ['report needs -o FILE.html'],
  },
  {
    name: 'report --top out of range',
    argv: () => ['report', fx('valid.jsonl'), '-o', '-', '--top', '50'],
    exit: EXIT.usage,
    says: ['--top "50": give a whole number from 1 to 10'],
  },
  {
    name: 'report a file that does not exist',
    argv: () => ['report', '/nonexistent/ct.jsonl', '-o', '-'],
    exit: EXIT.noInput,
    says: ['cannot read recording /nonexistent/ct.jsonl', 'no such file'],
  },
  {
    name: 'report a malformed line',
    argv: () => ['report', fx('malformed.jsonl'), '-o', '-'],
    exit: EXIT.dataErr,
    says: [`${fx('malformed.jsonl')}:3: not JSON`],
  },
  {
    name: 'report into a directory that does not exist',
    argv: () => ['report', fx('valid.jsonl'), '-o', '/nonexistent/dir/incident.html'],
    exit: EXIT.cantCreate,
    says: ['cannot write /nonexistent/dir/incident.html'],
  },
  {
    name: 'replay a recording of another schema version',
    argv: () => ['replay', fx('schema-v2.jsonl')],
    exit: EXIT.dataErr,
    says: [`${fx('schema-v2.jsonl')}:1:`, 'schema version 2 is not supported', 'reads v1'],
  },
  {
    name: 'replay without a file',
    argv: () => ['replay', '--no-flows'],
    exit: EXIT.usage,
    says: ['replay needs exactly one recording file', USAGE_HELP('replay')],
  },
  {
    name: 'replay with two files',
    argv: () => ['replay', fx('valid.jsonl'), fx('malformed.jsonl')],
    exit: EXIT.usage,
    says: ['replay needs exactly one recording file', USAGE_HELP('replay')],
  },
  {
    name: 'replay a directory',
    argv: () => ['replay', FIX],
    exit: EXIT.noInput,
    says: [`cannot read recording ${FIX}`, 'directory'],
    never: ['internal error'],
  },
  ...([
    ['an id that is text', 'id-text.jsonl', "'id' must be a whole number 0-4294967295, not \"abc\""],
    ['a negative id', 'id-negative.jsonl', "'id' must be a whole number 0-4294967295, not -5"],
    ['an unknown family', 'family-bogus.jsonl', "'family' must be \"ipv4\" or \"ipv6\", not \"ipv5\""],
    ['an address that is a number', 'src-number.jsonl', "'src' must be an IPv4 address (the event's family), not 42"],
    ['an address of the other family', 'src-other-family.jsonl', "'src' must be an IPv4 address (the event's family), not \"2001:db8::1\""],
    ['a port past 65535', 'sport-range.jsonl', "'sport' must be a whole number 0-65535, not 70000"],
    ['a protocol that is a number, not text', 'proto-number.jsonl', "'proto' must be a protocol name (tcp, udp, icmp, ...) or number 0-255 as text, not 6"],
    ["a 'start' that is a number", 'start-number.jsonl', "'start' must be an RFC 3339 timestamp after 1970, not 5"],
    ["an 'end' that is not a time", 'end-garbage.jsonl', "'end' must be an RFC 3339 timestamp after 1970, not \"later\""],
    ["a 'status' that is not a list", 'status-string.jsonl', "'status' must be a list of status flags"],
    ["a 'reply' that is not an object", 'reply-string.jsonl', "'reply' must be an object, not \"none\""],
  ] as const).map(([what, name, says]): Case => ({
    name: `replay a recording with ${what}`,
    argv: (c) => ['replay', c.file(name)],
    exit: EXIT.dataErr,
    says: [`${name}:2: new: ${says}`],
  })),
  {
    name: 'replay a churn line whose table figures are text',
    argv: (c) => ['replay', c.file('churn-table-text.jsonl')],
    exit: EXIT.dataErr,
    says: ["churn-table-text.jsonl:1: churn: 'table.entries' must be a whole number >= 0, not \"many\""],
  },
  {
    name: 'replay a line of 2 MiB',
    argv: (c) => ['replay', c.file('long-line.jsonl')],
    exit: EXIT.dataErr,
    says: ['long-line.jsonl:2: line is longer than 1 MiB'],
  },
  {
    name: '--skip-bad-lines on wrong-typed fields: counted, exit 0',
    argv: (c) => ['replay', '--skip-bad-lines', c.file('sport-range.jsonl')],
    exit: 0,
    says: ['ctwatch warn: malformed lines were skipped', 'skipped=1'],
  },
  {
    name: 'replay /dev/zero (a device)',
    argv: () => ['replay', '/dev/zero'],
    exit: EXIT.noInput,
    says: ['cannot read recording /dev/zero: it is a device'],
  },
  {
    name: 'replay /dev/null (a device, not an empty recording)',
    argv: () => ['replay', '/dev/null'],
    exit: EXIT.noInput,
    says: ['cannot read recording /dev/null: it is a device'],
  },
  {
    name: 'replay a symlink to /dev/zero',
    argv: (c) => ['replay', c.file('zero-link.jsonl')],
    exit: EXIT.noInput,
    says: ['zero-link.jsonl: it is a device'],
  },
  {
    name: 'replay a symlink to a directory',
    argv: (c) => ['replay', c.file('dir-link.jsonl')],
    exit: EXIT.noInput,
    says: ['dir-link.jsonl: it is a directory'],
  },
  {
    name: 'replay a symlink that points at itself',
    argv: (c) => ['replay', c.file('loop.jsonl')],
    exit: EXIT.noInput,
    says: ['loop.jsonl: too many levels of symbolic links'],
  },
  {
    name: 'replay a FIFO that nobody writes to',
    argv: (c) => ['replay', c.file('no-writer.fifo')],
    exit: EXIT.noInput,
    says: ['no-writer.fifo: it is a FIFO and no process opened it for writing within 5 s'],
  },
  {
    name: 'top --replay a FIFO that nobody writes to',
    argv: (c) => ['top', '--replay', c.file('no-writer.fifo'), '--batch'],
    exit: EXIT.noInput,
    says: ['no-writer.fifo: it is a FIFO and no process opened it for writing within 5 s'],
  },
  {
    name: 'replay a recording in a directory an ordinary user cannot enter',
    as: NOBODY,
    argv: (c) => ['replay', c.file('sport-range.jsonl')],
    exit: EXIT.noInput,
    says: ['sport-range.jsonl: permission denied'],
  },
  {
    name: 'top --replay a recording with a port past 65535',
    argv: (c) => ['top', '--replay', c.file('sport-range.jsonl'), '--speed', '0', '--batch'],
    exit: EXIT.dataErr,
    says: ["sport-range.jsonl:2: new: 'sport' must be a whole number 0-65535, not 70000"],
  },
  {
    name: 'top --replay a file that does not exist',
    argv: () => ['top', '--replay', '/nonexistent/ct.jsonl', '--batch'],
    exit: EXIT.noInput,
    says: ['cannot read recording /nonexistent/ct.jsonl', 'no such file'],
  },
  {
    name: 'top --replay a malformed line',
    argv: () => ['top', '--replay', fx('malformed.jsonl'), '--speed', '0', '--batch'],
    exit: EXIT.dataErr,
    says: [`${fx('malformed.jsonl')}:3: not JSON`],
  },

  // --- alert rules
  {
    name: 'watch --rules file that does not exist',
    argv: () => ['watch', '--rules', '/nonexistent/rules.yaml', '--status', '0'],
    exit: EXIT.noInput,
    says: ['rules file /nonexistent/rules.yaml does not exist'],
  },
  {
    name: 'rules file that is not valid YAML',
    argv: () => ['watch', '--rules', fx('rules-bad-yaml.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [/rules-bad-yaml\.yaml:\d+: yaml: /, 'end with a ]'],
  },
  {
    name: 'rules file with an unknown field (did you mean)',
    argv: () => ['watch', '--rules', fx('rules-unknown-field.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-unknown-field.yaml')}:4: rules.table_fill.thresold: unknown field`, 'did you mean threshold?'],
  },
  {
    name: 'rules file with a threshold that is not a number',
    argv: () => ['watch', '--rules', fx('rules-bad-threshold.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-bad-threshold.yaml')}:5: rules.churn_per_destination.threshold`, 'expected a number'],
  },
  {
    name: 'rules file with a duration written in words',
    argv: () => ['watch', '--rules', fx('rules-bad-duration.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-bad-duration.yaml')}:4: rules.time_wait_pileup.for`, '"10 minutes" is not a duration', '500ms, 10s, 5m, 1h30m'],
  },
  {
    name: 'rules file with a table fill above 100 %',
    argv: () => ['watch', '--rules', fx('rules-bad-percent.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-bad-percent.yaml')}:3: rules.table_fill.threshold`, '0 < x <= 100'],
  },
  {
    name: '--check-rules on a rules file with an unknown field',
    argv: () => ['watch', '--check-rules', '--rules', fx('rules-unknown-field.yaml')],
    exit: EXIT.config,
    says: [`${fx('rules-unknown-field.yaml')}:4:`, 'did you mean threshold?'],
  },

  {
    name: 'rules file that is a device (/dev/zero would be read forever)',
    argv: () => ['watch', '--rules', '/dev/zero', '--status', '0'],
    exit: EXIT.noInput,
    says: ['rules file /dev/zero is a device, not a regular file'],
  },
  {
    name: 'rules file that is a FIFO with no writer (the open used to hang)',
    argv: (c) => ['watch', '--rules', c.file('no-writer.fifo'), '--status', '0'],
    exit: EXIT.noInput,
    says: ['is a FIFO, not a regular file'],
  },
  {
    name: 'rules file that is a directory',
    argv: (c) => ['watch', '--rules', c.dir, '--status', '0'],
    exit: EXIT.noInput,
    says: ['is a directory, not a regular file'],
  },
  {
    name: 'rules file larger than 256K',
    argv: (c) => ['watch', '--rules', c.file('huge-rules.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: ['is larger than 256K: is it the right file?'],
  },
  {
    name: 'rules file with more than 1000 rules (each is judged on every snapshot)',
    argv: (c) => ['watch', '--rules', c.file('many-rules.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [':2: rules: 1001 rules: at most 1000'],
  },
  {
    name: 'rules file with an inline Authorization header (secrets only from files or the environment)',
    argv: () => ['watch', '--rules', fx('rules-inline-secret.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-inline-secret.yaml')}:4: deliver[0].headers.Authorization: secrets are not accepted inline`, '{ file: PATH } or { env: NAME }'],
    never: ['5f0c1d2e'],
  },
  {
    name: 'rules file whose webhook token file is missing',
    argv: () => ['watch', '--rules', fx('rules-missing-token.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: ['deliver[0].token_file: cannot read /nonexistent/ctwatch/webhook.token (ENOENT)'],
  },
  {
    name: 'rules file with an exec hook timeout of 30 days',
    argv: () => ['watch', '--rules', fx('rules-exec-timeout-30d.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-exec-timeout-30d.yaml')}:3: deliver[0].timeout: "30d" is out of range`, 'at most 1d'],
  },
  {
    name: 'rules file with an exec hook env: name that is not a variable name',
    argv: () => ['watch', '--rules', fx('rules-exec-env-bad.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-exec-env-bad.yaml')}:3: deliver[0].env: "CTWATCH TEAM" is not an environment variable name`],
  },
  {
    name: 'rules file with a webhook given retries and retry.max_attempts',
    argv: () => ['watch', '--rules', fx('rules-webhook-retries-both.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-webhook-retries-both.yaml')}:3: deliver[0].retries: give retries or retry.max_attempts, not both`],
  },
  {
    name: 'rules file whose webhook spools, with --user (root would open the spool before the switch)',
    argv: () => ['watch', '--rules', fx('rules-webhook-spool.yaml'), '--user', 'nobody', '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-webhook-spool.yaml')}: deliver[0].spool: a rules-file webhook cannot spool under --user nobody; move it to the --sinks file`],
  },
  {
    name: 'sinks file with a webhook asked for flow records (webhooks take alerts)',
    argv: () => ['watch', '--sinks', fx('sinks-webhook-flow.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-webhook-flow.yaml')}:5: sinks[0].events[0]: unknown event kind "flow" (one of alert, resolved)`],
  },
  {
    name: 'rules file with two problems: the first, and how many more',
    argv: () => ['watch', '--rules', fx('rules-two-problems.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-two-problems.yaml')}:3: rules.table_fill.threshold: expected a percentage`, '(and 1 more problem in this file)'],
  },

  // --- SIEM sinks
  // spool directories and file-sink paths that are not safe to use as root (issue 11 items 1, 2, 7)
  {
    name: 'sinks file whose spool directory belongs to nobody',
    argv: (c) => ['watch', '--sinks', c.file('sinks-spool-nobody.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/cannot start sink "siem": spool .*spool-nobody: .*spool-nobody belongs to nobody \(uid 65534\), but ctwatch keeps its files there as root \(uid 0\)/],
  },
  {
    name: 'sinks file whose spool directory is group-writable',
    argv: (c) => ['watch', '--sinks', c.file('sinks-spool-group-writable.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/spool-group-writable is writable by group nogroup \(gid 65534\) \(chmod 700 /],
  },
  {
    name: 'sinks file whose spool lock is a symlink to a root file',
    argv: (c) => ['watch', '--sinks', c.file('sinks-spool-lock-link.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/spool-lock-link\/lock is a symbolic link, and ctwatch follows none where it writes/],
  },
  {
    name: 'sinks file whose spool segment is a hard link to a root file',
    argv: (c) => ['watch', '--sinks', c.file('sinks-spool-segment-hardlink.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/seg-000000000001\.log has 2 hard links, and ctwatch writes only files with one name/],
  },
  {
    name: 'sinks file whose spool is a regular file, not a directory',
    argv: (c) => ['watch', '--sinks', c.file('sinks-spool-is-a-file.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/spool-is-a-file is a regular file, not a directory/],
  },
  {
    name: '--user nobody and a spool directory that is root\'s (it would run "from memory only")',
    argv: (c) => ['watch', '--sinks', c.file('sinks-spool-root-only.yaml'), '--status', '0', '--user', 'nobody'],
    exit: EXIT.cantCreate,
    says: [/spool-root-only belongs to root \(uid 0\), but ctwatch keeps its files there as nobody \(uid 65534\)/],
    never: ['memory only'],
  },
  {
    name: 'file sink path that is a symlink to a root file',
    argv: (c) => ['watch', '--sinks', c.file('sinks-file-sink-link.jsonl.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/cannot start sink "archive": .*sink-link\.jsonl is a symbolic link, and ctwatch follows none where it writes/],
  },
  {
    name: "file sink path that is nobody's file",
    argv: (c) => ['watch', '--sinks', c.file('sinks-file-sink-nobody.jsonl.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/sink-nobody\.jsonl belongs to nobody \(uid 65534\), not to root \(uid 0\)/],
  },
  {
    name: 'file sink path that is a FIFO (no hang on open)',
    argv: (c) => ['watch', '--sinks', c.file('sinks-file-sink.fifo.yaml'), '--status', '0'],
    exit: EXIT.cantCreate,
    says: [/sink\.fifo is a FIFO or socket, not a regular file/],
  },
  // out-of-range sink and webhook settings (issue 11: each value has a documented range)
  {
    name: 'sinks file with a batch of 100G (a request body no receiver takes)',
    argv: () => ['watch', '--sinks', fx('sinks-batch-bytes-100g.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-batch-bytes-100g.yaml')}:6: sinks[0].batch.max_bytes: "100G" is out of range: use at most 64M`],
  },
  {
    name: 'sinks file with batches of 0 records',
    argv: () => ['watch', '--sinks', fx('sinks-batch-records-zero.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-batch-records-zero.yaml')}:6: sinks[0].batch.max_records: 0 is out of range: use 1 to 100000`],
  },
  {
    name: 'sinks file with a 1T memory queue (past the JavaScript heap)',
    argv: () => ['watch', '--sinks', fx('sinks-memory-1t.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-memory-1t.yaml')}:6: sinks[0].memory.max_bytes: "1T" is out of range: use at most 1G`],
  },
  {
    name: 'sinks file with a spool segment bigger than the spool',
    argv: () => ['watch', '--sinks', fx('sinks-segment-over-spool.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-segment-over-spool.yaml')}:8: sinks[0].spool.segment_bytes: 64M is more than spool.max_bytes (1M): a spool holds whole segments`],
  },
  {
    name: 'sinks file with 1K spool segments (raised silently before)',
    argv: () => ['watch', '--sinks', fx('sinks-segment-1k.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-segment-1k.yaml')}:7: sinks[0].spool.segment_bytes: "1K" is out of range: use at least 4K`],
  },
  {
    name: 'sinks file whose first retry waits longer than the longest',
    argv: () => ['watch', '--sinks', fx('sinks-retry-initial-over-max.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-retry-initial-over-max.yaml')}:6: sinks[0].retry.initial: 10m is more than retry.max (1s): the first wait cannot be longer than the longest`],
  },
  {
    name: 'sinks file with a 30-day retry wait (past a Node timer)',
    argv: () => ['watch', '--sinks', fx('sinks-retry-max-30d.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-retry-max-30d.yaml')}:6: sinks[0].retry.max: "30d" is out of range: use at most 1d`],
  },
  {
    name: 'sinks file with 0 retry attempts',
    argv: () => ['watch', '--sinks', fx('sinks-retry-attempts-zero.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-retry-attempts-zero.yaml')}:6: sinks[0].retry.max_attempts: 0 is out of range: use 1 to 1000000`],
  },
  {
    name: 'sinks file with a 30-day request timeout (past a Node timer)',
    argv: () => ['watch', '--sinks', fx('sinks-timeout-30d.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-timeout-30d.yaml')}:5: sinks[0].timeout: "30d" is out of range: use at most 1h`],
  },
  {
    name: 'sinks file with Basic credentials inline under a header of any name',
    argv: () => ['watch', '--sinks', fx('sinks-header-basic-value.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-header-basic-value.yaml')}:6: sinks[0].headers.X-Upstream: secrets are not accepted inline: give it as { file: PATH } or { env: NAME }`],
    never: ['c3ZjOnA0NTV3MHJkLWlubGluZQ'],
  },
  {
    name: 'sinks file with syslog messages of at most 100 bytes',
    argv: () => ['watch', '--sinks', fx('sinks-syslog-message-100.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-syslog-message-100.yaml')}:6: sinks[0].max_message_bytes: 100 is out of range: use 480 to 1048576`],
  },
  {
    name: 'sinks file with syslog facility 24',
    argv: () => ['watch', '--sinks', fx('sinks-syslog-facility-24.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-syslog-facility-24.yaml')}:6: sinks[0].facility: expected a facility name (local0..local7, daemon, ...) or 0..23`],
  },
  {
    name: 'sinks file keeping 0 rotated files',
    argv: () => ['watch', '--sinks', fx('sinks-file-max-files-zero.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-file-max-files-zero.yaml')}:5: sinks[0].max_files: 0 is out of range: use 1 to 100000`],
  },
  {
    name: 'sinks file rotating every 0s',
    argv: () => ['watch', '--sinks', fx('sinks-file-rotate-zero.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-file-rotate-zero.yaml')}:6: sinks[0].rotate.interval: "0s" is out of range: use at least 1s`],
  },
  {
    name: 'rules file with a webhook retried 100000 times',
    argv: () => ['watch', '--rules', fx('rules-webhook-retries-huge.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-webhook-retries-huge.yaml')}:3: deliver[0].retries: 100000 is out of range: use 0 to 1000`],
  },
  {
    name: 'rules file with a webhook queue of 0 alerts',
    argv: () => ['watch', '--rules', fx('rules-webhook-queue-zero.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-webhook-queue-zero.yaml')}:3: deliver[0].queue: 0 is out of range: use 1 to 1000000`],
  },
  {
    name: 'rules file with a 30-day webhook timeout (past a Node timer)',
    argv: () => ['watch', '--rules', fx('rules-webhook-timeout-30d.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('rules-webhook-timeout-30d.yaml')}:3: deliver[0].timeout: "30d" is out of range: use at most 1h`],
  },
  {
    name: 'sinks file that is a device',
    argv: () => ['watch', '--sinks', '/dev/zero', '--status', '0'],
    exit: EXIT.noInput,
    says: ['sinks file /dev/zero is a device, not a regular file'],
  },
  {
    name: 'sinks file with a misspelt key (did you mean)',
    argv: () => ['watch', '--sinks', fx('sinks-typo-key.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-typo-key.yaml')}:5: sinks[0].tokenfile: unknown field for type splunk_hec (did you mean token_file?)`],
  },
  {
    name: 'sinks file with a batch wait of 30 days',
    argv: () => ['watch', '--sinks', fx('sinks-max-wait-30d.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-max-wait-30d.yaml')}:6: sinks[0].batch.max_wait: "30d" is out of range: use at most 10m`],
  },
  {
    name: 'sinks file with a duration without a unit',
    argv: () => ['watch', '--sinks', fx('sinks-bare-duration.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-bare-duration.yaml')}:5: sinks[0].timeout: 30 needs a unit: write 30s, 30m or 30h`],
  },
  {
    name: 'sinks file with an inline credential header',
    argv: () => ['watch', '--sinks', fx('sinks-inline-header.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: ['sinks[0].headers.X-Api-Key: secrets are not accepted inline'],
    never: ['9d8c7b6a'],
  },
  {
    name: 'sinks file with port 0',
    argv: () => ['watch', '--sinks', fx('sinks-port-zero.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-port-zero.yaml')}:6: sinks[0].port: 0 is out of range: use 1 to 65535`],
  },
  {
    name: 'sinks file with a size in a unit that does not exist',
    argv: () => ['watch', '--sinks', fx('sinks-bad-size.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-bad-size.yaml')}:7: sinks[0].spool.max_bytes: "10XB" is not a size: write e.g. 64M, 512K or 1G`],
  },
  {
    name: 'sinks file with a YAML alias (refused: aliases can expand without bound)',
    argv: () => ['watch', '--sinks', fx('sinks-alias.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-alias.yaml')}:5: yaml: aliases (*d) are not supported`],
  },
  {
    name: 'watch --sinks file that does not exist',
    argv: () => ['watch', '--sinks', '/nonexistent/sinks.yaml', '--status', '0'],
    exit: EXIT.noInput,
    says: ['sinks file /nonexistent/sinks.yaml does not exist'],
  },
  {
    name: 'sinks file with a URL that is not http(s)',
    argv: () => ['watch', '--sinks', fx('sinks-bad-url.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-bad-url.yaml')}:4: sinks[0].url: expected an http:// or https:// URL`],
  },
  {
    name: 'sinks file with an unknown sink type',
    argv: () => ['watch', '--sinks', fx('sinks-unknown-type.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: [`${fx('sinks-unknown-type.yaml')}:3: sinks[0].type: expected one of syslog, splunk_hec, elasticsearch, http, webhook, file, nats`],
  },
  {
    name: 'sinks file with an inline secret',
    argv: () => ['watch', '--sinks', fx('sinks-inline-secret.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: ['secrets are not accepted inline', 'token_file or token_env'],
    // the secret itself must not be echoed to the log
    never: ['8f2c1a9e'],
  },
  {
    name: 'sinks file that is not valid YAML',
    argv: () => ['watch', '--sinks', fx('sinks-bad-yaml.yaml'), '--status', '0'],
    exit: EXIT.config,
    // one error model with the rules file: FILE:LINE: yaml: what the parser found
    says: [/sinks-bad-yaml\.yaml:\d+: yaml: /, 'end with a ]'],
  },
  {
    name: "sinks file without a top-level 'sinks:' list",
    argv: () => ['watch', '--sinks', fx('sinks-no-list.yaml'), '--status', '0'],
    exit: EXIT.config,
    says: ["expected a top-level 'sinks:' list", 'docs/siem.md'],
  },

  // --- metrics endpoint
  {
    name: 'watch --metrics without a port',
    argv: () => ['watch', '--metrics', 'localhost', '--status', '0'],
    exit: EXIT.usage,
    says: ['bad listen address "localhost"', 'the port is missing', 'e.g. 127.0.0.1:9477'],
  },
  {
    name: 'watch --metrics with a port above 65535',
    argv: () => ['watch', '--metrics', '127.0.0.1:99999', '--status', '0'],
    exit: EXIT.usage,
    says: ['"99999" is not a port (0-65535)', 'e.g. 127.0.0.1:9477'],
  },
  {
    name: 'watch --metrics with an IPv6 address without brackets',
    argv: () => ['watch', '--metrics', '::1:9477', '--status', '0'],
    exit: EXIT.usage,
    says: ['put an IPv6 address in brackets, e.g. [::1]:9477'],
  },
  {
    name: 'watch --metrics "" (empty)',
    argv: () => ['watch', '--metrics', '', '--status', '0'],
    exit: EXIT.usage,
    says: ['bad listen address ""', 'the port is missing', 'PORT (loopback)'],
  },
  {
    name: 'watch --metrics on a port that is in use',
    argv: (c) => ['watch', '--netns', c.ns, '--metrics', `127.0.0.1:${c.busyPort}`, '--status', '0'],
    exit: EXIT.unavailable,
    says: [/cannot listen on 127\.0\.0\.1:\d+: the port is already in use/, 'ss -ltnp', 'choose another port'],
  },
];

describe('bad input catalogue: one line that says what to do, and the right exit status', () => {
  let ns: Netns | undefined;
  let busy: Server | undefined;
  const ctx: Ctx = { ns: '', busyPort: 0, dir: '', file: (name) => join(ctx.dir, name) };

  beforeAll(async () => {
    ns = await createNetns();
    ctx.ns = ns.name;
    ctx.dir = mkdtempSync(join(tmpdir(), 'ctwatch-bad-input-'));
    for (const [name, make] of Object.entries(FILES)) make(ctx.file(name as keyof typeof FILES));
    busy = createServer();
    await new Promise<void>((resolve, reject) => {
      busy!.once('error', reject);
      busy!.listen(0, '127.0.0.1', () => resolve());
    });
    ctx.busyPort = (busy.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((r) => (busy ? busy.close(r) : r(undefined)));
    await ns?.destroy();
    if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
  });

  it('has at least 100 distinct cases (issue 8 set 30; issue 11 added wrong-typed recordings, FIFOs, devices, symlinks, filters, --user, environment)', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(100);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  for (const c of CASES) {
    it.concurrent(`${c.name}: exit ${c.exit}`, async ({ expect }) => {
      const r = await runCli(c.as, c.argv(ctx), 30_000, c.env);
      const why = `${[...Object.entries(c.env ?? {}).map(([k, v]) => `${k}=${v}`), ...(c.as ?? []), 'ctwatch', ...c.argv(ctx)].join(' ')}\n  ${describeResult(r)}`;
      expect(r.timedOut, why).toBe(false);
      expect(r.code, why).toBe(c.exit);
      const lines = c.check ? r.stdout.trim().split('\n').filter(Boolean) : errorLines(r, false);
      expect(lines, why).toHaveLength(1);
      const line = lines[0];
      if (c.check) expect(r.stderr, why).toBe('');
      expect(line, why).toMatch(c.check ? /^CONNTRACK UNKNOWN - / : /^ctwatch\b/);
      for (const w of c.says) expect(line, why).toMatch(w);
      for (const w of c.never ?? []) expect(line, why).not.toContain(w);
    });
  }
});

describe('bad input catalogue: output on a full disk', () => {
  let ns: Netns | undefined;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('record --snapshot --flows -o on a full 64 KiB tmpfs: exit 74, "the disk is full"', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-full-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    const file = join(dir, 'ct.jsonl');
    const args = ['record', '--netns', ns!.name, '--snapshot', '--flows', '-o', file];
    let child: ReturnType<typeof spawn> | undefined;
    try {
      const started = Date.now();
      child = spawn(process.execPath, [CLI, ...args], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child!.once('close', (code, signal) => resolve({ code, signal })),
      );
      let gone = false;
      void exited.then(() => (gone = true));
      await waitFor(() => gone || stderr.includes('recording conntrack events'), 'record to start');
      // About 1 KB of output per connection (new, destroy, flow): 400 fill 64 KiB several times over.
      if (!gone) {
        await ns!.generate({
          listen: [{ proto: 'tcp', host: '127.0.0.9', port: 7000 }],
          run: [{ kind: 'connect', host: '127.0.0.9', port: 7000, count: 400, rate: 400 }],
        });
      }
      // The full disk must stop the recording by itself.
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000).unref());
      const res = await Promise.race([exited, timeout]);
      const r: Result = {
        code: res === 'timeout' ? null : res.code,
        signal: res === 'timeout' ? null : res.signal,
        stdout: '',
        stderr,
        ms: Date.now() - started,
        timedOut: res === 'timeout',
      };
      const why = `ctwatch ${args.join(' ')}  (on a 64 KiB tmpfs)\n  ${describeResult(r)}`;
      expect(r.timedOut, why).toBe(false);
      expect(r.code, why).toBe(EXIT.ioErr);
      const lines = errorLines(r, true);
      expect(lines, why).toHaveLength(1);
      expect(lines[0], why).toMatch(/^ctwatch\b/);
      for (const w of [`writing ${file} failed: ENOSPC`, 'the disk is full', 'choose another --output']) expect(lines[0], why).toContain(w);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child!.once('close', r));
      }
      await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
