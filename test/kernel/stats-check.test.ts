/**
 * `ctwatch stats` the way monitoring runs it, against a real namespace: the plugin guidelines'
 * status line, exit codes, ranges and perfdata; and the textfile mode read by a real node_exporter,
 * which must see the same names and figures as its own conntrack collector (procfs) in that
 * namespace, and as `conntrack -C`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, createNetns, track, waitFor, type Netns } from '../helpers/netns.js';

const run = promisify(execFile);
const NODE_EXPORTER = '/usr/bin/prometheus-node-exporter';

async function ctwatch(args: string[], prefix: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...rest] = [...prefix, process.execPath, CLI, ...args];
  try {
    const { stdout, stderr } = await run(cmd, rest, { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: unknown; stdout: string; stderr: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `'label'=value[UOM];[warn];[crit];[min];[max]`, as the guidelines define it. */
const PERF = /^('[^'=]+'|[^'= ]+)=(-?\d+(\.\d+)?|U)(s|ms|us|%|B|KB|MB|TB|c)?(;([@~\d.:-]*)){0,4}$/;

function samples(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of text.split('\n')) {
    const x = /^(node_nf_conntrack_\w+)(\{[^}]*\})? (\S+)$/.exec(l);
    if (x) m.set(`${x[1]}${x[2] ?? ''}`, x[3]);
  }
  return m;
}

describe('stats as a monitoring check (own namespace)', () => {
  let ns: Netns;
  let entries: number;
  beforeAll(async () => {
    ns = await createNetns();
    // 300 connections that stay in TIME_WAIT for two minutes: a table that holds still.
    await ns.generate({ listen: [{ proto: 'tcp', host: '127.0.0.5', port: 7201 }], run: [{ kind: 'connect', host: '127.0.0.5', port: 7201, count: 300, rate: 0 }] });
    entries = Number((await ns.exec('conntrack', ['-C'])).stdout.trim());
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('OK / WARNING / CRITICAL by -w and -c ranges, one line, perfdata with units', async () => {
    expect(entries).toBeGreaterThanOrEqual(300);
    const ok = await ctwatch(['stats', '--netns', ns.name, '--interval', '0.3s']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const lines = ok.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const [text, perf] = lines[0].split(' | ');
    expect(text).toMatch(new RegExp(`^CONNTRACK OK - table 0 % \\(${entries} / [\\d ]+\\), not growing$`));
    const data = perf.split(' ');
    for (const p of data) expect(p).toMatch(PERF);
    expect(data.map((p) => p.split('=')[0])).toEqual(['fill', 'entries', 'time_to_full', 'drop', 'early_drop', 'insert_failed', 'new_per_s']);
    expect(data[0]).toMatch(/^fill=0\.1%;70;90;0;100$/);
    expect(data[1]).toMatch(new RegExp(`^entries=${entries};\\d+;\\d+;0;\\d+$`));
    expect(data[2]).toBe('time_to_full=U;;;0');
    expect(data[3]).toBe('drop=0c;;;0');

    const warning = await ctwatch(['stats', '--netns', ns.name, '--interval', '0.3s', '-w', '0.05', '-c', '50']);
    expect(warning.code).toBe(1);
    expect(warning.stdout).toMatch(/^CONNTRACK WARNING - table 0 % /);
    expect(warning.stdout).toContain(' fill=0.1%;0.05;50;0;100 ');

    const critical = await ctwatch(['stats', '--netns', ns.name, '--interval', '0.3s', '-c', '@0:100']);
    expect(critical.code).toBe(2);
    expect(critical.stdout).toMatch(/^CONNTRACK CRITICAL - /);
    expect(critical.stdout).toMatch(/ entries=\d+;\d+;@0:\d+;0;\d+ /);
  });

  it('any error is UNKNOWN, exit 3, one line on stdout', async () => {
    const noCap = await ctwatch(['stats', '--netns', ns.name], ['setpriv', '--inh-caps=-all', '--bounding-set=-all', '--']);
    expect(noCap.code).toBe(3);
    expect(noCap.stderr).toBe('');
    expect(noCap.stdout).toMatch(/^CONNTRACK UNKNOWN - .*needs CAP_SYS_ADMIN.*\n$/);
    const bad = await ctwatch(['stats', '-w', '10:5']);
    expect(bad).toMatchObject({ code: 3, stderr: '' });
    expect(bad.stdout).toMatch(/^CONNTRACK UNKNOWN - -w "10:5" is not a threshold range/);
    // Scripts asked for JSON: the reason goes to stderr, stdout stays clean.
    const json = await ctwatch(['stats', '--netns', 'ctwt-no-such-ns', '--json']);
    expect(json).toMatchObject({ code: 3, stdout: '' });
    expect(json.stderr).toMatch(/^ctwatch stats: network namespace \/run\/netns\/ctwt-no-such-ns does not exist/);
  });

  it('--json: one churn line with the table figures', async () => {
    const r = await ctwatch(['stats', '--netns', ns.name, '--interval', '0.3s', '--json']);
    expect(r.code).toBe(0);
    const snap = JSON.parse(r.stdout);
    expect(snap).toMatchObject({ v: 1, event: 'churn', table: { entries } });
  });

  describe('--textfile, read by a real node_exporter', () => {
    let dir: string;
    let exporter: ChildProcess | undefined;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'ctwatch-textfile-'));
    });
    afterAll(async () => {
      if (exporter && exporter.exitCode === null) {
        const gone = new Promise((r) => exporter!.once('exit', r));
        exporter.kill('SIGTERM');
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    });

    it("same names and figures as node_exporter's own conntrack collector in that namespace; replaced atomically", async () => {
      const port = 19100 + (process.pid % 500);
      // node_exporter's own conntrack collector (procfs) inside the namespace is the reference.
      exporter = track(
        spawn('ip', ['netns', 'exec', ns.name, NODE_EXPORTER, '--collector.disable-defaults', '--collector.conntrack', `--web.listen-address=127.0.0.1:${port}`], {
          stdio: ['ignore', 'ignore', 'pipe'],
        }),
      );
      let log = '';
      exporter.stderr!.on('data', (d) => (log += d));
      const scrape = async () => (await ns.exec('curl', ['-sf', `http://127.0.0.1:${port}/metrics`])).stdout;
      await waitFor(() => scrape().catch(() => ''), `node_exporter to answer (${log})`);
      const file = join(dir, 'conntrack.prom');
      // Run inside the namespace, as on a host: its own namespace, no labels.
      const w = await ctwatch(['stats', '--textfile', file], ['ip', 'netns', 'exec', ns.name]);
      expect(w).toMatchObject({ code: 0, stdout: '', stderr: '' });
      expect(readdirSync(dir)).toEqual(['conntrack.prom']); // no temporary file left behind
      const mine = samples(readFileSync(file, 'utf8'));
      const text = await scrape();
      expect(text).toContain('node_scrape_collector_success{collector="conntrack"} 1');
      const theirs = samples(text);
      // The scrape's own connection is one more entry when node_exporter counts.
      expect(Number(theirs.get('node_nf_conntrack_entries'))).toBe(Number(mine.get('node_nf_conntrack_entries')) + 1);
      mine.delete('node_nf_conntrack_entries');
      for (const [name, value] of mine) expect([name, theirs.get(name)]).toEqual([name, value]);
      // Written again: replaced whole, nothing left beside it.
      expect((await ctwatch(['stats', '--textfile', file], ['ip', 'netns', 'exec', ns.name])).code).toBe(0);
      expect(readdirSync(dir)).toEqual(['conntrack.prom']);
      expect([...theirs.keys()].filter((k) => !mine.has(k) && k !== 'node_nf_conntrack_entries')).toEqual(['node_nf_conntrack_stat_ignore']); // the kernel's netlink answer no longer has it
    });

    it('--netns: a netns label, so files for several namespaces sit side by side, and node_exporter takes it', async () => {
      rmSync(join(dir, 'conntrack.prom'), { force: true });
      const file = join(dir, `${ns.name}.prom`);
      expect((await ctwatch(['stats', '--netns', ns.name, '--textfile', file])).code).toBe(0);
      const port = 19700 + (process.pid % 200);
      const ex = track(spawn(NODE_EXPORTER, ['--collector.disable-defaults', '--collector.textfile', `--collector.textfile.directory=${dir}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' }));
      try {
        const text = await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '')) || undefined, 'node_exporter to answer');
        const written = samples(readFileSync(file, 'utf8'));
        expect(Number(written.get(`node_nf_conntrack_entries{netns="${ns.name}"}`))).toBeGreaterThanOrEqual(entries);
        for (const [name, value] of written) expect(text).toContain(`${name} ${value}\n`);
        expect(text).toContain('node_textfile_scrape_error 0\n');
        expect(text).toContain('# TYPE node_nf_conntrack_entries_limit gauge\n');
      } finally {
        const gone = new Promise((r) => ex.once('exit', r));
        ex.kill('SIGTERM');
        await gone;
      }
    });

    it('refuses to write through a link planted where its temporary file goes; the target is untouched', async () => {
      const victim = join(dir, 'victim');
      const target = join(dir, 'out.prom');
      symlinkSync(victim, join(dir, `.out.prom.${process.pid}.tmp`));
      // The temporary name carries the writer's pid; plant one for a pid we control by running in-process.
      const { writeFileAtomically } = await import('../../src/cli/stats.js');
      expect(() => writeFileAtomically(target, 'x 1\n')).toThrow(/cannot write/);
      expect(readdirSync(dir)).not.toContain('victim');
      expect(readdirSync(dir)).not.toContain('out.prom');
    });
  });
});
