/**
 * `ctwatch doctor`'s findings: each a pure function of the Facts (what doctor-facts.ts gathered),
 * one line with what was found, a status and the command that fixes it, so the same facts always
 * give the same advice (test/unit/doctor.test.ts).
 */
import { DEFAULT_RCVBUF } from '../source/live.js';
import type { KernelStats } from '../source/native.js';
import { sumPerCpu } from '../churn/pressure.js';
import { inNetnsCommand } from '../util/shell.js';

export type Status = 'ok' | 'warn' | 'fail' | 'skip';

export interface Finding {
  check: string;
  status: Status;
  /** what was found, in one sentence */
  finding: string;
  /** the command that fixes it (runnable where it can be), or the setting to change; absent when
   * nothing needs fixing */
  fix?: string;
  /** the figures behind the finding, for scripts */
  data?: Record<string, number | string | null>;
}

/** Capability numbers (linux/capability.h) of the ones ctwatch's features need. */
export const CAP = {
  DAC_READ_SEARCH: 2,
  SETGID: 6,
  SETUID: 7,
  NET_ADMIN: 12,
  SYS_PTRACE: 19,
  SYS_ADMIN: 21,
  PERFMON: 38,
  BPF: 39,
} as const;
export type CapName = keyof typeof CAP;

export const has = (set: bigint, cap: CapName): boolean => ((set >> BigInt(CAP[cap])) & 1n) === 1n;

/** Everything the findings are computed from. */
export interface Facts {
  /** as given on the command line (a name or a path); absent: our own namespace */
  netns?: string;
  /** sysctl values by full name (net.netfilter.nf_conntrack_events); missing keys are unknown */
  sysctl: Record<string, number>;
  /** why sysctls could not be read, if they could not */
  sysctlError?: string;
  /** nf_conntrack_netlink: a loaded module, built into the kernel, or not there */
  module: 'module' | 'builtin' | 'unknown';
  /** opening a conntrack netlink socket in the namespace */
  open: { ok: true; rcvbuf: number } | { ok: false; code: string; message: string };
  stats?: KernelStats;
  /** does the namespace's nftables ruleset make the kernel track connections? */
  ruleset: { usesConntrack: boolean } | { error: string };
  caps: { effective: bigint; bounding: bigint };
  uid: number;
  attribution: {
    /** the addon's eBPF attribution: in this build? did its programs load here (tried for a moment)? */
    ebpf: { built: false } | { built: true; loaded: true; sendsCovered: boolean; cgroupRoot?: string } | { built: true; loaded: false; code: string; message: string };
    /** reading /proc/PID/fd of a process of another user: what sock_diag attribution needs */
    otherUsersFd: 'readable' | 'denied' | 'untested';
    otherPid?: number;
    btf: boolean;
    cgroup2?: string;
    /** /sys/kernel/security/lockdown's current mode, e.g. "integrity" */
    lockdown?: string;
    /** /proc mounted with hidepid: other users' processes are invisible */
    hidepid?: string;
  };
  dump?: { ms: number; entries: number; done: boolean } | { error: string };
  /** the native addon: where it was loaded from, or why none loads */
  addon: { ok: true; path: string; kind: 'prebuild' | 'local build'; glibc?: string; skipped: { path: string; reason: string }[] } | { ok: false; message: string };
}

// ---- the findings: pure functions of the facts ----------------------------------------------

/** `sysctl -w` in the right namespace. */
export function sysctlFix(netns: string | undefined, setting: string): string {
  return inNetnsCommand(netns, `sysctl -w ${setting}`);
}

const num = (x: number): string => x.toLocaleString('en-US').replace(/,/g, ' ');
/** the prefix of conntrack's sysctls */
export const NF = 'net.netfilter.nf_conntrack_';

export function addonFinding(f: Facts): Finding {
  const check = 'addon';
  const a = f.addon;
  if (!a.ok) {
    // native/load.cjs says "... (tried PATH: why; ...): FIX"
    const i = a.message.lastIndexOf('): ');
    return i < 0 ? { check, status: 'fail', finding: a.message } : { check, status: 'fail', finding: a.message.slice(0, i + 1), fix: a.message.slice(i + 3) };
  }
  const what = `${a.kind} ${a.path}${a.glibc ? ` (needs glibc >= ${a.glibc})` : ''}`;
  if (a.skipped.length > 0) {
    return { check, status: 'warn', finding: `${what}; did not load: ${a.skipped.map((x) => `${x.path}: ${x.reason}`).join('; ')}`, fix: "rebuild it ('npm run build' in the package), or delete the broken build so the prebuild is used" };
  }
  return { check, status: 'ok', finding: what };
}

export function netlinkFinding(f: Facts): Finding {
  const check = 'netlink';
  if (f.open.ok) {
    return { check, status: 'ok', finding: `conntrack netlink: ${f.module === 'module' ? 'module nf_conntrack_netlink loaded' : f.module === 'builtin' ? 'built into the kernel' : 'answers'}` };
  }
  if (f.open.code === 'ERR_NO_CTNETLINK') {
    return { check, status: 'fail', finding: "the kernel's conntrack netlink interface is not available", fix: 'modprobe nf_conntrack_netlink; load it at boot: echo nf_conntrack_netlink > /etc/modules-load.d/ctwatch.conf' };
  }
  if (f.open.code === 'ERR_NO_CAP_NET_ADMIN') return { check, status: 'skip', finding: 'not tried: opening a conntrack netlink socket needs CAP_NET_ADMIN (see capabilities)' };
  if (f.open.code === 'ERR_NETNS_PERMISSION') return { check, status: 'skip', finding: 'not tried: entering the namespace needs CAP_SYS_ADMIN (see capabilities)' };
  return { check, status: 'fail', finding: `opening a conntrack netlink socket failed: ${f.open.message}` };
}

export function capabilitiesFinding(f: Facts): Finding {
  const check = 'capabilities';
  const e = f.caps.effective;
  const names = (Object.keys(CAP) as CapName[]).filter((c) => has(e, c)).map((c) => `CAP_${c}`);
  const held = names.length ? names.join(' ') : 'none of those ctwatch uses';
  if (!has(e, 'NET_ADMIN')) {
    return { check, status: 'fail', finding: `held: ${held}; conntrack events need CAP_NET_ADMIN`, fix: 'run ctwatch as root, or grant CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN, contrib/ctwatch.service)' };
  }
  if (f.netns !== undefined && !has(e, 'SYS_ADMIN')) {
    return { check, status: 'fail', finding: `held: ${held}; entering the namespace ${f.netns} needs CAP_SYS_ADMIN`, fix: 'run ctwatch as root, or grant CAP_SYS_ADMIN (contrib/ctwatch.service)' };
  }
  const cannot: string[] = [];
  if (!has(e, 'SYS_ADMIN')) cannot.push('--netns (CAP_SYS_ADMIN)');
  if (!has(e, 'SETUID') || !has(e, 'SETGID')) cannot.push('--user (CAP_SETUID CAP_SETGID)');
  return { check, status: 'ok', finding: `held: ${held}${cannot.length ? `; without ${cannot.join(', ')}` : ''}` };
}

export function eventsFinding(f: Facts): Finding {
  const check = 'events';
  const v = f.sysctl[`${NF}events`];
  if (v === undefined) return { check, status: 'skip', finding: `${NF}events could not be read${f.sysctlError ? `: ${f.sysctlError}` : ''}` };
  const data = { [`${NF}events`]: v };
  if (v === 0) return { check, status: 'fail', finding: `${NF}events=0: the kernel sends no conntrack events`, fix: sysctlFix(f.netns, `${NF}events=1`), data };
  if (v === 2) return { check, status: 'ok', finding: `${NF}events=2 (on while a listener exists; entries older than the listener send no DESTROY, so ctwatch dumps the table at start)`, data };
  return { check, status: 'ok', finding: `${NF}events=${v}`, data };
}

const RULE_FIX = ['nft add table inet ctwatch', "nft add chain inet ctwatch out '{ type filter hook output priority 0; }'", 'nft add rule inet ctwatch out ct state new counter'];

export function rulesetFinding(f: Facts): Finding {
  const check = 'ruleset';
  const entries = f.stats?.entries ?? f.sysctl[`${NF}count`];
  const fix = RULE_FIX.map((c) => inNetnsCommand(f.netns, c)).join('; ');
  if (entries !== undefined && entries !== null && entries > 0) return { check, status: 'ok', finding: `the namespace tracks connections (${num(entries)} entries now)` };
  if ('error' in f.ruleset) {
    return { check, status: 'warn', finding: `the table is empty and the ruleset could not be read (${f.ruleset.error}): nothing is tracked until a rule uses conntrack`, fix };
  }
  if (f.ruleset.usesConntrack) return { check, status: 'ok', finding: 'the ruleset uses conntrack; the table is empty (no traffic yet)' };
  return { check, status: 'fail', finding: 'the table is empty and no nftables rule uses conntrack: this namespace tracks nothing until one does', fix };
}

function toggleFinding(f: Facts, check: string, key: string, without: string): Finding {
  const v = f.sysctl[`${NF}${key}`];
  if (v === undefined) return { check, status: 'skip', finding: `${NF}${key} could not be read` };
  const data = { [`${NF}${key}`]: v };
  if (v === 0) return { check, status: 'warn', finding: `${NF}${key}=0: ${without} (turning it on applies to entries created afterwards)`, fix: sysctlFix(f.netns, `${NF}${key}=1`), data };
  return { check, status: 'ok', finding: `${NF}${key}=${v}`, data };
}

export const accountingFinding = (f: Facts): Finding => toggleFinding(f, 'accounting', 'acct', 'flow ends carry no bytes or packets');
export const timestampsFinding = (f: Facts): Finding =>
  toggleFinding(f, 'timestamps', 'timestamp', "flow lifetimes come from when events arrive, not the kernel's start and stop times");

/** Average hash chain length (max / buckets) above which lookups slow down and chaintoolong drops. */
export const MAX_CHAIN = 8;

export function tableFinding(f: Facts): Finding {
  const check = 'table';
  const max = f.stats?.max ?? f.sysctl[`${NF}max`];
  const buckets = f.sysctl[`${NF}buckets`];
  const entries = f.stats?.entries ?? f.sysctl[`${NF}count`];
  if (max === undefined || max === null || buckets === undefined) return { check, status: 'skip', finding: 'the table limit or its hash buckets could not be read' };
  const cpus = f.stats?.cpus;
  const chain = buckets > 0 ? max / buckets : Infinity;
  const parts = [`limit ${num(max)}, ${num(buckets)} hash buckets (${chain.toFixed(chain < 10 ? 1 : 0)} per bucket at full)`];
  if (entries !== undefined && entries !== null) parts.push(`${num(entries)} entries (${Math.round((entries / Math.max(1, max)) * 100)} %)`);
  const totals = sumPerCpu(cpus ?? []);
  const drops = (totals.drop ?? 0) + (totals.early_drop ?? 0);
  const tooLong = totals.chaintoolong ?? 0;
  if (drops > 0) parts.push(`the kernel dropped ${num(drops)} packets for a full table since boot`);
  if (tooLong > 0) parts.push(`${num(tooLong)} inserts refused for a hash chain too long`);
  const finding = parts.join('; ');
  const data = { max, buckets, entries: entries ?? null, drops, chaintoolong: tooLong };
  const bucketFix = `echo ${max} > /sys/module/nf_conntrack/parameters/hashsize (or sysctl -w ${NF}buckets=${max}; the host's namespace only)`;
  if (chain > MAX_CHAIN || tooLong > 0) return { check, status: 'warn', finding, fix: bucketFix, data };
  if (drops > 0) return { check, status: 'warn', finding, fix: `find what fills it (ctwatch top${f.netns ? ` --netns ${f.netns}` : ''}); raise the limit: ${sysctlFix(undefined, `${NF}max=${max * 2}`)} and the buckets with it`, data };
  return { check, status: 'ok', finding, data };
}

/** The kernel's defaults (nf_conntrack_proto_*.c): longer values keep entries in the table longer. */
export const DEFAULT_TIMEOUTS: Record<string, number> = {
  tcp_timeout_time_wait: 120,
  tcp_timeout_established: 432000,
  tcp_timeout_close_wait: 60,
  tcp_timeout_fin_wait: 120,
  tcp_timeout_syn_sent: 120,
  udp_timeout: 30,
  udp_timeout_stream: 120,
  icmp_timeout: 30,
  generic_timeout: 600,
};

export function timeoutsFinding(f: Facts): Finding {
  const check = 'timeouts';
  const tw = f.sysctl[`${NF}tcp_timeout_time_wait`];
  if (tw === undefined) return { check, status: 'skip', finding: 'the per-protocol timeouts could not be read' };
  const v = (k: string) => f.sysctl[`${NF}${k}`];
  const max = f.stats?.max ?? v('max');
  const shown = `TIME_WAIT ${tw} s, ESTABLISHED ${num(v('tcp_timeout_established'))} s, UDP ${v('udp_timeout')} s (stream ${v('udp_timeout_stream')} s), generic ${v('generic_timeout')} s`;
  // A short TCP connection holds its entry for about the TIME_WAIT timeout after it closes.
  const ceiling = max && tw > 0 ? `; short TCP connections fill the table at ${num(Math.floor(max / tw))}/s sustained` : '';
  const raised = Object.entries(DEFAULT_TIMEOUTS).filter(([k, d]) => v(k) !== undefined && v(k) > d);
  if (raised.length > 0) {
    return {
      check,
      status: 'warn',
      finding: `${shown}${ceiling}; above the kernel's default: ${raised.map(([k, d]) => `${k} ${v(k)} s (default ${d})`).join(', ')}`,
      fix: raised.map(([k, d]) => sysctlFix(f.netns, `${NF}${k}=${d}`)).join('; '),
    };
  }
  return { check, status: 'ok', finding: `${shown}${ceiling}` };
}

export const MiB = 1024 * 1024;

export function rcvbufFinding(f: Facts): Finding {
  const check = 'rcvbuf';
  if (!f.open.ok) return { check, status: 'skip', finding: 'not tried: no conntrack netlink socket (see netlink)' };
  const rmemMax = f.sysctl['net.core.rmem_max'];
  // The kernel reports twice what was asked for (its bookkeeping overhead).
  const granted = f.open.rcvbuf;
  const limit = rmemMax !== undefined ? `; net.core.rmem_max=${num(rmemMax)} does not bind it (SO_RCVBUFFORCE with CAP_NET_ADMIN)` : '';
  if (granted < DEFAULT_RCVBUF) {
    return {
      check,
      status: 'warn',
      finding: `the event socket got ${(granted / MiB).toFixed(1)} MiB of the ${DEFAULT_RCVBUF / MiB} MiB asked for: bursts will overflow (ENOBUFS)`,
      fix: `${sysctlFix(undefined, `net.core.rmem_max=${2 * DEFAULT_RCVBUF}`)}, or grant CAP_NET_ADMIN so ctwatch can force it`,
    };
  }
  return { check, status: 'ok', finding: `the event socket got ${Math.round(granted / MiB)} MiB (asked ${DEFAULT_RCVBUF / MiB} MiB; grows to 512 MiB after an overflow)${limit}` };
}

/** What `--attribution auto` (the default of record, watch, top and stats) runs here: ebpf when
 * the addon's programs load (src/process/attribution.ts chooses), else sockdiag, whose socket
 * owners come from /proc/PID/fd. Doctor makes the same choice the commands make, and says why. */
export function attributionFinding(f: Facts): Finding {
  const check = 'attribution';
  const a = f.attribution;
  const e = f.caps.effective;
  const bpfCaps = (has(e, 'BPF') && has(e, 'PERFMON')) || has(e, 'SYS_ADMIN') ? 'CAP_BPF + CAP_PERFMON held' : 'CAP_BPF + CAP_PERFMON not held';
  // Sockets map to processes through /proc/PID/fd: other users' need both capabilities. Tried on a
  // real process of another user when there is one; otherwise judged by the capabilities held.
  const others = a.otherUsersFd === 'untested' ? has(e, 'SYS_PTRACE') && has(e, 'DAC_READ_SEARCH') : a.otherUsersFd === 'readable';
  const tried = a.otherUsersFd === 'untested' ? '' : ` (tried on pid ${a.otherPid})`;
  const hidden = a.hidepid && a.hidepid !== '0' && a.hidepid !== 'off' && !others;
  const fallback = hidden
    ? `/proc is mounted hidepid=${a.hidepid}: other users' processes are invisible${tried}`
    : others
      ? `every process can be named${tried}`
      : `only processes of uid ${f.uid} can be named (reading other users' /proc/PID/fd needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)${tried}`;
  const mode = a.ebpf.built && a.ebpf.loaded ? 'ebpf' : 'sockdiag';
  const data = { mode, ebpf: !a.ebpf.built ? 'absent' : a.ebpf.loaded ? 'loads' : a.ebpf.code, otherUsersFd: a.otherUsersFd };
  if (a.ebpf.built && a.ebpf.loaded) {
    // eBPF reads nothing from /proc per flow: the fallback's reach is for --attribution sockdiag.
    return { check, status: 'ok', finding: `ebpf (what --attribution auto runs: the programs loaded here, ${bpfCaps}, attached at cgroup ${a.ebpf.cgroupRoot ?? a.cgroup2 ?? '?'}${a.ebpf.sendsCovered ? ', connected UDP covered' : ''}); with --attribution sockdiag: ${fallback}`, data };
  }
  const refused = a.ebpf.built ? `eBPF refused: ${a.ebpf.message} (${a.ebpf.code}; ${bpfCaps}${a.btf ? '' : ', no BTF'}${a.cgroup2 ? '' : ', no cgroup2 mount'}${a.lockdown === 'confidentiality' ? ', lockdown=confidentiality' : ''})` : 'this addon has no eBPF attribution';
  if (hidden) {
    return { check, status: 'warn', finding: `sockdiag (${refused}); ${fallback}`, fix: 'grant CAP_BPF CAP_PERFMON (eBPF needs no /proc), or CAP_SYS_PTRACE CAP_DAC_READ_SEARCH, or remount /proc without hidepid (contrib/ctwatch.service)', data };
  }
  if (!others) {
    return { check, status: 'warn', finding: `sockdiag (${refused}): ${fallback}`, fix: 'grant CAP_BPF CAP_PERFMON (eBPF), or CAP_SYS_PTRACE CAP_DAC_READ_SEARCH for sockdiag (systemd: CapabilityBoundingSet= and AmbientCapabilities=, see contrib/ctwatch.service)', data };
  }
  return { check, status: 'ok', finding: `sockdiag (${refused}): ${fallback}`, data };
}

/** A dump slower than this makes start-up and every resync after lost events that much blinder. */
export const SLOW_DUMP_MS = 2000;

export function dumpFinding(f: Facts): Finding {
  const check = 'dump';
  const d = f.dump;
  if (!d) return { check, status: 'skip', finding: 'not tried: no conntrack netlink socket (see netlink)' };
  if ('error' in d) return { check, status: 'fail', finding: `the table dump failed: ${d.error}` };
  if (!d.done) return { check, status: 'warn', finding: `a full table dump did not finish in ${(d.ms / 1000).toFixed(0)} s (${num(d.entries)} entries read): start-up and resync after lost events will be slow`, fix: 'see doctor table and timeouts: fewer, shorter-lived entries dump faster' };
  const rate = d.ms > 0 && d.entries > 0 ? `, ${num(Math.round((d.entries / d.ms) * 1000))} entries/s` : '';
  const finding = `a full table dump took ${d.ms < 10 ? d.ms.toFixed(1) : Math.round(d.ms)} ms for ${num(d.entries)} entries${rate}`;
  const data = { ms: Math.round(d.ms * 10) / 10, entries: d.entries };
  if (d.ms > SLOW_DUMP_MS) return { check, status: 'warn', finding: `${finding}: start-up and each resync after lost events take that long`, fix: 'raise --rcvbuf so overflows (and resyncs) are rare; see doctor table and timeouts', data };
  return { check, status: 'ok', finding, data };
}

export function findings(f: Facts): Finding[] {
  return [
    addonFinding(f),
    netlinkFinding(f),
    capabilitiesFinding(f),
    eventsFinding(f),
    rulesetFinding(f),
    accountingFinding(f),
    timestampsFinding(f),
    tableFinding(f),
    timeoutsFinding(f),
    rcvbufFinding(f),
    attributionFinding(f),
    dumpFinding(f),
  ];
}

export function exitStatus(list: Finding[]): number {
  return list.some((x) => x.status === 'fail') ? 2 : list.some((x) => x.status === 'warn') ? 1 : 0;
}

const LABEL: Record<Status, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

export function renderFindings(list: Finding[]): string {
  const out: string[] = [];
  for (const x of list) {
    // One line per check, fix included, so `ctwatch doctor | grep FAIL` keeps what to do.
    out.push(`${LABEL[x.status].padEnd(6)}${x.check.padEnd(14)}${x.finding}${x.fix ? ` — fix: ${x.fix}` : ''}`);
  }
  return `${out.join('\n')}\n`;
}
