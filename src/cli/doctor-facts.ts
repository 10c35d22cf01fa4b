/**
 * `ctwatch doctor`'s facts: the namespace's sysctls, the kernel's netlink answers, the nftables
 * ruleset, capabilities, what process attribution can see, the native addon and a timed table
 * dump, each read with a deadline. The findings are computed from them in doctor-findings.ts.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { LiveSource } from '../source/live.js';
import { runHelper } from '../util/netns.js';
import type { KernelStats } from '../source/native.js';
import { addonOrigin, requireAddon } from '../util/addon.js';
import { openEbpf } from '../process/attribution.js';
import { CtwatchError, fromNativeError } from '../util/errors.js';
import { DEFAULT_TIMEOUTS, MiB, NF, type Facts } from './doctor-findings.js';

const SYSCTLS = [
  'events',
  'acct',
  'timestamp',
  'max',
  'buckets',
  'count',
  ...Object.keys(DEFAULT_TIMEOUTS),
].map((k) => `${NF}${k}`).concat(['net.core.rmem_max']);

const sysctlPath = (key: string) => `/proc/sys/${key.replace(/\./g, '/')}`;

/** Network sysctls belong to the namespace of the process that opens them: read another's from a
 * process that entered it (nsenter, util-linux). */
async function readSysctls(netns: string | undefined): Promise<{ values: Record<string, number>; error?: string }> {
  const values: Record<string, number> = {};
  if (netns === undefined) {
    for (const k of SYSCTLS) {
      try {
        values[k] = Number(readFileSync(sysctlPath(k), 'utf8').trim());
      } catch {
        /* absent on this kernel */
      }
    }
    return { values };
  }
  try {
    // grep prints FILE:VALUE per file; it exits 2 when some file is missing, which is not an error here.
    const r = await runHelper(netns, ['grep', '-s', '-H', '.', ...SYSCTLS.map(sysctlPath)], { timeoutMs: 10_000, maxBytes: MiB });
    if (r.stdout.length === 0 && r.code !== 0) return { values, error: r.stderr.trim().split('\n')[0] || `grep exited ${r.code}` };
    for (const line of r.stdout.split('\n')) {
      const i = line.lastIndexOf(':');
      if (i < 0) continue;
      const key = line.slice('/proc/sys/'.length, i).replace(/\//g, '.');
      values[key] = Number(line.slice(i + 1).trim());
    }
    return { values };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { values, error: e.code === 'ENOENT' && e.syscall?.startsWith('spawn') ? 'nsenter (util-linux) is not installed' : e.message };
  }
}

/** True if some rule needs connection tracking: a ct expression, NAT, or an xtables state match. */
export function rulesetUsesConntrack(doc: unknown): boolean {
  const seen = (v: unknown): boolean => {
    if (Array.isArray(v)) return v.some(seen);
    if (v === null || typeof v !== 'object') return false;
    const o = v as Record<string, unknown>;
    if ('ct' in o || 'snat' in o || 'dnat' in o || 'masquerade' in o || 'redirect' in o) return true;
    if (o.type === 'nat' && 'hook' in o) return true;
    const xt = o.xt as { name?: string } | undefined;
    if (xt && typeof xt === 'object' && /^(conntrack|state|connmark|CONNMARK)$/.test(String(xt.name))) return true;
    return Object.values(o).some(seen);
  };
  return seen(doc);
}

async function readRuleset(netns: string | undefined): Promise<Facts['ruleset']> {
  try {
    const r = await runHelper(netns, ['nft', '-j', 'list', 'ruleset'], { timeoutMs: 10_000, maxBytes: 64 * MiB });
    if (r.code !== 0) return { error: r.stderr.trim().split('\n')[0] || `nft exited ${r.code}` };
    return { usesConntrack: rulesetUsesConntrack(JSON.parse(r.stdout)) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' && e.syscall?.startsWith('spawn')) return { error: `${netns === undefined ? 'nft' : 'nsenter or nft'} is not installed` };
    return { error: e.message.split('\n')[0] };
  }
}

function moduleState(): Facts['module'] {
  if (existsSync('/sys/module/nf_conntrack_netlink/initstate')) return 'module';
  try {
    const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
    if (readFileSync(`/lib/modules/${release}/modules.builtin`, 'utf8').includes('/nf_conntrack_netlink.ko')) return 'builtin';
  } catch {
    /* no module tree (containers, custom kernels) */
  }
  return 'unknown';
}

function procStatus(): { effective: bigint; bounding: bigint; uid: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const hex = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s+([0-9a-f]+)`, 'm').exec(status)?.[1] ?? '0'}`);
  return { effective: hex('CapEff'), bounding: hex('CapBnd'), uid: Number(/^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1] ?? -1) };
}

function attributionFacts(): Facts['attribution'] {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  let cgroup2: string | undefined;
  let hidepid: string | undefined;
  for (const m of mounts) {
    const [pre, post] = m.split(' - ');
    if (!post) continue;
    const fields = pre.split(' ');
    const [fstype, , superOpts] = post.split(' ');
    if (fstype === 'cgroup2' && cgroup2 === undefined) cgroup2 = fields[4];
    if (fstype === 'proc' && fields[4] === '/proc') hidepid = /hidepid=([^,\s]+)/.exec(superOpts ?? '')?.[1];
  }
  let lockdown: string | undefined;
  try {
    lockdown = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/security/lockdown', 'utf8'))?.[1];
  } catch {
    /* no lockdown LSM */
  }
  const other = otherUsersFd();
  return { ebpf: ebpfProbe(), ...other, btf: existsSync('/sys/kernel/btf/vmlinux'), cgroup2, lockdown, hidepid };
}

/** Loads the addon's eBPF programs as `--attribution auto` does (openEbpf) and lets go of them at
 * once: the only way to know the kernel takes them (verifier, BTF, capabilities, lockdown,
 * cgroup). Attached for milliseconds. */
function ebpfProbe(): Facts['attribution']['ebpf'] {
  try {
    if (typeof requireAddon<{ Attribution?: unknown }>().Attribution !== 'function') return { built: false };
  } catch {
    return { built: false };
  }
  const r = openEbpf();
  if (!r.handle) return { built: true, loaded: false, code: r.refused!.code, message: r.refused!.message };
  try {
    const info = r.handle.info();
    return { built: true, loaded: true, sendsCovered: info.sendsCovered === true, ...(info.cgroupRoot ? { cgroupRoot: info.cgroupRoot } : {}) };
  } finally {
    r.handle.close();
  }
}

/** Tries to list the open files of one process of another user, as the sock_diag attribution must. */
function otherUsersFd(): Pick<Facts['attribution'], 'otherUsersFd' | 'otherPid'> {
  const me = process.geteuid?.() ?? 0;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return { otherUsersFd: 'untested' };
  }
  for (const pid of pids.slice(0, 4096)) {
    let uid: number;
    try {
      uid = Number(/^Uid:\s+\d+\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    } catch {
      continue; // gone, or hidden
    }
    if (!Number.isFinite(uid) || uid === me) continue;
    try {
      // Listing the directory can pass on CAP_DAC_OVERRIDE alone; what attribution reads is the
      // link (socket:[INODE]), which needs ptrace access to that process.
      const fds = readdirSync(`/proc/${pid}/fd`);
      if (fds.length === 0) continue;
      readlinkSync(`/proc/${pid}/fd/${fds[0]}`);
      return { otherUsersFd: 'readable', otherPid: Number(pid) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue; // exited meanwhile
      return { otherUsersFd: 'denied', otherPid: Number(pid) };
    }
  }
  return { otherUsersFd: 'untested' };
}

/** How long the kernel takes to dump the whole table, as ctwatch's start-up and resync do. */
async function timeDump(source: LiveSource, deadlineMs: number): Promise<NonNullable<Facts['dump']>> {
  const started = process.hrtime.bigint();
  let entries = 0;
  const timer = setTimeout(() => void source.close(), deadlineMs);
  let done = false;
  try {
    source.dump();
    for await (const batch of source) {
      for (const e of batch) {
        if (e.event === 'snapshot') entries++;
        else if (e.event === 'snapshot_done') done = true;
      }
      if (done) break;
    }
  } catch (err) {
    return { error: fromNativeError(err).message };
  } finally {
    clearTimeout(timer);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (source.dumpErrors.length) return { error: source.dumpErrors[0] === 1 ? 'not permitted (a dump needs CAP_NET_ADMIN)' : `the kernel answered errno ${source.dumpErrors[0]}` };
  return { ms, entries, done };
}

function addonFacts(): Facts['addon'] {
  try {
    const o = addonOrigin();
    return { ok: true, path: o.path, kind: o.kind, skipped: o.skipped, ...(o.kind === 'prebuild' && o.glibc ? { glibc: o.glibc } : {}) };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

export async function gatherFacts(netns: string | undefined, dumpDeadlineMs = 30_000): Promise<Facts> {
  const ps = procStatus();
  const addon = addonFacts();
  let source: LiveSource | undefined;
  let open: Facts['open'];
  try {
    // Subscribing is what needs CAP_NET_ADMIN: try exactly what ctwatch does. The events that
    // arrive meanwhile are ignored; the socket is for the statistics and the timed dump.
    source = new LiveSource({ netns, events: ['destroy'], snapshot: false });
    open = { ok: true, rcvbuf: source.counters.rcvbuf };
  } catch (err) {
    const e = err instanceof CtwatchError ? err : fromNativeError(err);
    // A namespace that is not there is the operator's mistake, not a finding.
    if (e.code === 'ERR_NETNS_NOT_FOUND' || e.code === 'ERR_NETNS') throw e;
    open = { ok: false, code: e.code, message: e.message };
  }
  try {
    const [sys, ruleset] = await Promise.all([readSysctls(netns), readRuleset(netns)]);
    let stats: KernelStats | undefined;
    let dump: Facts['dump'];
    if (source) {
      try {
        stats = source.stats();
      } catch {
        /* reported through the dump */
      }
      dump = await timeDump(source, dumpDeadlineMs);
    }
    return {
      netns,
      sysctl: sys.values,
      sysctlError: sys.error,
      module: ((m) => (m === "unknown" && open.ok ? "builtin" : m))(moduleState()),
      open,
      stats,
      ruleset,
      caps: { effective: ps.effective, bounding: ps.bounding },
      uid: ps.uid,
      attribution: attributionFacts(),
      dump,
      addon,
    };
  } finally {
    await source?.close();
  }
}
