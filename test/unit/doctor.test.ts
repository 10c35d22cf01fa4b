import { describe, expect, it } from 'vitest';
import {
  CAP,
  attributionFinding,
  capabilitiesFinding,
  dumpFinding,
  exitStatus,
  findings,
  netlinkFinding,
  renderFindings,
  rulesetFinding,
  sysctlFix,
  tableFinding,
  timeoutsFinding,
  type CapName,
  type Facts,
} from '../../src/cli/doctor-findings.js';
import { rulesetUsesConntrack } from '../../src/cli/doctor-facts.js';

const caps = (...names: CapName[]) => names.reduce((a, n) => a | (1n << BigInt(CAP[n])), 0n);
const ALL = caps(...(Object.keys(CAP) as CapName[]));
const NF = 'net.netfilter.nf_conntrack_';

function facts(over: Partial<Facts> = {}): Facts {
  return {
    sysctl: {
      [`${NF}events`]: 1,
      [`${NF}acct`]: 1,
      [`${NF}timestamp`]: 1,
      [`${NF}max`]: 262144,
      [`${NF}buckets`]: 262144,
      [`${NF}count`]: 10,
      [`${NF}tcp_timeout_time_wait`]: 120,
      [`${NF}tcp_timeout_established`]: 432000,
      [`${NF}udp_timeout`]: 30,
      [`${NF}udp_timeout_stream`]: 120,
      [`${NF}generic_timeout`]: 600,
      'net.core.rmem_max': 212992,
    },
    module: 'builtin',
    open: { ok: true, rcvbuf: 64 << 20 },
    stats: { entries: 10, max: 262144, cpus: [{ drop: 0, early_drop: 0, chaintoolong: 0 }] },
    ruleset: { usesConntrack: true },
    caps: { effective: ALL, bounding: ALL },
    uid: 0,
    attribution: { ebpf: { built: true, loaded: true, sendsCovered: true, cgroupRoot: '/sys/fs/cgroup' }, otherUsersFd: 'readable', otherPid: 42, btf: true, cgroup2: '/sys/fs/cgroup' },
    dump: { ms: 12, entries: 10, done: true },
    addon: { ok: true, path: '/usr/lib/node_modules/ctwatch/prebuilds/linux-x64/ctwatch.napi.node', kind: 'prebuild', glibc: '2.34', skipped: [] },
    ...over,
  };
}

describe('doctor findings', () => {
  it('a healthy host: every check ok, exit 0, one line each', () => {
    const list = findings(facts());
    expect(list.map((x) => [x.check, x.status])).toEqual(
      ['addon', 'netlink', 'capabilities', 'events', 'ruleset', 'accounting', 'timestamps', 'table', 'timeouts', 'rcvbuf', 'attribution', 'dump'].map((c) => [c, 'ok']),
    );
    expect(exitStatus(list)).toBe(0);
    expect(renderFindings(list).trim().split('\n')).toHaveLength(12);
  });

  it('fixes run in the namespace that was checked', () => {
    expect(sysctlFix(undefined, 'a=1')).toBe('sysctl -w a=1');
    expect(sysctlFix('prod', 'a=1')).toBe('ip netns exec prod sysctl -w a=1');
    expect(sysctlFix('/proc/42/ns/net', 'a=1')).toBe('nsenter --net=/proc/42/ns/net sysctl -w a=1');
  });

  it('netlink missing: fail with modprobe and the boot-time file', () => {
    const x = netlinkFinding(facts({ open: { ok: false, code: 'ERR_NO_CTNETLINK', message: 'no' } }));
    expect(x.status).toBe('fail');
    expect(x.fix).toContain('modprobe nf_conntrack_netlink');
    expect(x.fix).toContain('/etc/modules-load.d/');
  });

  it('no CAP_NET_ADMIN fails; missing CAP_SYS_ADMIN or CAP_SETUID only says what is off', () => {
    expect(capabilitiesFinding(facts({ caps: { effective: caps('SYS_ADMIN'), bounding: 0n } })).status).toBe('fail');
    const x = capabilitiesFinding(facts({ caps: { effective: caps('NET_ADMIN'), bounding: 0n } }));
    expect(x.status).toBe('ok');
    expect(x.finding).toBe('held: CAP_NET_ADMIN; without --netns (CAP_SYS_ADMIN), --user (CAP_SETUID CAP_SETGID)');
  });

  it('buckets far below the limit, or chains too long: warn with the hash size to set', () => {
    const x = tableFinding(facts({ sysctl: { ...facts().sysctl, [`${NF}buckets`]: 16384 } }));
    expect(x.status).toBe('warn');
    expect(x.finding).toContain('16 per bucket');
    expect(x.fix).toContain('echo 262144 > /sys/module/nf_conntrack/parameters/hashsize');
    expect(tableFinding(facts({ stats: { entries: 1, max: 262144, cpus: [{ chaintoolong: 3 }, { chaintoolong: 2 }] } })).finding).toContain('5 inserts refused');
    const full = tableFinding(facts({ stats: { entries: 262144, max: 262144, cpus: [{ drop: 7, early_drop: 3 }] } }));
    expect(full.status).toBe('warn');
    expect(full.finding).toContain('dropped 10 packets');
    expect(full.data).toMatchObject({ drops: 10, entries: 262144 });
  });

  it('timeouts above the kernel defaults warn, and the fix restores each default', () => {
    const x = timeoutsFinding(facts({ sysctl: { ...facts().sysctl, [`${NF}tcp_timeout_time_wait`]: 600, [`${NF}udp_timeout`]: 90 } }));
    expect(x.status).toBe('warn');
    expect(x.finding).toContain('short TCP connections fill the table at 436/s');
    expect(x.fix).toBe(`sysctl -w ${NF}tcp_timeout_time_wait=120; sysctl -w ${NF}udp_timeout=30`);
    expect(timeoutsFinding(facts()).finding).toContain('2 184/s');
  });

  it('an empty table is fine if the ruleset uses conntrack, a failure if nothing does', () => {
    const empty = { stats: { entries: 0, max: 1, cpus: [] } };
    expect(rulesetFinding(facts({ ...empty })).status).toBe('ok');
    const x = rulesetFinding(facts({ ...empty, netns: 'prod', ruleset: { usesConntrack: false } }));
    expect(x.status).toBe('fail');
    expect(x.fix).toBe("ip netns exec prod nft add table inet ctwatch; ip netns exec prod nft add chain inet ctwatch out '{ type filter hook output priority 0; }'; ip netns exec prod nft add rule inet ctwatch out ct state new counter");
    expect(rulesetFinding(facts({ ...empty, ruleset: { error: 'nft is not installed' } })).status).toBe('warn');
  });

  it('recognises rules that need conntrack: ct expressions, NAT, xtables state matches', () => {
    const rule = (expr: unknown[]) => ({ nftables: [{ rule: { family: 'inet', table: 't', chain: 'c', expr } }] });
    expect(rulesetUsesConntrack(rule([{ match: { op: 'in', left: { ct: { key: 'state' } }, right: 'new' } }, { counter: null }]))).toBe(true);
    expect(rulesetUsesConntrack(rule([{ masquerade: null }]))).toBe(true);
    expect(rulesetUsesConntrack({ nftables: [{ chain: { family: 'ip', table: 'nat', name: 'post', type: 'nat', hook: 'postrouting', prio: 100 } }] })).toBe(true);
    expect(rulesetUsesConntrack(rule([{ xt: { type: 'match', name: 'conntrack' } }]))).toBe(true);
    expect(rulesetUsesConntrack(rule([{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } }, { accept: null }]))).toBe(false);
    expect(rulesetUsesConntrack({ nftables: [{ metainfo: { version: '1.0.6' } }] })).toBe(false);
  });

  it('attribution: the mode --attribution auto runs here (ebpf when it loads, else sockdiag), and how far the /proc fallback reaches', () => {
    const ok = attributionFinding(facts());
    expect(ok.status).toBe('ok');
    expect(ok.finding).toMatch(/^ebpf \(what --attribution auto runs: the programs loaded here, CAP_BPF \+ CAP_PERFMON held, attached at cgroup \/sys\/fs\/cgroup, connected UDP covered\); with --attribution sockdiag: every process can be named \(tried on pid 42\)/);
    expect(ok.data).toMatchObject({ mode: 'ebpf', ebpf: 'loads', otherUsersFd: 'readable' });
    // eBPF refused, /proc readable: sockdiag, ok, with the kernel's reason
    const refused = attributionFinding(facts({ caps: { effective: caps('NET_ADMIN', 'SYS_PTRACE', 'DAC_READ_SEARCH'), bounding: 0n }, attribution: { ...facts().attribution, ebpf: { built: true, loaded: false, code: 'ERR_BPF_PERMISSION', message: 'eBPF attribution needs CAP_BPF and CAP_PERFMON' } } }));
    expect(refused.status).toBe('ok');
    expect(refused.finding).toBe('sockdiag (eBPF refused: eBPF attribution needs CAP_BPF and CAP_PERFMON (ERR_BPF_PERMISSION; CAP_BPF + CAP_PERFMON not held)): every process can be named (tried on pid 42)');
    expect(refused.data).toMatchObject({ mode: 'sockdiag', ebpf: 'ERR_BPF_PERMISSION' });
    // eBPF loads: another user's /proc refused does not matter to what runs
    expect(attributionFinding(facts({ attribution: { ...facts().attribution, otherUsersFd: 'denied', otherPid: 7 } })).status).toBe('ok');
    // eBPF refused and another user's /proc/PID/fd really refused: warn
    const denied = attributionFinding(facts({ attribution: { ...facts().attribution, ebpf: { built: true, loaded: false, code: 'ERR_BPF_NO_BTF', message: 'no BTF' }, otherUsersFd: 'denied', otherPid: 7 } }));
    expect(denied.status).toBe('warn');
    expect(denied.finding).toContain('only processes of uid 0 can be named');
    expect(denied.finding).toContain('(tried on pid 7)');
    expect(denied.fix).toContain('CAP_SYS_PTRACE CAP_DAC_READ_SEARCH');
    // no process of another user to try: judged by the capabilities
    const own = attributionFinding(facts({ uid: 0, caps: { effective: caps('NET_ADMIN', 'SYS_ADMIN'), bounding: 0n }, attribution: { ebpf: { built: false }, otherUsersFd: 'untested', btf: true, cgroup2: '/x' } }));
    expect(own.status).toBe('warn');
    expect(own.finding).toMatch(/^sockdiag \(this addon has no eBPF attribution\): only processes of uid 0/);
  });

  it('a slow or unfinished dump warns; a failed one fails', () => {
    expect(dumpFinding(facts({ dump: { ms: 4500, entries: 900000, done: true } })).status).toBe('warn');
    expect(dumpFinding(facts({ dump: { ms: 30000, entries: 5, done: false } })).finding).toContain('did not finish');
    expect(dumpFinding(facts({ dump: { error: 'not permitted' } })).status).toBe('fail');
    expect(dumpFinding(facts({ dump: { ms: 2, entries: 1000, done: true } })).data).toEqual({ ms: 2, entries: 1000 });
  });

  it('exit status: any fail 2, else any warn 1, skips do not count', () => {
    expect(exitStatus([{ check: 'a', status: 'skip', finding: '' }])).toBe(0);
    expect(exitStatus([{ check: 'a', status: 'warn', finding: '' }, { check: 'b', status: 'ok', finding: '' }])).toBe(1);
    expect(exitStatus([{ check: 'a', status: 'warn', finding: '' }, { check: 'b', status: 'fail', finding: '' }])).toBe(2);
  });
});
