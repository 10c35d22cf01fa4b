/**
 * `ctwatch doctor` against real namespaces whose sysctls are set wrong: each problem is found, its
 * fix is a command that works (the test runs it), and after the fixes every check passes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI, createNetns, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);

interface Report {
  v: number;
  event: string;
  netns: string | null;
  status: string;
  checks: { check: string; status: string; finding: string; fix?: string; data?: Record<string, unknown> }[];
}

async function doctor(args: string[], prefix: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...pre] = prefix.length ? prefix : [process.execPath];
  const argv = prefix.length ? [...pre, process.execPath, CLI, 'doctor', ...args] : [CLI, 'doctor', ...args];
  try {
    const { stdout, stderr } = await run(cmd, argv, { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const statuses = (r: Report) => Object.fromEntries(r.checks.map((c) => [c.check, c.status]));
const check = (r: Report, name: string) => r.checks.find((c) => c.check === name)!;

describe('ctwatch doctor (own namespaces)', () => {
  let good: Netns;
  let bare: string;
  beforeAll(async () => {
    good = await createNetns({ sysctls: { 'net.netfilter.nf_conntrack_acct': 1, 'net.netfilter.nf_conntrack_timestamp': 1, 'net.netfilter.nf_conntrack_events': 1 } });
    // A namespace as `ip netns add` leaves it: no ruleset at all.
    bare = `ctwt-${process.pid}-doctor-bare`;
    await run('ip', ['netns', 'add', bare]);
    for (const s of ['nf_conntrack_events=0', 'nf_conntrack_acct=0', 'nf_conntrack_timestamp=0', 'nf_conntrack_tcp_timeout_time_wait=600']) {
      await run('ip', ['netns', 'exec', bare, 'sysctl', '-qw', `net.netfilter.${s}`]);
    }
  });
  afterAll(async () => {
    await good?.destroy();
    await run('ip', ['netns', 'del', bare]).catch(() => {});
  });

  it('a namespace set up right: every check passes, exit 0, the dump counts what is in the table', async () => {
    await good.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port: 7101 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 7101, count: 50, rate: 0 }] });
    const r = await doctor(['--netns', good.name]);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(12);
    for (const l of lines) expect(l).toMatch(/^ok {4}\S+ +\S/);
    expect(r.code).toBe(0);
    const j = JSON.parse((await doctor(['--netns', good.name, '--json'])).stdout) as Report;
    expect(j).toMatchObject({ v: 1, event: 'doctor', netns: good.name, status: 'ok' });
    // 50 TIME_WAIT entries stay for two minutes: the dump sees them all.
    expect(check(j, 'dump').data!.entries).toBeGreaterThanOrEqual(50);
    expect(check(j, 'ruleset').finding).toMatch(/tracks connections \(\d+ entries now\)/);
  });

  it('events off, no ruleset, no accounting or timestamps, TIME_WAIT raised: each found; running the fixes clears them', async () => {
    const r = await doctor(['--netns', bare]);
    expect(r.code).toBe(2);
    const line = (name: string) => r.stdout.split('\n').find((l) => l.split(/\s+/)[1] === name) ?? '';
    expect(line('events')).toBe(`FAIL  events        net.netfilter.nf_conntrack_events=0: the kernel sends no conntrack events — fix: ip netns exec ${bare} sysctl -w net.netfilter.nf_conntrack_events=1`);
    expect(line('ruleset')).toMatch(/^FAIL {2}ruleset .*no nftables rule uses conntrack.* — fix: ip netns exec \S+ nft add table inet ctwatch; /);
    expect(line('accounting')).toMatch(/^WARN {2}accounting .*flow ends carry no bytes/);
    expect(line('timestamps')).toMatch(/^WARN {2}timestamps /);
    expect(line('timeouts')).toMatch(/^WARN {2}timeouts .*TIME_WAIT 600 s.*fill the table at 436\/s/);

    const j = JSON.parse((await doctor(['--netns', bare, '--json'])).stdout) as Report;
    expect(j.status).toBe('fail');
    expect(statuses(j)).toMatchObject({ netlink: 'ok', events: 'fail', ruleset: 'fail', accounting: 'warn', timestamps: 'warn', timeouts: 'warn' });
    // The fixes are commands: run them as an operator would paste them.
    for (const name of ['events', 'ruleset', 'accounting', 'timestamps', 'timeouts']) {
      await run('sh', ['-c', check(j, name).fix!]);
    }
    const after = JSON.parse((await doctor(['--netns', bare, '--json'])).stdout) as Report;
    expect(statuses(after)).toMatchObject({ events: 'ok', ruleset: 'ok', accounting: 'ok', timestamps: 'ok', timeouts: 'ok' });
    expect(check(after, 'ruleset').finding).toContain('the ruleset uses conntrack');
  });

  it('without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, and without what eBPF needs: attribution warns and names the capabilities (exit 1)', async () => {
    // Run inside the namespace, as the daemon of a container would: its own namespace is checked.
    // With CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) eBPF would load and /proc would not matter.
    const r = await doctor(['--json'], ['ip', 'netns', 'exec', good.name, 'setpriv', '--inh-caps=-all', '--bounding-set=-sys_ptrace,-dac_read_search,-bpf,-perfmon,-sys_admin', '--']);
    expect(r.code).toBe(1);
    const own = JSON.parse(r.stdout) as Report;
    const a = check(own, 'attribution');
    expect(a.status).toBe('warn');
    expect(a.finding).toContain("only processes of uid 0 can be named");
    expect(a.fix).toContain('CAP_SYS_PTRACE CAP_DAC_READ_SEARCH');
    expect(check(own, 'capabilities').finding).not.toContain('CAP_SYS_PTRACE');
    expect(own.status).toBe('warn');
  });

  it('attribution, tried for real: eBPF programs load and are let go; another user\'s /proc/PID/fd is read, or refused without the capabilities', async () => {
    // a process of another user for the /proc probe to try
    const other = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'sleep', '60'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const j = JSON.parse((await doctor(['--json'])).stdout) as Report;
      const a = check(j, 'attribution');
      expect(a.status).toBe('ok');
      expect(a.data).toMatchObject({ mode: 'ebpf', ebpf: 'loads', otherUsersFd: 'readable' });
      expect(a.finding).toMatch(/^ebpf \(what --attribution auto runs: the programs loaded here, CAP_BPF \+ CAP_PERFMON held/);
      // nothing stays attached: the probe let go of its programs
      const progs = await run('bpftool', ['prog', 'show']).then((r) => r.stdout, () => '');
      expect(progs).not.toMatch(/owner_bpf|ctwatch/);

      const r = await doctor(['--json'], ['setpriv', '--inh-caps=-all', '--bounding-set=-sys_ptrace,-dac_read_search,-bpf,-perfmon,-sys_admin', '--']);
      const d = check(JSON.parse(r.stdout) as Report, 'attribution');
      expect(d.status).toBe('warn');
      expect(d.data).toMatchObject({ mode: 'sockdiag', otherUsersFd: 'denied', ebpf: 'ERR_BPF_PERMISSION' });
      expect(d.finding).toMatch(/^sockdiag \(eBPF refused: .*CAP_BPF \+ CAP_PERFMON not held\)\): only processes of uid 0 can be named .*\(tried on pid \d+\)/);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('--netns without CAP_SYS_ADMIN: capabilities fail and say so; the netlink checks were not tried', async () => {
    const r = await doctor(['--netns', good.name, '--json'], ['setpriv', '--inh-caps=-all', '--bounding-set=-sys_admin', '--']);
    expect(r.code).toBe(2);
    const j = JSON.parse(r.stdout) as Report;
    expect(check(j, 'capabilities')).toMatchObject({ status: 'fail', finding: expect.stringContaining(`entering the namespace ${good.name} needs CAP_SYS_ADMIN`) });
    expect(check(j, 'netlink')).toMatchObject({ status: 'skip', finding: expect.stringContaining('needs CAP_SYS_ADMIN') });
    expect(check(j, 'dump').status).toBe('skip');
  });

  it('not privileged: capabilities fail with the fix, the netlink checks say why they were not tried (exit 2)', async () => {
    const r = await doctor([], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--']);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^FAIL {2}capabilities .*conntrack events need CAP_NET_ADMIN — fix: run ctwatch as root/m);
    expect(r.stdout).toMatch(/^skip {2}netlink .*needs CAP_NET_ADMIN/m);
    expect(r.stdout).toMatch(/^skip {2}dump /m);
  });

  it('bad input: a namespace that does not exist (66), an unknown option (64), one line each', async () => {
    const nf = await doctor(['--netns', 'ctwt-no-such-namespace']);
    expect(nf.code).toBe(66);
    expect(nf.stdout).toBe('');
    expect(nf.stderr).toBe("ctwatch doctor: network namespace /run/netns/ctwt-no-such-namespace does not exist: list them with 'ip netns list', or pass a path such as /proc/PID/ns/net\n");
    const bad = await doctor(['--colour']);
    expect(bad.code).toBe(64);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });
});
