/**
 * `ctwatch doctor`: why there are no events, no bytes, no processes — each check one line with
 * what it found, a status and the command that fixes it. Facts are gathered first (sysctls of the
 * namespace, the kernel's netlink answers, capabilities, a timed table dump: doctor-facts.ts); the
 * findings are pure functions of them (doctor-findings.ts), unit-tested, so the same facts always
 * give the same advice. This file is the command: its flags, its help and its output.
 */
import { existsSync } from 'node:fs';
import { netnsPath } from '../util/netns.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { logger, parse } from './common.js';
import { COMMON_DEFS, optionHelp, parserOptions, type CommandDef, type OptionDef } from './options.js';
import { gatherFacts } from './doctor-facts.js';
import { exitStatus, findings, renderFindings } from './doctor-findings.js';

export const DOCTOR_OPTIONS: readonly OptionDef[] = [
  { name: 'netns', type: 'string', arg: 'NAME|PATH', help: "the namespace to check: a name from 'ip netns list' or a path such as\n/proc/PID/ns/net (default: ctwatch's own)", complete: 'netns' },
  { name: 'json', type: 'boolean', help: 'one JSON object (schema/v1/doctor.json) instead of lines' },
  ...COMMON_DEFS,
];

export const DOCTOR_COMMAND: CommandDef = { name: 'doctor', summary: 'check the kernel, the namespace and the privileges ctwatch needs, with the fix for each', options: DOCTOR_OPTIONS };

export const DOCTOR_HELP = `Usage: ctwatch doctor [options]

Checks what decides whether ctwatch sees events, bytes and processes, one line each with the
fix: the conntrack netlink interface, the events sysctl, a ruleset that makes the namespace
track anything, accounting, timestamps, hash buckets against the table limit, per-protocol
timeouts, the receive buffer, what process attribution can use (it reads one other user's
/proc/PID/fd, and loads the addon's eBPF programs for a moment to see the kernel takes them),
the capabilities held, and how long a full table dump takes. It changes nothing.

Options:
${optionHelp(DOCTOR_OPTIONS)}

Exit status: 0 every check passed, 1 a warning (ctwatch works, with less), 2 a failure (no
events, or none that can be trusted); 64 usage, 66 no such namespace.
Example:
  sudo ctwatch doctor --netns prod
  ok    netlink       conntrack netlink: built into the kernel
  FAIL  events        net.netfilter.nf_conntrack_events=0: the kernel sends no conntrack events — fix: ip netns exec prod sysctl -w net.netfilter.nf_conntrack_events=1
`;

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parse('doctor', argv, parserOptions(DOCTOR_OPTIONS.filter((d) => d.name !== 'help' && d.name !== 'log-format')));
  if (values.help) {
    process.stdout.write(DOCTOR_HELP);
    return 0;
  }
  logger(values as { 'log-format'?: string });
  const netns = values.netns as string | undefined;
  if (netns !== undefined && !existsSync(netnsPath(netns))) {
    throw new CtwatchError('ERR_NETNS_NOT_FOUND', `network namespace ${netnsPath(netns)} does not exist: list them with 'ip netns list', or pass a path such as /proc/PID/ns/net`, { exitCode: EXIT.noInput });
  }
  const facts = await gatherFacts(netns);
  const list = findings(facts);
  const code = exitStatus(list);
  if (values.json) {
    const status = (['ok', 'warn', 'fail'] as const)[code];
    process.stdout.write(`${JSON.stringify({ v: 1, event: 'doctor', time: new Date().toISOString(), netns: netns ?? null, status, checks: list })}\n`);
  } else {
    process.stdout.write(renderFindings(list));
  }
  return code;
}
